//! Fuzz target `data_end`: see `remailer::fuzzing::data_end`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remailer::fuzzing::data_end(data));
