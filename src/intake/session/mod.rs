//! One SMTP session: the I/O loop and its time limits. Input is framed by
//! [`LineReader`](super::command::LineReader) (commands) and
//! [`DataReceiver`](super::data::DataReceiver) (message data); pipelined input works, with
//! replies collected and flushed when the client's input is used up. Each command is handled
//! in [`commands`], which runs transactions through [`Policy`](crate::policy::Policy) and
//! [`Remail`](crate::remail::Remail).
//!
//! Time limits (RFC 5321 §4.5.3.2 as a floor): a command must arrive within
//! `smtp.command_timeout` of the previous one (bytes of a half-sent line do not reset it);
//! message data must keep coming (`smtp.data_timeout` per read) and on average at
//! `smtp.min_data_rate` bytes per second after a first `data_timeout`; the whole session
//! ends at `smtp.session_timeout`. A session waiting for a command may be asked to close when
//! the service is full ([`super::slots`]). Client IPs are never logged: every log line of a
//! session, down through policy and remail, is inside its one `smtp` span, whose only field is
//! the session's number in this process (`smtp{session=7}`).

mod commands;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::Instrument;

use super::clients::Client;
use super::command::{LineEvent, LineReader};
use super::data::DataReceiver;
use super::slots::SlotGuard;
use super::Intake;
use crate::envelope::{Recipient, Sender};
use crate::reply::{Answer, Reply};
use crate::sender_auth::SpfCheck;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Longest wait for a client to finish the TLS handshake.
const MAX_HANDSHAKE: Duration = Duration::from_secs(30);

/// How long past its deadline a session may take to finish what it is doing (a message
/// being spooled) before it is dropped.
const DEADLINE_GRACE: Duration = Duration::from_secs(30);

/// What the session is reading.
enum Mode {
    Command(LineReader),
    /// Bytes after `354` or a refused `BDAT`, timed for the minimum data rate.
    Transfer {
        sink: Transfer,
        started: Instant,
        bytes: u64,
    },
}

enum Transfer {
    /// Message data, up to `<CR><LF>.<CR><LF>` only ([`super::data`]).
    Data(DataReceiver),
    /// The rest of a refused `BDAT` chunk: read and dropped, never taken for commands.
    Skip(usize),
}

/// What handling input asks the I/O loop to do next.
enum Next {
    Continue,
    StartTls,
    Quit,
}

/// What waiting for input brought.
enum Wait {
    Bytes(usize),
    Closed,
    /// A time limit passed or the session was asked to make room: say this and close.
    Close(Reply),
}

/// Sessions started in this process; the next one's number is one more.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

struct Session {
    intake: Arc<Intake>,
    peer: SocketAddr,
    client: Client,
    slot: SlotGuard,
    /// The end of the whole session (`smtp.session_timeout`).
    deadline: Instant,
    /// When the next command must have arrived.
    command_deadline: Instant,
    helo: Option<String>,
    tls: bool,
    sender: Option<Sender>,
    mail_from: String,
    /// `MAIL FROM` declared `SMTPUTF8`: non-ASCII addresses are allowed.
    smtputf8: bool,
    recipients: Vec<Recipient>,
    spf: Option<SpfCheck>,
    /// This transaction counted against its member's rate limits.
    member_counted: bool,
    errors: u32,
}

/// Runs one session over `stream` (TCP, or any byte stream) from the client at `peer`.
pub(super) async fn run<S>(
    intake: Arc<Intake>,
    stream: S,
    peer: SocketAddr,
    client: Client,
    slot: SlotGuard,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let now = Instant::now();
    let smtp = &intake.smtp;
    let deadline = now + Duration::from_secs(smtp.session_timeout);
    let command_deadline = now + Duration::from_secs(smtp.command_timeout);
    let mut session = Session {
        intake,
        peer,
        client,
        slot,
        deadline,
        command_deadline,
        helo: None,
        tls: false,
        sender: None,
        mail_from: String::new(),
        smtputf8: false,
        recipients: Vec::new(),
        spf: None,
        member_counted: false,
        errors: 0,
    };
    let span = tracing::info_span!(
        "smtp",
        session = SESSIONS.fetch_add(1, Ordering::Relaxed) + 1
    );
    async move {
        tracing::debug!("connection opened");
        let talk = session.talk(Box::new(stream));
        if let Ok(Some(mut stream)) = tokio::time::timeout_at(deadline + DEADLINE_GRACE, talk).await
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
        }
    }
    .instrument(span)
    .await
}

impl Session {
    /// Converses until the end, through STARTTLS; returns the stream to close, if any.
    async fn talk(&mut self, mut stream: Box<dyn Io>) -> Option<Box<dyn Io>> {
        loop {
            match self.converse(&mut stream).await {
                Ok(Next::StartTls) => stream = self.upgrade(stream).await?,
                Ok(_) => return Some(stream),
                Err(e) => {
                    tracing::debug!(error = %e, "session ended");
                    return Some(stream);
                }
            }
        }
    }

    /// Reads and answers commands until QUIT, STARTTLS, a time limit or an error.
    async fn converse(&mut self, stream: &mut Box<dyn Io>) -> std::io::Result<Next> {
        let mut out = Vec::with_capacity(512);
        if !self.tls {
            let mut greeting = Vec::new();
            crate::reply::greeting(&self.intake.hostname, &mut greeting);
            self.send(stream, &greeting).await?;
        }
        let mut mode = Mode::Command(LineReader::default());
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match self.wait(stream, &mut buf, &mode).await? {
                Wait::Bytes(n) => n,
                Wait::Closed => return Ok(Next::Quit),
                Wait::Close(reply) => {
                    reply.write(&mut out);
                    self.send(stream, &out).await?;
                    return Ok(Next::Quit);
                }
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let (used, next) = self.consume(rest, &mut mode, &mut out).await;
                rest = &rest[used..];
                let next = match next {
                    Next::Continue if self.errors >= self.intake.smtp.max_errors => {
                        Reply::from(Answer::TooManyErrors).write(&mut out);
                        Next::Quit
                    }
                    next => next,
                };
                if !matches!(next, Next::Continue) {
                    // Anything pipelined after STARTTLS is discarded (command injection).
                    self.send(stream, &out).await?;
                    return Ok(next);
                }
            }
            if !out.is_empty() {
                self.send(stream, &out).await?;
                out.clear();
            }
        }
    }

    /// Handles the start of `input`; returns how much of it was used.
    async fn consume(&mut self, input: &[u8], mode: &mut Mode, out: &mut Vec<u8>) -> (usize, Next) {
        match mode {
            Mode::Command(lines) => {
                let (used, event) = lines.ingest(input);
                let next = match event {
                    None => return (used, Next::Continue),
                    Some(LineEvent::TooLong) => self.line_too_long(out),
                    Some(LineEvent::Line(line)) => self.command_line(&line, mode, out).await,
                };
                self.restart_command_clock();
                (used, next)
            }
            Mode::Transfer { sink, bytes, .. } => {
                // Some when the transfer is over (with how the data ended, for DATA).
                let (used, over) = match sink {
                    Transfer::Data(receiver) => match receiver.ingest(input) {
                        None => (input.len(), None),
                        Some((used, end)) => (used, Some(Some(end))),
                    },
                    Transfer::Skip(left) => {
                        let used = input.len().min(*left);
                        *left -= used;
                        (used, (*left == 0).then_some(None))
                    }
                };
                *bytes += used as u64;
                if let Some(end) = over {
                    *mode = Mode::Command(LineReader::default());
                    if let Some(end) = end {
                        self.end_of_data(end).await.write(out);
                    }
                    self.restart_command_clock();
                }
                (used, Next::Continue)
            }
        }
    }

    /// The next command must arrive within `smtp.command_timeout` from now.
    fn restart_command_clock(&mut self) {
        self.command_deadline =
            Instant::now() + Duration::from_secs(self.intake.smtp.command_timeout);
    }

    /// Waits for input, within the time limits of the current mode. While waiting for a
    /// command the session counts as idle and may be asked to make room.
    async fn wait(
        &self,
        stream: &mut Box<dyn Io>,
        buf: &mut [u8],
        mode: &Mode,
    ) -> std::io::Result<Wait> {
        let (deadline, limit) = self.read_deadline(mode);
        let read = tokio::time::timeout_at(deadline, stream.read(buf));
        let read = if let Mode::Command(_) = mode {
            self.slot.idle();
            let read = tokio::select! {
                read = read => Some(read),
                _ = self.slot.close_requested() => None,
            };
            self.slot.busy();
            read
        } else {
            Some(read.await)
        };
        Ok(match read {
            None if self.slot.stopping() => Wait::Close(Answer::ShuttingDown.into()),
            None => {
                tracing::debug!("closed an idle session to make room");
                Wait::Close(Answer::ClosingIdle.into())
            }
            Some(Err(_)) => Wait::Close(limit.reply(self.intake.smtp.min_data_rate)),
            Some(Ok(Ok(0))) => Wait::Closed,
            Some(Ok(Ok(n))) => Wait::Bytes(n),
            Some(Ok(Err(e))) => return Err(e),
        })
    }

    /// The earliest time limit that applies to the next read, and which one it is.
    fn read_deadline(&self, mode: &Mode) -> (Instant, Limit) {
        let smtp = &self.intake.smtp;
        let mut limits = vec![(self.deadline, Limit::Session)];
        match mode {
            Mode::Command(_) => limits.push((self.command_deadline, Limit::Idle)),
            Mode::Transfer { started, bytes, .. } => {
                let per_read = Duration::from_secs(smtp.data_timeout);
                let earned = Duration::from_secs_f64(*bytes as f64 / smtp.min_data_rate as f64);
                limits.push((Instant::now() + per_read, Limit::Idle));
                limits.push((*started + per_read + earned, Limit::DataRate));
            }
        }
        limits
            .into_iter()
            .min_by_key(|(t, _)| *t)
            .expect("the session limit")
    }

    /// Writes to the client, who must take it within `smtp.command_timeout`.
    async fn send(&self, stream: &mut Box<dyn Io>, bytes: &[u8]) -> std::io::Result<()> {
        let limit = Duration::from_secs(self.intake.smtp.command_timeout);
        tokio::time::timeout(limit, stream.write_all(bytes))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client not reading"))?
    }

    /// Runs the TLS handshake after `220` to STARTTLS. It is bounded like a command (and
    /// never longer than [`MAX_HANDSHAKE`]), so a client that goes silent after STARTTLS
    /// holds its connection slot no longer than an idle one.
    async fn upgrade(&mut self, stream: Box<dyn Io>) -> Option<Box<dyn Io>> {
        let acceptor = self.intake.tls_acceptor()?;
        let limit = Duration::from_secs(self.intake.smtp.command_timeout).min(MAX_HANDSHAKE);
        let handshake = tokio::time::timeout(limit, acceptor.accept(stream)).await;
        match handshake {
            Ok(Ok(tls)) => {
                self.tls = true;
                self.helo = None;
                self.reset();
                self.command_deadline =
                    Instant::now() + Duration::from_secs(self.intake.smtp.command_timeout);
                Some(Box::new(tls))
            }
            _ => {
                tracing::debug!("TLS handshake failed");
                None
            }
        }
    }
}

/// The time limits on reading.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// `smtp.command_timeout` or `smtp.data_timeout`.
    Idle,
    /// `smtp.session_timeout`.
    Session,
    /// `smtp.min_data_rate`.
    DataRate,
}

impl Limit {
    fn reply(self, min_rate: u64) -> Reply {
        match self {
            Limit::Idle => Answer::IdleTooLong,
            Limit::Session => Answer::SessionTime,
            Limit::DataRate => Answer::DataTooSlow { min_rate },
        }
        .into()
    }
}
