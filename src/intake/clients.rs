//! What the intake remembers about client addresses, in memory only: how many connections
//! each has open (`smtp.max_connections_per_client`) and when its recent refusals happened
//! (`smtp.max_refusals_per_client` in `smtp.refusal_window`), so that a scanner that tries
//! alias after alias, or reconnects to start afresh, is cut off (ARCHITECTURE.md §2).
//!
//! A client is known only by a keyed hash of its address (HMAC-SHA256 under a random key
//! made at start and never written anywhere); IPv6 clients by their /64, which one holder
//! usually controls whole. Neither the address nor the hash is stored on disk or logged.
//! The table is bounded: entries with nothing open and nothing recent are dropped.
//! The same key counts connections and commands per minute (`limits.connections_per_client_per_minute`,
//! `limits.commands_per_client_per_minute`, [`crate::rate_limits`]); over either the client
//! gets `421 4.7.1` with the seconds to wait, and the connection is closed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rate_limits::{self, Limit};
use crate::reply::{Answer, Reply};

/// Most client entries kept; when they are all in use, the refusals are forgotten (the
/// connections are always counted).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey([u8; 16]);

#[derive(Debug, Default)]
struct Entry {
    connections: usize,
    /// Times of the latest refusals, oldest first, at most `max_refusals`.
    refusals: VecDeque<Instant>,
}

/// The limits, from `[smtp]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_refusals: usize,
    pub window: Duration,
    /// Connections and commands per `minute` (0: no limit).
    pub connections_per_minute: u32,
    pub commands_per_minute: u32,
    pub minute: Duration,
}

pub struct Clients {
    key: [u8; 32],
    limits: Limits,
    /// [`MAX_ENTRIES`] (smaller in tests).
    max_entries: usize,
    table: Mutex<HashMap<ClientKey, Entry>>,
    connection_rate: Limit<ClientKey>,
    command_rate: Limit<ClientKey>,
}

/// A connection counted against its client; dropping it ends the count.
pub struct Client {
    clients: Arc<Clients>,
    key: ClientKey,
}

impl Clients {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Clients {
            key: rand::random(),
            limits,
            max_entries: MAX_ENTRIES,
            table: Mutex::new(HashMap::new()),
            connection_rate: Limit::new(limits.connections_per_minute, limits.minute),
            command_rate: Limit::new(limits.commands_per_minute, limits.minute),
        })
    }

    fn key(&self, ip: IpAddr) -> ClientKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        match ip.to_canonical() {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()[..8]),
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        ClientKey(key)
    }

    /// Counts a new connection from `ip`, or refuses it (the reply says why) when the client
    /// has too many open or was refused too often lately.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<Client, Reply> {
        let key = self.key(ip);
        if let Err(wait) = self.connection_rate.check(&key) {
            return Err(rate_limited(
                "connections",
                self.connection_rate.per_window(),
                wait,
            ));
        }
        let mut table = self.table.lock().expect("clients lock");
        if table.len() >= self.max_entries {
            let now = Instant::now();
            table.retain(|_, e| e.connections > 0 || self.recent(e, now));
            if table.len() >= self.max_entries {
                // Very many addresses were refused lately (an address-rotating scanner):
                // forget the refusals rather than grow without bound. Open connections,
                // at most `smtp.max_connections` of them, are always kept.
                tracing::warn!(
                    "too many client addresses refused lately; forgetting their refusals"
                );
                table.retain(|_, e| e.connections > 0);
            }
        }
        let entry = table.entry(key).or_default();
        if self.limited(entry, Instant::now()) {
            return Err(too_many_refusals(self.limits.window));
        }
        if entry.connections >= self.limits.max_connections {
            return Err(Answer::TooManyConnectionsFromClient.into());
        }
        entry.connections += 1;
        Ok(Client {
            clients: self.clone(),
            key,
        })
    }

    fn recent(&self, entry: &Entry, now: Instant) -> bool {
        entry
            .refusals
            .back()
            .is_some_and(|t| now.duration_since(*t) < self.limits.window)
    }

    fn limited(&self, entry: &Entry, now: Instant) -> bool {
        entry.refusals.len() >= self.limits.max_refusals
            && entry
                .refusals
                .front()
                .is_some_and(|t| now.duration_since(*t) < self.limits.window)
    }
}

impl Client {
    /// Records a refusal (a recipient refused with 5xx).
    pub fn refused(&self) {
        let mut table = self.clients.table.lock().expect("clients lock");
        if let Some(entry) = table.get_mut(&self.key) {
            entry.refusals.push_back(Instant::now());
            while entry.refusals.len() > self.clients.limits.max_refusals {
                entry.refusals.pop_front();
            }
        }
    }

    /// Counts one command; `Err(reply)` (the session then closes) when the client sent too
    /// many in the last minute.
    pub fn command(&self) -> Result<(), Reply> {
        let rate = &self.clients.command_rate;
        rate.check(&self.key)
            .map_err(|wait| rate_limited("commands", rate.per_window(), wait))
    }

    /// `Some(reply)` when the client was refused too often lately and must be cut off.
    pub fn cut_off(&self) -> Option<Reply> {
        let table = self.clients.table.lock().expect("clients lock");
        let entry = table.get(&self.key)?;
        self.clients
            .limited(entry, Instant::now())
            .then(|| too_many_refusals(self.clients.limits.window))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut table = self.clients.table.lock().expect("clients lock");
        let now = Instant::now();
        if let Some(entry) = table.get_mut(&self.key) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 && !self.clients.recent(entry, now) {
                table.remove(&self.key);
            }
        }
    }
}

fn rate_limited(what: &'static str, per_minute: u32, wait: Duration) -> Reply {
    Answer::ClientRate {
        what,
        per_minute,
        wait_secs: rate_limits::seconds(wait),
    }
    .into()
}

fn too_many_refusals(window: Duration) -> Reply {
    Answer::TooManyRefusals {
        wait_secs: window.as_secs().max(1),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(max_connections: usize, max_refusals: usize, window_ms: u64) -> Arc<Clients> {
        Clients::new(Limits {
            max_connections,
            max_refusals,
            window: Duration::from_millis(window_ms),
            connections_per_minute: 0,
            commands_per_minute: 0,
            minute: Duration::from_secs(60),
        })
    }

    #[test]
    fn connections_are_counted_per_client() {
        let c = clients(2, 10, 1000);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let (x, _y) = (c.connect(a).unwrap(), c.connect(a).unwrap());
        assert_eq!(c.connect(a).err().map(|r| r.code), Some(421));
        let _z = c.connect(b).expect("another client is not affected");
        drop(x);
        let _w = c.connect(a).expect("a slot was freed");
        // the same client over IPv4-mapped IPv6
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(c.connect(mapped).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let c = clients(1, 10, 1000);
        let _x = c.connect("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(c.connect("2001:db8:1:2:ffff::9".parse().unwrap()).is_err());
        assert!(c.connect("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn refusals_cut_a_client_off_for_the_window() {
        let c = clients(10, 3, 300);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let conn = c.connect(ip).unwrap();
        for _ in 0..2 {
            conn.refused();
        }
        assert!(conn.cut_off().is_none());
        conn.refused();
        let r = conn.cut_off().expect("cut off after 3");
        assert_eq!((r.code, r.esc), (421, [4, 7, 0]));
        drop(conn);
        assert!(c.connect(ip).is_err(), "reconnecting does not start afresh");
        std::thread::sleep(Duration::from_millis(350));
        assert!(c.connect(ip).is_ok(), "the window passed");
    }

    #[test]
    fn the_table_stays_bounded_under_address_rotation() {
        let mut c = clients(10, 3, 60_000);
        Arc::get_mut(&mut c).unwrap().max_entries = 1000;
        let held = c.connect("192.0.2.9".parse().unwrap()).unwrap();
        for n in 0..2500u64 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(n) << 64));
            let conn = c.connect(ip).unwrap();
            conn.refused();
        }
        let table = c.table.lock().unwrap();
        assert!(table.len() <= 1000, "{}", table.len());
        drop(table);
        assert_eq!(
            held.clients
                .table
                .lock()
                .unwrap()
                .get(&held.key)
                .map(|e| e.connections),
            Some(1)
        );
    }

    #[test]
    fn the_table_forgets_clients_with_nothing_open_or_recent() {
        let c = clients(10, 3, 1000);
        drop(c.connect("192.0.2.8".parse().unwrap()).unwrap());
        assert!(c.table.lock().unwrap().is_empty());
    }
}
