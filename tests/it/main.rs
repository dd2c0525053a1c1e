#![allow(clippy::unwrap_used, clippy::expect_used)]
//! hookgate's integration tests: one binary; each file is one feature, driven from outside
//! (a real server on port 0, a real receiver, real processes).

mod support;

mod admin;
mod admin_cli;
mod backup;
mod brokers;
mod chaos;
mod cli;
mod completions;
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
mod logs;
mod openapi;
mod ordering;
mod packaging;
mod pg_restart;
mod pg_tls;
mod providers;
mod reload;
mod routing;
mod scaleout;
mod secrets;
mod sender;
mod sqlite_faults;
mod store_admin;
mod store_conformance;
mod tidy;
mod time;
mod tls;
mod ui;
mod vectors;
mod wal;
