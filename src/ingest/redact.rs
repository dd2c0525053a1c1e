//! Which request headers are secrets. They are redacted before an event is stored, so neither
//! the database, the API nor a log can leak them.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};
use serde::{Serialize, Serializer};

pub const REDACTED: &str = "[redacted]";

/// Authorization, cookies, tokens and every signature or HMAC header.
/// Idempotency headers (Twilio's `I-Twilio-Idempotency-Token`) name a delivery, not a credential:
/// operators need to see them.
pub fn is_sensitive(name: &str) -> bool {
    // Header names from `http` are already lower case; only other callers pay for the copy.
    let n: Cow<str> =
        if name.bytes().any(|b| b.is_ascii_uppercase()) { name.to_ascii_lowercase().into() } else { name.into() };
    if n.contains("idempotency") {
        return false;
    }
    matches!(&*n, "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key")
        || ["signature", "token", "secret", "hmac", "password"].iter().any(|w| n.contains(w))
}

/// The headers as a JSON object (repeated headers joined with ", "), sensitive values redacted,
/// and so is `credential`, the header a source's config names for its signature or token, whatever
/// its name. Written straight from the header map: this runs for every stored event.
pub fn headers_json(headers: &HeaderMap, credential: Option<&str>) -> String {
    serde_json::to_string(&Redacted(headers, credential)).unwrap_or_else(|_| "{}".into())
}

struct Redacted<'a>(&'a HeaderMap, Option<&'a str>);

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.keys().map(|name| (name.as_str(), value(self.0, name, self.1))))
    }
}

fn value<'a>(headers: &'a HeaderMap, name: &HeaderName, credential: Option<&str>) -> Cow<'a, str> {
    if credential.is_some_and(|c| name.as_str().eq_ignore_ascii_case(c)) || is_sensitive(name.as_str()) {
        return REDACTED.into();
    }
    let mut values = headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
    let first = values.next().unwrap_or_default();
    values.fold(first, |joined, v| format!("{joined}, {v}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_credential_header() {
        for name in [
            "Authorization",
            "Cookie",
            "X-Hub-Signature-256",
            "Stripe-Signature",
            "X-Gitlab-Token",
            "X-Shopify-Hmac-Sha256",
            "webhook-signature",
            "X-Twilio-Signature",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["content-type", "user-agent", "x-github-delivery", "webhook-id", "I-Twilio-Idempotency-Token"] {
            assert!(!is_sensitive(name), "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cr3t".parse().unwrap());
        h.insert("x-request-id", "abc".parse().unwrap());
        h.append("accept", "a/b".parse().unwrap());
        h.append("accept", "c/\"d\"".parse().unwrap());
        let json: serde_json::Value = serde_json::from_str(&headers_json(&h, None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"authorization": REDACTED, "x-request-id": "abc", "accept": "a/b, c/\"d\""})
        );
        // A source's own credential header, whatever its name.
        h.insert("x-hook-mac", "2cbda66d".parse().unwrap());
        let json: serde_json::Value = serde_json::from_str(&headers_json(&h, Some("X-Hook-Mac"))).unwrap();
        assert_eq!(json["x-hook-mac"], REDACTED);
        assert_eq!(json["x-request-id"], "abc");
    }
}
