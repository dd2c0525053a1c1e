//! The pure step for `[[destinations]]` and `[[sources]]`: names, paths, targets, dedupe, the
//! `deliver_to` references and the `verify` tables, with their secrets as references.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fields::{Named, SecretRef, circuit_breaker, name_ok, retry_policy};
use super::http_options::{self, SecretHeader};
use super::raw::{self, RawDelivery, RawDestination, RawSource, RawVerify};
use super::{Dedupe, Delivery, Destination, MAX_DELIVER_TO, Problems, RateLimit, Target, duration, resolve};
use crate::verify::Spec;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// A pull destination's lease when it names none (CONTRACT §10), and the shortest it may have.
const PULL_LEASE: Duration = Duration::from_secs(30);
const PULL_MIN_LEASE: Duration = Duration::from_secs(1);

/// A destination; an http one's `sign` key and secret-valued headers are put in by the edge from
/// `sign` and `secret_headers`.
#[derive(Debug)]
pub struct DraftDestination {
    pub destination: Destination,
    pub sign: Option<Named>,
    pub secret_headers: Vec<SecretHeader>,
    /// A pull destination's `token_env`/`token_file`.
    pub token: Option<Named>,
}

/// A source's `verify` table at `at` (`sources[0] (s).verify`): the spec without its secrets,
/// and where each secret is, by its key in the table.
#[derive(Debug)]
pub struct VerifyDraft {
    pub at: String,
    pub spec: Spec,
    pub secrets: Vec<(&'static str, SecretRef)>,
}

/// A source whose verifier the edge builds from `verify`.
#[derive(Debug)]
pub struct DraftSource {
    pub name: String,
    pub path: String,
    pub verify: VerifyDraft,
    pub dedupe: super::Dedupe,
    pub routes: Vec<super::Route>,
    pub rate_limit: Option<RateLimit>,
    pub response: Option<super::SourceResponse>,
}

pub(super) fn destinations(
    raws: &[RawDestination],
    delivery: &Delivery,
    default_lease: Option<Duration>,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<DraftDestination> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for (i, raw) in raws.iter().enumerate() {
        let at = format!("destinations[{i}]");
        let Some(name) = name_ok(&raw.name, &format!("{at}.name"), p) else { continue };
        let at = format!("destinations[{i}] ({name})");
        if let Some(prev) = seen.insert(name.clone(), i) {
            p.push(format!("{at}.name"), format!("duplicate destination name; also used by destinations[{prev}]"));
        }
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => duration::parse(t).unwrap_or_else(|e| {
                p.push(format!("{at}.timeout"), e);
                DEFAULT_TIMEOUT
            }),
        };
        let own = RawDelivery {
            max_attempts: raw.max_attempts,
            initial_backoff: raw.initial_backoff.clone(),
            max_backoff: raw.max_backoff.clone(),
            concurrency: raw.concurrency,
            lease: raw.lease.clone(),
            rate_limit: None,
            circuit_breaker: None,
        };
        let dest_policy = retry_policy(&own, Some(delivery.policy), &at, p);
        let rate_limit = match &raw.rate_limit {
            Some(r) => super::fields::rate_limit(r, &format!("{at}.rate_limit"), p),
            None => delivery.rate_limit,
        };
        let circuit_breaker =
            circuit_breaker(&raw.circuit_breaker, &format!("{at}.circuit_breaker"), delivery.circuit_breaker, p);
        let ordering_key = raw.ordering_key.as_ref().and_then(|code| compile(code, &format!("{at}.ordering_key"), p));
        let pull = raw.kind.as_deref() == Some("pull");
        let lease = match &raw.lease {
            Some(l) => duration::parse(l).unwrap_or_else(|e| {
                p.push(format!("{at}.lease"), e);
                timeout + LEASE_MARGIN
            }),
            None if pull => PULL_LEASE,
            None => default_lease.unwrap_or(timeout + LEASE_MARGIN),
        };
        if pull {
            // A consumer's lease is how long it may hold a claim; no timeout of ours runs in it.
            if lease < PULL_MIN_LEASE {
                p.push(format!("{at}.lease"), "must be at least 1s for a pull destination");
            }
        } else if lease <= timeout {
            p.push(
                format!("{at}.lease"),
                "must be longer than the destination's timeout, or a slow delivery is claimed twice",
            );
        }
        let concurrency = match raw.concurrency {
            Some(0) => {
                p.push(format!("{at}.concurrency"), "must be at least 1");
                None
            }
            other => other.map(|n| n as usize),
        };
        let token = pull_token(raw, &at, base_dir, p);
        if let Some((target, sign, secret_headers)) = target(raw, &at, base_dir, p) {
            let destination = Destination {
                name,
                target,
                policy: dest_policy,
                timeout,
                lease,
                concurrency,
                rate_limit,
                circuit_breaker,
                ordering_key,
            };
            out.push(DraftDestination { destination, sign, secret_headers, token });
        }
    }
    out
}

/// The destination's target, and where its signing secret and secret-valued headers are (read and
/// put in by the edge).
fn target(
    raw: &RawDestination,
    at: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<(Target, Option<Named>, Vec<SecretHeader>)> {
    let extra = |p: &mut Problems, present: bool, key: &str, kind: &str| {
        if present {
            p.push(format!("{at}.{key}"), format!("not used by type = \"{kind}\""));
        }
    };
    let http_only = |p: &mut Problems, kind: &str| {
        extra(p, raw.method.is_some(), "method", kind);
        extra(p, raw.headers.is_some(), "headers", kind);
    };
    super::broker::unused_keys(raw, at, p);
    match raw.kind.as_deref() {
        Some(kind @ ("nats" | "rabbitmq" | "redis" | "mqtt" | "kafka")) => {
            super::broker::target(kind, raw, at, p).map(|t| (t, None, Vec::new()))
        }
        Some("http") => {
            extra(p, raw.command.is_some(), "command", "http");
            extra(p, raw.handler.is_some(), "handler", "http");
            let url = match raw.url.as_deref() {
                None => {
                    p.push(format!("{at}.url"), "missing; an http destination needs a url");
                    None
                }
                Some(u) => match reqwest::Url::parse(u) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    Ok(_) => {
                        p.push(format!("{at}.url"), "must be an http:// or https:// URL");
                        None
                    }
                    Err(e) => {
                        p.push(format!("{at}.url"), format!("invalid URL {u:?}: {e}"));
                        None
                    }
                },
            };
            let method = http_options::method(raw.method.as_deref(), at, p);
            let (headers, secret_headers) = http_options::headers(raw.headers.as_ref(), at, base_dir, p);
            let sign = raw.sign.as_ref().map(|s| signing_key(s, at, base_dir, p));
            if let Some(None) = sign {
                return None;
            }
            Some((Target::Http { url: url?, method, headers, sign: None }, sign.flatten(), secret_headers))
        }
        Some("exec") => {
            extra(p, raw.url.is_some(), "url", "exec");
            extra(p, raw.sign.is_some(), "sign", "exec");
            extra(p, raw.handler.is_some(), "handler", "exec");
            http_only(p, "exec");
            match raw.command.as_deref() {
                Some([program, args @ ..]) if !program.is_empty() => {
                    // A bare name is looked up on PATH; anything with a slash is a path from the config dir.
                    let program =
                        if program.contains('/') { resolve(base_dir, program) } else { PathBuf::from(program) };
                    Some((Target::Exec { program, args: args.to_vec() }, None, Vec::new()))
                }
                _ => {
                    p.push(
                        format!("{at}.command"),
                        "missing or empty; write e.g. command = [\"./scripts/notify.sh\", \"--fast\"]",
                    );
                    None
                }
            }
        }
        Some("rust") => {
            extra(p, raw.url.is_some(), "url", "rust");
            extra(p, raw.command.is_some(), "command", "rust");
            http_only(p, "rust");
            let handler = raw.handler.clone().or_else(|| raw.name.clone())?;
            Some((Target::Rust { handler }, None, Vec::new()))
        }
        Some("pull") => {
            extra(p, raw.url.is_some(), "url", "pull");
            extra(p, raw.command.is_some(), "command", "pull");
            extra(p, raw.handler.is_some(), "handler", "pull");
            extra(p, raw.sign.is_some(), "sign", "pull");
            http_only(p, "pull");
            Some((Target::Pull { token: None }, None, Vec::new()))
        }
        Some(other) => {
            p.push(format!("{at}.type"), format!("unknown type {other:?}; accepted: \"http\", \"exec\", \"rust\", \"pull\", \"nats\", \"rabbitmq\", \"redis\", \"mqtt\""));
            None
        }
        None => {
            p.push(format!("{at}.type"), "missing; accepted: \"http\", \"exec\", \"rust\", \"pull\", \"nats\", \"rabbitmq\", \"redis\", \"mqtt\"");
            None
        }
    }
}

/// Where a pull destination's own token is (`token_env` or `token_file`, at most one; only `pull` takes them).
fn pull_token(raw: &RawDestination, at: &str, base_dir: &Path, p: &mut Problems) -> Option<Named> {
    let pull = raw.kind.as_deref() == Some("pull");
    let named = match (&raw.token_env, &raw.token_file) {
        (None, None) => return None,
        (Some(var), None) => Named { key: format!("{at}.token_env"), source: SecretRef::Env(var.clone()) },
        (None, Some(file)) => {
            Named { key: format!("{at}.token_file"), source: SecretRef::File(resolve(base_dir, file)) }
        }
        (Some(_), Some(_)) => {
            p.push(format!("{at}.token_env"), "set only one of token_env or token_file");
            return None;
        }
    };
    if !pull {
        let kind = raw.kind.as_deref().unwrap_or("?");
        p.push(named.key, format!("not used by type = \"{kind}\"; only a pull destination has a token"));
        return None;
    }
    Some(named)
}

/// Where a Standard Webhooks signing secret is (`whsec_` followed by base64, decoded by the edge).
fn signing_key(raw: &raw::RawSign, at: &str, base_dir: &Path, p: &mut Problems) -> Option<Named> {
    match (&raw.secret_env, &raw.secret_file) {
        (Some(var), None) => Some(Named { key: format!("{at}.sign.secret_env"), source: SecretRef::Env(var.clone()) }),
        (None, Some(file)) => {
            Some(Named { key: format!("{at}.sign.secret_file"), source: SecretRef::File(resolve(base_dir, file)) })
        }
        _ => {
            p.push(format!("{at}.sign"), "set exactly one of secret_env or secret_file");
            None
        }
    }
}

/// Printable ASCII that a request path never carries unescaped (RFC 3986: not in a path).
const UNSENT: &[u8] = b"\"<>\\^`{|}";

/// The percent-encoding that turns a config path into what a request would send: controls,
/// space, [`UNSENT`] and (always, by `utf8_percent_encode`) every byte that is not ASCII.
const PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Whether a request can have exactly this path: printable ASCII only, none of [`UNSENT`], and
/// every `%` starting an escape of two hex digits.
fn matchable_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b.is_ascii_graphic()
            && !UNSENT.contains(&b)
            && (b != b'%' || bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
    })
}

pub(super) fn sources(
    raws: &[RawSource],
    known: &HashSet<&str>,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<DraftSource> {
    let mut out = Vec::new();
    let mut names = HashMap::new();
    let mut paths: HashMap<String, usize> = HashMap::new();
    for (i, raw) in raws.iter().enumerate() {
        let Some(name) = name_ok(&raw.name, &format!("sources[{i}].name"), p) else { continue };
        let at = format!("sources[{i}] ({name})");
        if name == super::ALERT_SOURCE {
            p.push(format!("{at}.name"), "is reserved: alerts are the events of the built-in source \"hookgate\"");
        }
        if let Some(prev) = names.insert(name.clone(), i) {
            p.push(format!("{at}.name"), format!("duplicate source name; also used by sources[{prev}]"));
        }
        let path = match raw.path.as_deref() {
            Some(path) if !path.starts_with('/') || path.contains("..") || path.contains('?') || path.contains('#') => {
                p.push(
                    format!("{at}.path"),
                    format!("invalid path {path:?}; must start with '/' and contain no '..', '?' or '#'"),
                );
                None
            }
            Some(path) if !matchable_path(path) => {
                let encoded = percent_encoding::utf8_percent_encode(path, PATH_ESCAPES);
                p.push(
                    format!("{at}.path"),
                    format!(
                        "{path:?} can never match a request: paths are matched as sent, percent-encoded; write {:?}",
                        encoded.to_string()
                    ),
                );
                None
            }
            Some(path) => Some(path.to_string()),
            None => {
                p.push(format!("{at}.path"), "missing; write e.g. path = \"/events/stripe\"");
                None
            }
        };
        if let Some(path) = &path {
            if matches!(path.as_str(), "/healthz" | "/readyz") {
                p.push(format!("{at}.path"), "is reserved for health checks");
            }
            if let Some(prev) = paths.insert(path.clone(), i) {
                p.push(format!("{at}.path"), format!("{path:?} is already used by sources[{prev}]"));
            }
        }
        let verifier = match &raw.verify {
            None => {
                p.push(
                    format!("{at}.verify"),
                    "missing; every source verifies its requests (or says scheme = \"none\", insecure = true)",
                );
                None
            }
            Some(v) => Some(verify_draft(v, base_dir, format!("{at}.verify"))),
        };
        let dedupe = match &raw.dedupe {
            None => Dedupe::Default,
            Some(d) => match (&d.json_pointer, &d.header) {
                (Some(ptr), None) if ptr.is_empty() || ptr.starts_with('/') => Dedupe::JsonPointer(ptr.clone()),
                (Some(ptr), None) => {
                    p.push(
                        format!("{at}.dedupe.json_pointer"),
                        format!("invalid JSON pointer {ptr:?}; it starts with '/', e.g. \"/id\""),
                    );
                    Dedupe::Default
                }
                (None, Some(h)) => match http::HeaderName::try_from(h.as_str()) {
                    Ok(h) => Dedupe::Header(h),
                    Err(_) => {
                        p.push(format!("{at}.dedupe.header"), format!("invalid header name {h:?}"));
                        Dedupe::Default
                    }
                },
                _ => {
                    p.push(format!("{at}.dedupe"), "set exactly one of json_pointer or header");
                    Dedupe::Default
                }
            },
        };
        if raw.deliver_to.is_empty() {
            p.push(format!("{at}.deliver_to"), "empty; name at least one destination");
        }
        if raw.deliver_to.len() > MAX_DELIVER_TO {
            p.push(
                format!("{at}.deliver_to"),
                format!("{} destinations; at most {MAX_DELIVER_TO}", raw.deliver_to.len()),
            );
        }
        let routes = routes(&raw.deliver_to, &format!("{at}.deliver_to"), known, p);
        let rate_limit = raw.rate_limit.as_ref().and_then(|r| match (r.per_second, r.burst) {
            (Some(per_second), burst) if per_second > 0 => Some(RateLimit {
                per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
                burst: u32::try_from(burst.unwrap_or(per_second).max(1)).unwrap_or(u32::MAX),
            }),
            _ => {
                p.push(
                    format!("{at}.rate_limit.per_second"),
                    "missing or zero; write rate_limit = { per_second = 100, burst = 200 }",
                );
                None
            }
        });
        if let (Some(path), Some(verify)) = (path, verifier) {
            let response = raw.response.as_ref().and_then(|r| response(r, &at, p));
            out.push(DraftSource { name, path, verify, dedupe, routes, rate_limit, response });
        }
    }
    out
}

/// A source's `response` table: status 2xx (default 200), a valid content type (default
/// `text/plain`), a body (default empty).
fn response(raw: &raw::RawResponse, at: &str, p: &mut Problems) -> Option<super::SourceResponse> {
    let status = raw.status.unwrap_or(200);
    let mut ok = true;
    if !(200..=299).contains(&status) {
        p.push(format!("{at}.response.status"), format!("{status} is not 2xx; a stored event is always a success"));
        ok = false;
    }
    let content_type = raw.content_type.clone().unwrap_or_else(|| "text/plain".into());
    if http::HeaderValue::from_str(&content_type).is_err() || content_type.is_empty() {
        p.push(format!("{at}.response.content_type"), format!("{content_type:?} is not a valid header value"));
        ok = false;
    }
    ok.then(|| super::SourceResponse { status, content_type, body: raw.body.clone().unwrap_or_default() })
}

/// A `verify` table as verify's [`Spec`], its secrets still references. The table's own problems
/// are verify's to find, once the edge has read the secrets.
fn verify_draft(raw: &RawVerify, base_dir: &Path, at: String) -> VerifyDraft {
    let envs =
        raw.secret_env.iter().map(|v| ("secret_env", v)).chain(raw.secrets_env.iter().map(|v| ("secrets_env", v)));
    let files =
        raw.secret_file.iter().map(|v| ("secret_file", v)).chain(raw.secrets_file.iter().map(|v| ("secrets_file", v)));
    let token = raw.verify_token_env.iter().map(|v| (crate::verify::VERIFY_TOKEN_KEY, v));
    let secrets = envs
        .chain(token)
        .map(|(key, var)| (key, SecretRef::Env(var.clone())))
        .chain(files.map(|(key, file)| (key, SecretRef::File(resolve(base_dir, file)))))
        .collect();
    let spec = Spec {
        scheme: raw.scheme.clone(),
        header: raw.header.clone(),
        encoding: raw.encoding.clone(),
        prefix: raw.prefix.clone(),
        tolerance: raw.tolerance.as_deref().map(duration::parse),
        insecure: raw.insecure,
        user: raw.user.clone(),
        public_url: raw.public_url.clone(),
        algorithm: raw.algorithm.clone(),
        format: raw.format.clone(),
        signed: raw.signed.clone(),
        timestamp_header: raw.timestamp_header.clone(),
        public_key: raw.public_key.clone(),
        verify_token: None,
        secrets: Vec::new(),
    };
    VerifyDraft { at, spec, secrets }
}

/// One entry of `deliver_to`: a destination's name, or a table
/// `{ destination = "...", filter = '<jq>', transform = '<jq>' }` whose expressions compile here.
/// The entries of a `deliver_to` list at `key`: names or tables, each of a known destination, none twice.
fn routes(entries: &[toml::Value], key: &str, known: &HashSet<&str>, p: &mut Problems) -> Vec<super::Route> {
    let mut seen = HashSet::new();
    let mut routes = Vec::new();
    for (j, entry) in entries.iter().enumerate() {
        let key = format!("{key}[{j}]");
        let Some(route) = deliver_entry(entry, &key, p) else { continue };
        let d = &route.destination;
        if !known.contains(d.as_str()) {
            let mut names: Vec<_> = known.iter().copied().collect();
            names.sort_unstable();
            p.push(&key, format!("unknown destination {d:?}; defined: {names:?}"));
        }
        if !seen.insert(d.clone()) {
            p.push(&key, format!("destination {d:?} is listed twice"));
        }
        routes.push(route);
    }
    routes
}

/// `[alerts]` (CONTRACT §8): `deliver_to` like a source's (at least one destination), `on` a list
/// of alert kinds (default: all of them).
pub(super) fn alerts(raw: &raw::RawAlerts, known: &HashSet<&str>, p: &mut Problems) -> super::Alerts {
    if raw.deliver_to.is_empty() {
        p.push(
            "alerts.deliver_to",
            "empty; name at least one destination for the alerts, e.g. deliver_to = [\"oncall\"]",
        );
    }
    let routes = routes(&raw.deliver_to, "alerts.deliver_to", known, p);
    let on = match &raw.on {
        None => super::AlertKind::ALL.to_vec(),
        Some(names) => {
            let mut on = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match super::AlertKind::parse(name) {
                    Some(kind) if !on.contains(&kind) => on.push(kind),
                    Some(_) => p.push(format!("alerts.on[{i}]"), format!("{name:?} is listed twice")),
                    None => {
                        let accepted: Vec<&str> = super::AlertKind::ALL.iter().map(|k| k.as_str()).collect();
                        p.push(
                            format!("alerts.on[{i}]"),
                            format!("unknown alert {name:?}; accepted: {}", accepted.join(", ")),
                        )
                    }
                }
            }
            on
        }
    };
    super::Alerts { deliver_to: routes.iter().map(|r| r.destination.clone()).collect(), routes, on }
}

fn deliver_entry(entry: &toml::Value, key: &str, p: &mut Problems) -> Option<super::Route> {
    let table = match entry {
        toml::Value::String(name) => {
            return Some(super::Route { destination: name.clone(), filter: None, transform: None });
        }
        toml::Value::Table(t) => t,
        other => {
            p.push(
                key,
                format!(
                    "expected a destination's name or a table {{ destination = \"...\", filter = '...', transform = '...' }}, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    for k in table.keys() {
        if !["destination", "filter", "transform"].contains(&k.as_str()) {
            p.push(format!("{key}.{k}"), "unknown key; accepted: destination, filter, transform");
        }
    }
    let text = |field: &str, p: &mut Problems| match table.get(field) {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            p.push(format!("{key}.{field}"), format!("expected a string, found {}", other.type_str()));
            None
        }
    };
    let destination = text("destination", p);
    let expr = |field: &str, p: &mut Problems| compile(&text(field, p)?, &format!("{key}.{field}"), p);
    let filter = expr("filter", p);
    let transform = expr("transform", p);
    let Some(destination) = destination else {
        p.push(format!("{key}.destination"), "missing; name the destination this entry is for");
        return None;
    };
    Some(super::Route { destination, filter, transform })
}

/// A jq expression compiled at load; a problem under `key` if it does not compile.
fn compile(code: &str, key: &str, p: &mut Problems) -> Option<super::Expr> {
    match crate::routing::engine::Program::compile(code) {
        Ok(program) => Some(super::Expr { text: code.to_string(), program: std::sync::Arc::new(program) }),
        Err(e) => {
            p.push(key, e);
            None
        }
    }
}
