//! `shopify`: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>` (base64, unlike the
//! hex of Shopify's OAuth query HMAC), keyed by the app's client secret as bytes. No timestamp:
//! dedupe on `X-Shopify-Webhook-Id`, which retries keep.
//! Spec: <https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-webhook-to-ensure-its-coming-from-shopify>.

use std::time::SystemTime;

use super::hmac_generic::{Encoding, HmacSha256};
use super::{Request, Scheme, Signed, VerifyError};
use crate::config::Secret;

pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
pub const DELIVERY_HEADER: &str = "x-shopify-webhook-id";

#[derive(Debug)]
pub struct Shopify {
    mac: HmacSha256,
}

impl Shopify {
    pub fn new() -> Self {
        Shopify { mac: HmacSha256::new(SIGNATURE_HEADER, Encoding::Base64, "") }
    }
}

impl Default for Shopify {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheme for Shopify {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        self.mac.verify(req, secrets, now)
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        req.headers.get(DELIVERY_HEADER)?.to_str().ok().map(|s| s.trim().to_string())
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, _now: SystemTime) -> Signed {
        Signed::headers(
            req,
            vec![
                (SIGNATURE_HEADER.into(), self.mac.signature(secret, req.body)),
                (DELIVERY_HEADER.into(), uuid::Uuid::new_v4().to_string()),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Shopify publishes no vector; computed from the documented algorithm with Python's hmac and
    // matching an independent public test (see shared PROVIDERS.md).
    const SECRET: &str = "shop-secret";
    const BODY: &[u8] = br#"{"id":1}"#;
    const SIG: &str = "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=";
    const SIG_HEX: &str = "a655bc546aaad270cc204843a9a34d5bdf5ab1d502cbb108a8b655710c2d019d";

    #[test]
    fn table() {
        let shop = Shopify::new();
        let good = headers(&[(SIGNATURE_HEADER, SIG)]);
        let huge = "A".repeat(5000);
        for (name, secrets, hdrs, body, want) in [
            ("self-computed vector", &[SECRET][..], good.clone(), BODY, Ok(())),
            ("rotated secret (second of two)", &["old", SECRET][..], good.clone(), BODY, Ok(())),
            ("body byte changed", &[SECRET][..], good.clone(), br#"{"id":2}"#, Err(VerifyError::Mismatch)),
            ("wrong secret", &["other"][..], good.clone(), BODY, Err(VerifyError::Mismatch)),
            ("header missing", &[SECRET][..], headers(&[]), BODY, Err(VerifyError::Missing(SIGNATURE_HEADER.into()))),
            (
                "header empty",
                &[SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(" ")),
                BODY,
                Err(VerifyError::Malformed("empty header")),
            ),
            (
                "hex instead of base64",
                &[SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(SIG_HEX)),
                BODY,
                Err(VerifyError::Mismatch),
            ),
            (
                "not base64",
                &[SECRET][..],
                with(&good, SIGNATURE_HEADER, Some("***")),
                BODY,
                Err(VerifyError::Malformed("signature is not base64")),
            ),
            (
                "truncated base64",
                &[SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(&SIG[..SIG.len() - 1])),
                BODY,
                Err(VerifyError::Malformed("signature is not base64")),
            ),
            (
                "prefixed",
                &[SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(&format!("sha256={SIG}"))),
                BODY,
                Err(VerifyError::Malformed("signature is not base64")),
            ),
            (
                "huge",
                &[SECRET][..],
                with(&good, SIGNATURE_HEADER, Some(&huge)),
                BODY,
                Err(VerifyError::Malformed("header too long")),
            ),
        ] {
            assert_eq!(check(&shop, secrets, &hdrs, body, at(T0)), want, "case: {name}");
        }
    }

    #[test]
    fn signs_like_shopify_and_dedupes_on_the_webhook_id() {
        let h = sign(&Shopify::new(), SECRET, BODY, at(T0));
        assert_eq!(get(&h, SIGNATURE_HEADER), SIG);
        let req = Request { path_and_query: "/", headers: &h, body: BODY };
        assert_eq!(Shopify::new().delivery_id(&req), Some(get(&h, DELIVERY_HEADER)));
    }
}
