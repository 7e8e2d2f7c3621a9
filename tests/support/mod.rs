//! Shared helpers for integration tests. Use with `mod support;` in a test file.
#![allow(dead_code)]

pub mod dkimpy;
pub mod dns_server;
pub mod policy_server;
pub mod postgres;
pub mod signing;
