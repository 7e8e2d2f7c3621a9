//! The HTTP server loop: HTTP/1.1 connections (hyper) on `web.listen` with bounded headers,
//! a deadline for the request headers (slow clients are dropped), at most
//! `web.max_connections` at once, and graceful shutdown: on stop the listener closes and
//! requests in flight finish (for up to 10 s).
//!
//! The client's address never reaches a handler or a log line: each request carries only a
//! [`ClientKey`], a keyed hash of it, for in-memory limits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::WebConfig;
use crate::keys::{Keys, Purpose};

/// A keyed hash of the client's IP address (request extension); never stored or logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(pub [u8; 16]);

impl ClientKey {
    fn of(keys: &Keys, ip: std::net::IpAddr) -> Self {
        let mac = keys.mac(Purpose::Client, ip.to_string().as_bytes());
        ClientKey(mac[..16].try_into().expect("16 of 32 bytes"))
    }
}

/// Serves `app` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: WebConfig,
    keys: Arc<Keys>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.request_timeout))
        .max_buf_size(config.max_header_bytes)
        .max_headers(64);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "web accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // full: the connection is closed at once
        };
        let client = ClientKey::of(&keys, peer.ip());
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(client);
                request
            });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("web: some connections were still open after 10 s; closing them");
    }
}
