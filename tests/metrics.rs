//! The admin server's `/metrics` (Prometheus text) and `/healthz`, through the real binary:
//! scraped before and after known traffic (real SMTP over TCP, the real web server), the
//! counters must move by exactly that traffic; `admin.listen = ""` means nothing listens.

mod harness;
mod support;

use std::time::Duration;

use harness::{message, wait_for, Client, Service, Sink, SinkMode, WebClient};
use support::dns_server::TestDns;
use support::signing::{publish, signed, BAD_IP};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(20);

/// One scrape of `/metrics`.
struct Scrape(String);

impl Scrape {
    async fn of(svc: &Service) -> Scrape {
        let a = WebClient::new(svc.admin_port).get("/metrics").await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(
            a.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{a:?}"
        );
        Scrape(a.body)
    }

    /// The value of one series, written as rendered (`name{label="v",…}`); 0 when absent.
    fn get(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse().expect("a number"))
            })
            .unwrap_or(0.0)
    }
}

fn delta(before: &Scrape, after: &Scrape, series: &str) -> f64 {
    after.get(series) - before.get(series)
}

fn refused(reason: &str) -> String {
    format!("remailer_messages_refused_total{{reason=\"{reason}\"}}")
}

async fn setup(mode: SinkMode) -> (Service, Sink) {
    let sink = Sink::start(mode).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    (svc, sink)
}

#[tokio::test]
async fn counters_move_by_exactly_the_traffic_sent() {
    let (svc, sink) = setup(SinkMode::Accept).await;
    let before = Scrape::of(&svc).await;

    // Session 1: three messages Joe → Ann.
    let mut c = Client::connect(svc.smtp_port).await;
    for n in 0..3 {
        let subject = format!("m{n}");
        let r = c
            .send_mail(
                JOE,
                &["ann@remailer.test"],
                &message(JOE, "ann@remailer.test", &subject, "hi"),
            )
            .await;
        assert_eq!(r.code, 250, "{r:?}");
    }
    c.cmd("QUIT").await;
    // Session 2: two unknown aliases, one relay attempt, one unregistered sender, one too big.
    let mut c = Client::connect(svc.smtp_port).await;
    for rcpt in ["nosuch@remailer.test", "nobody@remailer.test"] {
        let r = c.send_mail(JOE, &[rcpt], "x").await;
        assert_eq!(r.code, 550, "{r:?}");
    }
    let r = c.send_mail(JOE, &["someone@elsewhere.example"], "x").await;
    assert_eq!(r.code, 550, "{r:?}");
    let r = c
        .send_mail("carol@outside.example", &["ann@remailer.test"], "x")
        .await;
    assert_eq!(r.code, 550, "{r:?}");
    let r = c.cmd("MAIL FROM:<joe@real.example> SIZE=1000000").await;
    assert_eq!(r.code, 552, "{r:?}");
    c.cmd("QUIT").await;

    let delivered = wait_for("three deliveries", T, || {
        let n = sink.delivered().len();
        (n >= 3).then_some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.delivered().len(), delivered, "nothing more arrives");

    // The web: two routes and an unmatched path; the token must not become a label.
    let web = WebClient::new(svc.web_port);
    assert_eq!(web.get("/").await.status, 200);
    assert_eq!(web.get("/").await.status, 200);
    let token = "ab".repeat(32);
    let confirm = web.get(&format!("/confirm/{token}")).await.status;
    assert_eq!(web.get("/no/such/page").await.status, 404);

    let after = Scrape::of(&svc).await;
    let d = |s: &str| delta(&before, &after, s);
    assert_eq!(d("remailer_smtp_sessions_total"), 2.0);
    assert_eq!(d("remailer_messages_accepted_total"), 3.0);
    assert_eq!(d(&refused("unknown_alias")), 2.0);
    assert_eq!(d(&refused("relay_attempt")), 1.0);
    assert_eq!(d(&refused("unregistered_sender")), 1.0);
    assert_eq!(d(&refused("size")), 1.0);
    assert_eq!(d(&refused("rate_limit")), 0.0);
    assert_eq!(
        d("remailer_deliveries_total{result=\"delivered\"}"),
        delivered as f64,
        "delivered count equals what the sink got"
    );
    assert_eq!(d("remailer_deliveries_total{result=\"deferred\"}"), 0.0);
    assert_eq!(d("remailer_delivery_latency_seconds_count"), 3.0);
    assert!(d("remailer_delivery_latency_seconds_sum") < 20.0);
    assert_eq!(
        d("remailer_spool_batch_size_sum"),
        3.0,
        "three messages spooled"
    );
    let syncs = d("remailer_spool_sync_seconds_count");
    assert!((1.0..=3.0).contains(&syncs), "{syncs}");
    assert_eq!(after.get("remailer_queue_length"), 0.0);
    assert_eq!(after.get("remailer_queue_oldest_age_seconds"), 0.0);
    assert_eq!(
        d("remailer_web_requests_total{route=\"/\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        d(&format!(
            "remailer_web_requests_total{{route=\"/confirm/{{token}}\",status=\"{confirm}\"}}"
        )),
        1.0
    );
    assert_eq!(
        d("remailer_web_requests_total{route=\"unmatched\",status=\"404\"}"),
        1.0
    );
    for secret in [
        token.as_str(),
        "joe",
        "real.example",
        "mail.example",
        "127.0.0.1",
        "elsewhere",
    ] {
        assert!(
            !after.0.contains(secret),
            "{secret} in the metrics:\n{}",
            after.0
        );
    }
    assert!(after
        .0
        .contains("# TYPE remailer_delivery_latency_seconds histogram"));

    let health = WebClient::new(svc.admin_port).get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn deferrals_failures_notices_bounces_and_the_queue_gauges() {
    let (svc, sink) = setup(SinkMode::Defer(1)).await;
    let before = Scrape::of(&svc).await;
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "once deferred", "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    // Deferred once (retried after a second): meanwhile the queue holds it.
    let waiting = Scrape::of(&svc).await;
    assert!(sink.delivered().is_empty(), "not yet delivered");
    assert_eq!(waiting.get("remailer_queue_length"), 1.0, "{}", waiting.0);
    assert!(waiting.get("remailer_queue_oldest_age_seconds") <= 2.0);
    let d = wait_for("the retried delivery", T, || {
        sink.delivered().into_iter().next()
    })
    .await;
    // A hard bounce for it comes back: one bounce of class hard, one notice to Joe.
    let r = c.send_mail("", &[&d.mail_from], &dsn(&d.mail_from)).await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("the bounce notice", T, || {
        (sink.delivered().len() >= 2).then_some(())
    })
    .await;
    // A refused delivery: the sink now refuses everything not from the null sender.
    sink.set_mode(SinkMode::Reject);
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "refused", "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("the failure notice", T, || {
        (sink.delivered().len() >= 3).then_some(())
    })
    .await;
    c.cmd("QUIT").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let after = Scrape::of(&svc).await;
    let d = |s: &str| delta(&before, &after, s);
    assert_eq!(d("remailer_deliveries_total{result=\"deferred\"}"), 1.0);
    assert_eq!(d("remailer_deliveries_total{result=\"failed\"}"), 1.0);
    assert_eq!(
        d("remailer_deliveries_total{result=\"delivered\"}"),
        sink.delivered().len() as f64,
        "the message and the two notices"
    );
    assert_eq!(
        d("remailer_notices_sent_total"),
        2.0,
        "bounce and failure notice"
    );
    assert_eq!(d("remailer_bounces_received_total{class=\"hard\"}"), 1.0);
    assert_eq!(d("remailer_messages_accepted_total"), 3.0);
    assert_eq!(after.get("remailer_queue_length"), 0.0);
}

fn dsn(to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.mail.example (Mail Delivery System)\r\nTo: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n<{ANN}>: host mx.mail.example said: 550 5.1.1 <{ANN}>: \
         Recipient address rejected: User unknown\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.mail.example\r\n\r\n\
         Final-Recipient: rfc822; {ANN}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{ANN}> User unknown\r\n\r\n--B--\r\n"
    )
}

#[tokio::test]
async fn authentication_failures_are_counted_by_mechanism() {
    let dns = TestDns::start().await;
    let _good = publish(&dns, "good.test", "-", Some("v=DMARC1; p=reject"));
    let evil = publish(&dns, "evil.test", "-", Some("v=DMARC1; p=reject"));
    let sink = Sink::start(SinkMode::Accept).await;
    let body = |from: &str| {
        format!(
            "From: <{from}>\r\nTo: ann@remailer.test\r\nSubject: auth\r\n\
             Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{}@client.test>\r\n\r\nhi\r\n",
            harness::rand_id()
        )
    };
    let mut counts = Vec::new();
    for mode in ["dmarc", "spf-or-dkim"] {
        let extra = format!(
            "policy.sender_auth = \"{mode}\"\ndns.nameservers = [\"{}\"]",
            dns.addr()
        );
        let svc = Service::start(sink.port, &extra).await;
        svc.add_alias("joe", "joe@good.test");
        svc.add_alias("ann", ANN);
        let before = Scrape::of(&svc).await;
        let unsigned = body("joe@good.test");
        let forged = String::from_utf8(signed(&evil, "evil.test", unsigned.as_bytes())).unwrap();
        for data in [unsigned, forged] {
            let mut c = Client::connect_from(svc.smtp_port, BAD_IP).await;
            let r = c
                .send_mail("joe@good.test", &["ann@remailer.test"], &data)
                .await;
            assert_eq!(r.code, 550, "{mode}: {r:?}");
            c.cmd("QUIT").await;
        }
        let after = Scrape::of(&svc).await;
        let d = |m: &str| delta(&before, &after, &refused(m));
        counts.push((mode, d("auth_spf"), d("auth_dkim"), d("auth_dmarc")));
    }
    assert_eq!(
        counts,
        vec![("dmarc", 0.0, 0.0, 2.0), ("spf-or-dkim", 1.0, 1.0, 0.0)]
    );
}

#[tokio::test]
async fn an_empty_admin_listen_means_nothing_listens() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "admin.listen = \"\"").await;
    // Logged before the SMTP and web listeners open, which `start` waited for.
    assert!(svc.log().contains("admin server off"), "{}", svc.log());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", svc.admin_port))
            .await
            .is_err(),
        "nothing on the admin port"
    );
    // The service itself runs.
    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("QUIT").await.code, 221);
}

#[tokio::test]
async fn a_web_limit_counts_as_a_rate_limit_refusal() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "web.one_way_per_client_per_hour = 0").await;
    let before = Scrape::of(&svc).await;
    let a = WebClient::new(svc.web_port)
        .submit(
            "/send",
            &[
                ("to", "eve@outside.example"),
                ("subject", "hello"),
                ("body", "a one-way message"),
            ],
        )
        .await;
    assert_eq!(a.status, 429, "{}", a.body);
    let after = Scrape::of(&svc).await;
    let d = |s: &str| delta(&before, &after, s);
    assert_eq!(d(&refused("rate_limit")), 1.0);
    assert_eq!(
        d("remailer_web_requests_total{route=\"/send\",status=\"429\"}"),
        1.0
    );
    assert_eq!(
        d("remailer_web_requests_total{route=\"/send\",status=\"200\"}"),
        1.0,
        "the form itself"
    );
}
