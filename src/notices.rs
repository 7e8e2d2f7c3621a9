//! `notices`: the short messages the service itself writes to a member's real address (a
//! delivery that failed for good, and later bounce reports). A notice names only aliases,
//! never the recipient's real address, and never quotes a remote server's text. Notices are
//! sent with a null envelope sender and `Auto-Submitted`, so they are never answered or
//! bounced back.

use mail_builder::headers::text::Text;
use mail_builder::MessageBuilder;

use crate::address::{Domain, RealAddress};
use crate::keys::random_hex;

/// Why a message could not be delivered, in words for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The recipient's server refused it permanently.
    Refused,
    /// It could not be delivered within the queue's maximum age.
    Expired { days: u64 },
    /// A bounce report (DSN) came back for it.
    Bounced,
}

/// Wraps mail for postmaster@/abuse@ for the operator: the original is attached unchanged.
pub fn for_postmaster(domain: &Domain, operator: &RealAddress, original: &[u8]) -> Vec<u8> {
    let subject = format!("Mail for postmaster@{domain}");
    header(domain, "postmaster", operator, &subject, "auto-generated")
        .text_body(format!(
            "A message for postmaster@{domain} or abuse@{domain} arrived; it is attached unchanged.\r\n"
        ))
        .attachment("message/rfc822", "message.eml", original.to_vec())
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

/// Builds the notice to a member whose alias was paused because mail to them bounced.
pub fn paused(domain: &Domain, to: &RealAddress, alias: &str, bounces: i64) -> Vec<u8> {
    let body = format!(
        "Your alias {alias} has been paused: {bounces} messages remailed to you have been \
         refused by your mail server as undeliverable.\r\n\r\n\
         While it is paused, your alias neither receives nor sends mail. If your address works \
         again, ask the operator to reactivate it.\r\n\r\n-- \r\nThe remailer at {domain}\r\n"
    );
    notice(domain, to, &format!("Your alias {alias} is paused"), body)
}

/// Builds the notice that a message to `recipient_alias` was not delivered.
pub fn undelivered(
    domain: &Domain,
    to: &RealAddress,
    recipient_alias: &str,
    why: Undelivered,
) -> Vec<u8> {
    let reason = match why {
        Undelivered::Refused => "the recipient's mail server refused it permanently".to_string(),
        Undelivered::Expired { days } => {
            let unit = if days == 1 { "day" } else { "days" };
            format!("it could not be delivered within {days} {unit}, so the remailer gave up")
        }
        Undelivered::Bounced => {
            "the recipient's mail server reported that it could not deliver it".to_string()
        }
    };
    let body = format!(
        "Your message to {recipient_alias} was not delivered: {reason}.\r\n\r\n\
         The remailer does not pass on the remote server's own words, which could name the \
         recipient's real address. You may try again later; if it keeps failing, the \
         recipient's alias may no longer work.\r\n\r\n\
         -- \r\nThe remailer at {domain}\r\n"
    );
    notice(
        domain,
        to,
        &format!("Undelivered: your message to {recipient_alias}"),
        body,
    )
}

/// Builds the clear notice that a message for `alias` (from `from`, an alias, when known)
/// could not be encrypted because the member's key `fingerprint` has expired
/// (`privacy.pgp_expired`); `delivered_in_clear` when it went anyway (`"plain"`).
pub fn key_expired(
    domain: &Domain,
    to: &RealAddress,
    alias: &str,
    from: Option<&str>,
    fingerprint: &str,
    delivered_in_clear: bool,
) -> Vec<u8> {
    let what = match from {
        Some(from) => format!("A message from {from} to your alias {alias}"),
        None => format!("A message from the remailer to your alias {alias}"),
    };
    let fate = if delivered_in_clear {
        "so it was delivered to you without encryption, as a separate message"
    } else {
        "so it was not delivered"
    };
    let body = format!(
        "{what} arrived, but it could not be encrypted: your OpenPGP key {fingerprint} \
         has expired, {fate}.\r\n\r\n\
         To receive encrypted mail again, extend your key's expiry (for example \
         gpg --quick-set-expire {fingerprint} 1y) or make a new key, and have the new \
         public key registered for your alias (the operator: remailer alias key NAME FILE). \
         Until then mail for your alias is handled the same way.\r\n\r\n\
         -- \r\nThe remailer at {domain}\r\n"
    );
    notice(
        domain,
        to,
        "A message could not be encrypted to your key",
        body,
    )
}

/// A short plain-text message from `mailer-daemon@DOMAIN` (`Auto-Submitted: auto-replied`).
pub fn notice(domain: &Domain, to: &RealAddress, subject: &str, body: String) -> Vec<u8> {
    header(domain, "mailer-daemon", to, subject, "auto-replied")
        .text_body(body)
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

/// The header every message from the service has: from `LOCAL@DOMAIN`, `Auto-Submitted`,
/// a fresh Message-ID and Date.
fn header<'x>(
    domain: &Domain,
    local: &str,
    to: &RealAddress,
    subject: &str,
    auto: &'x str,
) -> MessageBuilder<'x> {
    MessageBuilder::new()
        .from(("Remailer".to_string(), format!("{local}@{domain}")))
        .to(to.expose())
        .subject(subject.to_string())
        .header("Auto-Submitted", Text::new(auto))
        .message_id(format!("{}@{domain}", random_hex(16)))
        .date(time::OffsetDateTime::now_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_names_the_alias_only() {
        let d = Domain::parse("remailer.test").unwrap();
        let to = RealAddress::parse("joe@real.example", &d).unwrap();
        let msg = undelivered(
            &d,
            &to,
            "ann@remailer.test",
            Undelivered::Expired { days: 5 },
        );
        let text = String::from_utf8(msg).unwrap();
        assert!(
            text.contains("To: <joe@real.example>") || text.contains("To: joe@real.example"),
            "{text}"
        );
        assert!(text.contains("ann@remailer.test"));
        assert!(text.contains("within 5 days,"));
        assert!(text.contains("Auto-Submitted: auto-replied"));
    }
}
