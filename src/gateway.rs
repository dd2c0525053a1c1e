//! The library entry point: [`Gateway`] collects a config and named Rust handlers, checks that
//! they match, and builds a [`BoundGateway`] (storage open, listeners bound) that serves until told
//! to stop. Everything else (verification, dedupe, the durable queue, retries, dead letters, the
//! admin listener) is the same code the `hookgate` binary runs; this file only wires handlers in.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::app::{App, Role};
use crate::clock::SharedClock;
use crate::config::{Config, ConfigErrors, Target};
use crate::destination::function::{Event, Handler, HandlerError};
use crate::store::Store;

/// A gateway being assembled: a validated [`Config`] plus the Rust handlers its `type = "rust"`
/// destinations name.
///
/// Register each handler under the name a destination gives in `handler = "..."` (by default the
/// destination's own name), then [`serve`](Gateway::serve) it, or [`build`](Gateway::build) it to
/// learn the bound addresses first. Building checks that every `type = "rust"` destination has
/// its handler and that every registered handler is used, and reports all mismatches at once.
///
/// ```no_run
/// use hookgate::{Event, Gateway, HandlerError};
///
/// #[tokio::main]
/// async fn main() -> anyhow::Result<()> {
///     Gateway::from_config_file("hookgate.toml")?
///         .handler("contact_created", |event: Event| async move {
///             let contact: serde_json::Value = event.json()?; // any error converts; retried
///             println!("new contact {}", contact["email"]);
///             Ok(())
///         })
///         .handler("payment_succeeded", payment_succeeded)
///         .serve() // until SIGTERM or SIGINT
///         .await?;
///     Ok(())
/// }
///
/// async fn payment_succeeded(event: Event) -> Result<(), HandlerError> {
///     if event.body.is_empty() {
///         return Err(HandlerError::permanent("empty body")); // dead at once, no retries
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    role: Role,
    handlers: Vec<(String, Handler)>,
    clock: SharedClock,
    config_file: Option<std::path::PathBuf>,
}

impl Gateway {
    /// Starts from a config that is already validated (see [`Config::load`] and
    /// [`Config::from_toml`]).
    pub fn new(config: Config) -> Gateway {
        Gateway { config, role: Role::All, handlers: Vec::new(), clock: crate::clock::system(), config_file: None }
    }

    /// Reads and validates a TOML config file, exactly as `hookgate serve --config PATH` does:
    /// relative paths resolve against the file's directory, secrets must resolve, and
    /// `HOOKGATE_LISTEN`, `HOOKGATE_ADMIN_LISTEN` and `HOOKGATE_DATABASE_URL` override the file.
    ///
    /// # Errors
    /// [`Error::Config`] listing every problem found.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Gateway, Error> {
        let gateway = Gateway::new(Config::load_from(path.as_ref(), &outside()).map_err(Error::Config)?);
        Ok(gateway.config_file(path.as_ref()))
    }

    /// The file the config came from, which a reload (SIGHUP, `POST /api/reload`) reads again.
    /// [`from_config_file`](Gateway::from_config_file) sets it; without it a reload changes nothing.
    #[must_use]
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Gateway {
        self.config_file = Some(path.into());
        self
    }

    /// Validates config text, as [`from_config_file`](Gateway::from_config_file) does a file.
    /// Relative paths in it (the SQLite file, `secret_file`, `exec` commands) resolve against
    /// `base_dir`.
    ///
    /// # Errors
    /// [`Error::Config`] listing every problem found.
    pub fn from_toml(text: &str, base_dir: impl AsRef<Path>) -> Result<Gateway, Error> {
        let base_dir = base_dir.as_ref();
        crate::config::load::from_toml(text, Path::new("<config text>"), base_dir, &outside())
            .map(Gateway::new)
            .map_err(Error::Config)
    }

    /// Runs only part of the gateway, as `hookgate serve --role` does. The default is
    /// [`Role::All`]. Handlers run only where workers run, but they are checked in every role so
    /// that one binary can be deployed in each.
    #[must_use]
    pub fn role(mut self, role: Role) -> Gateway {
        self.role = role;
        self
    }

    /// Takes wall-clock time from `clock` instead of the system's: every timestamp, signature
    /// tolerance, retry schedule, lease and retention cut-off then follows it. For tests that
    /// drive time ([`crate::clock::ManualClock`], or [`crate::clock::TokioClock`] under tokio's
    /// paused time) instead of waiting for it.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Gateway {
        self.clock = clock;
        self
    }

    /// Registers `handler` under `name`, for the `type = "rust"` destinations whose handler
    /// (by default, their name) is `name`.
    ///
    /// The handler gets each [`Event`] once per delivery attempt. `Ok(())` marks the delivery
    /// succeeded. An error (any error converts with `?`) is retried with backoff until the
    /// destination's `max_attempts`, then the delivery is dead;
    /// [`HandlerError::permanent`] makes it dead at once. A panic or running past the
    /// destination's `timeout` is a failed attempt; the worker carries on.
    ///
    /// Handlers run concurrently (up to `[delivery] concurrency` deliveries per process), and an
    /// event may be delivered again after a crash or a replay: make them idempotent on
    /// [`Event::id`].
    #[must_use]
    pub fn handler<F, Fut>(mut self, name: impl Into<String>, handler: F) -> Gateway
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handlers.push((name.into(), Handler::new(handler)));
        self
    }

    /// Registers a handler that gets the body already parsed as JSON into `T`.
    ///
    /// A body that does not deserialize into `T` never reaches `handler`: retrying cannot change
    /// the body, so the delivery is dead at once, with the serde error as its last error (fix the
    /// type, then replay it).
    ///
    /// ```
    /// use hookgate::{Event, Gateway};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct ContactCreated {
    ///     id: String,
    ///     email: String,
    /// }
    ///
    /// # fn register(gateway: Gateway) -> Gateway {
    /// gateway.json_handler("contact_created", |event: Event, contact: ContactCreated| async move {
    ///     println!("event {}: contact {} <{}>", event.id, contact.id, contact.email);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    #[must_use]
    pub fn json_handler<T, F, Fut>(self, name: impl Into<String>, handler: F) -> Gateway
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        F: Fn(Event, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handler(name, move |event: Event| {
            let call = match event.json::<T>() {
                Ok(payload) => Ok(handler(event, payload)),
                Err(e) => {
                    Err(HandlerError::permanent(format!("body is not a valid {}: {e}", std::any::type_name::<T>())))
                }
            };
            async move { call?.await }
        })
    }

    /// Checks handlers against the config, opens storage and binds the listeners (port 0 works;
    /// the addresses are known on the result). Nothing is served until
    /// [`BoundGateway::run_until`] or [`BoundGateway::serve`].
    ///
    /// # Errors
    /// [`Error::Handlers`] when handlers and `type = "rust"` destinations do not match (every
    /// mismatch is listed); [`Error::Runtime`] when storage cannot be opened or a listener bound.
    pub async fn build(self) -> Result<BoundGateway, Error> {
        // An ingest node runs no handlers: one with none registered (the plain `hookgate` binary)
        // may serve a config with `type = "rust"` destinations that other processes deliver.
        let handlers = if self.role == Role::Ingest && self.handlers.is_empty() {
            HashMap::new()
        } else {
            check_handlers(&self.config, self.handlers)?
        };
        let app = App::build(self.config, self.role, handlers, self.clock).await.map_err(Error::Runtime)?;
        if let Some(file) = self.config_file {
            app.set_config_file(file);
        }
        Ok(BoundGateway { app, role: self.role })
    }

    /// [`build`](Gateway::build)s, then serves until SIGTERM or SIGINT, then drains: stops
    /// accepting, finishes requests in flight, and lets running deliveries finish within
    /// `server.shutdown_grace`. This is what `hookgate serve` does.
    ///
    /// # Errors
    /// As [`build`](Gateway::build), or [`Error::Runtime`] when serving fails.
    pub async fn serve(self) -> Result<(), Error> {
        self.build().await?.serve().await
    }
}

/// Matches registered handlers to the config's `type = "rust"` destinations.
fn check_handlers(config: &Config, registered: Vec<(String, Handler)>) -> Result<HashMap<String, Handler>, Error> {
    let mut problems = Vec::new();
    let mut handlers = HashMap::new();
    for (name, handler) in registered {
        if handlers.insert(name.clone(), handler).is_some() {
            problems.push(HandlerProblem::Duplicate { handler: name });
        }
    }
    // handler name → destinations that use it, in config order.
    let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in &config.destinations {
        if let Target::Rust { handler } = &d.target {
            wanted.entry(handler.as_str()).or_default().push(d.name.as_str());
            if !handlers.contains_key(handler) {
                problems.push(HandlerProblem::Missing { destination: d.name.clone(), handler: handler.clone() });
            }
        }
    }
    let mut unused: Vec<&String> = handlers.keys().filter(|name| !wanted.contains_key(name.as_str())).collect();
    unused.sort();
    problems.extend(unused.into_iter().map(|name| HandlerProblem::Unused { handler: name.clone() }));
    if problems.is_empty() {
        return Ok(handlers);
    }
    let mut registered: Vec<String> = handlers.into_keys().collect();
    registered.sort();
    let destinations = wanted
        .iter()
        .flat_map(|(handler, dests)| dests.iter().map(move |d| format!("{d:?} (handler {handler:?})")))
        .collect();
    Err(Error::Handlers(HandlerMismatch { problems, registered, destinations }))
}

/// A gateway with its storage open and its listeners bound, ready to serve.
pub struct BoundGateway {
    app: App,
    role: Role,
}

impl BoundGateway {
    /// Where the ingest listener is bound; `None` for [`Role::Worker`], which has none.
    pub fn ingest_addr(&self) -> Option<SocketAddr> {
        self.app.ingest_addr()
    }

    /// Where the admin listener (health checks, admin API, metrics) is bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.app.admin_addr()
    }

    /// The store the gateway writes to, for tests that inspect deliveries.
    #[doc(hidden)]
    pub fn store(&self) -> Arc<dyn Store> {
        self.app.store()
    }

    /// Serves until `shutdown` resolves, then drains within `server.shutdown_grace`: stops
    /// accepting and claiming, finishes requests in flight and lets running deliveries finish.
    /// A delivery still running when the grace ends goes back to the queue when its lease ends.
    ///
    /// # Errors
    /// [`Error::Runtime`] when serving fails.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tracing::info!(
            ingest = %self.ingest_addr().map_or_else(|| "none".to_string(), |a| a.to_string()),
            admin = %self.admin_addr(),
            role = ?self.role,
            version = env!("CARGO_PKG_VERSION"),
            "hookgate ready"
        );
        self.app.run_until(shutdown).await.map_err(Error::Runtime)
    }

    /// Serves until SIGTERM or SIGINT (Ctrl-C), then drains as [`run_until`](Self::run_until) does.
    ///
    /// # Errors
    /// [`Error::Runtime`] when serving fails.
    ///
    /// On SIGHUP it reloads the config file (see [`Gateway::config_file`]; without one, only the
    /// TLS certificates are re-read): an invalid file changes nothing and every problem is
    /// logged; a valid one replaces sources, destinations, routes, limits and secrets, requests
    /// in flight finishing under the old config. New connections get re-read certificates, open
    /// connections keep theirs, and a pair that cannot be read or does not match is logged and
    /// leaves the old one in place.
    pub async fn serve(self) -> Result<(), Error> {
        let (live, tls, has_file) = (self.app.live(), self.app.tls(), self.app.has_config_file());
        let hangups = crate::shutdown::on_hangup(move || {
            if has_file {
                tracing::info!("SIGHUP: reloading the config");
                let live = live.clone();
                tokio::spawn(async move {
                    let _ = live.reload().await;
                });
            } else {
                tracing::info!("SIGHUP: re-reading TLS certificates (no config file to reload)");
                tls.reload();
            }
        })
        .map_err(|e| Error::Runtime(anyhow::Error::new(e).context("listening for SIGHUP")))?;
        let result = self.run_until(crate::shutdown::signal()).await;
        hangups.abort();
        result
    }
}

impl fmt::Debug for BoundGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundGateway")
            .field("ingest_addr", &self.ingest_addr())
            .field("admin_addr", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

/// Why a gateway could not be built or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid. Every problem is listed, each with its file, key and reason.
    #[error("invalid config ({n} problem{s}):\n{0}", n = .0.0.len(), s = if .0.0.len() == 1 { "" } else { "s" })]
    Config(ConfigErrors),
    /// The registered handlers and the config's `type = "rust"` destinations do not match.
    #[error("{0}")]
    Handlers(HandlerMismatch),
    /// Storage could not be opened, a listener could not be bound, or serving failed.
    /// The message includes every cause.
    #[error("{0:#}")]
    Runtime(anyhow::Error),
}

/// Every mismatch between registered handlers and `type = "rust"` destinations, with what was
/// registered and what the config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerMismatch {
    problems: Vec<HandlerProblem>,
    registered: Vec<String>,
    destinations: Vec<String>,
}

impl HandlerMismatch {
    /// Each mismatch, destinations in config order, then unused handlers by name.
    pub fn problems(&self) -> &[HandlerProblem] {
        &self.problems
    }
}

impl fmt::Display for HandlerMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "handlers do not match the config ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        let destinations = self.destinations.join(", ");
        write!(f, "registered handlers: {:?}; type = \"rust\" destinations: [{destinations}]", self.registered)
    }
}

impl std::error::Error for HandlerMismatch {}

/// One mismatch between the registered handlers and the config.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerProblem {
    /// A `type = "rust"` destination names a handler that is not registered.
    Missing {
        /// The destination's name.
        destination: String,
        /// The handler it needs (its `handler` key, by default its name).
        handler: String,
    },
    /// A handler is registered but no `type = "rust"` destination names it.
    Unused {
        /// The registered name.
        handler: String,
    },
    /// Two handlers are registered under one name.
    Duplicate {
        /// The name registered twice.
        handler: String,
    },
}

impl fmt::Display for HandlerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerProblem::Missing { destination, handler } => write!(
                f,
                "destination {destination:?} has type = \"rust\" but no handler named {handler:?} is registered; \
                 register one with .handler({handler:?}, ...)"
            ),
            HandlerProblem::Unused { handler } => write!(
                f,
                "handler {handler:?} is registered but no type = \"rust\" destination uses it; \
                 add a destination with type = \"rust\" and name = {handler:?} (or handler = {handler:?})"
            ),
            HandlerProblem::Duplicate { handler } => {
                write!(f, "handler {handler:?} is registered twice; each name takes one handler")
            }
        }
    }
}

/// The environment and files, with the store's check of a PostgreSQL URL (its TLS files).
fn outside() -> crate::config::load::Process {
    crate::config::load::Process::with_postgres_check(crate::store::postgres::check_url)
}
