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
use crate::intake::reply::Reply;
use crate::members::{MemberEntry, Members};
use crate::metrics::{self, Refusal};
use crate::remail::Transaction;
use crate::sender_auth::{SenderAuthenticator, SpfCheck, Verdict};
use crate::store::{now_unix, AliasState};

/// The envelope sender, as policy sees it.
#[derive(Debug, Clone)]
pub enum Sender {
    /// `MAIL FROM:<>`: a bounce or other automatic message.
    Null,
    /// A member's real address.
    Member(Box<MemberEntry>),
    /// Any other address (only bounce addresses accept mail from it).
    Outsider { domain: String },
}

/// An accepted recipient.
#[derive(Debug, Clone)]
pub enum Recipient {
    Alias(Box<MemberEntry>),
    Bounce(BounceToken),
    /// postmaster@ or abuse@, when an operator address is configured.
    Postmaster,
}

pub struct Policy {
    members: Members,
    register_url: String,
    auth: SenderAuthenticator,
    /// postmaster@ and abuse@ are accepted (an operator address is configured).
    postmaster: bool,
}

fn temp_failure(e: impl std::fmt::Display) -> Reply {
    tracing::error!(error = %e, "store lookup failed");
    Reply::new(
        451,
        [4, 3, 0],
        "Temporary local problem, please try again later",
    )
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
    pub async fn authenticate(&self, tx: &Transaction) -> Result<(), Reply> {
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
                tracing::debug!(session = %tx.session, method, "sender authenticated");
                Ok(())
            }
            Verdict::Fail { reason } => {
                tracing::info!(session = %tx.session, "sender authentication failed");
                metrics::refused(self.failed_mechanism(&tx.message));
                Err(Reply::new(
                    550,
                    [5, 7, 1],
                    format!("Sender authentication failed: {reason}"),
                ))
            }
            Verdict::TempFail { reason } => Err(Reply::new(
                451,
                [4, 7, 0],
                format!("Sender authentication could not be completed: {reason}"),
            )),
        }
    }

    /// Which check a failed message failed, for the metrics: DMARC under `dmarc`; under
    /// `spf-or-dkim`, DKIM when the message carried a signature (it did not verify or align),
    /// else SPF.
    fn failed_mechanism(&self, raw: &[u8]) -> Refusal {
        match self.auth.mode() {
            crate::config::SenderAuth::Dmarc => Refusal::AuthDmarc,
            _ if has_dkim_signature(raw) => Refusal::AuthDkim,
            _ => Refusal::AuthSpf,
        }
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    /// Classifies `MAIL FROM`. Only a syntax error is refused here; the rest waits for RCPT.
    pub async fn sender(&self, address: &str) -> Result<Sender, Reply> {
        if address.is_empty() {
            return Ok(Sender::Null);
        }
        let real = RealAddress::parse_any(address)
            .map_err(|_| Reply::new(553, [5, 1, 7], "Sender address is not a valid mailbox"))?;
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
    pub async fn recipient(&self, sender: &Sender, address: &str) -> Result<Recipient, Reply> {
        let (local, domain) = address.rsplit_once('@').ok_or_else(|| {
            Reply::new(553, [5, 1, 3], "Recipient address is not a valid mailbox")
        })?;
        if !domain.eq_ignore_ascii_case(self.members.domain().as_str()) {
            metrics::refused(Refusal::RelayAttempt);
            return Err(Reply::new(
                550,
                [5, 7, 1],
                "Relaying denied: this service accepts mail only for its own aliases",
            ));
        }
        if self.postmaster
            && (local.eq_ignore_ascii_case("postmaster") || local.eq_ignore_ascii_case("abuse"))
        {
            return Ok(Recipient::Postmaster);
        }
        if local.eq_ignore_ascii_case(crate::oneway::NO_REPLY) {
            return Err(no_reply());
        }
        // Any spelling of the prefix is routed here (and refused unless canonical); `get`
        // because a non-ASCII local part may have no char boundary at byte 2.
        if local.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("b+")) {
            let token =
                BounceToken::verify(local, self.members.keys(), now_unix()).ok_or_else(|| {
                    metrics::refused(Refusal::UnknownAlias);
                    Reply::new(
                        550,
                        [5, 1, 1],
                        "No such bounce address (unknown or expired)",
                    )
                })?;
            return Ok(Recipient::Bounce(token));
        }
        // Non-members learn nothing about which aliases exist: one answer for every name.
        let member = match sender {
            Sender::Member(member) => member,
            Sender::Null => return Err(null_to_alias()),
            Sender::Outsider { domain } => return Err(self.unregistered(domain)),
        };
        let name = AliasName::parse(local).map_err(|_| no_such_alias())?;
        let entry = match self.members.by_alias(&name).await.map_err(temp_failure)? {
            Some(entry) if entry.expired(now_unix()) => {
                self.members.expire(&name).await.map_err(temp_failure)?;
                return Err(expired_alias());
            }
            Some(entry) => entry,
            None if self
                .members
                .name_expired(&name)
                .await
                .map_err(temp_failure)? =>
            {
                return Err(expired_alias())
            }
            None => return Err(no_such_alias()),
        };
        if entry.state != AliasState::Active {
            return Err(Reply::new(
                550,
                [5, 2, 1],
                "This alias is paused and accepts no mail",
            ));
        }
        if member.id == entry.id {
            return Err(Reply::new(
                550,
                [5, 7, 1],
                "That is your own alias; the remailer does not send mail to yourself",
            ));
        }
        if member.state != AliasState::Active {
            return Err(Reply::new(
                550,
                [5, 7, 1],
                "Your alias is paused because mail to your address bounced; contact the operator",
            ));
        }
        Ok(Recipient::Alias(Box::new(entry)))
    }

    /// The refusal an unregistered sender gets: what the service is and where to register.
    fn unregistered(&self, domain: &str) -> Reply {
        metrics::refused(Refusal::UnregisteredSender);
        tracing::info!(sender_domain = %crate::logtag::domain(domain), "refused unregistered sender");
        Reply::new(
            550,
            [5, 7, 1],
            format!(
                "Your address is not registered with this remailer.\n\
                 This service relays mail only between its registered members, each known by an alias.\n\
                 To write to its members, register an alias for your address at {}\n\
                 and send from the address you registered.",
                self.register_url
            ),
        )
    }
}

fn null_to_alias() -> Reply {
    Reply::new(
        550,
        [5, 7, 1],
        "Bounces and automatic replies are accepted only at this service's bounce addresses",
    )
}

/// The refusal for replies to one-way mail: nobody can be reached through that address.
fn no_reply() -> Reply {
    Reply::new(
        550,
        [5, 7, 1],
        "This address only sends messages written in this service's anonymous web form.\n\
         It accepts no mail: the sender of such a message is unknown, and cannot be replied to.",
    )
}

/// The refusal for an alias whose expiry has passed (it is retired; the name is never reused).
fn expired_alias() -> Reply {
    Reply::new(
        550,
        [5, 1, 1],
        "This alias has expired and accepts no mail; its name is never given to anyone else",
    )
}

fn no_such_alias() -> Reply {
    metrics::refused(Refusal::UnknownAlias);
    Reply::new(550, [5, 1, 1], "No such alias here")
}

/// Whether the header section of `raw` holds a `DKIM-Signature` field.
fn has_dkim_signature(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"dkim-signature:";
    raw.split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .any(|line| line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME))
}
