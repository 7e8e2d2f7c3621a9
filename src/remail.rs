//! `remail`: what happens to a transaction after DATA. For mail to aliases: look up the
//! members the message mentions, run [`rewrite`](crate::rewrite::rewrite), encrypt the result
//! for each recipient who has an OpenPGP key ([`crate::encrypt`], before DKIM signing; an
//! expired key per `privacy.pgp_expired`), record the Message-ID pair for threading, and make
//! one spool entry per recipient durable before the client gets `250`. Then hand the entries to [`delivery`](crate::delivery).
//! For mail to bounce addresses: hand it to [`bounces`](crate::bounces); an automatic reply
//! is remailed to the original sender only when it authenticates as the original recipient's
//! real address (see [`Remail::auto_reply`]); otherwise it is accepted and discarded.
//! Logs name queue ids and counts only: never an address, and not who wrote to whom.

mod threads;

use std::sync::Arc;

use rand::RngCore;

use crate::address::{Domain, RealAddress};
use crate::bounce::BounceToken;
use crate::bounces::{Bounces, Outcome};
use crate::config::{Config, PgpExpired, PrivacyConfig, RemoteContent};
use crate::delivery::schedule::{now_ms, Schedule};
use crate::delivery::Delivery;
use crate::dkim::DkimKeys;
use crate::envelope::{Recipient, Sender, Transaction};
use crate::keys::Keys;
use crate::members::{MemberEntry, Members};
use crate::reply::{Answer, Refusal};
use crate::rewrite::{self, Lookup, Member, RewriteError};
use crate::sender_auth::{SenderAuthenticator, Verdict};
use crate::spool::{Entry, Envelope, Kind, Spool};
use crate::store::{now_unix, SendLogEntry, SendOutcome};
use threads::ThreadLinks;

/// At most this many distinct addresses found in a message are looked up (bounds the work a
/// message can cause); later ones are left as they are.
const MAX_LOOKUPS: usize = 100;

/// The parts of the configuration remail uses, read once when the service starts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: Domain,
    /// `[privacy]`: the send log and how long thread links are kept.
    pub privacy: PrivacyConfig,
    /// `policy.strip_signatures`.
    pub strip_signatures: bool,
    /// `policy.hard_bounce_limit`.
    pub hard_bounce_limit: u32,
    /// `delivery.delay` and `delivery.pool_interval`.
    pub schedule: Schedule,
    /// `policy.postmaster`: where mail for postmaster@ and abuse@ goes.
    pub postmaster: Option<RealAddress>,
}

impl Settings {
    pub fn of(config: &Config) -> Self {
        Settings {
            domain: config.domain.clone(),
            privacy: config.privacy.clone(),
            strip_signatures: config.policy.strip_signatures,
            hard_bounce_limit: config.policy.hard_bounce_limit,
            schedule: Schedule::new(&config.delivery),
            postmaster: config.postmaster(),
        }
    }
}

pub struct Remail {
    settings: Settings,
    bounces: Bounces,
    threads: ThreadLinks,
    /// Stops the hourly purge when the [`Remail`] is dropped.
    _purger: tokio_util::sync::DropGuard,
    dkim: Arc<DkimKeys>,
    members: Members,
    keys: Arc<Keys>,
    spool: Arc<Spool>,
    delivery: Delivery,
    auth: SenderAuthenticator,
}

fn local_error(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "could not queue a message");
    Refusal::LocalProblem
}

impl Remail {
    pub fn new(
        settings: Settings,
        members: Members,
        keys: Arc<Keys>,
        spool: Arc<Spool>,
        delivery: Delivery,
        dkim: Arc<DkimKeys>,
        auth: SenderAuthenticator,
    ) -> Self {
        let purger = spawn_purger(
            members.clone(),
            settings.privacy.send_log_days as i64 * 86_400,
        );
        let threads = ThreadLinks::spawn(members.store().clone());
        let bounces = Bounces::new(
            members.clone(),
            delivery.clone(),
            settings.hard_bounce_limit,
        );
        Remail {
            bounces,
            threads,
            _purger: purger,
            settings,
            dkim,
            members,
            keys,
            spool,
            delivery,
            auth,
        }
    }

    /// Decides the reply to DATA: accepted (`250`) only once every resulting spool entry is
    /// durable.
    pub async fn accept(&self, tx: Transaction) -> Result<Answer, Refusal> {
        let mut aliases = Vec::new();
        let mut bounces = Vec::new();
        for r in &tx.recipients {
            match r {
                Recipient::Alias(m) => aliases.push(m.as_ref()),
                Recipient::Bounce(t) => bounces.push(*t),
                Recipient::Postmaster => {}
            }
        }
        if tx
            .recipients
            .iter()
            .any(|r| matches!(r, Recipient::Postmaster))
        {
            self.to_postmaster(&tx).await?;
        }
        if !bounces.is_empty() {
            self.bounce_received(&tx, &bounces).await?;
        }
        let queue_id = match &tx.sender {
            Sender::Member(sender) if !aliases.is_empty() => {
                self.remail(&tx, sender, &aliases).await?
            }
            _ => None,
        };
        Ok(Answer::Accepted { queue_id })
    }

    async fn remail(
        &self,
        tx: &Transaction,
        sender: &MemberEntry,
        to: &[&MemberEntry],
    ) -> Result<Option<String>, Refusal> {
        let scan = rewrite::scan(&tx.message);
        if matches!(tx.sender, Sender::Member(_)) {
            self.check_from_header(scan.from.as_deref(), sender)?;
        }
        let snapshot = self.snapshot(&scan).await?;
        let job = Job {
            domain: self.settings.domain.clone(),
            keys: self.keys.clone(),
            dkim: self.dkim.clone(),
            strip_signatures: self.settings.strip_signatures,
            strip_remote_content: self.settings.privacy.remote_content == RemoteContent::Strip,
            strip_attachment_metadata: self.settings.privacy.strip_attachment_metadata,
            schedule: self.settings.schedule,
            pgp_expired: self.settings.privacy.pgp_expired,
            sender: sender.clone(),
            recipients: to.iter().map(|m| (*m).clone()).collect(),
            snapshot,
        };
        let coming = self.spool.coming();
        let outcome = if tx.message.len() <= INLINE_MAX {
            job.run(&tx.message)
        } else {
            let message = tx.message.clone();
            tokio::task::spawn_blocking(move || job.run(&message))
                .await
                .map_err(local_error)?
        };
        let (entries, rewritten_ids) = match outcome {
            Ok(Some(done)) => done,
            Ok(None) => {
                tracing::info!("dropped a copy of our own mail (loop)");
                return Ok(None);
            }
            Err(refusal) => return Err(refusal),
        };
        self.spool
            .store_coming(coming, &entries)
            .await
            .map_err(local_error)?;
        self.record_thread(sender.id, rewritten_ids);
        let first = entries[0].id.clone();
        tracing::info!(queue_id = %first, recipients = entries.len(), size = entries[0].message.len(), "queued");
        self.log_sends(sender, to, &entries).await;
        self.delivery.enqueue(entries);
        Ok(Some(first))
    }

    /// With `privacy.send_log` on, records each entry (aliases only) before delivery starts, so
    /// its outcome can be set when delivery ends. The message is already durable: a failure
    /// here costs only the log entry.
    async fn log_sends(&self, sender: &MemberEntry, to: &[&MemberEntry], entries: &[Entry]) {
        if !self.settings.privacy.send_log {
            return;
        }
        // Remailed copies only (a notice about an expired key stands in for some), each with
        // its recipient.
        let rows: Vec<SendLogEntry> = entries
            .iter()
            .filter(|e| e.envelope.kind == Kind::Remail)
            .filter_map(|e| {
                let rcpt = to.iter().find(|m| {
                    e.envelope.recipient_alias.as_deref() == Some(&m.member.alias.address())
                })?;
                Some((e, rcpt))
            })
            .map(|(e, rcpt)| SendLogEntry {
                at: e.envelope.created,
                queue_id: e.id.clone(),
                sender_alias: sender.member.alias.name.to_string(),
                recipient_alias: rcpt.member.alias.name.to_string(),
                size: e.message.len() as i64,
                outcome: SendOutcome::Queued,
            })
            .collect();
        if let Err(e) = self.members.store().log_sends(&rows).await {
            tracing::warn!(error = %e, entries = rows.len(), "could not write the send log");
        }
    }

    /// Remembers issued → original Message-ID for threading, in the background (batched).
    /// The message is already durable, so a failure costs only the thread link.
    fn record_thread(&self, sender_id: i64, ids: (String, Option<String>)) {
        let (issued, Some(original)) = ids else {
            return;
        };
        let expires = now_unix() + self.settings.privacy.thread_map_days as i64 * 86_400;
        self.threads.record((
            issued,
            self.keys.seal(original.as_bytes()),
            expires,
            sender_id,
        ));
    }

    /// The From header must name the same member as the envelope sender.
    fn check_from_header(&self, from: Option<&str>, sender: &MemberEntry) -> Result<(), Refusal> {
        let Some(from) = from else { return Ok(()) };
        let same = RealAddress::parse_any(from)
            .map(|a| self.keys.address_hash(&a) == self.keys.address_hash(&sender.member.real))
            .unwrap_or(false);
        if same {
            Ok(())
        } else {
            Err(Refusal::FromMismatch)
        }
    }

    /// The members and thread IDs a message mentions, looked up before rewriting.
    async fn snapshot(&self, scan: &rewrite::Scan) -> Result<Lookup, Refusal> {
        let mut snap = Lookup::default();
        for addr in scan.addresses.iter().take(MAX_LOOKUPS) {
            let Ok(real) = RealAddress::parse_any(addr) else {
                continue;
            };
            if snap.knows(&real) || self.settings.domain.covers(real.domain()) {
                continue;
            }
            if let Some(entry) = self.members.by_real(&real).await.map_err(local_error)? {
                snap.add_member(entry.member);
            }
        }
        let suffix = format!("@{}", self.settings.domain);
        let now = now_unix();
        for id in scan
            .referenced_ids
            .iter()
            .filter(|id| id.ends_with(&suffix))
            .take(MAX_LOOKUPS)
        {
            let sealed = match self.threads.pending(id) {
                Some(sealed) => Some(sealed),
                None => {
                    (self.members.store().thread_original(id, now).await).map_err(local_error)?
                }
            };
            if let Some(sealed) = sealed {
                if let Ok(Ok(original)) = self.keys.open(&sealed).map(String::from_utf8) {
                    snap.add_issued(id.clone(), original);
                }
            }
        }
        Ok(snap)
    }

    /// Forwards mail for postmaster@/abuse@ to the operator, attached unchanged to a signed
    /// message from the service.
    async fn to_postmaster(&self, tx: &Transaction) -> Result<(), Refusal> {
        let Some(operator) = &self.settings.postmaster else {
            return Ok(());
        };
        let message = crate::notices::for_postmaster(&self.settings.domain, operator, &tx.message);
        self.delivery
            .queue_notice(operator, message)
            .await
            .map_err(local_error)?;
        tracing::info!(
            size = tx.message.len(),
            "mail for postmaster forwarded to the operator"
        );
        Ok(())
    }

    /// Handles a report sent to bounce addresses; an automatic reply is remailed to the
    /// original sender as a reply from the original recipient.
    async fn bounce_received(
        &self,
        tx: &Transaction,
        tokens: &[BounceToken],
    ) -> Result<(), Refusal> {
        // Sender authentication depends only on the transaction: checked once, when needed.
        let mut verdict = None;
        for token in tokens {
            match self
                .bounces
                .handle(*token, &tx.message)
                .await
                .map_err(local_error)?
            {
                Outcome::AutoReply { from, to } => {
                    self.auto_reply(tx, &from, &to, &mut verdict).await?;
                }
                Outcome::Notified { paused } => {
                    tracing::info!(paused, "bounce report handled");
                }
                Outcome::Dropped(why) => {
                    tracing::info!(why, "bounce address mail dropped")
                }
            }
        }
        Ok(())
    }
}

impl Remail {
    /// Remails an automatic reply as coming from `from` (the original recipient) only when it
    /// passes the sender authentication that `from`'s real address would: its From header is
    /// exactly that address, its envelope sender is that address or null, and it passes
    /// `policy.sender_auth` (aligned with the From domain; with `none` only the addresses are
    /// checked). Anything else is accepted and discarded (no backscatter, nothing to probe
    /// with); a temporary DNS failure is answered `451` so a genuine reply is retried.
    async fn auto_reply(
        &self,
        tx: &Transaction,
        from: &MemberEntry,
        to: &MemberEntry,
        verdict: &mut Option<Verdict>,
    ) -> Result<(), Refusal> {
        if !self.written_by(tx, from) {
            tracing::info!("dropped an automatic reply not from the recipient's address");
            return Ok(());
        }
        if verdict.is_none() {
            *verdict = Some(self.authenticate(tx).await);
        }
        match verdict.as_ref().expect("set above") {
            Verdict::Pass { .. } => self.remail(tx, from, &[to]).await.map(drop),
            Verdict::Fail { .. } => {
                tracing::info!("dropped an automatic reply that failed sender authentication");
                Ok(())
            }
            Verdict::TempFail { reason } => Err(Refusal::AuthUnavailable {
                reason: reason.clone(),
            }),
        }
    }

    /// The From header names exactly `member`'s real address, and the envelope sender is
    /// that address or null.
    fn written_by(&self, tx: &Transaction, member: &MemberEntry) -> bool {
        let want = self.keys.address_hash(&member.member.real);
        let is_member =
            |a: &str| RealAddress::parse_any(a).is_ok_and(|a| self.keys.address_hash(&a) == want);
        let envelope_ok = tx.mail_from.is_empty() || is_member(&tx.mail_from);
        envelope_ok && sole_author(&tx.message).is_some_and(|a| is_member(&a))
    }

    /// SPF (computed now unless the session did at MAIL time), DKIM and DMARC for the
    /// transaction, under `policy.sender_auth`.
    async fn authenticate(&self, tx: &Transaction) -> Verdict {
        let spf = match &tx.spf {
            Some(spf) => spf.clone(),
            None => self.auth.check_spf(tx.peer, &tx.helo, &tx.mail_from).await,
        };
        self.auth
            .verify(&tx.message, tx.peer, &tx.helo, &tx.mail_from, &spf)
            .await
    }
}

/// The address of the From header, when it holds exactly one.
fn sole_author(raw: &[u8]) -> Option<String> {
    let msg = rewrite::parse(raw)?;
    let from = msg.from()?;
    let mut all = from.iter();
    let first = all.next()?.address()?.to_string();
    all.next().is_none().then_some(first)
}

/// The CPU part of remailing: rewrite, DKIM-sign, and make one spool entry per recipient
/// (which the caller then makes durable). See [`INLINE_MAX`] for where it runs.
struct Job {
    domain: Domain,
    keys: Arc<Keys>,
    dkim: Arc<DkimKeys>,
    strip_signatures: bool,
    /// `privacy.remote_content = "strip"`.
    strip_remote_content: bool,
    /// `privacy.strip_attachment_metadata`.
    strip_attachment_metadata: bool,
    /// Release times (`delivery.delay`, `delivery.pool_interval`), chosen before the 250.
    schedule: Schedule,
    /// `privacy.pgp_expired`.
    pgp_expired: PgpExpired,
    sender: MemberEntry,
    recipients: Vec<MemberEntry>,
    snapshot: Lookup,
}

/// Messages up to this size are rewritten and signed on the session's own task: their cost is
/// about one RSA signature (~1 ms), and handing them to the blocking pool cost more in thread
/// wake-ups than it saved. Larger ones go to the blocking pool, so one big message cannot hold
/// a runtime worker for long.
const INLINE_MAX: usize = 64 * 1024;

/// Entries to store and the (issued, original) Message-IDs.
type Done = (Vec<Entry>, (String, Option<String>));

impl Job {
    /// One spool entry per recipient: the signed clear message, shared, for members without
    /// a key; for a member with a key, the message encrypted to it (PGP/MIME, after the
    /// rewrite, before DKIM signing), or per `privacy.pgp_expired` when the key has expired.
    fn entries(&self, rewritten: &[u8]) -> Result<Vec<Entry>, Refusal> {
        let now = now_unix();
        let expired = |r: &MemberEntry| r.pgp.as_ref().is_some_and(|k| !k.usable_at(now as u64));
        if self.pgp_expired == PgpExpired::Refuse && self.recipients.iter().any(expired) {
            tracing::info!("refused a message: a recipient's OpenPGP key has expired");
            return Err(Refusal::RecipientKeyExpired);
        }
        let mut clear: Option<Arc<Vec<u8>>> = None;
        let mut clear_copy = || -> Result<Arc<Vec<u8>>, Refusal> {
            if clear.is_none() {
                let signed = crate::wire::seal(&self.dkim, rewritten).map_err(local_error)?;
                clear = Some(Arc::new(signed));
            }
            Ok(clear.clone().expect("set above"))
        };
        let mut entries = Vec::with_capacity(self.recipients.len());
        for rcpt in &self.recipients {
            let Some(key) = &rcpt.pgp else {
                entries.push(self.remail_entry(rcpt, clear_copy()?, now));
                continue;
            };
            if key.usable_at(now as u64) {
                let encrypted =
                    crate::encrypt::encrypt_message(rewritten, key).map_err(local_error)?;
                let signed = crate::wire::seal(&self.dkim, &encrypted).map_err(local_error)?;
                entries.push(self.remail_entry(rcpt, Arc::new(signed), now));
                continue;
            }
            let plain = self.pgp_expired == PgpExpired::Plain;
            if plain {
                entries.push(self.remail_entry(rcpt, clear_copy()?, now));
            }
            entries.push(self.key_expired_notice(rcpt, key, plain, now)?);
            tracing::info!(
                in_clear = plain,
                "a recipient's OpenPGP key has expired; notice queued"
            );
        }
        Ok(entries)
    }

    fn remail_entry(&self, rcpt: &MemberEntry, message: Arc<Vec<u8>>, now: i64) -> Entry {
        Entry {
            id: Spool::new_id(),
            envelope: Envelope {
                kind: Kind::Remail,
                mail_from: BounceToken::new(self.sender.id, rcpt.id, now)
                    .address(&self.keys, &self.domain),
                rcpt: rcpt.member.real.expose(),
                recipient_alias: Some(rcpt.member.alias.address()),
                sender_id: Some(self.sender.id),
                created: now,
                release_ms: self.schedule.release_at(now_ms()),
            },
            message,
            history: Vec::new(),
        }
    }

    /// The clear notice a member gets instead of (or, with `"plain"`, beside) a message their
    /// expired key could not encrypt; like every notice it is not delayed.
    fn key_expired_notice(
        &self,
        rcpt: &MemberEntry,
        key: &crate::encrypt::PublicKey,
        in_clear: bool,
        now: i64,
    ) -> Result<Entry, Refusal> {
        let notice = crate::notices::key_expired(
            &self.domain,
            &rcpt.member.real,
            &rcpt.member.alias.address(),
            Some(&self.sender.member.alias.address()),
            key.fingerprint(),
            in_clear,
        );
        let signed = crate::wire::seal(&self.dkim, &notice).map_err(local_error)?;
        Ok(Entry {
            id: Spool::new_id(),
            envelope: Envelope {
                kind: Kind::Notice,
                mail_from: String::new(),
                rcpt: rcpt.member.real.expose(),
                recipient_alias: None,
                sender_id: None,
                created: now,
                release_ms: None,
            },
            message: Arc::new(signed),
            history: Vec::new(),
        })
    }

    /// `Ok(None)`: the message was our own mail coming back, and is dropped.
    fn run(self, raw: &[u8]) -> Result<Option<Done>, Refusal> {
        let members: Vec<Member> = self.recipients.iter().map(|m| m.member.clone()).collect();
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ctx = rewrite::Context {
            domain: &self.domain,
            sender: &self.sender.member,
            recipients: &members,
            now: time::OffsetDateTime::now_utc(),
            nonce,
            keys: &self.keys,
            strip_signatures: self.strip_signatures,
            strip_remote_content: self.strip_remote_content,
            strip_attachment_metadata: self.strip_attachment_metadata,
        };
        let rewritten = match rewrite::rewrite(raw, &ctx, &self.snapshot) {
            Ok(r) => r,
            Err(RewriteError::Loop) => return Ok(None),
            Err(e) => {
                let (code, esc) = e.status();
                return Err(Refusal::Content {
                    code,
                    esc,
                    text: e.to_string(),
                });
            }
        };
        let entries = self.entries(&rewritten.message)?;
        Ok(Some((
            entries,
            (rewritten.message_id, rewritten.original_message_id),
        )))
    }
}

/// Deletes expired thread links (the retention of `privacy.thread_map_days`), the records
/// of expired bounce tokens, send-log entries older than `privacy.send_log_days`
/// (`send_log_secs`), and retires aliases whose expiry has passed.
async fn purge_expired(members: &Members, send_log_secs: i64) {
    let store = members.store();
    match store.purge_threads(now_unix()).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "expired thread links removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not purge thread links"),
    }
    let oldest_valid = now_unix().div_euclid(86_400) - crate::bounce::TOKEN_DAYS;
    match store.purge_bounces(oldest_valid).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "expired bounce records removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not purge bounce records"),
    }
    match store.purge_send_log(now_unix() - send_log_secs).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "old send-log entries removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not purge the send log"),
    }
    match members.expire_due().await {
        Ok(n) if n > 0 => tracing::info!(retired = n, "expired aliases retired"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not retire expired aliases"),
    }
}

/// Every hour runs [`purge_expired`] (also once at start), until the guard is dropped.
fn spawn_purger(members: Members, send_log_secs: i64) -> tokio_util::sync::DropGuard {
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut purge = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = purge.tick() => purge_expired(&members, send_log_secs).await,
            }
        }
    });
    stop.drop_guard()
}
