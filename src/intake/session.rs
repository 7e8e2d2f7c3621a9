//! One SMTP session: reads commands with smtp-proto's receivers (pipelined input works:
//! replies are collected and flushed when the client's input is used up), enforces the
//! limits (line length, message size, recipients, timeouts, errors), and runs each
//! transaction through [`Policy`](crate::policy::Policy) and [`Remail`](crate::remail::Remail).
//! Client IPs are never logged; a session is known in logs by a random id.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::data::{BareLineEnd, DataEnd, DataReceiver};
use super::reply::Reply;
use super::Intake;
use crate::policy::{Recipient, Sender};
use crate::remail::Transaction;
use crate::sender_auth::SpfCheck;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Longest command line accepted (Postfix's `line_length_limit`); RFC 5321 asks for 512.
const MAX_COMMAND_LINE: usize = 2048;

/// Longest wait for a client to finish the TLS handshake.
const MAX_HANDSHAKE: Duration = Duration::from_secs(30);

/// What the session is reading.
enum Mode {
    /// Commands; `usize` is the length of a command line received in part so far.
    Command(usize),
    /// The rest of an over-long command line, discarded up to its end.
    SkipLine,
    /// Message data, up to `<CR><LF>.<CR><LF>` only ([`super::data`]).
    Data(DataReceiver),
}

/// What handling a command asks the I/O loop to do next.
enum Next {
    Continue,
    StartTls,
    Quit,
}

struct Session {
    intake: Arc<Intake>,
    id: String,
    peer: SocketAddr,
    helo: Option<String>,
    tls: bool,
    sender: Option<Sender>,
    mail_from: String,
    recipients: Vec<Recipient>,
    spf: Option<SpfCheck>,
    errors: u32,
}

/// Runs one session over `stream` (TCP, or any byte stream) from the client at `peer`.
pub(super) async fn run<S>(intake: Arc<Intake>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut session = Session {
        id: crate::keys::random_hex(4),
        intake,
        peer,
        helo: None,
        tls: false,
        sender: None,
        mail_from: String::new(),
        recipients: Vec::new(),
        spf: None,
        errors: 0,
    };
    tracing::debug!(session = %session.id, "connection opened");
    let mut stream: Box<dyn Io> = Box::new(stream);
    loop {
        match session.converse(&mut stream).await {
            Ok(Next::StartTls) => match session.upgrade(stream).await {
                Some(tls) => stream = tls,
                None => return,
            },
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(session = %session.id, error = %e, "session ended");
                break;
            }
        }
    }
    let _ = stream.shutdown().await;
}

impl Session {
    /// Reads and answers commands until QUIT, STARTTLS, a timeout or an error.
    async fn converse(&mut self, stream: &mut Box<dyn Io>) -> std::io::Result<Next> {
        let mut out = Vec::with_capacity(512);
        if !self.tls {
            let greeting = format!("220 {} ESMTP remailer\r\n", self.intake.hostname);
            stream.write_all(greeting.as_bytes()).await?;
        }
        let mut receiver = RequestReceiver::default();
        let mut mode = Mode::Command(0);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let limit = match mode {
                Mode::Command(_) | Mode::SkipLine => self.intake.config.smtp.command_timeout,
                _ => self.intake.config.smtp.data_timeout,
            };
            let n = match tokio::time::timeout(Duration::from_secs(limit), stream.read(&mut buf))
                .await
            {
                Ok(Ok(0)) => return Ok(Next::Quit),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    stream
                        .write_all(b"421 4.4.2 Idle too long, closing connection\r\n")
                        .await?;
                    return Ok(Next::Quit);
                }
            };
            let mut bytes = buf[..n].iter();
            while !bytes.as_slice().is_empty() {
                let next = match &mut mode {
                    Mode::Command(partial) => {
                        let rest = bytes.as_slice();
                        let newline = rest.iter().position(|&b| b == b'\n');
                        let length = *partial + newline.unwrap_or(rest.len());
                        if length > MAX_COMMAND_LINE {
                            receiver = RequestReceiver::default();
                            bytes = match newline {
                                Some(pos) => rest[pos + 1..].iter(),
                                None => {
                                    mode = Mode::SkipLine;
                                    [].iter()
                                }
                            };
                            if let Mode::Command(p) = &mut mode {
                                *p = 0;
                            }
                            self.syntax_error(ProtoError::ResponseTooLong, &mut out)
                        } else {
                            *partial = if newline.is_some() { 0 } else { length };
                            match receiver.ingest(&mut bytes) {
                                Ok(request) => {
                                    let request = request.into_owned();
                                    self.command(request, &mut mode, &mut out).await
                                }
                                Err(ProtoError::NeedsMoreData { .. }) => Next::Continue,
                                Err(e) => self.syntax_error(e, &mut out),
                            }
                        }
                    }
                    Mode::SkipLine => {
                        let rest = bytes.as_slice();
                        bytes = match rest.iter().position(|&b| b == b'\n') {
                            Some(pos) => {
                                mode = Mode::Command(0);
                                rest[pos + 1..].iter()
                            }
                            None => [].iter(),
                        };
                        Next::Continue
                    }
                    Mode::Data(data) => {
                        let rest = bytes.as_slice();
                        match data.ingest(rest) {
                            None => bytes = [].iter(),
                            Some((used, end)) => {
                                bytes = rest[used..].iter();
                                mode = Mode::Command(0);
                                self.end_of_data(end).await.write(&mut out);
                            }
                        }
                        Next::Continue
                    }
                };
                match next {
                    Next::Continue => {}
                    Next::StartTls => {
                        // Anything pipelined after STARTTLS is discarded (command injection).
                        stream.write_all(&out).await?;
                        return Ok(Next::StartTls);
                    }
                    Next::Quit => {
                        stream.write_all(&out).await?;
                        return Ok(Next::Quit);
                    }
                }
                if self.errors >= self.intake.config.smtp.max_errors {
                    out.extend_from_slice(b"421 4.7.0 Too many errors, closing connection\r\n");
                    stream.write_all(&out).await?;
                    return Ok(Next::Quit);
                }
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
        }
    }

    /// Runs the TLS handshake after `220` to STARTTLS. It is bounded like a command (and
    /// never longer than [`MAX_HANDSHAKE`]), so a client that goes silent after STARTTLS
    /// holds its connection slot no longer than an idle one.
    async fn upgrade(&mut self, stream: Box<dyn Io>) -> Option<Box<dyn Io>> {
        let acceptor = self.intake.tls_acceptor()?;
        let limit = Duration::from_secs(self.intake.config.smtp.command_timeout).min(MAX_HANDSHAKE);
        let handshake = tokio::time::timeout(limit, acceptor.accept(stream)).await;
        match handshake {
            Ok(Ok(tls)) => {
                self.tls = true;
                self.helo = None;
                self.reset();
                Some(Box::new(tls))
            }
            _ => {
                tracing::debug!(session = %self.id, "TLS handshake failed");
                None
            }
        }
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
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => match self.data_ready() {
                Ok(reply) => {
                    *mode = Mode::Data(DataReceiver::new(self.intake.config.smtp.max_message_size));
                    reply
                }
                Err(reply) => reply,
            },
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
        if self.recipients.len() >= self.intake.config.smtp.max_recipients {
            return Reply::new(452, [4, 5, 3], "Too many recipients");
        }
        match self.intake.policy.recipient(sender, &to.address).await {
            Ok(rcpt) => {
                if !self.recipients.iter().any(|r| same_recipient(r, &rcpt)) {
                    self.recipients.push(rcpt);
                }
                Reply::new(250, [2, 1, 5], "Recipient OK")
            }
            Err(reply) => reply,
        }
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

    /// The reply at the end of data: the message goes on, or is refused as a whole.
    async fn end_of_data(&mut self, end: DataEnd) -> Reply {
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
        self.reset();
        reply
    }

    fn size_refusal(&self) -> Reply {
        Reply::new(
            552,
            [5, 3, 4],
            Cow::Owned(format!(
                "Message too big (limit {} bytes)",
                self.intake.config.smtp.max_message_size
            )),
        )
    }

    fn reset(&mut self) {
        self.sender = None;
        self.mail_from.clear();
        self.recipients.clear();
        self.spf = None;
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
