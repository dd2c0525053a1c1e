//! `http`: send the original body and Content-Type (POST, or the destination's `method`), with
//! Standard Webhooks headers (`webhook-id` = event id on every attempt, `webhook-timestamp`, and
//! with `sign`, `webhook-signature: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`) and the
//! destination's own `headers`, built once; secret-valued ones are marked sensitive.

use std::time::{Duration, SystemTime};

use crate::clock::SharedClock;

use async_trait::async_trait;
use base64::Engine;
use hmac::Mac;
use http::StatusCode;

use super::{Attempt, AttemptResult, Deliver, EXCERPT, excerpt};
use crate::config::HeaderSource;
use crate::secret::Secret;
use crate::verify::hmac_generic::mac;

pub use super::http_client::client;
use super::http_client::{Body, Client, Route, SendError};

pub struct HttpDestination {
    route: Route,
    uri: http::Uri,
    method: http::Method,
    /// The destination's `headers` (none of them one that hookgate sets: config refuses those),
    /// and `user-agent`.
    headers: http::HeaderMap,
    sign: Option<Secret>,
    timeout: Duration,
    clock: SharedClock,
}

/// The Standard Webhooks signature header value for this message.
pub fn signature(key: &Secret, id: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let sig = mac(key.expose(), &[id.as_bytes(), b".", ts.as_bytes(), b".", body]).finalize().into_bytes();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(sig))
}

/// What an http destination sends besides the event: its method, headers and signing key.
#[derive(Debug, Clone)]
pub struct Options {
    pub method: http::Method,
    pub headers: Vec<(http::HeaderName, HeaderSource)>,
    pub sign: Option<Secret>,
}

impl HttpDestination {
    /// Builds the header values once; one that is not a valid header value is an error naming the
    /// header, never showing the value (a config built in code skips the loader's checks).
    pub fn new(
        client: &Client,
        mut url: reqwest::Url,
        options: Options,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let Options { method, headers: extra, sign } = options;
        let credentials = basic_auth(&mut url);
        let uri: http::Uri = url.as_str().parse().map_err(|e| format!("the url is not a valid request URI: {e}"))?;
        let mut headers = http::HeaderMap::with_capacity(extra.len() + 8);
        for (name, source) in extra {
            let value = source.value().map_err(|_| format!("header {name} has a value that is not valid in HTTP"))?;
            headers.append(name, value);
        }
        // A configured Authorization header wins over the URL's user and password.
        if let Some(value) = credentials
            && !headers.contains_key(http::header::AUTHORIZATION)
        {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("hookgate/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(HttpDestination { route: client.route(&uri), uri, method, headers, sign, timeout, clock })
    }

    /// The request of one attempt; None if the event's id or source cannot be a header value.
    fn request(&self, a: &Attempt, ts: u64) -> Option<http::Request<bytes::Bytes>> {
        let mut req = http::Request::new(a.body.clone());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.clone_from(&self.headers);
        h.insert("webhook-id", http::HeaderValue::from_str(&a.event_id).ok()?);
        h.insert("webhook-timestamp", http::HeaderValue::from(ts));
        h.insert("x-hookgate-source", http::HeaderValue::from_str(&a.source).ok()?);
        h.insert("x-hookgate-attempt", http::HeaderValue::from(a.attempt));
        if let Some(ct) = a.content_type.as_deref().and_then(|ct| http::HeaderValue::from_str(ct).ok()) {
            h.insert(http::header::CONTENT_TYPE, ct);
        }
        if let Some(key) = &self.sign {
            let signature = signature(key, &a.event_id, ts, &a.body);
            h.insert("webhook-signature", http::HeaderValue::from_str(&signature).ok()?);
        }
        if let Some(traceparent) = a.traceparent.as_deref().and_then(|t| http::HeaderValue::from_str(t).ok()) {
            h.insert("traceparent", traceparent);
        }
        Some(req)
    }
}

/// The URL's user and password (`https://user:password@host/...`), taken out of it, as the value
/// of an `Authorization: Basic` header (marked sensitive), as browsers and reqwest send them.
fn basic_auth(url: &mut reqwest::Url) -> Option<http::HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let pair = format!("{}:{}", decode(url.username()), url.password().map(decode).unwrap_or_default());
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut value =
        http::HeaderValue::try_from(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            .ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Retry-After as seconds or an HTTP date (then from `now`).
fn retry_after(value: &http::HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[async_trait]
impl Deliver for HttpDestination {
    async fn deliver(&self, a: &Attempt) -> AttemptResult {
        let ts = self.clock.now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let Some(req) = self.request(a, ts) else {
            // Retrying cannot make it one.
            return AttemptResult {
                permanent: true,
                ..AttemptResult::failure("request failed: the event's id or source is not a valid header value")
            };
        };
        let resp = match self.route.send(req, self.timeout).await {
            Ok(r) => r,
            Err(e) => {
                let timed_out = matches!(e, SendError::TimedOut);
                return AttemptResult { timed_out, error: Some(e.to_string()), ..Default::default() };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return AttemptResult { ok: true, status_code: Some(status.as_u16()), ..Default::default() };
        }
        let wait = if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            resp.headers().get(http::header::RETRY_AFTER).and_then(|v| retry_after(v, self.clock.now()))
        } else {
            None
        };
        // The response body helps diagnose; read a little of it, briefly, and never more than the
        // excerpt keeps: a destination's error page can be endless.
        let mut head = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), read_head(resp.into_body(), &mut head)).await;
        let body = excerpt(&head);
        AttemptResult {
            status_code: Some(status.as_u16()),
            retry_after: wait,
            error: Some(format!("HTTP {status}{}{body}", if body.is_empty() { "" } else { ": " })),
            ..Default::default()
        }
    }
}

/// Appends the response body to `head` until it holds more than [`EXCERPT`] bytes or the body ends.
async fn read_head(mut body: Body, head: &mut Vec<u8>) {
    use http_body_util::BodyExt;
    while head.len() <= EXCERPT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(chunk) = frame.into_data() {
                    head.extend_from_slice(&chunk[..chunk.len().min(EXCERPT + 1 - head.len())]);
                }
            }
            None | Some(Err(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_test_vector() {
        // standard-webhooks libraries/python/tests/test_webhooks.py (test_sign_function).
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(&Secret::new(key), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_urls_user_and_password_become_basic_auth() {
        let mut url = reqwest::Url::parse("https://hook%40gate:p%3Ass@example.com/in").unwrap();
        let value = basic_auth(&mut url).unwrap();
        // base64("hook@gate:p:ss")
        assert_eq!(value, "Basic aG9va0BnYXRlOnA6c3M=");
        assert!(value.is_sensitive());
        assert_eq!(url.as_str(), "https://example.com/in");
        assert_eq!(basic_auth(&mut reqwest::Url::parse("https://example.com/").unwrap()), None);
    }

    #[test]
    fn parses_retry_after() {
        // A fixed "now": an HTTP date is a wait from it, and one in the past is no wait.
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let at = |v: &'static str| retry_after(&http::HeaderValue::from_static(v), now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at("Wed, 21 Oct 2015 07:30:00 GMT"), Some(Duration::from_secs(120)));
        assert_eq!(at("Wed, 21 Oct 2015 07:27:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("soon"), None);
    }
}
