//! Arbitrary text through `Config::from_toml` (see `hookgate_fuzz::config`): a config or a list
//! of problems, never a panic, and an accepted config keeps its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate_fuzz::config(data));
