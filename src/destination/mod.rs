//! Where events go: `http.rs` (POST with Standard Webhooks headers), `exec.rs` (a command, no
//! shell), `function.rs` (a Rust handler registered through the library API), `broker/` (NATS JetStream,
//! RabbitMQ, Redis Streams, MQTT: one file each).
//! A destination makes one attempt and reports what happened; retry policy lives in `dispatch`.

pub mod broker;
pub mod exec;
pub mod function;
pub mod http;
pub mod http_client;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::store::Outcome;

/// What a destination gets for one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub event_id: String,
    pub source: String,
    pub destination: String,
    pub attempt: u32,
    pub content_type: Option<String>,
    pub headers_json: String,
    pub body: Bytes,
    pub received_at: crate::store::Millis,
    /// The attempt's W3C trace context (traces on): HTTP destinations send it as `traceparent`.
    pub traceparent: Option<String>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Default)]
pub struct AttemptResult {
    pub ok: bool,
    pub timed_out: bool,
    pub status_code: Option<u16>,
    pub exit_code: Option<i32>,
    /// Why it failed (with a truncated response body or stderr).
    pub error: Option<String>,
    /// The destination asked to wait this long (Retry-After).
    pub retry_after: Option<Duration>,
    /// Retrying cannot help (a handler said so).
    pub permanent: bool,
}

impl AttemptResult {
    pub fn success() -> Self {
        AttemptResult { ok: true, ..Default::default() }
    }

    pub fn failure(error: impl Into<String>) -> Self {
        AttemptResult { error: Some(error.into()), ..Default::default() }
    }

    pub fn outcome(&self) -> Outcome {
        if self.ok {
            Outcome::Success
        } else if self.timed_out {
            Outcome::Timeout
        } else {
            Outcome::Failure
        }
    }
}

#[async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(&self, attempt: &Attempt) -> AttemptResult;
}

/// Longest response body or stderr excerpt kept in the attempt log.
pub const EXCERPT: usize = 1024;

/// `bytes` as lossy text, cut to [`EXCERPT`] bytes.
pub fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(EXCERPT)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > EXCERPT {
        s.push('…');
    }
    s
}
