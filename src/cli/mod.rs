//! Parts of the `remailer` binary too long for main.rs: `check-config` and `alias import`.
//! Like main.rs they report through `anyhow`; the library underneath uses typed errors.

pub mod check_config;
pub mod import;
