//! `store`: what the service remembers — aliases (with sealed real addresses), the
//! Message-ID map for threading, and which bounce tokens have had a failure report. One trait, [`Store`], so SQLite (the embedded default)
//! and PostgreSQL (shared by several nodes) are interchangeable. Nothing here sees a real
//! address in clear: callers hand in the keyed hash and the sealed bytes.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::address::AliasName;

pub use sqlite::SqliteStore;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the alias is already taken")]
    AliasTaken,
    #[error("that real address already has an alias")]
    AddressTaken,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store url {0} is not supported (use sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
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

/// Issued Message-ID, the sealed original, and when the link expires (Unix seconds).
pub type ThreadLink = (String, Vec<u8>, i64);

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
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn insert_alias(&self, rec: &AliasRecord) -> Result<(), StoreError>;
    async fn delete_alias(&self, name: &AliasName) -> Result<bool, StoreError>;
    async fn alias_by_name(&self, name: &AliasName) -> Result<Option<AliasRecord>, StoreError>;
    async fn alias_by_id(&self, id: i64) -> Result<Option<AliasRecord>, StoreError>;
    async fn alias_by_hash(&self, real_hash: &[u8]) -> Result<Option<AliasRecord>, StoreError>;
    async fn list_aliases(&self) -> Result<Vec<AliasRecord>, StoreError>;
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

    /// Records many thread links in one transaction: `(issued, original_sealed, expires_at)`.
    async fn put_threads(&self, links: &[ThreadLink]) -> Result<(), StoreError>;
    async fn thread_original(&self, issued: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes expired map entries; returns how many.
    async fn purge_threads(&self, now: i64) -> Result<u64, StoreError>;
}

/// Opens the store named by `url` and brings its schema up to date.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(
            url.split('@').next_back().unwrap_or("").to_string(),
        ))
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
