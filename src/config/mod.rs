//! Configuration: the TOML file (`raw.rs`) is parsed once into validated types here.
//! Every problem is collected, so `hookgate check` can list them all; nothing is bound or opened.
//! Read `Config::load` first.

pub mod duration;
pub mod raw;
pub mod secret;
mod unknown;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use secret::Secret;

use crate::verify::Verifier;
use raw::{RawConfig, RawDelivery, RawDestination, RawSource};

/// One thing wrong with a config: where (`key`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The config file (or a stand-in name for config text).
    pub file: PathBuf,
    /// The full key, such as `sources[0] (stripe).verify.secret_env`; empty for the whole file.
    pub key: String,
    /// What is wrong, and what would be accepted.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// All problems of one config, in the order found.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems while validating; keys are full paths such as `sources[0].verify.secret_env`.
pub struct Problems {
    file: PathBuf,
    items: Vec<ConfigProblem>,
}

impl Problems {
    fn new(file: &Path) -> Self {
        Problems { file: file.to_path_buf(), items: Vec::new() }
    }

    /// How many problems so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Records a problem at `key`.
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.items.push(ConfigProblem { file: self.file.clone(), key: key.into(), reason: reason.into() });
    }
}

/// The validated configuration. Built only by [`Config::load`] or [`Config::from_toml`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory relative paths resolve against (the config file's directory).
    pub base_dir: PathBuf,
    pub server: Server,
    pub storage: Storage,
    pub admin: Admin,
    pub delivery: Delivery,
    pub sources: Vec<Source>,
    pub destinations: Vec<Destination>,
    /// The environment variables this config takes secrets or credentials from (and
    /// `HOOKGATE_ADMIN_TOKEN`, `HOOKGATE_DATABASE_URL`): `exec` commands do not inherit them.
    pub secret_env_vars: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// Ingest requests handled at once; more wait for a slot.
    pub max_concurrent_requests: usize,
    /// Time allowed to read a request's headers and body.
    pub request_timeout: Duration,
    /// Open connections per listener; past it a new connection is closed at once.
    pub max_connections: usize,
    /// Time allowed to receive a request's headers (slowloris); then the connection is closed.
    pub header_timeout: Duration,
    /// Header names stored `[redacted]` beyond those that look like credentials (lower case).
    pub redact_headers: Vec<String>,
    /// Longest pause between two pieces of a body; a body that stalls longer gets 408.
    pub body_idle_timeout: Duration,
    /// Ingest requests one client address may have in progress or waiting, at most.
    pub max_requests_per_client: usize,
    /// Longest wait for one of the `max_concurrent_requests` slots; then 503 with Retry-After.
    pub queue_timeout: Duration,
    /// Bytes of all the bodies being received at once, at most; past it 503 with Retry-After.
    pub max_inflight_body_bytes: usize,
    /// Failed verifications allowed per client address and source; past it 429 to that address.
    pub verify_failures_per_client: RateLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    Sqlite(PathBuf),
    /// The URL may hold a password: `Debug` shows `[redacted]`.
    Postgres(Secret),
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub url: StorageUrl,
    pub retention: Duration,
    pub pool_size: u32,
    /// SQLite: `PRAGMA quick_check` before opening, refusing a corrupt file (docs/RELIABILITY.md).
    pub check_at_start: bool,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

/// How often and how patiently a destination is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub policy: RetryPolicy,
    /// Deliveries in flight per worker process.
    pub concurrency: usize,
}

/// How a source's dedupe key is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dedupe {
    /// The provider's delivery id if the scheme has one, else SHA-256 of the body.
    Default,
    /// A JSON pointer into the body (the body must be JSON).
    JsonPointer(String),
    /// A request header; SHA-256 of the body when the header is absent.
    Header(http::HeaderName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Destinations per source at most (the embedded store numbers an event's deliveries in this range).
pub const MAX_DELIVER_TO: usize = 1024;

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub path: String,
    pub verifier: Verifier,
    pub dedupe: Dedupe,
    pub deliver_to: Vec<String>,
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone)]
pub enum Target {
    /// POST to `url`; with `sign`, a Standard Webhooks signature made with this key (decoded bytes).
    Http { url: reqwest::Url, sign: Option<Secret> },
    /// Run `program` with `args`, no shell, body on stdin.
    Exec { program: PathBuf, args: Vec<String> },
    /// A Rust handler registered by name through the library API.
    Rust { handler: String },
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub target: Target,
    pub policy: RetryPolicy,
    pub timeout: Duration,
    /// How long a claimed delivery stays claimed before another worker may take it.
    pub lease: Duration,
    /// Optional cap on this destination's deliveries in flight per process.
    pub concurrency: Option<usize>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
const DEFAULT_ADMIN_TOKEN_ENV: &str = "HOOKGATE_ADMIN_TOKEN";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Stripe's retry window, the longest of the named providers': a shorter `retention` purges events
/// whose retries may still come (dedupe lasts as long as the event is stored).
const DEDUPE_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

impl Config {
    /// Reads and validates `path`. Environment overrides apply (`HOOKGATE_LISTEN`,
    /// `HOOKGATE_ADMIN_LISTEN`, `HOOKGATE_DATABASE_URL`).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigProblem {
                file: path.to_path_buf(),
                key: String::new(),
                reason: format!("cannot read config file: {e}"),
            }])
        })?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base_dir = base_dir.canonicalize().unwrap_or(base_dir);
        Self::from_toml(&text, path, &base_dir)
    }

    /// Validates config text; `file` names it in messages and `base_dir` anchors relative paths.
    pub fn from_toml(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigErrors> {
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
        let config = Self::from_raw(raw, base_dir, &mut p);
        match config {
            Some(c) if p.items.is_empty() => Ok(c),
            _ => Err(ConfigErrors(p.items)),
        }
    }

    fn from_raw(raw: RawConfig, base_dir: &Path, p: &mut Problems) -> Option<Config> {
        let listen = env_or("HOOKGATE_LISTEN", raw.server.listen.as_deref(), DEFAULT_LISTEN);
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

        let url = env_or("HOOKGATE_DATABASE_URL", raw.storage.url.as_deref(), "sqlite://hookgate.db");
        let storage_url = storage_url(&url, base_dir, p);
        let retention = dur(&raw.storage.retention, "storage.retention", "7d", p);
        let pool_size = positive(raw.storage.pool_size, "storage.pool_size", 16, p) as u32;
        let check_at_start = raw.storage.check_at_start.unwrap_or(true);

        let admin_listen = env_or("HOOKGATE_ADMIN_LISTEN", raw.admin.listen.as_deref(), DEFAULT_ADMIN_LISTEN);
        let admin_listen = socket_addr(&admin_listen, "admin.listen", p);
        let admin_token = admin_token(&raw.admin, base_dir, p);
        if let Some(reason) = admin_listen.and_then(|a| open_to_the_network(a, admin_token.as_ref())) {
            p.push("admin.listen", reason);
        }
        if let (Some(listen), Some(token)) = (admin_listen, &admin_token)
            && let Some(reason) = weak_admin_token(listen, token)
        {
            let key = if raw.admin.token_file.is_some() { "admin.token_file" } else { "admin.token_env" };
            p.push(key, reason);
        }
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
        let destinations = destinations(&raw.destinations, policy, default_lease, base_dir, p);
        let known: HashSet<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
        let sources = sources(&raw.sources, &known, base_dir, p);

        Some(Config {
            base_dir: base_dir.to_path_buf(),
            server: Server {
                listen: listen?,
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
            },
            storage: Storage { url: storage_url?, retention, pool_size, check_at_start },
            admin: Admin { listen: admin_listen?, token: admin_token },
            delivery: Delivery { policy, concurrency },
            sources,
            destinations,
            secret_env_vars,
        })
    }

    /// What is allowed but probably not meant, each with its key: `check` prints these and `serve`
    /// logs them at start.
    pub fn warnings(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.storage.retention < DEDUPE_WINDOW {
            out.push((
                "storage.retention".to_string(),
                format!(
                    "{} is shorter than 3 days: an event is deduplicated only while it is stored, and Stripe retries \
                     for up to 3 days, so a late retry of a purged event is stored and delivered again (docs/PROVIDERS.md \
                     lists each provider's retry window)",
                    humantime::format_duration(self.storage.retention)
                ),
            ));
        }
        out
    }

    /// The destination named `name`.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// The destinations of `type = "rust"`: only a program built on the library can run them.
    pub fn rust_destinations(&self) -> Vec<&str> {
        self.destinations.iter().filter(|d| matches!(d.target, Target::Rust { .. })).map(|d| d.name.as_str()).collect()
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
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
    vars.sort();
    vars.dedup();
    vars
}

fn env_or(var: &str, value: Option<&str>, default: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => value.unwrap_or(default).to_string(),
    }
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

/// `{ per_second = N, burst = M }`: N at least 1; M defaults to N.
fn rate_limit(raw: &raw::RawRateLimit, key: &str, p: &mut Problems) -> Option<RateLimit> {
    match (raw.per_second, raw.burst) {
        (Some(per_second), burst) if per_second > 0 => Some(RateLimit {
            per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
            burst: u32::try_from(burst.unwrap_or(per_second).max(1)).unwrap_or(u32::MAX),
        }),
        _ => {
            p.push(format!("{key}.per_second"), "missing or zero; write e.g. { per_second = 1, burst = 20 }");
            None
        }
    }
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

/// Resolves `path` against the config directory unless it is absolute.
pub fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) }
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
        return match crate::store::postgres::check_url(url) {
            Ok(()) => Some(StorageUrl::Postgres(Secret::new(url))),
            Err(e) => {
                p.push("storage.url", e);
                None
            }
        };
    }
    p.push(
        "storage.url",
        "unsupported storage URL; accepted: \"sqlite://PATH\" (embedded) or \"postgres://USER@HOST/DB\"",
    );
    None
}

/// Why an admin listener at `listen` without a token must not start, if it must not: the API can
/// replay every event, so it is never open to the network.
pub fn open_to_the_network(listen: SocketAddr, token: Option<&Secret>) -> Option<String> {
    (token.is_none() && !listen.ip().is_loopback()).then(|| {
        format!(
            "{listen} is not a loopback address and no admin token is configured: set HOOKGATE_ADMIN_TOKEN \
             (or [admin] token_env / token_file), or listen on 127.0.0.1"
        )
    })
}

/// The fewest characters an admin token may have when the admin listener is reachable from the
/// network: a short token can be guessed.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// Why `token` is too weak for an admin listener at `listen`, if it is: off loopback, it must
/// have at least [`MIN_ADMIN_TOKEN_CHARS`] characters. The reason never shows the token.
pub fn weak_admin_token(listen: SocketAddr, token: &Secret) -> Option<String> {
    let chars = String::from_utf8_lossy(token.expose()).chars().count();
    (!listen.ip().is_loopback() && chars < MIN_ADMIN_TOKEN_CHARS).then(|| {
        format!(
            "the admin token has {chars} characters; with admin.listen {listen} off loopback it needs at least \
             {MIN_ADMIN_TOKEN_CHARS} (e.g. the output of `openssl rand -hex 32`)"
        )
    })
}

fn admin_token(raw: &raw::RawAdmin, base_dir: &Path, p: &mut Problems) -> Option<Secret> {
    if let Some(file) = &raw.token_file {
        return Secret::from_file(&resolve(base_dir, file)).map_err(|e| p.push("admin.token_file", e)).ok();
    }
    match &raw.token_env {
        Some(var) => Secret::from_env(var).map_err(|e| p.push("admin.token_env", e)).ok(),
        // Without an explicit key the conventional variable is optional.
        None => Secret::from_env(DEFAULT_ADMIN_TOKEN_ENV).ok(),
    }
}

fn retry_policy(raw: &RawDelivery, base: Option<RetryPolicy>, prefix: &str, p: &mut Problems) -> RetryPolicy {
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

fn name_ok(name: &Option<String>, key: &str, p: &mut Problems) -> Option<String> {
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

fn destinations(
    raws: &[RawDestination],
    policy: RetryPolicy,
    default_lease: Option<Duration>,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<Destination> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for (i, raw) in raws.iter().enumerate() {
        let at = format!("destinations[{i}]");
        let Some(name) = name_ok(&raw.name, &format!("{at}.name"), p) else { continue };
        let at = format!("destinations[{i}] ({name})");
        if let Some(prev) = seen.insert(name.clone(), i) {
            p.push(format!("{at}.name"), format!("duplicate destination name; also used by destinations[{prev}]"));
        }
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => duration::parse(t).unwrap_or_else(|e| {
                p.push(format!("{at}.timeout"), e);
                DEFAULT_TIMEOUT
            }),
        };
        let own = RawDelivery {
            max_attempts: raw.max_attempts,
            initial_backoff: raw.initial_backoff.clone(),
            max_backoff: raw.max_backoff.clone(),
            concurrency: raw.concurrency,
            lease: raw.lease.clone(),
        };
        let dest_policy = retry_policy(&own, Some(policy), &at, p);
        let lease = match &raw.lease {
            Some(l) => duration::parse(l).unwrap_or_else(|e| {
                p.push(format!("{at}.lease"), e);
                timeout + LEASE_MARGIN
            }),
            None => default_lease.unwrap_or(timeout + LEASE_MARGIN),
        };
        if lease <= timeout {
            p.push(
                format!("{at}.lease"),
                "must be longer than the destination's timeout, or a slow delivery is claimed twice",
            );
        }
        let concurrency = match raw.concurrency {
            Some(0) => {
                p.push(format!("{at}.concurrency"), "must be at least 1");
                None
            }
            other => other.map(|n| n as usize),
        };
        let target = target(raw, &at, base_dir, p);
        if let Some(target) = target {
            out.push(Destination { name, target, policy: dest_policy, timeout, lease, concurrency });
        }
    }
    out
}

fn target(raw: &RawDestination, at: &str, base_dir: &Path, p: &mut Problems) -> Option<Target> {
    let extra = |p: &mut Problems, present: bool, key: &str, kind: &str| {
        if present {
            p.push(format!("{at}.{key}"), format!("not used by type = \"{kind}\""));
        }
    };
    match raw.kind.as_deref() {
        Some("http") => {
            extra(p, raw.command.is_some(), "command", "http");
            extra(p, raw.handler.is_some(), "handler", "http");
            let url = match raw.url.as_deref() {
                None => {
                    p.push(format!("{at}.url"), "missing; an http destination needs a url");
                    None
                }
                Some(u) => match reqwest::Url::parse(u) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    Ok(_) => {
                        p.push(format!("{at}.url"), "must be an http:// or https:// URL");
                        None
                    }
                    Err(e) => {
                        p.push(format!("{at}.url"), format!("invalid URL {u:?}: {e}"));
                        None
                    }
                },
            };
            let sign = raw.sign.as_ref().and_then(|s| signing_key(s, at, base_dir, p));
            if raw.sign.is_some() && sign.is_none() {
                return None;
            }
            Some(Target::Http { url: url?, sign })
        }
        Some("exec") => {
            extra(p, raw.url.is_some(), "url", "exec");
            extra(p, raw.sign.is_some(), "sign", "exec");
            extra(p, raw.handler.is_some(), "handler", "exec");
            match raw.command.as_deref() {
                Some([program, args @ ..]) if !program.is_empty() => {
                    // A bare name is looked up on PATH; anything with a slash is a path from the config dir.
                    let program =
                        if program.contains('/') { resolve(base_dir, program) } else { PathBuf::from(program) };
                    Some(Target::Exec { program, args: args.to_vec() })
                }
                _ => {
                    p.push(
                        format!("{at}.command"),
                        "missing or empty; write e.g. command = [\"./scripts/notify.sh\", \"--fast\"]",
                    );
                    None
                }
            }
        }
        Some("rust") => {
            extra(p, raw.url.is_some(), "url", "rust");
            extra(p, raw.command.is_some(), "command", "rust");
            let handler = raw.handler.clone().or_else(|| raw.name.clone())?;
            Some(Target::Rust { handler })
        }
        Some(other) => {
            p.push(format!("{at}.type"), format!("unknown type {other:?}; accepted: \"http\", \"exec\", \"rust\""));
            None
        }
        None => {
            p.push(format!("{at}.type"), "missing; accepted: \"http\", \"exec\", \"rust\"");
            None
        }
    }
}

/// A Standard Webhooks signing secret: `whsec_` followed by base64; the key is the decoded bytes.
fn signing_key(raw: &raw::RawSign, at: &str, base_dir: &Path, p: &mut Problems) -> Option<Secret> {
    let (key, secret) = match (&raw.secret_env, &raw.secret_file) {
        (Some(var), None) => (format!("{at}.sign.secret_env"), Secret::from_env(var)),
        (None, Some(file)) => (format!("{at}.sign.secret_file"), Secret::from_file(&resolve(base_dir, file))),
        _ => {
            p.push(format!("{at}.sign"), "set exactly one of secret_env or secret_file");
            return None;
        }
    };
    let secret = secret.map_err(|e| p.push(&key, e)).ok()?;
    // The same decoding as the standard-webhooks verify scheme (padding optional).
    match crate::verify::standard_webhooks::decode_secret(secret.expose()) {
        Ok(bytes) => Some(Secret::new(bytes)),
        Err(e) => {
            p.push(key, e);
            None
        }
    }
}

/// Printable ASCII that a request path never carries unescaped (RFC 3986: not in a path).
const UNSENT: &[u8] = b"\"<>\\^`{|}";

/// The percent-encoding that turns a config path into what a request would send: controls,
/// space, [`UNSENT`] and (always, by `utf8_percent_encode`) every byte that is not ASCII.
const PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Whether a request can have exactly this path: printable ASCII only, none of [`UNSENT`], and
/// every `%` starting an escape of two hex digits.
fn matchable_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b.is_ascii_graphic()
            && !UNSENT.contains(&b)
            && (b != b'%' || bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
    })
}

/// Header names, each valid, lower-cased.
fn header_names(names: &[String], key: &str, p: &mut Problems) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => out.push(h.as_str().to_string()),
            Err(_) => p.push(format!("{key}[{i}]"), format!("{name:?} is not a valid header name")),
        }
    }
    out
}

fn sources(raws: &[RawSource], known: &HashSet<&str>, base_dir: &Path, p: &mut Problems) -> Vec<Source> {
    let mut out = Vec::new();
    let mut names = HashMap::new();
    let mut paths: HashMap<String, usize> = HashMap::new();
    for (i, raw) in raws.iter().enumerate() {
        let Some(name) = name_ok(&raw.name, &format!("sources[{i}].name"), p) else { continue };
        let at = format!("sources[{i}] ({name})");
        if let Some(prev) = names.insert(name.clone(), i) {
            p.push(format!("{at}.name"), format!("duplicate source name; also used by sources[{prev}]"));
        }
        let path = match raw.path.as_deref() {
            Some(path) if !path.starts_with('/') || path.contains("..") || path.contains('?') || path.contains('#') => {
                p.push(
                    format!("{at}.path"),
                    format!("invalid path {path:?}; must start with '/' and contain no '..', '?' or '#'"),
                );
                None
            }
            Some(path) if !matchable_path(path) => {
                let encoded = percent_encoding::utf8_percent_encode(path, PATH_ESCAPES);
                p.push(
                    format!("{at}.path"),
                    format!(
                        "{path:?} can never match a request: paths are matched as sent, percent-encoded; write {:?}",
                        encoded.to_string()
                    ),
                );
                None
            }
            Some(path) => Some(path.to_string()),
            None => {
                p.push(format!("{at}.path"), "missing; write e.g. path = \"/events/stripe\"");
                None
            }
        };
        if let Some(path) = &path {
            if matches!(path.as_str(), "/healthz" | "/readyz") {
                p.push(format!("{at}.path"), "is reserved for health checks");
            }
            if let Some(prev) = paths.insert(path.clone(), i) {
                p.push(format!("{at}.path"), format!("{path:?} is already used by sources[{prev}]"));
            }
        }
        let verifier = match &raw.verify {
            None => {
                p.push(
                    format!("{at}.verify"),
                    "missing; every source verifies its requests (or says scheme = \"none\", insecure = true)",
                );
                None
            }
            Some(v) => crate::verify::build(v, base_dir, &format!("{at}.verify"), p),
        };
        let dedupe = match &raw.dedupe {
            None => Dedupe::Default,
            Some(d) => match (&d.json_pointer, &d.header) {
                (Some(ptr), None) if ptr.is_empty() || ptr.starts_with('/') => Dedupe::JsonPointer(ptr.clone()),
                (Some(ptr), None) => {
                    p.push(
                        format!("{at}.dedupe.json_pointer"),
                        format!("invalid JSON pointer {ptr:?}; it starts with '/', e.g. \"/id\""),
                    );
                    Dedupe::Default
                }
                (None, Some(h)) => match http::HeaderName::try_from(h.as_str()) {
                    Ok(h) => Dedupe::Header(h),
                    Err(_) => {
                        p.push(format!("{at}.dedupe.header"), format!("invalid header name {h:?}"));
                        Dedupe::Default
                    }
                },
                _ => {
                    p.push(format!("{at}.dedupe"), "set exactly one of json_pointer or header");
                    Dedupe::Default
                }
            },
        };
        if raw.deliver_to.is_empty() {
            p.push(format!("{at}.deliver_to"), "empty; name at least one destination");
        }
        if raw.deliver_to.len() > MAX_DELIVER_TO {
            p.push(
                format!("{at}.deliver_to"),
                format!("{} destinations; at most {MAX_DELIVER_TO}", raw.deliver_to.len()),
            );
        }
        let mut seen = HashSet::new();
        for (j, d) in raw.deliver_to.iter().enumerate() {
            if !known.contains(d.as_str()) {
                let mut names: Vec<_> = known.iter().copied().collect();
                names.sort_unstable();
                p.push(format!("{at}.deliver_to[{j}]"), format!("unknown destination {d:?}; defined: {names:?}"));
            }
            if !seen.insert(d) {
                p.push(format!("{at}.deliver_to[{j}]"), format!("destination {d:?} is listed twice"));
            }
        }
        let rate_limit = raw.rate_limit.as_ref().and_then(|r| match (r.per_second, r.burst) {
            (Some(per_second), burst) if per_second > 0 => Some(RateLimit {
                per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
                burst: u32::try_from(burst.unwrap_or(per_second).max(1)).unwrap_or(u32::MAX),
            }),
            _ => {
                p.push(
                    format!("{at}.rate_limit.per_second"),
                    "missing or zero; write rate_limit = { per_second = 100, burst = 200 }",
                );
                None
            }
        });
        if let (Some(path), Some(verifier)) = (path, verifier) {
            out.push(Source { name, path, verifier, dedupe, deliver_to: raw.deliver_to.clone(), rate_limit });
        }
    }
    out
}
