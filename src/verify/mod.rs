//! Signature checks, one file per scheme. No network, database or clock: callers pass `now`.
//! Read `Unverified::verify` first; a new provider is one file implementing [`Scheme`] plus one
//! line in [`build`].
//!
//! Every MAC comparison is constant-time (`Mac::verify_slice` or `subtle`), never `==`.

pub(crate) mod hmac_generic;
mod insecure;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;

use crate::config::raw::RawVerify;
use crate::config::{Problems, Secret, resolve};

/// Why a request was refused. The client only ever sees "invalid signature"; this goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    Missing(String),
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the tolerance")]
    Stale,
    #[error("signature does not match any configured secret")]
    Mismatch,
}

/// What a scheme sees of a request.
pub struct Request<'a> {
    /// Path and query as received (Twilio signs the full URL).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// One provider's signature scheme.
pub trait Scheme: Send + Sync + fmt::Debug {
    /// Accepts the request if it is signed by one of `secrets` (several during a rotation).
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError>;

    /// The provider's own delivery or event id, the default dedupe key.
    fn delivery_id(&self, _req: &Request<'_>) -> Option<String> {
        None
    }

    /// The headers the provider would send with `body` (used by `hookgate send`).
    /// `path_and_query` is where the request goes, for schemes that sign the URL.
    fn sign(&self, path_and_query: &str, body: &[u8], secret: &Secret, now: SystemTime) -> Vec<(String, String)>;
}

/// A source's scheme together with its secrets.
#[derive(Clone, Debug)]
pub struct Verifier {
    scheme: Arc<dyn Scheme>,
    secrets: Arc<[Secret]>,
}

impl Verifier {
    /// Builds a verifier from a scheme and its secrets (library use and tests).
    pub fn new(scheme: Arc<dyn Scheme>, secrets: Vec<Secret>) -> Self {
        Verifier { scheme, secrets: secrets.into() }
    }

    /// A verifier that accepts everything (scheme `none`): for tests and trusted in-process use.
    pub fn insecure() -> Self {
        Verifier::new(Arc::new(insecure::Insecure), Vec::new())
    }

    /// Headers that sign `body` as the provider would, with the first secret.
    pub fn sign(&self, path_and_query: &str, body: &[u8], now: SystemTime) -> Vec<(String, String)> {
        match self.secrets.first() {
            Some(secret) => self.scheme.sign(path_and_query, body, secret, now),
            None => self.scheme.sign(path_and_query, body, &Secret::new(Vec::new()), now),
        }
    }
}

/// A request whose signature has not been checked yet.
pub struct Unverified {
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request that passed its source's signature check. Only [`Unverified::verify`] makes one,
/// so nothing unchecked can reach the store.
#[derive(Debug)]
pub struct Verified {
    headers: HeaderMap,
    body: Bytes,
    delivery_id: Option<String>,
}

impl Unverified {
    /// Checks the signature at time `now`.
    pub fn verify(self, verifier: &Verifier, now: SystemTime) -> Result<Verified, VerifyError> {
        let req = Request { path_and_query: &self.path_and_query, headers: &self.headers, body: &self.body };
        verifier.scheme.verify(&req, &verifier.secrets, now)?;
        let delivery_id = verifier.scheme.delivery_id(&req).filter(|id| !id.is_empty() && id.len() <= 256);
        Ok(Verified { headers: self.headers, body: self.body, delivery_id })
    }
}

impl Verified {
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The provider's delivery id, if the scheme knows one and the request carried it.
    pub fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }
}

/// A header's value as text, or `Missing`.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    let value = headers.get(name).ok_or_else(|| VerifyError::Missing(name.to_string()))?;
    value.to_str().map_err(|_| VerifyError::Malformed("header is not visible ASCII"))
}

/// Header values longer than this are refused before any decoding.
pub(crate) const MAX_SIGNATURE_HEADER: usize = 4096;

/// Checks that `now` is within `tolerance` of the unix timestamp `ts`, either way.
#[allow(dead_code)] // used by the timestamped provider schemes
pub(crate) fn fresh(ts: i64, now: SystemTime, tolerance: Duration) -> Result<(), VerifyError> {
    let now = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if now.abs_diff(ts) > tolerance.as_secs() { Err(VerifyError::Stale) } else { Ok(()) }
}

/// The schemes `verify.scheme` accepts, with the optional keys each takes.
const SCHEMES: &[(&str, &[&str])] = &[("hmac-sha256", &["header", "encoding", "prefix"]), ("none", &["insecure"])];

/// Builds a source's verifier from its `verify` table, reporting problems under `at`.
pub fn build(raw: &RawVerify, base_dir: &Path, at: &str, p: &mut Problems) -> Option<Verifier> {
    let names: Vec<&str> = SCHEMES.iter().map(|(n, _)| *n).collect();
    let Some(name) = raw.scheme.as_deref() else {
        p.push(format!("{at}.scheme"), format!("missing; accepted: {names:?}"));
        return None;
    };
    let Some((_, takes)) = SCHEMES.iter().find(|(n, _)| *n == name) else {
        p.push(format!("{at}.scheme"), format!("unknown scheme {name:?}; accepted: {names:?}"));
        return None;
    };
    for (key, present) in [
        ("header", raw.header.is_some()),
        ("encoding", raw.encoding.is_some()),
        ("prefix", raw.prefix.is_some()),
        ("tolerance", raw.tolerance.is_some()),
        ("insecure", raw.insecure.is_some()),
        ("user", raw.user.is_some()),
        ("public_url", raw.public_url.is_some()),
    ] {
        if present && !takes.contains(&key) {
            p.push(format!("{at}.{key}"), format!("not used by scheme {name:?}"));
        }
    }
    let before = p.len();
    let scheme: Option<Arc<dyn Scheme>> = match name {
        "hmac-sha256" => hmac_generic::HmacSha256::from_config(raw, at, p).map(|s| Arc::new(s) as _),
        "none" => insecure::Insecure::from_config(raw, at, p).map(|s| Arc::new(s) as _),
        _ => None,
    };
    let secrets = if name == "none" { Vec::new() } else { secrets(raw, base_dir, at, p) };
    if p.len() > before {
        return None;
    }
    Some(Verifier::new(scheme?, secrets))
}

/// Resolves `secret_env`, `secrets_env`, `secret_file` and `secrets_file`; at least one is required.
fn secrets(raw: &RawVerify, base_dir: &Path, at: &str, p: &mut Problems) -> Vec<Secret> {
    let mut out = Vec::new();
    let envs =
        raw.secret_env.iter().map(|v| ("secret_env", v)).chain(raw.secrets_env.iter().map(|v| ("secrets_env", v)));
    for (key, var) in envs {
        match Secret::from_env(var) {
            Ok(s) => out.push(s),
            Err(e) => p.push(format!("{at}.{key}"), e),
        }
    }
    let files =
        raw.secret_file.iter().map(|v| ("secret_file", v)).chain(raw.secrets_file.iter().map(|v| ("secrets_file", v)));
    for (key, file) in files {
        match Secret::from_file(&resolve(base_dir, file)) {
            Ok(s) => out.push(s),
            Err(e) => p.push(format!("{at}.{key}"), e),
        }
    }
    let named = raw.secret_env.is_some()
        || !raw.secrets_env.is_empty()
        || raw.secret_file.is_some()
        || !raw.secrets_file.is_empty();
    if !named {
        p.push(
            format!("{at}.secret_env"),
            "missing; name the secret with secret_env, secrets_env, secret_file or secrets_file",
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub const T0: u64 = 1_700_000_000;

    pub fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::try_from(*k).unwrap(), http::HeaderValue::from_str(v).unwrap());
        }
        h
    }

    pub fn check(
        scheme: &dyn Scheme,
        secrets: &[&str],
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(s.as_bytes())).collect();
        scheme.verify(&Request { path_and_query: "/", headers, body }, &secrets, now)
    }
}
