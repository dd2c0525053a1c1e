//! hookgate: a self-hosted gateway for incoming webhooks. It verifies each request's signature,
//! drops retried duplicates, stores the event durably (SQLite, or PostgreSQL for scale-out)
//! before answering 200, then delivers it to destinations with retries, exponential backoff and a
//! dead-letter queue that an operator can inspect and replay through the admin API.
//!
//! # Two ways to run it
//!
//! **The binary**, with destinations that are HTTP services or commands, all in a TOML file:
//!
//! ```sh
//! CONTACT_WEBHOOK_SECRET=... hookgate serve --config hookgate.toml
//! ```
//!
//! **This library**, to handle events in Rust inside your own binary. The config file is the same;
//! a destination with `type = "rust"` names a handler (`handler = "..."`, by default the
//! destination's name) that you register on a [`Gateway`]. Everything else stays as the binary
//! does it: signature checks, dedupe, the durable queue, retries, dead letters, the admin API,
//! graceful shutdown.
//!
//! ```toml
//! [[sources]]
//! name = "contact_created"
//! path = "/events/contact_created"
//! verify = { scheme = "hmac-sha256", header = "X-Signature", secret_env = "CONTACT_WEBHOOK_SECRET" }
//! deliver_to = ["contact_created"]
//!
//! [[destinations]]
//! name = "contact_created"
//! type = "rust"          # handled by the function registered as "contact_created"
//! max_attempts = 5
//! ```
//!
//! ```no_run
//! use hookgate::{Event, Gateway};
//!
//! #[derive(serde::Deserialize)]
//! struct Contact {
//!     email: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     hookgate::init_logging();
//!     Gateway::from_config_file("hookgate.toml")?
//!         .json_handler("contact_created", |event: Event, contact: Contact| async move {
//!             println!("{}: new contact {}", event.id, contact.email);
//!             Ok(()) // an Err is retried with backoff, then dead-lettered
//!         })
//!         .serve() // until SIGTERM or SIGINT, then drains
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! [`Gateway::build`] binds the listeners without serving yet, so the addresses are known (port 0
//! works), and [`BoundGateway::run_until`] serves until a future of your choice resolves. This runs
//! a gateway on a temporary directory, posts a signed event and waits for its handler:
//!
//! ```
//! use hookgate::{Event, Gateway};
//! use tokio::sync::mpsc;
//! # use hmac::Mac;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("contact.secret"), "s3cret")?;
//! let config = r#"
//!     server.listen = "127.0.0.1:0"
//!     admin.listen = "127.0.0.1:0"
//!     storage.url = "sqlite://hookgate.db"       # relative paths resolve against the base dir
//!
//!     [[sources]]
//!     name = "contact_created"
//!     path = "/events/contact_created"
//!     verify = { scheme = "hmac-sha256", header = "X-Signature", secret_file = "contact.secret" }
//!     deliver_to = ["contact_created"]
//!
//!     [[destinations]]
//!     name = "contact_created"
//!     type = "rust"
//! "#;
//! let (handled, mut events) = mpsc::unbounded_channel();
//! let gateway = Gateway::from_toml(config, dir.path())?
//!     .handler("contact_created", move |event: Event| {
//!         let handled = handled.clone();
//!         async move {
//!             handled.send(event.id)?; // errors convert with `?` and are retried
//!             Ok(())
//!         }
//!     })
//!     .build()
//!     .await?;
//! let url = format!("http://{}/events/contact_created", gateway.ingest_addr().ok_or("no ingest")?);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(gateway.run_until(async move { stopped.await.unwrap_or(()) }));
//!
//! let body = r#"{"id":"c_1","email":"ada@example.com"}"#;
//! # let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret")?;
//! # mac.update(body.as_bytes());
//! # let signature = hex::encode(mac.finalize().into_bytes());
//! let resp = reqwest::Client::new().post(url).header("X-Signature", signature).body(body).send().await?;
//! assert_eq!(resp.status(), 200); // stored durably before this answer
//! let event_id = events.recv().await.ok_or("handler never ran")?;
//! assert!(resp.text().await?.contains(&event_id));
//!
//! let _ = stop.send(());
//! running.await??;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/seed_handlers.rs` and `examples/typed_payload.rs` in the repository are complete
//! programs (`cargo run --example seed_handlers`).
//!
//! # Handlers
//!
//! A handler gets an [`Event`] (id, source, attempt number, headers, raw body,
//! [`Event::json`]) once per delivery attempt and returns `Result<(), HandlerError>`:
//! - `Ok(())`: delivered.
//! - `Err(_)`: retried with exponential backoff and jitter until the destination's `max_attempts`,
//!   then the delivery is `dead`. Any `std::error::Error` converts with `?`.
//! - [`HandlerError::permanent`]: retrying cannot help; the delivery is `dead` at once.
//! - A panic, or running past the destination's `timeout`, is a failed attempt; the worker goes on.
//!
//! Delivery is at least once: a handler may see an event again (a crash between the handler's
//! success and its record, a replay), so make handlers idempotent on [`Event::id`].
//!
//! # Inside
//!
//! A request flows `ingest` (route, verify, dedupe) → `store` (durable commit, then 200) →
//! `dispatch` (claim with a lease, retry with backoff) → `destination` (http, exec, or a Rust
//! handler). `config` turns the TOML file into validated types; `app` wires it all. Operators see
//! and steer it through `admin` (API, UI), `metrics` and `retention`. These modules
//! are public for hookgate's own binary and tests, not for embedding; they are hidden from these
//! docs and may change. See ARCHITECTURE.md for the invariants.

#![warn(missing_docs)]

#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod app;
pub mod clock;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod destination;
#[doc(hidden)]
pub mod dispatch;
mod gateway;
#[doc(hidden)]
pub mod http;
#[doc(hidden)]
pub mod ingest;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod reload;
#[doc(hidden)]
pub mod retention;
#[doc(hidden)]
pub mod routing;
pub mod secret;
#[doc(hidden)]
pub mod shutdown;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod telemetry;
#[doc(hidden)]
pub mod tls;
#[doc(hidden)]
pub mod verify;

pub use app::Role;
pub use config::{Config, ConfigErrors, ConfigProblem};
pub use destination::function::{Event, HandlerError};
pub use gateway::{BoundGateway, Error, Gateway, HandlerMismatch, HandlerProblem};

#[doc(hidden)]
pub use app::App;
#[doc(hidden)]
pub use destination::function::Handler;

/// Logs on stderr: text when stderr is a terminal, else JSON lines (`HOOKGATE_LOG_FORMAT=json|text`
/// chooses), filtered by `HOOKGATE_LOG` or `RUST_LOG`, default `info`. Never a secret or a payload.
/// Does nothing if the program already installed a `tracing` subscriber.
pub fn init_logging() {
    telemetry::init();
}

/// Logs as `[log]` in `config` says: its `format` (unset: text on a terminal, else JSON) and
/// `level`, which `HOOKGATE_LOG` overrides. Does nothing if a subscriber is already installed.
pub fn init_logging_for(config: &Config) {
    telemetry::init_with(config.log.format, &config.log.level);
}

/// Logs as [`init_logging_for`] does and, when `[telemetry] otlp_endpoint` is set, exports traces
/// through the same subscriber. Keep the returned pipeline while serving and call
/// [`telemetry::Pipeline::shutdown`] after, which sends the spans still queued. Without an
/// endpoint: logging only, no exporter (`None`).
pub fn init_telemetry_for(config: &Config) -> Result<Option<telemetry::Pipeline>, String> {
    let pipeline = match &config.telemetry.traces_url {
        Some(url) => Some(telemetry::Pipeline::new(url, &config.telemetry.service_name)?),
        None => None,
    };
    telemetry::init_with_traces(config.log.format, &config.log.level, pipeline.as_ref());
    Ok(pipeline)
}

/// The README's Rust examples compile (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
