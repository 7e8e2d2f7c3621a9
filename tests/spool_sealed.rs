//! Nothing in the spool in clear, against the real binary: a member's message refused by its
//! destination makes a notice to the sender (its `To:` is the member's real address), a
//! second member's message is deferred; while both wait in the spool, no file under
//! DATA_DIR/spool holds a real address, its domain, a subject or a message text.

mod harness;
mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use harness::{message, wait_for, Client, Service, Sink, SinkMode};
use support::dns_server::TestDns;

const JOE: &str = "joe@real.example";
const T: Duration = Duration::from_secs(20);

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test]
async fn a_notice_and_a_member_message_in_the_spool_show_no_address_domain_or_text() {
    let dns = TestDns::start().await;
    // ann's provider refuses (a notice to joe follows); joe's and pia's mail servers do not
    // answer (127.0.0.2: nothing listens), so the notice and pia's message stay queued.
    dns.add_mx("mail.example", 10, "mx.mail.example");
    dns.add_a("mx.mail.example", Ipv4Addr::new(127, 0, 0, 1));
    for (domain, mx) in [
        ("real.example", "mx.real.example"),
        ("far.example", "mx.far.example"),
    ] {
        dns.add_mx(domain, 10, mx);
        dns.add_a(mx, Ipv4Addr::new(127, 0, 0, 2));
    }
    let sink = Sink::start(SinkMode::Reject).await;
    let extra = format!(
        "dns.nameservers = [\"{}\"]\ndelivery.mx_port = {}\ndelivery.relay = \"\"\n\
         delivery.retry_base = 60\n",
        dns.addr(),
        sink.port
    );
    let svc = Service::start(0, &extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", "ann@mail.example");
    svc.add_alias("pia", "pia@far.example");
    let mut c = Client::connect(svc.smtp_port).await;
    for (to, subject, body) in [
        (
            "ann@remailer.test",
            "Lunch plans",
            "Meet at the harbour cafe.",
        ),
        (
            "pia@remailer.test",
            "Quarterly figures",
            "Sixty-two thousand parsnips.",
        ),
    ] {
        let r = c
            .send_mail(JOE, &[to], &message(JOE, to, subject, body))
            .await;
        assert_eq!(r.code, 250, "{r:?}");
    }
    c.cmd("QUIT").await;
    wait_for("the refusal, then two deferrals", T, || {
        let log = svc.log();
        (log.contains("delivery failed permanently") && log.matches("deferred").count() >= 2)
            .then_some(())
    })
    .await;

    let mut all = Vec::new();
    files(&svc.dir, &mut all);
    all.retain(|p| p.components().any(|c| c.as_os_str() == "spool"));
    let logs: Vec<_> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    let bytes: usize = logs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len() as usize)
        .sum();
    assert!(
        bytes > 1000,
        "the notice and pia's message are in the spool: {all:?}"
    );
    let secrets = [
        "joe@real.example",
        "real.example",
        "ann@mail.example",
        "mail.example",
        "pia@far.example",
        "far.example",
        "Lunch plans",
        "harbour cafe",
        "Quarterly figures",
        "parsnips",
    ];
    for path in &all {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).to_lowercase();
        for s in secrets {
            assert!(
                !text.contains(&s.to_lowercase()),
                "{s:?} in clear in {}",
                path.display()
            );
        }
    }
}
