//! Parse and validate, the pure step: config text and the `HOOKGATE_*` overrides in, a [`Draft`]
//! out, every problem collected with its key. No environment, no file, no clock: a secret is
//! only named here ([`SecretRef`]); `load.rs`, the edge, reads it and builds the verifiers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::entries::{DraftDestination, DraftSource, destinations, sources};
use super::fields::{SecretRef, header_names, rate_limit, retry_policy};
use super::raw::{self, RawConfig, RawHeaderValue};
use super::{
    CircuitBreaker, ConfigErrors, ConfigProblem, DEFAULT_ADMIN_TOKEN_ENV, Delivery, Log, LogFormat, Problems,
    RateLimit, Secret, Server, Storage, StorageUrl, Target, Telemetry, Tls, duration, resolve, unknown,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";

/// The `HOOKGATE_*` environment variables that replace config values, read at the edge
/// ([`Overrides::from_env`](super::load)); an empty variable is no override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `HOOKGATE_LISTEN`: `server.listen`.
    pub listen: Option<String>,
    /// `HOOKGATE_ADMIN_LISTEN`: `admin.listen`.
    pub admin_listen: Option<String>,
    /// `HOOKGATE_DATABASE_URL`: `storage.url`.
    pub database_url: Option<String>,
}

/// The admin token's place, and whether it must be there (the conventional variable is optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    pub key: &'static str,
    pub source: SecretRef,
    pub required: bool,
}

/// A validated config whose secrets are still references. `None` where the value was invalid
/// (a problem says why).
#[derive(Debug)]
pub struct Draft {
    pub base_dir: PathBuf,
    pub server: Option<Server>,
    pub storage: Option<Storage>,
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<TokenRef>,
    pub admin_tls: Option<Tls>,
    pub delivery: Delivery,
    pub log: Log,
    pub telemetry: Telemetry,
    pub destinations: Vec<DraftDestination>,
    pub sources: Vec<DraftSource>,
    pub alerts: Option<super::Alerts>,
    pub secret_env_vars: Vec<String>,
}

/// Parses and validates config text; `file` names it in messages and `base_dir` anchors relative
/// paths. Only text that is not TOML at all stops here; every other problem is returned with the
/// draft, for the edge to add its own.
pub fn parse(
    text: &str,
    file: &Path,
    base_dir: &Path,
    overrides: &Overrides,
) -> Result<(Draft, Problems), ConfigErrors> {
    let invalid = |e: toml::de::Error| {
        ConfigErrors(vec![ConfigProblem {
            file: file.to_path_buf(),
            key: String::new(),
            reason: format!("invalid TOML: {}", e.to_string().trim_end()),
        }])
    };
    // Unknown keys are collected rather than fatal, so that every other problem is reported too.
    let mut unknown_keys = Vec::new();
    let raw: RawConfig = serde_ignored::deserialize(toml::Deserializer::parse(text).map_err(invalid)?, |path| {
        unknown_keys.push(path.to_string())
    })
    .map_err(invalid)?;
    let mut p = Problems::new(file);
    for path in &unknown_keys {
        let (key, reason) = unknown::describe(path, &raw);
        p.push(key, reason);
    }
    let draft = from_raw(raw, base_dir, overrides, &mut p);
    Ok((draft, p))
}

fn from_raw(raw: RawConfig, base_dir: &Path, overrides: &Overrides, p: &mut Problems) -> Draft {
    let listen = or(&overrides.listen, &raw.server.listen, DEFAULT_LISTEN);
    let listen = socket_addr(&listen, "server.listen", p);
    let max_body_bytes = match raw.server.max_body_bytes {
        Some(0) => {
            p.push("server.max_body_bytes", "must be at least 1");
            0
        }
        Some(n) => n as usize,
        None => 1024 * 1024,
    };
    let shutdown_grace = dur(&raw.server.shutdown_grace, "server.shutdown_grace", "30s", p);
    let max_concurrent_requests =
        positive(raw.server.max_concurrent_requests, "server.max_concurrent_requests", 1024, p);
    let request_timeout = dur(&raw.server.request_timeout, "server.request_timeout", "30s", p);
    let max_connections = positive(raw.server.max_connections, "server.max_connections", 10_000, p);
    let header_timeout = dur(&raw.server.header_timeout, "server.header_timeout", "10s", p);
    if header_timeout.is_zero() && raw.server.header_timeout.is_some() {
        p.push("server.header_timeout", "must be longer than 0s");
    }
    let redact_headers =
        header_names(raw.server.redact_headers.as_deref().unwrap_or_default(), "server.redact_headers", p);
    let body_idle_timeout = dur(&raw.server.body_idle_timeout, "server.body_idle_timeout", "5s", p);
    if body_idle_timeout.is_zero() && raw.server.body_idle_timeout.is_some() {
        p.push("server.body_idle_timeout", "must be longer than 0s");
    }
    // A quarter of the slots: one address (one attacker) can never hold them all.
    let max_requests_per_client = positive(
        raw.server.max_requests_per_client,
        "server.max_requests_per_client",
        (max_concurrent_requests / 4).max(1),
        p,
    );
    let queue_timeout = dur(&raw.server.queue_timeout, "server.queue_timeout", "2s", p);
    let max_inflight_body_bytes =
        positive(raw.server.max_inflight_body_bytes, "server.max_inflight_body_bytes", 64 * 1024 * 1024, p);
    if max_inflight_body_bytes < max_body_bytes {
        p.push(
            "server.max_inflight_body_bytes",
            format!("must be at least server.max_body_bytes ({max_body_bytes}), or the largest bodies never fit"),
        );
    }
    let verify_failures_per_client = match &raw.server.verify_failures_per_client {
        None => RateLimit { per_second: 1, burst: 20 },
        Some(r) => {
            rate_limit(r, "server.verify_failures_per_client", p).unwrap_or(RateLimit { per_second: 1, burst: 1 })
        }
    };

    let url = or(&overrides.database_url, &raw.storage.url, "sqlite://hookgate.db");
    let storage_url = storage_url(&url, base_dir, p);
    let retention = dur(&raw.storage.retention, "storage.retention", "7d", p);
    let pool_size = positive(raw.storage.pool_size, "storage.pool_size", 16, p) as u32;
    let check_at_start = raw.storage.check_at_start.unwrap_or(true);

    let admin_listen = or(&overrides.admin_listen, &raw.admin.listen, DEFAULT_ADMIN_LISTEN);
    let admin_listen = socket_addr(&admin_listen, "admin.listen", p);
    let admin_token = admin_token(&raw.admin, base_dir);
    let server_tls = raw.server.tls.as_ref().and_then(|t| tls(t, "server.tls", base_dir, p));
    let admin_tls = raw.admin.tls.as_ref().and_then(|t| tls(t, "admin.tls", base_dir, p));
    let log = log(&raw.log, p);
    let telemetry = telemetry(&raw.telemetry, p);
    if let (Some(a), Some(b)) = (listen, admin_listen)
        && a == b
        && a.port() != 0
    {
        p.push(
            "admin.listen",
            format!("must differ from server.listen ({a}): the admin API never shares the ingest port"),
        );
    }

    let policy = retry_policy(&raw.delivery, None, "delivery", p);
    let concurrency = positive(raw.delivery.concurrency, "delivery.concurrency", 64, p);
    let default_lease =
        raw.delivery.lease.as_ref().and_then(|l| duration::parse(l).map_err(|e| p.push("delivery.lease", e)).ok());

    let secret_env_vars = secret_env_vars(&raw);
    let delivery_rate = raw.delivery.rate_limit.as_ref().and_then(|r| rate_limit(r, "delivery.rate_limit", p));
    let circuit_breaker = super::fields::circuit_breaker(
        &raw.delivery.circuit_breaker,
        "delivery.circuit_breaker",
        Some(CircuitBreaker::default()),
        p,
    );
    let delivery = Delivery { policy, concurrency, rate_limit: delivery_rate, circuit_breaker };
    let destinations = destinations(&raw.destinations, &delivery, default_lease, base_dir, p);
    let known: HashSet<&str> = destinations.iter().map(|d| d.destination.name.as_str()).collect();
    let sources = sources(&raw.sources, &known, base_dir, p);
    let alerts = raw.alerts.as_ref().map(|a| super::entries::alerts(a, &known, p));
    check_rendered(&destinations, &sources, p);

    Draft {
        base_dir: base_dir.to_path_buf(),
        server: listen.map(|listen| Server {
            listen,
            max_body_bytes,
            shutdown_grace,
            max_concurrent_requests,
            request_timeout,
            max_connections,
            header_timeout,
            redact_headers,
            body_idle_timeout,
            max_requests_per_client,
            queue_timeout,
            max_inflight_body_bytes,
            verify_failures_per_client,
            tls: server_tls,
        }),
        storage: storage_url.map(|url| Storage { url, retention, pool_size, check_at_start }),
        admin_listen,
        admin_token,
        admin_tls,
        delivery,
        log,
        telemetry,
        sources,
        destinations,
        alerts,
        secret_env_vars,
    }
}

/// Every variable named by a `secret_env`, `secrets_env` or `token_env`, and the fixed ones that may
/// hold a credential.
fn secret_env_vars(raw: &RawConfig) -> Vec<String> {
    let mut vars = vec![DEFAULT_ADMIN_TOKEN_ENV.to_string(), "HOOKGATE_DATABASE_URL".to_string()];
    vars.extend(raw.admin.token_env.clone());
    for v in raw.sources.iter().filter_map(|s| s.verify.as_ref()) {
        vars.extend(v.secret_env.iter().chain(&v.secrets_env).cloned());
    }
    vars.extend(raw.destinations.iter().filter_map(|d| d.sign.as_ref()?.secret_env.clone()));
    vars.extend(raw.destinations.iter().filter_map(|d| d.token_env.clone()));
    vars.extend(raw.destinations.iter().filter_map(|d| d.url_env.clone()));
    for headers in raw.destinations.iter().filter_map(|d| d.headers.as_ref()) {
        vars.extend(headers.values().filter_map(|v| match v {
            RawHeaderValue::Secret(s) => s.secret_env.clone(),
            RawHeaderValue::Text(_) => None,
        }));
    }
    vars.sort();
    vars.dedup();
    vars
}

/// The override if there is one, else the config's value, else the default.
fn or(over: &Option<String>, value: &Option<String>, default: &str) -> String {
    over.as_deref().or(value.as_deref()).unwrap_or(default).to_string()
}

/// An IP address and port. "localhost:PORT" means 127.0.0.1; other host names are refused, so
/// validating a config never waits on DNS.
fn socket_addr(text: &str, key: &str, p: &mut Problems) -> Option<SocketAddr> {
    let parsed = match text.strip_prefix("localhost:") {
        Some(port) => port.parse::<u16>().ok().map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
        None => text.parse::<SocketAddr>().ok(),
    };
    if parsed.is_none() {
        p.push(key, format!("invalid listen address {text:?}; write an IP address and port, e.g. \"127.0.0.1:8080\""));
    }
    parsed
}

fn dur(value: &Option<String>, key: &str, default: &str, p: &mut Problems) -> Duration {
    let text = value.as_deref().unwrap_or(default);
    duration::parse(text).unwrap_or_else(|e| {
        p.push(key, e);
        Duration::ZERO
    })
}

fn positive(value: Option<u64>, key: &str, default: usize, p: &mut Problems) -> usize {
    match value {
        None => default,
        Some(0) => {
            p.push(key, "must be at least 1");
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

fn storage_url(url: &str, base_dir: &Path, p: &mut Problems) -> Option<StorageUrl> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or(rest);
        if path.is_empty() {
            p.push("storage.url", "sqlite URL has no file path; write e.g. \"sqlite://hookgate.db\"");
            return None;
        }
        return Some(StorageUrl::Sqlite(resolve(base_dir, path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Its TLS settings and certificate files are checked at the edge (`load.rs`).
        return Some(StorageUrl::Postgres(Secret::new(url)));
    }
    p.push(
        "storage.url",
        "unsupported storage URL; accepted: \"sqlite://PATH\" (embedded) or \"postgres://USER@HOST/DB\"",
    );
    None
}

/// Where the admin token is: `token_file`, else `token_env`, else the conventional variable if set.
fn admin_token(raw: &raw::RawAdmin, base_dir: &Path) -> Option<TokenRef> {
    if let Some(file) = &raw.token_file {
        return Some(TokenRef {
            key: "admin.token_file",
            source: SecretRef::File(resolve(base_dir, file)),
            required: true,
        });
    }
    Some(match &raw.token_env {
        Some(var) => TokenRef { key: "admin.token_env", source: SecretRef::Env(var.clone()), required: true },
        None => {
            TokenRef { key: "admin.token_env", source: SecretRef::Env(DEFAULT_ADMIN_TOKEN_ENV.into()), required: false }
        }
    })
}

/// `tls = { cert_file, key_file }`: both needed. The files are read (and the pair checked) at the edge.
fn tls(raw: &raw::RawTls, key: &str, base_dir: &Path, p: &mut Problems) -> Option<Tls> {
    let file = |value: &Option<String>, name: &str, p: &mut Problems| match value.as_deref() {
        Some(f) if !f.is_empty() => Some(resolve(base_dir, f)),
        _ => {
            p.push(
                format!("{key}.{name}"),
                "missing; write e.g. tls = { cert_file = \"cert.pem\", key_file = \"key.pem\" }",
            );
            None
        }
    };
    let cert_file = file(&raw.cert_file, "cert_file", p);
    let key_file = file(&raw.key_file, "key_file", p);
    Some(Tls { cert_file: cert_file?, key_file: key_file? })
}

/// `[log] format` ("json" | "text"; unset: text on a terminal) and `level` (an env-filter directive).
fn log(raw: &raw::RawLog, p: &mut Problems) -> Log {
    let format = match raw.format.as_deref() {
        None => None,
        Some("json") => Some(LogFormat::Json),
        Some("text") => Some(LogFormat::Text),
        Some(other) => {
            p.push("log.format", format!("unknown format {other:?}; accepted: \"json\", \"text\""));
            None
        }
    };
    let level = raw.level.clone().unwrap_or_else(|| "info".into());
    if let Err(e) = crate::telemetry::parse_filter(&level) {
        p.push(
            "log.level",
            format!("invalid level {level:?}: {e}; write a level (trace, debug, info, warn, error, off) or a directive such as \"warn,hookgate=debug\""),
        );
    }
    Log { format, level }
}

/// `[telemetry] otlp_endpoint`: the collector's base URL (`http://127.0.0.1:4318`, traces go to
/// `/v1/traces` under it) or the traces URL itself (a path ending in `/v1/traces`).
fn telemetry(raw: &raw::RawTelemetry, p: &mut Problems) -> Telemetry {
    let service_name = raw.service_name.clone().unwrap_or_else(|| "hookgate".into());
    if service_name.trim().is_empty() {
        p.push("telemetry.service_name", "must not be empty");
    }
    let traces_url = raw.otlp_endpoint.as_deref().and_then(|e| match traces_url(e) {
        Ok(u) => Some(u),
        Err(reason) => {
            p.push("telemetry.otlp_endpoint", format!("{e:?} {reason}"));
            None
        }
    });
    Telemetry { traces_url, service_name }
}

fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| format!("is not a URL ({e}); write it with its scheme, e.g. \"http://127.0.0.1:4318\""))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host (OTLP/HTTP, e.g. http://127.0.0.1:4318)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment".into());
    }
    let base = url.as_str().trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") { base.to_string() } else { format!("{base}/v1/traces") })
}

/// Each broker destination's name (subject, routing key, stream, topic) as it becomes for every
/// source that delivers to it: a name the broker would refuse is a problem now, not a dead letter.
fn check_rendered(destinations: &[DraftDestination], sources: &[DraftSource], p: &mut Problems) {
    for (i, d) in destinations.iter().enumerate() {
        let d = &d.destination;
        let Target::Broker(broker) = &d.target else { continue };
        let (key, template) = broker.kind.template();
        for s in sources.iter().filter(|s| s.routes.iter().any(|r| r.destination == d.name)) {
            let name = template.render(&s.name, &d.name);
            if let Some(reason) = broker.kind.refuse(&name) {
                p.push(
                    format!("destinations[{i}] ({}).{key}", d.name),
                    format!("for source {:?} it is {name:?}: {reason}", s.name),
                );
            }
        }
    }
}
