//! Saved sources on a schedule (decision 0031), driven by the vault's manual clock: a run per
//! tick, no overlap, one catch-up run after downtime, nothing from a paused or deleted source.

use bytes::Bytes;
use keyledger_domain::{
    DomainError, Event, KeyDuration, Schedule, SourceId, SourceName, Timestamp,
};
use keyledger_ingest::{IngestError, JobState, SaveSource, Workers};
use keyledger_testkit::s3::{S3Server, generated_bytes};

use crate::support::{
    ACCESS_KEY_ID, BUCKET, Harness, SECRET, T0, assert_finished, aws_selection, dev, harness,
    request, s3_options,
};

const HOUR: i64 = 3_600_000;

/// The first full hour after `T0`.
fn first_hour() -> Timestamp {
    hour_after(T0)
}

fn hour_after(at: Timestamp) -> Timestamp {
    Timestamp::from_millis((at.as_millis() / HOUR + 1) * HOUR)
}

async fn save_hourly(h: &Harness, name: &str) -> SourceId {
    h.ingestor
        .save_source(
            dev(),
            SaveSource {
                name: SourceName::parse(name).unwrap(),
                request: request(aws_selection(BUCKET, "runs/", r"\.csv$")),
                schedule: Some(Schedule::parse("0 * * * *", Some("UTC")).unwrap()),
            },
        )
        .await
        .unwrap()
}

/// The occurrences the scheduler started runs for at `at`.
async fn tick(h: &Harness, at: Timestamp) -> Vec<Timestamp> {
    h.clock.set(at);
    let runs = h.ingestor.run_due_sources(at).await;
    assert!(runs.refused.is_empty(), "{:?}", runs.refused);
    runs.started.into_iter().map(|(_, _, when)| when).collect()
}

/// With external workers and no dispatcher, a run's job stays queued until it is cancelled:
/// "still going" without any timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_per_tick_no_overlap_and_one_catch_up_run_after_downtime() {
    let mut h = harness(|config| config.workers = Workers::External).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let source = save_hourly(&h, "hourly").await;
    assert_eq!(
        tick(&h, T0).await,
        [],
        "nothing is due before the first occurrence"
    );

    let first = first_hour();
    assert_eq!(tick(&h, first).await, [first]);
    assert_eq!(tick(&h, first).await, [], "an occurrence runs once");
    let job = h.vault.read(|s| {
        s.source(&source)
            .unwrap()
            .last_run()
            .unwrap()
            .ingestion
            .clone()
    });
    // The run is recorded in the job's own append, right after its IngestionRequested.
    let events: Vec<Event> = h
        .vault
        .log()
        .read_from(1)
        .map(|envelope| keyledger_vault::decode_event(&envelope.unwrap().body).unwrap())
        .collect();
    let requested = events
        .iter()
        .position(|e| matches!(e, Event::IngestionRequested { ingestion, .. } if *ingestion == job))
        .unwrap();
    assert!(matches!(
        &events[requested + 1],
        Event::SourceRunStarted { ingestion, scheduled_for: Some(at), .. } if *ingestion == job && *at == first
    ));

    // The next occurrence falls while that job is still queued: nothing starts, by hand neither.
    let second = first.plus_millis(HOUR);
    assert_eq!(tick(&h, second).await, []);
    let by_hand = h.ingestor.run_source(dev(), &source, None).await;
    assert!(
        matches!(
            by_hand,
            Err(IngestError::Refused(DomainError::SourceRunning { .. }))
        ),
        "{by_hand:?}"
    );
    h.ingestor.cancel(dev(), &job).await.unwrap();
    assert_eq!(
        tick(&h, second.plus_millis(60_000)).await,
        [],
        "a skipped occurrence is not run late"
    );

    // Down for a day and a bit: one catch-up run at start, for the latest missed occurrence.
    h.reopen().await;
    let later = second.plus_millis(26 * HOUR + 10 * 60_000);
    let latest = second.plus_millis(26 * HOUR);
    assert_eq!(tick(&h, later).await, [latest]);
    assert_eq!(tick(&h, later).await, []);
    let runs = h.vault.read(|s| s.source(&source).unwrap().runs);
    assert_eq!(runs, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_deleted_sources_run_nothing() {
    let h = harness(|config| config.workers = Workers::External).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let paused = save_hourly(&h, "paused").await;
    let deleted = save_hourly(&h, "deleted").await;
    for action in [
        keyledger_domain::Action::PauseSource {
            source: paused.clone(),
        },
        keyledger_domain::Action::DeleteSource {
            source: deleted.clone(),
        },
    ] {
        h.vault.run(dev(), action).await.unwrap();
    }
    let first = first_hour();
    assert_eq!(tick(&h, first).await, []);
    assert_eq!(tick(&h, first.plus_millis(5 * HOUR)).await, []);
    // Resumed: from the next occurrence on, not the ones missed while paused.
    h.vault
        .run(
            dev(),
            keyledger_domain::Action::ResumeSource {
                source: paused.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(tick(&h, first.plus_millis(5 * HOUR + 1)).await, []);
    let next = first.plus_millis(6 * HOUR);
    assert_eq!(tick(&h, next).await, [next]);
}

/// Each run is an ordinary job against the S3 test server: the first fetches the selection, the
/// next tick's run skips what the store already holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_are_ordinary_jobs_against_s3() {
    let server = S3Server::start(ACCESS_KEY_ID, SECRET).await.unwrap();
    server.create_bucket(BUCKET).await.unwrap();
    let objects = (0..5u64).map(|index| {
        (
            format!("runs/sample-{index}.csv"),
            Bytes::from(generated_bytes(index, 0, 1000 + index as usize)),
        )
    });
    server.put_objects(BUCKET, objects).await.unwrap();
    let h = harness(|config| config.s3 = s3_options(&server.endpoint())).await;
    // The vault's clock from the real time on: the test server dates its objects by it, and
    // the second run compares their dates with the first run's (incremental sync).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let start = Timestamp::from_millis(now.as_millis() as i64);
    h.clock.set(start);
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let source = save_hourly(&h, "nightly").await;

    let first = hour_after(start);
    h.clock.set(first);
    let runs = h.ingestor.run_due_sources(first).await;
    assert_eq!(runs.started.len(), 1, "{:?}", runs.refused);
    let view = h.wait(&runs.started[0].1).await;
    assert_finished(&view, JobState::Completed);
    assert_eq!(view.files_fetched, 5);

    let second = first.plus_millis(HOUR);
    h.clock.set(second);
    let runs = h.ingestor.run_due_sources(second).await;
    assert_eq!(runs.started.len(), 1, "{:?}", runs.refused);
    let view = h.wait(&runs.started[0].1).await;
    assert_finished(&view, JobState::Completed);
    assert_eq!((view.files_fetched, view.files_skipped), (0, 5));
    let recent: Vec<_> = h.vault.read(|s| {
        s.source(&source)
            .unwrap()
            .recent_runs
            .iter()
            .map(|run| run.scheduled_for)
            .collect()
    });
    assert_eq!(recent, [Some(first), Some(second)]);
}

/// Many runs of one source started at once: exactly one is recorded, every other one is refused
/// as `source_running`, however the appends interleave (the source's stream version decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_of_one_source_start_exactly_one_job() {
    let h = harness(|config| config.workers = Workers::External).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let source = save_hourly(&h, "contended").await;
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (ingestor, source) = (h.ingestor.clone(), source.clone());
            tokio::spawn(async move { ingestor.run_source(dev(), &source, None).await })
        })
        .collect();
    let mut started = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => started += 1,
            Err(IngestError::Refused(DomainError::SourceRunning { .. })) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(started, 1);
    let (runs, jobs) = h.vault.read(|s| {
        let runs = s.source(&source).unwrap().runs;
        (
            runs,
            s.ingestions()
                .filter(|job| job.owner.as_str() == "dev")
                .count(),
        )
    });
    assert_eq!((runs, jobs), (1, 1));
}

/// Many saves of one name at once: exactly one source is saved, every other one is refused as
/// `source_name_taken` (each source is a stream of its own, so the vault's per-owner name lock,
/// not a stream version, is what orders them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_of_one_name_save_exactly_one_source() {
    let h = harness(|config| config.workers = Workers::External).await;
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let ingestor = h.ingestor.clone();
            tokio::spawn(async move {
                let source = SaveSource {
                    name: SourceName::parse("nightly").unwrap(),
                    request: request(aws_selection(BUCKET, "runs/", r"\.csv$")),
                    schedule: None,
                };
                ingestor.save_source(dev(), source).await
            })
        })
        .collect();
    let mut saved = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => saved += 1,
            Err(IngestError::Refused(DomainError::SourceNameTaken { .. })) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(saved, 1);
    assert_eq!(h.vault.read(|s| s.sources().count()), 1);
}

/// The key expires under the schedule: the first refused tick records one `SourceRunRefused`,
/// later ticks for that occurrence record nothing more, and once a new key is stored the next
/// occurrence runs (and the source's refusal is no longer current).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_recorded_once_per_occurrence_and_a_new_key_runs_the_next() {
    let h = harness(|config| config.workers = Workers::External).await;
    h.store_aws_key(SECRET, KeyDuration::Days(1)).await;
    let source = save_hourly(&h, "nightly").await;
    let refusals = || -> Vec<(Timestamp, String)> {
        h.vault
            .log()
            .read_from(1)
            .filter_map(|envelope| {
                match keyledger_vault::decode_event(&envelope.unwrap().body).unwrap() {
                    Event::SourceRunRefused {
                        scheduled_for,
                        reason,
                        ..
                    } => Some((scheduled_for, reason)),
                    _ => None,
                }
            })
            .collect()
    };

    // Two days on, the key has expired: the latest occurrence is refused and recorded.
    let occurrence = hour_after(T0.plus_millis(48 * HOUR));
    h.clock.set(occurrence);
    let runs = h.ingestor.run_due_sources(occurrence).await;
    assert!(runs.started.is_empty(), "{:?}", runs.started);
    assert!(
        matches!(
            runs.refused.as_slice(),
            [(_, at, IngestError::Refused(DomainError::NoExternalKey { .. }))] if *at == occurrence
        ),
        "{:?}",
        runs.refused
    );
    assert_eq!(runs.recorded, [(source.clone(), occurrence)]);
    let recorded = refusals();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].0, occurrence);
    assert!(
        recorded[0].1.contains("no usable external key"),
        "{recorded:?}"
    );
    assert!(!recorded[0].1.contains(SECRET));

    // The next tick tries that occurrence again and records nothing more.
    let retry = occurrence.plus_millis(30_000);
    h.clock.set(retry);
    let runs = h.ingestor.run_due_sources(retry).await;
    assert_eq!(runs.refused.len(), 1);
    assert!(runs.recorded.is_empty(), "{:?}", runs.recorded);
    assert_eq!(refusals().len(), 1);
    let shown = h.vault.read(|s| {
        s.source(&source)
            .unwrap()
            .current_refusal()
            .map(|r| r.scheduled_for)
    });
    assert_eq!(shown, Some(occurrence));

    // A new key: the next occurrence runs, and the refusal is no longer the source's news.
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let next = occurrence.plus_millis(HOUR);
    assert_eq!(tick(&h, next).await, [next]);
    assert_eq!(refusals().len(), 1);
    let shown = h
        .vault
        .read(|s| s.source(&source).unwrap().current_refusal().cloned());
    assert_eq!(shown, None);
}
