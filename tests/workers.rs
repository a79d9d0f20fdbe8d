//! Ingestion workers on a JetStream work queue (decision 0025), end to end: a real
//! `nats-server -js`, the vault (`keyledger serve` with `[ingest] workers = "external"`) and
//! `keyledger worker` processes sharing one sample store, over the S3 test server (behind the
//! fault proxy) and the DNAnexus emulator.
//!
//! "Mid-file" is made exact, without sleeps: the fault proxy holds one object's GET until the
//! test opens its gate, and the worker that holds that transfer is the one killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
use keyledger_testkit::fault_proxy::{Fault, FaultProxy, Gate, RequestMatch};
use keyledger_testkit::nats::NatsServer;
use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{BIN, Server, runtime};

const ACCESS_KEY_ID: &str = "AKIAWORKERTEST000001";
const SECRET: &str = "workerSecretKey0123456789abcdefghijklmnO";
const DX_TOKEN: &str = "dxWorkerToken0123456789abcdef";
/// Long enough for any single step of a test; the tests wait for conditions, not for time.
const DEADLINE: Duration = Duration::from_secs(120);

/// The providers, NATS, the vault and a shared store.
struct Cluster {
    _s3: S3Server,
    proxy: FaultProxy,
    dnanexus: DnanexusEmulator,
    project: String,
    nats: NatsServer,
    vault: Server,
    store: tempfile::TempDir,
    /// Dana's key (she imports); the worker user's key.
    dana: String,
    worker_key: String,
    aws_key: String,
    /// The vault's `s3://` sample store, if not the folder `store`.
    store_url: Option<String>,
    /// What each S3 object and DNAnexus file holds, by job prefix then stored path.
    expected: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

fn body(job: usize, file: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + job * 7 + file) as u8).collect()
}

/// The operator's identity for the `s3://` sample store (not a user's key).
const STORE_ID: &str = "AKIASTOREOPERATOR001";
const STORE_SECRET: &str = "storeOperatorSecret0123456789abcdefghijk";

impl Cluster {
    fn start(rt: &tokio::runtime::Runtime, s3_jobs: usize, dx_jobs: usize) -> Cluster {
        Self::start_on(rt, s3_jobs, dx_jobs, None)
    }

    /// With `store_url` (`s3://store/…`), the vault's sample store is that prefix of the bucket
    /// `store` on the S3 test server, under the operator's key [`STORE_ID`].
    fn start_on(
        rt: &tokio::runtime::Runtime,
        s3_jobs: usize,
        dx_jobs: usize,
        store_url: Option<&str>,
    ) -> Cluster {
        Self::start_full(rt, s3_jobs, dx_jobs, store_url, &[])
    }

    /// [`Cluster::start_on`] with more settings of the vault (`KEYLEDGER_…` variables).
    fn start_full(
        rt: &tokio::runtime::Runtime,
        s3_jobs: usize,
        dx_jobs: usize,
        store_url: Option<&str>,
        vault_settings: &[(&str, &str)],
    ) -> Cluster {
        let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
        rt.block_on(s3.create_bucket("store")).unwrap();
        s3.iam()
            .add_access_key(keyledger_testkit::iam::AccessKey::new(
                STORE_ID,
                STORE_SECRET,
            ));
        rt.block_on(s3.create_bucket("samples")).unwrap();
        let mut expected = BTreeMap::new();
        let mut objects = Vec::new();
        for job in 0..s3_jobs {
            let mut files = BTreeMap::new();
            for file in 0..3 {
                let bytes = body(job, file, 40_000 + file * 1_000);
                // `zz-` sorts last: the object a test holds is its job's last file.
                let name = if file == 2 {
                    "zz-last.bin".to_owned()
                } else {
                    format!("part-{file}.bin")
                };
                objects.push((format!("job-{job:02}/{name}"), Bytes::from(bytes.clone())));
                files.insert(name, bytes);
            }
            expected.insert(format!("job-{job:02}/"), files);
        }
        rt.block_on(s3.put_objects("samples", objects)).unwrap();
        let proxy = rt.block_on(FaultProxy::start(s3.address())).unwrap();

        let mut seed = Seed::new();
        let user = seed.add_user("dana");
        seed.add_token(&user, DX_TOKEN);
        let project = seed.add_project("rnaseq", &user);
        for job in 0..dx_jobs {
            let mut files = BTreeMap::new();
            for file in 0..3 {
                let bytes = body(100 + job, file, 30_000);
                let name = format!("sample-{file}.quant.sf");
                seed.add_file(
                    &project,
                    &format!("/run-{job:02}/{name}"),
                    Content::Bytes(bytes.clone()),
                    8 * 1024,
                );
                files.insert(name, bytes);
            }
            expected.insert(format!("/run-{job:02}"), files);
        }
        let dnanexus = rt.block_on(DnanexusEmulator::start(seed)).unwrap();

        let nats = NatsServer::start().unwrap();
        let store = tempfile::tempdir().unwrap();
        let store_root = store.path().display().to_string();
        let s3_endpoint = proxy.endpoint();
        let dx_endpoint = dnanexus.endpoint();
        let nats_url = nats.url();
        let store_endpoint = s3.endpoint();
        let mut vault_env = vec![
            ("KEYLEDGER_NATS_URL", nats_url.as_str()),
            ("KEYLEDGER_INGEST_WORKERS", "external"),
            // Short, so a dead worker's job moves on quickly; workers progress-ack meanwhile.
            ("KEYLEDGER_INGEST_QUEUE_ACK_WAIT_MS", "2000"),
            ("KEYLEDGER_INGEST_STORE_ROOT", store_root.as_str()),
            ("KEYLEDGER_INGEST_S3_ENDPOINT", s3_endpoint.as_str()),
            ("KEYLEDGER_INGEST_DNANEXUS_API_URL", dx_endpoint.as_str()),
        ];
        if let Some(url) = store_url {
            vault_env.extend([
                ("KEYLEDGER_INGEST_STORE_URL", url),
                ("KEYLEDGER_STORE_ENDPOINT", store_endpoint.as_str()),
                ("KEYLEDGER_STORE_ACCESS_KEY_ID", STORE_ID),
                ("KEYLEDGER_STORE_SECRET_ACCESS_KEY", STORE_SECRET),
                ("KEYLEDGER_STORE_ALLOW_HTTP", "true"),
            ]);
        }
        vault_env.extend_from_slice(vault_settings);
        let vault = Server::start_with(&vault_env);
        vault.create_user("dana", &["member"]);
        vault.create_user("wrk", &["worker"]);
        let issue = |user: &str| {
            let (status, body) = vault.call(
                "POST",
                &format!("/v1/users/{user}/api-keys"),
                Some(&vault.admin_key),
                Some(&json!({ "name": "k", "duration": "7d" })),
            );
            assert_eq!(status, 201, "{body}");
            body["key"].as_str().unwrap().to_owned()
        };
        let (dana, worker_key) = (issue("dana"), issue("wrk"));
        let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
            "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
        let (status, stored) = vault.call("POST", "/v1/external-keys", Some(&dana), Some(&aws));
        assert_eq!(status, 201, "{stored}");
        let aws_key = stored["id"].as_str().unwrap().to_owned();
        let dx = json!({ "label": "dx", "provider": "dnanexus", "duration": "30d", "dnanexus": { "token": DX_TOKEN } });
        let (status, stored) = vault.call("POST", "/v1/external-keys", Some(&dana), Some(&dx));
        assert_eq!(status, 201, "{stored}");
        Cluster {
            _s3: s3,
            proxy,
            dnanexus,
            project,
            nats,
            vault,
            store,
            dana,
            worker_key,
            aws_key,
            store_url: store_url.map(str::to_owned),
            expected,
        }
    }

    /// Starts one `keyledger worker`; its log goes to `<store>/../worker-<n>.log`.
    fn worker(&self, n: usize, logs: &Path) -> Worker {
        self.worker_with_key(n, logs, &self.worker_key)
    }

    /// A worker of the cluster's sample store (`file://` or `s3://`).
    fn worker_with_key(&self, n: usize, logs: &Path, key: &str) -> Worker {
        self.worker_on(n, logs, key, &self.store_arg(), &self.store_env(logs))
    }

    /// The workers' `--store`: the vault's.
    fn store_arg(&self) -> String {
        match &self.store_url {
            Some(url) => url.clone(),
            None => format!("file://{}", self.store.path().display()),
        }
    }

    /// What a worker needs for an `s3://` store (the operator's key; partial downloads under
    /// `scratch`); nothing for a folder.
    fn store_env(&self, scratch: &Path) -> Vec<(&'static str, String)> {
        if self.store_url.is_none() {
            return Vec::new();
        }
        vec![
            ("KEYLEDGER_STORE_ENDPOINT", self._s3.endpoint()),
            ("KEYLEDGER_STORE_REGION", "us-east-1".to_owned()),
            ("KEYLEDGER_STORE_ACCESS_KEY_ID", STORE_ID.to_owned()),
            ("KEYLEDGER_STORE_SECRET_ACCESS_KEY", STORE_SECRET.to_owned()),
            ("KEYLEDGER_STORE_ALLOW_HTTP", "true".to_owned()),
            // The per-process scratch folder for partial downloads goes under the test's folder.
            ("TMPDIR", scratch.display().to_string()),
        ]
    }

    /// Every sample file in the store, `<store path>/<file>`, whichever kind it is: what any
    /// reader of the store sees (not the manifests, not partial files).
    fn stored(&self, rt: &tokio::runtime::Runtime) -> Vec<String> {
        let mut found: Vec<String> = match &self.store_url {
            None => files_under(self.store.path())
                .into_iter()
                .filter(|path| !path.starts_with(".partial"))
                .collect(),
            Some(url) => {
                let prefix = format!("{}/", url.trim_start_matches("s3://store/"));
                let client = self._s3.client();
                let listed = rt
                    .block_on(client.list_objects_v2().bucket("store").send())
                    .unwrap();
                listed
                    .contents()
                    .iter()
                    .filter_map(|object| object.key()?.strip_prefix(&prefix).map(str::to_owned))
                    .collect()
            }
        };
        found.retain(|path| !path.ends_with("/manifest.json") && !path.ends_with("/SHA256SUMS"));
        found.sort();
        found
    }

    /// Starts one `keyledger worker` on the sample store `store`, with `env` set.
    fn worker_on(
        &self,
        n: usize,
        logs: &Path,
        key: &str,
        store: &str,
        env: &[(&str, String)],
    ) -> Worker {
        self.worker_draining(n, logs, key, store, env, 1)
    }

    /// [`Cluster::worker_on`] whose running jobs get `drain_secs` on SIGTERM.
    fn worker_draining(
        &self,
        n: usize,
        logs: &Path,
        key: &str,
        store: &str,
        env: &[(&str, String)],
        drain_secs: u64,
    ) -> Worker {
        let drain = drain_secs.to_string();
        self.worker_args(
            n,
            logs,
            key,
            store,
            env,
            &["--drain-timeout-secs", drain.as_str()],
        )
    }

    /// [`Cluster::worker_on`] with these arguments instead of `--drain-timeout-secs 1`.
    fn worker_args(
        &self,
        n: usize,
        logs: &Path,
        key: &str,
        store: &str,
        env: &[(&str, String)],
        args: &[&str],
    ) -> Worker {
        let log = logs.join(format!("worker-{n}.log"));
        let child = Command::new(BIN)
            .args([
                "worker",
                "--vault",
                &self.vault.base,
                "--nats",
                &self.nats.url(),
                "--store",
                store,
                "--listen",
                "127.0.0.1:0",
                "--concurrency",
                "2",
            ])
            .args(args)
            .env("KEYLEDGER_WORKER_KEY", key)
            .env("KEYLEDGER_INGEST_S3_ENDPOINT", self.proxy.endpoint())
            .env(
                "KEYLEDGER_INGEST_DNANEXUS_API_URL",
                self.expected_dx_endpoint(),
            )
            .env("KEYLEDGER_INGEST_MAX_ATTEMPTS", "3")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start keyledger worker");
        Worker { child, log }
    }

    fn expected_dx_endpoint(&self) -> String {
        self.dnanexus.endpoint()
    }

    /// Starts an ingestion of one S3 prefix or DNAnexus folder; returns its id.
    fn ingest(&self, place: &str) -> String {
        self.ingest_with(place, false)
    }

    /// [`Cluster::ingest`], fetching even what the store holds when `force`.
    fn ingest_with(&self, place: &str, force: bool) -> String {
        let request = if place.starts_with('/') {
            json!({ "provider": "dnanexus", "project": self.project, "folder": place, "force": force })
        } else {
            json!({ "provider": "aws", "bucket": "samples", "prefix": place, "force": force })
        };
        let (status, job) =
            self.vault
                .call("POST", "/v1/ingestions", Some(&self.dana), Some(&request));
        assert_eq!(status, 202, "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the job has finished, and returns it.
    fn finished(&self, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let job = self.vault.get(&format!("/v1/ingestions/{id}"), &self.dana);
            if ["completed", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "job {id} did not finish: {job}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every event of the log, as the audit export shows it.
    fn events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from = 1;
        loop {
            let page = self.vault.get(
                &format!("/v1/events?from={from}&limit=10000"),
                &self.vault.admin_key,
            );
            for line in page["lines"].as_array().unwrap() {
                events.push(line.get("event").unwrap_or(line).clone());
            }
            match page["next_from"].as_u64() {
                Some(next) => from = next,
                None => return events,
            }
        }
    }
}

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The job of `job-00/`, whose last file's GET the proxy holds.
fn held_job(jobs: &BTreeMap<String, String>) -> String {
    jobs.iter()
        .find(|(_, place)| place.as_str() == "job-00/")
        .map(|(id, _)| id.clone())
        .unwrap()
}

impl Cluster {
    /// Once the held transfer has begun, kill -9 the worker that leased its job.
    fn kill_worker_holding(&self, workers: &mut [Worker], held_job: &str) {
        wait_for("the held transfer", || {
            self.proxy
                .requests()
                .iter()
                .any(|seen| seen.path_and_query.contains("job-00/zz-last.bin"))
        });
        let holder = workers
            .iter()
            .position(|worker| {
                worker
                    .log()
                    .lines()
                    .any(|line| line.contains(held_job) && line.contains("job leased"))
            })
            .expect("one worker leased the held job");
        workers[holder].child.kill().unwrap();
        workers[holder].child.wait().unwrap();
    }
}

/// Waits until `condition` holds (the proxy saw a request, a log says something).
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    keyledger_domain::public::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Every file under `dir`, relative, `/`-separated.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

#[test]
fn three_workers_run_twenty_jobs_and_one_killed_mid_file_loses_nothing() {
    let rt = runtime();
    let cluster = Cluster::start(&rt, 10, 10);
    let logs = tempfile::tempdir().unwrap();
    // The last file of the first S3 job is held at the proxy until the test says so.
    let gate = Gate::default();
    cluster.proxy.inject(
        RequestMatch::get().path_contains("job-00/zz-last.bin"),
        Fault::Hold(gate.clone()),
        1,
    );
    let mut jobs = BTreeMap::new();
    for place in cluster.expected.keys() {
        jobs.insert(cluster.ingest(place), place.clone());
    }
    assert_eq!(jobs.len(), 20);
    let held_job = held_job(&jobs);
    let mut workers: Vec<Worker> = (0..3).map(|n| cluster.worker(n, logs.path())).collect();

    // Mid-file: the held transfer has begun; kill -9 the worker that runs it.
    cluster.kill_worker_holding(&mut workers, &held_job);
    // The dead worker's request may go on now: nobody is left to use its answer.
    gate.open();

    for (id, place) in &jobs {
        let job = cluster.finished(id);
        assert_eq!(job["state"], "completed", "{place}: {job}");
        assert_eq!(job["files_fetched"], 3, "{place}: {job}");
        assert_eq!(job["files_failed"], 0, "{place}: {job}");
    }

    // Each file recorded exactly once, with the right size and SHA-256, and stored.
    let events = cluster.events();
    let mut recorded: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for event in &events {
        if event["type"] == "IngestionFileFetched" {
            let data = &event["data"];
            recorded
                .entry((
                    data["ingestion"].as_str().unwrap().to_owned(),
                    data["path"].as_str().unwrap().to_owned(),
                ))
                .or_default()
                .push(data);
        }
    }
    assert_eq!(recorded.len(), 60, "every file of every job");
    for (id, place) in &jobs {
        let job = cluster
            .vault
            .get(&format!("/v1/ingestions/{id}"), &cluster.dana);
        let batch = cluster
            .store
            .path()
            .join(job["store_path"].as_str().unwrap());
        let mut on_disk = files_under(&batch);
        on_disk.retain(|path| path != "manifest.json" && path != "SHA256SUMS");
        let expected = &cluster.expected[place];
        assert_eq!(
            on_disk,
            expected.keys().cloned().collect::<Vec<_>>(),
            "{place}: only the verified files, no partial one"
        );
        for (path, bytes) in expected {
            let events = &recorded[&(id.clone(), path.clone())];
            assert_eq!(
                events.len(),
                1,
                "{place}{path} recorded {} times",
                events.len()
            );
            assert_eq!(events[0]["sha256"], sha256_hex(bytes), "{place}{path}");
            assert_eq!(events[0]["size"], bytes.len() as u64, "{place}{path}");
            assert_eq!(
                &std::fs::read(batch.join(path)).unwrap(),
                bytes,
                "{place}{path}"
            );
        }
    }
    // The held job went to a second worker: two leases, and nothing left in the partial area.
    let leases = events
        .iter()
        .filter(|e| e["type"] == "ExternalKeyLeased" && e["data"]["ingestion"] == held_job.as_str())
        .count();
    assert!(
        leases >= 2,
        "the killed worker's job was leased again ({leases})"
    );
    let partial = cluster.store.path().join(".partial");
    assert_eq!(
        files_under(&partial),
        Vec::<String>::new(),
        "no partial file is left"
    );
    // No secret byte in the workers' logs or anywhere in the store they wrote.
    for path in files_under(cluster.store.path()) {
        let bytes = std::fs::read(cluster.store.path().join(&path)).unwrap();
        for secret in [SECRET, DX_TOKEN, cluster.worker_key.as_str()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret in {path}"
            );
        }
    }
    for worker in &workers {
        let log = worker.log();
        assert!(
            !log.contains(SECRET) && !log.contains(DX_TOKEN),
            "a secret in a worker's log"
        );
        assert!(
            !log.contains(&cluster.worker_key),
            "the worker's key in its log"
        );
    }
    for mut worker in workers {
        worker.stop();
    }
}

#[test]
fn a_worker_stops_a_job_whose_key_is_deleted_within_one_file() {
    key_deleted_mid_job(None);
}

/// The key of a running job is deleted while its worker holds a transfer; on the sample store
/// `store_url` (`None`: a folder).
fn key_deleted_mid_job(store_url: Option<&str>) {
    let rt = runtime();
    let cluster = Cluster::start_on(&rt, 1, 0, store_url);
    let logs = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    // Hold the job's second file: its first is recorded by then.
    cluster.proxy.inject(
        RequestMatch::get().path_contains("job-00/part-1.bin"),
        Fault::Hold(gate.clone()),
        1,
    );
    let id = cluster.ingest("job-00/");
    // One file at a time, so that "within one file" is exact: no file after the held one.
    let mut worker = cluster.worker_args(
        0,
        logs.path(),
        &cluster.worker_key,
        &cluster.store_arg(),
        &cluster.store_env(logs.path()),
        &["--drain-timeout-secs", "1", "--files-per-job", "1"],
    );
    wait_for("the held transfer", || {
        cluster
            .proxy
            .requests()
            .iter()
            .any(|seen| seen.path_and_query.contains("job-00/part-1.bin"))
    });
    let (status, body) = cluster.vault.call(
        "DELETE",
        &format!("/v1/external-keys/{}", cluster.aws_key),
        Some(&cluster.dana),
        None,
    );
    assert_eq!(status, 200, "{body}");
    gate.open();
    let job = cluster.finished(&id);
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["error"].as_str().unwrap_or_default();
    assert!(reason.contains("deleted"), "the reason says why: {job}");
    // Stopped within one file: the held file's report was refused and nothing after it ran.
    assert!(job["files_fetched"].as_u64().unwrap() <= 1, "{job}");
    let requests = cluster.proxy.requests();
    assert!(
        !requests
            .iter()
            .any(|seen| seen.path_and_query.contains("zz-last.bin")),
        "the job went on after its key was deleted"
    );
    // The refused file is not in the store, and nothing partial is.
    let stored = cluster.stored(&rt);
    let held = format!("{}/part-1.bin", job["store_path"].as_str().unwrap());
    assert!(!stored.contains(&held), "{stored:?}");
    assert_eq!(
        stored.len() as u64,
        job["files_fetched"].as_u64().unwrap(),
        "{stored:?}"
    );
    // A worker cannot lease a job with a forged ticket, nor call a user's routes.
    let (status, body) = cluster.vault.call(
        "POST",
        &format!("/v1/worker/ingestions/{id}/lease"),
        Some(&cluster.worker_key),
        Some(&json!({ "ticket": "00".repeat(32) })),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "not_handed_out", "{body}");
    let (status, _) =
        cluster
            .vault
            .call("GET", "/v1/external-keys", Some(&cluster.worker_key), None);
    assert_eq!(status, 403);
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker keeps running"
    );
    worker.stop();
    assert!(!worker.log().contains(SECRET) && !worker.log().contains(STORE_SECRET));

    // A worker started with a key that is not a worker's hands its job back and stops.
    let aws = json!({ "label": "lab2", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) =
        cluster
            .vault
            .call("POST", "/v1/external-keys", Some(&cluster.dana), Some(&aws));
    assert_eq!(status, 201, "{stored}");
    let waiting = cluster.ingest("job-00/");
    let mut impostor = cluster.worker_with_key(1, logs.path(), &cluster.dana);
    wait_for("the impostor to stop", || {
        impostor.child.try_wait().unwrap().is_some()
    });
    assert_eq!(impostor.child.wait().unwrap().code(), Some(5));
    assert!(
        impostor.log().contains("refuses this worker's key"),
        "{}",
        impostor.log()
    );
    let job = cluster
        .vault
        .get(&format!("/v1/ingestions/{waiting}"), &cluster.dana);
    assert_eq!(
        job["state"], "queued",
        "the job waits for a real worker: {job}"
    );
}

#[test]
fn jobs_requested_while_nats_is_down_all_run_once() {
    nats_down_during_requests(None);
}

/// 200 requests, the middle half while NATS is stopped; on the sample store `store_url`
/// (`None`: a folder).
fn nats_down_during_requests(store_url: Option<&str>) {
    let rt = runtime();
    let mut cluster = Cluster::start_on(&rt, 1, 0, store_url);
    let logs = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    // Every job fetches its three files (`force`): none is skipped as already stored.
    for _ in 0..50 {
        jobs.push(cluster.ingest_with("job-00/", true));
    }
    cluster.nats.stop().unwrap();
    for _ in 0..100 {
        jobs.push(cluster.ingest_with("job-00/", true));
    }
    cluster.nats.restart().unwrap();
    for _ in 0..50 {
        jobs.push(cluster.ingest_with("job-00/", true));
    }
    let workers: Vec<Worker> = (0..2).map(|n| cluster.worker(n, logs.path())).collect();
    for id in &jobs {
        let job = cluster.finished(id);
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(job["files_fetched"], 3, "{job}");
    }
    // None lost (every job ran), none twice (one lease each, three files each).
    let events = cluster.events();
    let count = |kind: &str, id: &str| {
        events
            .iter()
            .filter(|e| e["type"] == kind && e["data"]["ingestion"] == id)
            .count()
    };
    for id in &jobs {
        assert_eq!(
            count("ExternalKeyLeased", id),
            1,
            "{id} was leased more than once"
        );
        assert_eq!(count("IngestionFileFetched", id), 3, "{id}");
    }
    // Each in the store once: three files a job, nothing partial.
    assert_eq!(cluster.stored(&rt).len(), 3 * jobs.len());
    drop(workers);
}

/// The queue's own behaviour: the last delivery, and the drain on SIGTERM.
#[path = "workers_queue.rs"]
mod queue;

/// Incremental sync through the workers (decision 0033).
#[path = "workers_sync.rs"]
mod sync;

/// The same cluster with an `s3://` sample store (decision 0029).
#[path = "workers_s3.rs"]
mod on_s3;
