//! Arbitrary path, header values and body (see `hookgate::verify::fuzzing::verify_headers`),
//! checked by every scheme: nothing may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::verify::fuzzing::verify_headers(data));
