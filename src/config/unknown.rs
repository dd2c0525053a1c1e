//! Keys a config file has but no table takes: found while parsing (so that every other problem is
//! still checked and reported), and named with the keys their table accepts.

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::raw::*;

/// The problem key and the reason for an unknown key at `path` (as `serde_ignored` writes it:
/// `server.listn`, `sources.0.verify.?.bogus`, where `?` is an optional table that is present).
pub fn describe(path: &str, raw: &RawConfig) -> (String, String) {
    let parts: Vec<&str> = path.split('.').filter(|p| *p != "?").collect();
    let (table, key) = parts.split_at(parts.len() - 1);
    let accepted = accepted(table);
    let reason = if accepted.is_empty() {
        "unknown key".to_string()
    } else {
        format!("unknown key; accepted: {}", accepted.join(", "))
    };
    (full_key(table, key[0], raw), reason)
}

/// `sources[0] (stripe).verify.bogus`, as the other problems name their keys.
fn full_key(table: &[&str], key: &str, raw: &RawConfig) -> String {
    let mut out = String::new();
    for part in table.iter().chain([&key]) {
        match part.parse::<usize>() {
            Ok(i) => {
                out.push_str(&format!("[{i}]"));
                let name = match table.first() {
                    Some(&"sources") => raw.sources.get(i).and_then(|s| s.name.as_deref()),
                    Some(&"destinations") => raw.destinations.get(i).and_then(|d| d.name.as_deref()),
                    _ => None,
                };
                if let Some(name) = name {
                    out.push_str(&format!(" ({name})"));
                }
            }
            Err(_) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(part);
            }
        }
    }
    out
}

/// The keys of the table at `table` (indexes of arrays of tables included).
fn accepted(table: &[&str]) -> &'static [&'static str] {
    let named: Vec<&str> = table.iter().filter(|p| p.parse::<usize>().is_err()).copied().collect();
    match named.as_slice() {
        [] => fields::<RawConfig>(),
        ["server"] => fields::<RawServer>(),
        ["server", "tls"] | ["admin", "tls"] => fields::<RawTls>(),
        ["log"] => fields::<RawLog>(),
        ["telemetry"] => fields::<RawTelemetry>(),
        ["storage"] => fields::<RawStorage>(),
        ["admin"] => fields::<RawAdmin>(),
        ["delivery"] => fields::<RawDelivery>(),
        ["alerts"] => fields::<RawAlerts>(),
        ["delivery", "rate_limit"] | ["destinations", "rate_limit"] => fields::<RawRateLimit>(),
        ["sources"] => fields::<RawSource>(),
        ["sources", "verify"] => fields::<RawVerify>(),
        ["sources", "dedupe"] => fields::<RawDedupe>(),
        ["sources", "rate_limit"] => fields::<RawRateLimit>(),
        ["destinations"] => fields::<RawDestination>(),
        ["destinations", "sign"] => fields::<RawSign>(),
        ["destinations", "headers", _] => fields::<RawSecretHeader>(),
        _ => &[],
    }
}

/// The field names serde's derive gives a struct, read by asking it to deserialize from a probe
/// that only records them: the list cannot drift from `raw.rs`.
fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut found: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut found));
    found
}

struct Probe<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_like_other_problems_with_what_is_accepted() {
        let raw: RawConfig =
            toml::from_str("[[sources]]\nname = \"stripe\"\n[[destinations]]\nname = \"crm\"\n").unwrap();
        for (path, key, accepts) in [
            ("listn", "listn", "server"),
            ("server.listn", "server.listn", "listen"),
            ("sources.0.verify.?.bogus", "sources[0] (stripe).verify.bogus", "secret_env"),
            ("sources.1.bogus", "sources[1].bogus", "deliver_to"),
            ("destinations.0.sign.?.key", "destinations[0] (crm).sign.key", "secret_file"),
        ] {
            let (k, reason) = describe(path, &raw);
            assert_eq!(k, key, "{path}");
            assert!(reason.starts_with("unknown key; accepted: ") && reason.contains(accepts), "{path}: {reason}");
        }
    }
}
