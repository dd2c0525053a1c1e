//! `standard-webhooks`: the Standard Webhooks spec, which Svix and many SaaS senders use.
//! Headers `webhook-id`, `webhook-timestamp` (unix seconds, within the tolerance either way) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, a space-separated
//! list (one entry per active secret; other versions such as `v1a` are ignored). Svix sends the
//! same under `svix-id`, `svix-timestamp`, `svix-signature`. The secret is `whsec_` + base64 of
//! the key. Dedupe: `webhook-id` (`svix-id`), the same on every retry.
//! Spec: <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>;
//! reference code: `libraries/python/standardwebhooks/webhooks.py` in the same repository.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};
use hmac::Mac;
use http::HeaderMap;

use super::hmac_generic::mac;
use super::spec::{Issues, Spec};
use super::{
    Request, Scheme, Signed, VerifyError, any_equal, fresh, signature_header, tolerance, unix_now, unix_seconds,
};
use crate::secret::Secret;

/// The header names of one flavour: (id, timestamp, signature).
type Names = (&'static str, &'static str, &'static str);
pub const STANDARD_HEADERS: Names = ("webhook-id", "webhook-timestamp", "webhook-signature");
pub const SVIX_HEADERS: Names = ("svix-id", "svix-timestamp", "svix-signature");

/// Base64 that accepts the secret with or without its `=` padding, as the reference libraries do.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug)]
pub struct StandardWebhooks {
    tolerance: Duration,
}

impl StandardWebhooks {
    pub fn new(tolerance: Duration) -> Self {
        StandardWebhooks { tolerance }
    }

    pub fn from_spec(raw: &Spec, p: &mut Issues) -> Option<Self> {
        tolerance(raw, p).map(Self::new)
    }
}

/// The key of a `whsec_<base64>` secret (the prefix is optional, padding too).
pub fn decode_secret(secret: &[u8]) -> Result<Vec<u8>, String> {
    const WANT: &str = "must be a Standard Webhooks secret: \"whsec_\" followed by base64 \
                        (e.g. from `openssl rand -base64 32`)";
    let text = std::str::from_utf8(secret).map_err(|_| WANT.to_string())?.trim();
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    match LENIENT.decode(b64) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(WANT.into()),
    }
}

/// Which flavour the request uses: `webhook-*`, else `svix-*`.
fn names(headers: &HeaderMap) -> Names {
    if !headers.contains_key(STANDARD_HEADERS.2) && headers.contains_key(SVIX_HEADERS.2) {
        SVIX_HEADERS
    } else {
        STANDARD_HEADERS
    }
}

fn signature(key: &[u8], id: &str, ts: &str, body: &[u8]) -> [u8; 32] {
    mac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]).finalize().into_bytes().into()
}

impl Scheme for StandardWebhooks {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        let (id_name, ts_name, sig_name) = names(req.headers);
        let list = signature_header(req.headers, sig_name)?;
        let id = signature_header(req.headers, id_name)?;
        let ts = signature_header(req.headers, ts_name)?;
        let mut candidates = Vec::new();
        let mut undecodable = false;
        for entry in list.split(' ').filter(|e| !e.is_empty()) {
            // Other versions (v1a is asymmetric) and stray text are skipped.
            if let Some(("v1", sig)) = entry.split_once(',') {
                match STANDARD.decode(sig) {
                    Ok(sig) => candidates.push(sig),
                    Err(_) => undecodable = true,
                }
            }
        }
        if candidates.is_empty() {
            return Err(VerifyError::Malformed(if undecodable { "v1 is not base64" } else { "no v1 signature" }));
        }
        fresh(unix_seconds(ts)?, now, self.tolerance)?;
        for key in secrets {
            if any_equal(&signature(key.expose(), id, ts, req.body), &candidates) {
                return Ok(());
            }
        }
        Err(VerifyError::Mismatch)
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        let (id_name, _, _) = names(req.headers);
        req.headers.get(id_name)?.to_str().ok().map(|s| s.trim().to_string())
    }

    fn key(&self, secret: Secret) -> Result<Secret, String> {
        decode_secret(secret.expose()).map(Secret::new)
    }

    fn sign(&self, req: &Request<'_>, key: &Secret, now: SystemTime) -> Signed {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let ts = unix_now(now).to_string();
        let sig = general_purpose::STANDARD.encode(signature(key.expose(), &id, &ts, req.body));
        let (id_name, ts_name, sig_name) = STANDARD_HEADERS;
        Signed::headers(req, vec![(id_name.into(), id), (ts_name.into(), ts), (sig_name.into(), format!("v1,{sig}"))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::DEFAULT_TOLERANCE;
    use crate::verify::test_support::*;

    // libraries/python/tests/test_webhooks.py (test_sign_function) and
    // libraries/javascript/src/webhook.test.ts in https://github.com/standard-webhooks/standard-webhooks
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // Negative vectors of the same test suites.
    const ONE_CHAR_OFF: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
    const OTHER: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    // libraries/rust/src/lib.rs tests in the same repository.
    const RUST_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const RUST_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const RUST_TS: u64 = 1649367553;
    const RUST_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const RUST_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn std_headers(id: &str, ts: u64, sig: &str) -> HeaderMap {
        headers(&[("webhook-id", id), ("webhook-timestamp", &ts.to_string()), ("webhook-signature", sig)])
    }

    #[test]
    fn table() {
        let sw = StandardWebhooks::new(DEFAULT_TOLERANCE);
        let good = std_headers(ID, TS, SIG);
        let svix = headers(&[("svix-id", ID), ("svix-timestamp", &TS.to_string()), ("svix-signature", SIG)]);
        let sig = |v: &str| with(&good, "webhook-signature", Some(v));
        let b64 = SIG.trim_start_matches("v1,");
        let huge = format!("{SIG} {}", "v1,AAAA ".repeat(1000));
        for (name, secrets, hdrs, body, now, want) in [
            ("spec vector (python/js tests)", &[SECRET][..], good.clone(), BODY, TS, Ok(())),
            (
                "spec vector (rust tests)",
                &[RUST_SECRET][..],
                std_headers(RUST_ID, RUST_TS, RUST_SIG),
                RUST_BODY,
                RUST_TS,
                Ok(()),
            ),
            ("svix-* headers", &[SECRET][..], svix, BODY, TS, Ok(())),
            ("rotated secret (second of two)", &[RUST_SECRET, SECRET][..], good.clone(), BODY, TS, Ok(())),
            ("within tolerance", &[SECRET][..], good.clone(), BODY, TS + 300, Ok(())),
            ("stale", &[SECRET][..], good.clone(), BODY, TS + 301, Err(VerifyError::Stale)),
            ("future", &[SECRET][..], good.clone(), BODY, TS - 301, Err(VerifyError::Stale)),
            ("one char off", &[SECRET][..], sig(ONE_CHAR_OFF), BODY, TS, Err(VerifyError::Mismatch)),
            ("other signature", &[SECRET][..], sig(OTHER), BODY, TS, Err(VerifyError::Mismatch)),
            ("several, last matches", &[SECRET][..], sig(&format!("{OTHER} {ONE_CHAR_OFF} {SIG}")), BODY, TS, Ok(())),
            ("v1a and v2 ignored", &[SECRET][..], sig(&format!("v1a,{b64} v2,{b64} {SIG}")), BODY, TS, Ok(())),
            (
                "only v2",
                &[SECRET][..],
                sig(&format!("v2,{b64}")),
                BODY,
                TS,
                Err(VerifyError::Malformed("no v1 signature")),
            ),
            ("empty v1,", &[SECRET][..], sig("v1,"), BODY, TS, Err(VerifyError::Mismatch)),
            ("no version", &[SECRET][..], sig(b64), BODY, TS, Err(VerifyError::Malformed("no v1 signature"))),
            ("non-base64", &[SECRET][..], sig("v1,***"), BODY, TS, Err(VerifyError::Malformed("v1 is not base64"))),
            (
                "truncated base64",
                &[SECRET][..],
                sig(&SIG[..SIG.len() - 1]),
                BODY,
                TS,
                Err(VerifyError::Malformed("v1 is not base64")),
            ),
            (
                "hex instead of base64",
                &[SECRET][..],
                sig(&format!("v1,{}", "ab".repeat(32))),
                BODY,
                TS,
                Err(VerifyError::Mismatch),
            ),
            (
                "body byte changed",
                &[SECRET][..],
                good.clone(),
                br#"{"test": 2432232315}"#,
                TS,
                Err(VerifyError::Mismatch),
            ),
            ("wrong secret", &[RUST_SECRET][..], good.clone(), BODY, TS, Err(VerifyError::Mismatch)),
            (
                "id changed",
                &[SECRET][..],
                with(&good, "webhook-id", Some("msg_other")),
                BODY,
                TS,
                Err(VerifyError::Mismatch),
            ),
            (
                "signature missing",
                &[SECRET][..],
                with(&good, "webhook-signature", None),
                BODY,
                TS,
                Err(VerifyError::Missing("webhook-signature".into())),
            ),
            (
                "id missing",
                &[SECRET][..],
                with(&good, "webhook-id", None),
                BODY,
                TS,
                Err(VerifyError::Missing("webhook-id".into())),
            ),
            (
                "timestamp missing",
                &[SECRET][..],
                with(&good, "webhook-timestamp", None),
                BODY,
                TS,
                Err(VerifyError::Missing("webhook-timestamp".into())),
            ),
            (
                "timestamp not a number",
                &[SECRET][..],
                with(&good, "webhook-timestamp", Some("soon")),
                BODY,
                TS,
                Err(VerifyError::Malformed("timestamp is not unix seconds")),
            ),
            ("signature empty", &[SECRET][..], sig(""), BODY, TS, Err(VerifyError::Malformed("empty header"))),
            ("huge", &[SECRET][..], sig(&huge), BODY, TS, Err(VerifyError::Malformed("header too long"))),
        ] {
            assert_eq!(check(&sw, secrets, &hdrs, body, at(now)), want, "case: {name}");
        }
    }

    #[test]
    fn signs_like_the_reference_library_and_dedupes_on_the_message_id() {
        let sw = StandardWebhooks::new(DEFAULT_TOLERANCE);
        let key = decode_secret(SECRET.as_bytes()).unwrap();
        assert_eq!(format!("v1,{}", STANDARD.encode(signature(&key, ID, &TS.to_string(), BODY))), SIG);
        let h = sign(&sw, SECRET, BODY, at(T0));
        assert_eq!(check(&sw, &[SECRET], &h, BODY, at(T0)), Ok(()));
        let req = Request { method: "POST", path_and_query: "/", headers: &h, body: BODY };
        assert_eq!(sw.delivery_id(&req), Some(get(&h, "webhook-id")));
        let svix = headers(&[("svix-id", "msg_svix"), ("svix-signature", SIG)]);
        let req = Request { method: "POST", path_and_query: "/", headers: &svix, body: BODY };
        assert_eq!(sw.delivery_id(&req).as_deref(), Some("msg_svix"));
    }

    #[test]
    fn secrets_are_whsec_base64() {
        let key = vec![7u8; 25]; // 25 bytes: base64 ends in "=="
        let padded = STANDARD.encode(&key);
        let unpadded = padded.trim_end_matches('=');
        assert_ne!(padded, unpadded);
        for text in
            [format!("whsec_{padded}"), format!("whsec_{unpadded}"), padded.clone(), format!("whsec_{padded}\n")]
        {
            assert_eq!(decode_secret(text.as_bytes()), Ok(key.clone()), "case: {text:?}");
        }
        for text in ["whsec_", "whsec_not base64!", "", "whsec_A"] {
            assert!(decode_secret(text.as_bytes()).unwrap_err().contains("whsec_"), "case: {text:?}");
        }
        assert!(decode_secret(&[0xff, 0xfe]).is_err());
    }
}
