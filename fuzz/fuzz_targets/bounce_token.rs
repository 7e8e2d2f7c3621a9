//! Fuzz target `bounce_token`: see `remailer::fuzzing::bounce_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remailer::fuzzing::bounce_token(data));
