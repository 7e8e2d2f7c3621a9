//! `remailer store migrate --to postgres://…`: copies an SQLite store into PostgreSQL, table
//! by table in one PostgreSQL transaction, keeping every row as it is (alias ids too, so
//! bounce tokens and thread links still name the right alias). Idempotent: a row already
//! there is left alone, so a second run copies nothing. A PostgreSQL store that recorded
//! another master key's fingerprint is refused before anything is copied.

use sqlx::{Postgres, Row};

use super::{PostgresStore, SqliteStore, StoreError};

/// How a column is read from SQLite and bound for PostgreSQL.
#[derive(Clone, Copy)]
enum Col {
    Int,
    OptInt,
    /// SQLite 0/1 integer to a PostgreSQL BOOLEAN.
    Bool,
    Blob,
    OptBlob,
    Text,
    OptText,
}

/// Every table of the schema with its columns (migrations 0001..0008), parents first.
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "aliases",
        &[
            ("id", Col::Int),
            ("name", Col::Text),
            ("real_hash", Col::Blob),
            ("real_sealed", Col::Blob),
            ("display_name", Col::OptText),
            ("state", Col::Text),
            ("created_at", Col::Int),
            ("hard_bounces", Col::Int),
            ("expires_at", Col::OptInt),
            ("pgp_sealed", Col::OptBlob),
        ],
    ),
    (
        "thread_map",
        &[
            ("issued", Col::Text),
            ("original_sealed", Col::Blob),
            ("expires_at", Col::Int),
            ("alias_id", Col::OptInt),
        ],
    ),
    (
        "bounce_tokens",
        &[
            ("token_hash", Col::Blob),
            ("alias_id", Col::Int),
            ("day", Col::Int),
            ("hard", Col::Bool),
            ("counts", Col::Bool),
        ],
    ),
    (
        "pending",
        &[
            ("token_hash", Col::Blob),
            ("kind", Col::Text),
            ("alias", Col::Text),
            ("real_hash", Col::Blob),
            ("real_sealed", Col::Blob),
            ("display_name", Col::OptText),
            ("expires_at", Col::Int),
            ("lifetime", Col::OptInt),
            ("pgp_sealed", Col::OptBlob),
        ],
    ),
    (
        "removed_aliases",
        &[
            ("name", Col::Text),
            ("removed_at", Col::Int),
            ("expired", Col::Bool),
        ],
    ),
    (
        "mail_counts",
        &[
            ("key", Col::Blob),
            ("count", Col::Int),
            ("expires_at", Col::Int),
        ],
    ),
    (
        "opt_outs",
        &[("address_hash", Col::Blob), ("created_at", Col::Int)],
    ),
    (
        "send_counts",
        &[
            ("kind", Col::Text),
            ("key", Col::Blob),
            ("period", Col::Int),
            ("count", Col::Int),
            ("expires_at", Col::Int),
        ],
    ),
    (
        "send_log",
        &[
            ("queue_id", Col::Text),
            ("at", Col::Int),
            ("sender_alias", Col::Text),
            ("recipient_alias", Col::Text),
            ("size", Col::Int),
            ("outcome", Col::Text),
        ],
    ),
    (
        "key_check",
        &[
            ("id", Col::Int),
            ("fingerprint", Col::Blob),
            ("created_at", Col::Int),
        ],
    ),
    (
        // migration 0009
        "mta_sts_policies",
        &[
            ("domain_hash", Col::Blob),
            ("sealed", Col::Blob),
            ("expires_at", Col::Int),
        ],
    ),
];

/// What was copied for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    /// Rows in the SQLite store.
    pub source: u64,
    /// Rows written to PostgreSQL by this run (the rest were there already).
    pub copied: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the PostgreSQL store was set up with another master key than this SQLite store's: nothing copied (it belongs to another installation)")]
    OtherKey,
}

impl From<sqlx::Error> for MigrateError {
    fn from(e: sqlx::Error) -> Self {
        MigrateError::Store(e.into())
    }
}

/// Copies every table of `from` into `to` (whose schema is brought up to date first).
pub async fn sqlite_to_postgres(
    from: &SqliteStore,
    to: &PostgresStore,
) -> Result<Vec<TableCount>, MigrateError> {
    refuse_other_key(from, to).await?;
    let mut tx = to.pool().begin().await?;
    let mut counts = Vec::new();
    for (table, cols) in TABLES {
        counts.push(copy_table(from, &mut tx, table, cols).await?);
    }
    // New aliases get ids after the copied ones (never reusing one).
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('aliases', 'id'), \
         COALESCE((SELECT MAX(id) FROM aliases), 0) + 1, false)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(counts)
}

async fn refuse_other_key(from: &SqliteStore, to: &PostgresStore) -> Result<(), MigrateError> {
    use super::Store;
    match (from.key_fingerprint().await?, to.key_fingerprint().await?) {
        (Some(a), Some(b)) if a != b => Err(MigrateError::OtherKey),
        (None, Some(_)) => Err(MigrateError::OtherKey),
        _ => Ok(()),
    }
}

async fn copy_table(
    from: &SqliteStore,
    tx: &mut sqlx::Transaction<'_, Postgres>,
    table: &'static str,
    cols: &[(&str, Col)],
) -> Result<TableCount, MigrateError> {
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        names.join(", "),
        placeholders.join(", ")
    );
    let rows = // Built only from the constant table and column names above.
    sqlx::query(sqlx::AssertSqlSafe(select)).fetch_all(from.pool()).await?;
    let mut copied = 0;
    for row in &rows {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
        for (i, (_, col)) in cols.iter().enumerate() {
            q = match col {
                Col::Int => q.bind(row.try_get::<i64, _>(i)?),
                Col::OptInt => q.bind(row.try_get::<Option<i64>, _>(i)?),
                Col::Bool => q.bind(row.try_get::<i64, _>(i)? != 0),
                Col::Blob => q.bind(row.try_get::<Vec<u8>, _>(i)?),
                Col::OptBlob => q.bind(row.try_get::<Option<Vec<u8>>, _>(i)?),
                Col::Text => q.bind(row.try_get::<String, _>(i)?),
                Col::OptText => q.bind(row.try_get::<Option<String>, _>(i)?),
            };
        }
        copied += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(TableCount {
        table,
        source: rows.len() as u64,
        copied,
    })
}
