use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keyledger_log::{
    AppendBatch, AppendError, Committed, Envelope, EventLog, ExpectedVersion, LogConfig,
};

use crate::support::{batch, event, fast_config, open, with_request_id};

/// A log whose first `on_commit` blocks until `release` is called, so that the test can queue
/// requests and know they will be committed together as the next group.
struct GatedLog {
    log: EventLog,
    groups: Arc<Mutex<Vec<Vec<Envelope>>>>,
    release: mpsc::Sender<()>,
}

impl GatedLog {
    fn open(config: LogConfig) -> (GatedLog, JoinHandle<Result<Committed, AppendError>>) {
        let (release, gate) = mpsc::channel::<()>();
        let (entered_tx, entered) = mpsc::channel::<()>();
        let groups: Arc<Mutex<Vec<Vec<Envelope>>>> = Arc::default();
        let seen = groups.clone();
        let log = EventLog::open(
            config,
            Box::new(move |envelopes: &[Envelope]| {
                let first = seen.lock().expect("groups").is_empty();
                seen.lock().expect("groups").push(envelopes.to_vec());
                if first {
                    let _ = entered_tx.send(());
                    let _ = gate.recv_timeout(Duration::from_secs(20));
                }
            }),
        )
        .expect("open");
        let first = spawn_append(&log, batch(vec![event("gate", ExpectedVersion::Any, b"")]));
        entered
            .recv_timeout(Duration::from_secs(20))
            .expect("writer entered on_commit");
        (
            GatedLog {
                log,
                groups,
                release,
            },
            first,
        )
    }

    /// Queues `request` behind the blocked writer and waits until it is in the queue.
    fn queue(&self, request: AppendBatch) -> JoinHandle<Result<Committed, AppendError>> {
        let before = self.log.queue_depth();
        let handle = spawn_append(&self.log, request);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log.queue_depth() == before {
            assert!(Instant::now() < deadline, "request never reached the queue");
            std::thread::sleep(Duration::from_millis(1));
        }
        handle
    }

    fn release(&self) {
        self.release.send(()).expect("release the writer");
    }
}

fn spawn_append(
    log: &EventLog,
    request: AppendBatch,
) -> JoinHandle<Result<Committed, AppendError>> {
    let log = log.clone();
    std::thread::spawn(move || log.append_blocking(request))
}

fn answer(handle: JoinHandle<Result<Committed, AppendError>>) -> Result<Committed, AppendError> {
    handle.join().expect("append thread")
}

#[test]
fn expected_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let append =
        |stream: &str, expected| log.append_blocking(batch(vec![event(stream, expected, b"x")]));
    let conflict = |result: Result<Committed, AppendError>| match result {
        Err(AppendError::Conflict {
            expected, actual, ..
        }) => (expected, actual),
        other => panic!("expected a conflict, got {other:?}"),
    };
    append("s", ExpectedVersion::NoStream).expect("new stream");
    assert_eq!(
        conflict(append("s", ExpectedVersion::NoStream)),
        (ExpectedVersion::NoStream, Some(1))
    );
    append("s", ExpectedVersion::Exact(1)).expect("exact 1");
    assert_eq!(
        conflict(append("s", ExpectedVersion::Exact(1))),
        (ExpectedVersion::Exact(1), Some(2))
    );
    append("s", ExpectedVersion::Any).expect("any");
    assert_eq!(log.stream_version("s"), Some(3));
    append("t", ExpectedVersion::Exact(0)).expect("exact 0 means no stream");
    assert_eq!(
        conflict(append("u", ExpectedVersion::Exact(5))),
        (ExpectedVersion::Exact(5), None)
    );
    assert_eq!(log.head().0, 4);
}

#[test]
fn requests_in_one_group_are_checked_in_order_and_independently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gated, first) = GatedLog::open(LogConfig::new(dir.path()));
    let creates_x = gated.queue(with_request_id(
        batch(vec![event("x", ExpectedVersion::NoStream, b"x1")]),
        1,
    ));
    let also_creates_x = gated.queue(batch(vec![event("x", ExpectedVersion::NoStream, b"x1'")]));
    let too_large = gated.queue(batch(vec![event("z", ExpectedVersion::Any, &[0; 70_000])]));
    let empty = gated.queue(batch(vec![]));
    let follows_x = gated.queue(batch(vec![event("x", ExpectedVersion::Exact(1), b"x2")]));
    let retry_of_first = gated.queue(with_request_id(
        batch(vec![event("x", ExpectedVersion::NoStream, b"x1")]),
        1,
    ));
    let other_stream = gated.queue(batch(vec![
        event("y", ExpectedVersion::NoStream, b"y1"),
        event("y", ExpectedVersion::Exact(1), b"y2"),
    ]));
    gated.release();

    assert_eq!(answer(first).expect("gate event").first_seq, 1);
    let x1 = answer(creates_x).expect("first create wins");
    assert_eq!((x1.first_seq, x1.last_seq, x1.duplicate), (2, 2, false));
    match answer(also_creates_x) {
        Err(AppendError::Conflict { stream, actual, .. }) => {
            assert_eq!((stream.as_str(), actual), ("x", Some(1)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        answer(too_large),
        Err(AppendError::TooLarge { .. })
    ));
    assert!(matches!(answer(empty), Err(AppendError::Empty)));
    assert_eq!(answer(follows_x).expect("x2").first_seq, 3);
    assert_eq!(
        answer(retry_of_first).expect("retry"),
        Committed {
            duplicate: true,
            ..x1
        }
    );
    let y = answer(other_stream).expect("y");
    assert_eq!((y.first_seq, y.last_seq), (4, 5));

    // The four accepted events were one group: one on_commit call, in seq order.
    let groups = gated.groups.lock().expect("groups").clone();
    assert_eq!(groups.len(), 2);
    let seqs: Vec<u64> = groups[1].iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5]);
    assert_eq!(gated.log.stream_version("x"), Some(2));
    assert_eq!(gated.log.stream_version("y"), Some(2));
    assert_eq!(gated.log.stream_version("z"), None);
    assert!(gated.log.verify().expect("verify").is_ok());
}

#[test]
fn groups_respect_max_batch_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        max_batch_events: 2,
        ..fast_config(dir.path())
    };
    let (gated, first) = GatedLog::open(config);
    let queued: Vec<_> = (0..5u8)
        .map(|i| gated.queue(batch(vec![event("s", ExpectedVersion::Any, &[i])])))
        .collect();
    gated.release();
    answer(first).expect("gate event");
    for handle in queued {
        answer(handle).expect("append");
    }
    let sizes: Vec<usize> = gated
        .groups
        .lock()
        .expect("groups")
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, vec![1, 2, 2, 1]);
}

#[test]
fn a_retried_request_id_returns_the_first_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, commits) = open(dir.path());
    let request = with_request_id(batch(vec![event("s", ExpectedVersion::NoStream, b"1")]), 9);
    let first = log.append_blocking(request.clone()).expect("first");
    log.append_blocking(batch(vec![event("other", ExpectedVersion::Any, b"")]))
        .expect("unrelated");
    // Same id, even with other content and a now-stale expected version: the first result.
    let mut changed = request;
    changed.events[0].body = b"different".to_vec();
    let again = log.append_blocking(changed).expect("retry");
    assert_eq!(
        again,
        Committed {
            duplicate: true,
            ..first
        }
    );
    assert_eq!(log.head().0, 2);
    assert_eq!(commits.lock().expect("commits").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_fifty_concurrent_creates_exactly_one_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let tasks: Vec<_> = (0..50u8)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(batch(vec![event(
                    "external_key/alice/aws",
                    ExpectedVersion::NoStream,
                    &[i],
                )]))
                .await
            })
        })
        .collect();
    let mut wins = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => wins += 1,
            Err(AppendError::Conflict {
                actual: Some(1), ..
            }) => conflicts += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 49));
    assert_eq!(log.head().0, 1);
}

#[test]
fn close_answers_queued_appends_and_then_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gated, first) = GatedLog::open(fast_config(dir.path()));
    let queued: Vec<_> = (0..3u8)
        .map(|i| gated.queue(batch(vec![event("s", ExpectedVersion::Any, &[i])])))
        .collect();
    let other_handle = gated.log.clone();
    let closer = {
        let log = gated.log.clone();
        std::thread::spawn(move || log.close())
    };
    gated.release();
    closer.join().expect("close");
    answer(first).expect("gate event");
    for handle in queued {
        answer(handle).expect("queued before close");
    }
    assert!(matches!(
        other_handle.append_blocking(batch(vec![event("s", ExpectedVersion::Any, b"late")])),
        Err(AppendError::Closed)
    ));
    assert_eq!(other_handle.head().0, 4);
}
