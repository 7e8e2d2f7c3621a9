//! The persistent half of the MTA-STS policy cache ([`super::mta_sts`], RFC 8461 §5.1): every
//! policy fetched is written to the store, and read back when the memory cache does not know
//! the domain (after a restart, or on another node), so a policy stays in force for its
//! `max_age` whatever happens to the process or to the policy host in the meantime.
//!
//! A recipient domain names a member's provider, so the store never holds it in clear: a row
//! is keyed by a keyed hash of the lower-cased domain ([`Purpose::MtaStsDomain`]), and what it
//! holds (the domain, the TXT record's id and the policy, whose `mx:` lines name the domain's
//! hosts) is sealed under the master key. A row is used only for the domain sealed in it, so
//! rows cannot be swapped between domains; one that cannot be opened is ignored (logged) and
//! the policy fetched again.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::mta_sts::Policy;
use crate::keys::{Keys, Purpose};
use crate::store::{now_unix, Store, StoreError, StsPolicyRecord};

#[derive(Debug, Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored policy cannot be opened with this master key or is not this domain's")]
    Unreadable,
}

/// A policy as the store gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// The id of the `_mta-sts` TXT record the policy was fetched under.
    pub id: String,
    pub policy: Policy,
    /// Unix seconds: fetched plus `max_age`.
    pub expires_at: i64,
}

/// What is sealed in a row.
#[derive(Serialize, Deserialize)]
struct Sealed {
    domain: String,
    id: String,
    policy: Policy,
}

/// Reads and writes the policies of recipient domains in the store.
#[derive(Clone)]
pub struct PolicyStore {
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
}

impl PolicyStore {
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keys>) -> Self {
        PolicyStore { store, keys }
    }

    fn hash(&self, domain: &str) -> Vec<u8> {
        self.keys
            .mac(Purpose::MtaStsDomain, domain.as_bytes())
            .to_vec()
    }

    /// The unexpired policy stored for `domain` (lower case, no trailing dot), if any.
    pub async fn load(&self, domain: &str) -> Result<Option<StoredPolicy>, CacheError> {
        let Some(row) = self
            .store
            .mta_sts_policy(&self.hash(domain), now_unix())
            .await?
        else {
            return Ok(None);
        };
        let plain = self
            .keys
            .open(&row.sealed)
            .map_err(|_| CacheError::Unreadable)?;
        let sealed: Sealed = serde_json::from_slice(&plain).map_err(|_| CacheError::Unreadable)?;
        if sealed.domain != domain {
            return Err(CacheError::Unreadable);
        }
        Ok(Some(StoredPolicy {
            id: sealed.id,
            policy: sealed.policy,
            expires_at: row.expires_at,
        }))
    }

    /// Stores the policy just fetched for `domain` under the TXT `id` (replacing the one
    /// stored before), until `expires_at`; policies of other domains that expired go.
    pub async fn save(
        &self,
        domain: &str,
        id: &str,
        policy: &Policy,
        expires_at: i64,
    ) -> Result<(), CacheError> {
        let sealed = Sealed {
            domain: domain.to_string(),
            id: id.to_string(),
            policy: policy.clone(),
        };
        let plain = serde_json::to_vec(&sealed).expect("a policy serializes");
        let record = StsPolicyRecord {
            domain_hash: self.hash(domain),
            sealed: self.keys.seal(&plain),
            expires_at,
        };
        Ok(self.store.put_mta_sts_policy(&record, now_unix()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::mta_sts::Mode;

    async fn store() -> (PolicyStore, Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = crate::store::open(&url).await.unwrap();
        let keys = Arc::new(Keys::from_master([3; 32]));
        (PolicyStore::new(store.clone(), keys), store, dir)
    }

    fn policy() -> Policy {
        Policy {
            mode: Mode::Enforce,
            mx: vec!["mx.example.com".into(), "*.example.net".into()],
            max_age: 86_400,
        }
    }

    #[tokio::test]
    async fn a_policy_comes_back_for_its_domain_only_and_never_in_clear() {
        let (cache, store, _dir) = store().await;
        let until = now_unix() + 600;
        cache
            .save("example.com", "20260101", &policy(), until)
            .await
            .unwrap();
        let back = cache.load("example.com").await.unwrap().unwrap();
        assert_eq!(
            back,
            StoredPolicy {
                id: "20260101".into(),
                policy: policy(),
                expires_at: until
            }
        );
        assert_eq!(cache.load("example.org").await.unwrap(), None);

        let row = store
            .mta_sts_policy(&cache.hash("example.com"), now_unix())
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&row.sealed);
        assert!(!text.contains("example") && !text.contains("20260101"));
        assert_ne!(row.domain_hash, b"example.com");

        // Another domain's row copied under this domain's hash is not taken for its policy.
        let moved = StsPolicyRecord {
            domain_hash: cache.hash("example.org"),
            ..row
        };
        store.put_mta_sts_policy(&moved, now_unix()).await.unwrap();
        assert!(matches!(
            cache.load("example.org").await,
            Err(CacheError::Unreadable)
        ));
        // Under another master key nothing can be read.
        let other = PolicyStore::new(store.clone(), Arc::new(Keys::from_master([4; 32])));
        assert_eq!(other.load("example.com").await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_expired_policy_is_not_read_and_goes_at_the_next_save() {
        let (cache, store, _dir) = store().await;
        let now = now_unix();
        cache
            .save("old.example", "1", &policy(), now - 1)
            .await
            .unwrap();
        assert_eq!(cache.load("old.example").await.unwrap(), None);
        cache
            .save("new.example", "1", &policy(), now + 60)
            .await
            .unwrap();
        let hash = cache.hash("old.example");
        assert_eq!(store.mta_sts_policy(&hash, 0).await.unwrap(), None);
        assert!(cache.load("new.example").await.unwrap().is_some());
    }
}
