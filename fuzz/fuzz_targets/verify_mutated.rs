//! A correctly signed request for one scheme, then fuzzer-chosen edits to its headers, path,
//! body and clock (see `hookgate::verify::fuzzing::verify_mutated`): nothing may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::verify::fuzzing::verify_mutated(data));
