use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyledger_log::{
    AppendError, BadReason, Committed, EventIter, EventLog, ExpectedVersion, GENESIS_HASH,
    StreamGuard, compute_hash, verify_envelopes,
};

use crate::support::{batch, event, open, read_all};

const _: fn() = || {
    fn send_static<T: Send + 'static>() {}
    fn send_sync<T: Send + Sync>() {}
    send_static::<EventIter>();
    send_sync::<EventLog>();
};

#[test]
fn empty_log_has_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    assert_eq!(log.head(), (0, GENESIS_HASH));
    assert_eq!(log.get(0).expect("get"), None);
    assert_eq!(log.get(1).expect("get"), None);
    assert!(read_all(&log).is_empty());
    assert_eq!(*log.subscribe().borrow(), 0);
    let report = log.verify().expect("verify");
    assert_eq!(report.verified_through, 0);
    assert_eq!(report.head_hash, GENESIS_HASH);
    assert!(report.is_ok());
    assert_eq!(log.path(), dir.path());
}

#[test]
fn append_then_read_back_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, commits) = open(dir.path());
    let mut request = batch(vec![event(
        "api_key/k1",
        ExpectedVersion::NoStream,
        b"created",
    )]);
    request.request_id = Some([5; 16]);
    let committed = log.append_blocking(request).expect("append");
    assert_eq!(
        committed,
        Committed {
            first_seq: 1,
            last_seq: 1,
            duplicate: false
        }
    );

    let env = log.get(1).expect("get").expect("event 1");
    assert_eq!(env.seq, 1);
    assert_eq!(env.stream, "api_key/k1");
    assert_eq!(env.version, 1);
    assert_eq!(env.actor, "user:test");
    assert_eq!(env.time_ms, 1_700_000_000_000);
    assert_eq!(env.request_id, Some([5; 16]));
    assert_eq!(env.body, b"created");
    assert_eq!(env.prev_hash, GENESIS_HASH);
    assert_eq!(env.hash, compute_hash(&env));
    assert_ne!(env.event_id, [0; 16]);
    assert_eq!(log.head(), (1, env.hash));
    assert_eq!(log.stream_version("api_key/k1"), Some(1));
    assert_eq!(log.stream_version("api_key/other"), None);
    assert_eq!(*commits.lock().expect("commits"), vec![vec![env]]);
}

#[test]
fn events_chain_and_read_in_order_from_any_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    for i in 0..10u8 {
        log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, &[i])]))
            .expect("append");
    }
    let all = read_all(&log);
    assert_eq!(all.len(), 10);
    for (i, env) in all.iter().enumerate() {
        assert_eq!(env.seq, i as u64 + 1);
        assert_eq!(env.version, i as u64 + 1);
        assert_eq!(env.body, [i as u8]);
        let prev = if i == 0 {
            GENESIS_HASH
        } else {
            all[i - 1].hash
        };
        assert_eq!(env.prev_hash, prev);
    }
    let seqs = |iter: EventIter| -> Vec<u64> { iter.map(|e| e.expect("read").seq).collect() };
    assert_eq!(seqs(log.read_from(0)), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(log.read_from(7)), vec![7, 8, 9, 10]);
    assert_eq!(seqs(log.read_from(11)), Vec::<u64>::new());
    assert_eq!(seqs(log.read_range(3, 5)), vec![3, 4, 5]);
    assert_eq!(seqs(log.read_range(9, 100)), vec![9, 10]);
    assert_eq!(log.head(), (10, all[9].hash));

    let report = log.verify().expect("verify");
    assert_eq!(report.verified_through, 10);
    assert_eq!(report.head_hash, all[9].hash);
    assert!(report.is_ok());
    let tail = log.verify_range(6, 10, all[4].hash).expect("verify range");
    assert_eq!((tail.verified_through, tail.first_bad), (10, None));
    let wrong_start = log.verify_range(6, 10, GENESIS_HASH).expect("verify range");
    assert_eq!(
        wrong_start.first_bad.map(|bad| (bad.seq, bad.reason)),
        Some((6, BadReason::BrokenLink))
    );
    assert_eq!(wrong_start.verified_through, 5);
}

#[test]
fn a_batch_spans_streams_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, commits) = open(dir.path());
    let committed = log
        .append_blocking(batch(vec![
            event("a", ExpectedVersion::NoStream, b"a1"),
            event("b", ExpectedVersion::NoStream, b"b1"),
            event("a", ExpectedVersion::Exact(1), b"a2"),
        ]))
        .expect("append");
    assert_eq!((committed.first_seq, committed.last_seq), (1, 3));
    let versions: Vec<_> = read_all(&log)
        .iter()
        .map(|e| (e.stream.clone(), e.version))
        .collect();
    assert_eq!(
        versions,
        vec![("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
    );
    assert_eq!(commits.lock().expect("commits").len(), 1);

    // The second event conflicts: the first one must not be written either.
    let refused = log.append_blocking(batch(vec![
        event("c", ExpectedVersion::NoStream, b"c1"),
        event("b", ExpectedVersion::NoStream, b"b again"),
    ]));
    match refused {
        Err(AppendError::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(stream, "b");
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, Some(1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(log.head().0, 3);
    assert_eq!(log.stream_version("c"), None);
    assert_eq!(log.stream_version("a"), Some(2));
    assert_eq!(commits.lock().expect("commits").len(), 1);
}

/// Two administrators each remove the other's role, both deciding against the same state: each
/// batch writes one user's stream and guards the other's. Whichever lands second is refused,
/// whether it comes in a later group or in the same one.
#[test]
fn a_guarded_stream_that_moved_refuses_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _commits) = open(dir.path());
    log.append_blocking(batch(vec![
        event("user/a", ExpectedVersion::NoStream, b"a admin"),
        event("user/b", ExpectedVersion::NoStream, b"b admin"),
    ]))
    .expect("setup");
    let revoke = |target: &str, other: &str| {
        let mut revoke = batch(vec![event(target, ExpectedVersion::Exact(1), b"revoked")]);
        revoke.guards = vec![StreamGuard {
            stream: other.to_owned(),
            expected: ExpectedVersion::Exact(1),
        }];
        revoke
    };

    log.append_blocking(revoke("user/b", "user/a"))
        .expect("the first revoke lands");
    match log.append_blocking(revoke("user/a", "user/b")) {
        Err(AppendError::Conflict { stream, actual, .. }) => {
            assert_eq!(stream, "user/b");
            assert_eq!(actual, Some(2));
        }
        other => panic!("expected the guard to refuse, got {other:?}"),
    }
    assert_eq!(log.stream_version("user/a"), Some(1));

    // The same race submitted concurrently, many times: never both.
    for round in 0..50u64 {
        let (a, b) = (format!("r{round}/a"), format!("r{round}/b"));
        log.append_blocking(batch(vec![
            event(&a, ExpectedVersion::NoStream, b"admin"),
            event(&b, ExpectedVersion::NoStream, b"admin"),
        ]))
        .expect("setup round");
        let log_a = log.clone();
        let first = revoke(&b, &a);
        let second = revoke(&a, &b);
        let racer = std::thread::spawn(move || log_a.append_blocking(first));
        let other = log.append_blocking(second);
        let one = racer.join().expect("racer");
        assert_eq!(
            one.is_ok() as u32 + other.is_ok() as u32,
            1,
            "round {round}: exactly one revoke may land ({one:?}, {other:?})"
        );
    }
}

#[test]
fn empty_and_oversized_batches_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    assert!(matches!(
        log.append_blocking(batch(vec![])),
        Err(AppendError::Empty)
    ));
    let big = vec![7u8; 70_000];
    match log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, &big)])) {
        Err(AppendError::TooLarge { bytes }) => assert!(bytes > 70_000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let just_fits = vec![7u8; 60_000];
    log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, &just_fits)]))
        .expect("a 60 kB body fits");
    assert_eq!(log.head().0, 1);
    assert_eq!(log.stream_version("s"), Some(1));
}

#[tokio::test]
async fn async_append_notifies_subscribers_after_on_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, commits) = open(dir.path());
    let mut commits_seen = log.subscribe();
    let committed = log
        .append(batch(vec![
            event("s", ExpectedVersion::Any, b"1"),
            event("s", ExpectedVersion::Any, b"2"),
        ]))
        .await
        .expect("append");
    assert_eq!((committed.first_seq, committed.last_seq), (1, 2));
    // Read-your-writes: on_commit has run before the append was answered.
    let seen: Vec<u64> = commits.lock().expect("commits")[0]
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen, vec![1, 2]);
    commits_seen.changed().await.expect("watch");
    assert_eq!(*commits_seen.borrow_and_update(), 2);
}

#[test]
fn exported_envelopes_verify_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    for i in 0..5u8 {
        log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, &[i])]))
            .expect("append");
    }
    let exported = read_all(&log);
    let report = verify_envelopes(exported.clone(), GENESIS_HASH);
    assert_eq!((report.verified_through, report.first_bad), (5, None));
    assert_eq!(report.head_hash, log.head().1);

    // A suffix verifies from its predecessor's hash.
    let suffix = verify_envelopes(exported[2..].to_vec(), exported[1].hash);
    assert_eq!((suffix.verified_through, suffix.first_bad), (5, None));

    let check =
        |mutate: &dyn Fn(&mut Vec<keyledger_log::Envelope>), seq: u64, reason: BadReason| {
            let mut copy = exported.clone();
            mutate(&mut copy);
            let bad = verify_envelopes(copy, GENESIS_HASH)
                .first_bad
                .expect("detected");
            assert_eq!((bad.seq, bad.reason), (seq, reason));
        };
    check(&|c| c[2].body.push(1), 3, BadReason::HashMismatch);
    check(&|c| c[3].actor.push('x'), 4, BadReason::HashMismatch);
    check(
        &|c| {
            c.remove(1);
        },
        2,
        BadReason::Gap {
            expected: 2,
            found: 3,
        },
    );
    check(
        &|c| {
            // A forger who re-hashes the changed event still breaks the next link.
            c[1].body = b"forged".to_vec();
            c[1].hash = compute_hash(&c[1]);
        },
        3,
        BadReason::BrokenLink,
    );
}

#[test]
fn reads_run_while_the_writer_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let log = log.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for i in 0..200u32 {
                log.append_blocking(batch(vec![event(
                    "s",
                    ExpectedVersion::Any,
                    &i.to_le_bytes(),
                )]))
                .expect("append");
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut reads = 0;
    while !done.load(Ordering::SeqCst) || reads == 0 {
        let head = log.head().0;
        let seen = read_all(&log);
        // Never a partial or unordered view, and never less than the head seen before.
        assert!(
            seen.len() as u64 >= head,
            "read {} events, head was {head}",
            seen.len()
        );
        for (i, env) in seen.iter().enumerate() {
            assert_eq!(env.seq, i as u64 + 1);
        }
        assert!(log.verify().expect("verify").is_ok());
        reads += 1;
    }
    writer.join().expect("writer thread");
    assert_eq!(read_all(&log).len(), 200);
}

#[test]
fn a_panicking_on_commit_stops_the_log_after_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(
        keyledger_log::LogConfig::new(dir.path()),
        Box::new(|_| panic!("projection bug (expected by this test)")),
    )
    .expect("open");
    // The event is durable, so the append that triggered the panic still succeeds.
    let first = log
        .append_blocking(batch(vec![event("s", ExpectedVersion::Any, b"1")]))
        .expect("first append");
    assert_eq!(first.last_seq, 1);
    assert!(matches!(
        log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, b"2")])),
        Err(AppendError::Storage(
            keyledger_log::LogError::WriterStopped { .. }
        ))
    ));
    log.close();
    let (log, _) = open(dir.path());
    assert_eq!(log.head().0, 1);
}
