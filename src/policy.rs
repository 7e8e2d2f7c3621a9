//! `policy`: who may send to whom. Decides at MAIL and RCPT time, so refusals happen while
//! the client is still connected and the service never creates backscatter:
//! - recipients must be active aliases at DOMAIN or valid bounce addresses (never a relay);
//! - a message to an alias must come from a member's real address (else 550 5.7.1 with an
//!   explanation and the registration URL, `{web.public_url}/register`). A non-member gets
//!   this same answer for every name at DOMAIN, existing, paused or unknown, and no alias is
//!   even looked up for them: RCPT tells outsiders nothing about which aliases exist (only
//!   members learn `550 5.1.1 no such alias`);
//! - an alias whose expiry has passed is refused to members with `550 5.1.1` saying it has
//!   expired, and retired on first sight like a removal; an expired member's mail is treated
//!   as an unregistered sender's;
//! - a member may not write to their own alias; bounces go only to bounce addresses;
//! - `no-reply@DOMAIN` (the sender of one-way mail) accepts nothing, with an explanation;
//! - the message must really come from the member's address: SPF at MAIL FROM, DKIM and
//!   DMARC after DATA ([`crate::sender_auth`], per `policy.sender_auth`).

use std::net::IpAddr;

use crate::address::{AliasName, RealAddress};
use crate::bounce::BounceToken;
use crate::envelope::{Decision, Pipeline, Recipient, Sender, Transaction};
use crate::members::Members;
use crate::metrics::{self, Refusal as Counted};
use crate::remail::Remail;
use crate::reply::{Answer, Refusal};
use crate::sender_auth::{SenderAuthenticator, SpfCheck, Verdict};
use crate::store::{now_unix, AliasState};

pub struct Policy {
    members: Members,
    register_url: String,
    auth: SenderAuthenticator,
    /// postmaster@ and abuse@ are accepted (an operator address is configured).
    postmaster: bool,
}

fn temp_failure(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "store lookup failed");
    Refusal::LocalProblem
}

impl Policy {
    pub fn new(
        members: Members,
        public_url: &str,
        auth: SenderAuthenticator,
        postmaster: bool,
    ) -> Self {
        Policy {
            members,
            register_url: format!("{}/register", public_url.trim_end_matches('/')),
            auth,
            postmaster,
        }
    }

    /// SPF for a member's envelope sender, at MAIL time (None when sender auth is off).
    pub async fn spf(&self, ip: IpAddr, helo: &str, mail_from: &str) -> Option<SpfCheck> {
        if self.auth.mode() == crate::config::SenderAuth::None {
            return None;
        }
        Some(self.auth.check_spf(ip, helo, mail_from).await)
    }

    /// After DATA: does a message to aliases really come from the member's address?
    pub async fn authenticate(&self, tx: &Transaction) -> Result<(), Refusal> {
        let to_aliases = tx
            .recipients
            .iter()
            .any(|r| matches!(r, Recipient::Alias(_)));
        let (true, Sender::Member(_), Some(spf)) = (to_aliases, &tx.sender, &tx.spf) else {
            return Ok(());
        };
        match self
            .auth
            .verify(&tx.message, tx.peer, &tx.helo, &tx.mail_from, spf)
            .await
        {
            Verdict::Pass { method } => {
                tracing::debug!(method, "sender authenticated");
                Ok(())
            }
            Verdict::Fail { reason } => {
                tracing::info!("sender authentication failed");
                metrics::refused(self.failed_mechanism(&tx.message));
                Err(Refusal::AuthFailed { reason })
            }
            Verdict::TempFail { reason } => Err(Refusal::AuthUnavailable { reason }),
        }
    }

    /// Which check a failed message failed, for the metrics: DMARC under `dmarc`; under
    /// `spf-or-dkim`, DKIM when the message carried a signature (it did not verify or align),
    /// else SPF.
    fn failed_mechanism(&self, raw: &[u8]) -> Counted {
        match self.auth.mode() {
            crate::config::SenderAuth::Dmarc => Counted::AuthDmarc,
            _ if has_dkim_signature(raw) => Counted::AuthDkim,
            _ => Counted::AuthSpf,
        }
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    /// Classifies `MAIL FROM`. Only a syntax error is refused here; the rest waits for RCPT.
    pub async fn sender(&self, address: &str) -> Result<Sender, Refusal> {
        if address.is_empty() {
            return Ok(Sender::Null);
        }
        let real = RealAddress::parse_any(address).map_err(|_| Refusal::InvalidSender)?;
        match self.members.by_real(&real).await.map_err(temp_failure)? {
            Some(entry) if entry.expired(now_unix()) => {
                // An expired member is no member: retired now, and treated as unregistered.
                self.members
                    .expire(&entry.member.alias.name)
                    .await
                    .map_err(temp_failure)?;
                Ok(Sender::Outsider {
                    domain: real.domain().to_string(),
                })
            }
            Some(entry) => Ok(Sender::Member(Box::new(entry))),
            None => Ok(Sender::Outsider {
                domain: real.domain().to_string(),
            }),
        }
    }

    /// Decides one `RCPT TO`.
    pub async fn recipient(&self, sender: &Sender, address: &str) -> Result<Recipient, Refusal> {
        let (local, domain) = address.rsplit_once('@').ok_or(Refusal::InvalidRecipient)?;
        if !domain.eq_ignore_ascii_case(self.members.domain().as_str()) {
            metrics::refused(Counted::RelayAttempt);
            return Err(Refusal::Relaying);
        }
        if self.postmaster
            && (local.eq_ignore_ascii_case("postmaster") || local.eq_ignore_ascii_case("abuse"))
        {
            return Ok(Recipient::Postmaster);
        }
        if local.eq_ignore_ascii_case(crate::oneway::NO_REPLY) {
            return Err(Refusal::NoReply);
        }
        // Any spelling of the prefix is routed here (and refused unless canonical); `get`
        // because a non-ASCII local part may have no char boundary at byte 2.
        if local.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("b+")) {
            let token =
                BounceToken::verify(local, self.members.keys(), now_unix()).ok_or_else(|| {
                    metrics::refused(Counted::UnknownAlias);
                    Refusal::UnknownBounceAddress
                })?;
            return Ok(Recipient::Bounce(token));
        }
        // Non-members learn nothing about which aliases exist: one answer for every name.
        let member = match sender {
            Sender::Member(member) => member,
            Sender::Null => return Err(Refusal::NullToAlias),
            Sender::Outsider { domain } => return Err(self.unregistered(domain)),
        };
        let name = AliasName::parse(local).map_err(|_| no_such_alias())?;
        let entry = match self.members.by_alias(&name).await.map_err(temp_failure)? {
            Some(entry) if entry.expired(now_unix()) => {
                self.members.expire(&name).await.map_err(temp_failure)?;
                return Err(Refusal::ExpiredAlias);
            }
            Some(entry) => entry,
            None if self
                .members
                .name_expired(&name)
                .await
                .map_err(temp_failure)? =>
            {
                return Err(Refusal::ExpiredAlias)
            }
            None => return Err(no_such_alias()),
        };
        if entry.state != AliasState::Active {
            return Err(Refusal::PausedAlias);
        }
        if member.id == entry.id {
            return Err(Refusal::OwnAlias);
        }
        if member.state != AliasState::Active {
            return Err(Refusal::SenderPaused);
        }
        Ok(Recipient::Alias(Box::new(entry)))
    }

    /// The refusal an unregistered sender gets: what the service is and where to register.
    fn unregistered(&self, domain: &str) -> Refusal {
        metrics::refused(Counted::UnregisteredSender);
        tracing::info!(sender_domain = %crate::logtag::domain(domain), "refused unregistered sender");
        Refusal::Unregistered {
            register_url: self.register_url.clone(),
        }
    }
}

fn no_such_alias() -> Refusal {
    metrics::refused(Counted::UnknownAlias);
    Refusal::NoSuchAlias
}

/// The service's [`Pipeline`]: policy decides at MAIL, RCPT and after DATA (sender
/// authentication), then [`Remail`] takes the accepted transaction.
pub struct Stages {
    pub policy: Policy,
    pub remail: Remail,
}

impl Pipeline for Stages {
    fn mail<'a>(
        &'a self,
        peer: IpAddr,
        helo: &'a str,
        mail_from: &'a str,
    ) -> Decision<'a, Result<(Sender, Option<SpfCheck>), Refusal>> {
        Box::pin(async move {
            let sender = self.policy.sender(mail_from).await?;
            let spf = match sender {
                Sender::Member(_) => self.policy.spf(peer, helo, mail_from).await,
                _ => None,
            };
            Ok((sender, spf))
        })
    }

    fn rcpt<'a>(
        &'a self,
        sender: &'a Sender,
        address: &'a str,
    ) -> Decision<'a, Result<Recipient, Refusal>> {
        Box::pin(self.policy.recipient(sender, address))
    }

    fn data(&self, tx: Transaction) -> Decision<'_, Result<Answer, Refusal>> {
        Box::pin(async move {
            self.policy.authenticate(&tx).await?;
            self.remail.accept(tx).await
        })
    }
}

/// Whether the header section of `raw` holds a `DKIM-Signature` field.
fn has_dkim_signature(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"dkim-signature:";
    raw.split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .any(|line| line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME))
}
