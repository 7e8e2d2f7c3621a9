//! `store`: what the service remembers — aliases (with sealed real addresses), the
//! Message-ID map for threading, and which bounce tokens have had a failure report. One trait, [`Store`], so SQLite (the embedded default)
//! and PostgreSQL (shared by several nodes) are interchangeable. Nothing here sees a real
//! address in clear: callers hand in the keyed hash and the sealed bytes.

pub mod migrate;
#[macro_use]
mod from_row;
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::address::AliasName;

pub use postgres::{postgres_target, PostgresStore};
pub use sqlite::{sqlite_path, SqliteStore};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the alias is already taken")]
    AliasTaken,
    #[error("that real address already has an alias")]
    AddressTaken,
    #[error("the alias name was removed and is never given out again")]
    AliasRetired,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store url {0} is not supported (use sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A database file could not be created (its path and the reason).
    #[error("{0}")]
    File(String),
    /// The database server could not be reached at start (`host:port/db`, never a password).
    #[error("cannot connect to the PostgreSQL server at {target}: {error}")]
    Connect { target: String, error: String },
}

impl StoreError {
    /// The database could not be reached (down, restarting, pool exhausted): a temporary
    /// condition — SMTP answers 451 4.3.0 and the web 503, and the pool reconnects.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                        | sqlx::Error::WorkerCrashed
                ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
            }
            _ => false,
        }
    }
}

/// The store URL for messages and `check-config`: a PostgreSQL URL without its user and
/// password (`postgres://HOST:PORT/DB`), an SQLite one as it is.
pub fn display_url(url: &str) -> String {
    if is_postgres(url) {
        format!("postgres://{}", postgres_target(url))
    } else {
        url.to_string()
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasState {
    Active,
    /// Deliveries bounced hard repeatedly; mail to and from the alias is refused.
    Paused,
}

impl AliasState {
    pub fn as_str(self) -> &'static str {
        match self {
            AliasState::Active => "active",
            AliasState::Paused => "paused",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(AliasState::Active),
            "paused" => Ok(AliasState::Paused),
            other => Err(StoreError::Corrupt(format!("alias state '{other}'"))),
        }
    }
}

/// Issued Message-ID, the sealed original, when the link expires (Unix seconds), and the id
/// of the alias that wrote the original (its links go when the alias is removed).
pub type ThreadLink = (String, Vec<u8>, i64, i64);

/// A failure report that came back to a bounce token, for [`Store::record_bounce`].
#[derive(Debug, Clone)]
pub struct BounceReport {
    /// Keyed hash of the token (the token itself is never stored).
    pub token_hash: [u8; 32],
    /// The alias the report is about (the token's recipient).
    pub alias_id: i64,
    /// The token's day (days since the Unix epoch); the record is purged once it expired.
    pub day: i64,
    /// A permanent failure (counts towards pausing the alias).
    pub hard: bool,
    /// Pause at this many counted hard-bounced tokens ...
    pub limit: i64,
    /// ... made on at least this many distinct days.
    pub min_days: i64,
}

/// What [`Store::record_bounce`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceTally {
    /// The token had a report already: nothing changed.
    Repeated,
    /// Recorded; `messages` hard-bounced tokens made on `days` distinct days count now.
    Counted { messages: i64, days: i64 },
    /// Recorded, and this report paused the alias (it was active).
    Paused { messages: i64, days: i64 },
}

/// One fixed-window counter to take a unit from (one-way form limits): `kind` names the
/// limit, `key` is a keyed hash (empty for a global limit), `period` the day or hour number.
#[derive(Debug, Clone)]
pub struct SendCounter {
    pub kind: &'static str,
    pub key: Vec<u8>,
    pub period: i64,
    pub limit: u32,
    /// Unix seconds after which the row may be purged.
    pub expires_at: i64,
}

/// One row of the alias table, as stored.
#[derive(Debug, Clone)]
pub struct AliasRecord {
    /// Assigned by the store on insert (ignored there); never reused.
    pub id: i64,
    pub name: AliasName,
    pub real_hash: Vec<u8>,
    pub real_sealed: Vec<u8>,
    pub display_name: Option<String>,
    pub state: AliasState,
    pub created_at: i64,
    /// Unix seconds after which the alias is expired (refused, then retired); None: never.
    pub expires_at: Option<i64>,
    /// The member's OpenPGP public key, sealed (None: mail to them goes in clear).
    pub pgp_sealed: Option<Vec<u8>>,
}

/// How a send-log entry ended (`queued` until delivery ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Queued,
    Delivered,
    Failed,
    Expired,
}

impl SendOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Queued => "queued",
            SendOutcome::Delivered => "delivered",
            SendOutcome::Failed => "failed",
            SendOutcome::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "queued" => Ok(SendOutcome::Queued),
            "delivered" => Ok(SendOutcome::Delivered),
            "failed" => Ok(SendOutcome::Failed),
            "expired" => Ok(SendOutcome::Expired),
            other => Err(StoreError::Corrupt(format!("send outcome '{other}'"))),
        }
    }
}

/// One row of the optional send log: aliases only, never a real address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLogEntry {
    /// Unix seconds when the message was queued.
    pub at: i64,
    pub queue_id: String,
    /// The name (local part) of the sender's alias.
    pub sender_alias: String,
    /// The name (local part) of the recipient's alias.
    pub recipient_alias: String,
    pub size: i64,
    pub outcome: SendOutcome,
}

/// What a confirmation link does once followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    Register,
    Remove,
    /// Set (the record's key) or remove (no key) a member's OpenPGP key.
    Key,
}

impl PendingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingKind::Register => "register",
            PendingKind::Remove => "remove",
            PendingKind::Key => "key",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "register" => Ok(PendingKind::Register),
            "remove" => Ok(PendingKind::Remove),
            "key" => Ok(PendingKind::Key),
            other => Err(StoreError::Corrupt(format!("pending kind '{other}'"))),
        }
    }
}

/// A registration or removal waiting for its confirmation link (found by the token's keyed
/// hash; the token itself is never stored).
#[derive(Debug, Clone)]
pub struct PendingRecord {
    pub token_hash: Vec<u8>,
    pub kind: PendingKind,
    pub alias: AliasName,
    pub real_hash: Vec<u8>,
    /// The sealed real address (a registration); empty for a removal.
    pub real_sealed: Vec<u8>,
    pub display_name: Option<String>,
    pub expires_at: i64,
    /// A registration's chosen alias lifetime in seconds (None: never expires).
    pub lifetime: Option<i64>,
    /// A registration's OpenPGP public key, sealed (None: none given).
    pub pgp_sealed: Option<Vec<u8>>,
}

/// One recipient domain's cached MTA-STS policy, as stored: the domain only as a keyed hash,
/// what the cache holds of it (the domain, the TXT id, the policy) only sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsPolicyRecord {
    pub domain_hash: Vec<u8>,
    pub sealed: Vec<u8>,
    /// Unix seconds: when it was fetched plus its `max_age`.
    pub expires_at: i64,
}

/// Whether an alias name can be given out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameStatus {
    Free,
    /// An alias (active or paused) has it.
    Taken,
    /// A registration waiting for confirmation holds it until its link expires.
    Pending,
    /// It was removed; it is never given out again.
    Removed,
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn insert_alias(&self, rec: &AliasRecord) -> Result<(), StoreError>;
    async fn delete_alias(&self, name: &AliasName) -> Result<bool, StoreError>;
    async fn alias_by_name(&self, name: &AliasName) -> Result<Option<AliasRecord>, StoreError>;
    async fn alias_by_id(&self, id: i64) -> Result<Option<AliasRecord>, StoreError>;
    async fn alias_by_hash(&self, real_hash: &[u8]) -> Result<Option<AliasRecord>, StoreError>;
    async fn list_aliases(&self) -> Result<Vec<AliasRecord>, StoreError>;
    /// Sets (or with None removes) an alias's sealed OpenPGP key; false when no such alias.
    async fn set_alias_key(
        &self,
        name: &AliasName,
        pgp_sealed: Option<&[u8]>,
    ) -> Result<bool, StoreError>;
    /// Setting `Active` also stops every earlier hard bounce of the alias from counting.
    async fn set_alias_state(
        &self,
        name: &AliasName,
        state: AliasState,
    ) -> Result<bool, StoreError>;
    /// Records a failure report once per token (a token seen before gives `Repeated`, also
    /// under concurrent calls). Atomically with the record, a hard report that brings the
    /// alias to `limit` counted hard-bounced tokens from at least `min_days` distinct days
    /// pauses it, if it is active.
    async fn record_bounce(&self, report: &BounceReport) -> Result<BounceTally, StoreError>;
    /// Deletes the records of tokens made before `before_day`; returns how many.
    async fn purge_bounces(&self, before_day: i64) -> Result<u64, StoreError>;

    /// Records many thread links in one transaction: `(issued, original_sealed, expires_at, alias_id)`.
    async fn put_threads(&self, links: &[ThreadLink]) -> Result<(), StoreError>;
    async fn thread_original(&self, issued: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes expired map entries; returns how many.
    async fn purge_threads(&self, now: i64) -> Result<u64, StoreError>;

    // --- one-way form and opt-out (src/oneway) ---
    /// Records an opt-out (keyed hash of the address); false when it was already there.
    async fn add_opt_out(&self, address_hash: &[u8], now: i64) -> Result<bool, StoreError>;
    /// Removes an opt-out; false when there was none.
    async fn remove_opt_out(&self, address_hash: &[u8]) -> Result<bool, StoreError>;
    async fn is_opted_out(&self, address_hash: &[u8]) -> Result<bool, StoreError>;
    async fn count_opt_outs(&self) -> Result<i64, StoreError>;
    /// Takes one unit from every counter, all or none, in one transaction. `Ok(None)` when
    /// all were below their limit (and are now counted), `Ok(Some(i))` when counter `i` was
    /// at its limit (and nothing was counted).
    async fn take_sends(&self, counters: &[SendCounter]) -> Result<Option<usize>, StoreError>;
    /// Deletes counters whose window has passed; returns how many.
    async fn purge_send_counts(&self, now: i64) -> Result<u64, StoreError>;
    // Self-service on the web. `insert_alias` refuses a removed name (`AliasRetired`).

    /// Whether `name` is free, taken, held by a pending registration, or removed.
    async fn name_status(&self, name: &AliasName, now: i64) -> Result<NameStatus, StoreError>;
    /// Stores a pending confirmation; a registration whose alias is already held by an
    /// unexpired one gets `AliasTaken`. Expired entries for the name are dropped first.
    async fn insert_pending(&self, rec: &PendingRecord, now: i64) -> Result<(), StoreError>;
    /// The unexpired pending entry with this token hash, left in place.
    async fn pending(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<PendingRecord>, StoreError>;
    /// Removes and returns the unexpired pending entry (single use: a second call gets None).
    async fn take_pending(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<PendingRecord>, StoreError>;
    /// Removes an alias and everything held for it (its bounce records, its thread links,
    /// pending links, its send-log entries) and records the name as removed, in one transaction; false when no such alias.
    async fn retire_alias(&self, name: &AliasName, now: i64) -> Result<bool, StoreError>;
    /// Like [`Store::retire_alias`], recording that the name went by expiry.
    async fn retire_expired_alias(&self, name: &AliasName, now: i64) -> Result<bool, StoreError>;
    /// Retires every alias whose `expires_at` has passed; returns their names.
    async fn retire_expired_aliases(&self, now: i64) -> Result<Vec<AliasName>, StoreError>;
    /// Whether `name` was retired because it expired.
    async fn name_expired(&self, name: &AliasName) -> Result<bool, StoreError>;

    // --- the optional send log (privacy.send_log) ---
    /// Records queued messages (their outcome is `queued`).
    async fn log_sends(&self, entries: &[SendLogEntry]) -> Result<(), StoreError>;
    /// Sets how the delivery of `queue_id` ended; false when it is not in the log.
    async fn set_send_outcome(
        &self,
        queue_id: &str,
        outcome: SendOutcome,
    ) -> Result<bool, StoreError>;
    /// Entries made at or after `since`, with `alias` as sender or recipient when given,
    /// oldest first, at most `limit`.
    async fn send_log(
        &self,
        alias: Option<&str>,
        since: i64,
        limit: i64,
    ) -> Result<Vec<SendLogEntry>, StoreError>;
    /// Deletes entries made before `before`; returns how many.
    async fn purge_send_log(&self, before: i64) -> Result<u64, StoreError>;

    /// Adds one to the counter `key` (kept until `expires_at`) and returns the new count.
    async fn count_mail(&self, key: &[u8], expires_at: i64) -> Result<i64, StoreError>;
    /// Deletes expired pending entries and mail counters; returns how many.
    async fn purge_web(&self, now: i64) -> Result<u64, StoreError>;

    // --- the master key check (src/data_dir.rs) ---
    /// The stored fingerprint of the master key, if one was recorded.
    async fn key_fingerprint(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records the fingerprint unless one is recorded already.
    async fn set_key_fingerprint(&self, fingerprint: &[u8], now: i64) -> Result<(), StoreError>;
    /// Whether the store holds anything sealed or hashed under the master key (aliases,
    /// pending confirmations, thread links, opt-outs, bounce records, MTA-STS policies).
    async fn holds_sealed_data(&self) -> Result<bool, StoreError>;

    // --- the MTA-STS policy cache (src/delivery/sts_cache.rs) ---
    /// The stored policy of a recipient domain (by its keyed hash), unless it expired by `now`.
    async fn mta_sts_policy(
        &self,
        domain_hash: &[u8],
        now: i64,
    ) -> Result<Option<StsPolicyRecord>, StoreError>;
    /// Stores (or replaces) a domain's policy, and deletes every policy expired by `now`.
    async fn put_mta_sts_policy(&self, rec: &StsPolicyRecord, now: i64) -> Result<(), StoreError>;

    /// Closes the store's connections cleanly (SQLite then removes its `-wal` and `-shm`
    /// files), for commands that end right after.
    async fn close(&self) {}
}

/// Opens the store named by `url` and brings its schema up to date.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if is_postgres(url) {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(unsupported(url))
    }
}

/// Opens an existing store (read-only commands): never creates a database.
pub async fn open_existing(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_existing(url).await?))
    } else if is_postgres(url) {
        Ok(Arc::new(PostgresStore::open_existing(url).await?))
    } else {
        Err(unsupported(url))
    }
}

/// Writes a consistent copy of the store to the file `dest` while the service may run.
pub async fn backup(url: &str, dest: &std::path::Path) -> Result<(), StoreError> {
    if url.starts_with("sqlite:") {
        sqlite::backup(url, dest).await
    } else if is_postgres(url) {
        Err(StoreError::File(
            "a PostgreSQL store is backed up with pg_dump (see the README, Running several nodes)"
                .into(),
        ))
    } else {
        Err(unsupported(url))
    }
}

fn unsupported(url: &str) -> StoreError {
    StoreError::UnsupportedUrl(url.split('@').next_back().unwrap_or("").to_string())
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
