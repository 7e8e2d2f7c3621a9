//! Fuzz target `smtp_session`: see `remailer::fuzzing::smtp_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remailer::fuzzing::smtp_session(data));
