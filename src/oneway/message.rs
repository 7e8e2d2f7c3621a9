//! The mail the one-way form writes: the one-way message itself (plain text, from
//! `no-reply@DOMAIN`, no Reply-To, a footer that says what it is, who runs the service and
//! how to opt out, and RFC 8058 one-click `List-Unsubscribe` headers), and the opt-out
//! confirmation mail.

use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::headers::url::URL;
use mail_builder::MessageBuilder;

use crate::address::Domain;
use crate::keys::random_hex;

use super::NO_REPLY;

/// What the one-way message needs to know besides the sender's text.
pub struct Letter<'a> {
    pub domain: &'a Domain,
    pub public_url: &'a str,
    pub operator: &'a str,
    /// The address as the sender typed it (an alias stays an alias in `To:`).
    pub to: &'a str,
    pub subject: &'a str,
    /// The sender's text, lines ending in CRLF.
    pub body: &'a str,
    /// The opt-out link token for the recipient.
    pub token: &'a str,
}

/// The opt-out link for a token.
pub fn opt_out_url(public_url: &str, token: &str) -> String {
    format!("{}/opt-out/{token}", public_url.trim_end_matches('/'))
}

/// The footer every one-way message ends with.
pub fn footer(public_url: &str, operator: &str, token: &str) -> String {
    let base = public_url.trim_end_matches('/');
    format!(
        "-- \r\n\
         This message was sent through an anonymous web form ({base}/send), run by {operator}.\r\n\
         Its sender is unknown to this service's recipients, and it cannot be replied to.\r\n\
         To receive no more messages from this form, open:\r\n{}\r\n",
        opt_out_url(public_url, token)
    )
}

/// The one-way message, ready to be signed.
pub fn one_way(l: &Letter) -> Vec<u8> {
    let mut text = l.body.trim_end().to_string();
    text.push_str("\r\n\r\n");
    text.push_str(&footer(l.public_url, l.operator, l.token));
    let subject = if l.subject.is_empty() {
        "(no subject)"
    } else {
        l.subject
    };
    MessageBuilder::new()
        .from((
            "Anonymous web form".to_string(),
            format!("{NO_REPLY}@{}", l.domain),
        ))
        .to(l.to.to_string())
        .subject(subject.to_string())
        .message_id(format!("{}@{}", random_hex(16), l.domain))
        .date(time::OffsetDateTime::now_utc().unix_timestamp())
        .header(
            "List-Unsubscribe",
            URL::new(opt_out_url(l.public_url, l.token)),
        )
        .header(
            "List-Unsubscribe-Post",
            Raw::new("List-Unsubscribe=One-Click"),
        )
        .text_body(text)
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

/// The mail that asks the owner of `to` to confirm an opt-out requested on the form.
pub fn opt_out_confirmation(domain: &Domain, public_url: &str, to: &str, token: &str) -> Vec<u8> {
    let base = public_url.trim_end_matches('/');
    let body = format!(
        "Someone, perhaps you, asked on {base}/opt-out that {to} never again receive \
         messages from the anonymous web form of this service ({base}/send).\r\n\r\n\
         To confirm, open this link and press the button on the page:\r\n{}\r\n\r\n\
         If you did not ask for this, ignore this message: nothing changes.\r\n\r\n\
         -- \r\nThe remailer at {domain}\r\n",
        opt_out_url(public_url, token)
    );
    MessageBuilder::new()
        .from(("Remailer".to_string(), format!("{NO_REPLY}@{domain}")))
        .to(to.to_string())
        .subject("Confirm: no more anonymous messages to this address".to_string())
        .header("Auto-Submitted", Text::new("auto-generated"))
        .message_id(format!("{}@{domain}", random_hex(16)))
        .date(time::OffsetDateTime::now_utc().unix_timestamp())
        .text_body(body)
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_message_has_footer_and_one_click_headers_and_no_reply_to() {
        let d = Domain::parse("remailer.test").unwrap();
        let msg = one_way(&Letter {
            domain: &d,
            public_url: "https://remailer.test/",
            operator: "Example Org",
            to: "eve@example.org",
            subject: "Hello",
            body: "Line one\r\nLine two\r\n",
            token: "TOKEN",
        });
        let text = String::from_utf8(msg).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(
            head.contains("List-Unsubscribe: <https://remailer.test/opt-out/TOKEN>"),
            "{text}"
        );
        assert!(head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(head.contains("<no-reply@remailer.test>"));
        assert!(!head.to_ascii_lowercase().contains("reply-to"));
        let parsed = mail_parser::MessageParser::default()
            .parse(text.as_bytes())
            .unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(
            body.starts_with("Line one\r\nLine two\r\n\r\n-- \r\n"),
            "{body}"
        );
        assert!(
            body.contains("anonymous web form (https://remailer.test/send), run by Example Org")
        );
        assert!(body.contains("https://remailer.test/opt-out/TOKEN"));
    }
}
