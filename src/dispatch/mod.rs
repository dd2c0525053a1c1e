//! Delivery workers: claim due deliveries with a lease, deliver, record the attempt and the next
//! state. `worker.rs` is the loop; `backoff.rs` the retry maths (pure); `alerts.rs` the events
//! of the built-in source `hookgate` that deaths and circuit changes raise.

pub mod alerts;
pub mod backoff;
pub mod worker;

pub use worker::Dispatcher;
