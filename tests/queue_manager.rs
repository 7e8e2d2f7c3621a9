//! Delivery as a queue manager, through the real binary and a loopback destination that
//! records every transaction (its subject, when it ended, and how many ran at once):
//! deferred entries resume after kill -9 on their persisted schedule (never early, overdue
//! ones in due-time order), the per-destination limit holds with many entries queued, and
//! every entry is delivered when the destination recovers. Every wait is bounded.

mod harness;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use harness::{message, wait_for, Client, Service};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(60);

/// One transaction that reached the end of DATA.
#[derive(Debug, Clone)]
struct Seen {
    subject: String,
    at: SystemTime,
    accepted: bool,
}

/// A loopback SMTP destination: answers 451 at the end of DATA until told to accept, holds
/// each transaction `hold` before answering, and counts transactions in progress.
#[derive(Clone)]
struct Destination {
    port: u16,
    accept: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    hold: Duration,
}

impl Destination {
    async fn start(hold: Duration) -> Destination {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let d = Destination {
            port: listener.local_addr().unwrap().port(),
            accept: Arc::default(),
            active: Arc::default(),
            max_active: Arc::default(),
            seen: Arc::default(),
            hold,
        };
        let me = d.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(me.clone().session(stream));
            }
        });
        d
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn delivered(&self) -> usize {
        self.seen().iter().filter(|s| s.accepted).count()
    }

    async fn session(self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 destination.test ESMTP\r\n").await;
        let mut in_transaction = false;
        let mut subject = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-destination.test\r\n250 8BITMIME\r\n",
                "HELO" => b"250 destination.test\r\n",
                "MAIL" => {
                    in_transaction = true;
                    let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                    self.max_active.fetch_max(now, Ordering::SeqCst);
                    b"250 ok\r\n"
                }
                "DATA" => {
                    let _ = write.write_all(b"354 go ahead\r\n").await;
                    subject.clear();
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l == "." {
                            break;
                        }
                        if let Some(s) = l.strip_prefix("Subject: ") {
                            subject = s.to_string();
                        }
                    }
                    tokio::time::sleep(self.hold).await;
                    let accepted = self.accept.load(Ordering::SeqCst);
                    self.seen.lock().unwrap().push(Seen {
                        subject: subject.clone(),
                        at: SystemTime::now(),
                        accepted,
                    });
                    in_transaction = false;
                    self.active.fetch_sub(1, Ordering::SeqCst);
                    if accepted {
                        b"250 2.0.0 ok\r\n"
                    } else {
                        b"451 4.3.0 try again later\r\n"
                    }
                }
                "RSET" | "QUIT" => {
                    if in_transaction {
                        in_transaction = false;
                        self.active.fetch_sub(1, Ordering::SeqCst);
                    }
                    if verb == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    }
                    b"250 ok\r\n"
                }
                _ => b"250 ok\r\n",
            };
            if write.write_all(reply).await.is_err() {
                break;
            }
        }
        if in_transaction {
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

async fn service(dest: &Destination, extra: &str) -> Service {
    let svc = Service::start(dest.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    svc
}

/// Sends `subjects` from Joe to Ann over one SMTP session, each acknowledged with 250.
async fn send_all(svc: &Service, subjects: &[String], gap: Duration) {
    let mut c = Client::connect(svc.smtp_port).await;
    for s in subjects {
        let data = message(JOE, "ann@remailer.test", s, "x");
        let r = c.send_mail(JOE, &["ann@remailer.test"], &data).await;
        assert_eq!(r.code, 250, "{r:?}");
        tokio::time::sleep(gap).await;
    }
    c.cmd("QUIT").await;
}

/// The attempts of each subject, in the order the destination saw them.
fn attempts_of<'a>(seen: &'a [Seen], subject: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|s| s.subject == subject).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_deferred_entries_resume_on_their_persisted_schedule_in_due_order() {
    // A random release delay puts the first attempts, and so the persisted next attempts, in
    // an order unrelated to the queue ids. One at a time to the destination, so the order it
    // sees is the order they left in; every deferral waits 4 s.
    let dest = Destination::start(Duration::ZERO).await;
    let extra = "delivery.retry_base = 4\ndelivery.retry_max = 4\n\
                 delivery.per_destination = 1\ndelivery.delay = \"1s..3s\"";
    let mut svc = service(&dest, extra).await;
    let subjects: Vec<String> = (0..8).map(|i| format!("due-{i}")).collect();
    send_all(&svc, &subjects, Duration::ZERO).await;
    wait_for("a first attempt of each", T, || {
        (dest.seen().len() >= subjects.len()).then_some(())
    })
    .await;
    // Give the last deferral a moment to be persisted, then crash.
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.kill9();
    let first = dest.seen();
    assert_eq!(
        first.len(),
        subjects.len(),
        "one attempt each before the crash"
    );

    // Restarted at once: every next attempt is still ahead, and none comes early.
    svc.spawn().await;
    wait_for("a second attempt of each", T, || {
        (dest.seen().len() >= 2 * subjects.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.kill9();
    let second = dest.seen();
    assert_eq!(
        second.len(),
        2 * subjects.len(),
        "no storm after the restart"
    );
    for s in &subjects {
        let a = attempts_of(&second, s);
        let gap = a[1].at.duration_since(a[0].at).unwrap_or_default();
        assert!(
            gap >= Duration::from_secs(4),
            "{s}: retried {gap:?} after its first attempt, before its persisted time"
        );
    }
    let order = |seen: &[Seen]| -> Vec<String> { seen.iter().map(|s| s.subject.clone()).collect() };
    assert_eq!(
        order(&second[subjects.len()..]),
        order(&first),
        "second attempts in the order they fell due"
    );

    // Down until every next attempt is overdue; then the destination recovers and the
    // overdue entries leave in due-time order (the order of their last attempts), not in
    // the order of their ids.
    tokio::time::sleep(Duration::from_secs(5)).await;
    dest.accept.store(true, Ordering::SeqCst);
    svc.spawn().await;
    wait_for("every entry delivered", T, || {
        (dest.delivered() == subjects.len()).then_some(())
    })
    .await;
    let all = dest.seen();
    let delivered: Vec<Seen> = all.iter().filter(|s| s.accepted).cloned().collect();
    assert_eq!(
        order(&delivered),
        order(&second[subjects.len()..]),
        "overdue entries in due-time order"
    );
    assert_eq!(
        all.len(),
        3 * subjects.len(),
        "each tried exactly three times"
    );
    // Each attempt ran in its queue id's span, which names no address and no domain.
    let log = svc.log();
    let third = log
        .lines()
        .filter(|l| l.contains("delivery{queue_id=") && l.contains(" attempt=3}"))
        .filter(|l| l.contains(" delivered"))
        .count();
    assert_eq!(
        third,
        subjects.len(),
        "a third-attempt span for each:\n{log}"
    );
    for line in log.lines().filter(|l| l.contains("delivery{")) {
        assert!(!line.contains("mail.example"), "{line}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, list, err) = svc.cli(&["queue", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(list.contains("\n0 queued"), "the queue is empty: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queued_entries_respect_the_destination_limit_and_all_arrive_on_recovery() {
    // 240 entries, at most 3 at a time to the destination; a window of 16 entries in
    // delivery at once, far fewer than are queued.
    let dest = Destination::start(Duration::from_millis(15)).await;
    let extra = "delivery.retry_base = 2\ndelivery.retry_max = 2\n\
                 delivery.per_destination = 3\ndelivery.workers = 50\ndelivery.active_limit = 16";
    let svc = service(&dest, extra).await;
    let subjects: Vec<String> = (0..240).map(|i| format!("many-{i}")).collect();
    let mut senders = Vec::new();
    for chunk in subjects.chunks(60) {
        let (svc_port, chunk) = (svc.smtp_port, chunk.to_vec());
        senders.push(tokio::spawn(async move {
            let mut c = Client::connect(svc_port).await;
            for s in &chunk {
                let data = message(JOE, "ann@remailer.test", s, "x");
                let r = c.send_mail(JOE, &["ann@remailer.test"], &data).await;
                assert_eq!(r.code, 250, "{r:?}");
            }
            c.cmd("QUIT").await;
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    wait_for("a deferral of each", T, || {
        (dest.seen().len() >= subjects.len()).then_some(())
    })
    .await;
    assert_eq!(dest.delivered(), 0);
    dest.accept.store(true, Ordering::SeqCst);
    wait_for("every entry delivered", T, || {
        (dest.delivered() == subjects.len()).then_some(())
    })
    .await;
    let max = dest.max_active.load(Ordering::SeqCst);
    assert!(
        max <= 3,
        "{max} transactions at once, over per_destination = 3"
    );
    assert!(max >= 2, "deliveries ran in parallel ({max} at most)");
    let seen = dest.seen();
    for s in &subjects {
        let a = attempts_of(&seen, s);
        assert_eq!(a.iter().filter(|x| x.accepted).count(), 1, "{s} once");
    }
    let (code, list, _) = svc.cli(&["queue", "list"]);
    assert_eq!(code, 0);
    assert!(list.contains("\n0 queued"), "the queue is empty: {list}");
}
