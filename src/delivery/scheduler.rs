//! `scheduler`: the queue manager's memory (ARCHITECTURE.md §4). One binary heap of due
//! times per destination holds every queued entry as a [`Job`] — its queue id, kind, times
//! and attempt count, never its message (a heap in one array: a big queue costs about
//! 130 bytes per entry here) — and a bounded active window (`delivery.active_limit`,
//! Postfix's active queue) lets at most that many entries be in delivery at once, at most
//! `delivery.per_destination` of them to one destination. [`Scheduler::next`] hands out the
//! entry whose time has come first (ties at a pool tick in a random order), waiting on the
//! [`Clock`], which is tokio's under test so retries can be driven with paused time.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::queue_stats::Waiting;
use crate::spool::Queued;

/// The wall clock the due times are in (Unix milliseconds).
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's clock (the service).
    System,
    /// Tokio's clock, started at `wall_ms` when tokio's clock read `at` (tests pause and
    /// advance it).
    Tokio {
        wall_ms: i64,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// Tokio's clock, reading the system's time now.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            wall_ms: super::schedule::now_ms(),
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => super::schedule::now_ms(),
            Clock::Tokio { wall_ms, at } => wall_ms + at.elapsed().as_millis() as i64,
        }
    }

    /// Sleeps until the clock reads `at_ms` (never earlier).
    pub async fn sleep_until(&self, at_ms: i64) {
        loop {
            let left = at_ms - self.now_ms();
            if left <= 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
        }
    }
}

/// A queued entry as the scheduler keeps it.
pub struct Job {
    pub queued: Queued,
    /// The destination key (relay or MX domain): concurrency is counted per key.
    pub dest: Arc<str>,
    /// When it was accepted, in Unix milliseconds (for the latency histogram).
    pub accepted_ms: i64,
    /// Its place in the queue gauges, for as long as it is queued.
    pub waiting: Waiting,
}

/// (due time, tie-breaker): the order in which entries leave.
type Key = (i64, u64);

/// A job in its destination's heap, ordered so the earliest key is on top.
struct Due(Key, Job);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.cmp(&self.0)
    }
}

#[derive(Default)]
struct Destination {
    jobs: BinaryHeap<Due>,
    in_flight: usize,
}

impl Destination {
    /// The key of the entry that leaves first.
    fn head(&self) -> Option<Key> {
        self.jobs.peek().map(|d| d.0)
    }
}

#[derive(Default)]
struct State {
    dests: HashMap<Arc<str>, Destination>,
    /// The first entry of every destination below its concurrency limit.
    ready: BTreeSet<(Key, Arc<str>)>,
    seq: u64,
    queued: usize,
}

pub struct Scheduler {
    state: Mutex<State>,
    window: Arc<Semaphore>,
    per_destination: usize,
    changed: Notify,
    pub clock: Clock,
}

/// An entry's place in the active window and in its destination's count; dropping it
/// frees both.
pub struct Slot {
    scheduler: Arc<Scheduler>,
    dest: Arc<str>,
    _window: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.scheduler.lock();
        let limit = self.scheduler.per_destination;
        let Some(d) = st.dests.get_mut(&self.dest) else {
            return;
        };
        d.in_flight = d.in_flight.saturating_sub(1);
        let head = (d.in_flight + 1 == limit).then(|| d.head()).flatten();
        if d.jobs.is_empty() && d.in_flight == 0 {
            st.dests.remove(&self.dest);
        }
        if let Some(key) = head {
            st.ready.insert((key, self.dest.clone()));
        }
        drop(st);
        self.scheduler.changed.notify_one();
    }
}

impl Scheduler {
    pub fn new(active_limit: usize, per_destination: usize, clock: Clock) -> Arc<Self> {
        Arc::new(Scheduler {
            state: Mutex::new(State::default()),
            window: Arc::new(Semaphore::new(active_limit.max(1))),
            per_destination: per_destination.max(1),
            changed: Notify::new(),
            clock,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` to leave at `due_ms`; `shuffle` breaks ties with entries due at the same
    /// time at random (a pool tick), else they leave in the order they were queued.
    pub fn push(&self, job: Job, due_ms: i64, shuffle: bool) {
        let mut st = self.lock();
        st.seq += 1;
        // (the sequence number in the low bits keeps every key unique)
        let tie = match shuffle {
            true => rand::random::<u64>() << 32 | (st.seq & 0xffff_ffff),
            false => st.seq,
        };
        let key = (due_ms, tie);
        let dest = job.dest.clone();
        let limit = self.per_destination;
        let d = st.dests.entry(dest.clone()).or_default();
        let old = d.head();
        d.jobs.push(Due(key, job));
        let open = d.in_flight < limit;
        st.queued += 1;
        if open && old.is_none_or(|o| key < o) {
            if let Some(o) = old {
                st.ready.remove(&(o, dest.clone()));
            }
            st.ready.insert((key, dest));
        }
        drop(st);
        self.changed.notify_one();
    }

    /// How many entries wait (not counting those in delivery).
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// Waits for a place in the active window and for the first entry whose time has come
    /// (of a destination below its limit), and hands it out; None once `stop` is cancelled.
    pub async fn next(self: &Arc<Self>, stop: &CancellationToken) -> Option<(Job, Slot)> {
        let window = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            p = self.window.clone().acquire_owned() => p.expect("never closed"),
        };
        loop {
            let due = match self.take_due() {
                Ok((job, dest)) => {
                    let slot = Slot {
                        scheduler: self.clone(),
                        dest,
                        _window: window,
                    };
                    return Some((job, slot));
                }
                Err(due) => due,
            };
            let sleep = async {
                match due {
                    Some(at) => self.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = sleep => {}
                _ = self.changed.notified() => {}
            }
        }
    }

    /// The first due entry, counted in flight; else when the next one is due (None: none).
    fn take_due(&self) -> Result<(Job, Arc<str>), Option<i64>> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let Some(&(key, _)) = st.ready.first() else {
            return Err(None);
        };
        if key.0 > now {
            return Err(Some(key.0));
        }
        let (_, dest) = st.ready.pop_first().expect("not empty");
        let limit = self.per_destination;
        let d = st.dests.get_mut(&dest).expect("a ready destination exists");
        let Due(head_key, job) = d.jobs.pop().expect("the head is queued");
        debug_assert_eq!(head_key, key);
        if d.jobs.capacity() > 64 && d.jobs.len() < d.jobs.capacity() / 4 {
            d.jobs.shrink_to(d.jobs.len() * 2); // a drained burst gives its memory back
        }
        d.in_flight += 1;
        let head = (d.in_flight < limit).then(|| d.head()).flatten();
        st.queued -= 1;
        if let Some(k) = head {
            st.ready.insert((k, dest.clone()));
        }
        Ok((job, dest))
    }

    /// Makes every entry that waits for a retry due now (`remailer queue flush`); release
    /// times stay.
    pub fn flush(&self) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let state = &mut *st;
        for d in state.dests.values_mut() {
            let mut jobs = std::mem::take(&mut d.jobs).into_vec();
            for Due((due, _), job) in &mut jobs {
                if job.queued.last.is_some() {
                    *due = (*due).min(now.max(job.queued.release_ms.unwrap_or(0)));
                }
            }
            d.jobs = BinaryHeap::from(jobs);
        }
        Self::rebuild_ready(state, self.per_destination);
        drop(st);
        self.changed.notify_one();
    }

    /// Takes the entry `id` out of the queue (`remailer queue delete`); false when it is not
    /// waiting here (it may be in delivery).
    pub fn remove(&self, id: &str) -> bool {
        let mut st = self.lock();
        let state = &mut *st;
        let mut found = false;
        for d in state.dests.values_mut() {
            if d.jobs.iter().any(|Due(_, j)| j.queued.id == id) {
                d.jobs.retain(|Due(_, j)| j.queued.id != id);
                found = true;
                break;
            }
        }
        if found {
            state.queued -= 1;
            state
                .dests
                .retain(|_, d| !d.jobs.is_empty() || d.in_flight > 0);
            Self::rebuild_ready(state, self.per_destination);
        }
        found
    }

    fn rebuild_ready(st: &mut State, limit: usize) {
        st.ready = st
            .dests
            .iter()
            .filter(|(_, d)| d.in_flight < limit)
            .filter_map(|(k, d)| d.head().map(|h| (h, k.clone())))
            .collect();
    }
}

#[cfg(test)]
mod tests;
