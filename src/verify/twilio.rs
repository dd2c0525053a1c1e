//! `twilio`: `X-Twilio-Signature: <base64 HMAC-SHA1(auth token, URL + params)>`.
//!
//! The URL is the one Twilio called, which a proxy or TLS terminator hides from us, so the
//! config names it: `public_url` is the full https URL of this source as configured in Twilio
//! (scheme, host as written, port if any, path; no query). The request's own query string is
//! appended to it (`?foo=1` as received, not re-encoded). As the official validators do, the URL
//! is accepted with and without its port (`:443` added when absent, any port removed).
//!
//! - A form body (`application/x-www-form-urlencoded`): the parameters, sorted by name, are
//!   appended as name + value; repeated names list their distinct values sorted, as
//!   twilio-python's `RequestValidator.compute_signature` does.
//! - A JSON (any other) body: the URL carries `bodySHA256=<hex SHA-256 of the body>`, only the URL
//!   is signed, and the hash must match the body. A non-form body without `bodySHA256` is refused:
//!   nothing would cover it.
//! - `X-Twilio-Webhooks-Signature-Settings: ...,algorithm=HMAC_SHA256` (webhooks signed with a
//!   shared key instead of the auth token) selects HMAC-SHA256; the key is then that shared key
//!   (list it in `secrets_env` beside the auth token).
//!
//! Dedupe: `I-Twilio-Idempotency-Token`, the same on Twilio's retries.
//! Spec: <https://www.twilio.com/docs/usage/webhooks/webhooks-security>; reference code:
//! twilio-python `twilio/request_validator.py`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::spec::{Issues, Spec};
use super::{MAX_SIGNATURE_HEADER, Request, Scheme, Signed, VerifyError, any_equal, header, signature_header};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";
pub const DELIVERY_HEADER: &str = "i-twilio-idempotency-token";
const BODY_HASH_PARAM: &str = "bodySHA256";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Sha256,
}

impl Algorithm {
    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so new_from_slice cannot fail.
        match self {
            Algorithm::Sha1 => {
                let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Algorithm::Sha256 => {
                let mut m =
                    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// From `X-Twilio-Webhooks-Signature-Settings: key=...,algorithm=...`; absent means SHA-1.
    fn of(headers: &HeaderMap) -> Result<Self, VerifyError> {
        let settings = match header(headers, SETTINGS_HEADER) {
            Err(VerifyError::Missing(_)) => return Ok(Algorithm::Sha1),
            Err(e) => return Err(e),
            Ok(v) if v.len() > MAX_SIGNATURE_HEADER => return Err(VerifyError::Malformed("header too long")),
            Ok(v) => v,
        };
        let named = settings
            .split(',')
            .filter_map(|part| part.split_once('='))
            .find_map(|(name, value)| (name.trim() == "algorithm" && !value.trim().is_empty()).then(|| value.trim()));
        match named {
            None => Ok(Algorithm::Sha1),
            Some(a) if a.eq_ignore_ascii_case("HMAC_SHA1") => Ok(Algorithm::Sha1),
            Some(a) if a.eq_ignore_ascii_case("HMAC_SHA256") => Ok(Algorithm::Sha256),
            Some(_) => Err(VerifyError::Malformed("unsupported signature algorithm")),
        }
    }
}

#[derive(Debug)]
pub struct Twilio {
    /// As configured: https, no query, no fragment. Never normalised (Twilio signs it as written).
    public_url: String,
}

impl Twilio {
    /// `public_url` must be what [`Twilio::from_spec`] accepts.
    pub fn new(public_url: &str) -> Self {
        Twilio { public_url: public_url.to_string() }
    }

    pub fn from_spec(raw: &Spec, p: &mut Issues) -> Option<Self> {
        let key = "public_url";
        let Some(text) = raw.public_url.as_deref() else {
            p.push(key, "missing; write the URL Twilio calls, e.g. public_url = \"https://hooks.example.com/twilio\"");
            return None;
        };
        let problem = match url::Url::parse(text) {
            Err(e) => Some(format!("invalid URL {text:?}: {e}")),
            Ok(u) if u.scheme() != "https" => Some(format!("{text:?} must be an https:// URL (the one Twilio calls)")),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                Some("must not contain credentials; Twilio signs the URL without them".to_string())
            }
            Ok(_) if text.contains('?') => Some(format!(
                "{text:?} must not contain a query: the query string of each request is appended to public_url"
            )),
            Ok(_) if text.contains('#') => Some(format!("{text:?} must not contain a #fragment")),
            Ok(_) if text.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Some("must not contain spaces".to_string())
            }
            Ok(_) => None,
        };
        if let Some(reason) = problem {
            p.push(key, reason);
            return None;
        }
        Some(Self::new(text))
    }

    /// The URL Twilio signed for a request to `path_and_query`: public_url + the request's query.
    fn url(&self, path_and_query: &str) -> String {
        match path_and_query.split_once('?') {
            Some((_, query)) if !query.is_empty() => format!("{}?{query}", self.public_url),
            _ => self.public_url.clone(),
        }
    }
}

/// `url` without any port and with one (`:443`/`:80` when it had none), as the official
/// validators try both: Twilio's own signer is not consistent about the default port.
fn port_variants(url: &str) -> [String; 2] {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    // The port is after the last ':' that follows any IPv6 literal's ']'.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    let port_at = authority[host_end..].rfind(':').map(|i| host_end + i);
    let (host, port) = match port_at {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => (&authority[..i], Some(&authority[i..])),
        _ => (authority, None),
    };
    let default = if scheme.eq_ignore_ascii_case("http") { ":80" } else { ":443" };
    [format!("{scheme}://{host}{path}"), format!("{scheme}://{host}{}{path}", port.unwrap_or(default))]
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
}

/// The form parameters as Twilio signs them: names sorted, each name's distinct values sorted,
/// concatenated as name + value.
fn form_params(body: &[u8]) -> String {
    let mut params: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        params.entry(name.into_owned()).or_default().insert(value.into_owned());
    }
    let mut out = String::new();
    for (name, values) in &params {
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
}

/// The `bodySHA256` query parameter of `path_and_query`, if any.
fn body_hash_param(path_and_query: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == BODY_HASH_PARAM).map(|(_, v)| v.into_owned())
}

impl Scheme for Twilio {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        let sig = signature_header(req.headers, SIGNATURE_HEADER)?;
        let sig = STANDARD.decode(sig).map_err(|_| VerifyError::Malformed("signature is not base64"))?;
        let algorithm = Algorithm::of(req.headers)?;
        let params = match body_hash_param(req.path_and_query) {
            Some(want) => {
                let want = hex::decode(want).map_err(|_| VerifyError::Malformed("bodySHA256 is not hex"))?;
                if !bool::from(Sha256::digest(req.body).as_slice().ct_eq(&want)) {
                    return Err(VerifyError::Mismatch);
                }
                String::new()
            }
            None if req.body.is_empty() => String::new(),
            None if is_form(req.headers) => form_params(req.body),
            None => return Err(VerifyError::Malformed("body is neither form-encoded nor covered by bodySHA256")),
        };
        let candidates = [sig];
        for url in port_variants(&self.url(req.path_and_query)) {
            let data = [url.as_bytes(), params.as_bytes()].concat();
            for secret in secrets {
                if any_equal(&algorithm.mac(secret.expose(), &data), &candidates) {
                    return Ok(());
                }
            }
        }
        Err(VerifyError::Mismatch)
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        req.headers.get(DELIVERY_HEADER)?.to_str().ok().map(|s| s.trim().to_string())
    }

    /// An incoming SMS, form-encoded as Twilio sends it.
    fn test_event(&self) -> (&'static str, Vec<u8>) {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let body = format!(
            "AccountSid=AC{a}&ApiVersion=2010-04-01&Body=hookgate+test&From=%2B14155550100&MessageSid=SM{sid}\
             &NumMedia=0&SmsSid=SM{sid}&SmsStatus=received&To=%2B14155550199",
            a = &sid[..32]
        );
        (FORM_CONTENT_TYPE, body.into_bytes())
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, _now: SystemTime) -> Signed {
        let (path_and_query, params) = if is_form(req.headers) || req.body.is_empty() {
            (req.path_and_query.to_string(), form_params(req.body))
        } else {
            let sep = if req.path_and_query.contains('?') { '&' } else { '?' };
            let hash = hex::encode(Sha256::digest(req.body));
            (format!("{}{sep}{BODY_HASH_PARAM}={hash}", req.path_and_query), String::new())
        };
        let data = [self.url(&path_and_query), params].concat();
        let sig = STANDARD.encode(Algorithm::Sha1.mac(secret.expose(), data.as_bytes()));
        Signed {
            path_and_query,
            headers: vec![
                (SIGNATURE_HEADER.into(), sig),
                (DELIVERY_HEADER.into(), format!("idem-{}", uuid::Uuid::new_v4().simple())),
            ],
            body: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    // Twilio's security docs example, also in twilio-php's RequestValidatorTest.php and
    // twilio-csharp's tests: https://www.twilio.com/docs/usage/webhooks/webhooks-security
    const TOKEN: &str = "12345";
    const PUBLIC_URL: &str = "https://mycompany.com/myapp.php";
    const PATH: &str = "/myapp.php?foo=1&bar=2";
    const FORM: &[u8] =
        b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    const FORM_SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const FORM_SIG_WITH_PORT: &str = "kvajT1Ptam85bY51eRf/AJRuM3w=";
    const MIXED_CASE_SIG: &str = "g9IN/x4Cft2g517EjYvEvM/W7LU=";
    const JSON: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const JSON_SIG: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";
    // twilio-php's repeated-parameter vector (values de-duplicated and sorted).
    const REPEATED: &[u8] = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
    const REPEATED_SIG: &str = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";

    const FORM_TYPE: &str = "application/x-www-form-urlencoded";

    fn check_at(
        url: &str,
        secrets: &[&str],
        path: &str,
        pairs: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        let h = headers(pairs);
        Twilio::new(url).verify(&Request { method: "POST", path_and_query: path, headers: &h, body }, &secrets, at(T0))
    }

    #[test]
    fn table() {
        let json_path = format!("{PATH}&bodySHA256={JSON_HASH}");
        let sig = |s| (SIGNATURE_HEADER, s);
        let form = ("content-type", FORM_TYPE);
        let json = ("content-type", "application/json");
        let huge = "A".repeat(5000);
        for (name, url, secrets, path, pairs, body, want) in [
            ("docs example", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(FORM_SIG), form], FORM, Ok(())),
            (
                "form content type with charset",
                PUBLIC_URL,
                &[TOKEN][..],
                PATH,
                vec![sig(FORM_SIG), ("content-type", "Application/X-WWW-Form-Urlencoded; charset=utf-8")],
                FORM,
                Ok(()),
            ),
            ("params in another order", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(FORM_SIG), form],
                b"To=%2B18005551212&From=%2B14158675309&Digits=1234&Caller=%2B14158675309&CallSid=CA1234567890ABCDE", Ok(())),
            ("signed with :443, configured without", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(FORM_SIG_WITH_PORT), form], FORM, Ok(())),
            ("signed without port, configured with :443", "https://mycompany.com:443/myapp.php", &[TOKEN][..], PATH, vec![sig(FORM_SIG), form], FORM, Ok(())),
            ("signed with :443, configured with :443", "https://mycompany.com:443/myapp.php", &[TOKEN][..], PATH, vec![sig(FORM_SIG_WITH_PORT), form], FORM, Ok(())),
            ("host case as written", "https://MyCompany.com/myapp.php", &[TOKEN][..], PATH, vec![sig(MIXED_CASE_SIG), form], FORM, Ok(())),
            ("host case matters", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(MIXED_CASE_SIG), form], FORM, Err(VerifyError::Mismatch)),
            ("JSON body with bodySHA256", PUBLIC_URL, &[TOKEN][..], &json_path, vec![sig(JSON_SIG), json], JSON, Ok(())),
            ("repeated params", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(REPEATED_SIG), form], REPEATED, Ok(())),
            ("rotated secret (second of two)", PUBLIC_URL, &["54321", TOKEN][..], PATH, vec![sig(FORM_SIG), form], FORM, Ok(())),
            ("wrong secret", PUBLIC_URL, &["54321"][..], PATH, vec![sig(FORM_SIG), form], FORM, Err(VerifyError::Mismatch)),
            ("param value changed", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(FORM_SIG), form],
                b"CallSid=CA1234567890ABCDF&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212", Err(VerifyError::Mismatch)),
            ("param added", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(FORM_SIG), form],
                b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212&X=1", Err(VerifyError::Mismatch)),
            ("query changed", PUBLIC_URL, &[TOKEN][..], "/myapp.php?foo=2&bar=2", vec![sig(FORM_SIG), form], FORM, Err(VerifyError::Mismatch)),
            ("query missing", PUBLIC_URL, &[TOKEN][..], "/myapp.php", vec![sig(FORM_SIG), form], FORM, Err(VerifyError::Mismatch)),
            ("other path", "https://mycompany.com/other.php", &[TOKEN][..], PATH, vec![sig(FORM_SIG), form], FORM, Err(VerifyError::Mismatch)),
            ("http instead of https", "http://mycompany.com/myapp.php", &[TOKEN][..], PATH, vec![sig(FORM_SIG), form], FORM, Err(VerifyError::Mismatch)),
            ("JSON body byte changed", PUBLIC_URL, &[TOKEN][..], &json_path, vec![sig(JSON_SIG), json],
                br#"{"property": "value", "boolean": false}"#, Err(VerifyError::Mismatch)),
            ("JSON body without bodySHA256", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(JSON_SIG), json], JSON,
                Err(VerifyError::Malformed("body is neither form-encoded nor covered by bodySHA256"))),
            ("bodySHA256 not hex", PUBLIC_URL, &[TOKEN][..], "/myapp.php?bodySHA256=zz", vec![sig(JSON_SIG), json], JSON,
                Err(VerifyError::Malformed("bodySHA256 is not hex"))),
            // Computed with twilio-python 9.13 compute_signature (no params; HMAC_SHA256).
            ("empty body, URL only", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig("zYQTYrRWXE7LtzbG4PfP7/bkkGo=")], b"", Ok(())),
            ("SHA-256 by settings header", PUBLIC_URL, &[TOKEN][..], PATH,
                vec![sig("033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s="), form, (SETTINGS_HEADER, "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256")], FORM, Ok(())),
            ("SHA-1 signature, SHA-256 announced", PUBLIC_URL, &[TOKEN][..], PATH,
                vec![sig(FORM_SIG), form, (SETTINGS_HEADER, "algorithm=HMAC_SHA256")], FORM, Err(VerifyError::Mismatch)),
            ("unknown algorithm", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(FORM_SIG), form, (SETTINGS_HEADER, "algorithm=ED25519")], FORM,
                Err(VerifyError::Malformed("unsupported signature algorithm"))),
            ("settings without algorithm", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(FORM_SIG), form, (SETTINGS_HEADER, "key=k")], FORM, Ok(())),
            ("missing", PUBLIC_URL, &[TOKEN][..], PATH, vec![form], FORM, Err(VerifyError::Missing(SIGNATURE_HEADER.into()))),
            ("empty", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(""), form], FORM, Err(VerifyError::Malformed("empty header"))),
            ("not base64", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig("RSOYDt4T1cUTdK1PDd93/VVr8B8"), form], FORM,
                Err(VerifyError::Malformed("signature is not base64"))),
            ("hex", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig("4523980edede2d5c44ed4d0dd77dfd555af01f"), form], FORM,
                Err(VerifyError::Malformed("signature is not base64"))),
            ("huge", PUBLIC_URL, &[TOKEN][..], PATH, vec![sig(&huge), form], FORM, Err(VerifyError::Malformed("header too long"))),
        ] {
            assert_eq!(check_at(url, secrets, path, &pairs, body), want, "case: {name}");
        }
    }

    #[test]
    fn port_variants_follow_the_official_validators() {
        for (url, want) in [
            ("https://a.example/p", ["https://a.example/p", "https://a.example:443/p"]),
            ("https://a.example:443/p", ["https://a.example/p", "https://a.example:443/p"]),
            ("https://a.example:8443/p", ["https://a.example/p", "https://a.example:8443/p"]),
            ("https://a.example", ["https://a.example", "https://a.example:443"]),
            ("https://[::1]:8443/p?x=1", ["https://[::1]/p?x=1", "https://[::1]:8443/p?x=1"]),
            ("https://[::1]/p", ["https://[::1]/p", "https://[::1]:443/p"]),
        ] {
            assert_eq!(port_variants(url), want.map(String::from), "case: {url}");
        }
    }

    #[test]
    fn signs_form_and_json_bodies_as_twilio_does() {
        let twilio = Twilio::new(PUBLIC_URL);
        let form = headers(&[("content-type", FORM_TYPE)]);
        let signed = twilio.sign(
            &Request { method: "POST", path_and_query: PATH, headers: &form, body: FORM },
            &Secret::new(TOKEN),
            at(T0),
        );
        assert_eq!(signed.path_and_query, PATH);
        assert_eq!(signed.headers[0], (SIGNATURE_HEADER.to_string(), FORM_SIG.to_string()));
        let json = headers(&[("content-type", "application/json")]);
        let signed = twilio.sign(
            &Request { method: "POST", path_and_query: PATH, headers: &json, body: JSON },
            &Secret::new(TOKEN),
            at(T0),
        );
        assert_eq!(signed.path_and_query, format!("{PATH}&bodySHA256={JSON_HASH}"));
        assert_eq!(signed.headers[0], (SIGNATURE_HEADER.to_string(), JSON_SIG.to_string()));
        let mut h = headers(&[("content-type", "application/json")]);
        for (k, v) in &signed.headers {
            h.insert(http::HeaderName::try_from(k.as_str()).unwrap(), v.parse().unwrap());
        }
        let req = Request { method: "POST", path_and_query: &signed.path_and_query, headers: &h, body: JSON };
        assert_eq!(twilio.verify(&req, &[Secret::new(TOKEN)], at(T0)), Ok(()));
        assert_eq!(twilio.delivery_id(&req), Some(signed.headers[1].1.clone()));
        let signed = twilio.sign(
            &Request { method: "POST", path_and_query: "/t", headers: &json, body: b"{}" },
            &Secret::new(TOKEN),
            at(T0),
        );
        assert!(signed.path_and_query.starts_with("/t?bodySHA256="), "{}", signed.path_and_query);
    }
}
