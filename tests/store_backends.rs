//! The same store tests on both backends (real SQLite in a temp dir, real PostgreSQL on a
//! throw-away cluster), so neither can drift: every case is one `async fn(url)`, and
//! `both!` makes a `sqlite` and a `postgres` test of it.

mod support;

use std::sync::Arc;

use remailer::address::AliasName;
use remailer::store::{
    self, AliasRecord, AliasState, BounceReport, BounceTally, NameStatus, PendingKind,
    PendingRecord, SendCounter, SendLogEntry, SendOutcome, Store, StoreError, StsPolicyRecord,
};

/// Keeps the SQLite temp dir alive for the test's length.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    Backend {
        store: store::open(&url).await.unwrap(),
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let url = support::postgres::database();
    Backend {
        store: store::open(&url).await.unwrap(),
        _dir: None,
    }
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::sqlite().await.store).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::postgres().await.store).await })*
        }
    };
}

both!(
    aliases_insert_find_and_refuse_duplicates,
    racing_registrations_of_one_alias_have_one_winner,
    concurrent_hard_bounces_are_all_counted_and_pause_once,
    reactivation_stops_earlier_bounces_counting,
    thread_links_expire_and_go_with_their_alias,
    pending_links_are_single_use_and_hold_their_name,
    opt_outs_send_counters_and_mail_counts,
    send_log_records_and_filters,
    expired_aliases_are_retired_and_named_so,
    key_fingerprint_is_recorded_once,
    mta_sts_policies_are_replaced_and_expire,
    pgp_keys_are_stored_with_aliases_and_pending_registrations,
);

fn name(s: &str) -> AliasName {
    AliasName::parse(s).unwrap()
}

fn alias(n: &str, hash: u8) -> AliasRecord {
    AliasRecord {
        id: 0,
        name: name(n),
        real_hash: vec![hash; 32],
        real_sealed: vec![hash, 1, 2, 3],
        display_name: Some("Ann".into()),
        state: AliasState::Active,
        created_at: 1_700_000_000,
        expires_at: None,
        pgp_sealed: None,
    }
}

async fn aliases_insert_find_and_refuse_duplicates(s: Arc<dyn Store>) {
    s.insert_alias(&alias("ann", 1)).await.unwrap();
    s.insert_alias(&alias("bob", 2)).await.unwrap();
    let ann = s.alias_by_name(&name("ann")).await.unwrap().unwrap();
    assert_eq!(ann.real_sealed, vec![1, 1, 2, 3]);
    assert_eq!(ann.display_name.as_deref(), Some("Ann"));
    assert_eq!(
        s.alias_by_id(ann.id).await.unwrap().unwrap().name.as_str(),
        "ann"
    );
    assert_eq!(
        s.alias_by_hash(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .name
            .as_str(),
        "bob"
    );
    assert!(s.alias_by_name(&name("carl")).await.unwrap().is_none());
    assert!(matches!(
        s.insert_alias(&alias("ann", 3)).await,
        Err(StoreError::AliasTaken)
    ));
    assert!(matches!(
        s.insert_alias(&alias("dora", 1)).await,
        Err(StoreError::AddressTaken)
    ));
    let names: Vec<String> = s
        .list_aliases()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name.to_string())
        .collect();
    assert_eq!(names, ["ann", "bob"]);
    assert_eq!(
        s.name_status(&name("ann"), 0).await.unwrap(),
        NameStatus::Taken
    );
    // Removed: never given out again, and its id is not reused.
    assert!(s.retire_alias(&name("ann"), 5).await.unwrap());
    assert!(!s.retire_alias(&name("ann"), 5).await.unwrap());
    assert_eq!(
        s.name_status(&name("ann"), 0).await.unwrap(),
        NameStatus::Removed
    );
    assert!(matches!(
        s.insert_alias(&alias("ann", 4)).await,
        Err(StoreError::AliasRetired)
    ));
    s.insert_alias(&alias("erin", 5)).await.unwrap();
    let erin = s.alias_by_name(&name("erin")).await.unwrap().unwrap();
    assert!(erin.id > ann.id);
    assert!(s.holds_sealed_data().await.unwrap());
}

async fn racing_registrations_of_one_alias_have_one_winner(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.insert_alias(&alias("race", 10 + i)).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::AliasTaken) => {}
            Err(e) => panic!("a loser got {e:?}, not AliasTaken"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.list_aliases().await.unwrap().len(), 1);
}

fn bounce(alias_id: i64, token: u16, day: i64, limit: i64) -> BounceReport {
    let mut token_hash = [0u8; 32];
    token_hash[..2].copy_from_slice(&token.to_be_bytes());
    BounceReport {
        token_hash,
        alias_id,
        day,
        hard: true,
        limit,
        min_days: 1,
    }
}

async fn concurrent_hard_bounces_are_all_counted_and_pause_once(s: Arc<dyn Store>) {
    s.insert_alias(&alias("bouncy", 7)).await.unwrap();
    let id = s.alias_by_name(&name("bouncy")).await.unwrap().unwrap().id;
    // 40 distinct reports (each sent twice) at once, pause at 20.
    let tasks: Vec<_> = (0..80u16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.record_bounce(&bounce(id, i % 40, 20_000, 20)).await })
        })
        .collect();
    let (mut repeated, mut counted, mut paused, mut max) = (0, 0, 0, 0);
    for t in tasks {
        match t.await.unwrap().unwrap() {
            BounceTally::Repeated => repeated += 1,
            BounceTally::Counted { messages, .. } => {
                counted += 1;
                max = max.max(messages)
            }
            BounceTally::Paused { messages, .. } => {
                paused += 1;
                assert_eq!(messages, 20, "the pause comes at the limit");
            }
        }
    }
    assert_eq!((repeated, counted + paused, paused), (40, 40, 1));
    assert_eq!(max, 40, "no lost update: the last report sees every one");
    let state = s.alias_by_id(id).await.unwrap().unwrap().state;
    assert_eq!(state, AliasState::Paused);
}

async fn reactivation_stops_earlier_bounces_counting(s: Arc<dyn Store>) {
    s.insert_alias(&alias("re", 8)).await.unwrap();
    let id = s.alias_by_name(&name("re")).await.unwrap().unwrap().id;
    assert!(matches!(
        s.record_bounce(&bounce(id, 1, 20_000, 2)).await.unwrap(),
        BounceTally::Counted { messages: 1, .. }
    ));
    assert!(matches!(
        s.record_bounce(&bounce(id, 2, 20_001, 2)).await.unwrap(),
        BounceTally::Paused {
            messages: 2,
            days: 2
        }
    ));
    assert!(s
        .set_alias_state(&name("re"), AliasState::Active)
        .await
        .unwrap());
    assert_eq!(
        s.record_bounce(&bounce(id, 2, 20_001, 2)).await.unwrap(),
        BounceTally::Repeated
    );
    assert!(matches!(
        s.record_bounce(&bounce(id, 3, 20_002, 2)).await.unwrap(),
        BounceTally::Counted { messages: 1, .. }
    ));
    assert_eq!(s.purge_bounces(20_002).await.unwrap(), 2);
}

async fn thread_links_expire_and_go_with_their_alias(s: Arc<dyn Store>) {
    s.insert_alias(&alias("th", 9)).await.unwrap();
    let id = s.alias_by_name(&name("th")).await.unwrap().unwrap().id;
    s.put_threads(&[
        ("<a@x>".into(), vec![1], 100, id),
        ("<b@x>".into(), vec![2], 200, 0),
    ])
    .await
    .unwrap();
    // Replacing a link keeps one row with the new content.
    s.put_threads(&[("<b@x>".into(), vec![3], 300, 0)])
        .await
        .unwrap();
    assert_eq!(s.thread_original("<a@x>", 50).await.unwrap(), Some(vec![1]));
    assert_eq!(s.thread_original("<a@x>", 100).await.unwrap(), None);
    assert_eq!(
        s.thread_original("<b@x>", 250).await.unwrap(),
        Some(vec![3])
    );
    assert!(s.retire_alias(&name("th"), 1).await.unwrap());
    assert_eq!(s.thread_original("<a@x>", 50).await.unwrap(), None);
    assert_eq!(s.purge_threads(1000).await.unwrap(), 1);
}

fn pending(token: u8, kind: PendingKind, alias: &str) -> PendingRecord {
    PendingRecord {
        token_hash: vec![token; 32],
        kind,
        alias: name(alias),
        real_hash: vec![token; 32],
        real_sealed: vec![token],
        display_name: None,
        expires_at: 1000,
        lifetime: Some(3600),
        pgp_sealed: None,
    }
}

async fn pgp_keys_are_stored_with_aliases_and_pending_registrations(s: Arc<dyn Store>) {
    let mut keyed = alias("kim", 7);
    keyed.pgp_sealed = Some(vec![9; 40]);
    s.insert_alias(&keyed).await.unwrap();
    s.insert_alias(&alias("lou", 8)).await.unwrap();
    let got = |n: &'static str| {
        let s = s.clone();
        async move { s.alias_by_name(&name(n)).await.unwrap().unwrap().pgp_sealed }
    };
    assert_eq!(got("kim").await, Some(vec![9; 40]));
    assert_eq!(got("lou").await, None);
    assert!(s.set_alias_key(&name("lou"), Some(&[5; 8])).await.unwrap());
    assert_eq!(got("lou").await, Some(vec![5; 8]));
    assert!(s.set_alias_key(&name("kim"), None).await.unwrap());
    assert_eq!(got("kim").await, None);
    assert!(!s.set_alias_key(&name("zed"), Some(&[1])).await.unwrap());
    let listed = s.list_aliases().await.unwrap();
    assert_eq!(listed.iter().filter(|a| a.pgp_sealed.is_some()).count(), 1);

    let mut rec = pending(40, PendingKind::Register, "keyed");
    rec.pgp_sealed = Some(vec![4; 16]);
    s.insert_pending(&rec, 0).await.unwrap();
    let peeked = s.pending(&[40; 32], 0).await.unwrap().unwrap();
    assert_eq!(peeked.pgp_sealed, Some(vec![4; 16]));
    let taken = s.take_pending(&[40; 32], 0).await.unwrap().unwrap();
    assert_eq!(taken.pgp_sealed, Some(vec![4; 16]));
}

async fn pending_links_are_single_use_and_hold_their_name(s: Arc<dyn Store>) {
    s.insert_pending(&pending(1, PendingKind::Register, "pen"), 0)
        .await
        .unwrap();
    assert!(matches!(
        s.insert_pending(&pending(2, PendingKind::Register, "pen"), 0)
            .await,
        Err(StoreError::AliasTaken)
    ));
    // A removal link for the same name is another kind: allowed.
    s.insert_pending(&pending(3, PendingKind::Remove, "pen"), 0)
        .await
        .unwrap();
    assert_eq!(
        s.name_status(&name("pen"), 10).await.unwrap(),
        NameStatus::Pending
    );
    assert_eq!(
        s.name_status(&name("pen"), 1000).await.unwrap(),
        NameStatus::Free
    );
    let seen = s.pending(&[1; 32], 10).await.unwrap().unwrap();
    assert_eq!(
        (seen.kind, seen.lifetime),
        (PendingKind::Register, Some(3600))
    );
    assert!(s.pending(&[1; 32], 1000).await.unwrap().is_none());
    assert!(s.take_pending(&[1; 32], 10).await.unwrap().is_some());
    assert!(s.take_pending(&[1; 32], 10).await.unwrap().is_none());
    // An expired registration no longer holds the name.
    s.insert_pending(&pending(4, PendingKind::Register, "pen2"), 0)
        .await
        .unwrap();
    s.insert_pending(&pending(5, PendingKind::Register, "pen2"), 1000)
        .await
        .unwrap();
    assert_eq!(s.purge_web(1000).await.unwrap(), 2);
}

async fn opt_outs_send_counters_and_mail_counts(s: Arc<dyn Store>) {
    assert!(s.add_opt_out(&[1; 32], 0).await.unwrap());
    assert!(!s.add_opt_out(&[1; 32], 0).await.unwrap());
    assert!(s.is_opted_out(&[1; 32]).await.unwrap());
    assert_eq!(s.count_opt_outs().await.unwrap(), 1);
    assert!(s.remove_opt_out(&[1; 32]).await.unwrap());
    assert!(!s.is_opted_out(&[1; 32]).await.unwrap());

    let counter = |kind, limit| SendCounter {
        kind,
        key: vec![7],
        period: 1,
        limit,
        expires_at: 100,
    };
    let pair = [counter("a", 3), counter("b", 1)];
    assert_eq!(s.take_sends(&pair).await.unwrap(), None);
    // "b" is spent: nothing is counted, not even "a".
    assert_eq!(s.take_sends(&pair).await.unwrap(), Some(1));
    assert_eq!(s.take_sends(&[counter("a", 3)]).await.unwrap(), None);
    assert_eq!(s.take_sends(&[counter("a", 3)]).await.unwrap(), None);
    assert_eq!(s.take_sends(&[counter("a", 3)]).await.unwrap(), Some(0));
    assert_eq!(s.take_sends(&[counter("z", 0)]).await.unwrap(), Some(0));
    assert_eq!(s.purge_send_counts(100).await.unwrap(), 2);

    assert_eq!(s.count_mail(&[9], 50).await.unwrap(), 1);
    assert_eq!(s.count_mail(&[9], 50).await.unwrap(), 2);
    assert_eq!(s.purge_web(50).await.unwrap(), 1);
}

async fn send_log_records_and_filters(s: Arc<dyn Store>) {
    let entry = |q: &str, at, from: &str, to: &str| SendLogEntry {
        at,
        queue_id: q.into(),
        sender_alias: from.into(),
        recipient_alias: to.into(),
        size: 10,
        outcome: SendOutcome::Queued,
    };
    s.log_sends(&[entry("q1", 10, "ann", "bob"), entry("q2", 20, "bob", "cy")])
        .await
        .unwrap();
    assert!(s
        .set_send_outcome("q1", SendOutcome::Delivered)
        .await
        .unwrap());
    assert!(!s
        .set_send_outcome("nope", SendOutcome::Failed)
        .await
        .unwrap());
    let all = s.send_log(None, 0, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].outcome, SendOutcome::Delivered);
    let ann = s.send_log(Some("ann"), 0, 10).await.unwrap();
    assert_eq!(
        ann,
        vec![{
            let mut e = entry("q1", 10, "ann", "bob");
            e.outcome = SendOutcome::Delivered;
            e
        }]
    );
    assert_eq!(s.send_log(Some("bob"), 15, 10).await.unwrap().len(), 1);
    assert_eq!(s.send_log(None, 0, 1).await.unwrap().len(), 1);
    assert_eq!(s.purge_send_log(15).await.unwrap(), 1);
}

async fn expired_aliases_are_retired_and_named_so(s: Arc<dyn Store>) {
    let mut a = alias("short", 11);
    a.expires_at = Some(100);
    s.insert_alias(&a).await.unwrap();
    s.insert_alias(&alias("long", 12)).await.unwrap();
    assert!(s.retire_expired_aliases(99).await.unwrap().is_empty());
    let gone = s.retire_expired_aliases(100).await.unwrap();
    assert_eq!(gone, vec![name("short")]);
    assert!(s.name_expired(&name("short")).await.unwrap());
    assert!(!s.name_expired(&name("long")).await.unwrap());
    assert!(s.retire_alias(&name("long"), 1).await.unwrap());
    assert!(!s.name_expired(&name("long")).await.unwrap());
}

async fn key_fingerprint_is_recorded_once(s: Arc<dyn Store>) {
    assert!(!s.holds_sealed_data().await.unwrap());
    assert_eq!(s.key_fingerprint().await.unwrap(), None);
    s.set_key_fingerprint(&[1; 32], 5).await.unwrap();
    s.set_key_fingerprint(&[2; 32], 6).await.unwrap();
    assert_eq!(s.key_fingerprint().await.unwrap(), Some(vec![1; 32]));
}

async fn mta_sts_policies_are_replaced_and_expire(s: Arc<dyn Store>) {
    let rec = |hash: u8, sealed: &[u8], expires_at: i64| StsPolicyRecord {
        domain_hash: vec![hash; 32],
        sealed: sealed.to_vec(),
        expires_at,
    };
    assert!(!s.holds_sealed_data().await.unwrap());
    s.put_mta_sts_policy(&rec(1, b"first", 100), 10)
        .await
        .unwrap();
    assert!(
        s.holds_sealed_data().await.unwrap(),
        "a policy is sealed data"
    );
    s.put_mta_sts_policy(&rec(2, b"other", 50), 10)
        .await
        .unwrap();
    assert_eq!(
        s.mta_sts_policy(&[1; 32], 10).await.unwrap(),
        Some(rec(1, b"first", 100))
    );
    s.put_mta_sts_policy(&rec(1, b"second", 200), 20)
        .await
        .unwrap();
    assert_eq!(
        s.mta_sts_policy(&[1; 32], 20).await.unwrap(),
        Some(rec(1, b"second", 200)),
        "a new fetch replaces the row"
    );
    assert_eq!(s.mta_sts_policy(&[3; 32], 20).await.unwrap(), None);
    assert_eq!(
        s.mta_sts_policy(&[2; 32], 50).await.unwrap(),
        None,
        "expired at its expires_at"
    );
    assert!(s.mta_sts_policy(&[2; 32], 49).await.unwrap().is_some());
    // The next store deletes every expired row.
    s.put_mta_sts_policy(&rec(4, b"x", 300), 60).await.unwrap();
    assert_eq!(s.mta_sts_policy(&[2; 32], 0).await.unwrap(), None);
    assert!(s.mta_sts_policy(&[1; 32], 0).await.unwrap().is_some());
}

// --- PostgreSQL only: the server going away and coming back ---

#[tokio::test]
async fn postgres_connection_failure_at_start_names_host_and_port_not_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://remailer:s3cret-pw@127.0.0.1:{port}/remailer");
    let err = match store::open(&url).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("127.0.0.1:{port}/remailer")), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.contains("PostgreSQL"), "{err}");
}

#[tokio::test]
async fn postgres_open_existing_refuses_a_database_never_set_up() {
    let url = support::postgres::database();
    let err = match store::open_existing(&url).await {
        Ok(_) => panic!("opened an empty database as a store"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("has no remailer tables yet"), "{err}");
    // After `open` (what serve does) it opens.
    store::open(&url).await.unwrap().close().await;
    store::open_existing(&url).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_going_away_is_temporary_and_recovers_without_reopening() {
    let cluster = support::postgres::Cluster::start();
    let s = store::open(&cluster.database()).await.unwrap();
    s.insert_alias(&alias("stay", 1)).await.unwrap();
    cluster.stop();
    let err = s.alias_by_name(&name("stay")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    cluster.start_server();
    // The pool reconnects by itself: the same store works again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match s.alias_by_name(&name("stay")).await {
            Ok(found) => {
                assert!(found.is_some());
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.is_unavailable(), "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    }
}
