//! `envelope`: the vocabulary of one SMTP transaction, shared by the stages that decide on it
//! ([`crate::intake`] builds it, [`crate::policy`] classifies its sender and recipients,
//! [`crate::remail`] carries it on). A leaf below all three, so none of them imports another
//! for its words (ARCHITECTURE.md §4, dependency order).

use std::net::IpAddr;
use std::sync::Arc;

use crate::bounce::BounceToken;
use crate::members::MemberEntry;
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
