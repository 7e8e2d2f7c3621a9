//! The SMTP targets: the end-of-data receiver ([`data_end`]) against a whole-input model, and
//! a whole SMTP session ([`session`]): bytes in, replies out, through the real session code
//! ([`crate::intake::run_session`]) and the real pipeline behind it (policy, rewrite, DKIM,
//! spool, SQLite store) kept in memory: data under `/dev/shm`, sender authentication off, and
//! delivery stopped before it starts (no network at all; accepted mail stays in the spool).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::address::{Alias, AliasName, RealAddress};
use crate::config::{Config, SenderAuth};
use crate::delivery::Delivery;
use crate::dkim::DkimKeys;
use crate::intake::data::{DataEnd, DataReceiver};
use crate::intake::Intake;
use crate::keys::Keys;
use crate::members::Members;
use crate::policy::Policy;
use crate::remail::Remail;
use crate::sender_auth::SenderAuthenticator;
use crate::spool::Spool;

/// The end-of-data receiver. Input: two bytes of size limit, one byte that chooses how the
/// rest is split into reads, then the data. Invariants: the outcome does not depend on the
/// split; data ends exactly after the first `<CR><LF>.<CR><LF>` (counting the `<CR><LF>` of
/// the DATA command); a message with a bare CR or LF is refused, one over the limit is
/// refused, any other comes back dot-unstuffed, byte for byte.
pub fn data_end(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let limit = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let split = data[2];
    let input = &data[3..];
    let want = model(input, limit);
    let whole = DataReceiver::new(limit).ingest(input);
    assert_eq!(whole, want, "the receiver disagrees with the model");
    let mut rx = DataReceiver::new(limit);
    let mut at = 0;
    let mut step = 0usize;
    let mut got = None;
    while at < input.len() {
        step += 1;
        let len = 1 + (usize::from(split) * step * 7 + step) % (usize::from(split % 32) + 1);
        let end = (at + len).min(input.len());
        if let Some((used, outcome)) = rx.ingest(&input[at..end]) {
            assert!(used <= end - at, "used more than it was given");
            got = Some((at + used, outcome));
            break;
        }
        at = end;
    }
    assert_eq!(got, want, "a split input ends differently");
}

/// What the receiver must say for the whole input at once.
fn model(input: &[u8], limit: usize) -> Option<(usize, DataEnd)> {
    // The CRLF of the DATA command starts the first line.
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let pos = framed.windows(5).position(|w| w == b"\r\n.\r\n")?;
    let used = pos + 5 - 2;
    // The data up to and including the CRLF before the final dot.
    let raw = &framed[2..pos + 2];
    let bare = raw.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => i == 0 || raw[i - 1] != b'\r',
        b'\r' => raw.get(i + 1) != Some(&b'\n'),
        _ => false,
    });
    let mut message = Vec::with_capacity(raw.len());
    let mut line_start = true;
    for (i, &b) in raw.iter().enumerate() {
        if !(line_start && b == b'.') {
            message.push(b);
        }
        line_start = b == b'\n' && i > 0 && raw[i - 1] == b'\r';
    }
    let outcome = if bare {
        let first = raw
            .iter()
            .enumerate()
            .find_map(|(i, &b)| match b {
                b'\n' if i == 0 || raw[i - 1] != b'\r' => {
                    Some(crate::intake::data::BareLineEnd::Lf)
                }
                b'\r' if raw.get(i + 1) != Some(&b'\n') => {
                    Some(crate::intake::data::BareLineEnd::Cr)
                }
                _ => None,
            })
            .expect("a bare line end");
        DataEnd::BareLineEnd(first)
    } else if message.len() > limit {
        DataEnd::TooBig
    } else {
        DataEnd::Message(message)
    };
    Some((used, outcome))
}

/// One generation of the in-memory service: rebuilt every [`GENERATION`] sessions so the
/// spool and store stay small.
struct World {
    /// Dropped first, inside the runtime (the store's pool spawns tasks when dropped).
    intake: Option<Arc<Intake>>,
    runtime: tokio::runtime::Runtime,
    dir: PathBuf,
    sessions: usize,
}

const GENERATION: usize = 500;

/// A static, not a thread-local: a thread-local's destructor runs at exit, after tokio's own
/// thread-locals are gone, and dropping the runtime there panics. A static is never dropped.
static WORLD: Mutex<Option<World>> = Mutex::new(None);

/// Where the persistent keys live and each generation's data goes.
fn base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    root.join(format!("remailer-fuzz-smtp-{}", std::process::id()))
}

fn key_dir() -> PathBuf {
    base_dir().with_file_name("remailer-fuzz-smtp-keys")
}

fn config(dir: &Path) -> Config {
    let mut config = Config::local_defaults();
    config.domain = super::DOMAIN_.clone();
    config.data_dir = dir.to_path_buf();
    config.smtp.hostname = Some("mx.remailer.test".into());
    config.smtp.max_message_size = 64 * 1024;
    config.smtp.max_recipients = 5;
    config.policy.sender_auth = SenderAuth::None;
    // One long-lived world sees far more traffic than a member or client would send: the
    // rate limits would turn later inputs away and hide the code behind them.
    config.limits = crate::config::LimitsConfig {
        member_per_hour: 0,
        member_per_day: 0,
        alias_per_hour: 0,
        connections_per_client_per_minute: 0,
        commands_per_client_per_minute: 0,
        outbound_per_minute: 0,
        ..Default::default()
    };
    config.policy.postmaster = Some("operator@operator.example".into());
    config.delivery.relay = Some("127.0.0.1:9".into());
    config.dns.nameservers = vec!["127.0.0.1:9".parse().expect("address")];
    // No delivery slot at all: a queued message is never attempted (see `World::build`).
    config.delivery.workers = 0;
    config
}

impl World {
    fn build(generation: u64) -> World {
        let base = base_dir();
        let dir = base.join(format!("gen-{generation}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("data dir");
        let config = Arc::new(config(&dir));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let intake = runtime.block_on(async {
            // The fixed keys of every target, so corpus files can hold valid bounce tokens.
            let keys = Arc::new(Keys::from_master(super::MASTER));
            // DKIM keys are made once per machine (RSA key generation takes seconds) and
            // shared by every fuzzing process.
            let dkim = Arc::new(
                DkimKeys::load_or_create(&key_dir(), &config.domain, &config.dkim.selector)
                    .expect("dkim keys"),
            );
            let store = crate::store::open(&config.store_url())
                .await
                .expect("store");
            let members = Members::new(store, keys.clone(), config.domain.clone());
            for (alias, real) in [("joe", "joe@real.example"), ("ann", "ann@mail.example")] {
                let alias = Alias::new(AliasName::parse(alias).expect("alias"), &config.domain);
                let real = RealAddress::parse(real, &config.domain).expect("address");
                members.add(&alias, &real).await.expect("add member");
            }
            let spool = Arc::new(Spool::open(&dir.join("spool"), keys.clone()).expect("spool"));
            let delivery =
                Delivery::new(config.clone(), spool.clone(), members.clone(), dkim.clone())
                    .expect("delivery");
            // Stopped before it starts: every queued entry's task returns at once.
            delivery.shutdown().await;
            let auth = SenderAuthenticator::new(
                &config.dns,
                config.policy.sender_auth,
                &config.hostname(),
            )
            .expect("sender auth");
            let remail = Remail::new(
                crate::remail::Settings::of(&config),
                members.clone(),
                keys,
                spool,
                delivery,
                dkim,
                auth.clone(),
            );
            let policy = Policy::new(members, &config.web.public_url, auth, true);
            Arc::new(Intake::new(
                crate::intake::Settings::of(&config),
                Box::new(crate::policy::Stages { policy, remail }),
                None,
            ))
        });
        World {
            intake: Some(intake),
            runtime,
            dir,
            sessions: 0,
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let intake = self.intake.take();
        self.runtime.block_on(async move {
            drop(intake);
            tokio::task::yield_now().await;
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A whole SMTP session. Input: one byte that chooses how the rest is cut into writes, then
/// what the client sends. Invariants: the session ends when the client's input does; the
/// output is a well-formed sequence of replies (`220` greeting first; every line
/// `DDD[ -]text<CR><LF>`, 2xx–5xx, at most 512 bytes, no other CR or LF; a multi-line reply
/// keeps its code; nothing after `221` or `421`).
pub fn session(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let output = {
        let mut slot = WORLD.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|w| w.sessions >= GENERATION) {
            static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            *slot = None;
            let n = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *slot = Some(World::build(n));
        }
        let world = slot.as_mut().expect("world");
        world.sessions += 1;
        let intake = world.intake.clone().expect("a live world");
        // Each session from its own client address, so the per-client refusal limit
        // (`smtp.max_refusals_per_client`) never turns a later input away at the greeting.
        let peer = peer_address(world.sessions);
        world
            .runtime
            .block_on(converse(intake, peer, split, input.to_vec()))
    };
    check_replies(&output);
}

fn peer_address(session: usize) -> SocketAddr {
    let [_, a, b, c] = u32::try_from(session).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::from(([10, a, b, c], 40000))
}

async fn converse(intake: Arc<Intake>, peer: SocketAddr, split: u8, input: Vec<u8>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(crate::intake::run_session(intake, server, peer));
    let (mut read, mut write) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        let chunk = if split == 0 {
            usize::MAX
        } else {
            usize::from(split)
        };
        for part in input.chunks(chunk.min(input.len().max(1))) {
            if write.write_all(part).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let _ = write.shutdown().await;
    });
    let mut output = Vec::new();
    let _ = read.read_to_end(&mut output).await;
    let _ = writer.await;
    session.await.expect("the session task panicked");
    output
}

fn check_replies(output: &[u8]) {
    assert!(output.starts_with(b"220 "), "no 220 greeting first");
    let mut rest = output;
    let mut open: Option<&[u8]> = None;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .expect("the output does not end with a line end");
        assert!(
            end > 0 && rest[end - 1] == b'\r',
            "a reply line ends in a bare LF"
        );
        let line = &rest[..end - 1];
        rest = &rest[end + 1..];
        let text = String::from_utf8_lossy(line);
        assert!(!line.contains(&b'\r'), "a CR inside a reply line: {text:?}");
        assert!(line.len() + 2 <= 512, "a reply line over 512 bytes");
        assert!(
            line.len() >= 4
                && (b'2'..=b'5').contains(&line[0])
                && line[1].is_ascii_digit()
                && line[2].is_ascii_digit()
                && matches!(line[3], b' ' | b'-'),
            "a malformed reply line: {text:?}"
        );
        if let Some(code) = open {
            assert_eq!(code, &line[..3], "a multi-line reply changes its code");
        }
        open = (line[3] == b'-').then(|| &line[..3]);
        if line[3] == b' ' && matches!(&line[..3], b"221" | b"421") {
            assert!(rest.is_empty(), "a reply after {text:?}");
        }
    }
    assert!(open.is_none(), "the last reply is unfinished");
}
