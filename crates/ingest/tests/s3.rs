//! Jobs against the in-process S3 server (SigV4 checked), directly or through the fault proxy.

use std::time::Duration;

use bytes::Bytes;
use keyledger_domain::{DomainError, Event, KeyDuration, MILLIS_PER_DAY, Provider};
use keyledger_ingest::{IngestError, IngestRequest, JobState};
use keyledger_testkit::fault_proxy::{CannedResponse, Fault, FaultProxy, RequestMatch};
use keyledger_testkit::s3::{S3Server, generated_bytes};

use crate::support::{
    ACCESS_KEY_ID, BUCKET, Harness, SECRET, WRONG_SECRET, assert_finished, assert_no_secret,
    assert_store_matches_events, aws_selection, dev, harness, kinds, request, s3_options,
};

async fn server() -> S3Server {
    let server = S3Server::start(ACCESS_KEY_ID, SECRET).await.unwrap();
    server.create_bucket(BUCKET).await.unwrap();
    server
}

/// `count` objects `<name>` of generated content (seed = index).
async fn seed(server: &S3Server, objects: &[(String, usize)]) {
    let bodies = objects.iter().enumerate().map(|(index, (key, size))| {
        (
            key.clone(),
            Bytes::from(generated_bytes(index as u64, 0, *size)),
        )
    });
    server.put_objects(BUCKET, bodies).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_selects_600_of_1500_objects_and_every_one_is_stored_verified() {
    let server = server().await;
    let mut objects = Vec::new();
    for index in 0..1500usize {
        let folder = match index % 3 {
            0 => "data/run1".to_owned(),
            1 => format!("data/run2/lane{}", index % 4),
            _ => format!("data/run3/deep/nested/{}", index % 7),
        };
        let extension = if index % 5 < 2 { "csv" } else { "txt" };
        objects.push((
            format!("{folder}/s{index:04}.{extension}"),
            100 + index * 7 % 4000,
        ));
    }
    seed(&server, &objects).await;
    let h = harness(|config| config.s3 = s3_options(&server.endpoint())).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "data/", r"\.csv$")).await;

    assert_finished(&view, JobState::Completed);
    assert_no_secret(&view);
    assert_eq!(view.files_selected, Some(600));
    assert_eq!(view.files_fetched, 600);
    assert_eq!(view.files_failed, 0);
    let expected: Vec<(String, Vec<u8>)> = objects
        .iter()
        .enumerate()
        .filter(|(_, (key, _))| key.ends_with(".csv"))
        .map(|(index, (key, size))| {
            let relative = key.strip_prefix("data/").unwrap().to_owned();
            (relative, generated_bytes(index as u64, 0, *size))
        })
        .collect();
    let bytes: u64 = expected.iter().map(|(_, body)| body.len() as u64).sum();
    assert_eq!(view.bytes_selected, Some(bytes));
    assert_eq!(view.bytes_fetched, bytes);
    let stored = assert_store_matches_events(&h, &view);
    assert_eq!(stored.len(), 600);
    for (path, body) in &expected {
        assert!(stored.get(path) == Some(body), "{path}: stored bytes");
    }
    assert!(
        view.store_path.starts_with("dev/batch-20260921-"),
        "{}",
        view.store_path
    );

    let events = h.events_of(&view.id);
    let kinds = kinds(&events);
    assert_eq!(
        kinds[..3],
        ["IngestionRequested", "ExternalKeyUsed", "IngestionListed"]
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "IngestionFileFetched")
            .count(),
        600
    );
    assert_eq!(kinds.last(), Some(&"IngestionCompleted"));
    assert!(matches!(
        events.last(),
        Some(Event::IngestionCompleted {
            files: 600,
            failed: 0,
            ..
        })
    ));

    let telemetry = h.vault.telemetry();
    assert_eq!(
        telemetry.value("keyledger_ingest_files_fetched_total", ""),
        Some(600.0)
    );
    assert_eq!(
        telemetry.value("keyledger_ingest_bytes_fetched_total", ""),
        Some(bytes as f64)
    );
    assert_eq!(
        telemetry.value("keyledger_ingest_jobs_running", ""),
        Some(0.0)
    );
    assert_eq!(
        telemetry.value(
            "keyledger_ingest_jobs_finished_total",
            "outcome=\"completed\""
        ),
        Some(1.0)
    );
    let listed = h.ingestor.list(&crate::support::user("dev"));
    assert_eq!(listed.len(), 1);
    assert!(listed[0].files.is_empty(), "listings leave the files out");
    assert_eq!(h.ingestor.status(&view.id).unwrap().files.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_the_job_saying_the_key_was_rejected() {
    let server = server().await;
    seed(&server, &[("a.csv".to_owned(), 10)]).await;
    let h = harness(|config| config.s3 = s3_options(&server.endpoint())).await;
    h.store_aws_key(WRONG_SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "", "")).await;

    assert_finished(&view, JobState::Failed);
    assert_no_secret(&view);
    let error = view.error.as_deref().unwrap();
    assert!(
        error.contains("the stored AWS key was rejected by S3"),
        "{error}"
    );
    assert_eq!(
        kinds(&h.events_of(&view.id)),
        ["IngestionRequested", "ExternalKeyUsed", "IngestionFailed"]
    );
    assert!(h.stored_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_the_job_naming_it() {
    let server = server().await;
    let h = harness(|config| config.s3 = s3_options(&server.endpoint())).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection("missing-bucket", "", "")).await;

    assert_finished(&view, JobState::Failed);
    let error = view.error.as_deref().unwrap();
    assert!(
        error.contains("bucket `missing-bucket` does not exist"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_in_another_region_is_explained() {
    let server = server().await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let redirect = CannedResponse::s3_error(
        301,
        "PermanentRedirect",
        "The bucket you are attempting to access must be addressed using the specified endpoint.",
    )
    .with_header("x-amz-bucket-region", "eu-west-1");
    proxy.inject(RequestMatch::get(), Fault::Respond(redirect), 1);
    let h = harness(|config| config.s3 = s3_options(&proxy.endpoint())).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "", "")).await;

    assert_finished(&view, JobState::Failed);
    let error = view.error.as_deref().unwrap();
    assert!(error.contains("is in region eu-west-1"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_run_are_refused_before_anything_is_recorded() {
    let h = harness(|_| {}).await;
    let before = h.vault.log().head().0;
    let selection = aws_selection(BUCKET, "", "");

    // No AWS key stored.
    let refused = h.ingestor.start(dev(), request(selection.clone())).await;
    match refused {
        Err(IngestError::Refused(DomainError::NoExternalKey {
            provider: Provider::Aws,
        })) => {}
        other => panic!("{other:?}"),
    }
    let message = h
        .ingestor
        .start(dev(), request(selection.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "you have no usable external key for Amazon Web Services (aws); store one first"
    );

    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let after_key = h.vault.log().head().0;
    let check = |result: Result<_, IngestError>, fragment: &str| {
        let error = result.unwrap_err();
        assert!(error.to_string().contains(fragment), "{error}");
        error
    };
    // No permission to import.
    let error = check(
        h.ingestor
            .start(crate::support::actor("viewer"), request(selection.clone()))
            .await,
        "import_organization_samples",
    );
    assert!(matches!(
        error,
        IngestError::Refused(DomainError::PermissionDenied { .. })
    ));
    // A regex that is not one.
    let error = check(
        h.ingestor
            .start(dev(), request(aws_selection(BUCKET, "", "(unclosed")))
            .await,
        "not a valid regular expression",
    );
    assert!(matches!(error, IngestError::InvalidSelection(_)));
    // Destinations that would leave the store.
    for destination in ["../escape", "/etc", "a/../../b", ".partial", "a\u{0}b"] {
        let error = check(
            h.ingestor
                .start(
                    dev(),
                    IngestRequest {
                        selection: selection.clone(),
                        destination: Some(destination.to_owned()),
                    },
                )
                .await,
            "destination",
        );
        assert!(
            matches!(error, IngestError::InvalidDestination(_)),
            "{destination}"
        );
    }
    // Another user's area of the store, or a folder outside every user's area.
    for destination in ["alice", "alice/dev", "project-7", "devx/run"] {
        let error = h
            .ingestor
            .start(
                dev(),
                IngestRequest {
                    selection: selection.clone(),
                    destination: Some(destination.to_owned()),
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&error, IngestError::ForeignDestination { owner } if owner.as_str() == "dev"),
            "{destination}: {error:?}"
        );
        assert!(
            error.to_string().contains("your own folder `dev`"),
            "{error}"
        );
    }
    assert_eq!(h.vault.log().head().0, after_key, "nothing was recorded");
    assert!(after_key > before);
    assert!(h.vault.read(|state| state.ingestions().next().is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_refused_at_start() {
    let h = harness(|_| {}).await;
    h.store_aws_key(SECRET, KeyDuration::Days(1)).await;
    h.clock.advance_millis(2 * MILLIS_PER_DAY);

    let error = h
        .ingestor
        .start(dev(), request(aws_selection(BUCKET, "", "")))
        .await
        .unwrap_err();

    assert_eq!(
        error.to_string(),
        "you have no usable external key for Amazon Web Services (aws); store one first"
    );
}

/// Five small objects and `z-big.bin` (4 MiB), whose GET stalls for a minute after 1.5 MiB
/// (more than the connector's 1 MiB write buffer, so progress is visible).
async fn stalled_job(
    h: &Harness,
    proxy: &FaultProxy,
    server: &S3Server,
) -> keyledger_domain::IngestionId {
    let mut objects: Vec<(String, usize)> = (0..5)
        .map(|index| (format!("a{index}.csv"), 2000))
        .collect();
    objects.push(("z-big.bin".to_owned(), 4 << 20));
    seed(server, &objects).await;
    proxy.inject(
        RequestMatch::get().path_contains("z-big.bin"),
        Fault::StallMidBody {
            after_bytes: 3 << 19,
            duration: Duration::from_secs(60),
        },
        100,
    );
    let id = h
        .ingestor
        .start(dev(), request(aws_selection(BUCKET, "", "")))
        .await
        .unwrap();
    h.wait_until(&id, |view| {
        view.files_fetched == 5
            && view
                .files
                .iter()
                .any(|file| file.path == "z-big.bin" && file.bytes_fetched > 0)
    })
    .await;
    id
}

async fn stall_harness(proxy: &FaultProxy) -> Harness {
    let endpoint = proxy.endpoint();
    harness(move |config| {
        config.s3 = s3_options(&endpoint);
        // The stall must outlast the test, not trigger the connector's retries.
        config.s3.stall_timeout = Duration::from_secs(90);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_mid_job_fails_it_cleanly() {
    let server = server().await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let h = stall_harness(&proxy).await;
    let key = h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let id = stalled_job(&h, &proxy, &server).await;
    assert!(
        std::fs::read_dir(h.store_root.join(".partial"))
            .unwrap()
            .count()
            > 0,
        "the stalled file is in the partial area"
    );

    h.vault
        .delete_external_keys(dev(), vec![key.clone()])
        .await
        .unwrap();
    let view = h.wait(&id).await;

    assert_finished(&view, JobState::Failed);
    let error = view.error.as_deref().unwrap();
    assert!(
        error.contains(&format!(
            "the external key {key} was deleted while the job ran"
        )) && error.contains("it stopped after 5 of 6 files"),
        "{error}"
    );
    let stored = assert_store_matches_events(&h, &view);
    assert_eq!(stored.len(), 5);
    assert!(!stored.contains_key("z-big.bin"));
    let events = h.events_of(&id);
    let mut expected = vec!["IngestionRequested", "ExternalKeyUsed", "IngestionListed"];
    expected.extend(["IngestionFileFetched"; 5]);
    expected.push("IngestionFailed");
    assert_eq!(kinds(&events), expected);
    assert!(matches!(
        &events[2],
        Event::IngestionListed { files: 6, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expiring_mid_job_fails_it() {
    let server = server().await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let h = stall_harness(&proxy).await;
    h.store_aws_key(SECRET, KeyDuration::Days(1)).await;
    let id = stalled_job(&h, &proxy, &server).await;

    h.clock.advance_millis(2 * MILLIS_PER_DAY);
    let view = h.wait(&id).await;

    assert_finished(&view, JobState::Failed);
    let error = view.error.as_deref().unwrap();
    assert!(error.contains("was expired while the job ran"), "{error}");
    assert_store_matches_events(&h, &view);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_leaves_no_partial_file_behind() {
    let server = server().await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let h = stall_harness(&proxy).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let id = stalled_job(&h, &proxy, &server).await;

    let cancelled = h.ingestor.cancel(dev(), &id).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let view = h.wait(&id).await;

    assert_finished(&view, JobState::Cancelled);
    let stored = assert_store_matches_events(&h, &view);
    assert!(!stored.contains_key("z-big.bin"));
    assert!(
        !h.store_root.join(".partial").join(id.as_str()).exists(),
        "the job's partial area is gone"
    );
    assert_eq!(kinds(&h.events_of(&id)).last(), Some(&"IngestionCancelled"));
    let again = h.ingestor.cancel(dev(), &id).await.unwrap_err();
    assert!(matches!(
        again,
        IngestError::Refused(DomainError::IngestionFinished { .. })
    ));
    // Someone else's job is reported as missing.
    let other = h
        .ingestor
        .cancel(crate::support::actor("admin"), &id)
        .await
        .unwrap_err();
    assert!(matches!(
        other,
        IngestError::Refused(DomainError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_503s_are_retried_to_success() {
    let server = server().await;
    let mut objects: Vec<(String, usize)> = (0..20)
        .map(|index| (format!("s{index:02}.csv"), 300_000 + index * 1000))
        .collect();
    // Several 1 MiB parts: the ranged, resumable path.
    objects.push(("multi.csv".to_owned(), 3_500_000));
    seed(&server, &objects).await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    proxy.inject(
        RequestMatch::get().path_contains(".csv"),
        Fault::DropMidBody {
            after_bytes: 50_000,
        },
        4,
    );
    proxy.inject(
        RequestMatch::get().path_contains(".csv"),
        Fault::Status503SlowDown,
        4,
    );
    proxy.inject(
        RequestMatch::get().path_contains("multi.csv").ranged_only(),
        Fault::DropMidBody {
            after_bytes: 200_000,
        },
        2,
    );
    let endpoint = proxy.endpoint();
    let h = harness(move |config| {
        config.s3 = s3_options(&endpoint);
        config.s3.part_size = 1 << 20;
    })
    .await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "", r"\.csv$")).await;

    assert_finished(&view, JobState::Completed);
    assert_eq!(view.files_fetched, 21, "{view:#?}");
    let stored = assert_store_matches_events(&h, &view);
    for (index, (key, size)) in objects.iter().enumerate() {
        assert!(
            stored.get(key) == Some(&generated_bytes(index as u64, 0, *size)),
            "{key}"
        );
    }
    assert_eq!(proxy.pending_faults(), 0, "every fault was exercised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_fails_that_file_only_and_it_never_appears() {
    let server = server().await;
    seed(
        &server,
        &[
            ("good1.csv".to_owned(), 5000),
            ("bad.csv".to_owned(), 5000),
            ("good2.csv".to_owned(), 5000),
        ],
    )
    .await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    proxy.inject(
        RequestMatch::get().path_contains("bad.csv"),
        Fault::FlipByte { offset: 1234 },
        10,
    );
    let h = harness(|config| config.s3 = s3_options(&proxy.endpoint())).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "", "")).await;

    assert_finished(&view, JobState::Completed);
    assert_eq!((view.files_fetched, view.files_failed), (2, 1));
    let failed = view
        .files
        .iter()
        .find(|file| file.path == "bad.csv")
        .unwrap();
    let reason = failed.error.as_deref().unwrap();
    assert!(reason.contains("failed verification"), "{reason}");
    let stored = assert_store_matches_events(&h, &view);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ["good1.csv", "good2.csv"]
    );
    assert!(h.events_of(&view.id).iter().any(|event| matches!(
        event,
        Event::IngestionFileFailed { path, .. } if path == "bad.csv"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_keys_that_climb_out_of_the_store_are_refused() {
    let server = server().await;
    seed(&server, &[("ok.csv".to_owned(), 100)]).await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    // A listing as a hostile or broken store could send it.
    let listing = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
        <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Name>samples</Name><Prefix></Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>\
        <IsTruncated>false</IsTruncated>\
        <Contents><Key>../../escaped.csv</Key><Size>100</Size></Contents>\
        <Contents><Key>a/../../../etc/escaped.csv</Key><Size>100</Size></Contents>\
        <Contents><Key>ok.csv</Key><Size>100</Size></Contents>\
        </ListBucketResult>";
    proxy.inject(
        RequestMatch::get().path_contains("list-type=2"),
        Fault::Respond(CannedResponse {
            status: 200,
            headers: vec![("content-type".to_owned(), "application/xml".to_owned())],
            body: Bytes::from(listing),
        }),
        1,
    );
    let h = harness(|config| config.s3 = s3_options(&proxy.endpoint())).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "", "")).await;

    assert_finished(&view, JobState::Completed);
    assert_eq!((view.files_fetched, view.files_failed), (1, 2));
    for file in view.files.iter().filter(|file| file.path != "ok.csv") {
        assert!(
            file.error
                .as_deref()
                .unwrap()
                .contains("climbs out of its folder"),
            "{file:?}"
        );
    }
    let stored = assert_store_matches_events(&h, &view);
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["ok.csv"]);
    // Nothing was written next to or above the store.
    let parent = h.store_root.parent().unwrap();
    let mut beside: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["samples", "vault"]);
    assert!(!parent.join("escaped.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_destination_holds_the_batch() {
    let server = server().await;
    seed(&server, &[("x/y.csv".to_owned(), 10)]).await;
    let h = harness(|config| config.s3 = s3_options(&server.endpoint())).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let id = h
        .ingestor
        .start(
            dev(),
            IngestRequest {
                selection: aws_selection(BUCKET, "x/", ""),
                destination: Some("dev/project-7/run 1/".to_owned()),
            },
        )
        .await
        .unwrap();
    let view = h.wait(&id).await;

    assert_eq!(view.destination, "dev/project-7/run 1");
    let stored = h.stored_files();
    let path = format!("dev/project-7/run 1/{}/y.csv", view.batch_id);
    assert!(stored.contains_key(&path), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_max_jobs_wait_queued_and_can_be_cancelled_there() {
    let server = server().await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let endpoint = proxy.endpoint();
    let h = harness(move |config| {
        config.s3 = s3_options(&endpoint);
        config.s3.stall_timeout = Duration::from_secs(90);
        config.max_jobs = 1;
    })
    .await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    let first = stalled_job(&h, &proxy, &server).await;

    let second = h
        .ingestor
        .start(dev(), request(aws_selection(BUCKET, "", "")))
        .await
        .unwrap();
    let view = h.ingestor.status(&second).unwrap();
    assert_eq!(view.state, JobState::Queued);
    assert_eq!(
        h.vault
            .telemetry()
            .value("keyledger_ingest_jobs_queued", ""),
        Some(1.0)
    );
    h.ingestor.cancel(dev(), &second).await.unwrap();
    assert_finished(&h.wait(&second).await, JobState::Cancelled);
    assert_eq!(
        kinds(&h.events_of(&second)),
        ["IngestionRequested", "IngestionCancelled"],
        "a queued job never leased the key"
    );

    let view = h.ingestor.status(&first).unwrap();
    assert_eq!(view.state, JobState::Fetching);
    assert_eq!((view.files_running, view.files_pending), (1, 0));
    h.ingestor.cancel(dev(), &first).await.unwrap();
    assert_finished(&h.wait(&first).await, JobState::Cancelled);
    let telemetry = h.vault.telemetry();
    assert_eq!(
        telemetry.value("keyledger_ingest_jobs_queued", ""),
        Some(0.0)
    );
    assert_eq!(
        telemetry.value("keyledger_ingest_jobs_running", ""),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_and_test_records_what_s3_said() {
    let server = server().await;
    let h = harness(|config| config.s3 = s3_options(&server.endpoint())).await;
    let key = h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h
        .ingestor
        .verify_external_key(dev(), &key, None)
        .await
        .unwrap();
    assert_eq!(view.last_verified_ok, Some(true));
    assert_eq!(
        view.last_verified_detail.as_deref(),
        Some("S3 accepted the key; it can see 1 bucket(s)")
    );
    let view = h
        .ingestor
        .verify_external_key(dev(), &key, Some(BUCKET))
        .await
        .unwrap();
    assert_eq!(
        view.last_verified_detail.as_deref(),
        Some("S3 accepted the key; it can list bucket `samples` (empty)")
    );
    // Another user's key is reported as missing, and nothing is leased for them.
    let error = h
        .ingestor
        .verify_external_key(crate::support::actor("admin"), &key, None)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        IngestError::Refused(DomainError::NotFound { .. })
    ));

    h.vault
        .delete_external_keys(dev(), vec![key])
        .await
        .unwrap();
    let wrong = h.store_aws_key(WRONG_SECRET, KeyDuration::Days(30)).await;
    let view = h
        .ingestor
        .verify_external_key(dev(), &wrong, None)
        .await
        .unwrap();
    assert_eq!(view.last_verified_ok, Some(false));
    let detail = view.last_verified_detail.unwrap();
    assert!(
        detail.contains("the stored AWS key was rejected by S3"),
        "{detail}"
    );
    assert!(!detail.contains("CANARY") && !detail.contains("WRONGsecret"));
}
