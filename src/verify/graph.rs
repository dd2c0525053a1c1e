//! `microsoft-graph` (change notifications): Graph signs nothing; each notification in `value[]`
//! carries the `clientState` given when subscribing, which must equal the secret (constant
//! time). A new subscription is validated with `POST ?validationToken=T`, answered `200
//! text/plain` with T (decoded), and never stored. Graph has no delivery id: dedupe falls back
//! to the body's hash (retries resend the same body).
//! Spec: <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks#notification-endpoint-validation>
//! and <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks#receive-notifications>.

use std::time::SystemTime;

use super::{
    Handshake, HandshakeError, HandshakeRequest, Request, Scheme, Signed, VerifyError, query_param, token_matches,
};
use crate::secret::Secret;

#[derive(Debug)]
pub struct Graph;

impl Scheme for Graph {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        let doc: serde_json::Value =
            serde_json::from_slice(req.body).map_err(|_| VerifyError::Malformed("body is not JSON"))?;
        let items = doc.get("value").and_then(|v| v.as_array()).ok_or(VerifyError::Malformed("no value[]"))?;
        if items.is_empty() {
            return Err(VerifyError::Malformed("empty value[]"));
        }
        for item in items {
            let state =
                item.get("clientState").and_then(|s| s.as_str()).ok_or(VerifyError::Missing("clientState".into()))?;
            let matched = secrets.iter().fold(false, |any, s| token_matches(state.as_bytes(), s.expose()) | any);
            if !matched {
                return Err(VerifyError::Mismatch);
            }
        }
        Ok(())
    }

    fn sign(&self, req: &Request<'_>, _secret: &Secret, _now: SystemTime) -> Signed {
        // The credential is inside the body (`test_event` puts it there): no header to add.
        Signed::headers(req, Vec::new())
    }

    fn test_event_for(&self, secret: &Secret) -> (&'static str, Vec<u8>) {
        let id = uuid::Uuid::new_v4();
        let state = serde_json::Value::String(String::from_utf8_lossy(secret.expose()).into_owned());
        let body = format!(
            r#"{{"value":[{{"subscriptionId":"{id}","changeType":"created","resource":"me/messages","clientState":{state}}}]}}"#
        );
        ("application/json", body.into_bytes())
    }

    fn handshake(
        &self,
        req: &Request<'_>,
        _secrets: &[Secret],
        _now: SystemTime,
    ) -> Option<Result<Handshake, HandshakeError>> {
        query_param(req.path_and_query, "validationToken").map(|t| Ok(Handshake::text(&t)))
    }

    fn sign_handshake(&self, path: &str, _secret: &Secret, _now: SystemTime) -> Option<HandshakeRequest> {
        Some(HandshakeRequest {
            method: "POST",
            path_and_query: format!("{path}?validationToken=Validation%3A%20{}", uuid::Uuid::new_v4().simple()),
            headers: vec![("content-type".into(), "text/plain".into())],
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
        let h = headers(&[]);
        for (name, body, want) in [
            ("one item", r#"{"value":[{"clientState":"cs-1"}]}"#, Ok(())),
            ("two items", r#"{"value":[{"clientState":"cs-1"},{"clientState":"cs-1"}]}"#, Ok(())),
            ("one item wrong", r#"{"value":[{"clientState":"cs-1"},{"clientState":"x"}]}"#, Err(VerifyError::Mismatch)),
            ("missing", r#"{"value":[{}]}"#, Err(VerifyError::Missing("clientState".into()))),
            ("empty", r#"{"value":[]}"#, Err(VerifyError::Malformed("empty value[]"))),
            ("not JSON", "x", Err(VerifyError::Malformed("body is not JSON"))),
        ] {
            assert_eq!(check(&Graph, &["old", "cs-1"], &h, body.as_bytes(), at(T0)), want, "case: {name}");
        }
    }

    #[test]
    fn validation_token_is_echoed_decoded() {
        let h = headers(&[]);
        let req = Request {
            method: "POST",
            path_and_query: "/g?validationToken=Validation%3A%20Testing",
            headers: &h,
            body: b"",
        };
        assert_eq!(Graph.handshake(&req, &[], at(T0)), Some(Ok(Handshake::text("Validation: Testing"))));
        let req = Request { method: "POST", path_and_query: "/g", headers: &h, body: b"{}" };
        assert_eq!(Graph.handshake(&req, &[], at(T0)), None);
    }
}
