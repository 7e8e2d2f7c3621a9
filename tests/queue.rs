//! The queue as an operator sees it, through the real binary: retry state that survives a
//! restart (kill -9), `queue list`/`show`/`delete`, and the random delay and pooling of
//! `delivery.delay`/`delivery.pool_interval` (bounds, persistence across kill -9, shuffling).
//! Every wait is bounded.

mod harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::{message, wait_for, Client, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(20);

async fn setup(mode: SinkMode, extra: &str) -> (Service, Sink) {
    let sink = Sink::start(mode).await;
    let svc = Service::start(sink.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    (svc, sink)
}

/// Sends one message from Joe to Ann; returns its queue id and the times just before the
/// final dot and just after the 250.
async fn send(c: &mut Client, subject: &str) -> (String, SystemTime, SystemTime) {
    let data = message(JOE, "ann@remailer.test", subject, "x");
    let before = SystemTime::now();
    let r = c.send_mail(JOE, &["ann@remailer.test"], &data).await;
    let after = SystemTime::now();
    assert_eq!(r.code, 250, "{r:?}");
    let id = r
        .text
        .split_whitespace()
        .last()
        .expect("Queued as ID")
        .to_string();
    (id, before, after)
}

async fn send_one(svc: &Service, subject: &str) -> (String, SystemTime, SystemTime) {
    let mut c = Client::connect(svc.smtp_port).await;
    let sent = send(&mut c, subject).await;
    c.cmd("QUIT").await;
    sent
}

fn ok(svc: &Service, args: &[&str]) -> String {
    let (code, out, err) = svc.cli(args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    out
}

/// The value of `key:` in `queue show` output.
fn field(show: &str, key: &str) -> String {
    show.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {show}"))
        .trim()
        .to_string()
}

async fn wait_attempts_shown(svc: &Service, id: &str, n: u32) -> String {
    let want = n.to_string();
    wait_for(&format!("{n} attempts persisted"), T, || {
        let (code, out, _) = svc.cli(&["queue", "show", id]);
        (code == 0 && field(&out, "attempts") == want).then_some(out)
    })
    .await
}

fn no_real_address(text: &str) {
    for secret in ["real.example", "mail.example", "127.0.0.1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_state_survives_kill_9_and_the_next_attempt_waits_for_its_time() {
    // Three 451s, then accept; each deferral waits 4 s.
    let (mut svc, sink) = setup(
        SinkMode::Defer(3),
        "delivery.retry_base = 4\ndelivery.retry_max = 4",
    )
    .await;
    let (id, _, _) = send_one(&svc, "retry").await;
    let show = wait_attempts_shown(&svc, &id, 2).await;
    svc.kill9();
    let second = *sink.attempt_times().last().unwrap();
    assert_eq!(sink.attempt_times().len(), 2);
    assert!(show.contains("server replied 451 4.3.0"), "{show}");
    assert!(show.contains("#1") && show.contains("#2"), "{show}");
    no_real_address(&show);
    let list = ok(&svc, &["queue", "list"]);
    let line = list.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(
        line.contains(" 2 ") && line.contains("server replied 451"),
        "{list}"
    );
    no_real_address(&list);

    svc.spawn().await;
    wait_for("the third attempt", T, || {
        (sink.attempt_times().len() >= 3).then_some(())
    })
    .await;
    let third = sink.attempt_times()[2];
    let waited = third.duration_since(second).unwrap();
    assert!(
        waited >= Duration::from_secs(4),
        "the restart retried after {waited:?}, before the persisted next attempt"
    );
    let show = wait_attempts_shown(&svc, &id, 3).await;
    assert!(show.contains("#3"), "the count continues: {show}");
    wait_for("delivery", T, || sink.delivered().pop()).await;
    assert_eq!(sink.attempt_times().len(), 4, "three 451s, then delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_show_and_delete_while_serving_and_offline() {
    let (mut svc, sink) = setup(
        SinkMode::Defer(1000),
        "delivery.retry_base = 120\ndelivery.retry_max = 120",
    )
    .await;
    let (first, _, _) = send_one(&svc, "first").await;
    let (second, _, _) = send_one(&svc, "second").await;
    let show = wait_attempts_shown(&svc, &first, 1).await;
    assert_eq!(field(&show, "from"), "joe@remailer.test");
    assert_eq!(field(&show, "to"), "ann@remailer.test");
    assert_eq!(field(&show, "kind"), "remail");
    assert!(field(&show, "size").ends_with(" bytes"), "{show}");
    assert!(field(&show, "queued").contains('T'), "{show}");
    assert_eq!(field(&show, "release"), "-");
    no_real_address(&show);
    wait_attempts_shown(&svc, &second, 1).await;

    // Deleted while serve runs: the waiting delivery never delivers it, even when flushed.
    let out = ok(&svc, &["queue", "delete", &first]);
    assert!(out.contains(&format!("deleted {first}")), "{out}");
    sink.set_mode(SinkMode::Accept);
    let attempts = sink.attempts();
    ok(&svc, &["queue", "flush"]);
    let got = wait_for("the other message, flushed", T, || sink.delivered().pop()).await;
    assert_eq!(got.header("Subject").as_deref(), Some("second"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink.attempts(),
        attempts + 1,
        "the deleted one was not tried"
    );
    assert!(svc.log().contains("deleted from the queue"));
    let list = ok(&svc, &["queue", "list"]);
    assert!(list.ends_with("0 queued\n"), "{list}");

    for args in [["queue", "show", &first], ["queue", "delete", &first]] {
        let (code, out, err) = svc.cli(&args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("no queued message with id {first}")),
            "{err}"
        );
    }
    for args in [["queue", "show", "zz!"], ["queue", "delete", "../x"]] {
        let (code, _, err) = svc.cli(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("is not a queue id"), "{err}");
    }

    // Offline: with the service stopped, delete works on the spool directly.
    sink.set_mode(SinkMode::Defer(1000));
    let (third, _, _) = send_one(&svc, "third").await;
    wait_attempts_shown(&svc, &third, 1).await;
    assert_eq!(svc.terminate().await, Some(0));
    let out = ok(&svc, &["queue", "delete", &third]);
    assert!(out.contains("deleted"), "{out}");
    let (code, _, err) = svc.cli(&["queue", "delete", &third]);
    assert_eq!(code, 1, "{err}");
    sink.set_mode(SinkMode::Accept);
    let before = sink.attempts();
    svc.spawn().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.attempts(), before, "nothing left to deliver");
    assert!(ok(&svc, &["queue", "list"]).ends_with("0 queued\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_delay_stays_in_its_bounds() {
    let (svc, sink) = setup(SinkMode::Accept, "delivery.delay = \"2s..4s\"").await;
    let mut c = Client::connect(svc.smtp_port).await;
    let mut sent = Vec::new();
    for n in 0..6 {
        sent.push((
            format!("delay-{n}"),
            send(&mut c, &format!("delay-{n}")).await,
        ));
    }
    c.cmd("QUIT").await;
    let list = ok(&svc, &["queue", "list"]);
    let (_, (id, _, _)) = &sent[0];
    let line = list.lines().find(|l| l.starts_with(id.as_str()));
    assert!(
        line.is_some_and(|l| l.matches('T').count() >= 2),
        "release and next attempt shown: {list}"
    );
    wait_for("every delayed message", T, || {
        (sink.delivered().len() >= sent.len()).then_some(())
    })
    .await;
    for d in sink.delivered() {
        let subject = d.header("Subject").unwrap();
        let (_, (_, before, after)) = sent.iter().find(|(s, _)| *s == subject).unwrap();
        let early = d.at.duration_since(*before).unwrap_or_default();
        let late = d.at.duration_since(*after).unwrap_or_default();
        assert!(early >= Duration::from_secs(2), "{subject} after {early:?}");
        assert!(
            late <= Duration::from_millis(5500),
            "{subject} after {late:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_keeps_its_release_time_across_kill_9() {
    let (mut svc, sink) = setup(SinkMode::Accept, "delivery.delay = \"5s..6s\"").await;
    let (id, before, after) = send_one(&svc, "kept").await;
    svc.kill9();
    let show = ok(&svc, &["queue", "show", &id]);
    assert!(field(&show, "release").contains('T'), "{show}");
    svc.spawn().await;
    let d = wait_for("the delayed message", T, || sink.delivered().pop()).await;
    let waited = d.at.duration_since(before).unwrap();
    assert!(
        waited >= Duration::from_secs(5),
        "released early: {waited:?}"
    );
    let late = d.at.duration_since(after).unwrap();
    assert!(late <= Duration::from_millis(7500), "{late:?}");
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_releases_a_batch_shuffled_in_one_tick() {
    const N: usize = 10;
    const TICK_MS: u128 = 2000;
    let (svc, sink) = setup(
        SinkMode::Accept,
        "delivery.pool_interval = 2\ndelivery.per_destination = 1",
    )
    .await;
    let sent_order: Vec<String> = (0..N).map(|n| format!("pool-{n}")).collect();
    let mut orders = Vec::new();
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        // Start right after a tick (ticks are multiples of the interval since the epoch).
        wait_for("just after a tick", T, || {
            (unix_ms(SystemTime::now()) % TICK_MS < 200).then_some(())
        })
        .await;
        let start = unix_ms(SystemTime::now());
        let mut c = Client::connect(svc.smtp_port).await;
        for s in &sent_order {
            send(&mut c, &format!("{s}-{round}")).await;
        }
        c.cmd("QUIT").await;
        let end = unix_ms(SystemTime::now());
        let tick = (start / TICK_MS + 1) * TICK_MS;
        // (on a slow machine the batch may straddle a tick: then this round proves nothing)
        let straddled = end >= tick;
        let batch = wait_for("the batch", T, || {
            let got: Vec<_> = sink
                .delivered()
                .into_iter()
                .filter(|d| d.header("Subject").unwrap().ends_with(&format!("-{round}")))
                .collect();
            (got.len() == N).then_some(got)
        })
        .await;
        if straddled {
            continue;
        }
        let times: Vec<u128> = batch.iter().map(|d| unix_ms(d.at)).collect();
        let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
        assert!(first >= tick, "released before its tick: {first} < {tick}");
        assert!(last < tick + TICK_MS, "all in the same tick: {times:?}");
        let order: Vec<usize> = batch
            .iter()
            .map(|d| {
                let s = d.header("Subject").unwrap();
                let name = &s[..s.rfind('-').unwrap()];
                sent_order.iter().position(|o| o == name).unwrap()
            })
            .collect();
        // Scheduling jitter alone swaps a few neighbours; a shuffle of 10 has 22.5
        // inversions on average (fewer than 12 in about 3% of shuffles).
        let inversions = (0..N)
            .flat_map(|i| (i + 1..N).map(move |j| (i, j)))
            .filter(|&(i, j)| order[i] > order[j])
            .count();
        orders.push((order, inversions));
        if inversions >= 12 {
            return;
        }
    }
    panic!("never shuffled in {ROUNDS} rounds: {orders:?}");
}
