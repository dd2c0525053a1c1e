//! `bearer`: `Authorization: Bearer <token>` (RFC 6750), the token being the secret. Compared in
//! constant time (SHA-256 of both sides), before the body is read (`check_headers`). No delivery id.

use std::time::SystemTime;

use http::HeaderMap;

use super::basic::{AUTHORIZATION, credentials};
use super::{Request, Scheme, Signed, VerifyError, token_matches};
use crate::secret::Secret;

#[derive(Debug)]
pub struct Bearer;

impl Scheme for Bearer {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        self.check_headers(req.headers, secrets)
    }

    fn check_headers(&self, headers: &HeaderMap, secrets: &[Secret]) -> Result<(), VerifyError> {
        let token = credentials(headers, "Bearer")?;
        let matched = secrets.iter().fold(false, |any, s| token_matches(token.as_bytes(), s.expose()) | any);
        if matched { Ok(()) } else { Err(VerifyError::Mismatch) }
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, _now: SystemTime) -> Signed {
        let value = format!("Bearer {}", String::from_utf8_lossy(secret.expose()));
        Signed::headers(req, vec![(AUTHORIZATION.into(), value)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    fn auth(value: &str) -> http::HeaderMap {
        headers(&[(AUTHORIZATION, value)])
    }

    #[test]
    fn table() {
        let good = sign(&Bearer, "tok-1", b"{}", at(T0));
        assert_eq!(get(&good, AUTHORIZATION), "Bearer tok-1");
        for (name, secrets, hdrs, want) in [
            ("token", &["tok-1"][..], good.clone(), Ok(())),
            ("scheme name is case-insensitive", &["tok-1"][..], auth("bearer tok-1"), Ok(())),
            ("rotated secret (second of two)", &["old", "tok-1"][..], good.clone(), Ok(())),
            ("wrong token", &["tok-2"][..], good.clone(), Err(VerifyError::Mismatch)),
            ("prefix of the token", &["tok-1"][..], auth("Bearer tok-"), Err(VerifyError::Mismatch)),
            ("missing", &["tok-1"][..], headers(&[]), Err(VerifyError::Missing(AUTHORIZATION.into()))),
            ("empty", &["tok-1"][..], auth(""), Err(VerifyError::Malformed("empty header"))),
            ("no token", &["tok-1"][..], auth("Bearer"), Err(VerifyError::Malformed("authorization without a scheme"))),
            (
                "blank token",
                &["tok-1"][..],
                auth("Bearer    "),
                Err(VerifyError::Malformed("authorization without a scheme")),
            ),
            (
                "basic",
                &["tok-1"][..],
                auth("Basic dG9rLTE="),
                Err(VerifyError::Malformed("wrong authorization scheme")),
            ),
            (
                "token without scheme",
                &["tok-1"][..],
                auth("tok-1"),
                Err(VerifyError::Malformed("authorization without a scheme")),
            ),
            (
                "huge",
                &["tok-1"][..],
                auth(&format!("Bearer {}", "t".repeat(5000))),
                Err(VerifyError::Malformed("header too long")),
            ),
        ] {
            assert_eq!(check(&Bearer, secrets, &hdrs, b"{}", at(T0)), want, "case: {name}");
            assert_eq!(check_headers(&Bearer, secrets, &hdrs), want, "case: {name}, before the body");
        }
    }
}
