//! Which request headers are secrets. They are redacted before an event is stored, so neither
//! the database, the API nor a log can leak them.

use http::HeaderMap;

pub const REDACTED: &str = "[redacted]";

/// Authorization, cookies, tokens and every signature or HMAC header.
/// Idempotency headers (Twilio's `I-Twilio-Idempotency-Token`) name a delivery, not a credential:
/// operators need to see them.
pub fn is_sensitive(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.contains("idempotency") {
        return false;
    }
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key")
        || ["signature", "token", "secret", "hmac", "password"].iter().any(|w| n.contains(w))
}

/// The headers as a JSON object (repeated headers joined with ", "), sensitive values redacted.
pub fn headers_json(headers: &HeaderMap) -> String {
    let mut map = serde_json::Map::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let value = if is_sensitive(name.as_str()) {
            REDACTED.to_string()
        } else {
            headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        map.insert(name.as_str().to_string(), serde_json::Value::String(value));
    }
    serde_json::Value::Object(map).to_string()
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
        let json = headers_json(&h);
        assert!(!json.contains("s3cr3t"));
        assert!(json.contains("abc"));
    }
}
