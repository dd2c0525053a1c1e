//! What a source's `verify` table says, as plain values that the config fills in, and the one
//! place that turns it into a [`Verifier`]. Nothing here reads the environment or a file: the
//! config's edge has already read every secret (or failed to, which is reported here, at the
//! secret's key, only if the scheme takes secrets).
//!
//! A new provider scheme is one file in `verify/` with a `from_spec`, one entry in [`SCHEMES`] and
//! one arm in [`Verifier::build`].

use std::sync::Arc;
use std::time::Duration;

use super::{DEFAULT_TOLERANCE, Scheme, Verifier};
use super::{basic, bearer, github, gitlab, hmac_generic, insecure, shopify, slack, standard_webhooks, stripe, twilio};
use crate::secret::Secret;

/// A source's `verify` table. Each field is as written (the config only parses durations);
/// each scheme reads what it needs and [`Verifier::build`] refuses keys a scheme does not take.
#[derive(Debug, Default)]
pub struct Spec {
    pub scheme: Option<String>,
    pub header: Option<String>,
    pub encoding: Option<String>,
    pub prefix: Option<String>,
    /// `tolerance`, parsed (or why it does not parse: reported only by a scheme that takes one).
    pub tolerance: Option<Result<Duration, String>>,
    pub insecure: Option<bool>,
    pub user: Option<String>,
    pub public_url: Option<String>,
    /// Every secret the table names, in the order `secret_env`, `secrets_env`, `secret_file`,
    /// `secrets_file` (several during a rotation).
    pub secrets: Vec<SecretInput>,
}

/// One secret named by a `verify` table, as the config's edge read it.
#[derive(Debug)]
pub struct SecretInput {
    /// The key of the table that names it: one of [`SECRET_KEYS`].
    pub field: &'static str,
    /// Where it comes from, for messages: "environment variable X" or "secret file /p".
    pub origin: String,
    /// The value read, or why it could not be read (the reason never contains a value).
    pub value: Result<Secret, String>,
}

/// The keys that name a source's secrets.
pub const SECRET_KEYS: [&str; 4] = ["secret_env", "secrets_env", "secret_file", "secrets_file"];

/// Problems found while building, each under its key inside the `verify` table (`"user"`,
/// `"secret_env"`); the config prefixes the table's own key.
#[derive(Debug, Default)]
pub struct Issues(pub Vec<(String, String)>);

impl Issues {
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push((key.into(), reason.into()));
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The schemes `verify.scheme` accepts, with the optional keys each takes (besides the secrets).
pub const SCHEMES: &[(&str, &[&str])] = &[
    ("hmac-sha256", &["header", "encoding", "prefix"]),
    ("github", &[]),
    ("stripe", &["tolerance"]),
    ("shopify", &[]),
    ("slack", &["tolerance"]),
    ("standard-webhooks", &["tolerance"]),
    ("gitlab", &[]),
    ("twilio", &["public_url"]),
    ("basic", &["user"]),
    ("bearer", &[]),
    ("none", &["insecure"]),
];

impl Verifier {
    /// Builds a source's verifier from its `verify` table, or says every problem with its key.
    pub fn build(spec: Spec) -> Result<Verifier, Vec<(String, String)>> {
        let mut p = Issues::default();
        match build(spec, &mut p) {
            Some(v) if p.0.is_empty() => Ok(v),
            _ => Err(p.0),
        }
    }
}

fn build(spec: Spec, p: &mut Issues) -> Option<Verifier> {
    let names: Vec<&str> = SCHEMES.iter().map(|(n, _)| *n).collect();
    let Some(name) = spec.scheme.as_deref() else {
        p.push("scheme", format!("missing; accepted: {names:?}"));
        return None;
    };
    let Some((_, takes)) = SCHEMES.iter().find(|(n, _)| *n == name) else {
        p.push("scheme", format!("unknown scheme {name:?}; accepted: {names:?}"));
        return None;
    };
    for (key, present) in [
        ("header", spec.header.is_some()),
        ("encoding", spec.encoding.is_some()),
        ("prefix", spec.prefix.is_some()),
        ("tolerance", spec.tolerance.is_some()),
        ("insecure", spec.insecure.is_some()),
        ("user", spec.user.is_some()),
        ("public_url", spec.public_url.is_some()),
    ] {
        if present && !takes.contains(&key) {
            p.push(key, format!("not used by scheme {name:?}"));
        }
    }
    let before = p.len();
    let scheme: Option<Arc<dyn Scheme>> = match name {
        "hmac-sha256" => hmac_generic::HmacSha256::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "github" => Some(Arc::new(github::scheme())),
        "stripe" => stripe::Stripe::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "shopify" => Some(Arc::new(shopify::scheme())),
        "slack" => slack::Slack::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "standard-webhooks" => standard_webhooks::StandardWebhooks::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "gitlab" => Some(Arc::new(gitlab::GitLab)),
        "twilio" => twilio::Twilio::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "basic" => basic::Basic::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "bearer" => Some(Arc::new(bearer::Bearer)),
        "none" => insecure::Insecure::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        _ => None,
    };
    let secrets = if name == "none" { Vec::new() } else { keys(spec.secrets, p, scheme.as_deref()) };
    if p.len() > before {
        return None;
    }
    Some(Verifier::new(scheme?, secrets))
}

/// Each secret as the scheme's key ([`Scheme::key`]); one that could not be read, or that the
/// scheme refuses, is a problem at its key. At least one is required.
fn keys(inputs: Vec<SecretInput>, p: &mut Issues, scheme: Option<&dyn Scheme>) -> Vec<Secret> {
    if inputs.is_empty() {
        p.push("secret_env", "missing; name the secret with secret_env, secrets_env, secret_file or secrets_file");
        return Vec::new();
    }
    let mut out = Vec::new();
    for SecretInput { field, origin, value } in inputs {
        let key_of = |s: Secret| match scheme {
            Some(scheme) => scheme.key(s).map_err(|e| format!("{origin}: {e}")),
            None => Ok(s),
        };
        match value.and_then(key_of) {
            Ok(s) => out.push(s),
            Err(e) => p.push(field, e),
        }
    }
    out
}

/// The replay window of a timestamped scheme: `tolerance`, default 5 minutes.
pub(crate) fn tolerance(spec: &Spec, p: &mut Issues) -> Option<Duration> {
    match &spec.tolerance {
        None => Some(DEFAULT_TOLERANCE),
        Some(Ok(d)) => Some(*d),
        Some(Err(e)) => {
            p.push("tolerance", e.clone());
            None
        }
    }
}
