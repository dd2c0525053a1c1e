//! Builds a source's [`Verifier`] from its [`Spec`]: the scheme's name, the keys each scheme
//! takes, and each secret as the scheme's key.
//!
//! A new provider is one row in `presets.rs` when the declarative scheme can express it;
//! otherwise one file in `verify/` with a `from_spec(&Spec, &mut Issues)`, one row in
//! [`SCHEMES`] and one arm in `build` here.

use std::sync::Arc;

use super::spec::{Issues, SecretInput, Spec};
use super::{Scheme, Verifier};
use super::{basic, bearer, discord, github, gitlab, graph, hmac, hmac_generic, insecure, mailgun, okta, presets};
use super::{sendgrid, shopify, slack, standard_webhooks, stripe, twilio};
use crate::secret::Secret;

/// The schemes written in code that `verify.scheme` accepts, with the optional keys each takes
/// (besides the secrets). The presets of `presets.rs` are accepted too.
pub const SCHEMES: &[(&str, &[&str])] = &[
    ("hmac-sha256", &["header", "encoding", "prefix"]),
    (
        "hmac",
        &[
            "header",
            "algorithm",
            "encoding",
            "prefix",
            "format",
            "signed",
            "timestamp_header",
            "tolerance",
            "public_url",
        ],
    ),
    ("github", &[]),
    ("stripe", &["tolerance"]),
    ("shopify", &[]),
    ("slack", &["tolerance"]),
    ("standard-webhooks", &["tolerance"]),
    ("svix", &["tolerance"]),
    ("clerk", &["tolerance"]),
    ("resend", &["tolerance"]),
    ("gitlab", &[]),
    ("twilio", &["public_url"]),
    ("mailgun", &["tolerance"]),
    ("sendgrid", &["public_key", "tolerance"]),
    ("discord", &["public_key", "tolerance"]),
    ("microsoft-graph", &[]),
    ("okta", &[]),
    ("basic", &["user"]),
    ("bearer", &[]),
    ("none", &["insecure"]),
];

/// Schemes checked with a public key: they take no secret.
const KEYLESS: &[&str] = &["discord", "sendgrid"];

/// Every scheme name `verify.scheme` accepts: [`SCHEMES`] and the presets.
pub fn names() -> Vec<&'static str> {
    SCHEMES.iter().map(|(n, _)| *n).chain(presets::PRESETS.iter().map(|p| p.name)).collect()
}

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

/// The key under which config lists the verify token among a table's secrets.
pub const VERIFY_TOKEN_KEY: &str = "verify_token_env";

fn build(mut spec: Spec, p: &mut Issues) -> Option<Verifier> {
    let (tokens, secrets): (Vec<SecretInput>, Vec<SecretInput>) =
        std::mem::take(&mut spec.secrets).into_iter().partition(|s| s.field == VERIFY_TOKEN_KEY);
    spec.secrets = secrets;
    if let Some(t) = tokens.into_iter().next() {
        // A read error already names the variable.
        spec.verify_token = Some(t.value);
    }
    let names = names();
    let Some(name) = spec.scheme.as_deref() else {
        p.push("scheme", format!("missing; accepted: {names:?}"));
        return None;
    };
    let preset = presets::find(name);
    let takes: Vec<&str> = match (SCHEMES.iter().find(|(n, _)| *n == name), preset) {
        (Some((_, takes)), _) => takes.to_vec(),
        (None, Some(preset)) => preset.takes(),
        (None, None) => {
            p.push("scheme", format!("unknown scheme {name:?}; accepted: {names:?}"));
            return None;
        }
    };
    for (key, present) in [
        ("header", spec.header.is_some()),
        ("encoding", spec.encoding.is_some()),
        ("prefix", spec.prefix.is_some()),
        ("tolerance", spec.tolerance.is_some()),
        ("insecure", spec.insecure.is_some()),
        ("user", spec.user.is_some()),
        ("public_url", spec.public_url.is_some()),
        ("algorithm", spec.algorithm.is_some()),
        ("format", spec.format.is_some()),
        ("signed", spec.signed.is_some()),
        ("timestamp_header", spec.timestamp_header.is_some()),
        ("public_key", spec.public_key.is_some()),
        ("verify_token_env", spec.verify_token.is_some()),
    ] {
        if present && !takes.contains(&key) {
            p.push(key, format!("not used by scheme {name:?}"));
        }
    }
    let before = p.len();
    let scheme: Option<Arc<dyn Scheme>> = match name {
        "hmac-sha256" => hmac_generic::HmacSha256::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "hmac" => hmac::Plan::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "github" => Some(Arc::new(github::scheme())),
        "stripe" => stripe::Stripe::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "shopify" => Some(Arc::new(shopify::scheme())),
        "slack" => slack::Slack::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        // Svix, Clerk and Resend sign with Standard Webhooks (svix-* headers).
        "standard-webhooks" | "svix" | "clerk" | "resend" => {
            standard_webhooks::StandardWebhooks::from_spec(&spec, p).map(|s| Arc::new(s) as _)
        }
        "gitlab" => Some(Arc::new(gitlab::GitLab)),
        "twilio" => twilio::Twilio::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "mailgun" => mailgun::Mailgun::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "sendgrid" => sendgrid::SendGrid::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "discord" => discord::Discord::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "microsoft-graph" => Some(Arc::new(graph::Graph)),
        "okta" => Some(Arc::new(okta::Okta)),
        "basic" => basic::Basic::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        "bearer" => Some(Arc::new(bearer::Bearer)),
        "none" => insecure::Insecure::from_spec(&spec, p).map(|s| Arc::new(s) as _),
        _ => preset.and_then(|preset| preset.from_spec(&spec, p)).map(|s| Arc::new(s) as _),
    };
    let secrets = if name == "none" {
        Vec::new()
    } else if KEYLESS.contains(&name) {
        if let Some(first) = spec.secrets.first() {
            p.push(
                first.field,
                format!("not used by scheme {name:?}: it checks with public_key, which is not a secret"),
            );
        }
        Vec::new()
    } else {
        keys(spec.secrets, p, scheme.as_deref())
    };
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
