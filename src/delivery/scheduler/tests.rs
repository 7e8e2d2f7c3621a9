//! The scheduler on tokio's paused clock: nothing leaves before its time, due entries leave
//! in due-time order, the active window and the per-destination limit hold, and a retry put
//! back with its backoff waits for it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::queue_stats::QueueStats;
use super::*;
use crate::spool::{Kind, QueueId};

fn job(stats: &Arc<QueueStats>, id: &str, dest: &str, last: Option<(u32, i64)>) -> Job {
    Job {
        queued: Queued {
            id: QueueId::parse(id).expect("a test id"),
            kind: Kind::Remail,
            created: 0,
            release_ms: None,
            last,
            recent: Default::default(),
        },
        dest: Arc::from(dest),
        accepted_ms: 0,
        waiting: stats.track(0),
    }
}

/// The next job, if one is handed out within `within` of tokio's (paused) time.
async fn next_within(
    s: &Arc<Scheduler>,
    stop: &CancellationToken,
    within: Duration,
) -> Option<(Job, Slot)> {
    tokio::time::timeout(within, s.next(stop))
        .await
        .ok()
        .flatten()
}

#[tokio::test(start_paused = true)]
async fn entries_leave_in_due_order_and_never_early() {
    let s = Scheduler::new(100, 10, Clock::tokio());
    let stats = Arc::new(QueueStats::default());
    let stop = CancellationToken::new();
    let t0 = s.clock.now_ms();
    s.push(job(&stats, "c", "d1", None), t0 + 30_000, false);
    s.push(job(&stats, "a", "d2", None), t0 + 10_000, false);
    s.push(job(&stats, "b", "d1", None), t0 + 20_000, false);
    assert_eq!(stats.snapshot().0, 3);
    let mut slots = Vec::new();
    for (want, at) in [("a", 10_000), ("b", 20_000), ("c", 30_000)] {
        let (j, slot) = next_within(&s, &stop, Duration::from_secs(60))
            .await
            .expect("handed out");
        assert_eq!(j.queued.id, want);
        let now = s.clock.now_ms() - t0;
        assert!((at..at + 50).contains(&now), "{want} left at {now} ms");
        slots.push(slot);
    }
    assert!(next_within(&s, &stop, Duration::from_secs(3600))
        .await
        .is_none());
}

#[tokio::test(start_paused = true)]
async fn the_active_window_and_the_destination_limit_hold() {
    let s = Scheduler::new(3, 2, Clock::tokio());
    let stats = Arc::new(QueueStats::default());
    let stop = CancellationToken::new();
    let now = s.clock.now_ms();
    for i in 0..4 {
        s.push(job(&stats, &format!("x{i}"), "busy", None), now, false);
    }
    for i in 0..3 {
        s.push(job(&stats, &format!("y{i}"), "other", None), now + 1, false);
    }
    let short = Duration::from_secs(1);
    let (a, slot_a) = next_within(&s, &stop, short).await.unwrap();
    let (b, slot_b) = next_within(&s, &stop, short).await.unwrap();
    let (c, slot_c) = next_within(&s, &stop, short).await.unwrap();
    let ids = [a.queued.id, b.queued.id, c.queued.id];
    assert_eq!(
        ids,
        ["x0", "x1", "y0"],
        "two per destination, then the other"
    );
    assert!(
        next_within(&s, &stop, short).await.is_none(),
        "the window (3) is full"
    );
    drop(slot_c);
    let (d, slot_d) = next_within(&s, &stop, short).await.unwrap();
    assert_eq!(d.queued.id, "y1", "busy is still at its limit of 2");
    drop(slot_a);
    let (e, _slot_e) = next_within(&s, &stop, short).await.unwrap();
    assert_eq!(
        e.queued.id, "x2",
        "a place for busy again: its oldest entry"
    );
    drop((slot_b, slot_d));
    assert_eq!(s.queued(), 2);
    stop.cancel();
    assert!(s.next(&stop).await.is_none(), "stopped");
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_its_backoff_and_a_flush_ends_the_wait() {
    let s = Scheduler::new(10, 10, Clock::tokio());
    let stats = Arc::new(QueueStats::default());
    let stop = CancellationToken::new();
    let t0 = s.clock.now_ms();
    s.push(job(&stats, "r", "d", None), t0, false);
    let (mut j, slot) = next_within(&s, &stop, Duration::from_secs(1))
        .await
        .unwrap();
    // The attempt is deferred: back with a 60 s backoff.
    j.queued.last = Some((1, t0 + 60_000));
    s.push(j, t0 + 60_000, false);
    drop(slot);
    assert!(next_within(&s, &stop, Duration::from_secs(59))
        .await
        .is_none());
    let (mut j, slot) = next_within(&s, &stop, Duration::from_secs(2))
        .await
        .unwrap();
    let waited = s.clock.now_ms() - t0;
    assert!(
        (60_000..60_100).contains(&waited),
        "retried after {waited} ms"
    );
    // Deferred again, for an hour; `queue flush` makes it due at once.
    j.queued.last = Some((2, s.clock.now_ms() + 3_600_000));
    s.push(j, s.clock.now_ms() + 3_600_000, false);
    drop(slot);
    s.push(
        job(&stats, "fresh", "d", None),
        s.clock.now_ms() + 7_200_000,
        false,
    );
    assert!(next_within(&s, &stop, Duration::from_secs(10))
        .await
        .is_none());
    s.flush();
    let (j, _slot) = next_within(&s, &stop, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(j.queued.id, "r");
    assert!(
        next_within(&s, &stop, Duration::from_secs(60))
            .await
            .is_none(),
        "a flush does not move a first attempt's time"
    );
    assert!(s.remove("fresh"));
    assert!(!s.remove("fresh"));
    assert_eq!(s.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn entries_of_one_pool_tick_leave_shuffled() {
    let s = Scheduler::new(1000, 1000, Clock::tokio());
    let stats = Arc::new(QueueStats::default());
    let stop = CancellationToken::new();
    let tick = s.clock.now_ms() + 1000;
    for i in 0..50 {
        s.push(job(&stats, &format!("{i:02}"), "d", None), tick, true);
    }
    let mut order = Vec::new();
    let mut slots = Vec::new();
    while let Some((j, slot)) = next_within(&s, &stop, Duration::from_secs(2)).await {
        order.push(j.queued.id);
        slots.push(slot);
    }
    assert_eq!(order.len(), 50);
    let mut sorted = order.clone();
    sorted.sort();
    assert_ne!(order, sorted, "not in the order they were queued");
}
