//! hookgate: a self-hosted gateway for incoming webhooks.
//!
//! A request flows `ingest` (route, verify with `verify`, dedupe) → `store` (durable commit,
//! then 200) → `dispatch` (claim with a lease, retry with backoff) → `destination` (http, exec,
//! or a Rust handler). `config` turns the TOML file into validated types; `app` wires it all.
//! See ARCHITECTURE.md for the invariants.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod destination;
pub mod dispatch;
pub mod ingest;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod verify;

pub use app::{App, Role};
pub use config::Config;
pub use destination::function::{Event, Handler, HandlerError};
