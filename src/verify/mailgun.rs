//! `mailgun`: the signature is in the body, not a header. A JSON webhook carries
//! `{"signature":{"timestamp":T,"token":K,"signature":S}, "event-data":{...}}`; a form-encoded one
//! (legacy and inbound routes) carries `timestamp`, `token` and `signature` fields. S is
//! hex(HMAC-SHA256(webhook signing key, T + K)); T must be within the tolerance (default 5
//! minutes). Dedupe: `event-data.id`, else the token (Mailgun: "cache the token to prevent replay").
//! Spec: <https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/#securing-webhooks>.

use std::time::{Duration, SystemTime};

use super::hmac::Algorithm;
use super::spec::{Issues, Spec};
use super::{
    Request, Scheme, Signed, VerifyError, any_equal, fresh, json_pointer_field, tolerance, unix_now, unix_seconds,
};
use crate::secret::Secret;

#[derive(Debug)]
pub struct Mailgun {
    tolerance: Duration,
}

/// (timestamp, token, signature) from a JSON or form body.
fn fields(body: &[u8]) -> Result<(String, String, String), VerifyError> {
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) {
        let s = doc.get("signature").ok_or(VerifyError::Missing("signature".into()))?;
        let get = |k: &str| {
            s.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| VerifyError::Missing(format!("signature.{k}")))
        };
        return Ok((get("timestamp")?, get("token")?, get("signature")?));
    }
    let mut t = None;
    let mut k = None;
    let mut s = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        match &*name {
            "timestamp" => t = Some(value.into_owned()),
            "token" => k = Some(value.into_owned()),
            "signature" => s = Some(value.into_owned()),
            _ => {}
        }
    }
    let need = |v: Option<String>, k: &str| v.ok_or_else(|| VerifyError::Missing(k.to_string()));
    Ok((need(t, "timestamp")?, need(k, "token")?, need(s, "signature")?))
}

impl Mailgun {
    pub fn new(tolerance: Duration) -> Self {
        Mailgun { tolerance }
    }

    pub fn from_spec(spec: &Spec, p: &mut Issues) -> Option<Self> {
        tolerance(spec, p).map(Self::new)
    }
}

impl Scheme for Mailgun {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        let (ts, token, sig) = fields(req.body)?;
        let sig = hex::decode(&sig).map_err(|_| VerifyError::Malformed("signature is not hex"))?;
        fresh(unix_seconds(&ts)?, now, self.tolerance)?;
        let candidates = [sig];
        for key in secrets {
            if any_equal(&Algorithm::Sha256.mac(key.expose(), &[ts.as_bytes(), token.as_bytes()]), &candidates) {
                return Ok(());
            }
        }
        Err(VerifyError::Mismatch)
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        json_pointer_field(req.body, "/event-data/id").or_else(|| fields(req.body).ok().map(|(_, token, _)| token))
    }

    fn test_event(&self) -> (&'static str, Vec<u8>) {
        let id = uuid::Uuid::new_v4().simple();
        ("application/json", format!(r#"{{"event-data":{{"id":"{id}","event":"delivered"}}}}"#).into_bytes())
    }

    /// Mailgun signs inside the body: `sign` returns the JSON body with a fresh `signature` object.
    fn sign(&self, req: &Request<'_>, secret: &Secret, now: SystemTime) -> Signed {
        let mut signed = Signed::headers(req, Vec::new());
        signed.body = sign_body(secret, req.body, unix_now(now));
        signed
    }
}

/// `body` (a JSON object) with a `signature` object made with `secret` at `now` (unix seconds);
/// `None` if the body is not a JSON object.
pub fn sign_body(secret: &Secret, body: &[u8], now: u64) -> Option<Vec<u8>> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let ts = now.to_string();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let sig = hex::encode(Algorithm::Sha256.mac(secret.expose(), &[ts.as_bytes(), token.as_bytes()]));
    doc.as_object_mut()?
        .insert("signature".into(), serde_json::json!({ "timestamp": ts, "token": token, "signature": sig }));
    Some(doc.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::DEFAULT_TOLERANCE;
    use crate::verify::test_support::*;

    #[test]
    fn table() {
        let mg = Mailgun::new(DEFAULT_TOLERANCE);
        let key = Secret::new("key-mailgun");
        let body = sign_body(&key, br#"{"event-data":{"id":"ev-1"}}"#, T0).unwrap();
        let h = headers(&[]);
        let form = {
            let sig = hex::encode(Algorithm::Sha256.mac(b"key-mailgun", &[T0.to_string().as_bytes(), b"tok1"]));
            format!("timestamp={T0}&token=tok1&signature={sig}&recipient=a%40example.com")
        };
        for (name, body, now, secrets, want) in [
            ("json", body.clone(), T0, &["old", "key-mailgun"][..], Ok(())),
            ("form", form.clone().into_bytes(), T0, &["key-mailgun"][..], Ok(())),
            ("stale", body.clone(), T0 + 301, &["key-mailgun"][..], Err(VerifyError::Stale)),
            ("wrong key", body.clone(), T0, &["other"][..], Err(VerifyError::Mismatch)),
            (
                "token changed",
                form.replace("tok1", "tok2").into_bytes(),
                T0,
                &["key-mailgun"][..],
                Err(VerifyError::Mismatch),
            ),
            (
                "no signature",
                br#"{"event-data":{}}"#.to_vec(),
                T0,
                &["key-mailgun"][..],
                Err(VerifyError::Missing("signature".into())),
            ),
        ] {
            assert_eq!(check(&mg, secrets, &h, &body, at(now)), want, "case: {name}");
        }
        let req = Request { method: "POST", path_and_query: "/", headers: &h, body: &body };
        assert_eq!(mg.delivery_id(&req).as_deref(), Some("ev-1"));
        let req = Request { method: "POST", path_and_query: "/", headers: &h, body: form.as_bytes() };
        assert_eq!(mg.delivery_id(&req).as_deref(), Some("tok1"));
    }
}
