//! Arbitrary method, path, headers and body through the ingest router (see
//! `hookgate_fuzz::Ingest`), SQLite in a temp dir: a contract status, never a panic or a 500,
//! never a 200 for an unsigned request.
#![no_main]

use std::sync::OnceLock;

static INGEST: OnceLock<hookgate_fuzz::Ingest> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| INGEST.get_or_init(hookgate_fuzz::Ingest::new).run(data));
