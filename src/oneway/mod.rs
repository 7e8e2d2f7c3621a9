//! `oneway`: the one-way anonymous form and recipient opt-out (ARCHITECTURE.md §1 flows 4
//! and 5). [`OneWay::send`] checks a draft against every rule and limit and queues one
//! plain-text message from `no-reply@DOMAIN` through the normal outbound path (DKIM, VERP
//! bounce address, spool, retries); [`OneWay::request_opt_out`] mails a confirmation link
//! and [`OneWay::confirm_opt_out`] records the opt-out. [`OptOuts`] is the opt-out list
//! itself (keyed hashes only), shared with the admin CLI.
//!
//! Logs name queue ids, sizes and which rule refused, never an address, a subject, a body,
//! a token or a client address.

mod limits;
pub mod message;
pub mod token;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use thiserror::Error;

use crate::address::{AliasName, Domain, RealAddress};
use crate::bounce::BounceToken;
use crate::config::WebConfig;
use crate::delivery::Delivery;
use crate::keys::Keys;
use crate::members::Members;
use crate::store::{now_unix, AliasState, Store, StoreError};
pub use limits::ClientId;
use limits::ClientLimiter;

/// The local part one-way mail comes from; mail to it is refused at RCPT (see `policy`).
pub const NO_REPLY: &str = "no-reply";
/// Longest subject, in characters.
pub const MAX_SUBJECT: usize = 200;
/// Opt-out confirmation mails one address receives per day, at most.
pub const OPT_OUT_MAILS_PER_DAY: u32 = 3;

const KIND_RECIPIENT: &str = "one-way-recipient";
const KIND_GLOBAL: &str = "one-way-global";
const KIND_OPT_OUT_MAIL: &str = "opt-out-mail";

/// Why a draft or an opt-out request was refused, in words for the page.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Refusal {
    #[error("The one-way form is switched off on this service.")]
    Disabled,
    #[error("This is not a valid email address (expected name@domain).")]
    BadAddress,
    #[error("Addresses at {0} cannot be written to, except members' aliases.")]
    OwnDomain(String),
    #[error("This alias does not accept mail at the moment.")]
    AliasPaused,
    #[error("This address has asked not to receive messages from this form.")]
    OptedOut,
    #[error("The subject must be one line of at most {MAX_SUBJECT} characters.")]
    BadSubject,
    #[error("The message is empty.")]
    EmptyBody,
    #[error("The message is too long: at most {0} bytes.")]
    BodyTooLarge(usize),
    #[error("Too many messages from you: try again in an hour.")]
    ClientLimit,
    #[error("This address has received as many messages from this form as it may today; try again tomorrow.")]
    RecipientLimit,
    #[error("The form has sent as many messages as it may this hour; try again later.")]
    GlobalLimit,
    #[error("A temporary problem on the server; please try again later.")]
    Temporary,
}

impl Refusal {
    /// The form field the refusal is about, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Refusal::BadAddress
            | Refusal::OwnDomain(_)
            | Refusal::AliasPaused
            | Refusal::OptedOut
            | Refusal::RecipientLimit => Some("to"),
            Refusal::BadSubject => Some("subject"),
            Refusal::EmptyBody | Refusal::BodyTooLarge(_) => Some("body"),
            _ => None,
        }
    }

    /// The HTTP status of the page that shows it.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Disabled => 404,
            Refusal::ClientLimit | Refusal::RecipientLimit | Refusal::GlobalLimit => 429,
            Refusal::Temporary => 503,
            _ => 422,
        }
    }

    /// A short name for logs.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::BadAddress => "bad-address",
            Refusal::OwnDomain(_) => "own-domain",
            Refusal::AliasPaused => "alias-paused",
            Refusal::OptedOut => "opted-out",
            Refusal::BadSubject => "bad-subject",
            Refusal::EmptyBody => "empty-body",
            Refusal::BodyTooLarge(_) => "body-too-large",
            Refusal::ClientLimit => "client-limit",
            Refusal::RecipientLimit => "recipient-limit",
            Refusal::GlobalLimit => "global-limit",
            Refusal::Temporary => "temporary",
        }
    }
}

fn temporary(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "one-way form: store or queue failed");
    Refusal::Temporary
}

/// The opt-out list: keyed hashes of normalised addresses, nothing else.
#[derive(Clone)]
pub struct OptOuts {
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
}

impl OptOuts {
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keys>) -> Self {
        OptOuts { store, keys }
    }

    /// Adds an address; false when it was already opted out.
    pub async fn add(&self, address: &RealAddress) -> Result<bool, StoreError> {
        let hash = token::opt_out_hash(&self.keys, address);
        self.store.add_opt_out(&hash, now_unix()).await
    }

    /// Removes an address; false when it was not opted out.
    pub async fn remove(&self, address: &RealAddress) -> Result<bool, StoreError> {
        let hash = token::opt_out_hash(&self.keys, address);
        self.store.remove_opt_out(&hash).await
    }

    pub async fn contains(&self, address: &RealAddress) -> Result<bool, StoreError> {
        let hash = token::opt_out_hash(&self.keys, address);
        self.store.is_opted_out(&hash).await
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        self.store.count_opt_outs().await
    }

    /// Whether an opt-out link token is genuine (constant-time MAC check).
    pub fn token_valid(&self, token: &str) -> bool {
        token::verify(&self.keys, token).is_some()
    }

    /// Records the opt-out an opt-out link stands for; `Ok(None)` for a forged or garbled
    /// token, else whether it was new.
    pub async fn add_by_token(&self, token: &str) -> Result<Option<bool>, StoreError> {
        match token::verify(&self.keys, token) {
            Some(hash) => Ok(Some(self.store.add_opt_out(&hash, now_unix()).await?)),
            None => Ok(None),
        }
    }
}

/// A message as the sender filled in the form.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Where a draft goes: the address for `To:` and the mailbox it is delivered to.
struct Target {
    header_to: String,
    mailbox: RealAddress,
}

/// The one-way form's service: rules, limits and the mail it writes.
pub struct OneWay {
    /// `[web]`: whether the form is on, its limits, the public URL.
    web: WebConfig,
    domain: Domain,
    /// `web.operator` (or its default), named in every letter's footer.
    operator: String,
    keys: Arc<Keys>,
    members: Members,
    delivery: Delivery,
    opt_outs: OptOuts,
    send_clients: ClientLimiter,
    opt_out_clients: ClientLimiter,
    last_purge: AtomicI64,
}

impl OneWay {
    pub fn new(
        web: WebConfig,
        domain: Domain,
        operator: String,
        members: Members,
        keys: Arc<Keys>,
        delivery: Delivery,
    ) -> Self {
        let per_client = web.one_way_per_client_per_hour;
        OneWay {
            domain,
            operator,
            opt_outs: OptOuts::new(members.store().clone(), keys.clone()),
            send_clients: ClientLimiter::new(per_client),
            opt_out_clients: ClientLimiter::new(per_client),
            last_purge: AtomicI64::new(0),
            web,
            keys,
            members,
            delivery,
        }
    }

    pub fn enabled(&self) -> bool {
        self.web.one_way
    }

    pub fn opt_outs(&self) -> &OptOuts {
        &self.opt_outs
    }

    /// Checks a draft against every rule and limit, then queues it; returns the queue id.
    pub async fn send(&self, draft: &Draft, client: &ClientId) -> Result<String, Refusal> {
        let result = self.try_send(draft, client).await;
        if let Err(r) = &result {
            tracing::info!(rule = r.rule(), "one-way message refused");
        }
        result
    }

    async fn try_send(&self, draft: &Draft, client: &ClientId) -> Result<String, Refusal> {
        if !self.enabled() {
            return Err(Refusal::Disabled);
        }
        let subject = check_subject(&draft.subject)?;
        let body = check_body(&draft.body, self.web.one_way_max_body)?;
        let to = RealAddress::parse_any(&draft.to).map_err(|_| Refusal::BadAddress)?;
        if !self.send_clients.allow(client) {
            return Err(Refusal::ClientLimit);
        }
        let target = self.target(to).await?;
        if self
            .opt_outs
            .contains(&target.mailbox)
            .await
            .map_err(temporary)?
        {
            return Err(Refusal::OptedOut);
        }
        self.take_send_slots(&target.mailbox).await?;
        let token = token::link_token(&self.keys, &target.mailbox);
        let public_url = self.web.public_url.clone();
        let operator = self.operator.clone();
        let msg = message::one_way(&message::Letter {
            domain: &self.domain,
            public_url: &public_url,
            operator: &operator,
            to: &target.header_to,
            subject: &subject,
            body: &body,
            token: &token,
        });
        let size = msg.len();
        // Bounces come back to a valid bounce address naming no alias, and are dropped.
        let bounce = BounceToken::new(0, 0, now_unix()).address(&self.keys, &self.domain);
        let id = self
            .delivery
            .queue_signed(bounce, &target.mailbox, msg)
            .await
            .map_err(temporary)?;
        tracing::info!(queue_id = %id, size, "one-way message queued");
        Ok(id)
    }

    /// An outside address as it is, or a member's active alias (delivered to the member).
    async fn target(&self, to: RealAddress) -> Result<Target, Refusal> {
        if !self.domain.covers(to.domain()) {
            return Ok(Target {
                header_to: to.expose(),
                mailbox: to,
            });
        }
        let own = || Refusal::OwnDomain(self.domain.to_string());
        if !to.domain().eq_ignore_ascii_case(self.domain.as_str()) {
            return Err(own());
        }
        let local = to.expose();
        let local = local.rsplit_once('@').map(|(l, _)| l).unwrap_or_default();
        let name = AliasName::parse(local).map_err(|_| own())?;
        let entry = self
            .members
            .by_alias(&name)
            .await
            .map_err(temporary)?
            .ok_or_else(own)?;
        if entry.state != AliasState::Active || entry.expired(crate::store::now_unix()) {
            return Err(Refusal::AliasPaused);
        }
        Ok(Target {
            header_to: entry.member.alias.address(),
            mailbox: entry.member.real,
        })
    }

    /// Counts the message against the per-recipient and the global limit (both or neither).
    async fn take_send_slots(&self, mailbox: &RealAddress) -> Result<(), Refusal> {
        let now = now_unix();
        self.purge_now_and_then(now).await;
        let web = &self.web;
        let counters = [
            limits::per_day(
                KIND_RECIPIENT,
                limits::recipient_key(&self.keys, KIND_RECIPIENT, mailbox),
                web.one_way_per_recipient_per_day,
                now,
            ),
            limits::per_hour(KIND_GLOBAL, web.one_way_per_hour, now),
        ];
        match self
            .members
            .store()
            .take_sends(&counters)
            .await
            .map_err(temporary)?
        {
            None => Ok(()),
            Some(0) => Err(Refusal::RecipientLimit),
            Some(_) => Err(Refusal::GlobalLimit),
        }
    }

    /// Deletes counters whose window has passed, at most once an hour.
    async fn purge_now_and_then(&self, now: i64) {
        let last = self.last_purge.load(Ordering::Relaxed);
        if now - last < 3_600
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.members.store().purge_send_counts(now).await {
            tracing::warn!(error = %e, "could not purge one-way send counters");
        }
    }

    /// The opt-out form: mails a confirmation link to `address`. The answer is the same
    /// whether or not the address is already opted out or has had its confirmation mails
    /// for the day, so the form tells nobody anything about an address.
    pub async fn request_opt_out(&self, address: &str, client: &ClientId) -> Result<(), Refusal> {
        let result = self.try_request_opt_out(address, client).await;
        if let Err(r) = &result {
            tracing::info!(rule = r.rule(), "opt-out request refused");
        }
        result
    }

    async fn try_request_opt_out(&self, address: &str, client: &ClientId) -> Result<(), Refusal> {
        let to = RealAddress::parse_any(address).map_err(|_| Refusal::BadAddress)?;
        if self.domain.covers(to.domain()) {
            return Err(Refusal::OwnDomain(self.domain.to_string()));
        }
        if !self.opt_out_clients.allow(client) {
            return Err(Refusal::ClientLimit);
        }
        let counter = limits::per_day(
            KIND_OPT_OUT_MAIL,
            limits::recipient_key(&self.keys, KIND_OPT_OUT_MAIL, &to),
            OPT_OUT_MAILS_PER_DAY,
            now_unix(),
        );
        if self
            .members
            .store()
            .take_sends(&[counter])
            .await
            .map_err(temporary)?
            .is_some()
        {
            tracing::info!("opt-out confirmation not sent: the address had its mails for today");
            return Ok(());
        }
        let token = token::link_token(&self.keys, &to);
        let msg =
            message::opt_out_confirmation(&self.domain, &self.web.public_url, &to.expose(), &token);
        self.delivery
            .queue_notice(&to, msg)
            .await
            .map_err(temporary)?;
        tracing::info!("opt-out confirmation queued");
        Ok(())
    }

    /// The footer link or the confirmation link was followed and its button pressed.
    /// `Ok(false)` for a token that is not valid.
    pub async fn confirm_opt_out(&self, token: &str) -> Result<bool, Refusal> {
        match self.opt_outs.add_by_token(token).await.map_err(temporary)? {
            Some(new) => {
                tracing::info!(new, "opt-out recorded");
                Ok(true)
            }
            None => {
                tracing::info!("opt-out link not valid");
                Ok(false)
            }
        }
    }
}

/// One line, bounded, no control characters; surrounding space removed.
fn check_subject(subject: &str) -> Result<String, Refusal> {
    let s = subject.trim();
    if s.chars().count() > MAX_SUBJECT || s.chars().any(char::is_control) {
        return Err(Refusal::BadSubject);
    }
    Ok(s.to_string())
}

/// Not empty, at most `max` bytes; line ends become CRLF, other control characters are
/// refused (tabs stay).
fn check_body(body: &str, max: usize) -> Result<String, Refusal> {
    if body.len() > max {
        return Err(Refusal::BodyTooLarge(max));
    }
    if body.trim().is_empty() {
        return Err(Refusal::EmptyBody);
    }
    let unified = body.replace("\r\n", "\n").replace('\r', "\n");
    let text: String = unified
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect();
    Ok(text.replace('\n', "\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SendCounter;

    #[tokio::test]
    async fn opt_outs_and_counters_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let keys = Arc::new(Keys::from_master([5; 32]));
        let list = OptOuts::new(store.clone(), keys.clone());
        let eve = RealAddress::parse_any("Eve@Example.org").unwrap();
        assert!(!list.contains(&eve).await.unwrap());
        assert!(list.add(&eve).await.unwrap());
        assert!(!list.add(&eve).await.unwrap());
        let token = token::link_token(&keys, &RealAddress::parse_any("eve@example.org").unwrap());
        assert_eq!(list.add_by_token(&token).await.unwrap(), Some(false));
        assert_eq!(list.add_by_token("forged").await.unwrap(), None);
        assert_eq!(list.count().await.unwrap(), 1);
        assert!(list.remove(&eve).await.unwrap());
        assert!(!list.contains(&eve).await.unwrap());

        let now = 1_800_000_000;
        let c = |limit| {
            [
                limits::per_day("r", vec![1], limit, now),
                limits::per_hour("g", 3, now),
            ]
        };
        assert_eq!(store.take_sends(&c(2)).await.unwrap(), None);
        assert_eq!(store.take_sends(&c(2)).await.unwrap(), None);
        assert_eq!(store.take_sends(&c(2)).await.unwrap(), Some(0));
        // the refused attempt counted nothing: the global counter still has one left
        assert_eq!(store.take_sends(&c(5)).await.unwrap(), None);
        assert_eq!(store.take_sends(&c(5)).await.unwrap(), Some(1));
        let zero: [SendCounter; 1] = [limits::per_hour("z", 0, now)];
        assert_eq!(store.take_sends(&zero).await.unwrap(), Some(0));
        assert_eq!(store.purge_send_counts(now).await.unwrap(), 0);
        assert_eq!(store.purge_send_counts(now + 86_400).await.unwrap(), 2);
        let db = std::fs::read(dir.path().join("t.db-wal")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&db).to_lowercase().contains("eve@"));
    }

    #[test]
    fn subject_and_body_rules() {
        assert_eq!(check_subject("  Hi  ").unwrap(), "Hi");
        assert_eq!(check_subject("a\r\nBcc: x@y"), Err(Refusal::BadSubject));
        assert_eq!(check_subject(&"x".repeat(201)), Err(Refusal::BadSubject));
        assert_eq!(check_body(" \r\n ", 100), Err(Refusal::EmptyBody));
        assert_eq!(
            check_body(&"x".repeat(101), 100),
            Err(Refusal::BodyTooLarge(100))
        );
        assert_eq!(check_body("a\nb\rc\u{7}", 100).unwrap(), "a\r\nb\r\nc");
    }
}
