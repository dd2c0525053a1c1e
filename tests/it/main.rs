#![allow(clippy::unwrap_used, clippy::expect_used)]
//! hookgate's integration tests: one binary; each file is one feature, driven from outside
//! (a real server on port 0, a real receiver, real processes).

mod support;

mod admin;
mod admin_cli;
mod chaos;
mod cli;
mod delivery;
mod delivery_control;
mod destination_faults;
mod destination_state;
mod durability;
mod faults;
mod floods;
mod fuzz_inputs;
mod hostile;
mod http_options;
mod ingest;
mod library;
mod openapi;
mod ordering;
mod pg_restart;
mod pg_tls;
mod providers;
mod routing;
mod scaleout;
mod secrets;
mod sqlite_faults;
mod store_admin;
mod store_conformance;
mod tidy;
mod time;
mod ui;
mod wal;
