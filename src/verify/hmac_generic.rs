//! `hmac-sha256`: the generic scheme most in-house senders use (and the seed's Flask receiver):
//! one header carrying HMAC-SHA256(secret, body), hex or base64, with an optional prefix.

use std::time::SystemTime;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::spec::{Issues, Spec};
use super::{Request, Scheme, Signed, VerifyError, signature_header};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub fn decode(self, text: &str) -> Result<Vec<u8>, VerifyError> {
        match self {
            Encoding::Hex => hex::decode(text).map_err(|_| VerifyError::Malformed("signature is not hex")),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| VerifyError::Malformed("signature is not base64")),
        }
    }

    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// HMAC-SHA256 of `parts` concatenated, keyed by `secret`.
pub fn mac(secret: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for p in parts {
        m.update(p);
    }
    m
}

/// True if `sig` is the MAC of `parts` under one of `secrets`; constant-time per comparison.
pub fn matches_any(secrets: &[Secret], parts: &[&[u8]], sig: &[u8]) -> bool {
    secrets.iter().any(|s| mac(s.expose(), parts).verify_slice(sig).is_ok())
}

#[derive(Debug)]
pub struct HmacSha256 {
    header: String,
    encoding: Encoding,
    prefix: String,
    /// The provider's delivery-id header (GitHub, Shopify), the default dedupe key.
    delivery_header: Option<&'static str>,
}

impl HmacSha256 {
    pub fn new(header: &str, encoding: Encoding, prefix: &str) -> Self {
        HmacSha256 { header: header.to_ascii_lowercase(), encoding, prefix: prefix.to_string(), delivery_header: None }
    }

    /// Providers that sign the body this way and name each delivery in a header of their own.
    pub fn with_delivery_header(self, name: &'static str) -> Self {
        HmacSha256 { delivery_header: Some(name), ..self }
    }

    /// The header value for `body`: prefix and encoded MAC.
    pub fn signature(&self, secret: &Secret, body: &[u8]) -> String {
        let sig = mac(secret.expose(), &[body]).finalize().into_bytes();
        format!("{}{}", self.prefix, self.encoding.encode(&sig))
    }

    pub fn from_spec(raw: &Spec, p: &mut Issues) -> Option<Self> {
        let header = raw.header.as_deref().unwrap_or("X-Signature");
        if http::HeaderName::try_from(header).is_err() {
            p.push("header", format!("invalid header name {header:?}"));
            return None;
        }
        let encoding = match raw.encoding.as_deref() {
            None | Some("hex") => Encoding::Hex,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                p.push("encoding", format!("unknown encoding {other:?}; accepted: \"hex\", \"base64\""));
                return None;
            }
        };
        Some(Self::new(header, encoding, raw.prefix.as_deref().unwrap_or("")))
    }
}

impl Scheme for HmacSha256 {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        let value = signature_header(req.headers, &self.header)?;
        let encoded = value.strip_prefix(self.prefix.as_str()).ok_or(VerifyError::Malformed("missing prefix"))?;
        if encoded.is_empty() {
            return Err(VerifyError::Malformed("empty signature"));
        }
        let sig = self.encoding.decode(encoded)?;
        if matches_any(secrets, &[req.body], &sig) { Ok(()) } else { Err(VerifyError::Mismatch) }
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        req.headers.get(self.delivery_header?)?.to_str().ok().map(|s| s.trim().to_string())
    }

    fn credential_header(&self) -> Option<&str> {
        Some(&self.header)
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, _now: SystemTime) -> Signed {
        let mut headers = vec![(self.header.clone(), self.signature(secret, req.body))];
        if let Some(name) = self.delivery_header {
            headers.push((name.to_string(), uuid::Uuid::new_v4().to_string()));
        }
        Signed::headers(req, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    const BODY: &[u8] = br#"{"id":"evt_1","email":"a@example.com"}"#;

    fn signed(secret: &str, enc: Encoding, prefix: &str, body: &[u8]) -> String {
        HmacSha256::new("x-signature", enc, prefix).signature(&Secret::new(secret), body)
    }

    #[test]
    fn table() {
        let hex = HmacSha256::new("X-Signature", Encoding::Hex, "");
        let b64p = HmacSha256::new("X-Sig", Encoding::Base64, "sha256=");
        let good = signed("s1", Encoding::Hex, "", BODY);
        let mut tampered = BODY.to_vec();
        tampered[3] ^= 1;
        let huge = "a".repeat(10_000);
        for (name, scheme, secrets, hdrs, body, want) in [
            ("valid hex", &hex, &["s1"][..], headers(&[("x-signature", &good)]), BODY, Ok(())),
            ("uppercase hex", &hex, &["s1"][..], headers(&[("x-signature", &good.to_uppercase())]), BODY, Ok(())),
            ("rotated secret", &hex, &["old", "s1"][..], headers(&[("x-signature", &good)]), BODY, Ok(())),
            (
                "body changed",
                &hex,
                &["s1"][..],
                headers(&[("x-signature", &good)]),
                &tampered[..],
                Err(VerifyError::Mismatch),
            ),
            ("wrong secret", &hex, &["s2"][..], headers(&[("x-signature", &good)]), BODY, Err(VerifyError::Mismatch)),
            ("missing", &hex, &["s1"][..], headers(&[]), BODY, Err(VerifyError::Missing("x-signature".into()))),
            (
                "empty",
                &hex,
                &["s1"][..],
                headers(&[("x-signature", "")]),
                BODY,
                Err(VerifyError::Malformed("empty header")),
            ),
            (
                "non-hex",
                &hex,
                &["s1"][..],
                headers(&[("x-signature", "zz")]),
                BODY,
                Err(VerifyError::Malformed("signature is not hex")),
            ),
            (
                "odd length",
                &hex,
                &["s1"][..],
                headers(&[("x-signature", "abc")]),
                BODY,
                Err(VerifyError::Malformed("signature is not hex")),
            ),
            ("short", &hex, &["s1"][..], headers(&[("x-signature", "abcd")]), BODY, Err(VerifyError::Mismatch)),
            (
                "huge",
                &hex,
                &["s1"][..],
                headers(&[("x-signature", &huge)]),
                BODY,
                Err(VerifyError::Malformed("header too long")),
            ),
            (
                "base64 with prefix",
                &b64p,
                &["s1"][..],
                headers(&[("x-sig", &signed("s1", Encoding::Base64, "sha256=", BODY))]),
                BODY,
                Ok(()),
            ),
            (
                "base64 missing prefix",
                &b64p,
                &["s1"][..],
                headers(&[("x-sig", &signed("s1", Encoding::Base64, "", BODY))]),
                BODY,
                Err(VerifyError::Malformed("missing prefix")),
            ),
        ] {
            assert_eq!(check(scheme, secrets, &hdrs, body, at(T0)), want, "case: {name}");
        }
    }

    #[test]
    fn matches_the_seed_receiver() {
        // The Flask seed: hmac.new(secret.encode(), payload, sha256).hexdigest() in X-Signature.
        // Computed with Python for secret "topsecret" and body b"{}".
        let sig = "08525245d41d96cd1b6a931e7f3f580edda83032a233e8c36a5130565e6efa53";
        let scheme = HmacSha256::new("X-Signature", Encoding::Hex, "");
        assert_eq!(check(&scheme, &["topsecret"], &headers(&[("x-signature", sig)]), b"{}", at(T0)), Ok(()));
        assert_eq!(signed("topsecret", Encoding::Hex, "", b"{}"), sig);
    }
}
