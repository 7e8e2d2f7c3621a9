use super::*;

fn keys() -> Arc<Keys> {
    Arc::new(Keys::from_master([9; 32]))
}

fn entry(n: usize) -> Entry {
    Entry {
        id: Spool::new_id(),
        envelope: Envelope {
            kind: Kind::Remail,
            mail_from: "b+1.2.3.abcd@remailer.test".into(),
            rcpt: format!("ann{n}@mail.example"),
            recipient_alias: Some("ann@remailer.test".into()),
            sender_id: Some(1),
            created: 1,
            release_ms: None,
        },
        message: Arc::new(format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes()),
        history: Vec::new(),
    }
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

#[test]
fn stored_entries_come_back_after_reopen_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (entry(1), entry(2));
    {
        let spool = Spool::open(dir.path(), keys()).unwrap();
        spool.store(&[a.clone(), b.clone()]).unwrap();
        spool.remove(&a.id);
    }
    let spool = Spool::open(dir.path(), keys()).unwrap();
    let back = spool.take_recovered();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, b.id);
    assert_eq!(back[0].envelope.rcpt, "ann2@mail.example");
    assert_eq!(&back[0].message[..], &b.message[..]);
    assert!(spool.take_recovered().is_empty(), "handed out once");
    spool.remove(&b.id);
    drop(spool);
    let spool = Spool::open(dir.path(), keys()).unwrap();
    assert!(spool.take_recovered().is_empty());
    drop(spool);
    assert_eq!(
        log_files(dir.path()).len(),
        1,
        "empty old segments are deleted: {:?}",
        log_files(dir.path())
    );
}

#[test]
fn the_spool_shows_nothing_of_a_record_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = entry(7);
    e.message =
        Arc::new(b"To: ann7@mail.example\r\nSubject: secret plans\r\n\r\nthe text\r\n".to_vec());
    let spool = Spool::open(dir.path(), keys()).unwrap();
    spool.store(&[e]).unwrap();
    for name in log_files(dir.path()) {
        let raw = String::from_utf8_lossy(&fs::read(dir.path().join(name)).unwrap()).into_owned();
        for clear in [
            "ann7",
            "mail.example",
            "remailer.test",
            "secret plans",
            "the text",
        ] {
            assert!(!raw.contains(clear), "{clear:?} in clear in the spool");
        }
    }
}

/// A spool written before records were sealed whole (`RSP1`: header sealed, message in
/// clear) is read after an upgrade, next to new records, and drains as usual.
#[test]
fn records_of_the_old_format_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (entry(1), entry(2));
    let mut old = Vec::new();
    record::encode_v1(&a, &keys(), &mut old);
    record::encode(&b, &keys(), &mut old);
    fs::write(segment_path(dir.path(), 1), &old).unwrap();
    {
        let spool = Spool::open(dir.path(), keys()).unwrap();
        let mut back = spool.take_recovered();
        back.sort_by_key(|e| e.envelope.rcpt.clone());
        assert_eq!(back.len(), 2);
        assert_eq!((&back[0].id, &back[0].message), (&a.id, &a.message));
        assert_eq!(back[0].envelope.rcpt, "ann1@mail.example");
        assert_eq!((&back[1].id, &back[1].message), (&b.id, &b.message));
        spool.remove(&a.id);
    }
    let spool = Spool::open(dir.path(), keys()).unwrap();
    let back = spool.take_recovered();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, b.id);
}

/// The seal covers the whole record: a record sealed under another key ends the log.
#[test]
fn a_record_under_another_key_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    record::encode(&entry(1), &Keys::from_master([3; 32]), &mut bytes);
    fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let spool = Spool::open(dir.path(), keys()).unwrap();
    assert!(spool.take_recovered().is_empty());
}

#[test]
fn a_torn_record_at_the_end_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let kept = entry(1);
    {
        let spool = Spool::open(dir.path(), keys()).unwrap();
        spool.store(std::slice::from_ref(&kept)).unwrap();
    }
    let last = dir.path().join(log_files(dir.path()).pop().unwrap());
    let mut torn = Vec::new();
    record::encode(&entry(2), &keys(), &mut torn);
    torn.truncate(torn.len() - 5);
    OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap()
        .write_all(&torn)
        .unwrap();
    let before = fs::metadata(&last).unwrap().len();
    let spool = Spool::open(dir.path(), keys()).unwrap();
    let back = spool.take_recovered();
    assert_eq!(
        back.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![kept.id]
    );
    assert!(
        fs::metadata(&last).unwrap().len() < before,
        "the torn tail was cut"
    );
}

#[test]
fn garbage_is_not_a_record() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("seg-00000001.log"),
        b"RSP1 this is not a record at all, just noise",
    )
    .unwrap();
    let spool = Spool::open(dir.path(), keys()).unwrap();
    assert!(spool.take_recovered().is_empty());
}

#[tokio::test]
async fn old_segments_drain_by_relocation_and_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open_with_segment_size(dir.path(), keys(), 1).unwrap(); // every batch seals
    let waiting = entry(1);
    spool
        .store_async(std::slice::from_ref(&waiting))
        .await
        .unwrap();
    let others: Vec<Entry> = (2..6).map(entry).collect();
    for e in &others {
        spool.store_async(std::slice::from_ref(e)).await.unwrap();
        spool.remove(&e.id);
    }
    let first = log_files(dir.path())[0].clone();
    spool.relocate(&waiting).await.unwrap();
    assert!(
        !log_files(dir.path()).contains(&first),
        "the old segment is gone: {:?}",
        log_files(dir.path())
    );
    drop(spool);
    let spool = Spool::open(dir.path(), keys()).unwrap();
    let back = spool.take_recovered();
    assert_eq!(back.len(), 1, "exactly one copy survives");
    assert_eq!(back[0].id, waiting.id);
}

#[test]
fn a_second_process_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), keys()).unwrap();
    assert!(matches!(
        Spool::open(dir.path(), keys()),
        Err(SpoolError::Locked(_))
    ));
    let listed = Spool::inspect(dir.path(), &keys()).unwrap();
    assert!(listed.is_empty(), "inspect works alongside the lock holder");
}

#[test]
fn concurrent_stores_share_syncs_and_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), keys()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|n| entry(t * 100 + n))
                    .inspect(|e| spool.store(std::slice::from_ref(e)).unwrap())
                    .map(|e| e.id)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        Spool::inspect(dir.path(), &keys())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        ids
    );
    drop(spool);
    let spool = Spool::open(dir.path(), keys()).unwrap();
    assert_eq!(spool.take_recovered().len(), 400);
}

/// Found by the `spool_recovery` fuzz target: a copy left behind by a relocation that a crash
/// interrupted (the new copy written, the old one not yet marked done) came back as soon as
/// the segment of the new copy was deleted, so a delivered message was delivered again
/// after the next restart.
#[test]
fn a_stale_copy_does_not_come_back_after_its_newer_copy_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (entry(1), entry(2));
    let mut old = Vec::new();
    record::encode(&a, &keys(), &mut old);
    record::encode(&b, &keys(), &mut old);
    fs::write(segment_path(dir.path(), 1), &old).unwrap();
    let mut new = Vec::new();
    record::encode(&a, &keys(), &mut new);
    fs::write(segment_path(dir.path(), 2), &new).unwrap();
    {
        let spool = Spool::open(dir.path(), keys()).unwrap();
        let mut ids: Vec<String> = spool.take_recovered().into_iter().map(|e| e.id).collect();
        ids.sort();
        let mut want = vec![a.id.clone(), b.id.clone()];
        want.sort();
        assert_eq!(ids, want);
        spool.remove(&a.id);
    }
    for _ in 0..2 {
        let spool = Spool::open(dir.path(), keys()).unwrap();
        let back: Vec<String> = spool.take_recovered().into_iter().map(|e| e.id).collect();
        assert_eq!(back, vec![b.id.clone()], "the delivered message came back");
    }
}

fn attempt(n: u32) -> retry::Attempt {
    retry::Attempt {
        n,
        at_ms: 1000 * i64::from(n),
        next_ms: 1000 * i64::from(n) + 500,
        error: format!("451 4.3.0 try {n}").into(),
    }
}

#[tokio::test]
async fn retry_state_comes_back_after_reopen_also_after_the_entry_moved() {
    let dir = tempfile::tempdir().unwrap();
    let mut waiting = entry(1);
    {
        // every batch seals its segment, so each attempt moves the entry forward
        let spool = Spool::open_with_segment_size(dir.path(), keys(), 1).unwrap();
        spool
            .store_async(std::slice::from_ref(&waiting))
            .await
            .unwrap();
        for n in 1..=3 {
            waiting.history.push(attempt(n));
            spool.note_attempt(&waiting).await.unwrap();
        }
    }
    let inspected = Spool::inspect(dir.path(), &keys()).unwrap();
    assert_eq!(inspected[0].history, waiting.history);
    let spool = Spool::open(dir.path(), keys()).unwrap();
    let back = spool.take_recovered();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].history, waiting.history, "every attempt, in order");
    for name in fs::read_dir(dir.path()).unwrap().flatten() {
        let raw = fs::read(name.path()).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("try 3"), "sealed");
    }
}

#[tokio::test]
async fn a_deleted_entry_never_comes_back_even_when_it_was_moving() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (entry(1), entry(2));
    {
        let spool = Spool::open_with_segment_size(dir.path(), keys(), 1).unwrap();
        spool.store_async(&[a.clone(), b.clone()]).await.unwrap();
        assert!(spool.is_queued(&a.id));
        assert!(spool.delete(&a.id));
        assert!(!spool.is_queued(&a.id));
        assert!(!spool.delete(&a.id), "only once");
        // a copy that lands after the delete (a relocation in flight) is marked done
        spool.store_async(std::slice::from_ref(&a)).await.unwrap();
        assert!(!spool.is_queued(&a.id));
    }
    let spool = Spool::open(dir.path(), keys()).unwrap();
    let ids: Vec<String> = spool.take_recovered().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![b.id.clone()]);
    drop(spool);
    assert!(Spool::delete_offline(dir.path(), &keys(), &b.id).unwrap());
    assert!(!Spool::delete_offline(dir.path(), &keys(), &b.id).unwrap());
    assert!(Spool::inspect(dir.path(), &keys()).unwrap().is_empty());
    let spool = Spool::open(dir.path(), keys()).unwrap();
    assert!(spool.take_recovered().is_empty());
    assert!(
        matches!(
            Spool::delete_offline(dir.path(), &keys(), &b.id),
            Err(SpoolError::Locked(_))
        ),
        "not while a serve holds the spool"
    );
}

/// A store announced by [`Spool::coming`] shares the sync of one that was waiting; a ticket
/// dropped unused lets the waiting one go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_waits_for_an_announced_store_and_no_longer_than_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let long = std::time::Duration::from_secs(20);
    let spool = Arc::new(Spool::open_with(dir.path(), keys(), SEGMENT_MAX, long).unwrap());
    let before = spool.syncs();

    // Nothing announced: a store is synced at once.
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        spool.store_async(&[entry(0)]),
    )
    .await
    .expect("no wait with nothing coming")
    .unwrap();
    assert_eq!(spool.syncs(), before + 1);

    // Announced: the first store waits, and both share one sync.
    let ticket = spool.coming();
    let (a, b) = (entry(1), entry(2));
    let first = tokio::spawn({
        let spool = spool.clone();
        async move { spool.store_async(&[a]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !first.is_finished(),
        "the sync waits for the announced store"
    );
    spool.store_coming(ticket, &[b]).await.unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(spool.syncs(), before + 2, "one sync for both");

    // Announced, then given up: the waiting store goes at once, not after the long wait.
    let ticket = spool.coming();
    let first = tokio::spawn({
        let spool = spool.clone();
        async move { spool.store_async(&[entry(3)]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!first.is_finished());
    drop(ticket);
    tokio::time::timeout(std::time::Duration::from_secs(5), first)
        .await
        .expect("woken when the announced store will not come")
        .unwrap()
        .unwrap();
    assert_eq!(spool.syncs(), before + 3);
}

/// A stored entry is read back from memory once, and only while it is still queued.
#[test]
fn a_fresh_entry_is_taken_once_and_never_after_it_left_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), keys()).unwrap();
    let (a, b, c) = (entry(1), entry(2), entry(3));
    spool.store(&[a.clone(), b.clone(), c.clone()]).unwrap();
    let queued = |e: &Entry| Queued::of(e).unwrap();
    let got = spool.take_fresh(&queued(&a)).expect("kept since the store");
    assert_eq!(got.message, a.message);
    assert!(spool.take_fresh(&queued(&a)).is_none(), "taken once");
    assert!(spool.load(&queued(&a)).unwrap().is_some(), "still on disk");
    assert!(spool.delete(&b.id));
    assert!(spool.take_fresh(&queued(&b)).is_none(), "deleted");
    spool.remove(&c.id);
    assert!(spool.take_fresh(&queued(&c)).is_none(), "delivered");
}
