//! The config file exactly as written (serde). Nothing here is validated; `validate.rs` does that.
//! Keys these structs do not know are collected while parsing (`serde_ignored`) and reported by
//! `Config::from_toml` with the others, with the keys the table accepts.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub destinations: Vec<RawDestination>,
    pub alerts: Option<RawAlerts>,
}

/// `[alerts]` (CONTRACT §8): where alert events of the built-in source `hookgate` go, and which
/// kinds are raised. `deliver_to` is read by `entries.rs` like a source's.
#[derive(Debug, Default, Deserialize)]
pub struct RawAlerts {
    #[serde(default)]
    pub deliver_to: Vec<toml::Value>,
    pub on: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_grace: Option<String>,
    pub max_concurrent_requests: Option<u64>,
    pub request_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub header_timeout: Option<String>,
    pub redact_headers: Option<Vec<String>>,
    pub body_idle_timeout: Option<String>,
    pub max_requests_per_client: Option<u64>,
    pub queue_timeout: Option<String>,
    pub max_inflight_body_bytes: Option<u64>,
    pub verify_failures_per_client: Option<RawRateLimit>,
    pub tls: Option<RawTls>,
}

/// `tls = { cert_file = "...", key_file = "..." }` under `[server]` or `[admin]`: PEM files.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `[log]`: how the process logs.
#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `[telemetry]`: OpenTelemetry traces.
#[derive(Debug, Default, Deserialize)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStorage {
    pub url: Option<String>,
    pub retention: Option<String>,
    pub pool_size: Option<u64>,
    pub check_at_start: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub tls: Option<RawTls>,
}

/// Retry and concurrency knobs: `[delivery]` defaults, overridable on each destination.
#[derive(Debug, Default, Deserialize)]
pub struct RawDelivery {
    pub max_attempts: Option<u64>,
    pub initial_backoff: Option<String>,
    pub max_backoff: Option<String>,
    pub concurrency: Option<u64>,
    pub lease: Option<String>,
    pub rate_limit: Option<RawRateLimit>,
    /// `false`, `true` or `{ failures, cooldown }`; read by `fields.rs`, which names each wrong key.
    pub circuit_breaker: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSource {
    pub name: Option<String>,
    pub path: Option<String>,
    pub verify: Option<RawVerify>,
    pub dedupe: Option<RawDedupe>,
    /// Names and tables (`{ destination, filter, transform }`), mixed; read by `entries.rs`,
    /// which names each wrong key.
    #[serde(default)]
    pub deliver_to: Vec<toml::Value>,
    pub rate_limit: Option<RawRateLimit>,
    pub response: Option<RawResponse>,
}

/// `response = { status = 200, content_type = "text/plain", body = "OK" }`: the answer to a
/// stored event instead of the JSON one (CONTRACT §9).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawResponse {
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub body: Option<String>,
}

/// `verify = { scheme = ..., ... }`. One struct for every scheme; each scheme reads what it needs
/// and `Verifier::build` (verify/build.rs) reports keys that the scheme does not take.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawVerify {
    pub scheme: Option<String>,
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secrets_env: Vec<String>,
    pub secret_file: Option<String>,
    #[serde(default)]
    pub secrets_file: Vec<String>,
    pub header: Option<String>,
    pub encoding: Option<String>,
    pub prefix: Option<String>,
    pub tolerance: Option<String>,
    pub insecure: Option<bool>,
    pub user: Option<String>,
    pub public_url: Option<String>,
    pub algorithm: Option<String>,
    pub format: Option<String>,
    pub signed: Option<String>,
    pub timestamp_header: Option<String>,
    pub public_key: Option<String>,
    pub verify_token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDedupe {
    pub json_pointer: Option<String>,
    pub header: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawRateLimit {
    pub per_second: Option<u64>,
    pub burst: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDestination {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub command: Option<Vec<String>>,
    pub handler: Option<String>,
    pub timeout: Option<String>,
    pub sign: Option<RawSign>,
    pub method: Option<String>,
    /// Header name as written → its value; `entries.rs` checks names and values.
    pub headers: Option<BTreeMap<String, RawHeaderValue>>,
    pub max_attempts: Option<u64>,
    pub initial_backoff: Option<String>,
    pub max_backoff: Option<String>,
    pub concurrency: Option<u64>,
    pub lease: Option<String>,
    pub rate_limit: Option<RawRateLimit>,
    pub circuit_breaker: Option<toml::Value>,
    /// A jq expression, compiled by `entries.rs`.
    pub ordering_key: Option<String>,
    /// `type = "pull"`: where the token scoped to this destination is (CONTRACT §10).
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    /// Broker destinations (`config/broker.rs`): the variable holding the URL instead of `url`,
    /// and where each broker puts the message.
    pub url_env: Option<String>,
    pub subject: Option<String>,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub stream: Option<String>,
    pub maxlen: Option<u64>,
    pub topic: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSign {
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
}

/// A value in an http destination's `headers`: text as written, or where a secret is.
#[derive(Debug)]
pub enum RawHeaderValue {
    Text(String),
    Secret(RawSecretHeader),
}

/// `{ secret_env = "CRM_TOKEN", prefix = "Bearer " }`: the header's value is `prefix` + the secret.
#[derive(Debug, Default, Deserialize)]
pub struct RawSecretHeader {
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub prefix: Option<String>,
}

// By hand rather than `#[serde(untagged)]`: an untagged enum buffers the table, so unknown keys in
// it would not reach `serde_ignored`, and its error names no accepted form.
impl<'de> Deserialize<'de> for RawHeaderValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeaderValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a header value: a string, or a table with secret_env or secret_file and an optional prefix",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawHeaderValue::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawSecretHeader::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawHeaderValue::Secret)
            }
        }
        d.deserialize_any(V)
    }
}
