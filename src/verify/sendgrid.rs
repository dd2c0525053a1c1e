//! `sendgrid` (Event Webhook, signed): `X-Twilio-Email-Event-Webhook-Signature: <base64 DER
//! ECDSA P-256 signature>` over SHA-256 of `X-Twilio-Email-Event-Webhook-Timestamp` + body,
//! checked with the verification key the dashboard shows (`public_key`, base64 of the DER
//! SubjectPublicKeyInfo; not a secret, and no secret is taken). The timestamp must be within the
//! tolerance (default 5 minutes). Dedupe: the body is an array of events, each with its own
//! `sg_event_id`, so there is no one id: the body's hash.
//! Spec: <https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features>;
//! reference code: sendgrid-python `sendgrid/helpers/eventwebhook/__init__.py`.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use super::spec::{self, Issues, Spec};
use super::{Request, Scheme, Signed, VerifyError, fresh, signature_header, unix_seconds};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

#[derive(Debug)]
pub struct SendGrid {
    key: VerifyingKey,
    tolerance: Duration,
}

pub fn parse_key(text: &str) -> Result<VerifyingKey, String> {
    let der = STANDARD
        .decode(text.trim())
        .map_err(|_| "must be base64 (the verification key SendGrid's dashboard shows)".to_string())?;
    VerifyingKey::from_public_key_der(&der).map_err(|_| "is not a P-256 public key (base64 DER)".to_string())
}

impl SendGrid {
    pub fn new(key: VerifyingKey, tolerance: Duration) -> Self {
        SendGrid { key, tolerance }
    }

    pub fn from_spec(spec: &Spec, p: &mut Issues) -> Option<Self> {
        let (key, tolerance) = spec::public_key(
            spec,
            p,
            "missing; copy the verification key from Mail Settings > Event Webhook",
            parse_key,
        )?;
        Some(Self::new(key, tolerance))
    }
}

impl Scheme for SendGrid {
    fn verify(&self, req: &Request<'_>, _secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        let sig = signature_header(req.headers, SIGNATURE_HEADER)?;
        let ts = signature_header(req.headers, TIMESTAMP_HEADER)?;
        let der = STANDARD.decode(sig).map_err(|_| VerifyError::Malformed("signature is not base64"))?;
        let sig = Signature::from_der(&der).map_err(|_| VerifyError::Malformed("signature is not DER ECDSA"))?;
        fresh(unix_seconds(ts)?, now, self.tolerance)?;
        let mut message = Vec::with_capacity(ts.len() + req.body.len());
        message.extend_from_slice(ts.as_bytes());
        message.extend_from_slice(req.body);
        self.key.verify(&message, &sig).map_err(|_| VerifyError::Mismatch)
    }

    fn can_sign(&self) -> bool {
        false
    }

    fn sign(&self, req: &Request<'_>, _secret: &Secret, _now: SystemTime) -> Signed {
        // Only SendGrid holds the private key.
        Signed::headers(req, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;

    use super::*;
    use crate::verify::DEFAULT_TOLERANCE;
    use crate::verify::test_support::*;

    /// The base64 SubjectPublicKeyInfo of `key`, as SendGrid's dashboard shows one: the fixed
    /// P-256 SPKI prefix, then the uncompressed point.
    pub fn dashboard_key(key: &SigningKey) -> String {
        let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        der.extend_from_slice(key.verifying_key().to_encoded_point(false).as_bytes());
        STANDARD.encode(der)
    }

    #[test]
    fn table() {
        let signer = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let sg = SendGrid::new(parse_key(&dashboard_key(&signer)).unwrap(), DEFAULT_TOLERANCE);
        let body: &[u8] = br#"[{"email":"a@example.com","event":"delivered","sg_event_id":"e1"}]"#;
        let ts = T0.to_string();
        let sig: Signature = signer.sign(&[ts.as_bytes(), body].concat());
        let good = headers(&[(SIGNATURE_HEADER, &STANDARD.encode(sig.to_der().as_bytes())), (TIMESTAMP_HEADER, &ts)]);
        for (name, hdrs, body, now, want) in [
            ("valid", good.clone(), body, T0, Ok(())),
            ("tampered", good.clone(), &b"[]"[..], T0, Err(VerifyError::Mismatch)),
            ("stale", good.clone(), body, T0 + 301, Err(VerifyError::Stale)),
            (
                "not DER",
                with(&good, SIGNATURE_HEADER, Some("AAAA")),
                body,
                T0,
                Err(VerifyError::Malformed("signature is not DER ECDSA")),
            ),
            (
                "missing",
                with(&good, TIMESTAMP_HEADER, None),
                body,
                T0,
                Err(VerifyError::Missing(TIMESTAMP_HEADER.into())),
            ),
        ] {
            assert_eq!(check(&sg, &[], &hdrs, body, at(now)), want, "case: {name}");
        }
        let other = SigningKey::from_slice(&[8u8; 32]).unwrap();
        let wrong = SendGrid::new(parse_key(&dashboard_key(&other)).unwrap(), DEFAULT_TOLERANCE);
        assert_eq!(check(&wrong, &[], &good, body, at(T0)), Err(VerifyError::Mismatch), "wrong key");
        assert!(parse_key("not base64!").is_err() && parse_key("AAAA").is_err());
    }
}
