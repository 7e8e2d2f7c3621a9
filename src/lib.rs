//! remailer: a pseudonymous remailing service.
//!
//! The crate reads like its pipeline:
//! [`intake`] (SMTP server) → [`policy`] (who may send; with [`sender_auth`] for
//! SPF/DKIM/DMARC) → [`rewrite`] (pure message rewriting, driven by [`remail`]) → [`spool`]
//! (durable queue) → [`delivery`] (SMTP client, retries, notices; signed by [`dkim`]).
//! What comes back to bounce addresses ([`bounce`]) is read by [`dsn`] and handled by
//! [`bounces`]; [`notices`] are the messages the service writes itself.
//! Around it: [`members`] and [`store`] (aliases with sealed addresses, SQLite through one
//! trait), [`keys`] (secrets), [`config`], [`address`] (validated address types),
//! [`dns_records`] (what to publish) and [`service`] (wiring for `serve`).

pub mod address;
pub mod bounce;
pub mod bounces;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod dns_records;
pub mod dsn;
#[doc(hidden)]
pub mod fuzzing;
pub mod intake;
pub mod keys;
pub mod members;
pub mod notices;
pub mod policy;
pub mod remail;
pub mod rewrite;
pub mod sender_auth;
pub mod service;
pub mod spool;
pub mod store;

/// Selects rustls's crypto provider (ring) for the process. Idempotent; called before any TLS
/// configuration is built, since more than one provider is compiled in through dependencies.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
