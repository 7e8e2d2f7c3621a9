//! `members`: aliases and the real addresses they stand for, in clear only in memory. It
//! seals real addresses before they reach the [`Store`] and finds them by keyed hash, so the
//! store never holds an address in clear.
//!
//! Lookups are cached for [`CACHE_TTL`] (hits and misses, at most [`CACHE_MAX`] entries, in a
//! moka cache), which keeps the store off the hot path; changes made in this process clear
//! the cache at once, changes made by another process (the admin CLI, another node) are seen
//! within that time.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::address::{AddressError, Alias, AliasName, Domain, Member, RealAddress};
use crate::encrypt::PublicKey;
use crate::keys::Keys;
use crate::store::{
    now_unix, AliasRecord, AliasState, BounceReport, BounceTally, NameStatus, Store, StoreError,
};

#[derive(Debug, Error)]
pub enum MembersError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no alias named {0}")]
    NoSuchAlias(String),
    #[error("a real address may not itself be an alias of this service")]
    AddressIsAlias,
    #[error("the alias name {0} is held by a registration waiting for confirmation")]
    AliasPending(String),
}

/// A member as the admin sees them.
#[derive(Debug, Clone)]
pub struct MemberEntry {
    pub id: i64,
    pub member: Member,
    pub state: AliasState,
    pub created_at: i64,
    /// Unix seconds from which the alias is expired; None: never.
    pub expires_at: Option<i64>,
    /// The member's OpenPGP key: mail and notices to them are encrypted to it.
    pub pgp: Option<Arc<PublicKey>>,
}

impl MemberEntry {
    /// Whether the alias has expired at `now` (it is then refused and retired).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// How long a lookup result is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// At most this many lookups are cached (least recently used ones go first).
pub const CACHE_MAX: u64 = 50_000;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Hash([u8; 32]),
    Name(String),
    Id(i64),
}

type Cache = moka::sync::Cache<Key, Option<MemberEntry>>;

#[derive(Clone)]
pub struct Members {
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
    domain: Domain,
    cache: Cache,
}

impl Members {
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keys>, domain: Domain) -> Self {
        Members {
            store,
            keys,
            domain,
            cache: Cache::builder()
                .max_capacity(CACHE_MAX)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Binds a new active alias to a real address. A name that was removed is never given
    /// out again, and one held by a pending web registration is not given to someone else.
    pub async fn add(&self, alias: &Alias, real: &RealAddress) -> Result<(), MembersError> {
        self.add_until(alias, real, None).await
    }

    /// [`Members::add`] for an alias that expires at `expires_at` (Unix seconds), if given.
    pub async fn add_until(
        &self,
        alias: &Alias,
        real: &RealAddress,
        expires_at: Option<i64>,
    ) -> Result<(), MembersError> {
        match self.store.name_status(&alias.name, now_unix()).await? {
            NameStatus::Pending => Err(MembersError::AliasPending(alias.name.to_string())),
            _ => self.add_confirmed(alias, real, None, expires_at).await,
        }
    }

    /// Binds a new active alias whose name was already checked (or held for this registration).
    pub async fn add_confirmed(
        &self,
        alias: &Alias,
        real: &RealAddress,
        display_name: Option<String>,
        expires_at: Option<i64>,
    ) -> Result<(), MembersError> {
        self.add_with_key(alias, real, display_name, expires_at, None)
            .await
    }

    /// [`Members::add_confirmed`] with the member's OpenPGP key (stored sealed), in one insert.
    pub async fn add_with_key(
        &self,
        alias: &Alias,
        real: &RealAddress,
        display_name: Option<String>,
        expires_at: Option<i64>,
        pgp: Option<&PublicKey>,
    ) -> Result<(), MembersError> {
        if self.domain.covers(real.domain()) {
            return Err(MembersError::AddressIsAlias);
        }
        let rec = AliasRecord {
            id: 0,
            name: alias.name.clone(),
            real_hash: self.keys.address_hash(real).to_vec(),
            real_sealed: self.keys.seal(real.expose().as_bytes()),
            display_name,
            state: AliasState::Active,
            created_at: now_unix(),
            expires_at,
            pgp_sealed: pgp.map(|k| self.keys.seal(k.bytes())),
        };
        self.store.insert_alias(&rec).await?;
        self.clear_cache();
        Ok(())
    }

    /// Forgets every cached lookup; no lookup after this returns an entry cached before.
    fn clear_cache(&self) {
        self.cache.invalidate_all();
    }

    /// A cached lookup: `fetch` runs on a miss or an expired entry.
    async fn lookup<F>(&self, key: Key, fetch: F) -> Result<Option<MemberEntry>, MembersError>
    where
        F: std::future::Future<Output = Result<Option<AliasRecord>, StoreError>>,
    {
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let found = match fetch.await? {
            Some(r) => Some(self.entry(r)?),
            None => None,
        };
        self.cache.insert(key, found.clone());
        Ok(found)
    }

    /// Removes an alias and what the store holds for it; the name is never given out again.
    pub async fn remove(&self, name: &AliasName) -> Result<(), MembersError> {
        if self.store.retire_alias(name, now_unix()).await? {
            self.clear_cache();
            Ok(())
        } else {
            Err(MembersError::NoSuchAlias(name.to_string()))
        }
    }

    /// Sets (Some) or removes (None) a member's OpenPGP key; false when no such alias.
    pub async fn set_key(
        &self,
        name: &AliasName,
        pgp: Option<&PublicKey>,
    ) -> Result<bool, MembersError> {
        let sealed = pgp.map(|k| self.keys.seal(k.bytes()));
        let changed = self.store.set_alias_key(name, sealed.as_deref()).await?;
        self.clear_cache();
        Ok(changed)
    }

    /// Retires an expired alias like a removal (the name is never given out again, and
    /// remembered as expired); false when it was already gone.
    pub async fn expire(&self, name: &AliasName) -> Result<bool, MembersError> {
        let retired = self.store.retire_expired_alias(name, now_unix()).await?;
        self.clear_cache();
        if retired {
            tracing::info!(alias = %name, "expired alias retired");
        }
        Ok(retired)
    }

    /// Retires every alias whose expiry has passed (the periodic purge); returns how many.
    pub async fn expire_due(&self) -> Result<usize, MembersError> {
        let retired = self.store.retire_expired_aliases(now_unix()).await?;
        if !retired.is_empty() {
            self.clear_cache();
        }
        Ok(retired.len())
    }

    /// Whether `name` was retired because it expired.
    pub async fn name_expired(&self, name: &AliasName) -> Result<bool, MembersError> {
        Ok(self.store.name_expired(name).await?)
    }

    /// Records a failure report for a token (see [`Store::record_bounce`]); a pause clears
    /// the lookup cache.
    pub async fn record_bounce(&self, report: &BounceReport) -> Result<BounceTally, MembersError> {
        let tally = self.store.record_bounce(report).await?;
        if matches!(tally, BounceTally::Paused { .. }) {
            self.clear_cache();
        }
        Ok(tally)
    }

    /// Sets an alias's state (active also stops earlier hard bounces from counting); false
    /// when no such alias.
    pub async fn set_state(
        &self,
        name: &AliasName,
        state: AliasState,
    ) -> Result<bool, MembersError> {
        let changed = self.store.set_alias_state(name, state).await?;
        self.clear_cache();
        Ok(changed)
    }

    pub async fn list(&self) -> Result<Vec<MemberEntry>, MembersError> {
        let records = self.store.list_aliases().await?;
        records.into_iter().map(|r| self.entry(r)).collect()
    }

    /// The member holding this alias, whatever its state.
    pub async fn by_alias(&self, name: &AliasName) -> Result<Option<MemberEntry>, MembersError> {
        self.lookup(
            Key::Name(name.as_str().to_string()),
            self.store.alias_by_name(name),
        )
        .await
    }

    pub async fn by_id(&self, id: i64) -> Result<Option<MemberEntry>, MembersError> {
        self.lookup(Key::Id(id), self.store.alias_by_id(id)).await
    }

    /// The member whose real address this is, whatever its state.
    pub async fn by_real(&self, real: &RealAddress) -> Result<Option<MemberEntry>, MembersError> {
        let hash = self.keys.address_hash(real);
        self.lookup(Key::Hash(hash), self.store.alias_by_hash(&hash))
            .await
    }

    fn entry(&self, r: AliasRecord) -> Result<MemberEntry, MembersError> {
        let opened = self
            .keys
            .open(&r.real_sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let text = String::from_utf8(opened)
            .map_err(|_| StoreError::Corrupt("sealed address is not UTF-8".into()))?;
        // The parse error would name the address's domain, and errors reach log lines.
        let real = RealAddress::parse_any(&text)
            .map_err(|_| StoreError::Corrupt("a sealed address does not parse".into()))?;
        let pgp = match &r.pgp_sealed {
            Some(sealed) => Some(Arc::new(self.open_key(sealed)?)),
            None => None,
        };
        Ok(MemberEntry {
            pgp,
            id: r.id,
            member: Member {
                alias: Alias::new(r.name, &self.domain),
                real,
                display_name: r.display_name,
            },
            state: r.state,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

impl Members {
    /// A stored key, opened and read (validated when it was stored; it may have expired).
    fn open_key(&self, sealed: &[u8]) -> Result<PublicKey, MembersError> {
        let bytes = self
            .keys
            .open(sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        PublicKey::load(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("a stored OpenPGP key: {e}")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn members(dir: &std::path::Path) -> Members {
        let store = crate::store::open(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .unwrap();
        Members::new(
            store,
            Arc::new(Keys::from_master([1; 32])),
            Domain::parse("remailer.test").unwrap(),
        )
    }

    /// Members on a fresh store in `dir` with one member, `ann` (for `ann@mail.example`),
    /// and the id of her alias.
    async fn with_ann(dir: &std::path::Path) -> (Members, Alias, i64) {
        let m = members(dir).await;
        let d = m.domain().clone();
        let ann = Alias::parse("ann", &d).unwrap();
        m.add(&ann, &RealAddress::parse("ann@mail.example", &d).unwrap())
            .await
            .unwrap();
        let id = m.by_alias(&ann.name).await.unwrap().unwrap().id;
        (m, ann, id)
    }

    /// A failure report for the token `[token; 32]` about the alias `alias_id`, pausing it
    /// at `limit` counted messages from `min_days` distinct days.
    fn bounce(
        alias_id: i64,
        token: u8,
        day: i64,
        hard: bool,
        limit: i64,
        min_days: i64,
    ) -> BounceReport {
        BounceReport {
            token_hash: [token; 32],
            alias_id,
            day,
            hard,
            limit,
            min_days,
        }
    }

    #[tokio::test]
    async fn add_find_remove_and_the_database_holds_no_clear_address() {
        let dir = tempfile::tempdir().unwrap();
        let m = members(dir.path()).await;
        let d = m.domain().clone();
        let ann = Alias::parse("ann", &d).unwrap();
        let real = RealAddress::parse("Ann.Lee@Mail.Example", &d).unwrap();
        m.add(&ann, &real).await.unwrap();
        let found = m
            .by_real(&RealAddress::parse("ann.lee@mail.example", &d).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.member.alias, ann);
        assert_eq!(found.member.real.expose(), "Ann.Lee@mail.example");
        assert!(m.by_alias(&ann.name).await.unwrap().is_some());

        let other = Alias::parse("ann2", &d).unwrap();
        assert!(matches!(
            m.add(&other, &real).await,
            Err(MembersError::Store(StoreError::AddressTaken))
        ));
        let real2 = RealAddress::parse("x@y.example", &d).unwrap();
        assert!(matches!(
            m.add(&ann, &real2).await,
            Err(MembersError::Store(StoreError::AliasTaken))
        ));

        let db = std::fs::read(dir.path().join("t.db")).unwrap();
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(!String::from_utf8_lossy(&bytes)
                .to_lowercase()
                .contains("ann.lee@"));
        }
        m.remove(&ann.name).await.unwrap();
        assert!(matches!(
            m.remove(&ann.name).await,
            Err(MembersError::NoSuchAlias(_))
        ));
        assert!(m.by_real(&real).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn lookups_are_cached_for_the_ttl_and_cleared_by_a_change_made_here() {
        let dir = tempfile::tempdir().unwrap();
        let (m, ann, _) = with_ann(dir.path()).await;
        let d = m.domain().clone();
        let bob = Alias::parse("bob", &d).unwrap();
        assert!(m.by_alias(&ann.name).await.unwrap().is_some());
        // A miss is cached too; adding here clears the cache at once.
        assert!(m.by_alias(&bob.name).await.unwrap().is_none());
        m.add(&bob, &RealAddress::parse("bob@mail.example", &d).unwrap())
            .await
            .unwrap();
        assert!(m.by_alias(&bob.name).await.unwrap().is_some());
        // A change behind the cache's back (another process) is seen after the TTL.
        assert!(m.by_alias(&ann.name).await.unwrap().is_some());
        assert!(m.store().retire_alias(&ann.name, now_unix()).await.unwrap());
        assert!(m.by_alias(&ann.name).await.unwrap().is_some(), "cached");
        tokio::time::sleep(CACHE_TTL + Duration::from_millis(200)).await;
        assert!(m.by_alias(&ann.name).await.unwrap().is_none(), "expired");
    }

    #[tokio::test]
    async fn bounces_count_once_per_token_and_pause_over_two_days() {
        let dir = tempfile::tempdir().unwrap();
        let (m, ann, id) = with_ann(dir.path()).await;
        let report = |n: u8, day: i64, hard: bool| bounce(id, n, day, hard, 2, 2);
        let tally = |messages, days| BounceTally::Counted { messages, days };
        assert_eq!(
            m.record_bounce(&report(1, 100, true)).await.unwrap(),
            tally(1, 1)
        );
        assert_eq!(
            m.record_bounce(&report(1, 100, true)).await.unwrap(),
            BounceTally::Repeated
        );
        assert_eq!(
            m.record_bounce(&report(2, 100, false)).await.unwrap(),
            tally(1, 1)
        );
        assert_eq!(
            m.record_bounce(&report(3, 100, true)).await.unwrap(),
            tally(2, 1)
        );
        assert_eq!(
            m.record_bounce(&report(4, 101, true)).await.unwrap(),
            BounceTally::Paused {
                messages: 3,
                days: 2
            }
        );
        let state = || async { m.by_alias(&ann.name).await.unwrap().unwrap().state };
        assert_eq!(state().await, AliasState::Paused);
        assert_eq!(
            m.record_bounce(&report(5, 101, true)).await.unwrap(),
            tally(4, 2)
        );

        // Reactivation starts the count afresh; a replayed token still counts nothing.
        assert!(m.set_state(&ann.name, AliasState::Active).await.unwrap());
        assert_eq!(
            m.record_bounce(&report(4, 101, true)).await.unwrap(),
            BounceTally::Repeated
        );
        assert_eq!(
            m.record_bounce(&report(6, 102, true)).await.unwrap(),
            tally(1, 1)
        );
        assert_eq!(state().await, AliasState::Active);

        // Records of expired tokens are purged (such tokens are refused at RCPT anyway).
        assert_eq!(m.store().purge_bounces(101).await.unwrap(), 3);
        assert_eq!(
            m.record_bounce(&report(1, 100, true)).await.unwrap(),
            BounceTally::Paused {
                messages: 2,
                days: 2
            }
        );
    }

    #[tokio::test]
    async fn expired_aliases_are_retired_once_and_their_names_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let m = members(dir.path()).await;
        let d = m.domain().clone();
        let now = now_unix();
        let add = |name: &str, until: Option<i64>| {
            let m = m.clone();
            let d = d.clone();
            let name = name.to_string();
            async move {
                let real = RealAddress::parse(&format!("{name}@mail.example"), &d).unwrap();
                m.add_until(&Alias::parse(&name, &d).unwrap(), &real, until)
                    .await
            }
        };
        add("old", Some(now - 1)).await.unwrap();
        add("soon", Some(now + 3600)).await.unwrap();
        add("always", None).await.unwrap();
        let name = |n: &str| AliasName::parse(n).unwrap();
        let old = m.by_alias(&name("old")).await.unwrap().unwrap();
        assert!(old.expired(now) && old.expires_at == Some(now - 1));
        assert!(!m
            .by_alias(&name("soon"))
            .await
            .unwrap()
            .unwrap()
            .expired(now));

        assert_eq!(m.expire_due().await.unwrap(), 1);
        assert_eq!(m.expire_due().await.unwrap(), 0);
        assert!(m.by_alias(&name("old")).await.unwrap().is_none());
        assert!(m.name_expired(&name("old")).await.unwrap());
        assert!(!m.name_expired(&name("soon")).await.unwrap());
        assert!(matches!(
            add("old", None).await,
            Err(MembersError::Store(StoreError::AliasRetired))
        ));
        // a plain removal is not an expiry
        m.remove(&name("always")).await.unwrap();
        assert!(!m.name_expired(&name("always")).await.unwrap());
        assert!(!m.expire(&name("always")).await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_reports_for_one_token_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let (m, _, id) = with_ann(dir.path()).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move { m.record_bounce(&bounce(id, 9, 100, true, 1, 1)).await })
            })
            .collect();
        let mut tallies = Vec::new();
        for t in tasks {
            tallies.push(t.await.unwrap().unwrap());
        }
        let counted = tallies
            .iter()
            .filter(|t| **t != BounceTally::Repeated)
            .count();
        assert_eq!(counted, 1, "{tallies:?}");
        assert!(tallies.contains(&BounceTally::Paused {
            messages: 1,
            days: 1
        }));
    }
}
