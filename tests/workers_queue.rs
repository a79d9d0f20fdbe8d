//! The work queue's own guarantees with real processes: a job no worker can finish is failed
//! by its last delivery (`ingest.max_deliveries`) and terminated; a worker told to stop
//! (SIGTERM) finishes what finishes within its drain time, hands back what does not, takes no
//! new job and exits 0. Every "mid-transfer" is a transfer the fault proxy holds; nothing waits
//! for time.

use super::*;

impl Cluster {
    /// The shared consumer's jobs not yet delivered, and delivered but not acknowledged.
    fn queue_counts(&self, rt: &tokio::runtime::Runtime) -> (u64, usize) {
        rt.block_on(async {
            let bus = keyledger_bus::BusConfig::from_url(self.nats.url());
            let client = bus.connect("keyledger-test").await.unwrap();
            let js = keyledger_bus::jobs::context(client, &bus);
            let queue = keyledger_bus::jobs::JobQueueConfig::default();
            let mut consumer = keyledger_bus::jobs::bind_job_consumer(&js, &queue)
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            (info.num_pending, info.num_ack_pending)
        })
    }

    /// Waits until the proxy has seen `count` requests whose path contains `fragment`.
    fn wait_requests(&self, fragment: &str, count: usize) {
        wait_for(&format!("{count} requests of {fragment}"), || {
            self.proxy
                .requests()
                .iter()
                .filter(|seen| seen.path_and_query.contains(fragment))
                .count()
                >= count
        });
    }

    /// The events of one job, by type.
    pub(super) fn job_events(&self, id: &str, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == kind && e["data"]["ingestion"] == id)
            .map(|e| e["data"].clone())
            .collect()
    }

    /// Every stored file of the job's batch folder (not its manifest files).
    pub(super) fn stored_files(&self, id: &str) -> Vec<String> {
        let job = self.vault.get(&format!("/v1/ingestions/{id}"), &self.dana);
        let mut on_disk = files_under(&self.store.path().join(job["store_path"].as_str().unwrap()));
        on_disk.retain(|path| path != "manifest.json" && path != "SHA256SUMS");
        on_disk
    }
}

impl Worker {
    fn terminate(&self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
    }

    fn exit_code(&mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }
}

/// Each file of the job recorded once, and exactly the recorded ones in its batch.
fn assert_recorded_once(cluster: &Cluster, id: &str) -> Vec<String> {
    let mut recorded: Vec<String> = cluster
        .job_events(id, "IngestionFileFetched")
        .iter()
        .map(|data| data["path"].as_str().unwrap().to_owned())
        .collect();
    recorded.sort();
    let mut unique = recorded.clone();
    unique.dedup();
    assert_eq!(recorded, unique, "a file recorded twice");
    assert_eq!(
        cluster.stored_files(id),
        recorded,
        "the batch holds exactly the recorded files"
    );
    recorded
}

#[test]
fn a_job_no_worker_can_finish_is_failed_by_its_last_delivery_and_terminated() {
    let rt = runtime();
    let cluster = Cluster::start_full(&rt, 1, 0, None, &[("KEYLEDGER_INGEST_MAX_DELIVERIES", "3")]);
    let logs = tempfile::tempdir().unwrap();
    // The job's last file is held on every delivery that runs the job: its worker is killed
    // while it holds the transfer, twice.
    let gate = Gate::default();
    cluster.proxy.inject(
        RequestMatch::get().path_contains("job-00/zz-last.bin"),
        Fault::Hold(gate.clone()),
        2,
    );
    let id = cluster.ingest("job-00/");
    for delivery in 1..=2 {
        let mut worker = cluster.worker(delivery, logs.path());
        cluster.wait_requests("job-00/zz-last.bin", delivery);
        worker.child.kill().unwrap();
        worker.child.wait().unwrap();
    }
    // The third delivery (after the dead worker's ack wait) is the last: it fails the job.
    let mut last = cluster.worker(3, logs.path());
    let job = cluster.finished(&id);
    assert_eq!(job["state"], "failed", "{job}");
    let failed = cluster.job_events(&id, "IngestionFailed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("delivered 3 times and no worker finished it"),
        "{reason}"
    );
    assert_eq!(cluster.job_events(&id, "ExternalKeyLeased").len(), 3);
    // Terminated: nothing left on the queue, pending or unacknowledged.
    wait_for("the message to leave the queue", || {
        cluster.queue_counts(&rt) == (0, 0)
    });
    // Nothing partial visible: only recorded files in the batch, no partial file left, and
    // the held file nowhere.
    let recorded = assert_recorded_once(&cluster, &id);
    assert!(!recorded.iter().any(|path| path == "zz-last.bin"));
    assert_eq!(
        files_under(&cluster.store.path().join(".partial")),
        Vec::<String>::new(),
        "no partial file is left"
    );
    assert!(
        last.log().contains("last delivery: failing the job"),
        "{}",
        last.log()
    );
    gate.open();
    last.stop();
}

#[test]
fn a_draining_worker_finishes_a_job_within_its_drain_time_and_takes_no_new_one() {
    let rt = runtime();
    let cluster = Cluster::start(&rt, 2, 0);
    let logs = tempfile::tempdir().unwrap();
    let store = format!("file://{}", cluster.store.path().display());
    let gate = Gate::default();
    cluster.proxy.inject(
        RequestMatch::get().path_contains("job-00/zz-last.bin"),
        Fault::Hold(gate.clone()),
        1,
    );
    let first = cluster.ingest("job-00/");
    let mut draining =
        cluster.worker_draining(0, logs.path(), &cluster.worker_key, &store, &[], 600);
    cluster.wait_requests("job-00/zz-last.bin", 1);
    draining.terminate();
    wait_for("the worker to drain", || {
        draining.log().contains("draining")
    });
    // A job requested while the worker drains is not its.
    let second = cluster.ingest("job-01/");
    // The held transfer goes on: the job finishes within the drain time and is acknowledged.
    gate.open();
    assert_eq!(draining.exit_code(), Some(0), "{}", draining.log());
    let job = cluster.finished(&first);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");
    assert_eq!(assert_recorded_once(&cluster, &first).len(), 3);
    assert!(
        !draining.log().contains(&second),
        "the draining worker took a new job: {}",
        draining.log()
    );
    // Another worker runs the second job; the first is not delivered again (it was acked).
    let mut next = cluster.worker(1, logs.path());
    let job = cluster.finished(&second);
    assert_eq!(job["state"], "completed", "{job}");
    wait_for("the queue to empty", || cluster.queue_counts(&rt) == (0, 0));
    assert_eq!(cluster.job_events(&first, "ExternalKeyLeased").len(), 1);
    assert!(!next.log().contains(&first), "{}", next.log());
    next.stop();
}

#[test]
fn a_draining_worker_hands_back_a_job_that_outlasts_its_drain_time() {
    let rt = runtime();
    let cluster = Cluster::start(&rt, 1, 0);
    let logs = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    // Held until the end of the test: the transfer cannot finish within the drain time.
    cluster.proxy.inject(
        RequestMatch::get().path_contains("job-00/zz-last.bin"),
        Fault::Hold(gate.clone()),
        1,
    );
    let id = cluster.ingest("job-00/");
    // One second to drain: the transfer is held far longer.
    let mut draining = cluster.worker(0, logs.path());
    cluster.wait_requests("job-00/zz-last.bin", 1);
    draining.terminate();
    assert_eq!(draining.exit_code(), Some(0), "{}", draining.log());
    assert!(
        draining
            .log()
            .contains("job stopped by the drain; handed back"),
        "{}",
        draining.log()
    );
    // Handed back (-NAK): another worker takes it at once and completes it.
    let mut next = cluster.worker(1, logs.path());
    let job = cluster.finished(&id);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");
    assert_eq!(assert_recorded_once(&cluster, &id).len(), 3);
    assert_eq!(cluster.job_events(&id, "ExternalKeyLeased").len(), 2);
    assert!(
        next.log().contains(&id),
        "the second worker ran it: {}",
        next.log()
    );
    wait_for("the queue to empty", || cluster.queue_counts(&rt) == (0, 0));
    gate.open();
    next.stop();
}
