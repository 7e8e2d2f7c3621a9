//! Rewrite throughput on one core: the whole fixture corpus and a plain 4 KB text message;
//! and what encrypting that rewritten message to a member's OpenPGP key costs (`encrypt`:
//! PGP/MIME to a Curve25519 key and to an RSA 3072 key, the fixtures in tests/fixtures/pgp).
//! Criterion reports time per iteration and bytes/s; afterwards a plain timed loop prints
//! messages/s and MB/s per core for the corpus.
//!
//! The attachment corpus (one message per file of `tests/fixtures/attachments/`, each with an
//! HTML part naming the sender) is rewritten with `privacy.strip_attachment_metadata` on and
//! off, per format, and the timed loop prints the cost per message of the step.
//!
//! Run: `cargo bench --bench rewrite` (`REWRITE_REMOTE=keep` to keep remote content in HTML)

#[path = "../tests/fixtures/rewrite/support.rs"]
mod support;

use std::fs;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use remailer::encrypt::{encrypt_message, PublicKey};
use remailer::rewrite::{rewrite, scan};
use support::{fixture_context, Cast};

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with("signed_") && !name.starts_with("refuse_")
        })
        .collect();
    files.sort();
    files.into_iter().map(|p| fs::read(p).unwrap()).collect()
}

/// One message per attachment fixture: an HTML part naming the sender, then the file.
fn attachment_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/attachments");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_stem().is_some_and(|s| s == "photo" || s == "report"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let data = fs::read(&p).unwrap();
            (name.clone(), attachment_message(&name, &data))
        })
        .collect()
}

fn attachment_message(name: &str, data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut m = format!(
        "From: Joe Smith <joe@real.example>\r\nTo: Ann Lee <ann@remailer.test>\r\n\
         Subject: {name}\r\nMessage-ID: <att-{name}@real.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hi Ann, the file from \
         <a href=\"mailto:joe@real.example\">Joe Smith</a>.<img src=\"https://t.example/p.gif\"></p>\r\n\
         --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
    );
    for line in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(line).unwrap());
        m.push_str("\r\n");
    }
    m.push_str("--b--\r\n");
    m.into_bytes()
}

fn rewrite_one(cast: &Cast, raw: &[u8], strip_metadata: bool) -> usize {
    let scanned = scan(raw);
    let mut holder = fixture_context(cast, &scanned, false);
    holder.strip_metadata = strip_metadata;
    rewrite(raw, &holder.context(), &cast.dir)
        .unwrap()
        .message
        .len()
}

fn plain_4k() -> Vec<u8> {
    let mut m = String::from(
        "Received: from [198.51.100.23] by smtp.real.example; Mon, 3 Jun 2024 10:00:00 +0200\r\n\
         From: Joe Smith <joe@real.example>\r\nTo: Ann Lee <ann@remailer.test>\r\n\
         Subject: Plain text\r\nDate: Mon, 3 Jun 2024 10:00:00 +0200\r\n\
         Message-ID: <plain-4k@real.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    let line = "The quick brown fox jumps over the lazy dog; write to joe@real.example.\r\n";
    while m.len() < 4096 {
        m.push_str(line);
    }
    m.into_bytes()
}

/// `REWRITE_REMOTE=keep`: `privacy.remote_content = "keep"` (default: strip), to measure
/// what removing remote content from HTML parts costs.
fn strip_remote() -> bool {
    std::env::var("REWRITE_REMOTE").map_or(true, |v| v != "keep")
}

fn run_all(cast: &Cast, msgs: &[Vec<u8>]) -> usize {
    let mut out = 0;
    for raw in msgs {
        let scanned = scan(raw);
        let mut holder = fixture_context(cast, &scanned, false);
        holder.strip_remote = strip_remote();
        out += rewrite(raw, &holder.context(), &cast.dir)
            .unwrap()
            .message
            .len();
    }
    out
}

fn bench(c: &mut Criterion) {
    let cast = Cast::new();
    let msgs = corpus();
    // `REWRITE_ROUNDS=N`: only N plain rounds over the corpus, for a profiler or an
    // instruction count (`perf stat -e instructions`), which machine load does not change.
    if let Some(n) = std::env::var("REWRITE_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        for _ in 0..n {
            black_box(run_all(&cast, black_box(&msgs)));
        }
        eprintln!("{n} rounds over {} messages", msgs.len());
        std::process::exit(0);
    }
    let total: usize = msgs.iter().map(Vec::len).sum();

    let mut g = c.benchmark_group("rewrite");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("corpus (scan + rewrite)", |b| {
        b.iter(|| run_all(&cast, black_box(&msgs)))
    });
    let plain = plain_4k();
    let holder = fixture_context(&cast, &scan(&plain), false);
    let ctx = holder.context();
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("plain 4 KB (rewrite only)", |b| {
        b.iter(|| rewrite(black_box(&plain), &ctx, &cast.dir).unwrap())
    });
    g.finish();

    let attached = attachment_corpus();
    let mut g = c.benchmark_group("attachments");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, raw) in &attached {
        g.throughput(Throughput::Bytes(raw.len() as u64));
        for (label, on) in [("metadata on", true), ("metadata off", false)] {
            g.bench_function(format!("{name} ({label})"), |b| {
                b.iter(|| rewrite_one(&cast, black_box(raw), on))
            });
        }
    }
    g.finish();

    let rewritten = rewrite(&plain, &ctx, &cast.dir).unwrap().message;
    let mut g = c.benchmark_group("encrypt");
    g.throughput(Throughput::Bytes(rewritten.len() as u64));
    for (name, file) in [("cv25519", "member.asc"), ("rsa3072", "rsa.asc")] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pgp")
            .join(file);
        let key = PublicKey::load(&fs::read(path).unwrap()).unwrap();
        g.bench_function(format!("plain 4 KB rewritten, to {name}"), |b| {
            b.iter(|| encrypt_message(black_box(&rewritten), &key).unwrap())
        });
    }
    g.finish();

    report(&cast, &msgs, total);
    report_attachments(&cast, &attached);
}

/// Per message of the attachment corpus: the rewrite with the metadata step on and off,
/// interleaved rounds, and the difference (the step's cost).
fn report_attachments(cast: &Cast, msgs: &[(String, Vec<u8>)]) {
    let mut time = [Duration::ZERO; 2];
    let mut rounds = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        for (i, on) in [true, false].into_iter().enumerate() {
            let t = Instant::now();
            for (_, raw) in msgs {
                black_box(rewrite_one(cast, raw, on));
            }
            time[i] += t.elapsed();
        }
        rounds += 1;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (f64::from(rounds) * msgs.len() as f64);
    let (on, off) = (per(time[0]), per(time[1]));
    eprintln!(
        "attachments: {} messages, {rounds} rounds; per message {on:.1} µs with the metadata \
         step, {off:.1} µs without: the step costs {:.1} µs",
        msgs.len(),
        on - off
    );
}

/// Messages/s and MB/s per core over the corpus, from a plain timed loop.
fn report(cast: &Cast, msgs: &[Vec<u8>], total: usize) {
    let start = Instant::now();
    let mut rounds = 0u32;
    while start.elapsed() < Duration::from_secs(3) {
        black_box(run_all(cast, msgs));
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = (msgs.len() as f64) * f64::from(rounds);
    eprintln!(
        "corpus: {} messages, {:.1} KB; {:.0} messages/s, {:.1} MB/s per core (scan + rewrite)",
        msgs.len(),
        total as f64 / 1024.0,
        n / secs,
        (total as f64) * f64::from(rounds) / secs / 1e6
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
