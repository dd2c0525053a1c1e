//! Who may call `/api/*`.
//!
//! With a token (`[admin] token_env`/`token_file`, default variable `HOOKGATE_ADMIN_TOKEN`), every
//! request needs `Authorization: Bearer <token>`, compared in constant time. Without one the API is
//! open, which `App::build` allows only on a loopback listener; then two browser attacks remain and
//! are refused here: DNS rebinding (a `Host` that is not a loopback name) and cross-site POSTs
//! (an `Origin` that is not this listener).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;
use crate::config::Secret;

pub async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let allowed = match &state.token {
        Some(token) => bearer(req.headers()).is_some_and(|given| matches(token, given)),
        None => local_browser_safe(req.headers()),
    };
    if allowed {
        return next.run(req).await;
    }
    tracing::warn!(path = %req.uri().path(), "admin request refused: missing or wrong token");
    let mut res = (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "unauthorized" }))).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme.eq_ignore_ascii_case(b"bearer").then(|| rest.trim_ascii())
}

/// Constant-time, and by comparing digests, the length of the token does not leak either.
fn matches(token: &Secret, given: &[u8]) -> bool {
    Sha256::digest(token.expose()).ct_eq(&Sha256::digest(given)).into()
}

fn local_browser_safe(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return true };
    if !is_loopback_host(host) {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => origin.strip_prefix("http://").is_some_and(|o| o.eq_ignore_ascii_case(host)),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let token = Secret::new("s3cret");
        for (value, want) in [
            ("Bearer s3cret", true),
            ("bearer s3cret", true),
            ("Bearer  s3cret ", true),
            ("Bearer s3cre", false),
            ("Bearer s3crett", false),
            ("Basic s3cret", false),
            ("s3cret", false),
        ] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(bearer(&h).is_some_and(|g| matches(&token, g)), want, "{value:?}");
        }
    }

    #[test]
    fn open_mode_refuses_rebinding_and_cross_site_posts() {
        for (host, origin, want) in [
            ("127.0.0.1:8081", None, true),
            ("localhost:8081", Some("http://localhost:8081"), true),
            ("[::1]:8081", None, true),
            ("evil.example:8081", None, false),
            ("127.0.0.1:8081", Some("https://evil.example"), false),
        ] {
            let mut h = headers(&[("host", host)]);
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            assert_eq!(local_browser_safe(&h), want, "{host} {origin:?}");
        }
    }
}
