//! One delivery attempt over SMTP (mail-send's client): connect, greeting, EHLO, STARTTLS
//! when offered (required, with a verified certificate, for configured domains: [`super::tls`],
//! and for domains with an enforced MTA-STS policy: [`super::mta_sts`]), MAIL/RCPT/DATA. Connections that
//! delivered successfully are kept for a short while and reused for the same destination.
//! Failure texts carry reply codes only: a remote server's words may name the real address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::mta_sts::Rule;
use super::route::Target;
use super::tls::{why_unverified, Connectors};
use super::Failure;
use mail_send::SmtpClient;
use smtp_proto::{EhloResponse, EXT_PIPELINING, EXT_START_TLS};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open connection, after EHLO (and STARTTLS when it happened).
pub struct Conn {
    client: SmtpClient<Box<dyn Stream>>,
    /// The server offered PIPELINING: MAIL, RCPT and DATA go in one write.
    pipelining: bool,
}

/// An open connection and whether it runs over verified TLS (so may carry mail for a
/// `require_tls` domain).
pub struct Open {
    pub conn: Conn,
    pub verified: bool,
}

/// How every failure of a verified STARTTLS begins ([`Dialer::open`]).
const TLS_REQUIRED: &str = "TLS is required but ";

const IDLE_LIMIT: Duration = Duration::from_secs(15);

/// How a connection should be opened.
pub struct Dialer {
    pub helo: String,
    pub timeout: Duration,
    pub tls: Connectors,
}

impl Dialer {
    /// Connects and says EHLO; upgrades with STARTTLS when offered. `require_tls` turns a
    /// missing STARTTLS, a failed handshake or a certificate that does not verify for the
    /// host name into a temporary failure.
    pub async fn open(&self, target: &Target, require_tls: bool) -> Result<Open, Failure> {
        let (client, ehlo) = self.greet(target).await?;
        if !ehlo.has_capability(EXT_START_TLS) {
            if require_tls {
                return Err(Failure::Temporary(format!(
                    "{TLS_REQUIRED}the server does not offer STARTTLS"
                )));
            }
            return self.conn(Box::new(client.stream), &ehlo, false);
        }
        let connector = match require_tls {
            true => &self.tls.verified,
            false => &self.tls.opportunistic,
        };
        match client.start_tls(connector, &target.name).await {
            Ok(tls) => {
                let mut client: SmtpClient<Box<dyn Stream>> = SmtpClient {
                    stream: Box::new(tls.stream),
                    timeout: self.timeout,
                };
                let ehlo = client.ehlo(&self.helo).await.map_err(classify)?;
                self.conn(client.stream, &ehlo, require_tls)
            }
            Err(e) if require_tls => Err(Failure::Temporary(format!(
                "{TLS_REQUIRED}{}",
                why_unverified(&e)
            ))),
            Err(_) => {
                // Opportunistic TLS failed: start over in the clear.
                let (client, ehlo) = self.greet(target).await?;
                self.conn(Box::new(client.stream), &ehlo, false)
            }
        }
    }

    /// [`Dialer::open`] under a recipient domain's MTA-STS rule as well: `enforce` (like
    /// `require_tls`) needs verified TLS; `testing` tries verified TLS, and when that fails
    /// logs why and delivers over opportunistic TLS as for any domain.
    pub async fn open_for(
        &self,
        target: &Target,
        require_tls: bool,
        rule: &Rule,
    ) -> Result<Open, Failure> {
        if require_tls || !(rule.enforced() || rule.testing()) {
            return self.open(target, require_tls).await;
        }
        let verified = self.open(target, true).await;
        match verified {
            Err(Failure::Temporary(why)) if why.starts_with(TLS_REQUIRED) => {
                if rule.enforced() {
                    return Err(Failure::Temporary(format!(
                        "MTA-STS policy (enforce): {why}"
                    )));
                }
                rule.note_testing_failure(target, &why[TLS_REQUIRED.len()..]);
            }
            done => return done,
        }
        self.open(target, false).await
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
        verified: bool,
    ) -> Result<Open, Failure> {
        let client = SmtpClient {
            stream,
            timeout: self.timeout,
        };
        let conn = Conn {
            client,
            pipelining: ehlo.has_capability(EXT_PIPELINING),
        };
        Ok(Open { conn, verified })
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
    /// The most recently used idle connection to `dest`; with `need_verified`, only one over
    /// verified TLS (other connections stay in the pool for other deliveries).
    pub fn take(&self, dest: &str, need_verified: bool) -> Option<Open> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(dest)?;
        list.retain(|(since, _)| since.elapsed() < IDLE_LIMIT);
        let pos = list
            .iter()
            .rposition(|(_, open)| open.verified || !need_verified)?;
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

    fn open(verified: bool) -> Open {
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
            verified,
        }
    }

    #[tokio::test]
    async fn an_unverified_connection_is_never_taken_when_tls_is_required() {
        let pool = Pool::default();
        pool.put("relay", open(false), 5);
        assert!(pool.take("relay", true).is_none());
        pool.put("relay", open(true), 5);
        pool.put("relay", open(false), 5);
        assert!(pool.take("relay", true).expect("the verified one").verified);
        assert!(pool.take("relay", true).is_none());
        // Both unverified connections are still there for deliveries that do not need TLS.
        assert!(
            !pool
                .take("relay", false)
                .expect("an unverified one")
                .verified
        );
        assert!(
            !pool
                .take("relay", false)
                .expect("the other unverified one")
                .verified
        );
        assert!(pool.take("relay", false).is_none());
    }
}
