//! `rewrite`: the pure heart of the anonymity promise. A message from a member goes in, the
//! message the recipient will see comes out. No I/O: everything it must know about members
//! and earlier Message-IDs comes through a [`Directory`] the caller filled beforehand from
//! what [`scan`] said the message mentions.
//!
//! INTERFACE CONTRACT (callers in `intake` rely on these names):
//! - [`scan`] lists the addresses and Message-IDs a message mentions (headers and text bodies),
//!   so the caller can look them up in the store before calling [`rewrite`].
//! - [`rewrite`] returns the new message bytes (CRLF line ends), the issued Message-ID and the
//!   original one (the caller stores the pair for threading).
//! - [`is_own_message_id`] tells whether a Message-ID was issued by this service (keyed marker).

use time::OffsetDateTime;

use crate::address::{Alias, Domain, RealAddress};
use crate::keys::Keys;

/// A member as rewrite sees them.
#[derive(Debug, Clone)]
pub struct Member {
    pub alias: Alias,
    pub real: RealAddress,
    /// The display name the member chose for their alias (none by default).
    pub display_name: Option<String>,
}

/// What rewrite may ask about members and earlier messages. Filled by the caller; no I/O.
pub trait Directory {
    /// The member whose real address this is (compared in normalised form).
    fn member_by_real(&self, addr: &RealAddress) -> Option<&Member>;
    /// For a Message-ID this service issued (without angle brackets), the original ID of the
    /// other side (without angle brackets).
    fn original_message_id(&self, issued: &str) -> Option<&str>;
}

/// Everything about the current delivery that is not in the message itself.
pub struct Context<'a> {
    pub domain: &'a Domain,
    /// The member who sent the message (already authenticated by `policy`).
    pub sender: &'a Member,
    /// The members the message is addressed to (the accepted RCPT aliases).
    pub recipients: &'a [Member],
    /// The new `Date`.
    pub now: OffsetDateTime,
    /// 16 random bytes for the new Message-ID (passed in so rewrite stays deterministic).
    pub nonce: [u8; 16],
    pub keys: &'a Keys,
    /// Strip `multipart/signed` signatures instead of refusing the message.
    pub strip_signatures: bool,
}

/// What [`scan`] found: look these up, then call [`rewrite`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every address-like string found in headers and decoded text parts (deduplicated).
    pub addresses: Vec<String>,
    /// Message-IDs (without angle brackets) from `In-Reply-To` and `References`.
    pub referenced_ids: Vec<String>,
    /// The message's own Message-ID (without angle brackets), if any.
    pub message_id: Option<String>,
    /// The address in the `From` header, if any.
    pub from: Option<String>,
}

/// The rewritten message.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The complete message, CRLF line ends, ready to be signed and sent.
    pub message: Vec<u8>,
    /// The Message-ID this service issued (without angle brackets).
    pub message_id: String,
    /// The original Message-ID (without angle brackets), to be mapped to `message_id`.
    pub original_message_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("the message could not be parsed as RFC 5322 mail")]
    Unparseable,
    #[error("signed messages (multipart/signed, PGP or S/MIME) cannot be anonymised without breaking the signature and would reveal the signer; send it unsigned")]
    Signed,
    #[error("the message is a copy of mail this service sent (mail loop)")]
    Loop,
}
