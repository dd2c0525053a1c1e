//! Signature checks, one file per scheme. No network, database or clock: callers pass `now`.
//! Read `Unverified::verify` first; a new provider is one file implementing [`Scheme`] plus one
//! row and one arm in `build.rs` (`SCHEMES`, [`Verifier::build`]); `spec.rs` is what config fills in. docs/PROVIDERS.md describes each scheme for operators.
//!
//! Every MAC or token comparison is constant-time (`Mac::verify_slice` or `subtle`), never `==`.

pub mod basic;
pub mod bearer;
mod build;
pub mod discord;
#[doc(hidden)]
pub mod fuzzing;
pub mod github;
pub mod gitlab;
pub mod graph;
pub mod handshake;
pub mod hmac;
pub mod hmac_generic;
mod insecure;
pub mod mailgun;
pub mod okta;
pub mod presets;
pub mod sendgrid;
pub mod shopify;
pub mod slack;
mod spec;
pub mod standard_webhooks;
pub mod stripe;
mod template;
pub mod twilio;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;

pub use build::{SCHEMES, VERIFY_TOKEN_KEY};
pub use handshake::{Handshake, HandshakeError};
pub(crate) use spec::tolerance;
pub use spec::{SECRET_KEYS, SecretInput, Spec};

use crate::secret::Secret;

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
    /// `POST` for every request `verify` sees; `GET` for a handshake.
    pub method: &'a str,
    /// Path and query as received (Twilio signs the full URL).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// One provider's signature scheme.
pub trait Scheme: Send + Sync + fmt::Debug {
    /// Accepts the request if it is signed by one of `secrets` (several during a rotation).
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError>;

    /// What can be checked before the body is read. A scheme whose credential is a header alone
    /// (a token, a password) checks it here, so a client without the secret never has its body
    /// read; `verify` still decides. The default checks nothing.
    fn check_headers(&self, _headers: &HeaderMap, _secrets: &[Secret]) -> Result<(), VerifyError> {
        Ok(())
    }

    /// The provider's own delivery or event id, the default dedupe key. Called only on a request
    /// that `verify` accepted, so a scheme may parse the body here.
    fn delivery_id(&self, _req: &Request<'_>) -> Option<String> {
        None
    }

    /// The header carrying the credential when the config names it (`hmac-sha256`'s `header`).
    /// Stored headers redact it whatever its name; the providers' fixed headers are redacted by name.
    fn credential_header(&self) -> Option<&str> {
        None
    }

    /// The key that `verify` and `sign` use for a configured secret. Most schemes use the secret's
    /// bytes as they are; Standard Webhooks base64-decodes `whsec_...`. The error says what is
    /// wrong and never contains the value.
    fn key(&self, secret: Secret) -> Result<Secret, String> {
        Ok(secret)
    }

    /// A typical event of this provider, as (Content-Type, body), for `hookgate send` without
    /// `--data`. Each call has a fresh id, so repeated sends are not duplicates.
    fn test_event(&self) -> (&'static str, Vec<u8>) {
        let id = uuid::Uuid::new_v4().simple();
        (
            "application/json",
            format!(r#"{{"id":"evt_test_{id}","event_id":"Ev_test_{id}","type":"hookgate.test"}}"#).into_bytes(),
        )
    }

    /// [`Scheme::test_event`] for a source whose secret is `secret` (Microsoft Graph puts it
    /// in the body).
    fn test_event_for(&self, _secret: &Secret) -> (&'static str, Vec<u8>) {
        self.test_event()
    }

    /// False for a scheme verified with a public key (Discord, SendGrid): `hookgate send`
    /// cannot sign like the provider, having no private key.
    fn can_sign(&self) -> bool {
        true
    }

    /// The request the provider would send with `req.body` to `req.path_and_query` (whose
    /// `Content-Type` is in `req.headers`), signed with `secret`: used by `hookgate send`, and
    /// always accepted by `verify` at `now`.
    fn sign(&self, req: &Request<'_>, secret: &Secret, now: SystemTime) -> Signed;

    /// True if the provider checks a new URL with a `GET` (X's CRC, Meta, Dropbox, Okta): every
    /// other scheme's source answers a `GET` with 405.
    fn answers_get(&self) -> bool {
        false
    }

    /// The provider's check of a new URL (CONTRACT §9), if `req` is one: the answer, made only
    /// after the scheme checked what the provider signs, or why it is refused. `None` for an
    /// ordinary event, which then goes through `verify`. Never stored, never delivered.
    fn handshake(
        &self,
        _req: &Request<'_>,
        _secrets: &[Secret],
        _now: SystemTime,
    ) -> Option<Result<Handshake, HandshakeError>> {
        None
    }

    /// The handshake request the provider would send to `path` (`hookgate send --handshake`),
    /// as (method, path and query, headers, body), or `None` if the provider has none.
    fn sign_handshake(&self, _path: &str, _secret: &Secret, _now: SystemTime) -> Option<HandshakeRequest> {
        None
    }
}

/// A handshake request as the provider sends it, for `hookgate send --handshake`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    pub method: &'static str,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What [`Scheme::sign`] produces: where to post and the headers to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Usually the path and query it was given; Twilio adds `bodySHA256` for a JSON body.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    /// A body to send instead of the one given (Mailgun signs inside the body).
    pub body: Option<Vec<u8>>,
}

impl Signed {
    /// Headers for a request that goes where it was going.
    pub fn headers(req: &Request<'_>, headers: Vec<(String, String)>) -> Self {
        Signed { path_and_query: req.path_and_query.to_string(), headers, body: None }
    }
}

/// A source's scheme together with its secrets.
#[derive(Clone, Debug)]
pub struct Verifier {
    scheme: Arc<dyn Scheme>,
    secrets: Arc<[Secret]>,
}

impl Verifier {
    /// Builds a verifier from a scheme and its secrets (library use and tests). The secrets are
    /// keys as the scheme uses them: pass each through [`Scheme::key`] first.
    pub fn new(scheme: Arc<dyn Scheme>, secrets: Vec<Secret>) -> Self {
        Verifier { scheme, secrets: secrets.into() }
    }

    /// A verifier that accepts everything (scheme `none`): for tests and trusted in-process use.
    pub fn insecure() -> Self {
        Verifier::new(Arc::new(insecure::Insecure), Vec::new())
    }

    /// See [`Scheme::check_headers`]: refuses early what `verify` would refuse. Passing it makes
    /// nothing verified.
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), VerifyError> {
        self.scheme.check_headers(headers, &self.secrets)
    }

    /// See [`Scheme::credential_header`].
    pub fn credential_header(&self) -> Option<&str> {
        self.scheme.credential_header()
    }

    /// See [`Scheme::answers_get`].
    pub fn answers_get(&self) -> bool {
        self.scheme.answers_get()
    }

    /// See [`Scheme::handshake`]: the answer to a provider's check of a new URL, if the request
    /// (`method` GET or POST) is one.
    pub fn handshake(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Option<Result<Handshake, HandshakeError>> {
        let req = Request { method, path_and_query, headers, body };
        self.scheme.handshake(&req, &self.secrets, now)
    }

    /// See [`Scheme::sign_handshake`], with the first secret.
    pub fn sign_handshake(&self, path: &str, now: SystemTime) -> Option<HandshakeRequest> {
        let none = Secret::new(Vec::new());
        self.scheme.sign_handshake(path, self.secrets.first().unwrap_or(&none), now)
    }

    /// A typical event of this source's provider: (Content-Type, body). See [`Scheme::test_event`].
    pub fn test_event(&self) -> (&'static str, Vec<u8>) {
        match self.secrets.first() {
            Some(secret) => self.scheme.test_event_for(secret),
            None => self.scheme.test_event(),
        }
    }

    /// See [`Scheme::can_sign`].
    pub fn can_sign(&self) -> bool {
        self.scheme.can_sign()
    }

    /// The request the provider would send: `body` of type `content_type` posted to
    /// `path_and_query`, signed with the first secret.
    pub fn sign(&self, path_and_query: &str, content_type: &str, body: &[u8], now: SystemTime) -> Signed {
        let mut headers = HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        let req = Request { method: "POST", path_and_query, headers: &headers, body };
        match self.secrets.first() {
            Some(secret) => self.scheme.sign(&req, secret, now),
            None => self.scheme.sign(&req, &Secret::new(Vec::new()), now),
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
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
    delivery_id: Option<String>,
}

impl Unverified {
    /// Checks the signature at time `now`.
    pub fn verify(self, verifier: &Verifier, now: SystemTime) -> Result<Verified, VerifyError> {
        let req =
            Request { method: "POST", path_and_query: &self.path_and_query, headers: &self.headers, body: &self.body };
        verifier.scheme.verify(&req, &verifier.secrets, now)?;
        let delivery_id = verifier.scheme.delivery_id(&req).filter(|id| !id.is_empty() && id.len() <= 256);
        Ok(Verified { path_and_query: self.path_and_query, headers: self.headers, body: self.body, delivery_id })
    }
}

impl Verified {
    /// The request target: the path and, after `?`, the query.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

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

/// A signature (or token, id, timestamp) header: present, visible ASCII, trimmed, not empty and
/// at most [`MAX_SIGNATURE_HEADER`] long.
pub(crate) fn signature_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    let value = header(headers, name)?.trim();
    if value.len() > MAX_SIGNATURE_HEADER {
        return Err(VerifyError::Malformed("header too long"));
    }
    if value.is_empty() {
        return Err(VerifyError::Malformed("empty header"));
    }
    Ok(value)
}

/// A unix timestamp in seconds as the providers write it: ASCII digits only (no sign, no fraction).
pub(crate) fn unix_seconds(text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed("timestamp is not unix seconds"));
    }
    text.parse().map_err(|_| VerifyError::Malformed("timestamp is not unix seconds"))
}

/// `now` as unix seconds (0 before the epoch), for schemes that sign a timestamp.
pub(crate) fn unix_now(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Checks that `now` is within `tolerance` of the unix timestamp `ts`, either way.
pub(crate) fn fresh(ts: i64, now: SystemTime, tolerance: Duration) -> Result<(), VerifyError> {
    let now = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if now.abs_diff(ts) > tolerance.as_secs() { Err(VerifyError::Stale) } else { Ok(()) }
}

// The constant-time comparisons every scheme shares, under the names the scheme files use.
pub(crate) use crate::secret::{ct_eq_any as any_equal, ct_eq_hashed as token_matches};

/// The value of query parameter `name` in `path_and_query`, percent-decoded.
pub(crate) fn query_param(path_and_query: &str, name: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A string (or number, as text) at JSON pointer `ptr` of a JSON body, else `None`.
pub(crate) fn json_pointer_field(body: &[u8], ptr: &str) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body).ok()?.pointer(ptr)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A top-level string field of a JSON object body (Stripe's `id`, Slack's `event_id`), else `None`.
pub(crate) fn json_string_field(body: &[u8], field: &str) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body).ok()?.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The tolerance of every timestamped scheme unless configured: what the providers' libraries use.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

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
        let secrets: Vec<Secret> = secrets.iter().map(|s| scheme.key(Secret::new(s.as_bytes())).unwrap()).collect();
        scheme.verify(&Request { method: "POST", path_and_query: "/", headers, body }, &secrets, now)
    }

    /// [`Scheme::check_headers`] with `secrets` (as configured, passed through [`Scheme::key`]).
    pub fn check_headers(scheme: &dyn Scheme, secrets: &[&str], headers: &HeaderMap) -> Result<(), VerifyError> {
        let secrets: Vec<Secret> = secrets.iter().map(|s| scheme.key(Secret::new(s.as_bytes())).unwrap()).collect();
        scheme.check_headers(headers, &secrets)
    }

    /// The headers `scheme` signs `body` with (posted to `/`, as JSON), for building test cases.
    pub fn sign(scheme: &dyn Scheme, secret: &str, body: &[u8], now: SystemTime) -> HeaderMap {
        let json = headers(&[("content-type", "application/json")]);
        let key = scheme.key(Secret::new(secret)).unwrap();
        let signed = scheme.sign(&Request { method: "POST", path_and_query: "/", headers: &json, body }, &key, now);
        let pairs: Vec<(&str, &str)> = signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers(&pairs)
    }

    /// `base` with `name` set to `value` (replacing it), or removed when `value` is `None`.
    pub fn with(base: &HeaderMap, name: &str, value: Option<&str>) -> HeaderMap {
        let mut h = base.clone();
        let name = http::HeaderName::try_from(name).unwrap();
        h.remove(&name);
        if let Some(v) = value {
            h.insert(name, http::HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// The text of header `name` in `h`.
    pub fn get(h: &HeaderMap, name: &str) -> String {
        h.get(name).unwrap().to_str().unwrap().to_string()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// Problems (`key: reason`) of a config whose only source has `verify = {verify}`; secret
    /// files `good.txt` (a valid whsec_ secret) and `bad.txt` (not base64) exist beside it.
    fn problems(verify: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.txt"), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        std::fs::write(dir.path().join("bad.txt"), "not base64!").unwrap();
        let text = format!(
            "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n\n\
             [[sources]]\nname = \"s\"\npath = \"/s\"\nverify = {verify}\ndeliver_to = [\"rx\"]\n"
        );
        match Config::from_toml(&text, &dir.path().join("hookgate.toml"), dir.path()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|p| format!("{}: {}", p.key, p.reason)).collect(),
        }
    }

    #[test]
    fn each_scheme_takes_its_keys_and_refuses_others() {
        for verify in [
            r#"{ scheme = "github", secret_file = "good.txt" }"#,
            r#"{ scheme = "stripe", secrets_file = ["good.txt", "bad.txt"], tolerance = "10m" }"#,
            r#"{ scheme = "shopify", secret_file = "good.txt" }"#,
            r#"{ scheme = "slack", secret_file = "good.txt", tolerance = "1m" }"#,
            r#"{ scheme = "standard-webhooks", secret_file = "good.txt", tolerance = "5m" }"#,
            r#"{ scheme = "gitlab", secret_file = "good.txt" }"#,
            r#"{ scheme = "twilio", secret_file = "good.txt", public_url = "https://h.example:8443/twilio" }"#,
            r#"{ scheme = "basic", secret_file = "good.txt", user = "hooks" }"#,
            r#"{ scheme = "bearer", secret_file = "good.txt" }"#,
        ] {
            assert_eq!(problems(verify), Vec::<String>::new(), "case: {verify}");
        }
        for (verify, want) in [
            (
                r#"{ scheme = "github", secret_file = "good.txt", tolerance = "5m" }"#,
                "verify.tolerance: not used by scheme \"github\"",
            ),
            (
                r#"{ scheme = "stripe", secret_file = "good.txt", header = "X-Sig" }"#,
                "verify.header: not used by scheme \"stripe\"",
            ),
            (
                r#"{ scheme = "stripe", secret_file = "good.txt", public_url = "https://a.example/" }"#,
                "verify.public_url: not used",
            ),
            (
                r#"{ scheme = "slack", secret_file = "good.txt", tolerance = "soon" }"#,
                "verify.tolerance: invalid duration",
            ),
            (
                r#"{ scheme = "bearer", secret_file = "good.txt", user = "u" }"#,
                "verify.user: not used by scheme \"bearer\"",
            ),
            (r#"{ scheme = "gitlab", secret_file = "good.txt", prefix = "x" }"#, "verify.prefix: not used"),
            (r#"{ scheme = "shopify", secret_file = "good.txt", encoding = "hex" }"#, "verify.encoding: not used"),
            (r#"{ scheme = "basic", secret_file = "good.txt" }"#, "verify.user: missing"),
            (r#"{ scheme = "basic", secret_file = "good.txt", user = "a:b" }"#, "verify.user: must not contain ':'"),
            (r#"{ scheme = "twilio", secret_file = "good.txt" }"#, "verify.public_url: missing"),
            (
                r#"{ scheme = "twilio", secret_file = "good.txt", public_url = "http://a.example/t" }"#,
                "must be an https:// URL",
            ),
            (
                r#"{ scheme = "twilio", secret_file = "good.txt", public_url = "https://a.example/t?x=1" }"#,
                "must not contain a query",
            ),
            (
                r#"{ scheme = "twilio", secret_file = "good.txt", public_url = "https://a.example/t#rc=2" }"#,
                "#fragment",
            ),
            (
                r#"{ scheme = "twilio", secret_file = "good.txt", public_url = "not a url" }"#,
                "verify.public_url: invalid URL",
            ),
            (r#"{ scheme = "bearer" }"#, "verify.secret_env: missing"),
            (r#"{ scheme = "pigeon", secret_file = "good.txt" }"#, "unknown scheme \"pigeon\""),
            (
                r#"{ scheme = "standard-webhooks", secrets_file = ["good.txt", "bad.txt"] }"#,
                "verify.secrets_file: secret file",
            ),
        ] {
            let got = problems(verify);
            assert!(got.iter().any(|p| p.contains(want)), "case: {verify}: want {want:?} in {got:?}");
        }
        let got = problems(r#"{ scheme = "standard-webhooks", secrets_file = ["good.txt", "bad.txt"] }"#);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("bad.txt") && got[0].contains("whsec_"), "{got:?}");
        assert!(!got[0].contains("not base64!"), "the secret's value must never be shown: {got:?}");
    }

    /// `hookgate check` explains a bad declarative table, preset or public-key scheme under its key.
    #[test]
    fn the_new_schemes_explain_their_problems_by_key() {
        const ED: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        for verify in [
            r#"{ scheme = "hmac", header = "Paddle-Signature", format = "ts={timestamp};h1={signature}", signed = "{timestamp}:{body}", tolerance = "1m", secret_file = "good.txt" }"#,
            r#"{ scheme = "hmac", header = "X-Sig", algorithm = "sha512", encoding = "base64", prefix = "v1=", signed = "{method}{url}{header:X-Id}{body}", public_url = "https://a.example/h", secret_file = "good.txt" }"#,
            r#"{ scheme = "paddle", secret_file = "good.txt", tolerance = "1m" }"#,
            r#"{ scheme = "square", secret_file = "good.txt", public_url = "https://a.example/sq" }"#,
            r#"{ scheme = "svix", secret_file = "good.txt" }"#,
            r#"{ scheme = "mailgun", secret_file = "good.txt", tolerance = "2m" }"#,
            r#"{ scheme = "microsoft-graph", secret_file = "good.txt" }"#,
            r#"{ scheme = "okta", secret_file = "good.txt" }"#,
        ] {
            assert_eq!(problems(verify), Vec::<String>::new(), "case: {verify}");
        }
        assert_eq!(problems(&format!(r#"{{ scheme = "discord", public_key = "{ED}" }}"#)), Vec::<String>::new());
        for (verify, want) in [
            (r#"{ scheme = "hmac", secret_file = "good.txt" }"#.to_string(), "verify.header: missing"),
            (r#"{ scheme = "hmac", header = "X", signed = "{bdy}", secret_file = "good.txt" }"#.into(), "verify.signed: unknown placeholder {bdy}"),
            (r#"{ scheme = "hmac", header = "X", signed = "{body", secret_file = "good.txt" }"#.into(), "verify.signed: unclosed '{'"),
            (r#"{ scheme = "hmac", header = "X", format = "t={timestamp}", signed = "{timestamp}{body}", secret_file = "good.txt" }"#.into(), "verify.format: has no {signature}"),
            (r#"{ scheme = "hmac", header = "X", signed = "{timestamp}{body}", secret_file = "good.txt" }"#.into(), "verify.signed: uses {timestamp}"),
            (r#"{ scheme = "hmac", header = "X", signed = "{url}{body}", secret_file = "good.txt" }"#.into(), "verify.public_url: missing"),
            (r#"{ scheme = "hmac", header = "X", tolerance = "5m", secret_file = "good.txt" }"#.into(), "verify.tolerance: not used"),
            (r#"{ scheme = "hmac", header = "X", algorithm = "md5", secret_file = "good.txt" }"#.into(), "verify.algorithm: unknown algorithm \"md5\""),
            (r#"{ scheme = "linear", secret_file = "good.txt", tolerance = "5m" }"#.into(), "verify.tolerance: not used by scheme \"linear\""),
            (r#"{ scheme = "paddle", secret_file = "good.txt", signed = "{body}" }"#.into(), "verify.signed: not used by scheme \"paddle\""),
            (r#"{ scheme = "square", secret_file = "good.txt" }"#.into(), "verify.public_url: missing"),
            (r#"{ scheme = "meta", secret_file = "good.txt" }"#.into(), "verify.verify_token_env: missing"),
            (r#"{ scheme = "meta", secret_file = "good.txt", verify_token_env = "HOOKGATE_TEST_SURELY_UNSET_VT" }"#.into(), "verify.verify_token_env: environment variable HOOKGATE_TEST_SURELY_UNSET_VT is not set"),
            (r#"{ scheme = "discord", public_key = "zz" }"#.into(), "verify.public_key: must be hex"),
            (r#"{ scheme = "discord" }"#.into(), "verify.public_key: missing"),
            (format!(r#"{{ scheme = "discord", public_key = "{ED}", secret_file = "good.txt" }}"#), "verify.secret_file: not used by scheme \"discord\""),
            (r#"{ scheme = "sendgrid", public_key = "AAAA" }"#.into(), "verify.public_key: is not a P-256"),
            (r#"{ scheme = "github", secret_file = "good.txt", public_key = "AAAA" }"#.into(), "verify.public_key: not used by scheme \"github\""),
        ] {
            let got = problems(&verify);
            assert!(got.iter().any(|p| p.contains(want)), "case: {verify}: want {want:?} in {got:?}");
        }
    }
}
