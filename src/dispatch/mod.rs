//! Delivery workers: claim due deliveries with a lease, deliver, record the attempt and the next
//! state. `worker.rs` is the loop; `backoff.rs` the retry maths (pure); `transform.rs` what a claim
//! carries; `alerts.rs` the events of the built-in source `hookgate` that deaths and circuit changes
//! raise. `pull.rs` hands a pull destination's deliveries to consumers (claim, ack, nack) through
//! the same claims, leases and attempt records, instead of delivering them itself.

pub mod alerts;
pub mod backoff;
pub mod pull;
mod pull_leases;
mod transform;
pub mod worker;

pub use pull::Puller;
pub use worker::Dispatcher;
