//! `intake`: the SMTP server. It accepts connections (up to `smtp.max_connections`), runs one
//! [`session`] per connection, and hands finished transactions to [`crate::remail`].
//! STARTTLS is offered when a certificate is configured; the certificate is reloaded on SIGHUP.

pub mod data;
pub mod reply;
mod session;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::policy::Policy;
use crate::remail::Remail;

/// Everything a session needs, shared by all sessions.
pub struct Intake {
    pub config: Arc<Config>,
    pub hostname: String,
    pub policy: Policy,
    pub remail: Remail,
    pub tls: RwLock<Option<TlsAcceptor>>,
    connections: Arc<Semaphore>,
}

impl Intake {
    pub fn new(
        config: Arc<Config>,
        policy: Policy,
        remail: Remail,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        Intake {
            hostname: config.hostname(),
            connections: Arc::new(Semaphore::new(config.smtp.max_connections)),
            config,
            policy,
            remail,
            tls: RwLock::new(tls),
        }
    }

    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.read().ok().and_then(|t| t.clone())
    }

    /// Accepts connections until `shutdown` turns true, then waits (bounded) for sessions in
    /// flight to finish.
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
                        match self.connections.clone().try_acquire_owned() {
                            Ok(permit) => {
                                let intake = self.clone();
                                sessions.spawn(async move {
                                    session::run(intake, stream, peer).await;
                                    drop(permit);
                                });
                            }
                            Err(_) => {
                                tracing::warn!("connection limit reached; refusing a connection");
                                sessions.spawn(refuse_busy(stream));
                            }
                        }
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

/// Runs one SMTP session over any byte stream, as if a client at `peer` had connected: the
/// real session code, for fuzzing and in-memory tests. Returns when the session ends.
#[doc(hidden)]
pub async fn run_session<S>(intake: Arc<Intake>, stream: S, peer: std::net::SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    session::run(intake, stream, peer).await;
}

async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    let _ = stream
        .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
        .await;
    let _ = stream.shutdown().await;
}
