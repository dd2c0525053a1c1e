//! Providers' checks of a new webhook URL (CONTRACT §9): what each asks and what it expects back.
//! Every answer is made only after the scheme checked what the provider signs (or, where the
//! provider signs nothing, the answer itself needs the secret or only echoes a value). The
//! ingest side (`ingest/handshake.rs`) turns a [`Handshake`] into a response; nothing here is
//! stored or delivered.
//!
//! - Zoom `endpoint.url_validation`: <https://developers.zoom.us/docs/api/webhooks/#validate-your-webhook-endpoint>
//! - X (Twitter) CRC: <https://docs.x.com/x-api/enterprise-gnip-2.0/fundamentals/account-activity#challenge-response-checks>
//! - Meta `hub.challenge`: <https://developers.facebook.com/docs/graph-api/webhooks/getting-started#verification-requests>
//! - Dropbox `challenge`: <https://www.dropbox.com/developers/reference/webhooks#documentation>
//!
//! Slack, Microsoft Graph, Discord and Okta answer in their own scheme files.

use std::time::SystemTime;

use base64::Engine;
use hmac::Mac;

use super::hmac_generic::mac;
use super::{HandshakeRequest, Request, VerifyError, query_param};
use crate::secret::Secret;

/// The answer to a handshake: status, content type, body, and whether to add
/// `X-Content-Type-Options: nosniff` (Dropbox asks for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub nosniff: bool,
}

impl Handshake {
    pub fn json(value: serde_json::Value) -> Self {
        Handshake {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            nosniff: false,
        }
    }

    pub fn text(text: &str) -> Self {
        Handshake { status: 200, content_type: "text/plain", body: text.as_bytes().to_vec(), nosniff: false }
    }
}

/// Why a handshake is refused: 401 (the check failed), 403 (Meta's verify token), 400 (the
/// challenge parameter is missing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake check failed: {0}")]
    Verify(#[from] VerifyError),
    #[error("wrong or missing verify token")]
    Forbidden,
    #[error("handshake without its {0} parameter")]
    MissingChallenge(&'static str),
}

/// The handshakes a declarative (preset) scheme may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zoom,
    TwitterCrc,
    Meta,
    Dropbox,
}

impl Kind {
    pub fn answers_get(self) -> bool {
        matches!(self, Kind::TwitterCrc | Kind::Meta | Kind::Dropbox)
    }
}

/// A field of a JSON object body at `ptr`, as text.
fn field(body: &[u8], ptr: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?.pointer(ptr)?.as_str().map(str::to_string)
}

/// What a handshake needs of the scheme that answers it (the declarative scheme's plan, `hmac.rs`),
/// so that this file does not import it.
pub(crate) trait Signs: super::Scheme {
    /// The secret that signed `req`, if one did.
    fn signer<'s>(&self, req: &Request<'_>, secrets: &'s [Secret], now: SystemTime) -> Result<&'s Secret, VerifyError>;
    /// Meta's `hub.verify_token` as configured (empty when none).
    fn verify_token_bytes(&self) -> &[u8];
    /// Whether `given` is the configured verify token (constant time).
    fn verify_token_matches(&self, given: &str) -> bool;
}

/// base64 of HMAC-SHA256(`key`, `data`).
fn b64_sha256(key: &[u8], data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(key, &[data]).finalize().into_bytes())
}

pub(crate) fn answer(
    kind: Kind,
    plan: &dyn Signs,
    req: &Request<'_>,
    secrets: &[Secret],
    now: SystemTime,
) -> Option<Result<Handshake, HandshakeError>> {
    let get = req.method == "GET";
    match kind {
        Kind::Zoom if !get => {
            if field(req.body, "/event").as_deref() != Some("endpoint.url_validation") {
                return None;
            }
            Some(zoom(plan, req, secrets, now))
        }
        Kind::TwitterCrc if get => Some(match query_param(req.path_and_query, "crc_token") {
            None => Err(HandshakeError::MissingChallenge("crc_token")),
            Some(token) => match secrets.first() {
                None => Err(VerifyError::Mismatch.into()),
                Some(s) => Ok(Handshake::json(
                    serde_json::json!({ "response_token": format!("sha256={}", b64_sha256(s.expose(), token.as_bytes())) }),
                )),
            },
        }),
        Kind::Meta if get => Some(meta(plan, req)),
        Kind::Dropbox if get => Some(match query_param(req.path_and_query, "challenge") {
            None => Err(HandshakeError::MissingChallenge("challenge")),
            Some(c) => Ok(Handshake { nosniff: true, ..Handshake::text(&c) }),
        }),
        _ => None,
    }
}

fn zoom(plan: &dyn Signs, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<Handshake, HandshakeError> {
    let secret = plan.signer(req, secrets, now)?;
    let Some(plain) = field(req.body, "/payload/plainToken") else {
        return Err(HandshakeError::MissingChallenge("payload.plainToken"));
    };
    let encrypted = hex::encode(mac(secret.expose(), &[plain.as_bytes()]).finalize().into_bytes());
    Ok(Handshake::json(serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted })))
}

fn meta(plan: &dyn Signs, req: &Request<'_>) -> Result<Handshake, HandshakeError> {
    let q = |name| query_param(req.path_and_query, name);
    let Some(challenge) = q("hub.challenge") else { return Err(HandshakeError::MissingChallenge("hub.challenge")) };
    match (q("hub.mode").as_deref(), q("hub.verify_token")) {
        (Some("subscribe"), Some(token)) if plan.verify_token_matches(&token) => Ok(Handshake::text(&challenge)),
        _ => Err(HandshakeError::Forbidden),
    }
}

/// The handshake request the provider sends (`hookgate send --handshake`).
pub(crate) fn sign(
    kind: Kind,
    plan: &dyn Signs,
    path: &str,
    secret: &Secret,
    now: SystemTime,
) -> Option<HandshakeRequest> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let get = |query: String| HandshakeRequest {
        method: "GET",
        path_and_query: format!("{path}?{query}"),
        headers: Vec::new(),
        body: Vec::new(),
    };
    Some(match kind {
        Kind::Zoom => {
            let body = serde_json::json!({ "event": "endpoint.url_validation", "payload": { "plainToken": token }, "event_ts": super::unix_now(now) * 1000 })
                .to_string()
                .into_bytes();
            let json = {
                let mut h = http::HeaderMap::new();
                h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                h
            };
            let req = Request { method: "POST", path_and_query: path, headers: &json, body: &body };
            let signed = plan.sign(&req, secret, now);
            let mut headers = signed.headers;
            headers.push(("content-type".into(), "application/json".into()));
            HandshakeRequest { method: "POST", path_and_query: signed.path_and_query, headers, body }
        }
        Kind::TwitterCrc => get(format!("crc_token={token}")),
        Kind::Meta => {
            let verify: String = url::form_urlencoded::byte_serialize(plan.verify_token_bytes()).collect();
            get(format!("hub.mode=subscribe&hub.challenge={token}&hub.verify_token={verify}"))
        }
        Kind::Dropbox => get(format!("challenge={token}")),
    })
}
