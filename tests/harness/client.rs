//! A plain SMTP client for tests: sends lines, reads (multi-line) replies; can upgrade the
//! connection with STARTTLS ([`Client::starttls`]).

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Client {
    reader: BufReader<ReadHalf<Box<dyn Io>>>,
    writer: WriteHalf<Box<dyn Io>>,
}

/// A reply: its code and all its text lines joined by '\n'.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Client {
    /// Connects and reads the greeting (which must be 220).
    pub async fn connect(port: u16) -> Client {
        let mut c = Self::connect_raw(port).await;
        let greeting = c.read_reply().await;
        assert_eq!(greeting.code, 220, "greeting: {greeting:?}");
        c
    }

    /// Connects from a chosen loopback source address (e.g. 127.0.0.2), as another host would.
    pub async fn connect_from(port: u16, source: &str) -> Client {
        let mut c = Self::connect_raw_from(port, source).await;
        let greeting = c.read_reply().await;
        assert_eq!(greeting.code, 220, "greeting: {greeting:?}");
        c
    }

    /// Like [`Client::connect_from`], without reading the greeting.
    pub async fn connect_raw_from(port: u16, source: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("{source}:0").parse().unwrap())
            .expect("bind source address");
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        Self::over(Box::new(stream))
    }

    pub async fn connect_raw(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        Self::over(Box::new(stream))
    }

    fn over(stream: Box<dyn Io>) -> Client {
        let (r, w) = tokio::io::split(stream);
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// After a `220` to STARTTLS: runs the TLS handshake (bounded) and returns the client
    /// over TLS and the certificate chain the server presented. Panics if the server sent
    /// anything after its `220` in the clear.
    pub async fn starttls(
        self,
        connector: &TlsConnector,
    ) -> Result<(Client, Vec<CertificateDer<'static>>), std::io::Error> {
        assert!(
            self.reader.buffer().is_empty(),
            "the server sent more after 220 to STARTTLS: {:?}",
            String::from_utf8_lossy(self.reader.buffer())
        );
        let stream = self.reader.into_inner().unsplit(self.writer);
        let tls = tokio::time::timeout(
            Duration::from_secs(15),
            connector.connect(super::tls::server_name(), stream),
        )
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
        let chain = tls.get_ref().1.peer_certificates().unwrap_or(&[]).to_vec();
        Ok((Self::over(Box::new(tls)), chain))
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// Sends bytes; an error (the server closed the connection) is returned, not a panic.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// A reply, if one starts arriving within `wait` (None also when the server closed).
    pub async fn poll_reply(&mut self, wait: Duration) -> Option<Reply> {
        match tokio::time::timeout(wait, self.reader.fill_buf()).await {
            Ok(Ok(buf)) if !buf.is_empty() => self.try_read_reply().await,
            _ => None,
        }
    }

    /// Sends one command line and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    pub async fn read_reply(&mut self) -> Reply {
        self.try_read_reply().await.expect("a reply")
    }

    /// Reads one reply; None when the server closed the connection.
    pub async fn try_read_reply(&mut self) -> Option<Reply> {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                .await
                .expect("reply within 30 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            let line = line.trim_end();
            assert!(line.len() >= 3, "short reply line {line:?}");
            text.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(Reply {
                    code: line[..3].parse().expect("numeric code"),
                    text: text.join("\n"),
                });
            }
        }
    }

    /// EHLO, MAIL, RCPT…, DATA, message: returns the reply to the final dot (or the first
    /// refusal before it).
    pub async fn send_mail(&mut self, from: &str, rcpts: &[&str], data: &str) -> Reply {
        let r = self.cmd("EHLO client.real.example").await;
        assert_eq!(r.code, 250, "{r:?}");
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if r.code != 250 {
            return r;
        }
        let mut any = false;
        let mut last = None;
        for rcpt in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            any |= r.code == 250;
            if r.code != 250 {
                last = Some(r);
            }
        }
        if !any {
            self.cmd("RSET").await;
            return last.expect("a refusal");
        }
        let r = self.cmd("DATA").await;
        if r.code != 354 {
            return r;
        }
        self.send_raw(dot_stuff(data).as_bytes()).await;
        self.send_raw(b".\r\n").await;
        self.read_reply().await
    }
}

/// Dot-stuffs a message and makes sure it ends with CRLF.
pub fn dot_stuff(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 16);
    for line in data.split_inclusive('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}
