//! `okta` (Event Hooks): the `Authorization` header equals the configured secret exactly (compared
//! in constant time, before the body is read). Okta verifies a new hook with a `GET` carrying
//! `X-Okta-Verification-Challenge: V`, answered `{"verification":V}` only when `Authorization`
//! matches. Dedupe: the event's `eventId` in the body.
//! Spec: <https://developer.okta.com/docs/concepts/event-hooks/#one-time-verification-request>.

use std::time::SystemTime;

use http::HeaderMap;

use super::{
    Handshake, HandshakeError, HandshakeRequest, Request, Scheme, Signed, VerifyError, json_string_field,
    signature_header, token_matches,
};
use crate::secret::Secret;

pub const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";

#[derive(Debug)]
pub struct Okta;

impl Scheme for Okta {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        self.check_headers(req.headers, secrets)
    }

    fn check_headers(&self, headers: &HeaderMap, secrets: &[Secret]) -> Result<(), VerifyError> {
        let given = super::header(headers, "authorization")?;
        let matched = secrets.iter().fold(false, |any, s| token_matches(given.as_bytes(), s.expose()) | any);
        if matched { Ok(()) } else { Err(VerifyError::Mismatch) }
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        json_string_field(req.body, "eventId")
    }

    fn credential_header(&self) -> Option<&str> {
        Some("authorization")
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, _now: SystemTime) -> Signed {
        Signed::headers(req, vec![("authorization".into(), String::from_utf8_lossy(secret.expose()).into_owned())])
    }

    fn test_event(&self) -> (&'static str, Vec<u8>) {
        let id = uuid::Uuid::new_v4();
        let body = format!(r#"{{"eventType":"com.okta.event_hook","eventId":"{id}","data":{{"events":[]}}}}"#);
        ("application/json", body.into_bytes())
    }

    fn answers_get(&self) -> bool {
        true
    }

    fn handshake(
        &self,
        req: &Request<'_>,
        secrets: &[Secret],
        now: SystemTime,
    ) -> Option<Result<Handshake, HandshakeError>> {
        if req.method != "GET" {
            return None;
        }
        Some((|| {
            let challenge = match signature_header(req.headers, CHALLENGE_HEADER) {
                Ok(c) => c.to_string(),
                Err(_) => return Err(HandshakeError::MissingChallenge(CHALLENGE_HEADER)),
            };
            self.verify(req, secrets, now)?;
            Ok(Handshake::json(serde_json::json!({ "verification": challenge })))
        })())
    }

    fn sign_handshake(&self, path: &str, secret: &Secret, _now: SystemTime) -> Option<HandshakeRequest> {
        Some(HandshakeRequest {
            method: "GET",
            path_and_query: path.to_string(),
            headers: vec![
                ("authorization".into(), String::from_utf8_lossy(secret.expose()).into_owned()),
                (CHALLENGE_HEADER.into(), uuid::Uuid::new_v4().simple().to_string()),
            ],
            body: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    #[test]
    fn table() {
        let body: &[u8] = br#"{"eventId":"b5a188b9-5ece-4636-b041-482ffda96311"}"#;
        for (name, hdrs, want) in [
            ("exact", headers(&[("authorization", "okta-secret")]), Ok(())),
            ("with Bearer", headers(&[("authorization", "Bearer okta-secret")]), Err(VerifyError::Mismatch)),
            ("wrong", headers(&[("authorization", "okta-secreT")]), Err(VerifyError::Mismatch)),
            ("missing", headers(&[]), Err(VerifyError::Missing("authorization".into()))),
        ] {
            assert_eq!(check(&Okta, &["old", "okta-secret"], &hdrs, body, at(T0)), want, "case: {name}");
        }
        let req = Request { method: "POST", path_and_query: "/", headers: &headers(&[]), body };
        assert_eq!(Okta.delivery_id(&req).as_deref(), Some("b5a188b9-5ece-4636-b041-482ffda96311"));
    }

    #[test]
    fn verification_challenge() {
        // https://developer.okta.com/docs/concepts/event-hooks/#one-time-verification-request
        let secrets = [Secret::new("okta-secret")];
        let ask = |pairs: &[(&str, &str)]| {
            let h = headers(pairs);
            Okta.handshake(&Request { method: "GET", path_and_query: "/o", headers: &h, body: b"" }, &secrets, at(T0))
        };
        let ok = ask(&[("authorization", "okta-secret"), (CHALLENGE_HEADER, "X7V2")]).unwrap().unwrap();
        assert_eq!(ok.body, br#"{"verification":"X7V2"}"#);
        assert_eq!(
            ask(&[("authorization", "nope"), (CHALLENGE_HEADER, "X7V2")]),
            Some(Err(HandshakeError::Verify(VerifyError::Mismatch)))
        );
        assert_eq!(
            ask(&[("authorization", "okta-secret")]),
            Some(Err(HandshakeError::MissingChallenge(CHALLENGE_HEADER)))
        );
    }
}
