//! `signup`: self-service registration and removal, confirmed by mail (ARCHITECTURE.md §1,
//! §5). It owns the confirmation tokens (256 random bits; the store keeps only their keyed
//! hash; single use; expiring after `web.token_hours`), the rule that a pending alias name is
//! held until its link expires and a removed one is never given out again, and the limits on
//! confirmation mails: a few a day per address (counted under a keyed hash of the address),
//! `web.mails_per_hour` in all.
//!
//! Nothing here tells the caller whether an address is a member: a request for any address
//! ends the same way. No address and no token is logged.

pub mod mails;

use std::sync::{Arc, Mutex};

use rand::RngCore;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::address::{Alias, RealAddress};
use crate::config::WebConfig;
use crate::delivery::Delivery;
use crate::encrypt::PublicKey;
use crate::keys::Purpose;
use crate::members::{MemberEntry, Members, MembersError};
use crate::store::{now_unix, NameStatus, PendingKind, PendingRecord, StoreError};

#[derive(Debug, Error)]
pub enum SignupError {
    #[error("this alias is already taken")]
    Taken,
    #[error("this alias is held by a registration waiting for confirmation; try again after it expires, or choose another")]
    Pending,
    #[error("this alias was removed and is never given out again, so its old correspondents cannot reach someone else")]
    Removed,
    #[error("too many confirmation mails were sent in the last hour")]
    Busy,
    #[error("{0}")]
    Internal(String),
    /// The database cannot be reached for now (the web answers 503).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for SignupError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            SignupError::Unavailable(e.to_string())
        } else {
            SignupError::Internal(e.to_string())
        }
    }
}

impl From<MembersError> for SignupError {
    fn from(e: MembersError) -> Self {
        match e {
            MembersError::Store(e) => e.into(),
            e => SignupError::Internal(e.to_string()),
        }
    }
}

/// What a valid confirmation link will do (shown on its page before the button is pressed).
#[derive(Debug, Clone)]
pub struct PendingView {
    pub kind: PendingKind,
    pub alias: Alias,
    /// A registration's chosen lifetime in seconds (None: the alias never expires).
    pub lifetime: Option<i64>,
    /// The fingerprint of the key a registration or key change gives (None: none; for a
    /// key change, the key is removed).
    pub fingerprint: Option<String>,
}

/// What pressing the button did.
#[derive(Debug, Clone)]
pub enum Confirmed {
    Registered(Alias),
    Removed(Alias),
    /// The member's key was set (its fingerprint) or removed (None).
    KeyChanged(Alias, Option<String>),
    /// The address got an alias since the link was sent (an address has one alias).
    AddressHasAlias,
    /// Unknown, used or expired.
    Invalid,
}

#[derive(Clone)]
pub struct Signup {
    /// `[web]`: token lifetime, links, mail limits.
    web: WebConfig,
    members: Members,
    delivery: Delivery,
    /// (hour number, mails sent in it), for `web.mails_per_hour`.
    hourly: Arc<Mutex<(i64, u32)>>,
}

/// A fresh token (64 hex digits) and its keyed hash.
fn new_token(members: &Members) -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let hash = token_hash(members, &token);
    (token, hash)
}

fn token_hash(members: &Members, token: &str) -> Vec<u8> {
    members
        .keys()
        .mac(Purpose::Token, token.as_bytes())
        .to_vec()
}

/// A token as it appears in a link: exactly 64 lower-case hex digits.
pub fn well_formed(token: &str) -> bool {
    token.len() == 64
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Signup {
    pub fn new(web: WebConfig, members: Members, delivery: Delivery) -> Self {
        Signup {
            web,
            members,
            delivery,
            hourly: Arc::default(),
        }
    }

    fn ttl(&self) -> i64 {
        self.web.token_hours as i64 * 3600
    }

    fn link(&self, token: &str) -> String {
        format!("{}/confirm/{token}", self.web.base_url())
    }

    fn remove_url(&self) -> String {
        format!("{}/remove", self.web.base_url())
    }

    /// Whether the alias name can be registered; the reason when not.
    pub async fn check_name(&self, alias: &Alias) -> Result<(), SignupError> {
        match self
            .members
            .store()
            .name_status(&alias.name, now_unix())
            .await?
        {
            NameStatus::Free => Ok(()),
            NameStatus::Taken => Err(SignupError::Taken),
            NameStatus::Pending => Err(SignupError::Pending),
            NameStatus::Removed => Err(SignupError::Removed),
        }
    }

    /// Counts one mail against the hourly budget; false when it is spent.
    fn hourly_budget(&self) -> bool {
        let hour = now_unix() / 3600;
        let mut slot = self.hourly.lock().expect("hourly lock");
        if slot.0 != hour {
            *slot = (hour, 0);
        }
        if slot.1 >= self.web.mails_per_hour {
            return false;
        }
        slot.1 += 1;
        true
    }

    /// Counts one mail to `real` today; false when the address had its share.
    async fn address_budget(&self, real: &RealAddress) -> Result<bool, SignupError> {
        let day = now_unix() / 86_400;
        let key = self.members.keys().mac(
            Purpose::MailLimit,
            format!("{day}\n{}", real.normalized()).as_bytes(),
        );
        let count = self
            .members
            .store()
            .count_mail(&key, (day + 2) * 86_400)
            .await?;
        if count > self.web.mails_per_address_day as i64 {
            tracing::info!("confirmation mail not sent: the address had its share today");
            return Ok(false);
        }
        Ok(true)
    }

    /// Both budgets: Err(Busy) for the hourly one (the page says so), Ok(false) for the
    /// address's own (the page must not say so).
    async fn may_mail(&self, real: &RealAddress) -> Result<bool, SignupError> {
        if !self.hourly_budget() {
            tracing::warn!("confirmation mails: the hourly limit is reached");
            return Err(SignupError::Busy);
        }
        self.address_budget(real).await
    }

    /// Signs and spools the mail in the background: the answer to the form comes as fast
    /// whether a mail goes out or not, so its timing tells nobody who is a member.
    async fn send(&self, to: &RealAddress, message: Vec<u8>) -> Result<(), SignupError> {
        let delivery = self.delivery.clone();
        let to = to.clone();
        tokio::spawn(async move {
            if let Err(e) = delivery.queue_notice(&to, message).await {
                tracing::error!(error = %e, "could not queue a confirmation mail");
            }
        });
        Ok(())
    }

    /// [`Self::send`] encrypted to the key a registration gave (the confirmation link then
    /// reaches only who holds the key's secret part).
    async fn send_to_key(
        &self,
        to: &RealAddress,
        message: Vec<u8>,
        key: PublicKey,
        alias: String,
    ) -> Result<(), SignupError> {
        let delivery = self.delivery.clone();
        let to = to.clone();
        tokio::spawn(async move {
            let queued = delivery.queue_notice_with_key(&to, message, Some(&key), Some(&alias));
            if let Err(e) = queued.await {
                tracing::error!(error = %e, "could not queue a confirmation mail");
            }
        });
        Ok(())
    }

    /// A registration from the form. Ok means "check your mailbox", for any address.
    pub async fn request_register(
        &self,
        alias: &Alias,
        real: &RealAddress,
        display_name: Option<String>,
        lifetime: Option<i64>,
        pgp: Option<PublicKey>,
    ) -> Result<(), SignupError> {
        self.check_name(alias).await?;
        if !self.may_mail(real).await? {
            return Ok(());
        }
        let domain = self.members.domain();
        if let Some(existing) = self.members.by_real(real).await? {
            let mail = mails::already_member(
                domain,
                real,
                &existing.member.alias,
                alias,
                &self.remove_url(),
            );
            return self.send(real, mail).await;
        }
        let (token, hash) = new_token(&self.members);
        let rec = PendingRecord {
            token_hash: hash,
            kind: PendingKind::Register,
            alias: alias.name.clone(),
            real_hash: self.members.keys().address_hash(real).to_vec(),
            real_sealed: self.members.keys().seal(real.expose().as_bytes()),
            display_name,
            expires_at: now_unix() + self.ttl(),
            lifetime,
            pgp_sealed: pgp.as_ref().map(|k| self.members.keys().seal(k.bytes())),
        };
        match self.members.store().insert_pending(&rec, now_unix()).await {
            Err(StoreError::AliasTaken) => return Err(SignupError::Pending),
            other => other?,
        }
        tracing::info!(alias = %alias, "registration waiting for confirmation");
        let hours = self.web.token_hours;
        let mail = mails::confirm_register(domain, real, alias, &self.link(&token), hours);
        match pgp {
            Some(key) => self.send_to_key(real, mail, key, alias.address()).await,
            None => self.send(real, mail).await,
        }
    }

    /// For a request from the form about the member at `real`: None when no mail may go to
    /// it now or it is no member's address; else the member and the link token of a new
    /// pending record of `kind` (`pgp_sealed`: the key a `Key` request sets).
    async fn pending_for_member(
        &self,
        real: &RealAddress,
        kind: PendingKind,
        pgp_sealed: Option<Vec<u8>>,
    ) -> Result<Option<(MemberEntry, String)>, SignupError> {
        if !self.may_mail(real).await? {
            return Ok(None);
        }
        let Some(member) = self.members.by_real(real).await? else {
            return Ok(None);
        };
        let (token, hash) = new_token(&self.members);
        let rec = PendingRecord {
            token_hash: hash,
            kind,
            alias: member.member.alias.name.clone(),
            real_hash: self.members.keys().address_hash(real).to_vec(),
            real_sealed: Vec::new(),
            display_name: None,
            expires_at: now_unix() + self.ttl(),
            lifetime: None,
            pgp_sealed,
        };
        self.members
            .store()
            .insert_pending(&rec, now_unix())
            .await?;
        Ok(Some((member, token)))
    }

    /// A removal from the form. Ok means "check your mailbox", for any address; only a
    /// member's address gets a mail, naming its alias.
    pub async fn request_remove(&self, real: &RealAddress) -> Result<(), SignupError> {
        let Some((member, token)) = self
            .pending_for_member(real, PendingKind::Remove, None)
            .await?
        else {
            return Ok(());
        };
        let alias = member.member.alias;
        let hours = self.web.token_hours;
        let mail = mails::confirm_remove(
            self.members.domain(),
            real,
            &alias,
            &self.link(&token),
            hours,
        );
        self.send(real, mail).await
    }

    /// A key change from the form (`pgp` None: remove the key). Ok means "check your
    /// mailbox", for any address; only a member's address gets a mail. The confirmation is
    /// encrypted to the member's current key while it is usable (whoever changes the key
    /// must be able to read mail encrypted to it; a provider who reads the mailbox cannot
    /// swap in a key of its own), else to the new key, else (a removal after the key
    /// expired) in clear.
    pub async fn request_key(
        &self,
        real: &RealAddress,
        pgp: Option<PublicKey>,
    ) -> Result<(), SignupError> {
        let sealed = pgp.as_ref().map(|k| self.members.keys().seal(k.bytes()));
        let Some((member, token)) = self
            .pending_for_member(real, PendingKind::Key, sealed)
            .await?
        else {
            return Ok(());
        };
        let alias = member.member.alias;
        let fingerprint = pgp.as_ref().map(|k| k.fingerprint().to_string());
        let mail = mails::confirm_key(
            self.members.domain(),
            real,
            &alias,
            fingerprint.as_deref(),
            &self.link(&token),
            self.web.token_hours,
        );
        let now = now_unix().max(0) as u64;
        let current = member
            .pgp
            .filter(|k| k.usable_at(now))
            .map(|k| (*k).clone());
        match current.or(pgp) {
            Some(key) => self.send_to_key(real, mail, key, alias.address()).await,
            None => {
                let delivery = self.delivery.clone();
                let to = real.clone();
                tokio::spawn(async move {
                    if let Err(e) = delivery.queue_notice_with_key(&to, mail, None, None).await {
                        tracing::error!(error = %e, "could not queue a confirmation mail");
                    }
                });
                Ok(())
            }
        }
    }

    /// What the link would do, without doing it (a GET changes nothing).
    pub async fn peek(&self, token: &str) -> Result<Option<PendingView>, SignupError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let hash = token_hash(&self.members, token);
        let found = self.members.store().pending(&hash, now_unix()).await?;
        let Some(r) = found.filter(|r| same(&r.token_hash, &hash)) else {
            return Ok(None);
        };
        let fingerprint = match &r.pgp_sealed {
            Some(sealed) => Some(open_key(&self.members, sealed)?.fingerprint().to_string()),
            None => None,
        };
        Ok(Some(PendingView {
            kind: r.kind,
            lifetime: r.lifetime,
            alias: Alias::new(r.alias, self.members.domain()),
            fingerprint,
        }))
    }

    /// Does what the link stands for; a second call with the same token gets `Invalid`.
    pub async fn confirm(&self, token: &str) -> Result<Confirmed, SignupError> {
        if !well_formed(token) {
            return Ok(Confirmed::Invalid);
        }
        let hash = token_hash(&self.members, token);
        let Some(rec) = self.members.store().take_pending(&hash, now_unix()).await? else {
            return Ok(Confirmed::Invalid);
        };
        if !same(&rec.token_hash, &hash) {
            return Ok(Confirmed::Invalid);
        }
        let alias = Alias::new(rec.alias.clone(), self.members.domain());
        match rec.kind {
            PendingKind::Register => self.activate(alias, rec).await,
            PendingKind::Remove => self.remove(alias, rec).await,
            PendingKind::Key => self.change_key(alias, rec).await,
        }
    }

    async fn activate(&self, alias: Alias, rec: PendingRecord) -> Result<Confirmed, SignupError> {
        let opened = self
            .members
            .keys()
            .open(&rec.real_sealed)
            .map_err(|e| SignupError::Internal(e.to_string()))?;
        let real = RealAddress::parse_any(&String::from_utf8_lossy(&opened))
            .map_err(|e| SignupError::Internal(e.to_string()))?;
        let pgp = match &rec.pgp_sealed {
            Some(sealed) => Some(open_key(&self.members, sealed)?),
            None => None,
        };
        match self
            .members
            .add_with_key(
                &alias,
                &real,
                rec.display_name,
                rec.lifetime.map(|secs| now_unix() + secs),
                pgp.as_ref(),
            )
            .await
        {
            Ok(()) => {}
            Err(MembersError::Store(StoreError::AddressTaken)) => {
                return Ok(Confirmed::AddressHasAlias)
            }
            Err(MembersError::Store(StoreError::AliasTaken | StoreError::AliasRetired)) => {
                return Ok(Confirmed::Invalid)
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(alias = %alias, "alias registered on the web");
        let mail = mails::welcome(self.members.domain(), &real, &alias, &self.remove_url());
        self.send(&real, mail).await?;
        Ok(Confirmed::Registered(alias))
    }

    /// Whether the alias still belongs to the address a link was mailed to.
    async fn still_theirs(&self, alias: &Alias, rec: &PendingRecord) -> Result<bool, SignupError> {
        let Some(member) = self.members.by_alias(&alias.name).await? else {
            return Ok(false);
        };
        let current = self.members.keys().address_hash(&member.member.real);
        Ok(same(&current, &rec.real_hash))
    }

    async fn change_key(&self, alias: Alias, rec: PendingRecord) -> Result<Confirmed, SignupError> {
        if !self.still_theirs(&alias, &rec).await? {
            return Ok(Confirmed::Invalid);
        }
        let key = match &rec.pgp_sealed {
            Some(sealed) => Some(open_key(&self.members, sealed)?),
            None => None,
        };
        if !self.members.set_key(&alias.name, key.as_ref()).await? {
            return Ok(Confirmed::Invalid);
        }
        tracing::info!(alias = %alias, set = key.is_some(), "OpenPGP key changed on the web");
        let fingerprint = key.map(|k| k.fingerprint().to_string());
        Ok(Confirmed::KeyChanged(alias, fingerprint))
    }

    async fn remove(&self, alias: Alias, rec: PendingRecord) -> Result<Confirmed, SignupError> {
        // The alias must still belong to the address the link was mailed to.
        if !self.still_theirs(&alias, &rec).await? {
            return Ok(Confirmed::Invalid);
        }
        match self.members.remove(&alias.name).await {
            Ok(()) => {}
            Err(MembersError::NoSuchAlias(_)) => return Ok(Confirmed::Invalid),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(alias = %alias, "alias removed on the web");
        Ok(Confirmed::Removed(alias))
    }

    /// Drops expired links and counters, once an hour, until the process ends.
    pub fn spawn_purge(&self) -> tokio::task::JoinHandle<()> {
        let store = self.members.store().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = store.purge_web(now_unix()).await {
                    tracing::warn!(error = %e, "could not purge expired confirmation links");
                }
            }
        })
    }
}

/// The key a pending registration holds (validated when it was given).
fn open_key(members: &Members, sealed: &[u8]) -> Result<PublicKey, SignupError> {
    let bytes = (members.keys().open(sealed)).map_err(|e| SignupError::Internal(e.to_string()))?;
    PublicKey::load(&bytes).map_err(|e| SignupError::Internal(e.to_string()))
}

/// Constant-time equality of two hashes.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
