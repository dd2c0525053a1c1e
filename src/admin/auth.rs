//! Who may call `/api/*`.
//!
//! With a token (`[admin] token_env`/`token_file`, default variable `HOOKGATE_ADMIN_TOKEN`), every
//! request needs `Authorization: Bearer <token>`, compared in constant time. Without one the API is
//! open, which `App::build` allows only on a loopback listener; then two browser attacks remain and
//! are refused here: DNS rebinding (a `Host` that is not a loopback name) and cross-site POSTs
//! (an `Origin` that is not this listener).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;
use crate::secret::Secret;

pub async fn require_token(State(state): State<AdminState>, mut req: Request, next: Next) -> Response {
    let allowed = match &state.token {
        Some(token) => bearer(req.headers()).is_some_and(|given| matches(token, given)),
        None => local_browser_safe(req.headers()),
    };
    if allowed {
        return next.run(req).await;
    }
    // A pull destination's own token: its claim, and acks and nacks (the handler checks that the
    // delivery is of its destination); 403 for anything else.
    let owner = bearer(req.headers()).and_then(|given| state.pull.as_ref()?.token_owner(given).map(str::to_string));
    if let Some(owner) = owner {
        if scoped_allows(req.method(), req.uri().path(), &owner) {
            req.extensions_mut().insert(super::pull::Scope(owner));
            return next.run(req).await;
        }
        tracing::warn!(path = %req.uri().path(), destination = %owner, "admin request refused: a pull destination's token used beyond its scope");
        return (
            StatusCode::FORBIDDEN,
            axum::Json(
                json!({ "error": format!("this token is for destination {owner:?}'s claim, ack and nack only") }),
            ),
        )
            .into_response();
    }
    tracing::warn!(path = %req.uri().path(), "admin request refused: missing or wrong token");
    let mut res = (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "unauthorized" }))).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// What a pull destination's token may call: `POST destinations/{own}/claim` and
/// `POST deliveries/{id}/ack|nack` (under `/api`; the nested router may see the path without it).
fn scoped_allows(method: &http::Method, path: &str, own: &str) -> bool {
    if method != http::Method::POST {
        return false;
    }
    let path = path.strip_prefix("/api").unwrap_or(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["destinations", name, "claim"] => *name == own,
        ["deliveries", id, "ack" | "nack"] => !id.is_empty(),
        _ => false,
    }
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

/// A `Host` naming this machine by a loopback name, parsed strictly (RFC 9110 §7.2, RFC 3986
/// §3.2.2): `localhost`, a loopback IPv4 literal, or a bracketed loopback IPv6 literal, each
/// followed by nothing or `:port`. So `[::1]evil.example`, `127.0.0.1.evil.example` or `::1` are not.
fn is_loopback_host(host: &str) -> bool {
    let (loopback, rest) = match host.strip_prefix('[') {
        Some(inner) => {
            let Some((v6, rest)) = inner.split_once(']') else { return false };
            (v6.parse::<Ipv6Addr>().is_ok_and(|ip| IpAddr::V6(ip).to_canonical().is_loopback()), rest)
        }
        None => {
            let (name, rest) = host.split_at(host.find(':').unwrap_or(host.len()));
            let loopback =
                name.eq_ignore_ascii_case("localhost") || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
            (loopback, rest)
        }
    };
    let port_ok = rest.is_empty()
        || rest.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok());
    loopback && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn a_pull_token_reaches_its_own_claim_and_acks_only() {
        let post = http::Method::POST;
        for (method, path, want) in [
            (&post, "/api/destinations/laptop/claim", true),
            (&post, "/destinations/laptop/claim", true),
            (&post, "/api/deliveries/1025/ack", true),
            (&post, "/api/deliveries/1025/nack", true),
            (&post, "/api/destinations/other/claim", false),
            (&post, "/api/destinations/laptop/pause", false),
            (&post, "/api/deliveries/replay", false),
            (&post, "/api/events/x/replay", false),
            (&http::Method::GET, "/api/events", false),
            (&http::Method::GET, "/api/destinations/laptop/claim", false),
        ] {
            assert_eq!(scoped_allows(method, path, "laptop"), want, "{method} {path}");
        }
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

    #[test]
    fn the_host_is_parsed_strictly() {
        for (host, want) in [
            ("127.0.0.1", true),
            ("127.0.0.1:8081", true),
            ("127.9.9.9:1", true),
            ("localhost", true),
            ("LocalHost:8081", true),
            ("[::1]", true),
            ("[::1]:8081", true),
            ("[0:0:0:0:0:0:0:1]:8081", true),
            ("[::ffff:127.0.0.1]:8081", true),
            ("[::1]evil.example", false),
            ("[::1]evil.example:8081", false),
            ("[::1].evil.example", false),
            ("[::1]:8081evil", false),
            ("[::1]:", false),
            ("[::1]:99999", false),
            ("[::1", false),
            ("[::2]:8081", false),
            ("[127.0.0.1]", false),
            ("::1", false),
            ("::1:8081", false),
            ("127.0.0.1.evil.example", false),
            ("127.0.0.1:8081:8081", false),
            ("127.0.0.1:80x", false),
            ("127.1", false),
            ("localhost.evil.example", false),
            ("localhost.", false),
            ("evil.example", false),
            ("10.0.0.1:8081", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_host(host), want, "{host:?}");
        }
    }
}
