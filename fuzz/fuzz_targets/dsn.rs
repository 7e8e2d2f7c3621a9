//! Fuzz target `dsn`: see `remailer::fuzzing::dsn`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remailer::fuzzing::dsn(data));
