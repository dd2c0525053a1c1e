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

pub struct HttpDestination {
    client: reqwest::Client,
    url: reqwest::Url,
    method: http::Method,
    /// The destination's `headers`, none of them one that hookgate sets (config refuses those).
    headers: http::HeaderMap,
    sign: Option<Secret>,
    timeout: Duration,
    clock: SharedClock,
}

/// One client (one connection pool) shared by every http destination of a process.
/// The client every http destination shares. It never follows redirects (a 3xx is a failed
/// attempt, never a POST of the event to wherever the answer points), so failing to build it
/// fails the start: there is no fallback to a default client, which would follow them.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client for destinations: {e}"))
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
        client: reqwest::Client,
        url: reqwest::Url,
        options: Options,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let Options { method, headers: extra, sign } = options;
        let mut headers = http::HeaderMap::with_capacity(extra.len());
        for (name, source) in extra {
            let value = source.value().map_err(|_| format!("header {name} has a value that is not valid in HTTP"))?;
            headers.append(name, value);
        }
        Ok(HttpDestination { client, url, method, headers, sign, timeout, clock })
    }
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
        let mut req = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .header("webhook-id", &a.event_id)
            .header("webhook-timestamp", ts)
            .header("x-hookgate-source", &a.source)
            .header("x-hookgate-attempt", a.attempt)
            .body(a.body.clone());
        if let Some(ct) = &a.content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        if let Some(key) = &self.sign {
            req = req.header("webhook-signature", signature(key, &a.event_id, ts, &a.body));
        }
        if let Some(traceparent) = &a.traceparent {
            req = req.header("traceparent", traceparent);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let timed_out = e.is_timeout();
                let e = e.without_url();
                let kind = if timed_out {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                let mut source = String::new();
                let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
                while let Some(s) = cur {
                    source = s.to_string();
                    cur = s.source();
                }
                let error = if source.is_empty() { format!("{kind}: {e}") } else { format!("{kind}: {source}") };
                return AttemptResult { timed_out, error: Some(error), ..Default::default() };
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
        let _ = tokio::time::timeout(Duration::from_secs(2), read_head(&mut resp, &mut head)).await;
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
async fn read_head(resp: &mut reqwest::Response, head: &mut Vec<u8>) {
    while head.len() <= EXCERPT {
        match resp.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk[..chunk.len().min(EXCERPT + 1 - head.len())]),
            Ok(None) | Err(_) => return,
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
