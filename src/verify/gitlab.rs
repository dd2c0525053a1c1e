//! `gitlab`: no MAC. GitLab sends the configured secret token verbatim in `X-Gitlab-Token`; it
//! is compared in constant time (SHA-256 of both sides, so not even the length leaks), before
//! the body is read (`check_headers`). Dedupe:
//! `Idempotency-Key` (kept by GitLab's retries and manual resends), else `X-Gitlab-Event-UUID`.
//! Spec: <https://docs.gitlab.com/user/project/integrations/webhooks/#create-a-webhook> (secret
//! token) and the "Delivery headers" section of the same page.

use std::time::SystemTime;

use http::HeaderMap;

use super::{Request, Scheme, Signed, VerifyError, signature_header, token_matches};
use crate::secret::Secret;

pub const TOKEN_HEADER: &str = "x-gitlab-token";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const EVENT_UUID_HEADER: &str = "x-gitlab-event-uuid";

#[derive(Debug)]
pub struct GitLab;

impl Scheme for GitLab {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        self.check_headers(req.headers, secrets)
    }

    fn check_headers(&self, headers: &HeaderMap, secrets: &[Secret]) -> Result<(), VerifyError> {
        let token = signature_header(headers, TOKEN_HEADER)?;
        // Check every secret so the time does not tell which one matched.
        let matched = secrets.iter().fold(false, |any, s| token_matches(token.as_bytes(), s.expose()) | any);
        if matched { Ok(()) } else { Err(VerifyError::Mismatch) }
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        [IDEMPOTENCY_HEADER, EVENT_UUID_HEADER]
            .iter()
            .filter_map(|name| req.headers.get(*name)?.to_str().ok())
            .map(str::trim)
            .find(|v| !v.is_empty())
            .map(str::to_string)
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, _now: SystemTime) -> Signed {
        let uuid = uuid::Uuid::new_v4().to_string();
        Signed::headers(
            req,
            vec![
                (TOKEN_HEADER.into(), String::from_utf8_lossy(secret.expose()).into_owned()),
                (EVENT_UUID_HEADER.into(), uuid.clone()),
                (IDEMPOTENCY_HEADER.into(), uuid),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    const TOKEN: &str = "gl-token-1";

    #[test]
    fn table() {
        let good = headers(&[(TOKEN_HEADER, TOKEN)]);
        for (name, secrets, hdrs, want) in [
            ("token equals the secret", &[TOKEN][..], good.clone(), Ok(())),
            ("surrounding spaces are not part of it", &[TOKEN][..], headers(&[(TOKEN_HEADER, " gl-token-1 ")]), Ok(())),
            ("rotated secret (second of two)", &["old", TOKEN][..], good.clone(), Ok(())),
            ("wrong secret", &["gl-token-2"][..], good.clone(), Err(VerifyError::Mismatch)),
            ("prefix of the secret", &[TOKEN][..], headers(&[(TOKEN_HEADER, "gl-token")]), Err(VerifyError::Mismatch)),
            ("secret is a prefix", &["gl-token"][..], good.clone(), Err(VerifyError::Mismatch)),
            ("case differs", &[TOKEN][..], headers(&[(TOKEN_HEADER, "GL-TOKEN-1")]), Err(VerifyError::Mismatch)),
            ("missing", &[TOKEN][..], headers(&[]), Err(VerifyError::Missing(TOKEN_HEADER.into()))),
            ("empty", &[TOKEN][..], headers(&[(TOKEN_HEADER, "")]), Err(VerifyError::Malformed("empty header"))),
            (
                "huge",
                &[TOKEN][..],
                headers(&[(TOKEN_HEADER, &"t".repeat(5000))]),
                Err(VerifyError::Malformed("header too long")),
            ),
        ] {
            assert_eq!(check(&GitLab, secrets, &hdrs, b"{}", at(T0)), want, "case: {name}");
            assert_eq!(check_headers(&GitLab, secrets, &hdrs), want, "case: {name}, before the body");
        }
    }

    #[test]
    fn dedupes_on_idempotency_key_then_event_uuid() {
        for (pairs, want) in [
            (&[(IDEMPOTENCY_HEADER, "k1"), (EVENT_UUID_HEADER, "u1")][..], Some("k1")),
            (&[(EVENT_UUID_HEADER, "u1")][..], Some("u1")),
            (&[(IDEMPOTENCY_HEADER, ""), (EVENT_UUID_HEADER, "u1")][..], Some("u1")),
            (&[][..], None),
        ] {
            let h = headers(pairs);
            assert_eq!(
                GitLab.delivery_id(&Request { method: "POST", path_and_query: "/", headers: &h, body: b"" }).as_deref(),
                want
            );
        }
        let h = sign(&GitLab, TOKEN, b"{}", at(T0));
        assert_eq!(get(&h, TOKEN_HEADER), TOKEN);
        assert_eq!(check(&GitLab, &[TOKEN], &h, b"{}", at(T0)), Ok(()));
    }
}
