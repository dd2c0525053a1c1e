//! `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, the secret as bytes.
//! No timestamp, so no replay window: dedupe on `X-GitHub-Delivery` (a GUID per delivery).
//! Spec: <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>.
//! The legacy SHA-1 `X-Hub-Signature` is not accepted.

use super::hmac_generic::{Encoding, HmacSha256};

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// The github scheme: the generic HMAC check with GitHub's header, encoding and delivery id.
pub fn scheme() -> HmacSha256 {
    HmacSha256::new(SIGNATURE_HEADER, Encoding::Hex, "sha256=").with_delivery_header(DELIVERY_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;
    use crate::verify::{Request, Scheme, VerifyError};

    // Published in "Validating webhook deliveries":
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn table() {
        let gh = scheme();
        let good = sign(&gh, "s1", DOC_BODY, at(T0));
        let sig = get(&good, SIGNATURE_HEADER);
        let hex = sig.trim_start_matches("sha256=").to_string();
        let huge = format!("sha256={}", "a".repeat(5000));
        let legacy = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";
        for (name, secrets, hdrs, body, want) in [
            (
                "GitHub's documented example",
                &[DOC_SECRET][..],
                headers(&[(SIGNATURE_HEADER, DOC_SIG)]),
                DOC_BODY,
                Ok(()),
            ),
            ("signed by sign()", &["s1"][..], good.clone(), DOC_BODY, Ok(())),
            ("rotated secret (second of two)", &["old", "s1"][..], good.clone(), DOC_BODY, Ok(())),
            ("body byte changed", &["s1"][..], good.clone(), b"Hello, World?", Err(VerifyError::Mismatch)),
            ("wrong secret", &["s2"][..], good.clone(), DOC_BODY, Err(VerifyError::Mismatch)),
            ("header missing", &["s1"][..], headers(&[]), DOC_BODY, Err(VerifyError::Missing(SIGNATURE_HEADER.into()))),
            (
                "header empty",
                &["s1"][..],
                with(&good, SIGNATURE_HEADER, Some("")),
                DOC_BODY,
                Err(VerifyError::Malformed("empty header")),
            ),
            (
                "no sha256= prefix",
                &["s1"][..],
                with(&good, SIGNATURE_HEADER, Some(&hex)),
                DOC_BODY,
                Err(VerifyError::Malformed("missing prefix")),
            ),
            (
                "legacy sha1 value",
                &[DOC_SECRET][..],
                headers(&[(SIGNATURE_HEADER, legacy)]),
                DOC_BODY,
                Err(VerifyError::Malformed("missing prefix")),
            ),
            (
                "non-hex",
                &["s1"][..],
                with(&good, SIGNATURE_HEADER, Some("sha256=zz")),
                DOC_BODY,
                Err(VerifyError::Malformed("signature is not hex")),
            ),
            (
                "odd length",
                &["s1"][..],
                with(&good, SIGNATURE_HEADER, Some(&sig[..sig.len() - 1])),
                DOC_BODY,
                Err(VerifyError::Malformed("signature is not hex")),
            ),
            (
                "huge",
                &["s1"][..],
                with(&good, SIGNATURE_HEADER, Some(&huge)),
                DOC_BODY,
                Err(VerifyError::Malformed("header too long")),
            ),
        ] {
            assert_eq!(check(&gh, secrets, &hdrs, body, at(T0)), want, "case: {name}");
        }
    }

    #[test]
    fn signs_like_github_and_dedupes_on_the_delivery_guid() {
        let h = sign(&scheme(), DOC_SECRET, DOC_BODY, at(T0));
        assert_eq!(get(&h, SIGNATURE_HEADER), DOC_SIG);
        let h = headers(&[(DELIVERY_HEADER, "72d3162e-cc78-11e3-81ab-4c9367dc0958")]);
        let req = Request { method: "POST", path_and_query: "/", headers: &h, body: b"" };
        assert_eq!(scheme().delivery_id(&req).as_deref(), Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    }
}
