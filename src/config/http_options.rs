//! The pure step for an http destination's `method` and `headers`: names and static values
//! checked, the headers hookgate sets itself refused, and secret-valued headers kept as references
//! (`SecretRef`) for the edge (`load.rs`) to read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use http::{HeaderName, HeaderValue, Method};

use super::fields::{Named, SecretRef};
use super::raw::{RawHeaderValue, RawSecretHeader};
use super::{HeaderSource, Problems, resolve};
use crate::secret::Secret;

/// The methods an http destination may use.
pub const METHODS: [Method; 3] = [Method::POST, Method::PUT, Method::PATCH];

/// Header names hookgate sets on every request (or the HTTP layer owns), lower case: a
/// destination's `headers` may not set them. `x-hookgate-*` is refused as well (see [`reserved`]).
const RESERVED: &[&str] = &[
    // Standard Webhooks: the receiver checks these against what hookgate signed.
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    // The forwarded body's type, or a transform's (CONTRACT §7).
    "content-type",
    // Framing and connection handling belong to the HTTP client.
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Why hookgate refuses to let a destination set the header `name` (lower case), if it does.
fn reserved(name: &str) -> Option<&'static str> {
    if name.starts_with("x-hookgate-") {
        Some("hookgate sets x-hookgate-* headers itself")
    } else if name.starts_with("webhook-") && RESERVED.contains(&name) {
        Some("hookgate sets the Standard Webhooks headers itself (webhook-id, webhook-timestamp, webhook-signature)")
    } else if name == "traceparent" || name == "tracestate" {
        Some("hookgate passes the W3C trace context on itself (docs/OPERATIONS.md, \"Traces\")")
    } else if name == "content-type" {
        Some("hookgate sends the body's own Content-Type (or a transform's)")
    } else if RESERVED.contains(&name) {
        Some("the HTTP client sets this header itself")
    } else {
        None
    }
}

/// A secret-valued header whose value the edge reads: `prefix` followed by the secret.
#[derive(Debug)]
pub struct SecretHeader {
    pub name: HeaderName,
    pub prefix: String,
    pub secret: Named,
}

/// `method`, POST unless written; anything but POST, PUT or PATCH is a problem at `{at}.method`.
pub(super) fn method(raw: Option<&str>, at: &str, p: &mut Problems) -> Method {
    match raw {
        None => Method::POST,
        Some(m) => METHODS.iter().find(|known| known.as_str() == m).cloned().unwrap_or_else(|| {
            p.push(format!("{at}.method"), format!("unknown method {m:?}; accepted: \"POST\", \"PUT\", \"PATCH\""));
            Method::POST
        }),
    }
}

/// How a header is named in a problem's key: `headers.X-Team`, or quoted when TOML would quote it.
fn header_key(at: &str, name: &str) -> String {
    let bare = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare { format!("{at}.headers.{name}") } else { format!("{at}.headers.{name:?}") }
}

/// The static headers, ready to send, and the secret-valued ones as references. Each problem is
/// reported under the header's key; a header with a problem is left out.
pub(super) fn headers(
    raw: Option<&BTreeMap<String, RawHeaderValue>>,
    at: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> (Vec<(HeaderName, HeaderSource)>, Vec<SecretHeader>) {
    let (mut fixed, mut secret) = (Vec::new(), Vec::new());
    let mut seen: HashMap<HeaderName, &str> = HashMap::new();
    for (written, value) in raw.into_iter().flatten() {
        let key = header_key(at, written);
        let name = match HeaderName::from_bytes(written.as_bytes()) {
            Ok(name) => name,
            Err(_) => {
                p.push(&key, format!("{written:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"));
                continue;
            }
        };
        if let Some(why) = reserved(name.as_str()) {
            p.push(&key, format!("{name} cannot be set here: {why}"));
            continue;
        }
        if let Some(first) = seen.insert(name.clone(), written) {
            p.push(&key, format!("the same header as {first:?} (header names are case-insensitive)"));
            continue;
        }
        match value {
            RawHeaderValue::Text(text) => match HeaderValue::from_str(text) {
                Ok(v) => fixed.push((name, HeaderSource::Static(v))),
                Err(_) => p.push(&key, "not a valid header value: it has a control character such as a newline"),
            },
            RawHeaderValue::Secret(s) => {
                if let Some(found) = secret_ref(s, &key, base_dir, p) {
                    secret.push(SecretHeader { name, prefix: s.prefix.clone().unwrap_or_default(), secret: found });
                }
            }
        }
    }
    (fixed, secret)
}

/// Where a secret-valued header's secret is: exactly one of `secret_env` and `secret_file`; the
/// prefix, written in the file, must itself be fit for a header.
fn secret_ref(raw: &RawSecretHeader, key: &str, base_dir: &Path, p: &mut Problems) -> Option<Named> {
    if let Some(prefix) = &raw.prefix
        && HeaderValue::from_str(prefix).is_err()
    {
        p.push(format!("{key}.prefix"), "not valid in a header value: it has a control character such as a newline");
        return None;
    }
    match (&raw.secret_env, &raw.secret_file) {
        (Some(var), None) if !var.is_empty() => {
            Some(Named { key: format!("{key}.secret_env"), source: SecretRef::Env(var.clone()) })
        }
        (None, Some(file)) if !file.is_empty() => {
            Some(Named { key: format!("{key}.secret_file"), source: SecretRef::File(resolve(base_dir, file)) })
        }
        _ => {
            p.push(
                key,
                "set exactly one of secret_env or secret_file (and optionally prefix), or write the value as a string",
            );
            None
        }
    }
}

/// A secret-valued header's value once the edge has read the secret: `prefix` + secret, which must
/// be fit for a header. The reason names where the secret came from, never its value.
pub(super) fn secret_value(prefix: &str, secret: &Secret, origin: &str) -> Result<Secret, String> {
    let mut bytes = Vec::with_capacity(prefix.len() + secret.expose().len());
    bytes.extend_from_slice(prefix.as_bytes());
    bytes.extend_from_slice(secret.expose());
    let value = Secret::new(bytes);
    HeaderSource::Secret(value.clone()).value().map(|_| value).map_err(|_| {
        format!("the value of {origin} is not valid in a header: it has a control character such as a newline")
    })
}
