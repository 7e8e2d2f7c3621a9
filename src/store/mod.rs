//! `store`: what the service remembers — aliases (with sealed real addresses) and the
//! Message-ID map for threading. One trait, [`Store`], so SQLite (the embedded default)
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
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn insert_alias(&self, rec: &AliasRecord) -> Result<(), StoreError>;
    async fn delete_alias(&self, name: &AliasName) -> Result<bool, StoreError>;
    async fn alias_by_name(&self, name: &AliasName) -> Result<Option<AliasRecord>, StoreError>;
    async fn alias_by_id(&self, id: i64) -> Result<Option<AliasRecord>, StoreError>;
    async fn alias_by_hash(&self, real_hash: &[u8]) -> Result<Option<AliasRecord>, StoreError>;
    async fn list_aliases(&self) -> Result<Vec<AliasRecord>, StoreError>;
    async fn set_alias_state(
        &self,
        name: &AliasName,
        state: AliasState,
    ) -> Result<bool, StoreError>;
    /// Counts a hard bounce for the alias and returns the new count.
    async fn add_hard_bounce(&self, name: &AliasName) -> Result<i64, StoreError>;

    /// Records many thread links in one transaction: `(issued, original_sealed, expires_at)`.
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
