//! Regression tests for what the fuzz targets (`fuzz/`) found, through the real binary over
//! real SMTP. Each input is also kept in the target's corpus, which `tests/fuzz_replay.rs`
//! replays.

mod harness;

use harness::{Client, Service, Sink, SinkMode};

/// `smtp_session` found: a recipient whose local part has a multi-byte character across its
/// second byte (`aé@…`) made the RCPT handler slice the string inside that character (looking
/// for `b+`) and panic, which killed the session without a reply. Each such recipient must
/// get a refusal and the session must go on.
#[tokio::test]
async fn a_non_ascii_recipient_local_part_is_answered_and_the_session_goes_on() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", "joe@real.example");
    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("EHLO client.real.example").await.code, 250);
    let r = c.cmd("MAIL FROM:<joe@real.example> SMTPUTF8").await;
    assert_eq!(r.code, 250, "{r:?}");
    for local in ["aé", "bé+x", "é", "日本", "b\u{fffd}"] {
        c.send_raw(format!("RCPT TO:<{local}@remailer.test>\r\n").as_bytes())
            .await;
        let r = c
            .try_read_reply()
            .await
            .unwrap_or_else(|| panic!("the session ended at RCPT TO:<{local}@…>"));
        assert!((500..600).contains(&r.code), "{local}: {r:?}");
        assert_eq!(c.cmd("NOOP").await.code, 250, "session alive after {local}");
    }
}
