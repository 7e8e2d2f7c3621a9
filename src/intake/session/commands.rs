//! The commands of a session and the transaction they build: EHLO, MAIL (with SMTPUTF8),
//! RCPT (through [`Policy`](crate::policy::Policy), with refusals counted per client), DATA
//! and its end, and the refusal of what this service does not offer (BDAT, AUTH, …).

use std::sync::Arc;

use smtp_proto::{Error as ProtoError, Request, MAIL_SMTPUTF8};
use tokio::time::Instant;

use super::{Mode, Next, Session, Transfer};
use crate::envelope::{Recipient, Sender, Transaction};
use crate::intake::command::{self, Refused};
use crate::intake::data::{BareLineEnd, DataEnd, DataReceiver};
use crate::reply::{Answer, Reply};

impl Session {
    /// Checks and parses one complete command line, and handles it.
    pub(super) async fn command_line(
        &mut self,
        line: &[u8],
        mode: &mut Mode,
        out: &mut Vec<u8>,
    ) -> Next {
        if let Err(reply) = self.client.command() {
            tracing::info!("client over its command rate; closing");
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
        let answer = match error {
            ProtoError::ResponseTooLong => Answer::LineTooLong,
            ProtoError::UnknownCommand => Answer::UnknownCommand,
            ProtoError::InvalidSenderAddress => Answer::SenderSyntax,
            ProtoError::InvalidRecipientAddress => Answer::RecipientSyntax,
            ProtoError::SyntaxError { syntax } => Answer::Syntax {
                syntax: syntax.to_string(),
            },
            ProtoError::InvalidParameter { param } => Answer::InvalidParameter {
                param: param.to_string(),
            },
            ProtoError::UnsupportedParameter { param } => Answer::UnsupportedParameter {
                param: param.to_string(),
            },
            _ => Answer::SyntaxError,
        };
        Reply::from(answer).write(out);
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
                Answer::Helo {
                    hostname: self.intake.hostname.clone(),
                }
                .into()
            }
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => {
                if let Some(reply) = self.client.cut_off() {
                    tracing::info!("client cut off after too many refused recipients");
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
                    let limit = self.intake.smtp.max_message_size;
                    *mode = transfer(Transfer::Data(DataReceiver::new(limit)));
                    reply
                }
                Err(reply) => reply,
            },
            Request::Bdat { chunk_size, .. } => return self.bdat(chunk_size, mode, out),
            Request::Rset => {
                self.reset();
                Answer::Ok.into()
            }
            Request::Noop { .. } => Answer::Ok.into(),
            Request::Quit => {
                Reply::from(Answer::Bye).write(out);
                return Next::Quit;
            }
            Request::StartTls => {
                if self.tls || self.intake.tls_acceptor().is_none() {
                    Answer::TlsUnavailable.into()
                } else {
                    Reply::from(Answer::TlsReady).write(out);
                    return Next::StartTls;
                }
            }
            Request::Vrfy { .. } | Request::Expn { .. } => Answer::CannotVerify.into(),
            Request::Help { .. } => Answer::Help.into(),
            other => {
                self.errors += 1;
                Answer::NotImplemented {
                    command: other.name().to_string(),
                }
                .into()
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
        let smtp = &self.intake.smtp;
        let mut lines: Vec<String> = vec![
            "PIPELINING".into(),
            format!("SIZE {}", smtp.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        if !self.tls && self.intake.tls_acceptor().is_some() {
            lines.push("STARTTLS".into());
        }
        crate::reply::ehlo(&self.intake.hostname, &lines, out);
    }

    async fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Reply {
        if self.helo.is_none() {
            return Answer::EhloFirst.into();
        }
        if self.sender.is_some() {
            return Answer::NestedMail.into();
        }
        if from.size > self.intake.smtp.max_message_size {
            return self.size_refusal();
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if !from.address.is_ascii() && !smtputf8 {
            return command::needs_smtputf8();
        }
        let helo = self.helo.clone().unwrap_or_default();
        let decision = self
            .intake
            .pipeline
            .mail(self.peer.ip(), &helo, &from.address);
        match decision.await {
            Ok((sender, spf)) => {
                self.spf = spf;
                self.sender = Some(sender);
                self.smtputf8 = smtputf8;
                self.mail_from = from.address;
                Answer::SenderOk.into()
            }
            Err(refusal) => refusal.into(),
        }
    }

    async fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Reply {
        let Some(sender) = &self.sender else {
            return Answer::MailFirst.into();
        };
        if !to.address.is_ascii() && !self.smtputf8 {
            return command::needs_smtputf8();
        }
        if self.recipients.len() >= self.intake.smtp.max_recipients {
            return Answer::TooManyRecipients.into();
        }
        match self.intake.pipeline.rcpt(sender, &to.address).await {
            Ok(rcpt) => {
                if !self.recipients.iter().any(|r| r.same_as(&rcpt)) {
                    if let Err(refusal) = self.rate_limit(&rcpt) {
                        tracing::info!("recipient refused by a rate limit");
                        return refusal.into();
                    }
                    self.recipients.push(rcpt);
                }
                Answer::RecipientOk.into()
            }
            Err(refusal) => refusal.into(),
        }
    }

    /// The member and alias rate limits for a message from a member to an alias: the
    /// member's count is taken once per transaction, the alias's once per recipient.
    fn rate_limit(&mut self, rcpt: &Recipient) -> Result<(), crate::reply::Refusal> {
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
            return Err(Answer::MailFirst.into());
        }
        if self.recipients.is_empty() {
            return Err(Answer::NoValidRecipients.into());
        }
        Ok(Answer::StartData.into())
    }

    /// `BDAT` (RFC 3030): not offered (no CHUNKING), so refused; its chunk is read and
    /// dropped, never taken for commands. A chunk larger than a message may be cannot be
    /// skipped in reasonable time: the session is closed instead.
    fn bdat(&mut self, chunk_size: usize, mode: &mut Mode, out: &mut Vec<u8>) -> Next {
        self.errors += 1;
        Reply::from(Answer::BdatRefused).write(out);
        if chunk_size > self.intake.smtp.max_message_size {
            Reply::from(Answer::BdatTooLarge).write(out);
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
                tracing::info!(bare = ?kind, "refused a message with a bare line end");
                Answer::BareLineEnd {
                    lf: kind == BareLineEnd::Lf,
                }
                .into()
            }
        }
    }

    async fn finish_message(&mut self, message: Vec<u8>) -> Reply {
        let tx = Transaction {
            peer: self.peer.ip(),
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: std::mem::take(&mut self.mail_from),
            sender: self.sender.take().expect("DATA needs MAIL"),
            recipients: std::mem::take(&mut self.recipients),
            message: Arc::new(message),
            spf: self.spf.take(),
        };
        let reply = match self.intake.pipeline.data(tx).await {
            Ok(accepted) => {
                crate::metrics::accepted();
                accepted.into()
            }
            Err(refusal) => refusal.into(),
        };
        self.reset();
        reply
    }

    fn size_refusal(&self) -> Reply {
        crate::metrics::refused(crate::metrics::Refusal::Size);
        Answer::TooBig {
            limit: self.intake.smtp.max_message_size,
        }
        .into()
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
