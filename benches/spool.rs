//! Spool record cost: N 4 KB records stored one `store` at a time (one `fdatasync` each, as
//! intake does with no other message waiting), N stored in one batch (one sync: the sealing
//! and framing dominate), and reading them back at open (decode and open every record).
//! Each phase runs `ROUNDS` times, interleaved, and the best time is printed.
//!
//! Run: `cargo bench --bench spool` (`SPOOL_BENCH_N`, default 2000, sets N).

use std::sync::Arc;
use std::time::{Duration, Instant};

use remailer::keys::Keys;
use remailer::spool::{Entry, Envelope, Kind, Spool};

const ROUNDS: usize = 5;

fn entry(n: usize) -> Entry {
    let mut message = format!(
        "To: member{n}@real.example\r\nFrom: alias@remailer.test\r\nSubject: n {n}\r\n\r\n"
    )
    .into_bytes();
    message.resize(4096, b'x');
    let envelope = Envelope {
        kind: Kind::Remail,
        mail_from: "b+1.2.3.abcd@remailer.test".into(),
        rcpt: format!("member{n}@real.example"),
        recipient_alias: Some("ann@remailer.test".into()),
        sender_id: Some(1),
        created: 1,
        release_ms: None,
    };
    Entry::new(Spool::new_id(), envelope, Arc::new(message))
}

fn main() {
    let n: usize = std::env::var("SPOOL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let keys = Arc::new(Keys::from_master([7; 32]));
    let entries: Vec<Entry> = (0..n).map(entry).collect();
    let more: Vec<Entry> = (0..n).map(entry).collect();
    let (mut one, mut batch, mut read) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), keys.clone()).expect("open");
        let t = Instant::now();
        for e in &entries {
            spool.store(std::slice::from_ref(e)).expect("store");
        }
        one = one.min(t.elapsed());
        let t = Instant::now();
        spool.store(&more).expect("store batch");
        batch = batch.min(t.elapsed());
        drop(spool);
        let t = Instant::now();
        let spool = Spool::open(dir.path(), keys.clone()).expect("reopen");
        let back = spool.take_recovered();
        read = read.min(t.elapsed());
        assert_eq!(back.len(), 2 * n);
    }
    let per = |d: Duration, k: usize| d.as_secs_f64() * 1e6 / k as f64;
    println!("spool bench: N={n} records of 4 KB, best of {ROUNDS}");
    println!(
        "  store one at a time (sync each): {:8.1} us/record",
        per(one, n)
    );
    println!(
        "  store one batch (one sync):      {:8.1} us/record",
        per(batch, n)
    );
    println!(
        "  read back at open:               {:8.1} us/record",
        per(read, 2 * n)
    );
}
