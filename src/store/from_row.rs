//! Rows into records, once for both backends. The SQLite and PostgreSQL schemas give every
//! column the same name and a type that decodes to the same Rust type (`INTEGER`/`BIGINT` to
//! `i64`, `BLOB`/`BYTEA` to `Vec<u8>`, `TEXT` to `String`), so one function reads each record
//! from a row of either; the column lists both backends select are here too.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{
    AliasRecord, AliasState, PendingKind, PendingRecord, SendLogEntry, SendOutcome, StoreError,
    StsPolicyRecord,
};
use crate::address::AliasName;

/// `SELECT` of every alias column, followed by the rest of the statement (kept `'static`).
macro_rules! select_aliases {
    ($rest:literal) => {
        concat!("SELECT id, name, real_hash, real_sealed, display_name, state, created_at, expires_at, pgp_sealed FROM aliases ", $rest)
    };
}

macro_rules! pending_columns {
    () => {
        "token_hash, kind, alias, real_hash, real_sealed, display_name, expires_at, lifetime, pgp_sealed"
    };
}

/// `SELECT` of every pending column, followed by the rest of the statement.
macro_rules! select_pending {
    ($rest:literal) => {
        concat!("SELECT ", pending_columns!(), " FROM pending ", $rest)
    };
}

/// A row of either backend, read by column name.
pub(super) trait Columns {
    fn int(&self, name: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, name: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error>;
    fn blob(&self, name: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn opt_blob(&self, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

impl<R> Columns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        self.try_get(name)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(name)
    }
    fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        self.try_get(name)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(name)
    }
    fn blob(&self, name: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(name)
    }
    fn opt_blob(&self, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.try_get(name)
    }
}

/// A stored alias name; one that no longer parses is corrupt data.
pub(super) fn alias_name(text: &str) -> Result<AliasName, StoreError> {
    AliasName::parse(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A row of [`select_aliases!`].
pub(super) fn alias(row: &impl Columns) -> Result<AliasRecord, StoreError> {
    Ok(AliasRecord {
        id: row.int("id")?,
        name: alias_name(&row.text("name")?)?,
        real_hash: row.blob("real_hash")?,
        real_sealed: row.blob("real_sealed")?,
        display_name: row.opt_text("display_name")?,
        state: AliasState::parse(&row.text("state")?)?,
        created_at: row.int("created_at")?,
        expires_at: row.opt_int("expires_at")?,
        pgp_sealed: row.opt_blob("pgp_sealed")?,
    })
}

/// A row of [`pending_columns!`].
pub(super) fn pending(row: &impl Columns) -> Result<PendingRecord, StoreError> {
    Ok(PendingRecord {
        token_hash: row.blob("token_hash")?,
        kind: PendingKind::parse(&row.text("kind")?)?,
        alias: alias_name(&row.text("alias")?)?,
        real_hash: row.blob("real_hash")?,
        real_sealed: row.blob("real_sealed")?,
        display_name: row.opt_text("display_name")?,
        expires_at: row.int("expires_at")?,
        lifetime: row.opt_int("lifetime")?,
        pgp_sealed: row.opt_blob("pgp_sealed")?,
    })
}

/// A row of `queue_id, at, sender_alias, recipient_alias, size, outcome` from `send_log`.
pub(super) fn send_log_entry(row: &impl Columns) -> Result<SendLogEntry, StoreError> {
    Ok(SendLogEntry {
        queue_id: row.text("queue_id")?,
        at: row.int("at")?,
        sender_alias: row.text("sender_alias")?,
        recipient_alias: row.text("recipient_alias")?,
        size: row.int("size")?,
        outcome: SendOutcome::parse(&row.text("outcome")?)?,
    })
}

/// A row of `sealed, expires_at` from `mta_sts_policies`, found by `domain_hash`.
pub(super) fn sts_policy(
    row: &impl Columns,
    domain_hash: &[u8],
) -> Result<StsPolicyRecord, StoreError> {
    Ok(StsPolicyRecord {
        domain_hash: domain_hash.to_vec(),
        sealed: row.blob("sealed")?,
        expires_at: row.int("expires_at")?,
    })
}
