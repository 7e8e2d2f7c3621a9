//! Fuzz target `rewrite`: see `remailer::fuzzing::rewrite`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remailer::fuzzing::rewrite(data));
