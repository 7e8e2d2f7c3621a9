//! The SQLite store: one file in the data dir, WAL mode, so the admin CLI can work while
//! the service runs.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use super::{
    from_row, AliasRecord, AliasState, BounceReport, BounceTally, NameStatus, PendingRecord,
    SendCounter, SendLogEntry, SendOutcome, Store, StoreError, StsPolicyRecord, ThreadLink,
};
use crate::address::AliasName;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database, creating it (0600, whatever the umask) when it does not exist.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = sqlite_path(url) {
            create_private(&path)?;
        }
        Self::connect(url, true).await
    }

    /// Opens an existing database; never creates one.
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        Self::connect(url, false).await
    }

    async fn connect(url: &str, create: bool) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // An embedded database cannot drop a connection: no ping before each query (it
            // would cost a round trip to the connection's thread every time).
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The pool, for `store migrate` (src/store/migrate.rs).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Removes an alias and everything held for it and records the name as removed (by
    /// expiry when `expired`), in one transaction.
    async fn retire(&self, name: &AliasName, now: i64, expired: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for statement in [
            "DELETE FROM thread_map WHERE alias_id = (SELECT id FROM aliases WHERE name = ?)",
            "DELETE FROM bounce_tokens WHERE alias_id = (SELECT id FROM aliases WHERE name = ?)",
            "DELETE FROM send_log WHERE sender_alias = ?1 OR recipient_alias = ?1",
        ] {
            sqlx::query(statement)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM aliases WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT OR IGNORE INTO removed_aliases (name, removed_at, expired) VALUES (?, ?, ?)",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(expired)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pending WHERE alias = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The file a `sqlite:` URL names (None for an in-memory database).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Creates an empty database file readable only by its owner, unless it exists. SQLite
/// gives its `-wal` and `-shm` files the mode of the database file.
fn create_private(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::File(format!(
            "cannot create the database file {}: {e}",
            path.display()
        ))),
    }
}

/// Writes a consistent copy of the database to `dest` (`VACUUM INTO`), safe while the
/// service runs; `dest` must not exist. The copy is made 0600.
pub async fn backup(url: &str, dest: &std::path::Path) -> Result<(), StoreError> {
    let store = SqliteStore::open_existing(url).await?;
    create_private(dest)?;
    // VACUUM INTO needs a file that is absent or empty: the one just made is empty.
    let result = sqlx::query("VACUUM INTO ?")
        .bind(dest.display().to_string())
        .execute(&store.pool)
        .await;
    store.pool.close().await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(dest);
        return Err(e.into());
    }
    Ok(())
}

fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(db.message().to_string()),
        _ => None,
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_alias(&self, rec: &AliasRecord) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO aliases (name, real_hash, real_sealed, display_name, state, created_at, expires_at, pgp_sealed) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM removed_aliases WHERE name = ?)",
        )
        .bind(rec.name.as_str())
        .bind(&rec.real_hash)
        .bind(&rec.real_sealed)
        .bind(&rec.display_name)
        .bind(rec.state.as_str())
        .bind(rec.created_at)
        .bind(rec.expires_at)
        .bind(&rec.pgp_sealed)
        .bind(rec.name.as_str())
        .execute(&self.pool)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 0 => Err(StoreError::AliasRetired),
            Ok(_) => Ok(()),
            Err(e) => match unique_violation(&e) {
                Some(msg) if msg.contains("real_hash") => Err(StoreError::AddressTaken),
                Some(_) => Err(StoreError::AliasTaken),
                None => Err(e.into()),
            },
        }
    }

    async fn delete_alias(&self, name: &AliasName) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM aliases WHERE name = ?")
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn alias_by_name(&self, name: &AliasName) -> Result<Option<AliasRecord>, StoreError> {
        let row = sqlx::query(select_aliases!("WHERE name = ?"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::alias).transpose()
    }

    async fn alias_by_id(&self, id: i64) -> Result<Option<AliasRecord>, StoreError> {
        let row = sqlx::query(select_aliases!("WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::alias).transpose()
    }

    async fn alias_by_hash(&self, real_hash: &[u8]) -> Result<Option<AliasRecord>, StoreError> {
        let row = sqlx::query(select_aliases!("WHERE real_hash = ?"))
            .bind(real_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::alias).transpose()
    }

    async fn list_aliases(&self) -> Result<Vec<AliasRecord>, StoreError> {
        let rows = sqlx::query(select_aliases!("ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row::alias).collect()
    }

    async fn set_alias_key(
        &self,
        name: &AliasName,
        pgp_sealed: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE aliases SET pgp_sealed = ? WHERE name = ?")
            .bind(pgp_sealed)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_alias_state(
        &self,
        name: &AliasName,
        state: AliasState,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("UPDATE aliases SET state = ? WHERE name = ?")
            .bind(state.as_str())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if state == AliasState::Active {
            sqlx::query("UPDATE bounce_tokens SET counts = 0 WHERE counts = 1 AND alias_id = (SELECT id FROM aliases WHERE name = ?)")
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn record_bounce(&self, report: &BounceReport) -> Result<BounceTally, StoreError> {
        // The INSERT comes first, so the transaction holds SQLite's write lock from its first
        // statement: concurrent reports are serialised, and count and pause see one state.
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO bounce_tokens (token_hash, alias_id, day, hard) VALUES (?, ?, ?, ?)",
        )
        .bind(&report.token_hash[..])
        .bind(report.alias_id)
        .bind(report.day)
        .bind(report.hard)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(BounceTally::Repeated);
        }
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(DISTINCT day) FROM bounce_tokens WHERE alias_id = ? AND hard = 1 AND counts = 1",
        )
        .bind(report.alias_id)
        .fetch_one(&mut *tx)
        .await?;
        let (messages, days): (i64, i64) = (row.get(0), row.get(1));
        let reached = report.hard && messages >= report.limit && days >= report.min_days;
        let paused = reached
            && sqlx::query("UPDATE aliases SET state = 'paused' WHERE id = ? AND state = 'active'")
                .bind(report.alias_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        tx.commit().await?;
        Ok(if paused {
            BounceTally::Paused { messages, days }
        } else {
            BounceTally::Counted { messages, days }
        })
    }

    async fn purge_bounces(&self, before_day: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM bounce_tokens WHERE day < ?")
            .bind(before_day)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn put_threads(&self, links: &[ThreadLink]) -> Result<(), StoreError> {
        // A whole batch in one statement: one round trip to the connection's thread and one
        // commit (a later row for the same issued id replaces an earlier one).
        if links.is_empty() {
            return Ok(());
        }
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT OR REPLACE INTO thread_map (issued, original_sealed, expires_at, alias_id) ",
        );
        insert.push_values(links, |mut row, (issued, sealed, expires, alias_id)| {
            row.push_bind(issued)
                .push_bind(sealed)
                .push_bind(expires)
                .push_bind(alias_id);
        });
        insert.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn thread_original(&self, issued: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT original_sealed FROM thread_map WHERE issued = ? AND expires_at > ?",
        )
        .bind(issued)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn purge_threads(&self, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM thread_map WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    // --- one-way form and opt-out (src/oneway) ---
    async fn add_opt_out(&self, address_hash: &[u8], now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO opt_outs (address_hash, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(address_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn remove_opt_out(&self, address_hash: &[u8]) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM opt_outs WHERE address_hash = ?")
            .bind(address_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn is_opted_out(&self, address_hash: &[u8]) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM opt_outs WHERE address_hash = ?")
            .bind(address_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn count_opt_outs(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM opt_outs")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    async fn take_sends(&self, counters: &[SendCounter]) -> Result<Option<usize>, StoreError> {
        let mut tx = self.pool.begin().await?;
        for (i, c) in counters.iter().enumerate() {
            let taken = sqlx::query(
                "INSERT INTO send_counts (kind, key, period, count, expires_at) VALUES (?, ?, ?, 1, ?) \
                 ON CONFLICT (kind, key, period) DO UPDATE SET count = count + 1 WHERE count < ? \
                 RETURNING count",
            )
            .bind(c.kind)
            .bind(&c.key)
            .bind(c.period)
            .bind(c.expires_at)
            .bind(i64::from(c.limit))
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_none() || c.limit == 0 {
                tx.rollback().await?;
                return Ok(Some(i));
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    async fn purge_send_counts(&self, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM send_counts WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn name_status(&self, name: &AliasName, now: i64) -> Result<NameStatus, StoreError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM aliases WHERE name = ?1), \
             EXISTS (SELECT 1 FROM removed_aliases WHERE name = ?1), \
             EXISTS (SELECT 1 FROM pending WHERE alias = ?1 AND kind = 'register' AND expires_at > ?2)",
        )
        .bind(name.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let (taken, removed, pending): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        Ok(if removed {
            NameStatus::Removed
        } else if taken {
            NameStatus::Taken
        } else if pending {
            NameStatus::Pending
        } else {
            NameStatus::Free
        })
    }

    async fn insert_pending(&self, rec: &PendingRecord, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM pending WHERE alias = ? AND expires_at <= ?")
            .bind(rec.alias.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query(
            "INSERT INTO pending (token_hash, kind, alias, real_hash, real_sealed, display_name, expires_at, lifetime, pgp_sealed) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&rec.token_hash)
        .bind(rec.kind.as_str())
        .bind(rec.alias.as_str())
        .bind(&rec.real_hash)
        .bind(&rec.real_sealed)
        .bind(&rec.display_name)
        .bind(rec.expires_at)
        .bind(rec.lifetime)
        .bind(&rec.pgp_sealed)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if unique_violation(&e).is_some() => return Err(StoreError::AliasTaken),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    async fn pending(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<PendingRecord>, StoreError> {
        let row = sqlx::query(select_pending!("WHERE token_hash = ? AND expires_at > ?"))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::pending).transpose()
    }

    async fn take_pending(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<PendingRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "DELETE FROM pending WHERE token_hash = ? AND expires_at > ? RETURNING ",
            pending_columns!()
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row::pending).transpose()
    }

    async fn retire_alias(&self, name: &AliasName, now: i64) -> Result<bool, StoreError> {
        self.retire(name, now, false).await
    }

    async fn retire_expired_alias(&self, name: &AliasName, now: i64) -> Result<bool, StoreError> {
        self.retire(name, now, true).await
    }

    async fn retire_expired_aliases(&self, now: i64) -> Result<Vec<AliasName>, StoreError> {
        let rows = sqlx::query(
            "SELECT name FROM aliases WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT 10000",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut retired = Vec::new();
        for row in rows {
            let name = from_row::alias_name(&row.try_get::<String, _>(0)?)?;
            if self.retire(&name, now, true).await? {
                retired.push(name);
            }
        }
        Ok(retired)
    }

    async fn name_expired(&self, name: &AliasName) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM removed_aliases WHERE name = ? AND expired = 1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn log_sends(&self, entries: &[SendLogEntry]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for e in entries {
            sqlx::query(
                "INSERT OR REPLACE INTO send_log (queue_id, at, sender_alias, recipient_alias, size, outcome) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&e.queue_id)
            .bind(e.at)
            .bind(&e.sender_alias)
            .bind(&e.recipient_alias)
            .bind(e.size)
            .bind(e.outcome.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_send_outcome(
        &self,
        queue_id: &str,
        outcome: SendOutcome,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE send_log SET outcome = ? WHERE queue_id = ?")
            .bind(outcome.as_str())
            .bind(queue_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn send_log(
        &self,
        alias: Option<&str>,
        since: i64,
        limit: i64,
    ) -> Result<Vec<SendLogEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT queue_id, at, sender_alias, recipient_alias, size, outcome FROM send_log \
             WHERE at >= ?1 AND (?2 IS NULL OR sender_alias = ?2 OR recipient_alias = ?2) \
             ORDER BY at, queue_id LIMIT ?3",
        )
        .bind(since)
        .bind(alias)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row::send_log_entry).collect()
    }

    async fn purge_send_log(&self, before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM send_log WHERE at < ?")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn count_mail(&self, key: &[u8], expires_at: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO mail_counts (key, count, expires_at) VALUES (?, 1, ?) \
             ON CONFLICT (key) DO UPDATE SET count = count + 1 RETURNING count",
        )
        .bind(key)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get(0))
    }

    async fn purge_web(&self, now: i64) -> Result<u64, StoreError> {
        let a = sqlx::query("DELETE FROM pending WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM mail_counts WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn key_fingerprint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT fingerprint FROM key_check WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_key_fingerprint(&self, fingerprint: &[u8], now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO key_check (id, fingerprint, created_at) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(fingerprint)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mta_sts_policy(
        &self,
        domain_hash: &[u8],
        now: i64,
    ) -> Result<Option<StsPolicyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT sealed, expires_at FROM mta_sts_policies WHERE domain_hash = ? AND expires_at > ?",
        )
        .bind(domain_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| from_row::sts_policy(&row, domain_hash))
            .transpose()
    }

    async fn put_mta_sts_policy(&self, rec: &StsPolicyRecord, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM mta_sts_policies WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT OR REPLACE INTO mta_sts_policies (domain_hash, sealed, expires_at) VALUES (?, ?, ?)",
        )
        .bind(&rec.domain_hash)
        .bind(&rec.sealed)
        .bind(rec.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn holds_sealed_data(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM aliases) OR EXISTS (SELECT 1 FROM pending) \
             OR EXISTS (SELECT 1 FROM thread_map) OR EXISTS (SELECT 1 FROM opt_outs) \
             OR EXISTS (SELECT 1 FROM bounce_tokens) OR EXISTS (SELECT 1 FROM mta_sts_policies)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<i64, _>(0) != 0)
    }
}
