use keyledger_log::{
    Committed, Envelope, EventLog, ExpectedVersion, GENESIS_HASH, LogConfig, LogError,
};

use crate::support::{batch, event, open, read_all, with_request_id};

#[test]
fn reopening_keeps_events_versions_idempotency_and_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let first = log
        .append_blocking(with_request_id(
            batch(vec![
                event("a", ExpectedVersion::NoStream, b"a1"),
                event("b", ExpectedVersion::NoStream, b"b1"),
            ]),
            1,
        ))
        .expect("append");
    log.append_blocking(batch(vec![event("a", ExpectedVersion::Exact(1), b"a2")]))
        .expect("append");
    let head = log.head();
    let before = read_all(&log);
    log.close();

    let (log, commits) = open(dir.path());
    assert_eq!(log.head(), head);
    assert_eq!(read_all(&log), before);
    assert_eq!(log.stream_version("a"), Some(2));
    assert_eq!(log.stream_version("b"), Some(1));
    assert_eq!(*log.subscribe().borrow(), 3);
    let retry = log
        .append_blocking(with_request_id(
            batch(vec![event("a", ExpectedVersion::NoStream, b"a1")]),
            1,
        ))
        .expect("retry");
    assert_eq!(
        retry,
        Committed {
            duplicate: true,
            ..first
        }
    );
    assert!(commits.lock().expect("commits").is_empty());

    // New appends continue the same chain.
    let next = log
        .append_blocking(batch(vec![event("a", ExpectedVersion::Exact(2), b"a3")]))
        .expect("append after reopen");
    assert_eq!(next.first_seq, 4);
    let env = log.get(4).expect("get").expect("event 4");
    assert_eq!((env.prev_hash, env.version), (head.1, 3));
    let report = log.verify().expect("verify");
    assert_eq!((report.verified_through, report.first_bad), (4, None));
    // Dropping the last handle also closes the database.
    drop(log);

    let (log, _) = open(dir.path());
    assert_eq!(log.head().0, 4);
    assert_ne!(log.head().1, GENESIS_HASH);
}

#[test]
fn close_then_reopen_at_once_in_a_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..15u64 {
        let (log, _) = open(dir.path());
        assert_eq!(log.head().0, round);
        log.append_blocking(batch(vec![event("s", ExpectedVersion::Exact(round), b"x")]))
            .expect("append");
        if round % 2 == 0 {
            log.close();
        } else {
            drop(log);
        }
    }
}

/// Groups are stored as blocks and the stream index is written lazily: reads that start or end
/// inside a block, and versions committed after the index was last written, must come out
/// right after reopening.
#[test]
fn blocks_and_the_lazy_stream_index_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    // Over 1,024 streams in one group: the next group writes the index.
    let many: Vec<_> = (0..1100)
        .map(|n| event(&format!("s{n}"), ExpectedVersion::NoStream, b"x"))
        .collect();
    log.append_blocking(batch(many)).expect("append");
    log.append_blocking(batch(vec![
        event("s1", ExpectedVersion::Exact(1), b"y"),
        event("late", ExpectedVersion::NoStream, b"z"),
    ]))
    .expect("append");
    // Not indexed yet: only the events say it.
    log.append_blocking(batch(vec![event("s1", ExpectedVersion::Exact(2), b"w")]))
        .expect("append");
    let before = read_all(&log);
    log.close();

    let (log, _) = open(dir.path());
    assert_eq!(read_all(&log), before);
    assert_eq!(log.stream_version("s0"), Some(1));
    assert_eq!(log.stream_version("s1"), Some(3));
    assert_eq!(log.stream_version("late"), Some(1));
    assert_eq!(log.stream_version("s1099"), Some(1));
    let middle: Vec<u64> = log
        .read_range(500, 1101)
        .map(|env| env.expect("read").seq)
        .collect();
    assert_eq!(middle, (500..=1101).collect::<Vec<_>>());
    assert_eq!(log.get(1101).expect("get").expect("event").stream, "s1");
    assert_eq!(log.get(1102).expect("get").expect("event").stream, "late");
    let report = log
        .verify_range(700, 1102, before[698].hash)
        .expect("verify");
    assert_eq!((report.verified_through, report.first_bad), (1102, None));
    log.append_blocking(batch(vec![event("s1", ExpectedVersion::Exact(3), b"v")]))
        .expect("versions carry on");
}

/// A log another open log holds is refused with the typed `Locked` (after the short wait for a
/// lock this process is releasing), and opens once the holder is closed.
#[test]
fn a_held_log_is_refused_as_locked_until_its_holder_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (holder, _) = open(dir.path());
    let second = EventLog::open(LogConfig::new(dir.path()), Box::new(|_: &[Envelope]| {}));
    match second {
        Err(LogError::Locked { dir: locked }) => assert_eq!(locked, dir.path()),
        Err(other) => panic!("expected LogError::Locked, got {other:?}"),
        Ok(_) => panic!("a held log opened a second time"),
    }
    holder.close();
    let (reopened, _) = open(dir.path());
    reopened.close();
}
