//! The public ingest listener: route by path, check method and size, verify, dedupe, store,
//! answer. Read `handler::ingest` first; `error.rs` is the status table.
//! Never answers 200 before the store has committed the event.

mod admission;
mod body;
mod dedupe;
pub mod error;
mod handler;
mod limit;
pub mod redact;
mod request_id;

pub use handler::{IngestState, healthz, ready, router};
pub use request_id::{HEADER as REQUEST_ID_HEADER, RequestId, request_id_layer};
