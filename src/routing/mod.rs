//! Routing rules (CONTRACT §7): jq filters and transforms over the event document. Pure: no I/O,
//! no clock. `engine.rs` compiles and runs jq with limits; `document.rs` builds the input.
//! Read `engine.rs` first.

pub mod engine;
pub mod pool;
pub mod document;
