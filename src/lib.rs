//! remailer: a pseudonymous remailing service.
//!
//! The crate reads like its pipeline:
//! [`intake`] (SMTP server) → [`policy`] (who may send) → [`rewrite`] (pure message
//! rewriting) → [`spool`] (durable queue) → [`delivery`] (SMTP client, retries, notices).
//! Around it: [`store`] (aliases and maps, SQLite or PostgreSQL), [`keys`] (secrets),
//! [`config`], [`address`] (validated address types) and [`service`] (wiring for `serve`).

pub mod address;
pub mod config;
pub mod dkim;
pub mod dns_records;
pub mod keys;
pub mod rewrite;
pub mod sender_auth;
