//! Durability: under concurrent load, kill -9 the service, restart it, and prove that every
//! message that got a 250 is delivered (at least once). Bounded: 8 clients × at most 150
//! messages, killed after the first 200 acceptances or 20 s.

mod harness;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{message, wait_for, Client, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_kill_9() {
    let sink = Sink::start(SinkMode::Accept).await;
    let mut svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);

    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (accepted, count, stop, port) =
            (accepted.clone(), count.clone(), stop.clone(), svc.smtp_port);
        clients.push(tokio::spawn(async move {
            let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            drop(stream);
            let mut client = Client::connect(port).await;
            client.cmd("EHLO load.example").await;
            for n in 0..150 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let subject = format!("crash-{c}-{n}");
                let data = message(JOE, "ann@remailer.test", &subject, "durable?");
                let reply = tokio::time::timeout(Duration::from_secs(5), async {
                    client
                        .send_raw(
                            format!("MAIL FROM:<{JOE}>\r\nRCPT TO:<ann@remailer.test>\r\nDATA\r\n")
                                .as_bytes(),
                        )
                        .await;
                    let codes = [
                        client.try_read_reply().await?,
                        client.try_read_reply().await?,
                        client.try_read_reply().await?,
                    ];
                    if codes.iter().map(|r| r.code).collect::<Vec<_>>() != [250, 250, 354] {
                        return None;
                    }
                    client
                        .send_raw(harness::client::dot_stuff(&data).as_bytes())
                        .await;
                    client.send_raw(b".\r\n").await;
                    client.try_read_reply().await
                })
                .await;
                match reply {
                    Ok(Some(r)) if r.code == 250 => {
                        accepted.lock().unwrap().insert(subject);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return, // the service died mid-transaction: this one was not acknowledged
                }
            }
        }));
    }
    wait_for("200 acceptances", Duration::from_secs(20), || {
        (count.load(Ordering::Relaxed) >= 200).then_some(())
    })
    .await;
    svc.kill9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let acked: HashSet<String> = accepted.lock().unwrap().clone();
    assert!(acked.len() >= 200, "load ran: {}", acked.len());

    svc.spawn().await;
    wait_for(
        "every acknowledged message delivered",
        Duration::from_secs(60),
        || {
            let got: HashSet<String> = sink
                .delivered()
                .iter()
                .filter_map(|d| d.header("Subject"))
                .collect();
            acked.is_subset(&got).then_some(())
        },
    )
    .await;
}
