//! Test harness: the real `remailer` binary on ephemeral loopback ports, a real SMTP sink
//! that records what is delivered (and can be told to defer or refuse), and a plain SMTP
//! client that speaks line by line over TCP (and STARTTLS), and test certificates.
#![allow(dead_code)]

pub mod client;
pub mod service;
pub mod sink;
pub mod tls;
pub mod web;

#[allow(unused_imports)]
pub use {
    client::Client,
    service::Service,
    sink::{Delivered, Sink, SinkMode, SinkTls},
    tls::TestCert,
    web::WebClient,
};

use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released).
///
/// Ports come from 20000–31999, below Linux's ephemeral range (32768–60999), so the
/// outgoing connections of parallel tests (which take ephemeral ports) can never occupy a
/// port between the moment it is chosen here and the moment the service binds it. Each
/// process walks the range from its own offset and never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (BASE + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {BASE}..{}", BASE + SPAN);
}

/// Polls `f` until it returns Some, or panics after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small message from `from` to `to` with a subject and body.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: Joe Smith <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Mon, 13 Jan 2025 10:00:00 +0000\r\n\
         Message-ID: <orig.{}@mail.real.example>\r\nReceived: from laptop (dsl-198-51-100-23.isp.example [198.51.100.23])\r\n\
         X-Originating-IP: [198.51.100.23]\r\nX-Mailer: ExampleMail 7.1\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n",
        rand_id()
    )
}

pub fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
