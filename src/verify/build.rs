//! Builds a source's [`Verifier`] from its [`Spec`]: the scheme's name, the keys each scheme
//! takes, and each secret as the scheme's key.
//!
//! A new provider scheme is one file in `verify/` with a `from_spec(&Spec, &mut Issues)`, one row
//! in [`SCHEMES`] and one arm in `build` here.

use std::sync::Arc;

use super::spec::{Issues, SecretInput, Spec};
use super::{Scheme, Verifier};
use super::{basic, bearer, github, gitlab, hmac_generic, insecure, shopify, slack, standard_webhooks, stripe, twilio};
use crate::secret::Secret;

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
