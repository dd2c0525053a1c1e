//! The dedupe key of a verified request: the configured JSON pointer or header, else the
//! provider's delivery id, else SHA-256 of the body. Only a JSON-pointer source parses JSON.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
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
            match pointer_value(v.body(), pointer).map_err(|e| IngestError::InvalidJson(e.to_string()))? {
                Some(Value::Null) | None => None,
                Some(value) => Some(typed(value)),
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

/// A JSON value as a key that keeps its type: `{"id": 123}` and `{"id": "123"}` are different
/// events. A string is itself (so keys stored before this rule still match); any other value is
/// its JSON text after its type, `number:123`, `boolean:true`, `json:{...}`.
fn typed(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Number(n) => format!("number:{n}"),
        Value::Bool(b) => format!("boolean:{b}"),
        other => format!("json:{other}"),
    }
}

pub fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// The value at `pointer` (RFC 6901) in the JSON document `body`, like `Value::pointer`, but
/// without building the document: only the value pointed at is built, everything else is
/// skipped. The whole body must still be valid JSON, with serde_json's limits (UTF-8 strings,
/// nesting depth). A repeated key counts with its last value.
pub fn pointer_value(body: &[u8], pointer: &str) -> serde_json::Result<Option<Value>> {
    let tokens: Vec<String> = pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = At(&tokens).deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// The value at the remaining `tokens` of the pointer, if any.
struct At<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.0.split_first() {
            None => serde::Deserialize::deserialize(d).map(Some),
            Some((token, rest)) => d.deserialize_any(Step { token, rest }),
        }
    }
}

/// One level down: the member named `token` of an object, or the element it numbers in an array.
/// Any other value has nothing below it.
struct Step<'p> {
    token: &'p str,
    rest: &'p [String],
}

impl<'de> Visitor<'de> for Step<'_> {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(self.token))? {
            if matches {
                found = map.next_value_seed(At(self.rest))?;
            } else {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // RFC 6901: an index is "0" or digits without a leading zero.
        let index = Some(self.token)
            .filter(|t| *t == "0" || !t.starts_with('0'))
            .and_then(|t| t.bytes().all(|b| b.is_ascii_digit()).then(|| t.parse::<usize>().ok()).flatten());
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == index {
                match seq.next_element_seed(At(self.rest))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element_seed(Skip)?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Any value, read and dropped. Unlike `IgnoredAny` (which serde_json skips without looking
/// inside strings or counting depth), strings are checked for UTF-8 and nesting counts against
/// serde_json's depth limit, as when the whole document was built.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Whether an object key equals the token, compared without copying the key.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agrees with `serde_json::Value::pointer` on every pointer, and rejects what it rejects.
    #[test]
    fn pointer_value_agrees_with_serde_json() {
        let doc = r#"{"id":"evt_1","n":7,"f":1.5,"t":true,"z":null,"o":{"a/b":{"m~n":[10,{"x":"deep"}]},"e":{}},
            "arr":[[1,2],[3]],"dup":1,"dup":{"k":"last"},"":"empty","esc\"aped":"q","u":"caf\u00e9"}"#;
        let value: Value = serde_json::from_str(doc).unwrap();
        for pointer in [
            "",
            "/id",
            "/n",
            "/f",
            "/t",
            "/z",
            "/o",
            "/o/a~1b",
            "/o/a~1b/m~0n",
            "/o/a~1b/m~0n/0",
            "/o/a~1b/m~0n/1/x",
            "/o/a~1b/m~0n/2",
            "/o/a~1b/m~0n/01",
            "/o/a~1b/m~0n/-",
            "/o/e",
            "/o/e/x",
            "/arr/0/1",
            "/arr/1/0",
            "/arr/1/1",
            "/dup",
            "/dup/k",
            "/",
            "/esc\"aped",
            "/u",
            "/missing",
            "/id/0",
            "/n/x",
            "/z/x",
        ] {
            assert_eq!(pointer_value(doc.as_bytes(), pointer).unwrap().as_ref(), value.pointer(pointer), "{pointer:?}");
        }
        for depth in [1, 100, 126, 127, 128, 129, 20_000] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let value = serde_json::from_str::<Value>(&deep);
            assert_eq!(pointer_value(deep.as_bytes(), "/id").is_ok(), value.is_ok(), "depth {depth}");
            let inside = format!(r#"{{"id":"x","d":{deep}}}"#);
            let value = serde_json::from_str::<Value>(&inside);
            assert_eq!(pointer_value(inside.as_bytes(), "/id").is_ok(), value.is_ok(), "depth {depth} inside");
        }
        for bad in
            [&b"{"[..], b"{\"id\":1} x", b"", b"{\"id\":tru}", b"[1,]", b"\xff", b"{\"x\":\"\xff\",\"id\":\"a\"}"]
        {
            assert!(pointer_value(bad, "/id").is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
