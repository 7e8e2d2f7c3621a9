//! `delivery`: sends queued entries on. Each entry is one task that tries, waits and tries
//! again: exponential backoff on 4xx replies and connection errors, a maximum age after
//! which the sender gets a notice, and a notice at once on a permanent 5xx. Concurrency is
//! bounded overall (`delivery.workers`) and per destination (`delivery.per_destination`).
//! The spool file is removed only after the destination accepted the message.
//!
//! Each deferral is persisted with the entry (attempt number, next-attempt time, a safe
//! error text: [`crate::spool::retry`]); a recovered entry waits for its persisted
//! next-attempt time. A message with a release time ([`schedule`]) waits for it; with
//! pooling, held messages leave in a shuffled batch at each pool tick.

mod client;
pub mod mta_sts;
mod queue_stats;
mod route;
pub mod schedule;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::RealAddress;
use crate::config::Config;
use crate::dkim::DkimKeys;
use crate::members::Members;
use crate::metrics::{self, DeliveryResult};
use crate::notices::{self, Undelivered};
use crate::rate_limits::Outbound;
use crate::spool::retry::{safe_error, Attempt};
use crate::spool::{Entry, Envelope, Kind, Spool};
use crate::store::{now_unix, SendOutcome};
use client::{Dialer, Pool};
use queue_stats::QueueStats;
use route::Router;
use schedule::{now_ms, Schedule};

/// At most this many attempts of one entry are kept (and rewritten when it moves).
const HISTORY_MAX: usize = 50;

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

/// An entry on its way to a delivery task: when it was accepted (for the latency histogram)
/// and its place in the queue gauges.
struct Held {
    entry: Entry,
    accepted: Instant,
    waiting: queue_stats::Waiting,
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
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    flush: Notify,
    stop: CancellationToken,
    tasks: TaskTracker,
    schedule: Schedule,
    /// Pooled entries waiting for their release tick.
    held: Mutex<Vec<Held>>,
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
                workers: Arc::new(Semaphore::new(d.workers)),
                destinations: Mutex::new(HashMap::new()),
                pool: Pool::default(),
                flush: Notify::new(),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                schedule: Schedule::new(d),
                held: Mutex::new(Vec::new()),
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

    /// Starts delivering these (already durable) entries; with pooling, an entry that has
    /// a release time and no attempt yet waits for the pool tick of its release time.
    pub fn enqueue(&self, entries: Vec<Entry>) {
        self.start(entries, false);
    }

    /// One task per entry; `recovered` entries were accepted before this process started.
    fn start(&self, entries: Vec<Entry>, recovered: bool) {
        let now = Instant::now();
        for entry in entries {
            let waited = match recovered {
                true => Duration::from_secs((now_unix() - entry.envelope.created).max(0) as u64),
                false => Duration::ZERO,
            };
            let accepted = now.checked_sub(waited).unwrap_or(now);
            let waiting = self.inner.queue.track(entry.envelope.created);
            let job = Held {
                entry,
                accepted,
                waiting,
            };
            if self.inner.schedule.pooled()
                && job.entry.envelope.release_ms.is_some()
                && job.entry.history.is_empty()
            {
                self.inner.held.lock().expect("held lock").push(job);
            } else {
                self.spawn(job);
            }
        }
    }

    fn spawn(&self, job: Held) {
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.run(job.entry, job.accepted, job.waiting).await });
    }

    /// Picks up what the spool found queued at start (after a crash or restart), and
    /// starts the pool ticks when pooling is on.
    pub fn resume(&self) -> usize {
        if self.inner.schedule.pooled() {
            let me = self.clone();
            self.inner
                .tasks
                .spawn(async move { me.release_pool().await });
        }
        let entries = self.inner.spool.take_recovered();
        let n = entries.len();
        self.start(entries, true);
        n
    }

    /// At each pool tick, releases the held entries that are due, in a shuffled order.
    async fn release_pool(&self) {
        use rand::seq::SliceRandom;
        let schedule = self.inner.schedule;
        loop {
            let tick = schedule.tick_after(now_ms());
            if !self.sleep_until(tick, false).await {
                return;
            }
            let mut due: Vec<Held> = {
                let mut held = self.inner.held.lock().expect("held lock");
                let (due, wait) = std::mem::take(&mut *held)
                    .into_iter()
                    .partition(|h| h.entry.envelope.release_ms.is_some_and(|t| t <= tick));
                *held = wait;
                due
            };
            if due.is_empty() {
                continue;
            }
            due.shuffle(&mut rand::thread_rng());
            tracing::info!(released = due.len(), "pool tick: releasing held messages");
            for job in due {
                self.spawn(job);
            }
        }
    }

    /// Sleeps until the wall clock reaches `at_ms` (never earlier). False when the service
    /// stops meanwhile; with `flushable`, `queue flush` ends the wait early.
    async fn sleep_until(&self, at_ms: i64, flushable: bool) -> bool {
        loop {
            let left = at_ms - now_ms();
            if left <= 0 {
                return true;
            }
            let flush = async {
                if flushable {
                    self.inner.flush.notified().await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(left as u64)) => {}
                _ = flush => return true,
                _ = self.inner.stop.cancelled() => return false,
            }
        }
    }

    /// Deletes a queued entry for good (`remailer queue delete`); false for an unknown id.
    pub fn delete(&self, id: &str) -> bool {
        self.inner
            .held
            .lock()
            .expect("held lock")
            .retain(|h| h.entry.id != id);
        self.inner.spool.delete(id)
    }

    /// How many messages wait for delivery, and the age in seconds of the oldest.
    pub fn queue_stats(&self) -> (usize, i64) {
        self.inner.queue.snapshot()
    }

    /// Ends every waiting retry now (`remailer queue flush`).
    pub fn flush(&self) {
        self.inner.flush.notify_waiters();
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

    /// Delivers one entry; `_waiting` counts it in the queue gauges until this ends.
    async fn run(&self, mut entry: Entry, accepted: Instant, _waiting: queue_stats::Waiting) {
        let inner = &self.inner;
        if let Some(release) = entry.envelope.release_ms {
            if !self.sleep_until(release, false).await {
                return;
            }
        }
        loop {
            if let Some(next) = entry.history.last().map(|a| a.next_ms) {
                if !self.sleep_until(next, true).await {
                    return;
                }
            }
            if !inner.spool.is_queued(&entry.id) {
                return; // deleted by the operator meanwhile
            }
            let mut server = String::from("-");
            let Some(result) = self.attempt(&entry, &mut server).await else {
                return;
            };
            let attempts = entry.history.last().map_or(0, |a| a.n) + 1;
            let reason = match result {
                Ok(()) => {
                    inner.spool.remove(&entry.id);
                    metrics::delivery(DeliveryResult::Delivered);
                    metrics::delivered_after(accepted.elapsed());
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
            let age = now_unix() - entry.envelope.created;
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
            self.note_deferral(&mut entry, attempts, &reason, delay)
                .await;
        }
    }

    /// Adds the deferral to the entry's history and persists it (a failure is logged: a
    /// restart would then retry it sooner than planned).
    async fn note_deferral(&self, entry: &mut Entry, n: u32, reason: &str, delay: Duration) {
        let now = now_ms();
        entry.history.push(Attempt {
            n,
            at_ms: now,
            next_ms: now + delay.as_millis() as i64,
            error: safe_error(reason),
        });
        if entry.history.len() > HISTORY_MAX {
            entry.history.remove(0);
        }
        if let Err(e) = self.inner.spool.note_attempt(entry).await {
            tracing::error!(queue_id = %entry.id, error = %e, "could not persist the retry state; a restart retries this message sooner");
        }
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

    /// Waits for a delivery slot (None when shutting down meanwhile), then makes one attempt;
    /// an attempt that has started is not interrupted (its own timeouts bound it). `server`
    /// is set to the last server tried, as a log line may show it (see [`server_label`]).
    async fn attempt(&self, entry: &Entry, server: &mut String) -> Option<Result<(), Failure>> {
        let rcpt_domain = entry
            .envelope
            .rcpt
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default();
        let dest = self.inner.router.destination(rcpt_domain);
        let _permits = tokio::select! {
            p = self.permits(&dest) => p,
            _ = self.inner.stop.cancelled() => return None,
        };
        tokio::select! {
            _ = self.inner.outbound.ready() => {}
            _ = self.inner.stop.cancelled() => return None,
        }
        Some(self.try_targets(entry, rcpt_domain, &dest, server).await)
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
            *server = server_label(inner.config.delivery.relay.is_some(), &target);
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

    async fn permits(&self, dest: &str) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        let per_dest = {
            let mut map = self.inner.destinations.lock().expect("not poisoned");
            map.entry(dest.to_string())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(self.inner.config.delivery.per_destination))
                })
                .clone()
        };
        let d = per_dest.acquire_owned().await.expect("never closed");
        let w = self
            .inner
            .workers
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        (d, w)
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
    pub async fn queue_notice(&self, to: &RealAddress, message: Vec<u8>) -> Result<(), String> {
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
        let release = self.inner.schedule.release_at(now_ms());
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
                created: now_unix(),
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

/// A server as log lines show it: the relay (the operator's own) as configured; an MX host
/// as its keyed tag ([`crate::logtag`]), since its name tells the member's provider.
fn server_label(relay: bool, target: &route::Target) -> String {
    if relay {
        format!("{}:{}", target.name, target.addr.port())
    } else {
        format!(
            "{}:{}",
            crate::logtag::host(&target.name),
            target.addr.port()
        )
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
