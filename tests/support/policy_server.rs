//! An HTTPS server for MTA-STS policies (RFC 8461 §3.3) on 127.0.0.1: hyper over
//! tokio-rustls, answering `GET /.well-known/mta-sts.txt` for `Host: mta-sts.DOMAIN` with
//! the policy the test set for DOMAIN (`text/plain`), 404 otherwise. It counts the fetches
//! per domain and can be stopped (the port then refuses connections).
//!
//! ```ignore
//! let server = PolicyServer::start(ca.issue(&["mta-sts.example.test"]).acceptor()).await;
//! server.set("example.test", "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n");
//! // delivery.mta_sts_port = server.port
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

#[derive(Default)]
struct State {
    policies: HashMap<String, String>,
    fetches: HashMap<String, usize>,
}

pub struct PolicyServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    server: AbortHandle,
}

impl PolicyServer {
    /// Serves on an ephemeral port with the certificate of `acceptor`.
    pub async fn start(acceptor: TlsAcceptor) -> PolicyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let server = tokio::spawn(async move {
            // Connections live in this set: aborting the server ends them all.
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), s.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        })
        .abort_handle();
        PolicyServer {
            port,
            state,
            server,
        }
    }

    /// Serves `policy` for `domain` from now on.
    pub fn set(&self, domain: &str, policy: &str) {
        let mut state = self.state.lock().unwrap();
        state.policies.insert(domain.into(), policy.into());
    }

    /// How many times the policy of `domain` was fetched.
    pub fn fetches(&self, domain: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.fetches.get(domain).copied().unwrap_or(0)
    }

    /// Stops serving: the port refuses connections.
    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answer(state: &Mutex<State>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut state = state.lock().unwrap();
    let policy = host
        .strip_prefix("mta-sts.")
        .filter(|_| req.uri().path() == "/.well-known/mta-sts.txt")
        .and_then(|domain| Some((domain.to_string(), state.policies.get(domain)?.clone())));
    let Some((domain, policy)) = policy else {
        let mut not_found = Response::new(Full::new(Bytes::from_static(b"not found")));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        return not_found;
    };
    *state.fetches.entry(domain).or_default() += 1;
    let mut response = Response::new(Full::new(Bytes::from(policy)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}
