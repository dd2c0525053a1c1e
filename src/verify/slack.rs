//! `slack`: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:{ts}:{body}")>` with
//! `X-Slack-Request-Timestamp: <unix>`, which must be within the tolerance (default 5 minutes).
//! Dedupe: the Events API's `event_id` in the JSON body, which Slack's retries keep; slash
//! commands and interactivity (form bodies) have none, so they fall back to the body hash.
//! A signed `{"type":"url_verification","challenge":C}` (Events API URL check) is answered
//! `{"challenge":C}` after the signature check, and never stored
//! (<https://api.slack.com/events/url_verification>).
//! Spec: <https://api.slack.com/authentication/verifying-requests-from-slack>; reference code:
//! slack_sdk `slack_sdk/signature/__init__.py` (`SignatureVerifier`).

use std::time::{Duration, SystemTime};

use hmac::Mac;

use super::hmac_generic::mac;
use super::spec::{Issues, Spec};
use super::{
    Handshake, HandshakeError, HandshakeRequest, Request, Scheme, Signed, VerifyError, fresh, json_string_field,
    signature_header, tolerance, unix_now, unix_seconds,
};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

#[derive(Debug)]
pub struct Slack {
    tolerance: Duration,
}

impl Slack {
    pub fn new(tolerance: Duration) -> Self {
        Slack { tolerance }
    }

    pub fn from_spec(raw: &Spec, p: &mut Issues) -> Option<Self> {
        tolerance(raw, p).map(Self::new)
    }
}

fn basestring<'a>(ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 4] {
    [b"v0:", ts.as_bytes(), b":", body]
}

impl Scheme for Slack {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        let sig = signature_header(req.headers, SIGNATURE_HEADER)?;
        let ts = signature_header(req.headers, TIMESTAMP_HEADER)?;
        let hex_sig = sig.strip_prefix("v0=").ok_or(VerifyError::Malformed("missing prefix v0="))?;
        fresh(unix_seconds(ts)?, now, self.tolerance)?;
        let sig = hex::decode(hex_sig).map_err(|_| VerifyError::Malformed("signature is not hex"))?;
        let parts = basestring(ts, req.body);
        if secrets.iter().any(|s| mac(s.expose(), &parts).verify_slice(&sig).is_ok()) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        json_string_field(req.body, "event_id")
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, now: SystemTime) -> Signed {
        let ts = unix_now(now).to_string();
        let sig = mac(secret.expose(), &basestring(&ts, req.body)).finalize().into_bytes();
        Signed::headers(
            req,
            vec![(SIGNATURE_HEADER.into(), format!("v0={}", hex::encode(sig))), (TIMESTAMP_HEADER.into(), ts)],
        )
    }

    fn handshake(
        &self,
        req: &Request<'_>,
        secrets: &[Secret],
        now: SystemTime,
    ) -> Option<Result<Handshake, HandshakeError>> {
        if json_string_field(req.body, "type").as_deref() != Some("url_verification") {
            return None;
        }
        Some(self.verify(req, secrets, now).map_err(HandshakeError::from).and_then(|()| {
            let challenge =
                json_string_field(req.body, "challenge").ok_or(HandshakeError::MissingChallenge("challenge"))?;
            Ok(Handshake::json(serde_json::json!({ "challenge": challenge })))
        }))
    }

    fn sign_handshake(&self, path: &str, secret: &Secret, now: SystemTime) -> Option<HandshakeRequest> {
        let challenge = uuid::Uuid::new_v4().simple().to_string();
        let body = serde_json::json!({ "token": "hookgate-send", "challenge": challenge, "type": "url_verification" })
            .to_string()
            .into_bytes();
        let json = http::HeaderMap::new();
        let signed =
            self.sign(&Request { method: "POST", path_and_query: path, headers: &json, body: &body }, secret, now);
        let mut headers = signed.headers;
        headers.push(("content-type".into(), "application/json".into()));
        Some(HandshakeRequest { method: "POST", path_and_query: signed.path_and_query, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::DEFAULT_TOLERANCE;
    use crate::verify::test_support::*;

    // Slack's worked example: https://api.slack.com/authentication/verifying-requests-from-slack
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: u64 = 1531420618;
    const DOC_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    // Self-computed with Python's hmac: an Events API body.
    const JSON_BODY: &[u8] = br#"{"type":"event_callback","event_id":"Ev01"}"#;
    const JSON_SIG: &str = "v0=f4918354066bdfac4350922ac8990eabc955fa31a2e008df797d5ab01e2e75c5";

    #[test]
    fn table() {
        let slack = Slack::new(DEFAULT_TOLERANCE);
        let doc = headers(&[(SIGNATURE_HEADER, DOC_SIG), (TIMESTAMP_HEADER, &DOC_TS.to_string())]);
        let good = headers(&[(SIGNATURE_HEADER, JSON_SIG), (TIMESTAMP_HEADER, &T0.to_string())]);
        let hex = JSON_SIG.trim_start_matches("v0=");
        let huge = format!("v0={}", "ab".repeat(3000));
        for (name, secrets, hdrs, body, now, want) in [
            ("Slack's worked example", &[DOC_SECRET][..], doc.clone(), DOC_BODY, DOC_TS + 60, Ok(())),
            ("self-computed JSON vector", &[DOC_SECRET][..], good.clone(), JSON_BODY, T0, Ok(())),
            ("rotated secret (second of two)", &["old", DOC_SECRET][..], good.clone(), JSON_BODY, T0, Ok(())),
            ("stale", &[DOC_SECRET][..], good.clone(), JSON_BODY, T0 + 301, Err(VerifyError::Stale)),
            ("future", &[DOC_SECRET][..], good.clone(), JSON_BODY, T0 - 301, Err(VerifyError::Stale)),
            ("the worked example today", &[DOC_SECRET][..], doc.clone(), DOC_BODY, T0, Err(VerifyError::Stale)),
            (
                "body byte changed",
                &[DOC_SECRET][..],
                good.clone(),
                br#"{"type":"event_callback","event_id":"Ev02"}"#,
                T0,
                Err(VerifyError::Mismatch),
            ),
            ("wrong secret", &["other"][..], good.clone(), JSON_BODY, T0, Err(VerifyError::Mismatch)),
            (
                "timestamp changed within tolerance",
                &[DOC_SECRET][..],
                with(&good, TIMESTAMP_HEADER, Some(&(T0 + 1).to_string())),
                JSON_BODY,
                T0,
                Err(VerifyError::Mismatch),
            ),
            (
                "signature missing",
                &[DOC_SECRET][..],
                with(&good, SIGNATURE_HEADER, None),
                JSON_BODY,
                T0,
                Err(VerifyError::Missing(SIGNATURE_HEADER.into())),
            ),
            (
                "timestamp missing",
                &[DOC_SECRET][..],
                with(&good, TIMESTAMP_HEADER, None),
                JSON_BODY,
                T0,
                Err(VerifyError::Missing(TIMESTAMP_HEADER.into())),
            ),
            (
                "timestamp not a number",
                &[DOC_SECRET][..],
                with(&good, TIMESTAMP_HEADER, Some("1.7e9")),
                JSON_BODY,
                T0,
                Err(VerifyError::Malformed("timestamp is not unix seconds")),
            ),
            (
                "signature empty",
                &[DOC_SECRET][..],
                with(&good, SIGNATURE_HEADER, Some("")),
                JSON_BODY,
                T0,
                Err(VerifyError::Malformed("empty header")),
            ),
            (
                "no v0= prefix",
                &[DOC_SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(hex)),
                JSON_BODY,
                T0,
                Err(VerifyError::Malformed("missing prefix v0=")),
            ),
            (
                "v1= prefix",
                &[DOC_SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(&format!("v1={hex}"))),
                JSON_BODY,
                T0,
                Err(VerifyError::Malformed("missing prefix v0=")),
            ),
            (
                "non-hex",
                &[DOC_SECRET][..],
                with(&good, SIGNATURE_HEADER, Some("v0=xyz0")),
                JSON_BODY,
                T0,
                Err(VerifyError::Malformed("signature is not hex")),
            ),
            (
                "odd length",
                &[DOC_SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(&JSON_SIG[..JSON_SIG.len() - 1])),
                JSON_BODY,
                T0,
                Err(VerifyError::Malformed("signature is not hex")),
            ),
            (
                "huge",
                &[DOC_SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(&huge)),
                JSON_BODY,
                T0,
                Err(VerifyError::Malformed("header too long")),
            ),
        ] {
            assert_eq!(check(&slack, secrets, &hdrs, body, at(now)), want, "case: {name}");
        }
    }

    #[test]
    fn signs_like_slack_and_dedupes_on_event_id() {
        let slack = Slack::new(DEFAULT_TOLERANCE);
        let h = sign(&slack, DOC_SECRET, JSON_BODY, at(T0));
        assert_eq!(get(&h, SIGNATURE_HEADER), JSON_SIG);
        assert_eq!(get(&h, TIMESTAMP_HEADER), T0.to_string());
        let req = Request { method: "POST", path_and_query: "/", headers: &h, body: JSON_BODY };
        assert_eq!(slack.delivery_id(&req).as_deref(), Some("Ev01"));
        let req = Request { method: "POST", path_and_query: "/", headers: &h, body: DOC_BODY };
        assert_eq!(slack.delivery_id(&req), None);
    }
}
