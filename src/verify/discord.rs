//! `discord` (interactions endpoint): `X-Signature-Ed25519: <hex Ed25519 signature>` over
//! `X-Signature-Timestamp` + body, checked with the application's public key (`public_key =
//! "<hex>"` in the config: not a secret, and no secret is taken). The timestamp must be within
//! the tolerance (default 5 minutes). A signed PING (`{"type":1}`) is answered `{"type":1}` and
//! never stored; an unsigned or badly signed one is 401, as Discord's endpoint check requires.
//! Dedupe: the interaction's `id`.
//! Spec: <https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers>.

use std::time::{Duration, SystemTime};

use ed25519_dalek::{Signature, VerifyingKey};

use super::spec::{self, Issues, Spec};
use super::{
    Handshake, HandshakeError, Request, Scheme, Signed, VerifyError, fresh, json_string_field, signature_header,
    unix_seconds,
};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";

#[derive(Debug)]
pub struct Discord {
    key: VerifyingKey,
    tolerance: Duration,
}

/// A public key as the provider shows it, hex of 32 bytes.
pub fn parse_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(text.trim()).map_err(|_| "must be hex (the application's PUBLIC KEY)".to_string())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "must be 32 bytes (64 hex digits)".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "is not a valid Ed25519 public key".to_string())
}

impl Discord {
    pub fn new(key: VerifyingKey, tolerance: Duration) -> Self {
        Discord { key, tolerance }
    }

    pub fn from_spec(spec: &Spec, p: &mut Issues) -> Option<Self> {
        let (key, tolerance) = spec::public_key(
            spec,
            p,
            "missing; copy the application's PUBLIC KEY (hex) from the Developer Portal",
            parse_key,
        )?;
        Some(Self::new(key, tolerance))
    }
}

impl Scheme for Discord {
    fn verify(&self, req: &Request<'_>, _secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        let sig = signature_header(req.headers, SIGNATURE_HEADER)?;
        let ts = signature_header(req.headers, TIMESTAMP_HEADER)?;
        let sig = hex::decode(sig).map_err(|_| VerifyError::Malformed("signature is not hex"))?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| VerifyError::Malformed("signature is not 64 bytes"))?;
        fresh(unix_seconds(ts)?, now, self.tolerance)?;
        let mut message = Vec::with_capacity(ts.len() + req.body.len());
        message.extend_from_slice(ts.as_bytes());
        message.extend_from_slice(req.body);
        self.key.verify_strict(&message, &Signature::from_bytes(&sig)).map_err(|_| VerifyError::Mismatch)
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        json_string_field(req.body, "id")
    }

    fn can_sign(&self) -> bool {
        false
    }

    fn sign(&self, req: &Request<'_>, _secret: &Secret, _now: SystemTime) -> Signed {
        // Only Discord holds the private key.
        Signed::headers(req, Vec::new())
    }

    fn handshake(
        &self,
        req: &Request<'_>,
        secrets: &[Secret],
        now: SystemTime,
    ) -> Option<Result<Handshake, HandshakeError>> {
        let doc: serde_json::Value = serde_json::from_slice(req.body).ok()?;
        if doc.get("type")?.as_u64()? != 1 {
            return None;
        }
        Some(
            self.verify(req, secrets, now)
                .map(|()| Handshake::json(serde_json::json!({ "type": 1 })))
                .map_err(Into::into),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::verify::DEFAULT_TOLERANCE;
    use crate::verify::test_support::*;

    /// RFC 8032 §7.1 TEST 1's secret key; its public key is the RFC's too.
    pub const SECRET_KEY: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    pub const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    pub fn sign_discord(ts: &str, body: &[u8]) -> String {
        let key = SigningKey::from_bytes(&hex::decode(SECRET_KEY).unwrap().try_into().unwrap());
        hex::encode(key.sign(&[ts.as_bytes(), body].concat()).to_bytes())
    }

    #[test]
    fn rfc_8032_key_pair() {
        let key = SigningKey::from_bytes(&hex::decode(SECRET_KEY).unwrap().try_into().unwrap());
        assert_eq!(hex::encode(key.verifying_key().to_bytes()), PUBLIC_KEY);
        // TEST 1: the empty message.
        assert_eq!(
            hex::encode(key.sign(b"").to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn table() {
        let d = Discord::new(parse_key(PUBLIC_KEY).unwrap(), DEFAULT_TOLERANCE);
        let body: &[u8] = br#"{"type":2,"id":"1234"}"#;
        let ts = T0.to_string();
        let good = headers(&[(SIGNATURE_HEADER, &sign_discord(&ts, body)), (TIMESTAMP_HEADER, &ts)]);
        for (name, hdrs, body, now, want) in [
            ("valid", good.clone(), body, T0, Ok(())),
            ("tampered", good.clone(), &br#"{"type":2,"id":"1235"}"#[..], T0, Err(VerifyError::Mismatch)),
            ("stale", good.clone(), body, T0 + 301, Err(VerifyError::Stale)),
            (
                "timestamp changed",
                with(&good, TIMESTAMP_HEADER, Some(&(T0 + 1).to_string())),
                body,
                T0,
                Err(VerifyError::Mismatch),
            ),
            (
                "short",
                with(&good, SIGNATURE_HEADER, Some("abcd")),
                body,
                T0,
                Err(VerifyError::Malformed("signature is not 64 bytes")),
            ),
            (
                "not hex",
                with(&good, SIGNATURE_HEADER, Some("zz")),
                body,
                T0,
                Err(VerifyError::Malformed("signature is not hex")),
            ),
            (
                "missing",
                with(&good, SIGNATURE_HEADER, None),
                body,
                T0,
                Err(VerifyError::Missing(SIGNATURE_HEADER.into())),
            ),
        ] {
            assert_eq!(check(&d, &[], &hdrs, body, at(now)), want, "case: {name}");
        }
        let other = Discord::new(
            parse_key("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c").unwrap(),
            DEFAULT_TOLERANCE,
        );
        assert_eq!(check(&other, &[], &good, body, at(T0)), Err(VerifyError::Mismatch), "wrong key");
        for bad in ["zz", "abcd", &"00".repeat(32)] {
            assert!(parse_key(bad).is_err() || bad == "00".repeat(32), "{bad}");
        }
    }

    #[test]
    fn ping_is_answered_after_the_check() {
        let d = Discord::new(parse_key(PUBLIC_KEY).unwrap(), DEFAULT_TOLERANCE);
        let body: &[u8] = br#"{"type":1,"id":"1"}"#;
        let ts = T0.to_string();
        let h = headers(&[(SIGNATURE_HEADER, &sign_discord(&ts, body)), (TIMESTAMP_HEADER, &ts)]);
        let req = Request { method: "POST", path_and_query: "/d", headers: &h, body };
        assert_eq!(d.handshake(&req, &[], at(T0)), Some(Ok(Handshake::json(serde_json::json!({"type":1})))));
        let req = Request { method: "POST", path_and_query: "/d", headers: &h, body: br#"{"type":1,"id":"2"}"# };
        assert_eq!(d.handshake(&req, &[], at(T0)), Some(Err(HandshakeError::Verify(VerifyError::Mismatch))));
    }
}
