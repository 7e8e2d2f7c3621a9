//! A real DNS server for tests: hickory-server on 127.0.0.1 (UDP and TCP on one ephemeral
//! port), answering from an in-memory map that the test fills, and changes, while it runs.
//!
//! ```ignore
//! let dns = TestDns::start().await;
//! dns.add_txt("example.test", "v=spf1 ip4:127.0.0.2 -all");
//! let config = dns.dns_config(); // [dns] nameservers = ["127.0.0.1:PORT"]
//! ```
//!
//! Names are matched case-insensitively, without a trailing dot. A name with no record of any
//! type gets NXDOMAIN; a name with records of other types gets an empty NOERROR answer. The
//! server stops when the `TestDns` is dropped. TTLs are 1 second, so a test that changes a
//! record sees the change after a short wait; tests usually use distinct names instead.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, MX, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use remailer::config::DnsConfig;
use tokio::net::{TcpListener, UdpSocket};

type Records = HashMap<String, Vec<Record>>;

/// Owner name of the pseudo-record that makes the server answer SERVFAIL for a name.
const SERVFAIL: &str = "\u{0}servfail";

/// A running test DNS server and the records it serves.
pub struct TestDns {
    addr: SocketAddr,
    records: Arc<RwLock<Records>>,
    _server: Server<Handler>,
}

impl TestDns {
    /// Binds UDP and TCP on the same free port of 127.0.0.1 and starts serving.
    pub async fn start() -> TestDns {
        let records = Arc::new(RwLock::new(Records::new()));
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(Handler {
            records: records.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        TestDns {
            addr,
            records,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `[dns]` settings that point at this server.
    pub fn dns_config(&self) -> DnsConfig {
        DnsConfig {
            nameservers: vec![self.addr],
        }
    }

    /// Adds a TXT record; text longer than 255 bytes is split into several strings.
    pub fn add_txt(&self, name: &str, text: &str) {
        let parts = text
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.add(name, RData::TXT(TXT::new(parts)));
    }

    /// Adds a TXT record made of exactly these strings.
    pub fn add_txt_strings(&self, name: &str, parts: Vec<String>) {
        self.add(name, RData::TXT(TXT::new(parts)));
    }

    pub fn add_mx(&self, name: &str, preference: u16, exchange: &str) {
        let exchange = Name::from_str(&format!("{}.", exchange.trim_end_matches('.'))).unwrap();
        self.add(name, RData::MX(MX::new(preference, exchange)));
    }

    pub fn add_a(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, RData::A(A(ip)));
    }

    /// Makes every query for `name` (any type) answer SERVFAIL, like a broken authoritative
    /// server: resolvers report a temporary error.
    pub fn add_servfail(&self, name: &str) {
        let mut records = self.records.write().unwrap();
        records.insert(format!("{SERVFAIL}{}", key(name)), Vec::new());
    }

    /// Removes every record at `name`.
    pub fn remove(&self, name: &str) {
        self.records.write().unwrap().remove(&key(name));
    }

    /// Adds the TXT and MX records of zone-file lines `NAME. TTL IN TYPE VALUE` (the format
    /// `remailer dns` prints; TXT values as quoted strings). Other lines are ignored.
    pub fn add_zone(&self, zone: &str) {
        for line in zone.lines() {
            let fields: Vec<&str> = line.splitn(5, ' ').collect();
            if fields.len() < 5 || line.starts_with(';') {
                continue;
            }
            let (name, rtype, value) = (fields[0], fields[3], fields[4]);
            match rtype {
                "TXT" => self.add_txt_strings(name, unquote(value)),
                "MX" => {
                    let (pref, host) = value.split_once(' ').unwrap();
                    self.add_mx(name, pref.parse().unwrap(), host);
                }
                _ => {}
            }
        }
    }

    fn add(&self, name: &str, data: RData) {
        let owner = Name::from_str(&format!("{}.", name.trim_end_matches('.'))).unwrap();
        let record = Record::from_rdata(owner, 1, data);
        let mut records = self.records.write().unwrap();
        records.entry(key(name)).or_default().push(record);
    }
}

/// The strings of a TXT value written as `"a" "b"` (with `\"` and `\\` escapes).
pub fn unquote(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut part = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => part.extend(chars.next()),
                '"' => break,
                c => part.push(c),
            }
        }
        parts.push(part);
    }
    parts
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free port for both UDP and TCP on 127.0.0.1");
}

struct Handler {
    records: Arc<RwLock<Records>>,
}

impl Handler {
    /// The answers for `name`/`rtype` and the response code (NXDOMAIN when the name has no
    /// record of any type).
    fn answer(&self, name: &str, rtype: RecordType) -> (Vec<Record>, ResponseCode) {
        let records = self.records.read().unwrap();
        if records.contains_key(&format!("{SERVFAIL}{}", key(name))) {
            return (Vec::new(), ResponseCode::ServFail);
        }
        match records.get(&key(name)) {
            None => (Vec::new(), ResponseCode::NXDomain),
            Some(all) => (
                all.iter()
                    .filter(|r| r.record_type() == rtype || rtype == RecordType::ANY)
                    .cloned()
                    .collect(),
                ResponseCode::NoError,
            ),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let (answers, code) = match request.queries.queries().first() {
            Some(q) => self.answer(&q.name().to_string(), q.query_type()),
            None => (Vec::new(), ResponseCode::FormErr),
        };
        metadata.response_code = code;
        let response = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            answers.iter(),
            [],
            [],
            [],
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            }),
        }
    }
}
