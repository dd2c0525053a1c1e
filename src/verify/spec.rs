//! What a source's `verify` table says, as plain values that the config fills in; `build.rs`
//! turns it into a [`Verifier`](super::Verifier) and each scheme's `from_spec` reads its part.
//! Nothing here reads the environment or a file: the config's edge has already read every
//! secret (or failed to, which is reported at the secret's key only if the scheme takes secrets).

use std::time::Duration;

use super::DEFAULT_TOLERANCE;
use crate::secret::Secret;

/// A source's `verify` table. Each field is as written (the config only parses durations);
/// each scheme reads what it needs and [`Verifier::build`](super::Verifier::build) refuses keys a scheme does not take.
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
    /// `hmac`: `sha1`, `sha256` (default) or `sha512`.
    pub algorithm: Option<String>,
    /// `hmac`: how the signature header is laid out, e.g. `t={timestamp},v1={signature}`.
    pub format: Option<String>,
    /// `hmac`: what is MACed, e.g. `{timestamp}.{body}` (default `{body}`).
    pub signed: Option<String>,
    /// `hmac`: the header carrying `{timestamp}` when `format` does not.
    pub timestamp_header: Option<String>,
    /// `discord` (hex) and `sendgrid` (base64 DER): the provider's public key, not a secret.
    pub public_key: Option<String>,
    /// `meta`: the verify token named by `verify_token_env`, as the config's edge read it.
    pub verify_token: Option<Result<Secret, String>>,
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

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
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

/// A public-key scheme's `public_key` (parsed by `parse`; `hint` says where to find it when
/// missing) and its `tolerance`.
pub(crate) fn public_key<K>(
    spec: &Spec,
    p: &mut Issues,
    hint: &str,
    parse: fn(&str) -> Result<K, String>,
) -> Option<(K, Duration)> {
    let tolerance = tolerance(spec, p);
    let Some(text) = spec.public_key.as_deref() else {
        p.push("public_key", hint);
        return None;
    };
    let key = parse(text).map_err(|e| p.push("public_key", e)).ok()?;
    Some((key, tolerance?))
}
