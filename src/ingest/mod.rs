//! The public ingest listener: route by path, check method and size, verify, dedupe, store,
//! answer. Read `handler::ingest` first; `error.rs` is the status table.
//! Never answers 200 before the store has committed the event.

mod admission;
mod body;
mod dedupe;
pub mod error;
mod handler;
mod handshake;
mod limit;
pub mod redact;

pub use handler::{IngestState, router};
