//! The sender's side of ingest (CONTRACT §9): a provider's URL check is answered by the source's
//! scheme (`verify::Scheme::handshake`) and turned into a response here, never stored or
//! delivered; and a source's `response` table replaces the JSON answer to a stored event.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use super::error::IngestError;
use crate::config::SourceResponse;
use crate::verify::{Handshake, HandshakeError, Unverified, Verifier};

/// The scheme's answer if `req` is a handshake. A GET that is not one (its challenge missing) is
/// refused: a GET is only ever a handshake.
pub(super) fn check(
    verifier: &Verifier,
    method: &Method,
    req: &Unverified,
    now: std::time::SystemTime,
) -> Option<Result<Handshake, IngestError>> {
    let answer = verifier.handshake(method.as_str(), &req.path_and_query, &req.headers, &req.body, now);
    match answer {
        Some(result) => Some(result.map_err(IngestError::Handshake)),
        None if method == Method::GET => {
            Some(Err(IngestError::Handshake(HandshakeError::MissingChallenge("challenge"))))
        }
        None => None,
    }
}

/// A handshake's answer as the provider expects it.
pub(super) fn answer(h: Handshake) -> Response {
    let status = StatusCode::from_u16(h.status).unwrap_or(StatusCode::OK);
    let mut response = (status, h.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(h.content_type));
    if h.nosniff {
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    response
}

/// The answer to a stored event: the source's `response` if it has one, else `json`.
pub(super) fn stored(custom: Option<&SourceResponse>, json: Response) -> Response {
    let Some(r) = custom else { return json };
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut response = (status, r.body.clone()).into_response();
    // Checked when the config was loaded.
    if let Ok(v) = HeaderValue::from_str(&r.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}
