//! `metrics`: every metric the service exports, named in one place, and the recorder
//! (the `metrics` crate with `metrics-exporter-prometheus`, rendered by the admin server's
//! `GET /metrics` on `admin.listen`, see [`crate::web::admin`]).
//!
//! Counters:
//! - `remailer_smtp_sessions_total`: SMTP connections served (a session was started).
//! - `remailer_messages_accepted_total`: messages answered `250` after DATA.
//! - `remailer_messages_refused_total{reason}`: refusals, with `reason` one of
//!   `unknown_alias`, `unregistered_sender`, `auth_spf`, `auth_dkim`, `auth_dmarc`
//!   (sender authentication failed, by mechanism), `relay_attempt`, `size`, `rate_limit`
//!   (every rate limit of [`crate::rate_limits`] and the web's 429 pages).
//! - `remailer_deliveries_total{result}`: delivery attempts by `result`: `delivered`,
//!   `deferred` (a temporary failure, retried), `failed` (given up: permanent or too old).
//! - `remailer_notices_sent_total`: notices the service queued for members.
//! - `remailer_bounces_received_total{class}`: reports at bounce addresses by `class`:
//!   `hard`, `soft`, `delayed`, `auto_reply`, `unknown`.
//! - `remailer_web_requests_total{route,status}`: web requests by route pattern (such as
//!   `/confirm/{token}`, never the path itself; `unmatched` for anything else) and status.
//!
//! Gauges (set when scraped): `remailer_queue_length` (messages waiting for delivery) and
//! `remailer_queue_oldest_age_seconds` (age of the oldest of them; 0 when empty).
//!
//! Histograms: `remailer_delivery_latency_seconds` (from acceptance to delivered),
//! `remailer_spool_batch_size` (messages per group commit) and
//! `remailer_spool_sync_seconds` (write and `fdatasync` of one group commit).
//!
//! No label ever holds an address, an alias, a token or a client IP: every label value is
//! one of the fixed words above (or an HTTP status code). Counters are per process (node).

use std::sync::OnceLock;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const SMTP_SESSIONS: &str = "remailer_smtp_sessions_total";
pub const ACCEPTED: &str = "remailer_messages_accepted_total";
pub const REFUSED: &str = "remailer_messages_refused_total";
pub const DELIVERIES: &str = "remailer_deliveries_total";
pub const NOTICES: &str = "remailer_notices_sent_total";
pub const BOUNCES: &str = "remailer_bounces_received_total";
pub const WEB_REQUESTS: &str = "remailer_web_requests_total";
pub const QUEUE_LENGTH: &str = "remailer_queue_length";
pub const QUEUE_OLDEST: &str = "remailer_queue_oldest_age_seconds";
pub const DELIVERY_LATENCY: &str = "remailer_delivery_latency_seconds";
pub const SPOOL_BATCH: &str = "remailer_spool_batch_size";
pub const SPOOL_SYNC: &str = "remailer_spool_sync_seconds";

/// Why a message (or recipient) was refused: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Refusal {
    UnknownAlias,
    UnregisteredSender,
    AuthSpf,
    AuthDkim,
    AuthDmarc,
    RelayAttempt,
    Size,
    RateLimit,
}

impl Refusal {
    const ALL: [Refusal; 8] = [
        Refusal::UnknownAlias,
        Refusal::UnregisteredSender,
        Refusal::AuthSpf,
        Refusal::AuthDkim,
        Refusal::AuthDmarc,
        Refusal::RelayAttempt,
        Refusal::Size,
        Refusal::RateLimit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownAlias => "unknown_alias",
            Refusal::UnregisteredSender => "unregistered_sender",
            Refusal::AuthSpf => "auth_spf",
            Refusal::AuthDkim => "auth_dkim",
            Refusal::AuthDmarc => "auth_dmarc",
            Refusal::RelayAttempt => "relay_attempt",
            Refusal::Size => "size",
            Refusal::RateLimit => "rate_limit",
        }
    }
}

/// The outcome of one delivery attempt: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DeliveryResult {
    Delivered,
    Deferred,
    Failed,
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handles of the metrics counted per message, registered once (so an increment on the
/// hot path is an atomic add: no key to build, no label to allocate, no lookup).
struct Handles {
    sessions: Counter,
    accepted: Counter,
    refused: [Counter; 8],
    deliveries: [Counter; 3],
    notices: Counter,
    latency: Histogram,
    spool_batch: Histogram,
    spool_sync: Histogram,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// The handles, registered with whatever recorder is installed at first use ([`install`]
/// comes first in `serve`; elsewhere they count nowhere).
fn handles() -> &'static Handles {
    HANDLES.get_or_init(|| Handles {
        sessions: counter!(SMTP_SESSIONS),
        accepted: counter!(ACCEPTED),
        refused: Refusal::ALL.map(|r| counter!(REFUSED, "reason" => r.label())),
        deliveries: ["delivered", "deferred", "failed"]
            .map(|result| counter!(DELIVERIES, "result" => result)),
        notices: counter!(NOTICES),
        latency: histogram!(DELIVERY_LATENCY),
        spool_batch: histogram!(SPOOL_BATCH),
        spool_sync: histogram!(SPOOL_SYNC),
    })
}

/// Installs the process-wide recorder (once; later calls return the same handle). When
/// another recorder is already installed, the handle renders an empty set instead of failing.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        describe();
        handles();
        handle
    })
}

fn builder() -> PrometheusBuilder {
    let seconds = [
        0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86_400.0,
    ];
    let sync = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ];
    let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), &seconds)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(SPOOL_SYNC.into()), &sync))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(SPOOL_BATCH.into()), &batch))
        .expect("bucket lists are not empty")
}

fn describe() {
    describe_counter!(SMTP_SESSIONS, "SMTP sessions started");
    describe_counter!(ACCEPTED, "Messages accepted (250 after DATA)");
    describe_counter!(REFUSED, "Messages or recipients refused, by reason");
    describe_counter!(DELIVERIES, "Delivery attempts, by result");
    describe_counter!(NOTICES, "Notices queued for members");
    describe_counter!(BOUNCES, "Reports received at bounce addresses, by class");
    describe_counter!(WEB_REQUESTS, "Web requests, by route pattern and status");
    describe_gauge!(QUEUE_LENGTH, "Messages waiting for delivery");
    describe_gauge!(QUEUE_OLDEST, "Age in seconds of the oldest queued message");
    describe_histogram!(DELIVERY_LATENCY, "Seconds from acceptance to delivery");
    describe_histogram!(SPOOL_BATCH, "Messages per spool group commit");
    describe_histogram!(SPOOL_SYNC, "Seconds to write and sync one group commit");
}

pub fn session() {
    handles().sessions.increment(1);
}

pub fn accepted() {
    handles().accepted.increment(1);
}

pub fn refused(why: Refusal) {
    handles().refused[why as usize].increment(1);
}

pub fn delivery(result: DeliveryResult) {
    handles().deliveries[result as usize].increment(1);
}

pub fn delivered_after(latency: std::time::Duration) {
    handles().latency.record(latency.as_secs_f64());
}

pub fn notice_sent() {
    handles().notices.increment(1);
}

pub fn bounce(class: &'static str) {
    counter!(BOUNCES, "class" => class).increment(1);
}

pub fn web_request(route: String, status: u16) {
    counter!(WEB_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

pub fn queue(length: usize, oldest_age_seconds: f64) {
    gauge!(QUEUE_LENGTH).set(length as f64);
    gauge!(QUEUE_OLDEST).set(oldest_age_seconds);
}

pub fn spool_commit(batch: usize, sync: std::time::Duration) {
    handles().spool_batch.record(batch as f64);
    handles().spool_sync.record(sync.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_is_harmless_and_renders_prometheus_text() {
        let a = install() as *const _;
        let b = install() as *const _;
        assert_eq!(a, b);
        // (Not a per-message counter: those may have been registered by another test
        // before the recorder was installed, and then count nowhere.)
        web_request("/healthz".into(), 200);
        let text = install().render();
        assert!(
            text.contains("remailer_web_requests_total{route=\"/healthz\",status=\"200\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn refusal_labels_line_up_with_their_handles() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        assert_eq!(DeliveryResult::Delivered as usize, 0);
        assert_eq!(DeliveryResult::Deferred as usize, 1);
        assert_eq!(DeliveryResult::Failed as usize, 2);
    }
}
