//! `reply`: every SMTP reply the service gives, in one place (ARCHITECTURE.md §5). Stages
//! say *what* they decided — an [`Answer`] of the session itself, or a [`Refusal`] of
//! policy, the rate limits or remail — and this catalogue says how that is put in SMTP: the
//! code, the enhanced status code (RFC 3463) and the text. A leaf: it imports no other module
//! of the crate, so every stage can use it without importing another stage.

use std::borrow::Cow;

/// One SMTP reply: a code, an enhanced status code and a text that may span lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub esc: [u8; 3],
    pub text: Cow<'static, str>,
}

impl Reply {
    pub fn new(code: u16, esc: [u8; 3], text: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            code,
            esc,
            text: text.into(),
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Writes the reply, one `CODE-X.Y.Z text` line per text line, the last with a space.
    pub fn write(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.lines().collect();
        let [a, b, c] = self.esc;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(
                format!("{}{sep}{a}.{b}.{c} {}\r\n", self.code, line.trim_end()).as_bytes(),
            );
        }
        if lines.is_empty() {
            out.extend_from_slice(format!("{} {a}.{b}.{c} \r\n", self.code).as_bytes());
        }
    }
}

/// The greeting, `220 HOST ESMTP remailer` (no enhanced status code: RFC 2034 §3).
pub fn greeting(hostname: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("220 {hostname} ESMTP remailer\r\n").as_bytes());
}

/// The answer to EHLO: `250-HOST` and one line per extension (no enhanced status code).
pub fn ehlo(hostname: &str, extensions: &[String], out: &mut Vec<u8>) {
    let lines = std::iter::once(hostname).chain(extensions.iter().map(String::as_str));
    let count = extensions.len() + 1;
    for (i, line) in lines.enumerate() {
        let sep = if i + 1 == count { ' ' } else { '-' };
        out.extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
    }
}

/// What the SMTP session itself answers: to commands, to how input is framed, and when it
/// limits or closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `HELO`: the service's host name.
    Helo {
        hostname: String,
    },
    Ok,
    SenderOk,
    RecipientOk,
    StartData,
    /// After DATA: accepted; `Some(id)` when spool entries were made.
    Accepted {
        queue_id: Option<String>,
    },
    Bye,
    TlsReady,
    CannotVerify,
    Help,
    // Commands that are not understood or not allowed.
    InvalidUtf8,
    NeedsSmtpUtf8,
    LineTooLong,
    UnknownCommand,
    SenderSyntax,
    RecipientSyntax,
    Syntax {
        syntax: String,
    },
    InvalidParameter {
        param: String,
    },
    UnsupportedParameter {
        param: String,
    },
    SyntaxError,
    NotImplemented {
        command: String,
    },
    // Commands out of sequence.
    EhloFirst,
    NestedMail,
    MailFirst,
    NoValidRecipients,
    TooManyRecipients,
    TlsUnavailable,
    BdatRefused,
    // The message data.
    TooBig {
        limit: usize,
    },
    /// A bare LF (`true`) or bare CR (`false`): every smuggling look-alike (ARCHITECTURE.md §4).
    BareLineEnd {
        lf: bool,
    },
    // Closing (421) and per-client limits.
    BdatTooLarge,
    TooManyErrors,
    ShuttingDown,
    Busy,
    ClosingIdle,
    IdleTooLong,
    SessionTime,
    DataTooSlow {
        min_rate: u64,
    },
    TooManyConnectionsFromClient,
    ClientRate {
        what: &'static str,
        per_minute: u32,
        wait_secs: u64,
    },
    TooManyRefusals {
        wait_secs: u64,
    },
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Reply {
        use Answer::*;
        match answer {
            Helo { hostname } => Reply::new(250, [2, 0, 0], hostname),
            Ok => Reply::new(250, [2, 0, 0], "OK"),
            SenderOk => Reply::new(250, [2, 1, 0], "Sender OK"),
            RecipientOk => Reply::new(250, [2, 1, 5], "Recipient OK"),
            StartData => Reply::new(354, [2, 0, 0], "Start mail input; end with <CRLF>.<CRLF>"),
            Accepted { queue_id: None } => Reply::new(250, [2, 0, 0], "OK"),
            Accepted { queue_id: Some(id) } => {
                Reply::new(250, [2, 0, 0], format!("Queued as {id}"))
            }
            Bye => Reply::new(221, [2, 0, 0], "Bye"),
            TlsReady => Reply::new(220, [2, 0, 0], "Ready to start TLS"),
            CannotVerify => Reply::new(
                252,
                [2, 5, 2],
                "Cannot verify addresses; send the message and it will be tried",
            ),
            Help => Reply::new(
                214,
                [2, 0, 0],
                "This is a remailer. See its web page to register.",
            ),
            other => refusal_of_command(other),
        }
    }
}

/// The negative [`Answer`]s.
fn refusal_of_command(answer: Answer) -> Reply {
    use Answer::*;
    match answer {
        InvalidUtf8 => Reply::new(
            501,
            [5, 5, 4],
            "Command refused: it is not valid UTF-8 (malformed, overlong or surrogate byte \
             sequences are refused, not repaired)",
        ),
        NeedsSmtpUtf8 => Reply::new(
            553,
            [5, 6, 7],
            "Non-ASCII address refused: declare SMTPUTF8 in MAIL FROM to use one",
        ),
        LineTooLong => Reply::new(500, [5, 5, 2], "Line too long"),
        UnknownCommand => Reply::new(500, [5, 5, 1], "Command not recognized"),
        SenderSyntax => Reply::new(553, [5, 1, 7], "Sender address is not valid"),
        RecipientSyntax => Reply::new(553, [5, 1, 3], "Recipient address is not valid"),
        Syntax { syntax } => Reply::new(501, [5, 5, 4], format!("Syntax: {syntax}")),
        InvalidParameter { param } => {
            Reply::new(501, [5, 5, 4], format!("Invalid parameter {param}"))
        }
        UnsupportedParameter { param } => Reply::new(
            555,
            [5, 5, 4],
            format!(
                "Unsupported parameter {}",
                param.chars().take(40).collect::<String>()
            ),
        ),
        SyntaxError => Reply::new(500, [5, 5, 2], "Syntax error"),
        NotImplemented { command } => {
            Reply::new(502, [5, 5, 1], format!("{command} not implemented"))
        }
        EhloFirst => Reply::new(503, [5, 5, 1], "Say EHLO first"),
        NestedMail => Reply::new(503, [5, 5, 1], "Nested MAIL command"),
        MailFirst => Reply::new(503, [5, 5, 1], "MAIL first"),
        NoValidRecipients => Reply::new(554, [5, 5, 1], "No valid recipients"),
        TooManyRecipients => Reply::new(452, [4, 5, 3], "Too many recipients"),
        TlsUnavailable => Reply::new(502, [5, 5, 1], "STARTTLS not available"),
        BdatRefused => Reply::new(
            502,
            [5, 5, 1],
            "BDAT is not supported here (no CHUNKING); send the message with DATA",
        ),
        TooBig { limit } => Reply::new(
            552,
            [5, 3, 4],
            format!("Message too big (limit {limit} bytes)"),
        ),
        BareLineEnd { lf } => bare_line_end(lf),
        other => closing(other),
    }
}

/// The refusal of a message with a bare CR or LF.
fn bare_line_end(lf: bool) -> Reply {
    let what = if lf {
        "a bare LF (a line end without CR)"
    } else {
        "a bare CR (a CR not followed by LF)"
    };
    Reply::new(
        550,
        [5, 6, 0],
        format!(
            "Message refused: it contains {what}.\n\
             Lines in SMTP mail must end with CR LF (RFC 5321 section 2.3.8); nothing of it was accepted."
        ),
    )
}

/// The `421` [`Answer`]s, after which the session closes.
fn closing(answer: Answer) -> Reply {
    use Answer::*;
    match answer {
        BdatTooLarge => Reply::new(
            421,
            [4, 7, 0],
            "BDAT chunk too large to skip, closing connection",
        ),
        TooManyErrors => Reply::new(421, [4, 7, 0], "Too many errors, closing connection"),
        ShuttingDown => Reply::new(421, [4, 3, 2], "Service shutting down, try again later"),
        Busy => Reply::new(421, [4, 3, 2], "Too many connections, try again later"),
        ClosingIdle => Reply::new(
            421,
            [4, 3, 2],
            "Service busy: closing idle connection, try again later",
        ),
        IdleTooLong => Reply::new(421, [4, 4, 2], "Idle too long, closing connection"),
        SessionTime => Reply::new(
            421,
            [4, 4, 2],
            "Session time limit reached, closing connection",
        ),
        DataTooSlow { min_rate } => Reply::new(
            421,
            [4, 4, 2],
            format!(
                "Message data arrives too slowly (under {min_rate} bytes per second), \
                 closing connection"
            ),
        ),
        TooManyConnectionsFromClient => Reply::new(
            421,
            [4, 7, 0],
            "Too many connections from your address; close some and try again later",
        ),
        ClientRate {
            what,
            per_minute,
            wait_secs,
        } => Reply::new(
            421,
            [4, 7, 1],
            format!(
                "Rate limit: too many {what} from your address (at most {per_minute} per minute); \
                 try again in {wait_secs} seconds"
            ),
        ),
        TooManyRefusals { wait_secs } => Reply::new(
            421,
            [4, 7, 0],
            format!(
                "Too many refused recipients from your address; try again in {wait_secs} seconds"
            ),
        ),
        positive => unreachable!("{positive:?} is answered in `From<Answer>`"),
    }
}

/// What a stage after the session decided against a transaction: [`crate::policy`] at MAIL,
/// RCPT and after DATA, [`crate::rate_limits`] at RCPT, [`crate::remail`] after DATA. The
/// stages' error type towards the session; its reply is [`Reply::from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `MAIL FROM` is not a mailbox.
    InvalidSender,
    /// `RCPT TO` is not a mailbox.
    InvalidRecipient,
    /// A recipient outside DOMAIN: the service is never a relay.
    Relaying,
    /// Mail to `no-reply@DOMAIN`, the sender of one-way mail.
    NoReply,
    /// A bounce address that is not a valid token (or not its canonical spelling).
    UnknownBounceAddress,
    /// The null sender to an alias.
    NullToAlias,
    /// A non-member to any name at DOMAIN: what the service is and where to register.
    Unregistered {
        register_url: String,
    },
    /// A member to a name that is no alias.
    NoSuchAlias,
    ExpiredAlias,
    PausedAlias,
    OwnAlias,
    /// The sending member's own alias is paused.
    SenderPaused,
    /// `limits.member_per_hour` / `member_per_day`.
    MemberRate {
        allowed: u32,
        per: &'static str,
        wait_secs: u64,
    },
    /// `limits.alias_per_hour`.
    AliasRate {
        allowed: u32,
        wait_secs: u64,
    },
    /// SPF/DKIM/DMARC failed, per `policy.sender_auth`.
    AuthFailed {
        reason: String,
    },
    /// Sender authentication could not be completed (DNS): try again.
    AuthUnavailable {
        reason: String,
    },
    /// The From header is not the member's registered address.
    FromMismatch,
    /// A recipient's OpenPGP key has expired and `privacy.pgp_expired = "refuse"`.
    RecipientKeyExpired,
    /// The rewrite refused the content (ARCHITECTURE.md §3, fail closed); the code and
    /// enhanced status are the rewrite's (`RewriteError::status`), the text its reason.
    Content {
        code: u16,
        esc: [u8; 3],
        text: String,
    },
    /// The store, the spool or a task failed (logged where it happened): try again.
    LocalProblem,
}

impl From<Refusal> for Reply {
    fn from(refusal: Refusal) -> Reply {
        use Refusal::*;
        match refusal {
            InvalidSender => Reply::new(553, [5, 1, 7], "Sender address is not a valid mailbox"),
            InvalidRecipient => {
                Reply::new(553, [5, 1, 3], "Recipient address is not a valid mailbox")
            }
            Relaying => Reply::new(
                550,
                [5, 7, 1],
                "Relaying denied: this service accepts mail only for its own aliases",
            ),
            NoReply => Reply::new(
                550,
                [5, 7, 1],
                "This address only sends messages written in this service's anonymous web form.\n\
                 It accepts no mail: the sender of such a message is unknown, and cannot be replied to.",
            ),
            UnknownBounceAddress => Reply::new(
                550,
                [5, 1, 1],
                "No such bounce address (unknown or expired)",
            ),
            NullToAlias => Reply::new(
                550,
                [5, 7, 1],
                "Bounces and automatic replies are accepted only at this service's bounce addresses",
            ),
            Unregistered { register_url } => Reply::new(
                550,
                [5, 7, 1],
                format!(
                    "Your address is not registered with this remailer.\n\
                     This service relays mail only between its registered members, each known by an alias.\n\
                     To write to its members, register an alias for your address at {register_url}\n\
                     and send from the address you registered."
                ),
            ),
            NoSuchAlias => Reply::new(550, [5, 1, 1], "No such alias here"),
            other => refusal_of_alias(other),
        }
    }
}

/// The [`Refusal`]s of a known alias, the rate limits and after DATA.
fn refusal_of_alias(refusal: Refusal) -> Reply {
    use Refusal::*;
    match refusal {
        ExpiredAlias => Reply::new(
            550,
            [5, 1, 1],
            "This alias has expired and accepts no mail; its name is never given to anyone else",
        ),
        PausedAlias => Reply::new(550, [5, 2, 1], "This alias is paused and accepts no mail"),
        OwnAlias => Reply::new(
            550,
            [5, 7, 1],
            "That is your own alias; the remailer does not send mail to yourself",
        ),
        SenderPaused => Reply::new(
            550,
            [5, 7, 1],
            "Your alias is paused because mail to your address bounced; contact the operator",
        ),
        MemberRate {
            allowed,
            per,
            wait_secs,
        } => Reply::new(
            450,
            [4, 7, 1],
            format!(
                "Rate limit: you have sent the most messages allowed ({allowed} per {per}); \
                 nothing was sent, try again in {wait_secs} seconds"
            ),
        ),
        AliasRate { allowed, wait_secs } => Reply::new(
            450,
            [4, 7, 1],
            format!(
                "Rate limit: this alias has received the most messages allowed ({allowed} per hour); \
                 try again in {wait_secs} seconds"
            ),
        ),
        AuthFailed { reason } => Reply::new(
            550,
            [5, 7, 1],
            format!("Sender authentication failed: {reason}"),
        ),
        AuthUnavailable { reason } => Reply::new(
            451,
            [4, 7, 0],
            format!("Sender authentication could not be completed: {reason}"),
        ),
        FromMismatch => Reply::new(
            550,
            [5, 7, 1],
            "The From header must be the address you registered, the same as the envelope sender",
        ),
        RecipientKeyExpired => Reply::new(
            550,
            [5, 7, 1],
            "A recipient's encryption key has expired; the message was not delivered",
        ),
        Content { code, esc, text } => Reply::new(code, esc, text),
        LocalProblem => Reply::new(
            451,
            [4, 3, 0],
            "Temporary local problem, please try again later",
        ),
        earlier => unreachable!("{earlier:?} is answered in `From<Refusal>`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_replies() {
        let mut out = Vec::new();
        Reply::new(550, [5, 7, 1], "first\nsecond").write(&mut out);
        assert_eq!(out, b"550-5.7.1 first\r\n550 5.7.1 second\r\n");
    }

    #[test]
    fn ehlo_lines() {
        let mut out = Vec::new();
        ehlo(
            "mx.test",
            &["PIPELINING".into(), "SMTPUTF8".into()],
            &mut out,
        );
        assert_eq!(out, b"250-mx.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n");
    }

    #[test]
    fn every_refusal_is_negative_and_every_answer_has_a_status() {
        let register_url = "https://r.test/register".to_string();
        for r in [
            Refusal::Unregistered { register_url },
            Refusal::LocalProblem,
            Refusal::ExpiredAlias,
        ] {
            let reply = Reply::from(r);
            assert!(reply.code >= 400 && reply.esc[0] == (reply.code / 100) as u8);
        }
        let queued = Reply::from(Answer::Accepted {
            queue_id: Some("q1".into()),
        });
        assert_eq!((queued.code, queued.text.as_ref()), (250, "Queued as q1"));
    }
}
