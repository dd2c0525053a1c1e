//! `X-Request-Id`: kept from the caller when sane (1–128 of `[A-Za-z0-9._:-]`), else generated;
//! echoed on the response and carried by every log line of the request (a tracing span).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// The request's id, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

fn sane(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
}

pub async fn request_id_layer(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(HEADER) {
        Some(v) if sane(v) => v.clone(),
        _ => HeaderValue::try_from(uuid::Uuid::new_v4().simple().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %String::from_utf8_lossy(id.as_bytes()),
        method = %req.method(),
        path = %req.uri().path(),
    );
    let mut res = next.run(req).instrument(span).await;
    res.headers_mut().insert(HEADER, id);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_sane_ids() {
        for (v, want) in [("abc-123", true), ("a.b:c_d", true), ("", false), ("has space", false), ("x\"y", false)] {
            assert_eq!(sane(&HeaderValue::from_str(v).unwrap()), want, "{v:?}");
        }
        assert!(sane(&HeaderValue::from_str(&"a".repeat(128)).unwrap()));
        assert!(!sane(&HeaderValue::from_str(&"a".repeat(129)).unwrap()));
    }
}
