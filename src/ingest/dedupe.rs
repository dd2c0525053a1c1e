//! The dedupe key of a verified request: the configured JSON pointer or header, else the
//! provider's delivery id, else SHA-256 of the body. Only a JSON-pointer source parses JSON.

use sha2::{Digest, Sha256};

use super::error::IngestError;
use crate::config::Dedupe;
use crate::verify::Verified;

/// Longest key kept verbatim; longer ones are hashed so the unique index stays small.
const MAX_KEY: usize = 256;

pub fn key(dedupe: &Dedupe, source: &str, v: &Verified) -> Result<String, IngestError> {
    let found = match dedupe {
        Dedupe::Default => v.delivery_id().map(str::to_string),
        Dedupe::Header(name) => v.headers().get(name).and_then(|h| h.to_str().ok()).map(str::to_string),
        Dedupe::JsonPointer(pointer) => {
            let doc: serde_json::Value =
                serde_json::from_slice(v.body()).map_err(|e| IngestError::InvalidJson(e.to_string()))?;
            match doc.pointer(pointer) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            }
            .or_else(|| {
                tracing::warn!(source, pointer = %pointer, "dedupe pointer absent from body; using the body's SHA-256");
                None
            })
        }
    };
    Ok(match found {
        Some(k) if !k.is_empty() && k.len() <= MAX_KEY => k,
        Some(k) if !k.is_empty() => format!("sha256:{}", hex::encode(Sha256::digest(k.as_bytes()))),
        _ => body_hash(v.body()),
    })
}

pub fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}
