//! The PostgreSQL store: one database shared by several `serve` nodes (README "Running
//! several nodes"). Same schema meaning as the SQLite store (migrations/postgres translate
//! migrations/sqlite one file each). Concurrency: unique constraints decide racing
//! registrations, and a bounce report locks its alias row so counting and pausing see one
//! state. The pool reconnects by itself when the database comes back.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::{
    from_row, AliasRecord, AliasState, BounceReport, BounceTally, NameStatus, PendingRecord,
    SendCounter, SendLogEntry, SendOutcome, Store, StoreError, StsPolicyRecord, ThreadLink,
};
use crate::address::AliasName;

/// How long a request waits for a connection before it fails (SMTP then answers 451, the
/// web 503): short, so a database that went away does not hold sessions open.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: PgPool,
}

/// `host:port/database` of a `postgres://` URL, for messages: never the user or password.
pub fn postgres_target(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "(an unparsable postgres url)".into(),
    }
}

impl PostgresStore {
    /// Connects and brings the schema up to date (migrations/postgres).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&store.pool)
            .await?;
        Ok(store)
    }

    /// Connects without changing the schema (read-only commands); a database the service
    /// has not set up yet is an error that says so.
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        let set_up: bool = sqlx::query_scalar("SELECT to_regclass('aliases') IS NOT NULL")
            .fetch_one(&store.pool)
            .await?;
        if !set_up {
            store.pool.close().await;
            return Err(StoreError::File(format!(
                "the PostgreSQL database {} has no remailer tables yet: the service has not \
                 run on it (`remailer serve` creates them)",
                postgres_target(url)
            )));
        }
        Ok(store)
    }

    async fn connect(url: &str) -> Result<Self, StoreError> {
        let target = postgres_target(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Connect {
            target: target.clone(),
            error: redact(&e.to_string()),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connect {
                target,
                error: e.to_string(),
            })?;
        Ok(PostgresStore { pool })
    }

    /// The pool, for `store migrate` (src/store/migrate.rs).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn retire(&self, name: &AliasName, now: i64, expired: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for statement in [
            "DELETE FROM thread_map WHERE alias_id = (SELECT id FROM aliases WHERE name = $1)",
            "DELETE FROM bounce_tokens WHERE alias_id = (SELECT id FROM aliases WHERE name = $1)",
            "DELETE FROM send_log WHERE sender_alias = $1 OR recipient_alias = $1",
        ] {
            sqlx::query(statement)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM aliases WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO removed_aliases (name, removed_at, expired) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(expired)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pending WHERE alias = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// A URL-parsing error could quote the URL: drop anything before an `@`.
fn redact(s: &str) -> String {
    match s.rfind('@') {
        Some(i) => format!("…{}", &s[i..]),
        None => s.to_string(),
    }
}

/// The violated constraint's name (or message) when `e` is a unique violation.
fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(
            db.constraint()
                .map(str::to_string)
                .unwrap_or_else(|| db.message().to_string()),
        ),
        _ => None,
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_alias(&self, rec: &AliasRecord) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO aliases (name, real_hash, real_sealed, display_name, state, created_at, expires_at, pgp_sealed) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM removed_aliases WHERE name = $1)",
        )
        .bind(rec.name.as_str())
        .bind(&rec.real_hash)
        .bind(&rec.real_sealed)
        .bind(&rec.display_name)
        .bind(rec.state.as_str())
        .bind(rec.created_at)
        .bind(rec.expires_at)
        .bind(&rec.pgp_sealed)
        .execute(&self.pool)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 0 => Err(StoreError::AliasRetired),
            Ok(_) => Ok(()),
            Err(e) => match unique_violation(&e) {
                Some(c) if c.contains("real_hash") => Err(StoreError::AddressTaken),
                Some(_) => Err(StoreError::AliasTaken),
                None => Err(e.into()),
            },
        }
    }

    async fn delete_alias(&self, name: &AliasName) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM aliases WHERE name = $1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn alias_by_name(&self, name: &AliasName) -> Result<Option<AliasRecord>, StoreError> {
        let row = sqlx::query(select_aliases!("WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::alias).transpose()
    }

    async fn alias_by_id(&self, id: i64) -> Result<Option<AliasRecord>, StoreError> {
        let row = sqlx::query(select_aliases!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::alias).transpose()
    }

    async fn alias_by_hash(&self, real_hash: &[u8]) -> Result<Option<AliasRecord>, StoreError> {
        let row = sqlx::query(select_aliases!("WHERE real_hash = $1"))
            .bind(real_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::alias).transpose()
    }

    async fn list_aliases(&self) -> Result<Vec<AliasRecord>, StoreError> {
        let rows = sqlx::query(select_aliases!("ORDER BY name COLLATE \"C\""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row::alias).collect()
    }

    async fn set_alias_key(
        &self,
        name: &AliasName,
        pgp_sealed: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE aliases SET pgp_sealed = $1 WHERE name = $2")
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
        // Locks the alias row: a concurrent bounce report waits, so a reactivation and a
        // report cannot interleave (the same order record_bounce takes).
        let id: Option<i64> =
            sqlx::query_scalar("UPDATE aliases SET state = $1 WHERE name = $2 RETURNING id")
                .bind(state.as_str())
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let (Some(id), AliasState::Active) = (id, state) {
            sqlx::query("UPDATE bounce_tokens SET counts = FALSE WHERE counts AND alias_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id.is_some())
    }

    async fn record_bounce(&self, report: &BounceReport) -> Result<BounceTally, StoreError> {
        // The alias row is locked first, so reports about one alias are serialised (under
        // READ COMMITTED each later statement sees the reports committed before): the count
        // and the pause see one state, and no report is lost. A replayed token conflicts on
        // its primary key and changes nothing.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM aliases WHERE id = $1 FOR UPDATE")
            .bind(report.alias_id)
            .fetch_optional(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO bounce_tokens (token_hash, alias_id, day, hard) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
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
            "SELECT COUNT(*), COUNT(DISTINCT day) FROM bounce_tokens WHERE alias_id = $1 AND hard AND counts",
        )
        .bind(report.alias_id)
        .fetch_one(&mut *tx)
        .await?;
        let (messages, days): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let reached = report.hard && messages >= report.limit && days >= report.min_days;
        let paused = reached
            && sqlx::query(
                "UPDATE aliases SET state = 'paused' WHERE id = $1 AND state = 'active'",
            )
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
        let r = sqlx::query("DELETE FROM bounce_tokens WHERE day < $1")
            .bind(before_day)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn put_threads(&self, links: &[ThreadLink]) -> Result<(), StoreError> {
        // A whole batch in one statement (one round trip, one commit). An issued id appears
        // once: a second row for it in one INSERT … ON CONFLICT would be an error.
        let mut seen = std::collections::HashSet::new();
        let mut rows: Vec<&ThreadLink> = links.iter().rev().filter(|l| seen.insert(&l.0)).collect();
        rows.reverse();
        let issued: Vec<&str> = rows.iter().map(|l| l.0.as_str()).collect();
        let sealed: Vec<&[u8]> = rows.iter().map(|l| l.1.as_slice()).collect();
        let expires: Vec<i64> = rows.iter().map(|l| l.2).collect();
        let alias_ids: Vec<i64> = rows.iter().map(|l| l.3).collect();
        sqlx::query(
            "INSERT INTO thread_map (issued, original_sealed, expires_at, alias_id) \
             SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bigint[], $4::bigint[]) \
             ON CONFLICT (issued) DO UPDATE SET \
             original_sealed = EXCLUDED.original_sealed, expires_at = EXCLUDED.expires_at, \
             alias_id = EXCLUDED.alias_id",
        )
        .bind(&issued)
        .bind(&sealed)
        .bind(&expires)
        .bind(&alias_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn thread_original(&self, issued: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT original_sealed FROM thread_map WHERE issued = $1 AND expires_at > $2",
        )
        .bind(issued)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    async fn purge_threads(&self, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM thread_map WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn add_opt_out(&self, address_hash: &[u8], now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO opt_outs (address_hash, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(address_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn remove_opt_out(&self, address_hash: &[u8]) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM opt_outs WHERE address_hash = $1")
            .bind(address_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn is_opted_out(&self, address_hash: &[u8]) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM opt_outs WHERE address_hash = $1")
            .bind(address_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn count_opt_outs(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM opt_outs")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn take_sends(&self, counters: &[SendCounter]) -> Result<Option<usize>, StoreError> {
        let mut tx = self.pool.begin().await?;
        for (i, c) in counters.iter().enumerate() {
            let taken = sqlx::query(
                "INSERT INTO send_counts (kind, key, period, count, expires_at) VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (kind, key, period) DO UPDATE SET count = send_counts.count + 1 \
                 WHERE send_counts.count < $5 RETURNING count",
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
        let r = sqlx::query("DELETE FROM send_counts WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn name_status(&self, name: &AliasName, now: i64) -> Result<NameStatus, StoreError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM aliases WHERE name = $1), \
             EXISTS (SELECT 1 FROM removed_aliases WHERE name = $1), \
             EXISTS (SELECT 1 FROM pending WHERE alias = $1 AND kind = 'register' AND expires_at > $2)",
        )
        .bind(name.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let (taken, removed, pending): (bool, bool, bool) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
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
        sqlx::query("DELETE FROM pending WHERE alias = $1 AND expires_at <= $2")
            .bind(rec.alias.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query(
            "INSERT INTO pending (token_hash, kind, alias, real_hash, real_sealed, display_name, expires_at, lifetime, pgp_sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        let row = sqlx::query(select_pending!("WHERE token_hash = $1 AND expires_at > $2"))
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
            "DELETE FROM pending WHERE token_hash = $1 AND expires_at > $2 RETURNING ",
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
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM aliases WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT 10000",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut retired = Vec::new();
        for name in names {
            let name = from_row::alias_name(&name)?;
            if self.retire(&name, now, true).await? {
                retired.push(name);
            }
        }
        Ok(retired)
    }

    async fn name_expired(&self, name: &AliasName) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM removed_aliases WHERE name = $1 AND expired")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn log_sends(&self, entries: &[SendLogEntry]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO send_log (queue_id, at, sender_alias, recipient_alias, size, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (queue_id) DO UPDATE SET \
                 at = EXCLUDED.at, sender_alias = EXCLUDED.sender_alias, \
                 recipient_alias = EXCLUDED.recipient_alias, size = EXCLUDED.size, outcome = EXCLUDED.outcome",
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
        let r = sqlx::query("UPDATE send_log SET outcome = $1 WHERE queue_id = $2")
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
             WHERE at >= $1 AND ($2::TEXT IS NULL OR sender_alias = $2 OR recipient_alias = $2) \
             ORDER BY at, queue_id COLLATE \"C\" LIMIT $3",
        )
        .bind(since)
        .bind(alias)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row::send_log_entry).collect()
    }

    async fn purge_send_log(&self, before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM send_log WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn count_mail(&self, key: &[u8], expires_at: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO mail_counts (key, count, expires_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET count = mail_counts.count + 1 RETURNING count",
        )
        .bind(key)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn purge_web(&self, now: i64) -> Result<u64, StoreError> {
        let a = sqlx::query("DELETE FROM pending WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM mail_counts WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }

    async fn key_fingerprint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT fingerprint FROM key_check WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_key_fingerprint(&self, fingerprint: &[u8], now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO key_check (id, fingerprint, created_at) VALUES (1, $1, $2) \
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
            "SELECT sealed, expires_at FROM mta_sts_policies WHERE domain_hash = $1 AND expires_at > $2",
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
        sqlx::query("DELETE FROM mta_sts_policies WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO mta_sts_policies (domain_hash, sealed, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (domain_hash) DO UPDATE SET sealed = EXCLUDED.sealed, expires_at = EXCLUDED.expires_at",
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
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM aliases) OR EXISTS (SELECT 1 FROM pending) \
             OR EXISTS (SELECT 1 FROM thread_map) OR EXISTS (SELECT 1 FROM opt_outs) \
             OR EXISTS (SELECT 1 FROM bounce_tokens) OR EXISTS (SELECT 1 FROM mta_sts_policies)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
