//! The SMTP session in-process, over an in-memory stream (`tokio::io::duplex`), in the style
//! of Stalwart's session tests: each step is one line, `s.cmd("RCPT TO:<x@…>", "550 5.1.1")`,
//! the command sent and the start of the reply it must get. Behind the session is the real
//! pipeline ([`remailer::service::Service::open`]: policy, rewrite, DKIM, the spool and a real
//! SQLite store in a temp dir); only the store-failure case uses a fake
//! [`remailer::envelope::Pipeline`], since a real SQLite store cannot be made to fail on cue.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use remailer::address::{Alias, AliasName, RealAddress};
use remailer::config::Config;
use remailer::envelope::{Decision, Pipeline, Recipient, Sender, Transaction};
use remailer::intake::Intake;
use remailer::reply::{Answer, Refusal};
use remailer::sender_auth::SpfCheck;
use remailer::service::Service;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf,
};

const DOMAIN: &str = "remailer.test";
/// The client's address (TEST-NET-1); it must never appear in a log line.
const PEER: &str = "192.0.2.77:40000";

/// One client talking to one session, over `S` (in memory, or TCP).
struct Session<S> {
    read: BufReader<ReadHalf<S>>,
    write: WriteHalf<S>,
    /// The session's task, when it runs in this test.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Session<tokio::io::DuplexStream> {
    /// Starts a session of `intake` over an in-memory stream and reads its greeting.
    async fn start(intake: Arc<Intake>) -> Self {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let peer: SocketAddr = PEER.parse().unwrap();
        let task = tokio::spawn(remailer::intake::run_session(intake, server, peer));
        Session::over(client, Some(task)).await
    }
}

impl<S: AsyncRead + AsyncWrite> Session<S> {
    async fn over(stream: S, task: Option<tokio::task::JoinHandle<()>>) -> Self {
        let (read, write) = tokio::io::split(stream);
        let mut s = Session {
            read: BufReader::new(read),
            write,
            task,
        };
        s.expect("220 mx.remailer.test ESMTP").await;
        s
    }

    /// Sends `line` (CRLF added) and checks that the whole reply starts with `want`.
    async fn cmd(&mut self, line: &str, want: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.expect(want).await
    }

    /// Sends raw bytes, as they are.
    async fn send(&mut self, bytes: &str) {
        self.write.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Reads one whole reply (all its lines) and checks that it starts with `want`.
    async fn expect(&mut self, want: &str) -> String {
        let reply = tokio::time::timeout(Duration::from_secs(20), self.reply())
            .await
            .unwrap_or_else(|_| panic!("no reply within 20 s (wanted {want:?})"));
        assert!(reply.starts_with(want), "wanted {want:?}, got {reply:?}");
        reply
    }

    async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.read.read_line(&mut line).await.unwrap() == 0 {
                return reply + "(closed)";
            }
            let last = line.as_bytes().get(3) == Some(&b' ');
            reply.push_str(&line);
            if last {
                return reply;
            }
        }
    }

    /// The session has ended: the stream is closed and the task done.
    async fn closed(mut self) {
        assert_eq!(self.reply().await, "(closed)");
        if let Some(task) = self.task {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the session ends")
                .expect("the session task does not panic");
        }
    }
}

/// The DKIM keys, made once per test binary (RSA key generation takes seconds) and copied
/// into each service's data dir.
fn dkim_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("remailer-session-dkim-{}", std::process::id()));
        let domain = remailer::address::Domain::parse(DOMAIN).unwrap();
        remailer::dkim::DkimKeys::load_or_create(&dir, &domain, "rm").expect("dkim keys");
        dir
    })
}

fn config(dir: &Path) -> Config {
    let data = dir.join("data");
    let mut config = Config::parse(&format!(
        "domain = \"{DOMAIN}\"\n\
         data_dir = \"{}\"\n\
         [smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.{DOMAIN}\"\n\
         max_message_size = 4096\nmax_recipients = 3\n\
         [web]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://{DOMAIN}\"\n\
         [admin]\nlisten = \"\"\n\
         [delivery]\nrelay = \"127.0.0.1:9\"\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\n\
         [policy]\nsender_auth = \"none\"\n\
         [limits]\nmember_per_hour = 0\nmember_per_day = 0\nalias_per_hour = 0\n\
         connections_per_client_per_minute = 0\ncommands_per_client_per_minute = 0\n",
        data.display()
    ))
    .expect("config");
    config.dkim.selector = "rm".into();
    config
}

/// A service in `dir` with the members joe (joe@real.example) and ann (ann@mail.example),
/// opened but not listening: its sessions run over in-memory streams.
async fn service(dir: &Path) -> Service {
    Service::open(prepared(dir).await)
        .await
        .expect("service opens")
}

/// The config of a service in `dir`, its data dir made with DKIM keys and the members joe
/// (joe@real.example) and ann (ann@mail.example).
async fn prepared(dir: &Path) -> Config {
    let config = config(dir);
    let dkim = config.data_dir.join("dkim");
    std::fs::create_dir_all(&dkim).unwrap();
    for entry in std::fs::read_dir(dkim_dir().join("dkim")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dkim.join(entry.file_name())).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (_, members) = remailer::service::open_members(&config).await.unwrap();
    let domain = config.domain.clone();
    for (alias, real) in [("joe", "joe@real.example"), ("ann", "ann@mail.example")] {
        let alias = Alias::new(AliasName::parse(alias).unwrap(), &domain);
        members
            .add(&alias, &RealAddress::parse(real, &domain).unwrap())
            .await
            .unwrap();
    }
    config
}

/// Log lines written while `f` runs on this thread (the test's runtime is single-threaded).
async fn logged<F: std::future::Future<Output = ()>>(f: F) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    f.await;
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text
}

const MESSAGE: &str = "From: Joe <joe@real.example>\r\nTo: ann@remailer.test\r\n\
                       Subject: hello\r\n\r\nHi Ann.\r\n.\r\n";

#[tokio::test]
async fn the_main_dialogue() {
    let tmp = tempfile::tempdir().unwrap();
    let service = service(tmp.path()).await;
    let mut s = Session::start(service.intake()).await;
    let ehlo = s.cmd("EHLO client.example", "250-mx.remailer.test").await;
    assert!(
        ehlo.contains("250-SIZE 4096\r\n") && ehlo.contains("250-PIPELINING"),
        "{ehlo}"
    );
    assert!(
        !ehlo.contains("STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    // Out of sequence.
    s.cmd("RCPT TO:<ann@remailer.test>", "503 5.5.1 MAIL first")
        .await;
    s.cmd("DATA", "503 5.5.1").await;
    // A non-member learns nothing about which aliases exist: one answer for every name.
    s.cmd("MAIL FROM:<eve@outside.example>", "250 2.1.0").await;
    let unregistered = s.cmd("RCPT TO:<ann@remailer.test>", "550-5.7.1").await;
    assert!(
        unregistered.contains("https://remailer.test/register"),
        "{unregistered}"
    );
    s.cmd(
        "RCPT TO:<nobody@remailer.test>",
        "550-5.7.1 Your address is not registered",
    )
    .await;
    s.cmd("MAIL FROM:<eve@outside.example>", "503 5.5.1 Nested MAIL")
        .await;
    s.cmd("RSET", "250 2.0.0").await;
    // A member: unknown alias, open relay, then a message that is accepted.
    s.cmd("MAIL FROM:<joe@real.example>", "250 2.1.0").await;
    s.cmd("RCPT TO:<x@remailer.test>", "550 5.1.1 No such alias")
        .await;
    s.cmd(
        "RCPT TO:<ann@elsewhere.example>",
        "550 5.7.1 Relaying denied",
    )
    .await;
    s.cmd(
        "RCPT TO:<joe@remailer.test>",
        "550 5.7.1 That is your own alias",
    )
    .await;
    s.cmd("RCPT TO:<ann@remailer.test>", "250 2.1.5").await;
    s.cmd("DATA", "354 ").await;
    s.send(MESSAGE).await;
    s.expect("250 2.0.0 Queued as ").await;
    s.cmd("NOOP", "250 2.0.0").await;
    s.cmd("QUIT", "221 2.0.0 Bye").await;
    s.closed().await;
}

#[tokio::test]
async fn size_limits_at_mail_and_at_data() {
    let tmp = tempfile::tempdir().unwrap();
    let service = service(tmp.path()).await;
    let mut s = Session::start(service.intake()).await;
    s.cmd("EHLO client.example", "250-").await;
    s.cmd(
        "MAIL FROM:<joe@real.example> SIZE=5000",
        "552 5.3.4 Message too big (limit 4096 bytes)",
    )
    .await;
    s.cmd("MAIL FROM:<joe@real.example>", "250 2.1.0").await;
    s.cmd("RCPT TO:<ann@remailer.test>", "250 2.1.5").await;
    s.cmd("DATA", "354 ").await;
    let big = format!(
        "Subject: big\r\n\r\n{}.\r\n",
        format!("{}\r\n", "x".repeat(70)).repeat(70)
    );
    s.send(&big).await;
    s.expect("552 5.3.4").await;
    // The transaction is over; the session goes on.
    s.cmd("RCPT TO:<ann@remailer.test>", "503 5.5.1 MAIL first")
        .await;
    s.cmd("QUIT", "221").await;
    s.closed().await;
}

#[tokio::test]
async fn smuggling_a_bare_lf_before_the_dot_refuses_the_whole_message() {
    let tmp = tempfile::tempdir().unwrap();
    let service = service(tmp.path()).await;
    let mut s = Session::start(service.intake()).await;
    s.cmd("EHLO client.example", "250-").await;
    s.cmd("MAIL FROM:<joe@real.example>", "250 2.1.0").await;
    s.cmd("RCPT TO:<ann@remailer.test>", "250 2.1.5").await;
    s.cmd("DATA", "354 ").await;
    // `<LF>.<LF>` would end the data for a lax receiver, and the rest would run as commands.
    s.send(
        "Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<joe@real.example>\r\n\
         RCPT TO:<ann@remailer.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n",
    )
    .await;
    let refused = s
        .expect("550-5.6.0 Message refused: it contains a bare LF")
        .await;
    assert!(refused.contains("nothing of it was accepted"), "{refused}");
    // Nothing after the look-alike ran as a command: the next reply is to the next command.
    s.cmd("NOOP", "250 2.0.0 OK").await;
    s.cmd("QUIT", "221").await;
    s.closed().await;
}

#[tokio::test]
async fn bad_commands_and_what_is_not_offered() {
    let tmp = tempfile::tempdir().unwrap();
    let service = service(tmp.path()).await;
    let mut s = Session::start(service.intake()).await;
    s.cmd("MAIL FROM:<joe@real.example>", "503 5.5.1 Say EHLO first")
        .await;
    s.cmd("HELO client.example", "250 2.0.0 mx.remailer.test")
        .await;
    s.cmd("FROB", "500 5.5.1").await;
    s.cmd("STARTTLS", "502 5.5.1 STARTTLS not available").await;
    s.cmd("VRFY ann", "252 2.5.2").await;
    s.cmd("MAIL FROM:<jöe@real.example>", "553 5.6.7").await;
    s.cmd("BDAT 10 LAST", "502 5.5.1 BDAT is not supported")
        .await;
    s.send("0123456789").await;
    s.cmd("NOOP", "250 2.0.0").await;
    s.cmd("QUIT", "221").await;
    s.closed().await;
}

#[tokio::test]
async fn one_span_per_session_numbers_it_and_names_no_address() {
    let tmp = tempfile::tempdir().unwrap();
    let service = service(tmp.path()).await;
    let intake = service.intake();
    let log = logged(async move {
        let mut s = Session::start(intake).await;
        s.cmd("EHLO client.example", "250-").await;
        s.cmd("MAIL FROM:<eve@outside.example>", "250").await;
        s.cmd("RCPT TO:<ann@remailer.test>", "550-5.7.1").await;
        s.cmd("QUIT", "221").await;
        s.closed().await;
    })
    .await;
    let refused = log
        .lines()
        .find(|l| l.contains("refused unregistered sender"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(
        refused.contains("smtp{session="),
        "not in the session's span: {refused}"
    );
    for secret in ["192.0.2.77", "eve@", "outside.example", "ann@"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// A pipeline whose store is down: every decision is a local problem.
struct StoreDown;

impl Pipeline for StoreDown {
    fn mail<'a>(
        &'a self,
        _: std::net::IpAddr,
        _: &'a str,
        _: &'a str,
    ) -> Decision<'a, Result<(Sender, Option<SpfCheck>), Refusal>> {
        Box::pin(async { Ok((Sender::Null, None)) })
    }

    fn rcpt<'a>(&'a self, _: &'a Sender, _: &'a str) -> Decision<'a, Result<Recipient, Refusal>> {
        Box::pin(async { Err(Refusal::LocalProblem) })
    }

    fn data(&self, _: Transaction) -> Decision<'_, Result<Answer, Refusal>> {
        Box::pin(async { Err(Refusal::LocalProblem) })
    }
}

#[tokio::test]
async fn a_store_failure_is_a_temporary_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = remailer::intake::Settings::of(&config(tmp.path()));
    let intake = Arc::new(Intake::new(settings, Box::new(StoreDown), None));
    let mut s = Session::start(intake).await;
    s.cmd("EHLO client.example", "250-").await;
    s.cmd("MAIL FROM:<>", "250 2.1.0").await;
    s.cmd(
        "RCPT TO:<b+1@remailer.test>",
        "451 4.3.0 Temporary local problem",
    )
    .await;
    s.cmd("QUIT", "221").await;
    s.closed().await;
}

#[tokio::test]
async fn serve_runs_on_a_bound_listener_until_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let config = prepared(tmp.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let server = tokio::spawn(remailer::service::serve(listener, config, shutdown));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut s = Session::over(tcp, None).await;
    s.cmd("EHLO client.example", "250-mx.remailer.test").await;
    s.cmd("MAIL FROM:<joe@real.example>", "250 2.1.0").await;
    s.cmd("RCPT TO:<ann@remailer.test>", "250 2.1.5").await;
    s.cmd("DATA", "354 ").await;
    s.send(MESSAGE).await;
    s.expect("250 2.0.0 Queued as ").await;
    s.cmd("QUIT", "221 2.0.0").await;
    s.closed().await;
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(40), server)
        .await
        .expect("serve returns after shutdown");
    ended
        .expect("no panic")
        .expect("serve ends without an error");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
