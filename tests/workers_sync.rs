//! What a worker fetches of a job (decision 0033): only what the store does not hold yet (the
//! worker lists, the vault answers which files the store already holds in the same version by
//! the embedded jobs' rule; `force` fetches everything), and several files at once.

use keyledger_testkit::awscli::aws;

use super::*;

impl Cluster {
    /// Object GETs the S3 test server answered (through the proxy) so far.
    fn object_gets(&self) -> usize {
        self.proxy
            .requests()
            .iter()
            .filter(|seen| seen.path_and_query.starts_with("/samples/job-"))
            .count()
    }
}

/// `(selected, fetched, skipped)` of a finished, completed job.
fn counts(cluster: &Cluster, id: &str) -> (u64, u64, u64) {
    let job = cluster.finished(id);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_failed"], 0, "{job}");
    (
        job["files_selected"].as_u64().unwrap(),
        job["files_fetched"].as_u64().unwrap(),
        job["files_skipped"].as_u64().unwrap(),
    )
}

#[test]
fn workers_skip_what_the_store_holds_and_fetch_only_what_changed() {
    let rt = runtime();
    // Two prefixes of three objects each, imported together as `job-`.
    let cluster = Cluster::start(&rt, 2, 0);
    let logs = tempfile::tempdir().unwrap();
    let mut workers: Vec<Worker> = (0..2).map(|n| cluster.worker(n, logs.path())).collect();

    let first = cluster.ingest_with("job-", false);
    assert_eq!(counts(&cluster, &first), (6, 6, 0));

    // Nothing changed: the second run through the workers fetches nothing.
    let gets = cluster.object_gets();
    let second = cluster.ingest_with("job-", false);
    assert_eq!(counts(&cluster, &second), (6, 0, 6));
    assert_eq!(cluster.object_gets(), gets, "an object was fetched again");
    let job = cluster
        .vault
        .get(&format!("/v1/ingestions/{second}"), &cluster.dana);
    assert_eq!(job["bytes_skipped"], 2 * (40_000 + 41_000 + 42_000));

    // Three objects change, uploaded with the real awscli.
    let changed = [
        "job-00/part-0.bin",
        "job-01/part-1.bin",
        "job-01/zz-last.bin",
    ];
    let upload = tempfile::tempdir().unwrap();
    for (n, key) in changed.iter().enumerate() {
        let local = upload.path().join(format!("changed-{n}"));
        std::fs::write(&local, format!("changed object {n}\n")).unwrap();
        aws(
            &cluster._s3.endpoint(),
            ACCESS_KEY_ID,
            SECRET,
            &[
                "s3",
                "cp",
                local.to_str().unwrap(),
                &format!("s3://samples/{key}"),
            ],
            &[],
        )
        .unwrap();
    }
    let gets = cluster.object_gets();
    let third = cluster.ingest_with("job-", false);
    assert_eq!(counts(&cluster, &third), (6, 3, 3));
    assert_eq!(cluster.object_gets() - gets, 3, "only the changed objects");
    let mut fetched: Vec<String> = cluster
        .job_events(&third, "IngestionFileFetched")
        .iter()
        .map(|data| data["path"].as_str().unwrap().to_owned())
        .collect();
    fetched.sort();
    assert_eq!(fetched, changed);
    assert_eq!(cluster.stored_files(&third), changed);

    // The skips are events, one per run; `force` skips nothing, and says so in the log.
    let skipped: Vec<u64> = [&second, &third]
        .iter()
        .flat_map(|id| cluster.job_events(id, "IngestionFilesSkipped"))
        .map(|data| data["files"].as_u64().unwrap())
        .collect();
    assert_eq!(skipped, [6, 3]);
    let forced = cluster.ingest_with("job-", true);
    assert_eq!(counts(&cluster, &forced), (6, 6, 0));
    assert_eq!(cluster.job_events(&forced, "IngestionSyncForced").len(), 1);
    assert!(
        cluster
            .job_events(&forced, "IngestionFilesSkipped")
            .is_empty()
    );

    // A worker asking for another lease's answer is refused with the reason.
    let (status, body) = cluster.vault.call(
        "POST",
        &format!("/v1/worker/ingestions/{forced}/unchanged"),
        Some(&cluster.worker_key),
        Some(&json!({ "lease": "lease_made_up", "files": [] })),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "lease_ended", "{body}");
    for worker in &mut workers {
        worker.stop();
    }
}

#[test]
fn a_worker_fetches_the_files_of_one_job_at_once() {
    let rt = runtime();
    let cluster = Cluster::start(&rt, 1, 0);
    let logs = tempfile::tempdir().unwrap();
    // Two files of the job are held until both transfers have begun: one after the other,
    // the second would never start.
    let gate = Gate::default();
    for held in ["job-00/part-0.bin", "job-00/zz-last.bin"] {
        cluster.proxy.inject(
            RequestMatch::get().path_contains(held),
            Fault::Hold(gate.clone()),
            1,
        );
    }
    let id = cluster.ingest("job-00/");
    let mut worker = cluster.worker(0, logs.path());
    wait_for("both held transfers", || {
        let seen = cluster.proxy.requests();
        ["job-00/part-0.bin", "job-00/zz-last.bin"]
            .iter()
            .all(|held| seen.iter().any(|s| s.path_and_query.contains(held)))
    });
    gate.open();
    let job = cluster.finished(&id);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");
    // The same idempotent reports: each file once, with its bytes.
    let fetched = cluster.job_events(&id, "IngestionFileFetched");
    assert_eq!(fetched.len(), 3, "{fetched:?}");
    let job = cluster
        .vault
        .get(&format!("/v1/ingestions/{id}"), &cluster.dana);
    let batch = cluster
        .store
        .path()
        .join(job["store_path"].as_str().unwrap());
    for (path, bytes) in &cluster.expected["job-00/"] {
        assert_eq!(&std::fs::read(batch.join(path)).unwrap(), bytes, "{path}");
        let event = fetched
            .iter()
            .find(|data| data["path"] == path.as_str())
            .unwrap();
        assert_eq!(event["sha256"], sha256_hex(bytes), "{path}");
    }
    assert_eq!(cluster.stored_files(&id).len(), 3);
    worker.stop();
}
