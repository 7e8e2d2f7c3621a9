//! Inbound sender authentication against a real local DNS server: test domains publish SPF,
//! DKIM and DMARC records there, messages are DKIM-signed by those domains' keys with
//! mail-auth's signer, and the connecting IP is "authorised" (127.0.0.2) or not (127.0.0.66).

mod support;

use std::net::IpAddr;

use mail_auth::SpfResult;
use remailer::config::SenderAuth;
use remailer::sender_auth::{SenderAuthenticator, SpfCheck, Verdict};
use support::dns_server::TestDns;
use support::signing::{publish, publish_rsa, signed, BAD_IP, GOOD_IP};
const HELO: &str = "client.test";
const POLICIES: [SenderAuth; 2] = [SenderAuth::Dmarc, SenderAuth::SpfOrDkim];

fn message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Joe Real <{from}>\r\nTo: ann@remailer.test\r\nSubject: hello\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@client.test>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn authenticator(dns: &TestDns, policy: SenderAuth) -> SenderAuthenticator {
    SenderAuthenticator::new(&dns.dns_config(), policy, "mx.remailer.test").unwrap()
}

/// Runs both steps (SPF at MAIL FROM, then verify) like the SMTP session does.
async fn check(
    dns: &TestDns,
    policy: SenderAuth,
    from_ip: &str,
    mail_from: &str,
    raw: &[u8],
) -> (SpfCheck, Verdict) {
    let auth = authenticator(dns, policy).await;
    let spf = auth.check_spf(ip(from_ip), HELO, mail_from).await;
    let verdict = auth.verify(raw, ip(from_ip), HELO, mail_from, &spf).await;
    (spf, verdict)
}

/// The reason of a `Fail`, checked to be fit for an SMTP reply and free of the address.
fn reason(verdict: Verdict, address: &str) -> String {
    let Verdict::Fail { reason } = verdict else {
        panic!("expected Fail, got {verdict:?}");
    };
    assert!(!reason.contains(address), "address leaked into: {reason}");
    assert!(!reason.contains('@'), "an address in: {reason}");
    assert!(!reason.contains('\n') && !reason.contains('\r'));
    assert!(reason.contains("DKIM"), "no advice in: {reason}");
    reason
}

const REJECT: &str = "v=DMARC1; p=reject";

#[tokio::test]
async fn aligned_dkim_and_spf_pass() {
    let dns = TestDns::start().await;
    let key = publish(&dns, "good.test", "-", Some(REJECT));
    let raw = signed(&key, "good.test", &message("joe@good.test", "Hi Ann"));
    let (spf, v) = check(&dns, SenderAuth::Dmarc, GOOD_IP, "joe@good.test", &raw).await;
    assert_eq!(spf.result(), Some(SpfResult::Pass));
    assert_eq!(spf.domain(), Some("good.test"));
    assert_eq!(
        v,
        Verdict::Pass {
            method: "dmarc-dkim"
        }
    );
    let (_, v) = check(&dns, SenderAuth::SpfOrDkim, GOOD_IP, "joe@good.test", &raw).await;
    assert_eq!(v, Verdict::Pass { method: "dkim" });
}

#[tokio::test]
async fn rsa_signature_passes() {
    let dns = TestDns::start().await;
    let key = publish_rsa(&dns, "rsa.test", REJECT);
    let raw = signed(&key, "rsa.test", &message("joe@rsa.test", "Hi"));
    for policy in POLICIES {
        let (_, v) = check(&dns, policy, BAD_IP, "joe@rsa.test", &raw).await;
        assert!(matches!(v, Verdict::Pass { .. }), "{policy:?}: {v:?}");
    }
}

#[tokio::test]
async fn spf_alone_passes_from_an_authorised_ip() {
    let dns = TestDns::start().await;
    publish(&dns, "good.test", "-", Some(REJECT));
    let raw = message("joe@good.test", "unsigned");
    let (_, v) = check(&dns, SenderAuth::Dmarc, GOOD_IP, "joe@good.test", &raw).await;
    assert_eq!(
        v,
        Verdict::Pass {
            method: "dmarc-spf"
        }
    );
    let (_, v) = check(&dns, SenderAuth::SpfOrDkim, GOOD_IP, "joe@good.test", &raw).await;
    assert_eq!(v, Verdict::Pass { method: "spf" });
}

#[tokio::test]
async fn spf_fail_is_rescued_by_aligned_dkim() {
    let dns = TestDns::start().await;
    let key = publish(&dns, "good.test", "-", Some(REJECT));
    let raw = signed(
        &key,
        "good.test",
        &message("joe@good.test", "via a forwarder"),
    );
    for policy in POLICIES {
        let (spf, v) = check(&dns, policy, BAD_IP, "joe@good.test", &raw).await;
        assert_eq!(spf.result(), Some(SpfResult::Fail));
        assert!(matches!(v, Verdict::Pass { .. }), "{policy:?}: {v:?}");
    }
}

#[tokio::test]
async fn spf_fail_without_dkim_fails() {
    let dns = TestDns::start().await;
    publish(&dns, "good.test", "-", Some(REJECT));
    let raw = message("joe@good.test", "unsigned, from elsewhere");
    for policy in POLICIES {
        let (_, v) = check(&dns, policy, BAD_IP, "joe@good.test", &raw).await;
        let r = reason(v, "joe@good.test");
        assert!(r.contains("good.test") && r.contains("SPF fail"), "{r}");
        assert!(r.contains("no DKIM signature"), "{r}");
    }
}

#[tokio::test]
async fn softfail_is_named_in_the_reason() {
    let dns = TestDns::start().await;
    publish(&dns, "soft.test", "~", Some(REJECT));
    let raw = message("joe@soft.test", "unsigned");
    let (_, v) = check(&dns, SenderAuth::Dmarc, BAD_IP, "joe@soft.test", &raw).await;
    let r = reason(v, "joe@soft.test");
    assert!(
        r.starts_with("DMARC check failed for soft.test: SPF softfail, no DKIM signature"),
        "{r}"
    );
}

#[tokio::test]
async fn tampered_body_fails_dkim() {
    let dns = TestDns::start().await;
    let key = publish(&dns, "good.test", "-", Some(REJECT));
    let raw = signed(&key, "good.test", &message("joe@good.test", "pay 10 EUR"));
    let tampered = String::from_utf8(raw)
        .unwrap()
        .replace("10 EUR", "9999 EUR");
    for policy in POLICIES {
        let (_, v) = check(&dns, policy, BAD_IP, "joe@good.test", tampered.as_bytes()).await;
        let r = reason(v, "joe@good.test");
        assert!(
            r.contains("DKIM signature for good.test did not verify"),
            "{r}"
        );
        assert!(r.contains("body hash"), "{r}");
    }
    // From an authorised IP, SPF still carries it.
    let (_, v) = check(
        &dns,
        SenderAuth::Dmarc,
        GOOD_IP,
        "joe@good.test",
        tampered.as_bytes(),
    )
    .await;
    assert_eq!(
        v,
        Verdict::Pass {
            method: "dmarc-spf"
        }
    );
}

#[tokio::test]
async fn every_dmarc_policy_requires_a_pass() {
    let dns = TestDns::start().await;
    for p in ["reject", "quarantine", "none"] {
        let domain = format!("{p}.test");
        let key = publish(&dns, &domain, "-", Some(&format!("v=DMARC1; p={p}")));
        let from = format!("joe@{domain}");
        let bad = message(&from, "forged");
        let (_, v) = check(&dns, SenderAuth::Dmarc, BAD_IP, &from, &bad).await;
        let r = reason(v, &from);
        assert!(
            r.starts_with(&format!("DMARC check failed for {domain}")),
            "{r}"
        );
        let good = signed(&key, &domain, &message(&from, "real"));
        let (_, v) = check(&dns, SenderAuth::Dmarc, BAD_IP, &from, &good).await;
        assert_eq!(
            v,
            Verdict::Pass {
                method: "dmarc-dkim"
            },
            "p={p}"
        );
    }
}

#[tokio::test]
async fn no_dmarc_record_fails_dmarc_but_passes_spf_or_dkim() {
    let dns = TestDns::start().await;
    let key = publish(&dns, "nodmarc.test", "-", None);
    let raw = signed(&key, "nodmarc.test", &message("joe@nodmarc.test", "Hi"));
    let (_, v) = check(&dns, SenderAuth::Dmarc, GOOD_IP, "joe@nodmarc.test", &raw).await;
    let r = reason(v, "joe@nodmarc.test");
    assert!(
        r.contains("nodmarc.test") && r.contains("no DMARC record"),
        "{r}"
    );
    let (_, v) = check(
        &dns,
        SenderAuth::SpfOrDkim,
        GOOD_IP,
        "joe@nodmarc.test",
        &raw,
    )
    .await;
    assert_eq!(v, Verdict::Pass { method: "dkim" });
}

#[tokio::test]
async fn forged_from_with_another_domains_valid_signature_fails() {
    let dns = TestDns::start().await;
    publish(&dns, "victim.test", "-", Some(REJECT));
    let attacker = publish(&dns, "attacker.test", "-", Some(REJECT));
    // Valid signature and SPF pass, both for attacker.test; From claims victim.test.
    let raw = signed(
        &attacker,
        "attacker.test",
        &message("joe@victim.test", "I am Joe"),
    );
    for policy in POLICIES {
        let (spf, v) = check(&dns, policy, GOOD_IP, "evil@attacker.test", &raw).await;
        assert_eq!(spf.result(), Some(SpfResult::Pass));
        let r = reason(v, "joe@victim.test");
        assert!(r.contains("victim.test"), "{r}");
        assert!(r.contains("valid only for attacker.test"), "{r}");
        assert!(r.contains("not the From domain"), "{r}");
    }
}

#[tokio::test]
async fn subdomain_of_the_signing_domain_aligns_relaxed() {
    let dns = TestDns::start().await;
    let key = publish(&dns, "org.test", "-", Some("v=DMARC1; p=reject; adkim=r"));
    let raw = signed(&key, "org.test", &message("joe@news.org.test", "Hi"));
    for policy in POLICIES {
        let (_, v) = check(&dns, policy, BAD_IP, "joe@news.org.test", &raw).await;
        assert!(matches!(v, Verdict::Pass { .. }), "{policy:?}: {v:?}");
    }
}

#[tokio::test]
async fn strict_dkim_alignment_is_honoured_under_dmarc() {
    let dns = TestDns::start().await;
    let key = publish(
        &dns,
        "strict.test",
        "-",
        Some("v=DMARC1; p=reject; adkim=s"),
    );
    let raw = signed(&key, "strict.test", &message("joe@news.strict.test", "Hi"));
    let (_, v) = check(
        &dns,
        SenderAuth::Dmarc,
        BAD_IP,
        "joe@news.strict.test",
        &raw,
    )
    .await;
    reason(v, "joe@news.strict.test");
}

#[tokio::test]
async fn message_without_from_fails() {
    let dns = TestDns::start().await;
    publish(&dns, "good.test", "-", Some(REJECT));
    let raw = b"To: ann@remailer.test\r\nSubject: x\r\n\r\nbody\r\n";
    for policy in POLICIES {
        let (_, v) = check(&dns, policy, GOOD_IP, "joe@good.test", raw).await;
        let Verdict::Fail { reason } = v else {
            panic!("{v:?}")
        };
        assert!(reason.contains("no valid From address"), "{reason}");
    }
}

#[tokio::test]
async fn dns_servfail_is_a_temporary_failure() {
    let dns = TestDns::start().await;
    dns.add_servfail("broken.test");
    dns.add_servfail("_dmarc.broken.test");
    let raw = message("joe@broken.test", "Hi");
    for policy in POLICIES {
        let (spf, v) = check(&dns, policy, GOOD_IP, "joe@broken.test", &raw).await;
        assert_eq!(spf.result(), Some(SpfResult::TempError));
        let Verdict::TempFail { reason } = v else {
            panic!("{policy:?}: {v:?}")
        };
        assert!(
            reason.contains("broken.test") && !reason.contains('@'),
            "{reason}"
        );
    }
}

/// Cost of one inbound check (SPF at MAIL FROM + DKIM + DMARC after DATA) with the resolver's
/// cache warm, against the local DNS server. Run in release mode:
/// `cargo test --release --test sender_auth -- --ignored --nocapture verify_cost`
#[tokio::test]
#[ignore]
async fn verify_cost() {
    let dns = TestDns::start().await;
    let ed = publish(&dns, "good.test", "-", Some(REJECT));
    let rsa = publish_rsa(&dns, "rsa.test", REJECT);
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(64);
    let auth = authenticator(&dns, SenderAuth::Dmarc).await;
    for (key, domain) in [(ed, "good.test"), (rsa, "rsa.test")] {
        let from = format!("joe@{domain}");
        let raw = signed(&key, domain, &message(&from, &body));
        let n = 1000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let spf = auth.check_spf(ip(GOOD_IP), HELO, &from).await;
            let v = auth.verify(&raw, ip(GOOD_IP), HELO, &from, &spf).await;
            assert_eq!(
                v,
                Verdict::Pass {
                    method: "dmarc-dkim"
                }
            );
        }
        let per = start.elapsed() / n;
        println!(
            "verify ({domain}, {} bytes, SPF+DKIM+DMARC, warm cache): {per:?} per message",
            raw.len()
        );
    }
}
