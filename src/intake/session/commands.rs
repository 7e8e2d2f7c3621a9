//! The commands of a session and the transaction they build: EHLO, MAIL (with SMTPUTF8),
//! RCPT (through [`Policy`](crate::policy::Policy), with refusals counted per client), DATA
//! and its end, and the refusal of what this service does not offer (BDAT, AUTH, …).

use std::borrow::Cow;
use std::sync::Arc;

use smtp_proto::{Error as ProtoError, Request, MAIL_SMTPUTF8};
use tokio::time::Instant;

use super::{Mode, Next, Session, Transfer};
use crate::intake::command::{self, Refused};
use crate::intake::data::{BareLineEnd, DataEnd, DataReceiver};
use crate::intake::reply::Reply;
use crate::policy::{Recipient, Sender};
use crate::remail::Transaction;

impl Session {
    /// Checks and parses one complete command line, and handles it.
    pub(super) async fn command_line(
        &mut self,
        line: &[u8],
        mode: &mut Mode,
        out: &mut Vec<u8>,
    ) -> Next {
        if let Err(reply) = self.client.command() {
            tracing::info!(session = %self.id, "client over its command rate; closing");
            reply.write(out);
            return Next::Quit;
        }
        match command::parse(line) {
            Ok(request) => self.command(request, mode, out).await,
            Err(Refused::Reply(reply)) => {
                self.errors += 1;
                reply.write(out);
                Next::Continue
            }
            Err(Refused::Syntax(e)) => self.syntax_error(e, out),
        }
    }

    pub(super) fn line_too_long(&mut self, out: &mut Vec<u8>) -> Next {
        self.syntax_error(ProtoError::ResponseTooLong, out)
    }

    fn syntax_error(&mut self, error: ProtoError, out: &mut Vec<u8>) -> Next {
        self.errors += 1;
        let reply = match error {
            ProtoError::ResponseTooLong => Reply::new(500, [5, 5, 2], "Line too long"),
            ProtoError::UnknownCommand => Reply::new(500, [5, 5, 1], "Command not recognized"),
            ProtoError::InvalidSenderAddress => {
                Reply::new(553, [5, 1, 7], "Sender address is not valid")
            }
            ProtoError::InvalidRecipientAddress => {
                Reply::new(553, [5, 1, 3], "Recipient address is not valid")
            }
            ProtoError::SyntaxError { syntax } => {
                Reply::new(501, [5, 5, 4], format!("Syntax: {syntax}"))
            }
            ProtoError::InvalidParameter { param } => {
                Reply::new(501, [5, 5, 4], format!("Invalid parameter {param}"))
            }
            ProtoError::UnsupportedParameter { param } => Reply::new(
                555,
                [5, 5, 4],
                format!(
                    "Unsupported parameter {}",
                    param.chars().take(40).collect::<String>()
                ),
            ),
            _ => Reply::new(500, [5, 5, 2], "Syntax error"),
        };
        reply.write(out);
        Next::Continue
    }

    async fn command(
        &mut self,
        request: Request<String>,
        mode: &mut Mode,
        out: &mut Vec<u8>,
    ) -> Next {
        let reply = match request {
            Request::Ehlo { host } => {
                self.ehlo(host, out);
                return Next::Continue;
            }
            Request::Helo { host } => {
                self.helo = Some(host);
                self.reset();
                Reply::new(250, [2, 0, 0], self.intake.hostname.clone())
            }
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => {
                if let Some(reply) = self.client.cut_off() {
                    tracing::info!(session = %self.id, "client cut off after too many refused recipients");
                    reply.write(out);
                    return Next::Quit;
                }
                let reply = self.rcpt(to).await;
                if reply.code >= 500 {
                    self.client.refused();
                }
                reply
            }
            Request::Data => match self.data_ready() {
                Ok(reply) => {
                    let limit = self.intake.config.smtp.max_message_size;
                    *mode = transfer(Transfer::Data(DataReceiver::new(limit)));
                    reply
                }
                Err(reply) => reply,
            },
            Request::Bdat { chunk_size, .. } => return self.bdat(chunk_size, mode, out),
            Request::Rset => {
                self.reset();
                Reply::new(250, [2, 0, 0], "OK")
            }
            Request::Noop { .. } => Reply::new(250, [2, 0, 0], "OK"),
            Request::Quit => {
                Reply::new(221, [2, 0, 0], "Bye").write(out);
                return Next::Quit;
            }
            Request::StartTls => {
                if self.tls || self.intake.tls_acceptor().is_none() {
                    Reply::new(502, [5, 5, 1], "STARTTLS not available")
                } else {
                    Reply::new(220, [2, 0, 0], "Ready to start TLS").write(out);
                    return Next::StartTls;
                }
            }
            Request::Vrfy { .. } | Request::Expn { .. } => Reply::new(
                252,
                [2, 5, 2],
                "Cannot verify addresses; send the message and it will be tried",
            ),
            Request::Help { .. } => Reply::new(
                214,
                [2, 0, 0],
                "This is a remailer. See its web page to register.",
            ),
            other => {
                self.errors += 1;
                Reply::new(502, [5, 5, 1], format!("{} not implemented", other.name()))
            }
        };
        if !reply.is_positive() && reply.code != 252 {
            self.errors += 1;
        }
        reply.write(out);
        Next::Continue
    }

    fn ehlo(&mut self, host: String, out: &mut Vec<u8>) {
        self.helo = Some(host);
        self.reset();
        let smtp = &self.intake.config.smtp;
        let mut lines = vec![
            self.intake.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", smtp.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        if !self.tls && self.intake.tls_acceptor().is_some() {
            lines.push("STARTTLS".into());
        }
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
        }
    }

    async fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Reply {
        if self.helo.is_none() {
            return Reply::new(503, [5, 5, 1], "Say EHLO first");
        }
        if self.sender.is_some() {
            return Reply::new(503, [5, 5, 1], "Nested MAIL command");
        }
        if from.size > self.intake.config.smtp.max_message_size {
            return self.size_refusal();
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if !from.address.is_ascii() && !smtputf8 {
            return command::needs_smtputf8();
        }
        match self.intake.policy.sender(&from.address).await {
            Ok(sender) => {
                if matches!(sender, Sender::Member(_)) {
                    let helo = self.helo.clone().unwrap_or_default();
                    self.spf = self
                        .intake
                        .policy
                        .spf(self.peer.ip(), &helo, &from.address)
                        .await;
                }
                self.sender = Some(sender);
                self.smtputf8 = smtputf8;
                self.mail_from = from.address;
                Reply::new(250, [2, 1, 0], "Sender OK")
            }
            Err(reply) => reply,
        }
    }

    async fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Reply {
        let Some(sender) = &self.sender else {
            return Reply::new(503, [5, 5, 1], "MAIL first");
        };
        if !to.address.is_ascii() && !self.smtputf8 {
            return command::needs_smtputf8();
        }
        if self.recipients.len() >= self.intake.config.smtp.max_recipients {
            return Reply::new(452, [4, 5, 3], "Too many recipients");
        }
        match self.intake.policy.recipient(sender, &to.address).await {
            Ok(rcpt) => {
                if !self.recipients.iter().any(|r| same_recipient(r, &rcpt)) {
                    if let Err(reply) = self.rate_limit(&rcpt) {
                        tracing::info!(session = %self.id, "recipient refused by a rate limit");
                        return reply;
                    }
                    self.recipients.push(rcpt);
                }
                Reply::new(250, [2, 1, 5], "Recipient OK")
            }
            Err(reply) => reply,
        }
    }

    /// The member and alias rate limits for a message from a member to an alias: the
    /// member's count is taken once per transaction, the alias's once per recipient.
    fn rate_limit(&mut self, rcpt: &Recipient) -> Result<(), Reply> {
        let (Some(Sender::Member(member)), Recipient::Alias(alias)) = (&self.sender, rcpt) else {
            return Ok(());
        };
        let limits = &self.intake.limits;
        if !self.member_counted {
            limits.member(member.id)?;
            self.member_counted = true;
        }
        limits.alias(alias.id)
    }

    fn data_ready(&self) -> Result<Reply, Reply> {
        if self.sender.is_none() {
            return Err(Reply::new(503, [5, 5, 1], "MAIL first"));
        }
        if self.recipients.is_empty() {
            return Err(Reply::new(554, [5, 5, 1], "No valid recipients"));
        }
        Ok(Reply::new(
            354,
            [2, 0, 0],
            "Start mail input; end with <CRLF>.<CRLF>",
        ))
    }

    /// `BDAT` (RFC 3030): not offered (no CHUNKING), so refused; its chunk is read and
    /// dropped, never taken for commands. A chunk larger than a message may be cannot be
    /// skipped in reasonable time: the session is closed instead.
    fn bdat(&mut self, chunk_size: usize, mode: &mut Mode, out: &mut Vec<u8>) -> Next {
        self.errors += 1;
        Reply::new(
            502,
            [5, 5, 1],
            "BDAT is not supported here (no CHUNKING); send the message with DATA",
        )
        .write(out);
        if chunk_size > self.intake.config.smtp.max_message_size {
            Reply::new(
                421,
                [4, 7, 0],
                "BDAT chunk too large to skip, closing connection",
            )
            .write(out);
            return Next::Quit;
        }
        if chunk_size > 0 {
            *mode = transfer(Transfer::Skip(chunk_size));
        }
        Next::Continue
    }

    /// The reply at the end of data: the message goes on, or is refused as a whole.
    pub(super) async fn end_of_data(&mut self, end: DataEnd) -> Reply {
        match end {
            DataEnd::Message(message) => self.finish_message(message).await,
            DataEnd::TooBig => {
                self.reset();
                self.size_refusal()
            }
            DataEnd::BareLineEnd(kind) => {
                self.reset();
                tracing::info!(session = %self.id, bare = ?kind, "refused a message with a bare line end");
                bare_line_end_refusal(kind)
            }
        }
    }

    async fn finish_message(&mut self, message: Vec<u8>) -> Reply {
        let tx = Transaction {
            session: self.id.clone(),
            peer: self.peer.ip(),
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: std::mem::take(&mut self.mail_from),
            sender: self.sender.take().expect("DATA needs MAIL"),
            recipients: std::mem::take(&mut self.recipients),
            message: Arc::new(message),
            spf: self.spf.take(),
        };
        if let Err(refusal) = self.intake.policy.authenticate(&tx).await {
            self.reset();
            return refusal;
        }
        let reply = self.intake.remail.accept(tx).await;
        if reply.code == 250 {
            crate::metrics::accepted();
        }
        self.reset();
        reply
    }

    fn size_refusal(&self) -> Reply {
        crate::metrics::refused(crate::metrics::Refusal::Size);
        Reply::new(
            552,
            [5, 3, 4],
            Cow::Owned(format!(
                "Message too big (limit {} bytes)",
                self.intake.config.smtp.max_message_size
            )),
        )
    }

    pub(super) fn reset(&mut self) {
        self.sender = None;
        self.smtputf8 = false;
        self.mail_from.clear();
        self.recipients.clear();
        self.spf = None;
        self.member_counted = false;
    }
}

fn transfer(sink: Transfer) -> Mode {
    Mode::Transfer {
        sink,
        started: Instant::now(),
        bytes: 0,
    }
}

/// The refusal of a message with a bare CR or LF (which is how every smuggling look-alike
/// of `<CR><LF>.<CR><LF>` reaches us; see [`super::data`]).
fn bare_line_end_refusal(kind: BareLineEnd) -> Reply {
    let what = match kind {
        BareLineEnd::Lf => "a bare LF (a line end without CR)",
        BareLineEnd::Cr => "a bare CR (a CR not followed by LF)",
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

fn same_recipient(a: &Recipient, b: &Recipient) -> bool {
    match (a, b) {
        (Recipient::Alias(x), Recipient::Alias(y)) => x.id == y.id,
        (Recipient::Bounce(x), Recipient::Bounce(y)) => x == y,
        (Recipient::Postmaster, Recipient::Postmaster) => true,
        _ => false,
    }
}
