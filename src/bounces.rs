//! `bounces`: what comes back to a bounce address `b+TOKEN@DOMAIN`. The token (checked at
//! RCPT time) names the sending and the receiving alias and one message; [`crate::dsn`] says
//! what the report is and whom it is about:
//! - a failure report **about the recipient's real address** (an RFC 3464 `Final-Recipient` /
//!   `Original-Recipient`, or the address written in a plain-text bounce): the first report
//!   for a token is recorded (a keyed hash of the token, [`crate::store::Store::record_bounce`])
//!   and the sender gets a short notice that names only aliases (never the recipient's real
//!   address, never the remote server's words); later reports for the same token are dropped.
//!   A hard failure counts against the recipient's alias, which is paused once hard failures
//!   have come back for at least `policy.hard_bounce_limit` distinct messages whose tokens
//!   were made on at least [`PAUSE_MIN_DAYS`] distinct days (counted until the alias is
//!   reactivated), and its member is told once. A report that does not name the recipient's
//!   address is dropped: whoever learnt one bounce address cannot pause an alias with it;
//! - an automatic reply (vacation): handed back to be remailed as a reply from the recipient,
//!   which [`crate::remail`] does only when it authenticates as the recipient's real address;
//! - a delay warning or anything else: dropped. Nothing here is ever answered to the sender
//!   of the report, so a bounce is never bounced.

use crate::address::RealAddress;
use crate::bounce::BounceToken;
use crate::delivery::Delivery;
use crate::dsn::{self, BounceKind, Report};
use crate::members::{MemberEntry, Members, MembersError};
use crate::notices::{self, Undelivered};
use crate::store::{BounceReport, BounceTally};

/// Why a report could not be handled (it is then refused with a temporary error, and comes
/// again).
#[derive(Debug, thiserror::Error)]
pub enum BouncesError {
    /// The members directory or its store failed.
    #[error(transparent)]
    Members(#[from] MembersError),
    /// A notice could not be queued (delivery says why, in words).
    #[error("{0}")]
    Notice(String),
}

/// Hard bounces pause an alias only when their tokens were made on this many distinct days.
pub const PAUSE_MIN_DAYS: i64 = 2;

/// What handling a report led to.
#[derive(Debug)]
pub enum Outcome {
    /// The sender was told; `paused` when the recipient's alias was paused as well.
    Notified { paused: bool },
    /// An automatic reply from `from` (the original recipient) to `to` (the original sender).
    AutoReply {
        from: Box<MemberEntry>,
        to: Box<MemberEntry>,
    },
    /// Dropped: a delay warning, a stray, unreadable, repeated or misaddressed report, or the
    /// aliases are gone.
    Dropped(&'static str),
}

pub struct Bounces {
    members: Members,
    delivery: Delivery,
    hard_bounce_limit: i64,
}

impl Bounces {
    pub fn new(members: Members, delivery: Delivery, hard_bounce_limit: u32) -> Self {
        Bounces {
            members,
            delivery,
            hard_bounce_limit: hard_bounce_limit.max(1) as i64,
        }
    }

    pub async fn handle(&self, token: BounceToken, raw: &[u8]) -> Result<Outcome, BouncesError> {
        let report = dsn::classify(raw);
        crate::metrics::bounce(match &report {
            Report::Bounce { kind, .. } if *kind == BounceKind::Hard => "hard",
            Report::Bounce { .. } => "soft",
            Report::Delayed => "delayed",
            Report::AutoReply => "auto_reply",
            Report::Unknown => "unknown",
        });
        let (sender, recipient) = (
            self.member(token.sender_id).await?,
            self.member(token.recipient_id).await?,
        );
        let (Some(sender), Some(recipient)) = (sender, recipient) else {
            return Ok(Outcome::Dropped(
                "an alias named by the bounce address is gone",
            ));
        };
        match report {
            Report::Bounce { kind, status } => {
                if !names(&dsn::failed_recipients(raw), &recipient.member.real) {
                    return Ok(Outcome::Dropped(
                        "a failure report that does not name the recipient",
                    ));
                }
                let hard = kind == BounceKind::Hard;
                let tally = self.record(&token, &recipient, hard).await?;
                if tally == BounceTally::Repeated {
                    return Ok(Outcome::Dropped(
                        "a repeated failure report for one message",
                    ));
                }
                tracing::info!(
                    hard,
                    status = status.as_deref().unwrap_or("-"),
                    "bounce report for a remailed message"
                );
                self.tell_sender(&sender, &recipient).await?;
                let paused = match tally {
                    BounceTally::Paused { messages, days } => {
                        self.tell_paused(&recipient, messages, days).await?;
                        true
                    }
                    _ => false,
                };
                Ok(Outcome::Notified { paused })
            }
            Report::AutoReply => Ok(Outcome::AutoReply {
                from: Box::new(recipient),
                to: Box::new(sender),
            }),
            Report::Delayed => Ok(Outcome::Dropped("a delay warning")),
            Report::Unknown => Ok(Outcome::Dropped("not a delivery report")),
        }
    }

    async fn member(&self, id: i64) -> Result<Option<MemberEntry>, BouncesError> {
        Ok(self.members.by_id(id).await?)
    }

    /// Records the report once per token; counting and pausing happen in one store call.
    async fn record(
        &self,
        token: &BounceToken,
        recipient: &MemberEntry,
        hard: bool,
    ) -> Result<BounceTally, BouncesError> {
        let report = BounceReport {
            token_hash: token.record_key(self.members.keys()),
            alias_id: recipient.id,
            day: token.day,
            hard,
            limit: self.hard_bounce_limit,
            min_days: PAUSE_MIN_DAYS,
        };
        Ok(self.members.record_bounce(&report).await?)
    }

    async fn tell_sender(
        &self,
        sender: &MemberEntry,
        recipient: &MemberEntry,
    ) -> Result<(), BouncesError> {
        let alias = recipient.member.alias.address();
        let notice = notices::undelivered(
            self.members.domain(),
            &sender.member.real,
            &alias,
            Undelivered::Bounced,
        );
        self.delivery
            .queue_notice(&sender.member.real, notice)
            .await
            .map_err(BouncesError::Notice)
    }

    /// The alias was just paused (by this report): its member is told, once.
    async fn tell_paused(
        &self,
        recipient: &MemberEntry,
        messages: i64,
        days: i64,
    ) -> Result<(), BouncesError> {
        tracing::warn!(
            hard_bounces = messages,
            days,
            "an alias was paused after repeated hard bounces"
        );
        let alias = recipient.member.alias.address();
        let notice = notices::paused(
            self.members.domain(),
            &recipient.member.real,
            &alias,
            messages,
        );
        self.delivery
            .queue_notice(&recipient.member.real, notice)
            .await
            .map_err(BouncesError::Notice)
    }
}

/// Whether one of the addresses a report names is `real` (compared in normalised form).
fn names(named: &[String], real: &RealAddress) -> bool {
    let want = real.normalized();
    named
        .iter()
        .filter_map(|a| RealAddress::parse_any(a).ok())
        .any(|a| a.normalized() == want)
}
