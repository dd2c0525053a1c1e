//! Which request headers are secrets. They are redacted before an event is stored, so neither
//! the database, the API nor a log can leak them.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};
use serde::{Serialize, Serializer};

pub const REDACTED: &str = "[redacted]";

/// Parts of a header name that mark a credential, whatever comes around them: `Authorization`,
/// `X-Forwarded-Authorization`, `X-Api-Key`, `Private-Key`, `X-Jwt`, `Cookie2`, `X-Session-Id`,
/// `Stripe-Signature`, `X-Gitlab-Token`, `X-Shopify-Hmac-Sha256`, ... A header is redacted when its
/// lower-case name contains any of them. Redacting a harmless header costs an operator one value
/// in the UI; storing a credential in clear leaks it to everyone who can read the database.
const SENSITIVE_PARTS: [&str; 11] =
    ["auth", "key", "token", "secret", "pass", "cred", "session", "jwt", "cookie", "signature", "hmac"];

/// Whether a header with this name carries a credential, by [`SENSITIVE_PARTS`].
/// Idempotency headers (`Idempotency-Key`, Twilio's `I-Twilio-Idempotency-Token`) name a
/// delivery, not a credential: operators need to see them.
pub fn is_sensitive(name: &str) -> bool {
    // Header names from `http` are already lower case; only other callers pay for the copy.
    let n: Cow<str> =
        if name.bytes().any(|b| b.is_ascii_uppercase()) { name.to_ascii_lowercase().into() } else { name.into() };
    !n.contains("idempotency") && SENSITIVE_PARTS.iter().any(|part| n.contains(part))
}

/// Which headers are stored `[redacted]`: those [`is_sensitive`] names, a source's own credential
/// header, and the operator's `[server] redact_headers`.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    /// Lower-case header names from `[server] redact_headers`.
    extra: Vec<String>,
}

impl Redaction {
    pub fn new(extra: &[String]) -> Self {
        Redaction { extra: extra.iter().map(|h| h.to_ascii_lowercase()).collect() }
    }

    fn hides(&self, name: &HeaderName, credential: Option<&str>) -> bool {
        credential.is_some_and(|c| name.as_str().eq_ignore_ascii_case(c))
            || is_sensitive(name.as_str())
            || self.extra.iter().any(|h| h == name.as_str())
    }

    /// The headers as a JSON object (repeated headers joined with ", "), sensitive values redacted,
    /// and so is `credential`, the header a source's config names for its signature or token,
    /// whatever its name. Written straight from the header map: this runs for every stored event.
    pub fn headers_json(&self, headers: &HeaderMap, credential: Option<&str>) -> String {
        serde_json::to_string(&Redacted { headers, credential, redaction: self }).unwrap_or_else(|_| "{}".into())
    }
}

impl Redaction {
    /// The headers as the routing document has them (CONTRACT §7): lower-case names, the last
    /// value of a repeated header, values redacted as stored, and without `credential`.
    pub fn document_headers(&self, headers: &HeaderMap, credential: Option<&str>) -> Vec<(String, String)> {
        self.document_headers_where(headers, credential, |_| true)
    }

    /// [`Redaction::document_headers`], of only the headers whose names `keep` says.
    pub fn document_headers_where(
        &self,
        headers: &HeaderMap,
        credential: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        headers
            .keys()
            .filter(|name| keep(name.as_str()) && !credential.is_some_and(|c| name.as_str().eq_ignore_ascii_case(c)))
            .map(|name| {
                let value = if self.hides(name, None) {
                    REDACTED.to_string()
                } else {
                    headers
                        .get_all(name)
                        .iter()
                        .next_back()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .unwrap_or_default()
                };
                (name.as_str().to_string(), value)
            })
            .collect()
    }
}

struct Redacted<'a> {
    headers: &'a HeaderMap,
    credential: Option<&'a str>,
    redaction: &'a Redaction,
}

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.headers.keys().map(|name| (name.as_str(), self.value(name))))
    }
}

impl<'a> Redacted<'a> {
    fn value(&self, name: &HeaderName) -> Cow<'a, str> {
        if self.redaction.hides(name, self.credential) {
            return REDACTED.into();
        }
        let mut values = self.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
        let first = values.next().unwrap_or_default();
        values.fold(first, |joined, v| format!("{joined}, {v}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_headers_keep_the_last_value_and_leave_out_the_credential() {
        let mut h = HeaderMap::new();
        h.append("x-github-event", "push".parse().unwrap());
        h.append("x-github-event", "ping".parse().unwrap());
        h.append("authorization", "Bearer t0k3n".parse().unwrap());
        h.append("x-hub-signature-256", "sha256=ab".parse().unwrap());
        let got = Redaction::new(&[]).document_headers(&h, Some("X-Hub-Signature-256"));
        assert_eq!(
            got,
            [("x-github-event".to_string(), "ping".to_string()), ("authorization".to_string(), REDACTED.to_string())]
        );
    }

    #[test]
    fn redacts_every_credential_header() {
        for name in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
            "X-Hub-Signature-256",
            "Stripe-Signature",
            "X-Gitlab-Token",
            "X-Shopify-Hmac-Sha256",
            "webhook-signature",
            "X-Twilio-Signature",
            // Missed by the first list (review of issue "Reliability").
            "X-Forwarded-Authorization",
            "X-Amzn-Remapped-Authorization",
            "X-Original-Authorization",
            "Api-Key",
            "X-Api-Key",
            "X-Auth-Key",
            "X-Access-Key",
            "Private-Key",
            "X-Webhook-Key",
            "X-Jwt",
            "Credentials",
            "X-Session-Id",
            "Cookie2",
            "X-Password",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "content-type",
            "user-agent",
            "x-github-delivery",
            "x-github-event",
            "webhook-id",
            "webhook-timestamp",
            "keep-alive",
            "x-request-id",
            "Idempotency-Key",
            "I-Twilio-Idempotency-Token",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cr3t".parse().unwrap());
        h.insert("x-request-id", "abc".parse().unwrap());
        h.append("accept", "a/b".parse().unwrap());
        h.append("accept", "c/\"d\"".parse().unwrap());
        let none = Redaction::default();
        let json: serde_json::Value = serde_json::from_str(&none.headers_json(&h, None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"authorization": REDACTED, "x-request-id": "abc", "accept": "a/b, c/\"d\""})
        );
        // A source's own credential header, whatever its name.
        h.insert("x-hook-mac", "2cbda66d".parse().unwrap());
        let json: serde_json::Value = serde_json::from_str(&none.headers_json(&h, Some("X-Hook-Mac"))).unwrap();
        assert_eq!(json["x-hook-mac"], REDACTED);
        assert_eq!(json["x-request-id"], "abc");
        // And the operator's own list, in any case.
        h.insert("x-internal-ticket", "t-1".parse().unwrap());
        let json: serde_json::Value =
            serde_json::from_str(&Redaction::new(&["X-Internal-Ticket".into()]).headers_json(&h, None)).unwrap();
        assert_eq!(json["x-internal-ticket"], REDACTED);
        assert_eq!(json["accept"], "a/b, c/\"d\"");
    }
}
