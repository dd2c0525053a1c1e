//! Configuration, loaded in two steps, every problem collected with its key so that `hookgate check`
//! can list them all; nothing is bound or opened.
//! 1. `validate.rs` (with `entries.rs`), pure: TOML text (`raw.rs`) and the `HOOKGATE_*` overrides
//!    → a `Draft` of validated types whose secrets are references (`SecretRef`).
//! 2. `load.rs`, the one edge: reads the environment, secret files and the config file, has the
//!    store check a PostgreSQL URL, and builds each source's `Verifier` from resolved values.
//!
//! The types other modules read (`Config` and its parts) are here. Read `load::from_toml` first.

pub mod broker;
pub mod duration;
mod entries;
mod fields;
mod http_options;
pub mod load;
pub mod raw;
#[cfg(test)]
mod tests;
mod unknown;
pub mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::Secret;
pub use crate::telemetry::LogFormat;
pub use broker::{Broker, BrokerKind, Template};
pub use fields::SecretRef;
pub use load::Outside;
pub use validate::Overrides;

use crate::verify::Verifier;

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
    /// The problems found, or `Ok` if none.
    pub(crate) fn into_result(self) -> Result<(), ConfigErrors> {
        if self.items.is_empty() { Ok(()) } else { Err(ConfigErrors(self.items)) }
    }

    pub(crate) fn new(file: &Path) -> Self {
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
    pub log: Log,
    pub telemetry: Telemetry,
    pub sources: Vec<Source>,
    pub destinations: Vec<Destination>,
    /// `[alerts]`: None when the config has none (no alert is raised).
    pub alerts: Option<Alerts>,
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
    /// HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of plain HTTP/1.1.
    pub tls: Option<Tls>,
}

/// A listener's certificate chain and private key, PEM files (paths resolved against the config
/// directory). Read again when the process reloads (SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// `None`: text when stderr is a terminal, JSON otherwise.
    pub format: Option<LogFormat>,
    /// An env-filter directive (`info`, `warn,hookgate=debug`); `HOOKGATE_LOG` overrides it.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log { format: None, level: "info".into() }
    }
}

/// `[telemetry]`: where traces go. No endpoint: no traces, no exporter, nothing per request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Telemetry {
    /// The OTLP/HTTP traces URL (`…/v1/traces`), from `otlp_endpoint`.
    pub traces_url: Option<String>,
    /// `service.name` of every span; default "hookgate".
    pub service_name: String,
}

impl Telemetry {
    /// Whether spans are made and trace context stored and passed on.
    pub fn traces(&self) -> bool {
        self.traces_url.is_some()
    }
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
    /// HTTPS on the admin listener.
    pub tls: Option<Tls>,
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
    /// The default `rate_limit` of every destination (none by default).
    pub rate_limit: Option<RateLimit>,
    /// The default `circuit_breaker` (on: 10 failures, 30s); None is `circuit_breaker = false`.
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// `circuit_breaker = { failures, cooldown }` (CONTRACT §8): `failures` consecutive failed attempts
/// open the circuit for `cooldown`; the cooldown doubles at each failed trial, up to the
/// destination's `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker { failures: 10, cooldown: Duration::from_secs(30) }
    }
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
    /// The destinations' names, in the order of `deliver_to`.
    pub deliver_to: Vec<String>,
    /// Each destination's rules, in the same order (CONTRACT §7).
    pub routes: Vec<Route>,
    pub rate_limit: Option<RateLimit>,
    /// The answer to a stored (queued or duplicate) event instead of the JSON one.
    pub response: Option<SourceResponse>,
}

/// A source's `response` table: a 2xx status, its content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Source {
    /// Whether any of its destinations has a filter: only then is a document built at ingest.
    pub fn has_filters(&self) -> bool {
        self.routes.iter().any(|r| r.filter.is_some())
    }

    /// The transform of its deliveries to `destination`, if they have one.
    pub fn transform(&self, destination: &str) -> Option<&Expr> {
        self.routes.iter().find(|r| r.destination == destination).and_then(|r| r.transform.as_ref())
    }
}

/// The built-in source whose events are alerts (CONTRACT §8). No source of the config may take
/// its name, and no request can reach it: hookgate alone makes its events.
pub const ALERT_SOURCE: &str = "hookgate";

/// A kind of alert (`[alerts] on`), as the alert event's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A delivery went `dead`.
    DeliveryDead,
    /// A destination's closed circuit opened (not each failed trial).
    CircuitOpened,
    /// A destination's circuit closed again.
    CircuitClosed,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [AlertKind::DeliveryDead, AlertKind::CircuitOpened, AlertKind::CircuitClosed];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DeliveryDead => "delivery.dead",
            AlertKind::CircuitOpened => "destination.circuit_opened",
            AlertKind::CircuitClosed => "destination.circuit_closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// `[alerts]`: the alert events' routes (ordinary destinations, with filters and transforms) and
/// the kinds raised.
#[derive(Debug, Clone)]
pub struct Alerts {
    /// The destinations' names, in the order of `deliver_to`.
    pub deliver_to: Vec<String>,
    /// Each destination's rules, in the same order.
    pub routes: Vec<Route>,
    pub on: Vec<AlertKind>,
}

impl Alerts {
    /// Whether `destination` receives alerts: then it raises none about itself.
    pub fn receives(&self, destination: &str) -> bool {
        self.deliver_to.iter().any(|d| d == destination)
    }
}

/// One entry of a source's `deliver_to`.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination: String,
    /// Run at ingest: an event it does not match gets a `filtered` delivery.
    pub filter: Option<Expr>,
    /// Run at each attempt: its output is the body sent.
    pub transform: Option<Expr>,
}

/// A jq expression, compiled once at load, with its text for messages.
#[derive(Clone)]
pub struct Expr {
    pub text: String,
    pub program: std::sync::Arc<crate::routing::engine::Program>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// The value of one of an http destination's `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    /// Written in the config.
    Static(http::HeaderValue),
    /// The prefix and the secret read at start; `Debug` shows `[redacted]`.
    Secret(Secret),
}

impl HeaderSource {
    /// The value to send; a secret one is marked sensitive, so the HTTP stack never shows it.
    pub fn value(&self) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
        match self {
            HeaderSource::Static(v) => Ok(v.clone()),
            HeaderSource::Secret(s) => {
                let mut v = http::HeaderValue::from_bytes(s.expose())?;
                v.set_sensitive(true);
                Ok(v)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum Target {
    /// Send to `url` with `method` (POST, PUT or PATCH) and `headers` besides hookgate's own; with
    /// `sign`, a Standard Webhooks signature made with this key (decoded bytes).
    Http {
        url: reqwest::Url,
        method: http::Method,
        headers: Vec<(http::HeaderName, HeaderSource)>,
        sign: Option<Secret>,
    },
    /// Run `program` with `args`, no shell, body on stdin.
    Exec { program: PathBuf, args: Vec<String> },
    /// A Rust handler registered by name through the library API.
    Rust { handler: String },
    /// Claimed by consumers through the admin API (CONTRACT §10), never by the workers; `token`
    /// is valid for this destination's claim, ack and nack only.
    Pull { token: Option<Secret> },
    /// A message broker (CONTRACT §10): `nats`, `rabbitmq`, `redis` or `mqtt`.
    Broker(Broker),
}

impl Target {
    /// The destination's `type` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Http { .. } => "http",
            Target::Exec { .. } => "exec",
            Target::Rust { .. } => "rust",
            Target::Pull { .. } => "pull",
            Target::Broker(b) => b.kind.name(),
        }
    }
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
    /// Attempts per second summed over every worker on the store (its own, else `[delivery]`'s).
    pub rate_limit: Option<RateLimit>,
    /// None: `circuit_breaker = false`.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// `ordering_key`: run at ingest where filters run; its output is stored with the delivery.
    pub ordering_key: Option<Expr>,
}

/// The variable the admin token is read from when `[admin]` names none.
const DEFAULT_ADMIN_TOKEN_ENV: &str = "HOOKGATE_ADMIN_TOKEN";
/// Stripe's retry window, the longest of the named providers': a shorter `retention` purges events
/// whose retries may still come (dedupe lasts as long as the event is stored).
const DEDUPE_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

impl Config {
    /// Reads and validates `path`, secrets and environment overrides included (`HOOKGATE_LISTEN`,
    /// `HOOKGATE_ADMIN_LISTEN`, `HOOKGATE_DATABASE_URL`). A PostgreSQL URL's certificate files are
    /// checked by the store when it opens; [`Config::load_from`] with a check checks them here.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_from(path, &load::Process::default())
    }

    /// [`Config::load`] with the outside world given: the environment, files and the store's URL check.
    pub fn load_from(path: &Path, outside: &dyn load::Outside) -> Result<Config, ConfigErrors> {
        load::load(path, outside)
    }

    /// Validates config text and resolves its secrets; `file` names it in messages and `base_dir`
    /// anchors relative paths.
    pub fn from_toml(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigErrors> {
        load::from_toml(text, file, base_dir, &load::Process::default())
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
        for (i, d) in self.destinations.iter().enumerate() {
            if let Target::Broker(b) = &d.target
                && b.url_env.is_none()
                && broker::has_password(&b.url)
            {
                out.push((
                    format!("destinations[{i}] ({}).url", d.name),
                    "holds a password in the config file; put the URL in an environment variable and name it with url_env"
                        .to_string(),
                ));
            }
        }
        out
    }

    /// Whether any source has a filter or a transform, or any destination an ordering key: only then
    /// do routing threads start.
    pub fn has_expressions(&self) -> bool {
        self.sources
            .iter()
            .flat_map(|s| &s.routes)
            .chain(self.alerts.iter().flat_map(|a| &a.routes))
            .any(|r| r.filter.is_some() || r.transform.is_some())
            || self.destinations.iter().any(|d| d.ordering_key.is_some())
    }

    /// The filters of `routes` and the ordering keys of the destinations in `deliver_to` (a source's,
    /// or `[alerts]`'), as `routing` runs them; each list empty when none of its entries has one.
    pub fn programs(&self, routes: &[Route], deliver_to: &[String]) -> crate::routing::Programs {
        let filter = |e: Option<&Expr>| e.map(|e| (e.program.clone(), e.text.clone()));
        let key_of = |d: &String| self.destination(d).and_then(|d| d.ordering_key.as_ref());
        let filters: std::sync::Arc<[_]> = if routes.iter().any(|r| r.filter.is_some()) {
            routes.iter().map(|r| filter(r.filter.as_ref())).collect()
        } else {
            std::sync::Arc::new([])
        };
        let keys: std::sync::Arc<[_]> = if deliver_to.iter().any(|d| key_of(d).is_some()) {
            deliver_to.iter().map(|d| filter(key_of(d))).collect()
        } else {
            std::sync::Arc::new([])
        };
        crate::routing::Programs::new(filters, keys)
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

/// Resolves `path` against the config directory unless it is absolute.
pub fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) }
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
