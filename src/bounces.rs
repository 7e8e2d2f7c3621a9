//! `bounces`: what comes back to a bounce address `b+TOKEN@DOMAIN`. The token (checked at
//! RCPT time) names the sending and the receiving alias; [`crate::dsn::classify`] says what
//! the message is:
//! - a failure report: the sender gets a short notice that names only aliases (never the
//!   recipient's real address, never the remote server's words); a hard failure also counts
//!   against the recipient's alias, which is paused after `policy.hard_bounce_limit` hard
//!   failures (counted until the alias is reactivated), and its member is told once;
//! - an automatic reply (vacation): handed back to be remailed as a reply from the recipient;
//! - a delay warning or anything else: dropped. Nothing here is ever answered to the sender
//!   of the report, so a bounce is never bounced.

use crate::bounce::BounceToken;
use crate::delivery::Delivery;
use crate::dsn::{self, BounceKind, Report};
use crate::members::{MemberEntry, Members};
use crate::notices::{self, Undelivered};
use crate::store::AliasState;

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
    /// Dropped: a delay warning, a stray or unreadable report, or the aliases are gone.
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

    pub async fn handle(&self, token: BounceToken, raw: &[u8]) -> Result<Outcome, String> {
        let report = dsn::classify(raw);
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
                tracing::info!(
                    hard = kind == BounceKind::Hard,
                    status = status.as_deref().unwrap_or("-"),
                    "bounce report for a remailed message"
                );
                let alias = recipient.member.alias.address();
                let notice = notices::undelivered(
                    self.members.domain(),
                    &sender.member.real,
                    &alias,
                    Undelivered::Bounced,
                );
                self.delivery
                    .queue_notice(&sender.member.real, notice)
                    .await?;
                let paused = kind == BounceKind::Hard && self.count_hard_bounce(&recipient).await?;
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

    async fn member(&self, id: i64) -> Result<Option<MemberEntry>, String> {
        self.members.by_id(id).await.map_err(|e| e.to_string())
    }

    /// Counts a hard bounce; pauses the alias (and tells its member once) at the limit.
    async fn count_hard_bounce(&self, recipient: &MemberEntry) -> Result<bool, String> {
        let name = &recipient.member.alias.name;
        let count = self
            .members
            .hard_bounce(name)
            .await
            .map_err(|e| e.to_string())?;
        if count < self.hard_bounce_limit || recipient.state == AliasState::Paused {
            return Ok(false);
        }
        if !self
            .members
            .set_state(name, AliasState::Paused)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(false);
        }
        tracing::warn!(
            hard_bounces = count,
            "an alias was paused after repeated hard bounces"
        );
        let alias = recipient.member.alias.address();
        let notice = notices::paused(self.members.domain(), &recipient.member.real, &alias, count);
        self.delivery
            .queue_notice(&recipient.member.real, notice)
            .await?;
        Ok(true)
    }
}
