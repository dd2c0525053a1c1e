//! Small pure pieces that `validate.rs` and `entries.rs` both use: where a secret is, names,
//! header names and retry policies, each checked with its key.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawDelivery;
use super::{Problems, RetryPolicy, duration};

/// Where a secret is to be read from. Only the edge reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// How messages name it: "environment variable X" or "secret file /p".
    pub fn origin(&self) -> String {
        match self {
            SecretRef::Env(var) => format!("environment variable {var}"),
            SecretRef::File(path) => format!("secret file {}", path.display()),
        }
    }
}

pub(super) fn retry_policy(
    raw: &RawDelivery,
    base: Option<RetryPolicy>,
    prefix: &str,
    p: &mut Problems,
) -> RetryPolicy {
    let defaults = base.unwrap_or(RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(3600),
    });
    let max_attempts = match raw.max_attempts {
        None => defaults.max_attempts,
        Some(0) => {
            p.push(format!("{prefix}.max_attempts"), "must be at least 1");
            defaults.max_attempts
        }
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let d = |v: &Option<String>, key: &str, default: Duration, p: &mut Problems| match v {
        None => default,
        Some(t) => duration::parse(t).unwrap_or_else(|e| {
            p.push(format!("{prefix}.{key}"), e);
            default
        }),
    };
    let initial_backoff = d(&raw.initial_backoff, "initial_backoff", defaults.initial_backoff, p);
    let max_backoff = d(&raw.max_backoff, "max_backoff", defaults.max_backoff, p);
    if max_backoff < initial_backoff {
        p.push(format!("{prefix}.max_backoff"), "must not be shorter than initial_backoff");
    }
    RetryPolicy { max_attempts, initial_backoff, max_backoff }
}

pub(super) fn name_ok(name: &Option<String>, key: &str, p: &mut Problems) -> Option<String> {
    match name.as_deref() {
        None | Some("") => {
            p.push(key, "missing; every entry needs a name");
            None
        }
        Some(n) if !n.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) => {
            p.push(key, format!("invalid name {n:?}; use letters, digits, '_', '-' and '.'"));
            None
        }
        Some(n) => Some(n.to_string()),
    }
}

/// Header names, each valid, lower-cased.
pub(super) fn header_names(names: &[String], key: &str, p: &mut Problems) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => out.push(h.as_str().to_string()),
            Err(_) => p.push(format!("{key}[{i}]"), format!("{name:?} is not a valid header name")),
        }
    }
    out
}

/// A secret's reference with the full key that names it (`destinations[0] (d).sign.secret_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub key: String,
    pub source: SecretRef,
}

/// `circuit_breaker = false | true | { failures = N, cooldown = "30s" }` at `key`: a table's missing
/// keys (and `true`) take `base`'s values; absent, `base` itself.
pub(super) fn circuit_breaker(
    raw: &Option<toml::Value>,
    key: &str,
    base: Option<super::CircuitBreaker>,
    p: &mut Problems,
) -> Option<super::CircuitBreaker> {
    let fallback = base.unwrap_or_default();
    let shape = "must be false or a table like { failures = 10, cooldown = \"30s\" }";
    match raw {
        None => base,
        Some(toml::Value::Boolean(false)) => None,
        Some(toml::Value::Boolean(true)) => Some(fallback),
        Some(toml::Value::Table(t)) => {
            let mut b = fallback;
            for (k, v) in t {
                match (k.as_str(), v) {
                    ("failures", toml::Value::Integer(n)) if *n >= 1 => b.failures = (*n).min(u32::MAX as i64) as u32,
                    ("failures", _) => p.push(format!("{key}.failures"), "must be a whole number, at least 1"),
                    ("cooldown", toml::Value::String(d)) => match duration::parse(d) {
                        Ok(d) if !d.is_zero() => b.cooldown = d,
                        Ok(_) => p.push(format!("{key}.cooldown"), "must be longer than zero"),
                        Err(e) => p.push(format!("{key}.cooldown"), e),
                    },
                    ("cooldown", _) => p.push(format!("{key}.cooldown"), "must be a duration such as \"30s\""),
                    (other, _) => p.push(format!("{key}.{other}"), "unknown key; accepted: failures, cooldown"),
                }
            }
            Some(b)
        }
        Some(_) => {
            p.push(key, shape);
            base
        }
    }
}

/// `{ per_second = N, burst = M }`: N at least 1; M defaults to N.
pub(super) fn rate_limit(raw: &super::raw::RawRateLimit, key: &str, p: &mut Problems) -> Option<super::RateLimit> {
    match (raw.per_second, raw.burst) {
        (Some(per_second), burst) if per_second > 0 => Some(super::RateLimit {
            per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
            burst: u32::try_from(burst.unwrap_or(per_second).max(1)).unwrap_or(u32::MAX),
        }),
        _ => {
            p.push(format!("{key}.per_second"), "missing or zero; write e.g. { per_second = 1, burst = 20 }");
            None
        }
    }
}
