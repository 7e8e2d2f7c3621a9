//! One delivery attempt over SMTP (mail-send's client): connect, greeting, EHLO, STARTTLS
//! when offered (required for configured domains), MAIL/RCPT/DATA. Connections that
//! delivered successfully are kept for a short while and reused for the same destination.
//! Failure texts carry reply codes only: a remote server's words may name the real address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_send::SmtpClient;
use smtp_proto::{EhloResponse, EXT_PIPELINING, EXT_START_TLS};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::route::Target;
use super::Failure;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open connection, after EHLO (and STARTTLS when it happened).
pub struct Conn {
    client: SmtpClient<Box<dyn Stream>>,
    /// The server offered PIPELINING: MAIL, RCPT and DATA go in one write.
    pipelining: bool,
}

/// An open connection and whether it runs over TLS.
pub struct Open {
    pub conn: Conn,
    pub tls: bool,
}

const IDLE_LIMIT: Duration = Duration::from_secs(15);

/// How a connection should be opened.
pub struct Dialer {
    pub helo: String,
    pub timeout: Duration,
    pub tls: TlsConnector,
}

impl Dialer {
    /// Connects and says EHLO; upgrades with STARTTLS when offered. `require_tls` turns a
    /// missing or failed STARTTLS into a temporary failure.
    pub async fn open(&self, target: &Target, require_tls: bool) -> Result<Open, Failure> {
        let (client, ehlo) = self.greet(target).await?;
        if !ehlo.has_capability(EXT_START_TLS) {
            if require_tls {
                return Err(Failure::Temporary(
                    "TLS is required but the server does not offer STARTTLS".into(),
                ));
            }
            return self.conn(Box::new(client.stream), &ehlo, false);
        }
        match client.start_tls(&self.tls, &target.name).await {
            Ok(tls) => {
                let mut client: SmtpClient<Box<dyn Stream>> = SmtpClient {
                    stream: Box::new(tls.stream),
                    timeout: self.timeout,
                };
                let ehlo = client.ehlo(&self.helo).await.map_err(classify)?;
                self.conn(client.stream, &ehlo, true)
            }
            Err(_) if require_tls => Err(Failure::Temporary(
                "TLS is required but the handshake failed".into(),
            )),
            Err(_) => {
                // Opportunistic TLS failed: start over in the clear.
                let (client, ehlo) = self.greet(target).await?;
                self.conn(Box::new(client.stream), &ehlo, false)
            }
        }
    }

    /// Connects, reads the greeting and says EHLO.
    async fn greet(
        &self,
        target: &Target,
    ) -> Result<(SmtpClient<TcpStream>, EhloResponse<String>), Failure> {
        let mut client = SmtpClient::connect(target.addr, self.timeout)
            .await
            .map_err(temporary)?;
        let greeting = client.read().await.map_err(classify)?;
        if greeting.code >= 400 {
            return Err(classify(mail_send::Error::UnexpectedReply(greeting)));
        }
        let ehlo = client.ehlo(&self.helo).await.map_err(classify)?;
        Ok((client, ehlo))
    }

    fn conn(
        &self,
        stream: Box<dyn Stream>,
        ehlo: &EhloResponse<String>,
        tls: bool,
    ) -> Result<Open, Failure> {
        let client = SmtpClient {
            stream,
            timeout: self.timeout,
        };
        let conn = Conn {
            client,
            pipelining: ehlo.has_capability(EXT_PIPELINING),
        };
        Ok(Open { conn, tls })
    }
}

/// One transaction on an open connection: MAIL, RCPT and DATA (pipelined when offered),
/// then the message framed for DATA ([`crate::wire::frame`]: CRLF only, dot-stuffed) in
/// one write.
pub async fn send(
    conn: &mut Conn,
    mail_from: &str,
    rcpt: &str,
    message: &[u8],
) -> Result<(), Failure> {
    let commands = [
        format!("MAIL FROM:<{mail_from}>\r\n"),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".into(),
    ];
    let client = &mut conn.client;
    if conn.pipelining {
        let replies = client.cmds(&commands).await.map_err(classify)?;
        for (reply, want) in replies.into_iter().zip([2, 2, 3]) {
            if reply.code / 100 != want {
                return Err(classify(mail_send::Error::UnexpectedReply(reply)));
            }
        }
    } else {
        for (command, want) in commands.iter().zip([2, 2, 3]) {
            let reply = client.cmd(command.as_bytes()).await.map_err(classify)?;
            if reply.code / 100 != want {
                return Err(classify(mail_send::Error::UnexpectedReply(reply)));
            }
        }
    }
    let framed = crate::wire::frame(message);
    let reply = tokio::time::timeout(client.timeout, async {
        client.stream.write_all(&framed).await?;
        client.stream.flush().await?;
        client.read().await
    })
    .await
    .map_err(|_| Failure::Temporary("timed out sending the message".into()))?
    .map_err(classify)?;
    if reply.code / 100 != 2 {
        return Err(classify(mail_send::Error::UnexpectedReply(reply)));
    }
    Ok(())
}

fn temporary(e: mail_send::Error) -> Failure {
    Failure::Temporary(match e {
        mail_send::Error::Timeout => "connection timed out".into(),
        _ => "could not connect".into(),
    })
}

/// 5xx replies are permanent, everything else (4xx, I/O, timeouts) temporary.
fn classify(e: mail_send::Error) -> Failure {
    match e {
        mail_send::Error::UnexpectedReply(r) => {
            let [a, b, c] = r.esc;
            let what = format!("server replied {} {a}.{b}.{c}", r.code);
            if r.code >= 500 {
                Failure::Permanent(what)
            } else {
                Failure::Temporary(what)
            }
        }
        mail_send::Error::Timeout => Failure::Temporary("timed out waiting for the server".into()),
        _ => Failure::Temporary("connection failed during the SMTP dialogue".into()),
    }
}

/// Idle connections per destination, reused by later deliveries.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<(Instant, Open)>>>,
}

impl Pool {
    /// The most recently used idle connection to `dest`; with `need_tls`, only one that runs
    /// over TLS (a connection in the clear stays in the pool for other deliveries).
    pub fn take(&self, dest: &str, need_tls: bool) -> Option<Open> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(dest)?;
        list.retain(|(since, _)| since.elapsed() < IDLE_LIMIT);
        let pos = list.iter().rposition(|(_, open)| open.tls || !need_tls)?;
        Some(list.remove(pos).1)
    }

    pub fn put(&self, dest: &str, open: Open, max: usize) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(dest.to_string()).or_default();
            list.retain(|(since, _)| since.elapsed() < IDLE_LIMIT);
            if list.len() < max {
                list.push((Instant::now(), open));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(tls: bool) -> Open {
        let (stream, _) = tokio::io::duplex(64);
        let client = SmtpClient {
            stream: Box::new(stream) as Box<dyn Stream>,
            timeout: Duration::from_secs(1),
        };
        Open {
            conn: Conn {
                client,
                pipelining: false,
            },
            tls,
        }
    }

    #[tokio::test]
    async fn a_clear_connection_is_never_taken_when_tls_is_required() {
        let pool = Pool::default();
        pool.put("relay", open(false), 5);
        assert!(pool.take("relay", true).is_none());
        pool.put("relay", open(true), 5);
        pool.put("relay", open(false), 5);
        assert!(pool.take("relay", true).expect("the TLS one").tls);
        assert!(pool.take("relay", true).is_none());
        // Both clear connections are still there for deliveries that do not need TLS.
        assert!(!pool.take("relay", false).expect("a clear one").tls);
        assert!(!pool.take("relay", false).expect("the other clear one").tls);
        assert!(pool.take("relay", false).is_none());
    }
}
