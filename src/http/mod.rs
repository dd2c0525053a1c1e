//! HTTP plumbing that both listeners (ingest and admin) stand on: serving a router on a socket
//! (`server.rs`, with `framing.rs` for request smuggling), request ids (`request_id.rs`) and the
//! health checks (`health.rs`). It knows no source, destination or route; `ingest` and `admin`
//! build their routers on top of it and never import each other.

mod framing;
pub mod health;
pub mod request_id;
mod server;

pub use request_id::{HEADER as REQUEST_ID_HEADER, RequestId, request_id_layer};
pub use server::{Limits, serve};
