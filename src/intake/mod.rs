//! `intake`: the SMTP server. It accepts connections (up to `smtp.max_connections`, and
//! `smtp.max_connections_per_client` from one client address, [`clients`]), runs one
//! [`session`] per connection, and asks its [`Pipeline`] (policy, then remail) what to decide
//! about senders, recipients and finished transactions. When
//! the service is full, the session idle longest is closed to make room ([`slots`]).
//! STARTTLS is offered when a certificate is configured; the certificate is reloaded on SIGHUP.
//! Input is framed by [`command`] and [`data`], whose receivers are pure.

mod clients;
pub mod command;
pub mod data;
mod session;
mod slots;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, LimitsConfig, SmtpConfig};
use crate::envelope::Pipeline;
use crate::reply::{Answer, Reply};
use clients::Clients;
use slots::Slots;

/// How long a new connection waits for the slot of an idle session asked to close.
const MAKE_ROOM_WAIT: Duration = Duration::from_secs(2);

/// The parts of the configuration intake uses, read once when the service starts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[smtp]`: listeners, limits and time limits of sessions.
    pub smtp: SmtpConfig,
    /// `[limits]`: the per-client connection and command rates, the per-member and per-alias
    /// message rates.
    pub limits: LimitsConfig,
    /// The name in the greeting and EHLO (`smtp.hostname`, else `domain`).
    pub hostname: String,
}

impl Settings {
    pub fn of(config: &Config) -> Self {
        Settings {
            smtp: config.smtp.clone(),
            limits: config.limits.clone(),
            hostname: config.hostname(),
        }
    }
}

/// Everything a session needs, shared by all sessions.
pub struct Intake {
    pub smtp: SmtpConfig,
    pub hostname: String,
    /// What decides on senders, recipients and messages ([`crate::policy::Stages`]).
    pub pipeline: Box<dyn Pipeline>,
    pub tls: RwLock<Option<TlsAcceptor>>,
    connections: Arc<Semaphore>,
    clients: Arc<Clients>,
    slots: Arc<Slots>,
    /// Messages per member and per alias ([`crate::rate_limits`]).
    pub limits: crate::rate_limits::MessageLimits,
}

impl Intake {
    pub fn new(settings: Settings, pipeline: Box<dyn Pipeline>, tls: Option<TlsAcceptor>) -> Self {
        let Settings {
            smtp,
            limits,
            hostname,
        } = settings;
        let client_limits = clients::Limits {
            max_connections: smtp.max_connections_per_client,
            max_refusals: smtp.max_refusals_per_client,
            window: Duration::from_secs(smtp.refusal_window),
            connections_per_minute: limits.connections_per_client_per_minute,
            commands_per_minute: limits.commands_per_client_per_minute,
            minute: Duration::from_secs(limits.minute),
        };
        Intake {
            hostname,
            connections: Arc::new(Semaphore::new(smtp.max_connections)),
            clients: Clients::new(client_limits),
            slots: Arc::new(Slots::default()),
            limits: crate::rate_limits::MessageLimits::new(&limits),
            smtp,
            pipeline,
            tls: RwLock::new(tls),
        }
    }

    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.read().ok().and_then(|t| t.clone())
    }

    /// Accepts connections until `shutdown` turns true, then closes idle sessions (`421`) and
    /// waits (bounded) for transactions in progress to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        sessions.spawn(self.clone().connection(stream, peer));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        // Idle sessions get 421 at once; only transactions in progress are waited for.
        self.slots.close_all();
        let open = sessions.len();
        if open > 0 {
            tracing::info!(sessions = open, "waiting for SMTP sessions in flight");
        }
        let drain = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(30), drain)
            .await
            .is_err()
        {
            tracing::warn!("SMTP sessions still open after 30 s; closing them");
        }
    }
}

impl Intake {
    /// One accepted TCP connection: checked against its client's limits, given a slot (if
    /// need be one an idle session makes room for), then served.
    async fn connection(self: Arc<Self>, stream: TcpStream, peer: std::net::SocketAddr) {
        let client = match self.clients.connect(peer.ip()) {
            Ok(client) => client,
            Err(reply) => return refuse(stream, reply).await,
        };
        let Some(permit) = self.slot().await else {
            tracing::warn!("connection limit reached and no session idle; refusing a connection");
            return refuse(stream, Answer::Busy.into()).await;
        };
        let slot = self.slots.register();
        crate::metrics::session();
        session::run(self, stream, peer, client, slot).await;
        drop(permit);
    }

    /// A connection slot: a free one, or the one of the session idle longest, asked to close.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.connections.clone().try_acquire_owned() {
            return Some(permit);
        }
        if !self.slots.close_idlest() {
            return None;
        }
        let wait = self.connections.clone().acquire_owned();
        tokio::time::timeout(MAKE_ROOM_WAIT, wait).await.ok()?.ok()
    }
}

/// Runs one SMTP session over any byte stream, as if a client at `peer` had connected: the
/// real session code, with the per-client limits (not the global connection limit), for
/// fuzzing and in-memory tests. Returns when the session ends. Sessions from one `peer` are
/// counted like TCP clients: for many of them, raise `smtp.max_refusals_per_client` (or vary
/// `peer`), else a client refused too often is cut off at the greeting.
#[doc(hidden)]
pub async fn run_session<S>(intake: Arc<Intake>, stream: S, peer: std::net::SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = match intake.clients.connect(peer.ip()) {
        Ok(client) => client,
        Err(reply) => return refuse(stream, reply).await,
    };
    let slot = intake.slots.register();
    session::run(intake, stream, peer, client, slot).await;
}

/// Answers a connection that is not served with `reply` and closes it.
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, reply: Reply) {
    let mut out = Vec::new();
    reply.write(&mut out);
    let bounded = async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), bounded).await;
}
