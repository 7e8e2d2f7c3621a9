//! Fuzz target `spool_recovery`: see `remailer::fuzzing::spool_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remailer::fuzzing::spool_recovery(data));
