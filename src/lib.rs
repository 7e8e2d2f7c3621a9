//! remailer: a pseudonymous remailing service.
//!
//! The crate reads like its pipeline:
//! [`intake`] (SMTP server) → [`policy`] (who may send; with [`sender_auth`] for
//! SPF/DKIM/DMARC) → [`rewrite`] (pure message rewriting, driven by [`remail`]) → [`spool`]
//! (durable queue) → [`delivery`] (SMTP client, retries, notices; signed by [`dkim`]); every
//! byte stream sent has the [`wire`] form (CRLF only, dot-stuffed).
//! What comes back to bounce addresses ([`bounce`]) is read by [`dsn`] and handled by
//! [`bounces`]; [`notices`] are the messages the service writes itself; [`oneway`] is the
//! one-way anonymous form and recipient opt-out.
//! Between the session and what follows it: [`envelope`] (the words of a transaction and the
//! `Pipeline` trait) and [`reply`] (every SMTP reply, in one place). Modules import each other
//! one way only (ARCHITECTURE.md §4).
//! Around it: [`members`] and [`store`] (aliases with sealed addresses, SQLite through one
//! trait), [`keys`] (secrets), [`config`], [`address`] (validated address types),
//! [`dns_records`] (what to publish), [`rate_limits`] and [`metrics`] (what the admin server
//! exports) and [`service`] (wiring for `serve`). On the web side:
//! [`web`] (the forms on `web.listen`) and [`signup`] (registration and removal confirmed by mail).

pub mod address;
pub mod bounce;
pub mod bounces;
pub mod config;
pub mod data_dir;
pub mod delivery;
pub mod dkim;
pub mod dns_records;
pub mod dsn;
pub mod duration;
pub mod encrypt;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod intake;
pub mod intern;
pub mod keys;
pub mod logtag;
pub mod members;
pub mod metrics;
pub mod notices;
pub mod oneway;
pub mod policy;
pub mod queue_view;
pub mod rate_limits;
pub mod remail;
pub mod reply;
pub mod rewrite;
pub mod sender_auth;
pub mod service;
pub mod signup;
pub mod spool;
pub mod store;
pub mod web;
pub mod wire;

/// The one crypto provider of the process: aws-lc-rs, as DKIM signing uses (ring is not
/// built in). Every rustls configuration is built with it explicitly.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs [`crypto_provider`] as the process default, for the configurations that
/// dependencies build themselves (mail-send's opportunistic connector). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
