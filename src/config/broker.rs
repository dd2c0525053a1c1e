//! Broker destinations' keys (CONTRACT §10, docs/BROKERS.md): `nats`, `rabbitmq`, `redis`, `mqtt`,
//! each with a URL (`url`, or `url_env` naming the variable that holds it, a secret) and where the
//! message goes (`subject`, `exchange` + `routing_key`, `stream` + `maxlen`, `topic`), the names
//! as templates of `{source}` and `{destination}`. Pure: the edge (`load.rs`) reads `url_env` and
//! checks the URL it holds with [`check_url`]. `kafka` is named and refused: not in this build.

use std::borrow::Cow;
use std::fmt;

use super::fields::{Named, SecretRef};
use super::raw::RawDestination;
use super::{Problems, Target};
use crate::secret::Secret;

/// The destination types of this file.
pub const KINDS: &[&str] = &["nats", "rabbitmq", "redis", "mqtt"];

/// A broker destination: where it connects and where its messages go.
#[derive(Debug, Clone)]
pub struct Broker {
    /// The broker's URL, credentials included (from `url`, or read from `url_env` by the edge).
    pub url: Secret,
    /// `url_env`: the variable read, and the key naming it.
    pub url_env: Option<Named>,
    pub kind: BrokerKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerKind {
    /// JetStream publish to `subject`.
    Nats { subject: Template },
    /// Publish to `exchange` ("" is the default exchange: the routing key is a queue's name).
    Rabbitmq { exchange: String, routing_key: Template },
    /// `XADD stream [MAXLEN maxlen] * ...`.
    Redis { stream: Template, maxlen: Option<u64> },
    /// MQTT 5 publish, QoS 1, to `topic`.
    Mqtt { topic: Template },
}

impl BrokerKind {
    /// The destination's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            BrokerKind::Nats { .. } => "nats",
            BrokerKind::Rabbitmq { .. } => "rabbitmq",
            BrokerKind::Redis { .. } => "redis",
            BrokerKind::Mqtt { .. } => "mqtt",
        }
    }

    /// The URL schemes this broker's client accepts.
    pub fn schemes(&self) -> &'static [&'static str] {
        match self {
            BrokerKind::Nats { .. } => &["nats", "tls"],
            BrokerKind::Rabbitmq { .. } => &["amqp", "amqps"],
            BrokerKind::Redis { .. } => &["redis", "rediss"],
            BrokerKind::Mqtt { .. } => &["mqtt", "mqtts"],
        }
    }

    /// The templated key and its template (the name a message is published to).
    pub(super) fn template(&self) -> (&'static str, &Template) {
        match self {
            BrokerKind::Nats { subject } => ("subject", subject),
            BrokerKind::Rabbitmq { routing_key, .. } => ("routing_key", routing_key),
            BrokerKind::Redis { stream, .. } => ("stream", stream),
            BrokerKind::Mqtt { topic } => ("topic", topic),
        }
    }

    /// What is wrong with `name` as the broker's subject, routing key, stream or topic.
    pub(super) fn refuse(&self, name: &str) -> Option<&'static str> {
        match self {
            _ if name.is_empty() => Some("is empty"),
            BrokerKind::Nats { .. } if name.chars().any(|c| c.is_whitespace()) => {
                Some("a NATS subject has no whitespace")
            }
            BrokerKind::Nats { .. } if name.split('.').any(|t| t.is_empty()) => {
                Some("a NATS subject has no empty token (no leading, trailing or double '.')")
            }
            BrokerKind::Nats { .. } if name.split('.').any(|t| t == "*" || t == ">") => {
                Some("a message is published to a subject without wildcards ('*', '>')")
            }
            BrokerKind::Rabbitmq { .. } if name.len() > 255 => Some("an AMQP routing key has at most 255 bytes"),
            BrokerKind::Mqtt { .. } if name.contains(['+', '#']) => {
                Some("a message is published to a topic without wildcards ('+', '#')")
            }
            BrokerKind::Mqtt { .. } if name.starts_with('$') => Some("topics starting with '$' are the broker's"),
            BrokerKind::Mqtt { .. } if name.contains('\0') => Some("an MQTT topic has no NUL character"),
            _ => None,
        }
    }
}

/// A name with `{source}` and `{destination}` in it, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Source,
    Destination,
}

impl Template {
    /// Parses `text`: `{source}` and `{destination}` are replaced at each attempt; any other `{` or
    /// `}` is an error (there is no escape: none of these brokers' names needs a brace).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let cut = rest.find(['{', '}']).unwrap_or(rest.len());
            if cut > 0 {
                parts.push(Part::Text(rest[..cut].to_string()));
            }
            rest = &rest[cut..];
            if rest.is_empty() {
                break;
            }
            let (part, len) = if rest.starts_with("{source}") {
                (Part::Source, "{source}".len())
            } else if rest.starts_with("{destination}") {
                (Part::Destination, "{destination}".len())
            } else {
                let shown: String = rest.chars().take(16).collect();
                return Err(format!(
                    "unknown placeholder at {shown:?}; only {{source}} and {{destination}} are replaced"
                ));
            };
            parts.push(part);
            rest = &rest[len..];
        }
        Ok(Template { parts })
    }

    /// The name for one event of `source` sent to `destination`.
    pub fn render<'a>(&'a self, source: &str, destination: &str) -> Cow<'a, str> {
        match self.parts.as_slice() {
            [] => Cow::Borrowed(""),
            [Part::Text(t)] => Cow::Borrowed(t),
            parts => {
                let mut out = String::new();
                for p in parts {
                    out.push_str(match p {
                        Part::Text(t) => t,
                        Part::Source => source,
                        Part::Destination => destination,
                    });
                }
                Cow::Owned(out)
            }
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(t)?,
                Part::Source => f.write_str("{source}")?,
                Part::Destination => f.write_str("{destination}")?,
            }
        }
        Ok(())
    }
}

/// The keys of broker destinations, each with the types that take it.
const KEYS: &[(&str, &[&str])] = &[
    ("url_env", KINDS),
    ("subject", &["nats"]),
    ("exchange", &["rabbitmq"]),
    ("routing_key", &["rabbitmq"]),
    ("stream", &["redis"]),
    ("maxlen", &["redis"]),
    ("topic", &["mqtt"]),
];

fn present(raw: &RawDestination, key: &str) -> bool {
    match key {
        "url_env" => raw.url_env.is_some(),
        "subject" => raw.subject.is_some(),
        "exchange" => raw.exchange.is_some(),
        "routing_key" => raw.routing_key.is_some(),
        "stream" => raw.stream.is_some(),
        "maxlen" => raw.maxlen.is_some(),
        "topic" => raw.topic.is_some(),
        _ => false,
    }
}

/// Broker keys on a destination whose type does not take them, and the keys of other types on a
/// broker destination: each a problem at its key.
pub(super) fn unused_keys(raw: &RawDestination, at: &str, p: &mut Problems) {
    let Some(kind) = raw.kind.as_deref() else { return };
    if kind == "kafka" {
        return;
    }
    for (key, takers) in KEYS {
        if present(raw, key) && !takers.contains(&kind) {
            p.push(format!("{at}.{key}"), format!("not used by type = \"{kind}\""));
        }
    }
    if KINDS.contains(&kind) {
        for (key, there) in [
            ("command", raw.command.is_some()),
            ("handler", raw.handler.is_some()),
            ("sign", raw.sign.is_some()),
            ("method", raw.method.is_some()),
            ("headers", raw.headers.is_some()),
        ] {
            if there {
                p.push(format!("{at}.{key}"), format!("not used by type = \"{kind}\""));
            }
        }
    }
}

/// A broker destination's target (`kind` is one of [`KINDS`], or `kafka`, which is refused).
pub(super) fn target(kind: &str, raw: &RawDestination, at: &str, p: &mut Problems) -> Option<Target> {
    let text = |key: &str, value: &Option<String>, p: &mut Problems| -> Option<Template> {
        match value.as_deref() {
            None => {
                p.push(format!("{at}.{key}"), format!("missing; a {kind} destination needs a {key}"));
                None
            }
            Some(v) => Template::parse(v).map_err(|e| p.push(format!("{at}.{key}"), e)).ok(),
        }
    };
    let kind = match kind {
        "nats" => BrokerKind::Nats { subject: text("subject", &raw.subject, p)? },
        "rabbitmq" => {
            let exchange = raw.exchange.clone().unwrap_or_default();
            if exchange.len() > 255 || !exchange.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
                p.push(
                    format!("{at}.exchange"),
                    "an AMQP exchange name has at most 255 letters, digits, '-', '_', '.' and ':'",
                );
            }
            BrokerKind::Rabbitmq { exchange, routing_key: text("routing_key", &raw.routing_key, p)? }
        }
        "redis" => {
            if raw.maxlen == Some(0) {
                p.push(format!("{at}.maxlen"), "must be at least 1 (leave it out for a stream without a cap)");
            }
            BrokerKind::Redis { stream: text("stream", &raw.stream, p)?, maxlen: raw.maxlen }
        }
        "mqtt" => BrokerKind::Mqtt { topic: text("topic", &raw.topic, p)? },
        _ => {
            p.push(
                format!("{at}.type"),
                "kafka is not supported in this build; docs/BROKERS.md (\"Kafka\") says how it would fit. \
                 Publish to Kafka through a bridge from a destination this build has (http, nats, rabbitmq, redis, mqtt)",
            );
            return None;
        }
    };
    let (key, template) = kind.template();
    if let Some(reason) = kind.refuse(&template.render("s", "d")) {
        p.push(format!("{at}.{key}"), format!("{:?}: {reason}", template.to_string()));
    }
    let (url, url_env) = match (&raw.url, &raw.url_env) {
        (Some(url), None) => {
            if let Err(e) = check_url(&kind, url) {
                p.push(format!("{at}.url"), e);
            }
            (Secret::new(url.as_bytes().to_vec()), None)
        }
        (None, Some(var)) if !var.is_empty() => {
            (Secret::new(Vec::new()), Some(Named { key: format!("{at}.url_env"), source: SecretRef::Env(var.clone()) }))
        }
        _ => {
            p.push(
                format!("{at}.url"),
                format!(
                    "set exactly one of url or url_env (the environment variable holding a {}:// URL, which keeps \
                     credentials out of the file)",
                    kind.schemes()[0]
                ),
            );
            return None;
        }
    };
    Some(Target::Broker(Broker { url, url_env, kind }))
}

/// What is wrong with `url` for this broker, if anything. The message never shows the URL (it may
/// hold a password), only its scheme.
pub fn check_url(kind: &BrokerKind, url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    let schemes = kind.schemes();
    if !schemes.contains(&parsed.scheme()) {
        let accepted: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        return Err(format!("must be a {} URL, not {}://", accepted.join(" or "), parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("names no host".into());
    }
    Ok(())
}

/// Whether a URL written in the file carries a password (`check` then suggests `url_env`).
pub fn has_password(url: &Secret) -> bool {
    std::str::from_utf8(url.expose()).ok().and_then(|u| url::Url::parse(u).ok()).is_some_and(|u| u.password().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_replace_source_and_destination_and_nothing_else() {
        let t = Template::parse("hooks.{source}.to.{destination}").unwrap();
        assert_eq!(t.render("stripe", "bus"), "hooks.stripe.to.bus");
        assert_eq!(t.to_string(), "hooks.{source}.to.{destination}");
        assert_eq!(Template::parse("plain").unwrap().render("a", "b"), "plain");
        for bad in ["hooks.{src}", "a{", "b}", "{source"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_each_broker_refuses() {
        let nats = BrokerKind::Nats { subject: Template::parse("x").unwrap() };
        let mqtt = BrokerKind::Mqtt { topic: Template::parse("x").unwrap() };
        for (kind, name, refused) in [
            (&nats, "hooks.stripe", false),
            (&nats, "hooks..stripe", true),
            (&nats, "hooks.*", true),
            (&nats, "hooks stripe", true),
            (&mqtt, "hooks/stripe", false),
            (&mqtt, "hooks/+", true),
            (&mqtt, "$SYS/x", true),
        ] {
            assert_eq!(kind.refuse(name).is_some(), refused, "{name}");
        }
    }

    #[test]
    fn a_url_message_shows_the_scheme_never_the_url() {
        let redis = BrokerKind::Redis { stream: Template::parse("s").unwrap(), maxlen: None };
        assert!(check_url(&redis, "redis://:pw@127.0.0.1:6379").is_ok());
        let e = check_url(&redis, "http://user:hunter2@127.0.0.1/").unwrap_err();
        assert!(e.contains("redis://") && e.contains("http://") && !e.contains("hunter2"), "{e}");
    }
}
