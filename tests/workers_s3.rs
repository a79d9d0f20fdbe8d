//! Workers sharing an `s3://` sample store (decision 0029) on the testkit S3 server (a separate
//! bucket, under the operator's own key): every file lands once with the right bytes and
//! SHA-256, and the transfer a killed worker held never becomes visible in the store; the
//! key-deleted and NATS-down cases of `workers.rs` run on it too.

use super::*;

const PREFIX: &str = "shared";

/// Every object visible in the store bucket, with its bytes (what any reader of the store sees).
fn visible(rt: &tokio::runtime::Runtime, cluster: &Cluster) -> BTreeMap<String, Vec<u8>> {
    rt.block_on(async {
        let client = cluster._s3.client();
        let listed = client
            .list_objects_v2()
            .bucket("store")
            .send()
            .await
            .unwrap();
        let mut objects = BTreeMap::new();
        for object in listed.contents() {
            let key = object.key().unwrap().to_owned();
            let got = client
                .get_object()
                .bucket("store")
                .key(&key)
                .send()
                .await
                .unwrap();
            let bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
            objects.insert(key, bytes);
        }
        objects
    })
}

#[test]
fn workers_share_an_s3_store_and_a_killed_transfer_is_never_visible() {
    let rt = runtime();
    let store = format!("s3://store/{PREFIX}");
    // The vault serves files and writes manifests from the same store.
    let cluster = Cluster::start_on(&rt, 3, 2, Some(&store));
    let logs = tempfile::tempdir().unwrap();
    let env = cluster.store_env(logs.path());
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
    let held_job = held_job(&jobs);
    let mut workers: Vec<Worker> = (0..2)
        .map(|n| cluster.worker_on(n, logs.path(), &cluster.worker_key, &store, &env))
        .collect();

    cluster.kill_worker_holding(&mut workers, &held_job);
    // The transfer broke off with its worker: nothing of it is in the store.
    let held = cluster
        .vault
        .get(&format!("/v1/ingestions/{held_job}"), &cluster.dana);
    let held_key = format!(
        "{PREFIX}/{}/zz-last.bin",
        held["store_path"].as_str().unwrap()
    );
    assert!(
        !visible(&rt, &cluster).contains_key(&held_key),
        "a broken-off download is not visible"
    );
    gate.open();

    let mut expected_objects = BTreeMap::new();
    for (id, place) in &jobs {
        let job = cluster.finished(id);
        assert_eq!(job["state"], "completed", "{place}: {job}");
        assert_eq!(job["files_fetched"], 3, "{place}: {job}");
        let batch = job["store_path"].as_str().unwrap();
        for (path, bytes) in &cluster.expected[place] {
            expected_objects.insert(format!("{PREFIX}/{batch}/{path}"), (id.clone(), bytes));
        }
    }
    // Exactly the verified files (and each batch's manifest files, which the vault wrote): none
    // missing, no partial or extra object, the right bytes, each recorded once with its SHA-256.
    let mut objects = visible(&rt, &cluster);
    for (id, place) in &jobs {
        let job = cluster
            .vault
            .get(&format!("/v1/ingestions/{id}"), &cluster.dana);
        let batch = job["store_path"].as_str().unwrap();
        for name in ["manifest.json", "SHA256SUMS"] {
            let manifest = objects.remove(&format!("{PREFIX}/{batch}/{name}"));
            assert!(manifest.is_some(), "{place}: {name} in the store");
        }
    }
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        expected_objects.keys().collect::<Vec<_>>()
    );
    let events = cluster.events();
    for (key, (id, bytes)) in &expected_objects {
        assert_eq!(&objects[key], *bytes, "{key}");
        let path = key.rsplit('/').next().unwrap();
        let recorded: Vec<&Value> = events
            .iter()
            .filter(|e| {
                e["type"] == "IngestionFileFetched"
                    && e["data"]["ingestion"] == id.as_str()
                    && e["data"]["path"] == path
            })
            .collect();
        assert_eq!(recorded.len(), 1, "{key} recorded once");
        assert_eq!(recorded[0]["data"]["sha256"], sha256_hex(bytes), "{key}");
    }
    // The vault serves a stored file (and a range of it) from the object store.
    let (key, (id, bytes)) = expected_objects.iter().next().unwrap();
    let path = key.rsplit('/').next().unwrap();
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/ingestions/{id}/files/{path}", cluster.vault.base);
    let whole = http.get(&url).bearer_auth(&cluster.dana).send().unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().unwrap().as_ref(), bytes.as_slice());
    let part = http
        .get(&url)
        .bearer_auth(&cluster.dana)
        .header("range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &bytes[10..20]);
    for worker in &workers {
        let log = worker.log();
        assert!(!log.contains(STORE_SECRET), "the store's secret in a log");
        assert!(!log.contains(SECRET) && !log.contains(DX_TOKEN));
    }
    for mut worker in workers {
        worker.stop();
    }
}

#[test]
fn a_worker_stops_a_job_whose_key_is_deleted_within_one_file_on_s3() {
    super::key_deleted_mid_job(Some(&format!("s3://store/{PREFIX}")));
}

#[test]
fn jobs_requested_while_nats_is_down_all_run_once_on_s3() {
    super::nats_down_during_requests(Some(&format!("s3://store/{PREFIX}")));
}
