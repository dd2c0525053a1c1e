//! `stripe`: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>[,v1=...]`.
//! The endpoint secret (`whsec_...`) is used verbatim as bytes, prefix included. Any matching
//! `v1` is accepted (Stripe sends one per active secret while a secret is rolled); `v0` and
//! unknown keys are ignored. `t` must be within the tolerance either way (default 5 minutes).
//! Stripe sends no delivery-id header: the dedupe key is the event's `id` in the JSON body.
//! Spec: <https://docs.stripe.com/webhooks#verify-manually>; reference code: stripe-python
//! `stripe/_webhook.py` (`WebhookSignature`).

use std::time::{Duration, SystemTime};

use hmac::Mac;

use super::hmac_generic::mac;
use super::spec::{Issues, Spec};
use super::{
    Request, Scheme, Signed, VerifyError, any_equal, fresh, json_string_field, signature_header, tolerance, unix_now,
    unix_seconds,
};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "stripe-signature";

#[derive(Debug)]
pub struct Stripe {
    tolerance: Duration,
}

impl Stripe {
    pub fn new(tolerance: Duration) -> Self {
        Stripe { tolerance }
    }

    pub fn from_spec(raw: &Spec, p: &mut Issues) -> Option<Self> {
        tolerance(raw, p).map(Self::new)
    }
}

/// The parts of a `Stripe-Signature` header that matter: `t` as written, and every `v1`.
fn parse(value: &str) -> Result<(&str, Vec<Vec<u8>>), VerifyError> {
    let mut t = None;
    let mut v1 = Vec::new();
    let mut undecodable = false;
    for item in value.split(',') {
        // Items that are not key=value, v0 (legacy test mode) and future schemes are ignored.
        let Some((key, val)) = item.split_once('=') else { continue };
        match key.trim() {
            "t" if t.is_some() => return Err(VerifyError::Malformed("several timestamps")),
            "t" => t = Some(val.trim()),
            "v1" => match hex::decode(val.trim()) {
                Ok(sig) => v1.push(sig),
                Err(_) => undecodable = true,
            },
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed("no timestamp"))?;
    if v1.is_empty() {
        return Err(VerifyError::Malformed(if undecodable { "v1 is not hex" } else { "no v1 signature" }));
    }
    Ok((t, v1))
}

impl Scheme for Stripe {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        let (t, candidates) = parse(signature_header(req.headers, SIGNATURE_HEADER)?)?;
        fresh(unix_seconds(t)?, now, self.tolerance)?;
        for secret in secrets {
            let expected = mac(secret.expose(), &[t.as_bytes(), b".", req.body]).finalize().into_bytes();
            if any_equal(&expected, &candidates) {
                return Ok(());
            }
        }
        Err(VerifyError::Mismatch)
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        json_string_field(req.body, "id")
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, now: SystemTime) -> Signed {
        let t = unix_now(now).to_string();
        let sig = mac(secret.expose(), &[t.as_bytes(), b".", req.body]).finalize().into_bytes();
        Signed::headers(req, vec![(SIGNATURE_HEADER.into(), format!("t={t},v1={}", hex::encode(sig)))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::DEFAULT_TOLERANCE;
    use crate::verify::test_support::*;

    // Stripe publishes no fixed vector; computed from the documented algorithm
    // (https://docs.stripe.com/webhooks#verify-manually) with Python's hmac.
    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;
    const SIG: &str = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";

    fn header(value: &str) -> http::HeaderMap {
        headers(&[(SIGNATURE_HEADER, value)])
    }

    #[test]
    fn table() {
        let stripe = Stripe::new(DEFAULT_TOLERANCE);
        let good = format!("t={T0},v1={SIG}");
        let other = "0".repeat(64);
        let huge = format!("t={T0},{}", "v1=00,".repeat(1000));
        for (name, secrets, value, body, now, want) in [
            ("self-computed vector", &[SECRET][..], good.clone(), BODY, T0, Ok(())),
            ("within tolerance, late", &[SECRET][..], good.clone(), BODY, T0 + 300, Ok(())),
            ("within tolerance, early", &[SECRET][..], good.clone(), BODY, T0 - 300, Ok(())),
            ("stale", &[SECRET][..], good.clone(), BODY, T0 + 301, Err(VerifyError::Stale)),
            ("future", &[SECRET][..], good.clone(), BODY, T0 - 301, Err(VerifyError::Stale)),
            ("rotated secret (second of two)", &["whsec_old", SECRET][..], good.clone(), BODY, T0, Ok(())),
            ("second v1 matches (roll)", &[SECRET][..], format!("t={T0},v1={other},v1={SIG}"), BODY, T0, Ok(())),
            (
                "v0 and unknown keys ignored",
                &[SECRET][..],
                format!("t={T0},v0={other},v1={SIG},x=y,junk"),
                BODY,
                T0,
                Ok(()),
            ),
            ("order does not matter", &[SECRET][..], format!("v1={SIG},t={T0}"), BODY, T0, Ok(())),
            ("uppercase hex", &[SECRET][..], format!("t={T0},v1={}", SIG.to_uppercase()), BODY, T0, Ok(())),
            (
                "body byte changed",
                &[SECRET][..],
                good.clone(),
                br#"{"id":"evt_test_webhooK","object":"event"}"#,
                T0,
                Err(VerifyError::Mismatch),
            ),
            ("wrong secret", &["whsec_other"][..], good.clone(), BODY, T0, Err(VerifyError::Mismatch)),
            ("secret without whsec_ prefix", &["test_secret"][..], good.clone(), BODY, T0, Err(VerifyError::Mismatch)),
            ("other timestamp", &[SECRET][..], format!("t={},v1={SIG}", T0 + 1), BODY, T0, Err(VerifyError::Mismatch)),
            (
                "only v0",
                &[SECRET][..],
                format!("t={T0},v0={SIG}"),
                BODY,
                T0,
                Err(VerifyError::Malformed("no v1 signature")),
            ),
            ("no timestamp", &[SECRET][..], format!("v1={SIG}"), BODY, T0, Err(VerifyError::Malformed("no timestamp"))),
            (
                "two timestamps",
                &[SECRET][..],
                format!("t={T0},t={T0},v1={SIG}"),
                BODY,
                T0,
                Err(VerifyError::Malformed("several timestamps")),
            ),
            (
                "timestamp not a number",
                &[SECRET][..],
                format!("t=-{T0},v1={SIG}"),
                BODY,
                T0,
                Err(VerifyError::Malformed("timestamp is not unix seconds")),
            ),
            (
                "timestamp overflow",
                &[SECRET][..],
                format!("t={},v1={SIG}", "9".repeat(40)),
                BODY,
                T0,
                Err(VerifyError::Malformed("timestamp is not unix seconds")),
            ),
            ("empty", &[SECRET][..], " ".into(), BODY, T0, Err(VerifyError::Malformed("empty header"))),
            (
                "wrong prefix",
                &[SECRET][..],
                format!("t={T0},v2={SIG}"),
                BODY,
                T0,
                Err(VerifyError::Malformed("no v1 signature")),
            ),
            ("non-hex", &[SECRET][..], format!("t={T0},v1=zz"), BODY, T0, Err(VerifyError::Malformed("v1 is not hex"))),
            (
                "odd length",
                &[SECRET][..],
                format!("t={T0},v1={}", &SIG[1..]),
                BODY,
                T0,
                Err(VerifyError::Malformed("v1 is not hex")),
            ),
            ("short", &[SECRET][..], format!("t={T0},v1={}", &SIG[2..]), BODY, T0, Err(VerifyError::Mismatch)),
            ("empty v1", &[SECRET][..], format!("t={T0},v1="), BODY, T0, Err(VerifyError::Mismatch)),
            ("huge", &[SECRET][..], huge, BODY, T0, Err(VerifyError::Malformed("header too long"))),
        ] {
            assert_eq!(check(&stripe, secrets, &header(&value), body, at(now)), want, "case: {name}");
        }
        assert_eq!(
            check(&stripe, &[SECRET], &headers(&[]), BODY, at(T0)),
            Err(VerifyError::Missing(SIGNATURE_HEADER.into()))
        );
    }

    #[test]
    fn signs_like_stripe_and_dedupes_on_the_event_id() {
        let h = sign(&Stripe::new(DEFAULT_TOLERANCE), SECRET, BODY, at(T0));
        assert_eq!(get(&h, SIGNATURE_HEADER), format!("t={T0},v1={SIG}"));
        let stripe = Stripe::new(DEFAULT_TOLERANCE);
        for (body, want) in [
            (BODY, Some("evt_test_webhook")),
            (&br#"{"id":42}"#[..], None),
            (&b"not json"[..], None),
            (&b"[1]"[..], None),
        ] {
            let req = Request { method: "POST", path_and_query: "/", headers: &h, body };
            assert_eq!(stripe.delivery_id(&req).as_deref(), want);
        }
    }

    #[test]
    fn tolerance_is_configurable() {
        let stripe = Stripe::new(Duration::from_secs(10));
        let h = header(&format!("t={T0},v1={SIG}"));
        assert_eq!(check(&stripe, &[SECRET], &h, BODY, at(T0 + 10)), Ok(()));
        assert_eq!(check(&stripe, &[SECRET], &h, BODY, at(T0 + 11)), Err(VerifyError::Stale));
    }
}
