//! A real SMTP sink on 127.0.0.1: records every delivered message; can defer (451) the next
//! N transactions or refuse (550) recipients, to test retries and failure notices. Deferral
//! and refusal apply only to mail with a non-null envelope sender, so the service's own
//! notices (null sender) still get through and can be inspected.
//!
//! It can offer STARTTLS ([`SinkTls`]) and records whether each message came over TLS; it
//! can be stopped ([`Sink::stop`]) and started again on the same port.

use std::sync::{Arc, Mutex};

use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
pub struct Delivered {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
    /// The DATA bytes exactly as they came over the connection: still dot-stuffed, up to and
    /// including the terminating `.` line.
    pub raw: Vec<u8>,
    /// The transaction happened inside a STARTTLS session.
    pub tls: bool,
    /// When the sink answered the end of DATA.
    pub at: std::time::SystemTime,
}

impl Delivered {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first text body, decoded (transfer encoding and charset) as a mail client would.
    pub fn body_text(&self) -> String {
        let parsed = mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("parses as mail");
        parsed
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default()
    }

    /// The value of the first header with this name (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    Accept,
    /// Answer `451` to the next N messages (at the end of DATA), then accept.
    Defer(usize),
    /// Answer `550 5.1.1` at RCPT.
    Reject,
}

/// Whether the sink offers STARTTLS.
#[derive(Clone, Default)]
pub enum SinkTls {
    /// No STARTTLS in the EHLO reply.
    #[default]
    None,
    /// STARTTLS offered, with this certificate.
    Offer(TlsAcceptor),
    /// STARTTLS offered and answered 220, but then the connection is closed (a broken TLS
    /// setup on the remote side).
    Broken,
}

#[derive(Clone)]
pub struct Sink {
    pub port: u16,
    state: Arc<Mutex<State>>,
    server: AbortHandle,
}

struct State {
    mode: SinkMode,
    delivered: Vec<Delivered>,
    attempts: usize,
    /// When each end of DATA was answered (deferred or delivered).
    attempt_times: Vec<std::time::SystemTime>,
    connections: usize,
    starttls: usize,
}

impl Sink {
    pub async fn start(mode: SinkMode) -> Sink {
        Self::start_on(0, mode).await
    }

    pub async fn start_on(port: u16, mode: SinkMode) -> Sink {
        Self::start_with(port, mode, SinkTls::None).await
    }

    /// A sink on an ephemeral port that offers STARTTLS with `cert`.
    pub async fn start_tls(mode: SinkMode, cert: &super::TestCert) -> Sink {
        Self::start_with(0, mode, SinkTls::Offer(cert.acceptor())).await
    }

    /// A sink on `port` (0: ephemeral) with the given STARTTLS behaviour.
    pub async fn start_with(port: u16, mode: SinkMode, tls: SinkTls) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("sink bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            mode,
            delivered: Vec::new(),
            attempts: 0,
            attempt_times: Vec::new(),
            connections: 0,
            starttls: 0,
        }));
        let s = state.clone();
        let server = tokio::spawn(async move {
            // Sessions live in this set: aborting the server task ends them all.
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            s.lock().unwrap().connections += 1;
                            sessions.spawn(session(stream, s.clone(), tls.clone()));
                        }
                        Err(_) => return,
                    },
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        })
        .abort_handle();
        Sink {
            port,
            state,
            server,
        }
    }

    /// Closes the listener and every open session, freeing the port (waits until it is).
    pub async fn stop(&self) {
        self.server.abort();
        for _ in 0..250 {
            if self.server.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(self.server.is_finished(), "sink did not stop");
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// STARTTLS commands received so far.
    pub fn starttls_count(&self) -> usize {
        self.state.lock().unwrap().starttls
    }

    pub fn set_mode(&self, mode: SinkMode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn delivered(&self) -> Vec<Delivered> {
        self.state.lock().unwrap().delivered.clone()
    }

    /// The mails delivered to `rcpt` so far, in order.
    pub fn mails_to(&self, rcpt: &str) -> Vec<Delivered> {
        self.delivered()
            .into_iter()
            .filter(|d| d.rcpt_to.iter().any(|r| r == rcpt))
            .collect()
    }

    /// Waits (up to 20 s) for the `n`th mail to `rcpt` and returns it.
    pub async fn nth_mail(&self, rcpt: &str, n: usize) -> Delivered {
        super::wait_for(
            &format!("mail {n} to {rcpt}"),
            std::time::Duration::from_secs(20),
            || self.mails_to(rcpt).into_iter().nth(n - 1),
        )
        .await
    }

    /// Transactions that reached the end of DATA (accepted or deferred).
    pub fn attempts(&self) -> usize {
        self.state.lock().unwrap().attempts
    }

    /// When each attempt (end of DATA, deferred or delivered) was answered.
    pub fn attempt_times(&self) -> Vec<std::time::SystemTime> {
        self.state.lock().unwrap().attempt_times.clone()
    }
}

async fn session(mut stream: TcpStream, state: Arc<Mutex<State>>, tls: SinkTls) {
    let _ = stream.write_all(b"220 sink.test ESMTP\r\n").await;
    if !converse(&mut stream, &state, &tls, false).await {
        return;
    }
    // The client asked for STARTTLS and got 220.
    match tls {
        SinkTls::Offer(acceptor) => {
            let accept = acceptor.accept(stream);
            let Ok(Ok(mut tls_stream)) =
                tokio::time::timeout(std::time::Duration::from_secs(15), accept).await
            else {
                return;
            };
            converse(&mut tls_stream, &state, &SinkTls::None, true).await;
        }
        SinkTls::Broken | SinkTls::None => {}
    }
}

/// Runs SMTP until the end of the session; true when the client asked for STARTTLS (which
/// was answered 220; anything pipelined after it is discarded).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    state: &Mutex<State>,
    tls: &SinkTls,
    in_tls: bool,
) -> bool {
    let mut receiver = RequestReceiver::default();
    let mut data: Option<DataReceiver> = None;
    let (mut from, mut rcpts, mut body) = (String::new(), Vec::new(), Vec::new());
    let mut raw = Vec::new();
    let offer = !matches!(tls, SinkTls::None);
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut out = Vec::new();
        let mut bytes = buf[..n].iter();
        while !bytes.as_slice().is_empty() {
            if let Some(d) = data.as_mut() {
                let before = bytes.as_slice();
                let done = d.ingest(&mut bytes, &mut body);
                raw.extend_from_slice(&before[..before.len() - bytes.as_slice().len()]);
                if done {
                    data = None;
                    let mut st = state.lock().unwrap();
                    st.attempts += 1;
                    st.attempt_times.push(std::time::SystemTime::now());
                    if let (SinkMode::Defer(n), false) = (st.mode, from.is_empty()) {
                        st.mode = if n > 1 {
                            SinkMode::Defer(n - 1)
                        } else {
                            SinkMode::Accept
                        };
                        out.extend_from_slice(b"451 4.3.0 try again later\r\n");
                    } else {
                        let d = Delivered {
                            mail_from: from.clone(),
                            rcpt_to: rcpts.clone(),
                            data: std::mem::take(&mut body),
                            raw: std::mem::take(&mut raw),
                            tls: in_tls,
                            at: std::time::SystemTime::now(),
                        };
                        st.delivered.push(d);
                        out.extend_from_slice(b"250 2.0.0 ok\r\n");
                    }
                    body.clear();
                    raw.clear();
                }
                continue;
            }
            let reply: &[u8] = match receiver.ingest(&mut bytes) {
                Ok(Request::Ehlo { .. }) if offer => {
                    b"250-sink.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                }
                Ok(Request::Ehlo { .. }) => b"250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                Ok(Request::Helo { .. }) => b"250 sink.test\r\n",
                Ok(Request::StartTls) if offer => {
                    state.lock().unwrap().starttls += 1;
                    out.extend_from_slice(b"220 2.0.0 go ahead\r\n");
                    let _ = stream.write_all(&out).await;
                    return true;
                }
                Ok(Request::StartTls) => b"502 5.5.1 not available\r\n",
                Ok(Request::Mail { from: f }) => {
                    from = f.address.to_string();
                    rcpts.clear();
                    b"250 ok\r\n"
                }
                Ok(Request::Rcpt { to }) => {
                    if state.lock().unwrap().mode == SinkMode::Reject && !from.is_empty() {
                        b"550 5.1.1 <secret-real-address@nowhere> user unknown\r\n"
                    } else {
                        rcpts.push(to.address.to_string());
                        b"250 ok\r\n"
                    }
                }
                Ok(Request::Data) => {
                    data = Some(DataReceiver::new());
                    b"354 go ahead\r\n"
                }
                Ok(Request::Rset) => {
                    rcpts.clear();
                    b"250 ok\r\n"
                }
                Ok(Request::Quit) => {
                    let _ = stream.write_all(&out).await;
                    let _ = stream.write_all(b"221 bye\r\n").await;
                    return false;
                }
                Ok(_) => b"250 ok\r\n",
                Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                Err(_) => b"500 error\r\n",
            };
            out.extend_from_slice(reply);
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return false;
        }
    }
}
