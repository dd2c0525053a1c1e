//! `shopify`: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>` (base64, unlike the
//! hex of Shopify's OAuth query HMAC), keyed by the app's client secret as bytes. No timestamp:
//! dedupe on `X-Shopify-Webhook-Id`, which retries keep.
//! Spec: <https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-webhook-to-ensure-its-coming-from-shopify>.

use super::hmac_generic::{Encoding, HmacSha256};

pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
pub const DELIVERY_HEADER: &str = "x-shopify-webhook-id";

/// The shopify scheme: the generic HMAC check with Shopify's header, encoding and delivery id.
pub fn scheme() -> HmacSha256 {
    HmacSha256::new(SIGNATURE_HEADER, Encoding::Base64, "").with_delivery_header(DELIVERY_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;
    use crate::verify::{Request, Scheme, VerifyError};

    // Shopify publishes no vector; computed from the documented algorithm with Python's hmac and
    // matching an independent public test (see shared PROVIDERS.md).
    const SECRET: &str = "shop-secret";
    const BODY: &[u8] = br#"{"id":1}"#;
    const SIG: &str = "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=";
    const SIG_HEX: &str = "a655bc546aaad270cc204843a9a34d5bdf5ab1d502cbb108a8b655710c2d019d";

    #[test]
    fn table() {
        let shop = scheme();
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
        let h = sign(&scheme(), SECRET, BODY, at(T0));
        assert_eq!(get(&h, SIGNATURE_HEADER), SIG);
        let req = Request { method: "POST", path_and_query: "/", headers: &h, body: BODY };
        assert_eq!(scheme().delivery_id(&req), Some(get(&h, DELIVERY_HEADER)));
    }
}
