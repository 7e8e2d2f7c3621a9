//! `delivery`: sends queued entries on, as a queue manager (ARCHITECTURE.md §4). One
//! [`scheduler`] holds every queued entry as a few bytes of metadata ordered by due time,
//! never its message; a dispatcher takes the entries whose time has come through a bounded
//! active window (`delivery.active_limit`) and starts one attempt each, which reads the
//! record back from the spool (a first attempt soon after acceptance takes the entry the
//! spool kept in memory since then: [`Spool::take_fresh`]) and drops it when it ends. Concurrency is bounded overall
//! (`delivery.workers`) and per destination (`delivery.per_destination`). Exponential
//! backoff on 4xx replies and connection errors, a maximum age after which the sender gets a
//! notice, and a notice at once on a permanent 5xx. The spool entry is marked done only
//! after the destination accepted the message.
//!
//! Each deferral is persisted with the entry (attempt number, next-attempt time, a safe
//! error text: [`crate::spool::retry`]); a recovered entry waits for its persisted
//! next-attempt time, and those already overdue at start leave in due-time order, spread
//! over time ([`RECOVERY_SPACING_MS`]) so a crash loop cannot hammer a destination. A
//! message with a release time ([`schedule`]) waits for it; with pooling, the messages of
//! one pool tick leave in a shuffled order. Each attempt runs in a `delivery` span with the
//! queue id and the attempt number (never an address or a domain).

mod client;
pub mod mta_sts;
mod queue_stats;
mod route;
pub mod schedule;
pub mod scheduler;
pub mod sts_cache;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::address::RealAddress;
use crate::config::Config;
use crate::dkim::DkimKeys;
use crate::intern::Interner;
use crate::members::Members;
use crate::metrics::{self, DeliveryResult};
use crate::notices::{self, Undelivered};
use crate::rate_limits::Outbound;
use crate::spool::retry::{safe_error, Attempt};
use crate::spool::{rcpt_domain, Entry, Envelope, Kind, Queued, Recovered, Spool};
use crate::store::SendOutcome;
use client::{Dialer, Pool};
use queue_stats::QueueStats;
use route::Router;
use schedule::Schedule;
use scheduler::{Clock, Job, Scheduler, Slot};

/// At most this many attempts of one entry are kept (and rewritten when it moves).
const HISTORY_MAX: usize = 50;

/// At most this many destination keys share a copy.
const DEST_KEYS_MAX: usize = 65_536;

/// Entries already overdue when the service starts leave at most one per this many
/// milliseconds (1000 a second), in due-time order: a restart after a long stop, or a crash
/// loop, does not send the whole backlog to its destinations at once.
pub const RECOVERY_SPACING_MS: i64 = 1;

/// Why an attempt failed, without any remote text that could name an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Temporary(String),
    Permanent(String),
}

impl Failure {
    /// The same failure, its reason prefixed with the host (and port) that was tried.
    fn at(self, target: &str) -> Failure {
        match self {
            Failure::Temporary(why) => Failure::Temporary(format!("{target}: {why}")),
            Failure::Permanent(why) => Failure::Permanent(format!("{target}: {why}")),
        }
    }
}

#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    spool: Arc<Spool>,
    members: Members,
    router: Router,
    dialer: Dialer,
    dkim: Arc<DkimKeys>,
    pool: Pool,
    require_tls: Vec<String>,
    workers: Arc<Semaphore>,
    /// Destination keys, each kept once however many entries share it.
    dest_keys: Interner,
    /// One shared copy of each deferral reason kept with the queued entries.
    errors: Interner,
    stop: CancellationToken,
    tasks: TaskTracker,
    schedule: Schedule,
    scheduler: Arc<Scheduler>,
    /// The global outbound rate (`limits.outbound_per_minute`).
    outbound: Outbound,
    queue: Arc<QueueStats>,
}

impl Delivery {
    pub fn new(
        config: Arc<Config>,
        spool: Arc<Spool>,
        members: Members,
        dkim: Arc<DkimKeys>,
    ) -> std::io::Result<Self> {
        Self::with_clock(config, spool, members, dkim, Clock::System)
    }

    /// [`Delivery::new`] with the scheduler on `clock` (tests use tokio's, paused).
    pub fn with_clock(
        config: Arc<Config>,
        spool: Arc<Spool>,
        members: Members,
        dkim: Arc<DkimKeys>,
        clock: Clock,
    ) -> std::io::Result<Self> {
        crate::install_crypto_provider();
        let d = &config.delivery;
        let resolver =
            crate::sender_auth::build_resolver(&config.dns).map_err(std::io::Error::other)?;
        let tls = tls::Connectors::new(d.tls_ca_file.as_deref()).map_err(std::io::Error::other)?;
        let timeout = Duration::from_secs(d.timeout);
        let sts = mta_sts::MtaSts::new(
            d.mta_sts,
            resolver.clone(),
            d.mta_sts_port,
            tls.verified.clone(),
            timeout,
            Some(sts_cache::PolicyStore::new(
                members.store().clone(),
                members.keys().clone(),
            )),
        );
        let router = Router::new(d.relay.clone(), d.mx_port, resolver, sts);
        let dialer = Dialer {
            helo: config.hostname(),
            timeout,
            tls,
        };
        Ok(Delivery {
            inner: Arc::new(Inner {
                require_tls: d
                    .require_tls
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
                workers: Arc::new(Semaphore::new(d.workers.max(1))),
                dest_keys: Interner::new(DEST_KEYS_MAX),
                errors: Interner::new(crate::spool::retry::ERRORS_MAX),
                pool: Pool::default(),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                schedule: Schedule::new(d),
                scheduler: Scheduler::new(d.active_limit, d.per_destination, clock),
                outbound: Outbound::new(&config.limits),
                queue: Arc::new(QueueStats::default()),
                router,
                dialer,
                dkim,
                config,
                spool,
                members,
            }),
        })
    }

    fn now_ms(&self) -> i64 {
        self.inner.scheduler.clock.now_ms()
    }

    /// Queues these (already durable) entries for delivery; only their metadata is kept.
    pub fn enqueue(&self, entries: Vec<Entry>) {
        let now = self.now_ms();
        for entry in entries {
            let Some(queued) = Queued::of(&entry) else {
                continue; // (the spool stores no entry without a queue id)
            };
            self.push(queued, &rcpt_domain(&entry.envelope.rcpt), now, None);
        }
    }

    /// Puts one entry on the scheduler, due at its release time or persisted next attempt
    /// (else now), or at `due` when given. Entries of one pool tick are shuffled.
    fn push(&self, queued: Queued, rcpt_domain: &str, accepted_ms: i64, due: Option<i64>) {
        let shuffle =
            self.inner.schedule.pooled() && queued.release_ms.is_some() && queued.last.is_none();
        let due = due.unwrap_or_else(|| due_at(&queued).unwrap_or(accepted_ms));
        let job = Job {
            dest: self.dest_key(rcpt_domain),
            waiting: self.inner.queue.track(queued.created),
            accepted_ms,
            queued,
        };
        self.inner.scheduler.push(job, due, shuffle);
    }

    fn dest_key(&self, rcpt_domain: &str) -> Arc<str> {
        let key = self.inner.router.destination(rcpt_domain);
        self.inner.dest_keys.intern(&key)
    }

    /// Picks up what the spool found queued at start (after a crash or restart), each on its
    /// persisted schedule, and starts the dispatcher. Entries already overdue leave in
    /// due-time order, [`RECOVERY_SPACING_MS`] apart.
    pub fn resume(&self) -> usize {
        let mut queued = self.inner.spool.take_queued();
        let n = queued.len();
        let now = self.now_ms();
        queued.sort_by_key(|r| {
            let q = &r.queued;
            (due_at(q).unwrap_or(q.created * 1000), q.created)
        });
        let mut overdue = 0i64;
        for Recovered {
            queued: q,
            rcpt_domain,
        } in queued
        {
            let accepted = q.created * 1000;
            let due = due_at(&q).unwrap_or(accepted);
            let due = if due <= now {
                overdue += 1;
                now + (overdue - 1) * RECOVERY_SPACING_MS
            } else {
                due
            };
            self.push(q, &rcpt_domain, accepted, Some(due));
        }
        if overdue > 0 {
            tracing::info!(
                overdue,
                spread_ms = overdue * RECOVERY_SPACING_MS,
                "recovered entries already due leave in due-time order, spread out"
            );
        }
        let me = self.clone();
        self.inner.tasks.spawn(async move { me.dispatch().await });
        n
    }

    /// Hands each entry whose time has come to its own attempt, through the active window.
    async fn dispatch(&self) {
        let scheduler = self.inner.scheduler.clone();
        while let Some((job, slot)) = scheduler.next(&self.inner.stop).await {
            let me = self.clone();
            let span = tracing::info_span!(
                "delivery",
                queue_id = %job.queued.id,
                attempt = job.queued.last.map_or(0, |(n, _)| n) + 1
            );
            self.inner
                .tasks
                .spawn(async move { me.run(job, slot).await }.instrument(span));
        }
    }

    /// Deletes a queued entry for good (`remailer queue delete`); false for an unknown id.
    pub fn delete(&self, id: &str) -> bool {
        self.inner.scheduler.remove(id);
        self.inner.spool.delete(id)
    }

    /// How many messages wait for delivery, and the age in seconds of the oldest.
    pub fn queue_stats(&self) -> (usize, i64) {
        self.inner.queue.snapshot()
    }

    /// Ends every waiting retry now (`remailer queue flush`).
    pub fn flush(&self) {
        self.inner.scheduler.flush();
    }

    /// Stops taking new work, lets attempts in flight finish (bounded), leaves the rest queued.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(Duration::from_secs(30), self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("deliveries still in flight after 30 s; they stay queued");
        }
    }

    /// One attempt for a job the scheduler handed out: waits for a worker, reads the record,
    /// tries, and ends it, gives up on it, or puts it back for its next attempt. `_slot`
    /// holds its place in the active window until this ends.
    async fn run(&self, mut job: Job, _slot: Slot) {
        let inner = &self.inner;
        let Some(_worker) = self.worker().await else {
            return; // shutting down: it stays queued
        };
        let loaded = match inner.spool.take_fresh(&job.queued) {
            Some(entry) => Ok(Ok(Some(entry))),
            None => {
                let spool = inner.spool.clone();
                let queued = job.queued.clone();
                tokio::task::spawn_blocking(move || spool.load(&queued)).await
            }
        };
        let mut entry = match loaded {
            Ok(Ok(Some(entry))) => entry,
            Ok(Ok(None)) => return, // delivered or deleted meanwhile
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not read the queued message; trying again later");
                let later = self.now_ms() + backoff(&inner.config, 1).as_millis() as i64;
                return self.push_back(job, later);
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the queued message failed");
                return;
            }
        };
        let mut server = String::from("-");
        let Some(result) = self.attempt(&entry, &job.dest, &mut server).await else {
            return;
        };
        let attempts = entry.history.last().map_or(0, |a| a.n) + 1;
        let reason = match result {
            Ok(()) => {
                inner.spool.remove(&entry.id);
                metrics::delivery(DeliveryResult::Delivered);
                let waited = (self.now_ms() - job.accepted_ms).max(0) as u64;
                metrics::delivered_after(Duration::from_millis(waited));
                tracing::info!(queue_id = %entry.id, attempts, "delivered");
                return self.record_outcome(&entry, SendOutcome::Delivered).await;
            }
            Err(Failure::Permanent(why)) => {
                metrics::delivery(DeliveryResult::Failed);
                tracing::info!(queue_id = %entry.id, attempts, server = %server, reason = %why, "delivery failed permanently");
                self.record_outcome(&entry, SendOutcome::Failed).await;
                return self.give_up(&entry, Undelivered::Refused).await;
            }
            Err(Failure::Temporary(why)) => why,
        };
        let age = self.now_ms() / 1000 - entry.envelope.created;
        let max_age = inner.config.delivery.max_age as i64;
        if age >= max_age {
            metrics::delivery(DeliveryResult::Failed);
            let days = inner.config.delivery.max_age.div_ceil(86_400);
            tracing::info!(queue_id = %entry.id, attempts, server = %server, reason = %reason, "giving up: too old");
            self.record_outcome(&entry, SendOutcome::Expired).await;
            return self.give_up(&entry, Undelivered::Expired { days }).await;
        }
        let delay = backoff(&inner.config, attempts)
            .min(Duration::from_secs((max_age - age).max(1) as u64));
        metrics::delivery(DeliveryResult::Deferred);
        tracing::info!(queue_id = %entry.id, attempts, server = %server, reason = %reason, retry_in_s = delay.as_secs(), "deferred");
        let next = self
            .note_deferral(&mut entry, &mut job.queued, attempts, &reason, delay)
            .await;
        drop(entry);
        self.push_back(job, next);
    }

    /// Puts a job back on the scheduler for `due_ms`, unless it left the queue meanwhile.
    fn push_back(&self, job: Job, due_ms: i64) {
        if self.inner.spool.is_queued(job.queued.id.as_str()) {
            self.inner.scheduler.push(job, due_ms, false);
        }
    }

    /// Waits for one of the `delivery.workers` places (None when shutting down meanwhile).
    async fn worker(&self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            p = self.inner.workers.clone().acquire_owned() => Some(p.expect("never closed")),
            _ = self.inner.stop.cancelled() => None,
        }
    }

    /// Adds the deferral to the entry's history and persists it (a failure is logged: a
    /// restart would then retry it sooner than planned); keeps the scheduler's copy of the
    /// retry state in step. Returns the next attempt's time.
    async fn note_deferral(
        &self,
        entry: &mut Entry,
        queued: &mut Queued,
        n: u32,
        reason: &str,
        delay: Duration,
    ) -> i64 {
        let now = self.now_ms();
        let attempt = Attempt {
            n,
            at_ms: now,
            next_ms: now + delay.as_millis() as i64,
            error: self.inner.errors.intern(&safe_error(reason)),
        };
        let next = attempt.next_ms;
        entry.history.push(attempt.clone());
        if entry.history.len() > HISTORY_MAX {
            entry.history.remove(0);
        }
        queued.last = Some((n, next));
        match self.inner.spool.note_attempt(entry).await {
            // Moved: the new copy carries the history.
            Ok(true) => queued.recent.clear(),
            Ok(false) => queued.recent.push(attempt, HISTORY_MAX),
            Err(e) => {
                queued.recent.push(attempt, HISTORY_MAX);
                tracing::error!(queue_id = %entry.id, error = %e, "could not persist the retry state; a restart retries this message sooner");
            }
        }
        next
    }

    /// With `privacy.send_log` on, sets how a member's message ended in the send log.
    async fn record_outcome(&self, entry: &Entry, outcome: SendOutcome) {
        if !self.inner.config.privacy.send_log || entry.envelope.kind != Kind::Remail {
            return;
        }
        let store = self.inner.members.store();
        if let Err(e) = store.set_send_outcome(&entry.id, outcome).await {
            tracing::warn!(queue_id = %entry.id, error = %e, "could not update the send log");
        }
    }

    /// Waits for the outbound rate (None when shutting down meanwhile), then makes one
    /// attempt; an attempt that has started is not interrupted (its own timeouts bound it).
    /// `server` is set to the last server tried, as a log line may show it (see
    /// [`route::Target::label`]).
    async fn attempt(
        &self,
        entry: &Entry,
        dest: &str,
        server: &mut String,
    ) -> Option<Result<(), Failure>> {
        let rcpt_domain = entry
            .envelope
            .rcpt
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default();
        tokio::select! {
            _ = self.inner.outbound.ready() => {}
            _ = self.inner.stop.cancelled() => return None,
        }
        Some(self.try_targets(entry, rcpt_domain, dest, server).await)
    }

    async fn try_targets(
        &self,
        entry: &Entry,
        rcpt_domain: &str,
        dest: &str,
        server: &mut String,
    ) -> Result<(), Failure> {
        let inner = &self.inner;
        let env = &entry.envelope;
        let require_tls = inner
            .require_tls
            .iter()
            .any(|d| d.eq_ignore_ascii_case(rcpt_domain));
        let sts = inner.router.mta_sts(rcpt_domain).await;
        if let Some(mut open) = inner.pool.take(dest, require_tls || sts.enforced()) {
            *server = "(a reused connection)".into();
            match client::send(&mut open.conn, &env.mail_from, &env.rcpt, &entry.message).await {
                Ok(()) => {
                    inner
                        .pool
                        .put(dest, open, inner.config.delivery.per_destination);
                    return Ok(());
                }
                Err(Failure::Permanent(why)) => return Err(Failure::Permanent(why)),
                Err(Failure::Temporary(_)) => {} // a stale connection: try a fresh one
            }
        }
        let mut last = Failure::Temporary("no mail server to try".into());
        let relay = inner.router.is_relay();
        for target in inner.router.targets(rcpt_domain).await? {
            *server = target.label(relay);
            if let Err(e) = sts.check_mx(&target) {
                last = e.at(&target.for_log(relay));
                continue;
            }
            let mut open = match inner.dialer.open_for(&target, require_tls, &sts).await {
                Ok(open) => open,
                Err(e) => {
                    last = e.at(&target.for_log(relay));
                    continue;
                }
            };
            client::send(&mut open.conn, &env.mail_from, &env.rcpt, &entry.message)
                .await
                .map_err(|e| e.at(&target.for_log(relay)))?;
            inner
                .pool
                .put(dest, open, inner.config.delivery.per_destination);
            return Ok(());
        }
        Err(last)
    }

    /// Ends a delivery for good: tells the sender (for a member's message) and drops it.
    async fn give_up(&self, entry: &Entry, why: Undelivered) {
        let env = &entry.envelope;
        if env.kind == Kind::Remail {
            if let Err(e) = self.notify_sender(env, why).await {
                tracing::error!(queue_id = %entry.id, error = %e, "could not queue the failure notice; keeping the message");
                return;
            }
        }
        self.inner.spool.remove(&entry.id);
    }

    async fn notify_sender(&self, env: &Envelope, why: Undelivered) -> Result<(), String> {
        let Some(sender_id) = env.sender_id else {
            return Ok(());
        };
        let Some(sender) = self
            .inner
            .members
            .by_id(sender_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(()); // the sender's alias is gone: nobody to tell
        };
        let alias = env.recipient_alias.as_deref().unwrap_or("your recipient");
        let message =
            notices::undelivered(self.inner.members.domain(), &sender.member.real, alias, why);
        self.queue_notice(&sender.member.real, message).await
    }

    /// Signs and queues a message from the service to a member (null envelope sender).
    /// Notices are not delayed: their timing follows the service's own events (a refusal,
    /// a registration), and a confirmation must arrive while its link is valid.
    /// A notice to a member with an OpenPGP key is encrypted to it (see
    /// [`Delivery::queue_notice_with_key`]).
    pub async fn queue_notice(&self, to: &RealAddress, message: Vec<u8>) -> Result<(), String> {
        let member = (self.inner.members.by_real(to).await).map_err(|e| e.to_string())?;
        let key = member.as_ref().and_then(|m| m.pgp.clone());
        let alias = member.map(|m| m.member.alias.address());
        self.queue_notice_with_key(to, message, key.as_deref(), alias.as_deref())
            .await
    }

    /// Queues a notice to `to`, encrypted to `key` when one is given (PGP/MIME, before
    /// signing). A key that has expired gets, per `privacy.pgp_expired`, a clear notice
    /// naming `alias` instead (`"plain"`: beside the notice in clear); never silent clear text.
    pub async fn queue_notice_with_key(
        &self,
        to: &RealAddress,
        message: Vec<u8>,
        key: Option<&crate::encrypt::PublicKey>,
        alias: Option<&str>,
    ) -> Result<(), String> {
        let Some(key) = key else {
            return self.queue_clear_notice(to, message).await;
        };
        if key.usable_at(crate::store::now_unix().max(0) as u64) {
            let encrypted =
                crate::encrypt::encrypt_message(&message, key).map_err(|e| e.to_string())?;
            return self.queue_clear_notice(to, encrypted).await;
        }
        let plain = self.inner.config.privacy.pgp_expired == crate::config::PgpExpired::Plain;
        if plain {
            self.queue_clear_notice(to, message).await?;
        }
        let alias = alias.unwrap_or("(your new alias)");
        let domain = self.inner.members.domain();
        let notice = notices::key_expired(domain, to, alias, None, key.fingerprint(), plain);
        tracing::info!(
            in_clear = plain,
            "a notice's OpenPGP key has expired; key notice queued"
        );
        self.queue_clear_notice(to, notice).await
    }

    async fn queue_clear_notice(&self, to: &RealAddress, message: Vec<u8>) -> Result<(), String> {
        self.queue_service_mail(String::new(), to, message, None)
            .await?;
        metrics::notice_sent();
        Ok(())
    }

    /// Signs and queues a one-way letter, with envelope sender `mail_from`; returns its
    /// queue id. It is delayed and pooled like a remailed message. Its failure notifies
    /// nobody.
    pub async fn queue_signed(
        &self,
        mail_from: String,
        to: &RealAddress,
        message: Vec<u8>,
    ) -> Result<String, String> {
        let release = self.inner.schedule.release_at(self.now_ms());
        self.queue_service_mail(mail_from, to, message, release)
            .await
    }

    async fn queue_service_mail(
        &self,
        mail_from: String,
        to: &RealAddress,
        message: Vec<u8>,
        release_ms: Option<i64>,
    ) -> Result<String, String> {
        let signed = crate::wire::seal(&self.inner.dkim, &message).map_err(|e| e.to_string())?;
        let entry = Entry {
            id: Spool::new_id(),
            envelope: Envelope {
                kind: Kind::Notice,
                mail_from,
                rcpt: to.expose(),
                recipient_alias: None,
                sender_id: None,
                created: self.now_ms() / 1000,
                release_ms,
            },
            message: Arc::new(signed),
            history: Vec::new(),
        };
        let spool = self.inner.spool.clone();
        let entries = tokio::task::spawn_blocking(move || {
            spool
                .store(std::slice::from_ref(&entry))
                .map(|_| vec![entry])
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let id = entries[0].id.clone();
        self.enqueue(entries);
        Ok(id)
    }
}

/// When an entry may next be tried: the later of its release time and its persisted next
/// attempt (None: at once).
fn due_at(q: &Queued) -> Option<i64> {
    match (q.release_ms, q.last.map(|(_, next)| next)) {
        (Some(r), Some(n)) => Some(r.max(n)),
        (r, n) => r.or(n),
    }
}

/// `retry_base * 2^(attempts-1)`, at most `retry_max`.
fn backoff(config: &Config, attempts: u32) -> Duration {
    let base = config.delivery.retry_base.max(1);
    let secs = base.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    Duration::from_secs(secs.min(config.delivery.retry_max.max(base)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut c = Config::local_defaults();
        c.delivery.retry_base = 60;
        c.delivery.retry_max = 3600;
        let secs: Vec<u64> = (1..=8).map(|a| backoff(&c, a).as_secs()).collect();
        assert_eq!(secs, vec![60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
