//! `envelope`: the vocabulary of one SMTP transaction, shared by the stages that decide on it
//! ([`crate::intake`] builds it, [`crate::policy`] classifies its sender and recipients,
//! [`crate::remail`] carries it on), and the [`Pipeline`] trait between the session and
//! those stages. A leaf below all three, so none of them imports another for its words
//! (ARCHITECTURE.md §4, dependency order).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::bounce::BounceToken;
use crate::members::MemberEntry;
use crate::reply::{Answer, Refusal};
use crate::sender_auth::SpfCheck;

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

impl Recipient {
    /// The same recipient (the same alias, bounce token or postmaster), however spelled.
    pub fn same_as(&self, other: &Recipient) -> bool {
        match (self, other) {
            (Recipient::Alias(x), Recipient::Alias(y)) => x.id == y.id,
            (Recipient::Bounce(x), Recipient::Bounce(y)) => x == y,
            (Recipient::Postmaster, Recipient::Postmaster) => true,
            _ => false,
        }
    }
}

/// A finished SMTP transaction.
pub struct Transaction {
    pub peer: IpAddr,
    pub helo: String,
    pub mail_from: String,
    pub sender: Sender,
    pub recipients: Vec<Recipient>,
    /// Shared with the blocking rewrite stage without a copy.
    pub message: Arc<Vec<u8>>,
    /// SPF result from MAIL time (None when sender authentication is off).
    pub spf: Option<SpfCheck>,
}

/// A decision the [`Pipeline`] takes, awaited by the session.
pub type Decision<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What comes after the SMTP session: the one interface between [`crate::intake`] and the
/// stages behind it (ARCHITECTURE.md §4). The session owns the dialogue (sequence, syntax,
/// limits, framing); it asks the pipeline only what to decide about a sender, a recipient and
/// a finished transaction, and puts the answer into SMTP through [`crate::reply`]. The
/// service's pipeline is [`crate::policy::Stages`] (policy, then remail); a test may put
/// anything behind a session that answers these three questions.
pub trait Pipeline: Send + Sync {
    /// `MAIL FROM:<mail_from>` from the client at `peer` after `HELO helo`: who the sender
    /// is, and (for a member, when sender authentication is on) the SPF check of the
    /// envelope, which needs the client's address.
    fn mail<'a>(
        &'a self,
        peer: IpAddr,
        helo: &'a str,
        mail_from: &'a str,
    ) -> Decision<'a, Result<(Sender, Option<SpfCheck>), Refusal>>;

    /// `RCPT TO:<address>` in a transaction from `sender`.
    fn rcpt<'a>(
        &'a self,
        sender: &'a Sender,
        address: &'a str,
    ) -> Decision<'a, Result<Recipient, Refusal>>;

    /// The end of DATA: the message is accepted (and durable) or refused.
    fn data(&self, tx: Transaction) -> Decision<'_, Result<Answer, Refusal>>;
}
