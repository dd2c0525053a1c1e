//! The ingest listener's status table (CONTRACT §3), in one place. The cause goes to the log;
//! the client gets only the public message.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::store::StoreError;
use crate::verify::{HandshakeError, VerifyError};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no source at this path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("body larger than max_body_bytes")]
    TooLarge,
    #[error("body not received in time")]
    BodyTimeout,
    #[error("cannot read body: {0}")]
    BadBody(String),
    #[error("signature rejected: {0}")]
    Verify(#[from] VerifyError),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("rate limit exceeded")]
    RateLimited(Duration),
    #[error("too many failed verifications from this client address")]
    VerifyLimited(Duration),
    #[error("the client address has max_requests_per_client requests in progress")]
    ClientBusy,
    #[error("no request slot within queue_timeout, or max_inflight_body_bytes reached")]
    Busy,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Handshake(HandshakeError),
}

impl IngestError {
    /// Every value [`IngestError::reason`] returns.
    pub const REASONS: [&'static str; 13] = [
        "not_found",
        "method",
        "too_large",
        "timeout",
        "bad_body",
        "signature",
        "invalid_json",
        "rate_limited",
        "verify_failures",
        "client_limit",
        "busy",
        "storage",
        "handshake",
    ];

    /// The `reason` label of `hookgate_requests_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method",
            Self::TooLarge => "too_large",
            Self::BodyTimeout => "timeout",
            Self::BadBody(_) => "bad_body",
            Self::Verify(_) => "signature",
            Self::InvalidJson(_) => "invalid_json",
            Self::RateLimited(_) => "rate_limited",
            Self::VerifyLimited(_) => "verify_failures",
            Self::ClientBusy => "client_limit",
            Self::Busy => "busy",
            Self::Store(_) => "storage",
            Self::Handshake(HandshakeError::Verify(_)) => "signature",
            Self::Handshake(_) => "handshake",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let (status, public) = match &self {
            Self::NotFound => (StatusCode::NOT_FOUND, "unregistered endpoint"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload too large"),
            Self::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request timeout"),
            Self::BadBody(_) => (StatusCode::BAD_REQUEST, "invalid body"),
            Self::Verify(_) => (StatusCode::UNAUTHORIZED, "invalid signature"),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid JSON"),
            Self::RateLimited(_) | Self::VerifyLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate limited"),
            Self::ClientBusy => (StatusCode::TOO_MANY_REQUESTS, "too many concurrent requests"),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "server busy"),
            Self::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable"),
            Self::Handshake(HandshakeError::Verify(_)) => (StatusCode::UNAUTHORIZED, "invalid signature"),
            Self::Handshake(HandshakeError::Forbidden) => (StatusCode::FORBIDDEN, "wrong verify token"),
            Self::Handshake(HandshakeError::MissingChallenge(_)) => (StatusCode::BAD_REQUEST, "missing challenge"),
        };
        match &self {
            Self::Store(_) => tracing::error!(error = %self, "request rejected"),
            // One client's flood would otherwise be a flood of log lines; the metrics count them.
            Self::NotFound | Self::MethodNotAllowed | Self::VerifyLimited(_) | Self::ClientBusy => {
                tracing::debug!(error = %self, reason = self.reason(), "request rejected")
            }
            _ => tracing::warn!(error = %self, reason = self.reason(), "request rejected"),
        }
        let mut response = (status, Json(json!({ "error": public }))).into_response();
        match &self {
            Self::MethodNotAllowed => {
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Self::RateLimited(wait) | Self::VerifyLimited(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            // Slots and body bytes free up as requests finish, within about a second under load.
            Self::ClientBusy | Self::Busy => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_for_the_metrics() {
        let all = [
            IngestError::NotFound,
            IngestError::MethodNotAllowed,
            IngestError::TooLarge,
            IngestError::BodyTimeout,
            IngestError::BadBody(String::new()),
            IngestError::Verify(VerifyError::Mismatch),
            IngestError::InvalidJson(String::new()),
            IngestError::RateLimited(Duration::ZERO),
            IngestError::VerifyLimited(Duration::ZERO),
            IngestError::ClientBusy,
            IngestError::Busy,
            IngestError::Store(StoreError::Unavailable(String::new())),
            IngestError::Handshake(HandshakeError::Forbidden),
        ];
        let reasons: Vec<&str> = all.iter().map(IngestError::reason).collect();
        assert_eq!(reasons, IngestError::REASONS);
    }
}
