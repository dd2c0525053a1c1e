//! `basic`: HTTP Basic authentication, `Authorization: Basic base64(user:password)` (RFC 7617),
//! for senders that can only put credentials in the URL or a header. `user` is in the config,
//! the password is the secret. The whole `user:password` is compared in constant time (SHA-256
//! of both sides), before the body is read (`check_headers`). No delivery id.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::spec::{Issues, Spec};
use super::{Request, Scheme, Signed, VerifyError, signature_header, token_matches};
use crate::secret::Secret;

pub const AUTHORIZATION: &str = "authorization";

#[derive(Debug)]
pub struct Basic {
    user: String,
}

impl Basic {
    pub fn new(user: &str) -> Self {
        Basic { user: user.to_string() }
    }

    pub fn from_spec(raw: &Spec, p: &mut Issues) -> Option<Self> {
        match raw.user.as_deref() {
            None | Some("") => {
                p.push("user", "missing; scheme \"basic\" takes user = \"...\" (the password is the secret)");
                None
            }
            Some(user) if user.contains(':') || user.chars().any(char::is_control) => {
                p.push("user", "must not contain ':' or control characters (RFC 7617)");
                None
            }
            Some(user) => Some(Self::new(user)),
        }
    }

    fn credentials(&self, password: &[u8]) -> Vec<u8> {
        [self.user.as_bytes(), b":", password].concat()
    }
}

/// The credentials of an `Authorization` header with the given auth scheme (case-insensitive).
pub(crate) fn credentials<'a>(headers: &'a http::HeaderMap, scheme: &str) -> Result<&'a str, VerifyError> {
    let value = signature_header(headers, AUTHORIZATION)?;
    let (name, rest) = value.split_once(' ').ok_or(VerifyError::Malformed("authorization without a scheme"))?;
    if !name.eq_ignore_ascii_case(scheme) {
        return Err(VerifyError::Malformed("wrong authorization scheme"));
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(VerifyError::Malformed("empty credentials"));
    }
    Ok(rest)
}

impl Scheme for Basic {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        self.check_headers(req.headers, secrets)
    }

    fn check_headers(&self, headers: &http::HeaderMap, secrets: &[Secret]) -> Result<(), VerifyError> {
        let encoded = credentials(headers, "Basic")?;
        let given = STANDARD.decode(encoded).map_err(|_| VerifyError::Malformed("credentials are not base64"))?;
        if !given.contains(&b':') {
            return Err(VerifyError::Malformed("credentials without ':'"));
        }
        let matched = secrets.iter().fold(false, |any, s| token_matches(&given, &self.credentials(s.expose())) | any);
        if matched { Ok(()) } else { Err(VerifyError::Mismatch) }
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, _now: SystemTime) -> Signed {
        let value = format!("Basic {}", STANDARD.encode(self.credentials(secret.expose())));
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
        let basic = Basic::new("hooks");
        // RFC 7617 section 2's example: Aladdin / open sesame.
        let aladdin = Basic::new("Aladdin");
        assert_eq!(check(&aladdin, &["open sesame"], &auth("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="), b"", at(T0)), Ok(()));
        let good = sign(&basic, "pw1", b"{}", at(T0));
        let b64 = |s: &str| STANDARD.encode(s);
        for (name, secrets, hdrs, want) in [
            ("user and password", &["pw1"][..], good.clone(), Ok(())),
            ("scheme name is case-insensitive", &["pw1"][..], auth(&format!("basic {}", b64("hooks:pw1"))), Ok(())),
            ("rotated secret (second of two)", &["old", "pw1"][..], good.clone(), Ok(())),
            ("password with a colon", &["a:b"][..], auth(&format!("Basic {}", b64("hooks:a:b"))), Ok(())),
            ("wrong password", &["pw2"][..], good.clone(), Err(VerifyError::Mismatch)),
            ("wrong user", &["pw1"][..], auth(&format!("Basic {}", b64("other:pw1"))), Err(VerifyError::Mismatch)),
            ("empty password", &["pw1"][..], auth(&format!("Basic {}", b64("hooks:"))), Err(VerifyError::Mismatch)),
            ("missing", &["pw1"][..], headers(&[]), Err(VerifyError::Missing(AUTHORIZATION.into()))),
            ("empty", &["pw1"][..], auth(""), Err(VerifyError::Malformed("empty header"))),
            ("scheme only", &["pw1"][..], auth("Basic"), Err(VerifyError::Malformed("authorization without a scheme"))),
            (
                "scheme and spaces",
                &["pw1"][..],
                auth("Basic   x"),
                Err(VerifyError::Malformed("credentials are not base64")),
            ),
            ("bearer", &["pw1"][..], auth("Bearer pw1"), Err(VerifyError::Malformed("wrong authorization scheme"))),
            (
                "not base64",
                &["pw1"][..],
                auth("Basic hooks:pw1"),
                Err(VerifyError::Malformed("credentials are not base64")),
            ),
            (
                "no colon",
                &["pw1"][..],
                auth(&format!("Basic {}", b64("hookspw1"))),
                Err(VerifyError::Malformed("credentials without ':'")),
            ),
            (
                "huge",
                &["pw1"][..],
                auth(&format!("Basic {}", "A".repeat(5000))),
                Err(VerifyError::Malformed("header too long")),
            ),
        ] {
            assert_eq!(check(&basic, secrets, &hdrs, b"{}", at(T0)), want, "case: {name}");
            assert_eq!(check_headers(&basic, secrets, &hdrs), want, "case: {name}, before the body");
        }
    }
}
