//! Sample ingestion through the real binary: an S3 server with SigV4 checking and the DNAnexus
//! emulator stand where AWS and DNAnexus would be.

use std::collections::BTreeMap;

use bytes::Bytes;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{Server, runtime};

const ACCESS_KEY_ID: &str = "AKIAINGESTTEST000001";
const SECRET: &str = "ingestSecretKey0123456789abcdefghijklmnO";
const DX_TOKEN: &str = "dxIngestToken0123456789abcdef";

/// A developer with their own key, ready to store external keys and ingest.
fn developer(server: &Server) -> String {
    server.create_user("dana", &["developer"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/dana/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "ingest", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    keyledger_domain::public::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The `IngestionFileFetched` events of a job, by path, from the audit export.
fn fetched_events(server: &Server, ingestion: &str) -> BTreeMap<String, Value> {
    let mut events = BTreeMap::new();
    let mut from = 1;
    loop {
        let page = server.get(
            &format!("/v1/events?from={from}&limit=10000"),
            &server.admin_key,
        );
        for line in page["lines"].as_array().unwrap() {
            let event = line.get("event").unwrap_or(line);
            if event["type"] == "IngestionFileFetched" && event["data"]["ingestion"] == ingestion {
                events.insert(
                    event["data"]["path"].as_str().unwrap().to_owned(),
                    event["data"].clone(),
                );
            }
        }
        match page["next_from"].as_u64() {
            Some(next) => from = next,
            None => return events,
        }
    }
}

#[test]
fn an_s3_bucket_is_ingested_with_the_stored_aws_key() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    // 1,500 objects in nested prefixes; the regex picks the 600 count tables.
    let key_of = |i: u64| {
        let folder = ["", "plate-1/", "plate-2/deep/"][(i % 3) as usize];
        let extension = if i % 5 < 2 { "counts.csv" } else { "notes.txt" };
        format!("runs/{folder}sample-{i:04}.{extension}")
    };
    let body_of = |i: u64| format!("gene,count\nBRCA1,{i}\nTP53,{}\n", i * 7).into_bytes();
    let objects = (0..1500).map(|i| (key_of(i), Bytes::from(body_of(i))));
    assert_eq!(
        rt.block_on(s3.put_objects("samples", objects)).unwrap(),
        1500
    );

    let endpoint = s3.endpoint();
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str()),
        ("KEYLEDGER_INGEST_MAX_ATTEMPTS", "3"),
    ]);
    let key = developer(&server);
    let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws));
    assert_eq!(status, 201, "{stored}");

    let dir = tempfile::tempdir().unwrap();
    let run = server.cli(
        dir.path(),
        &[
            "ingest",
            "s3",
            "--bucket",
            "samples",
            "--prefix",
            "runs/",
            "--pattern",
            r"\.csv$",
            "--json",
        ],
        "",
        &[("KEYLEDGER_API_KEY", &key)],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_selected"], 600);
    assert_eq!(job["files_fetched"], 600);
    assert_eq!(job["files_failed"], 0);

    let store = server
        .data_dir()
        .join("samples")
        .join(job["store_path"].as_str().unwrap());
    let events = fetched_events(&server, job["id"].as_str().unwrap());
    assert_eq!(events.len(), 600);
    for i in (0..1500).filter(|i| i % 5 < 2) {
        // Stored under the key's path relative to the prefix's folder.
        let key = key_of(i);
        let path = key.strip_prefix("runs/").unwrap().to_owned();
        let on_disk = std::fs::read(store.join(&path))
            .unwrap_or_else(|err| panic!("{path}: {err}\n{}", listing(&server.data_dir())));
        assert_eq!(on_disk, body_of(i), "{path}");
        let event = &events[&path];
        assert_eq!(event["sha256"], sha256_hex(&on_disk), "{path}");
        assert_eq!(event["size"], on_disk.len() as u64);
        assert_eq!(event["external_key"], stored["id"]);
    }
    // Nothing else reached the store: no .txt file, no partial file; beside the samples, only
    // the batch's manifest (tests/cli_ingest.rs checks it).
    let mut count = 0;
    let mut stack = vec![store.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path == store.join("SHA256SUMS") || path == store.join("manifest.json") {
                continue;
            } else {
                assert!(
                    path.to_string_lossy().ends_with(".csv"),
                    "{}",
                    path.display()
                );
                count += 1;
            }
        }
    }
    assert_eq!(count, 600);
    // The job shows in the list, and the external key's last use is recorded.
    let list = server.get("/v1/ingestions", &key);
    assert_eq!(list["ingestions"][0]["id"], job["id"]);
    let externals = server.get("/v1/external-keys", &key);
    assert!(
        externals["keys"][0]["last_used_at"].is_string(),
        "{externals}"
    );
}

#[test]
fn a_rejected_aws_key_fails_the_job_with_a_clear_message() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    rt.block_on(s3.put_object("samples", "runs/a.csv", Bytes::from_static(b"a,b\n")))
        .unwrap();
    let endpoint = s3.endpoint();
    let server = Server::start_with(&[("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())]);
    let key = developer(&server);
    let wrong = "wrongSecretKey0123456789abcdefghijklmnOP";
    let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": wrong, "region": "us-east-1" } });
    assert_eq!(
        server
            .call("POST", "/v1/external-keys", Some(&key), Some(&aws))
            .0,
        201
    );
    let dir = tempfile::tempdir().unwrap();
    let run = server.cli(
        dir.path(),
        &["ingest", "s3", "--bucket", "samples", "--pattern", "csv"],
        "",
        &[("KEYLEDGER_API_KEY", &key)],
    );
    assert_eq!(run.code, failed_job_exit(&server, &key), "{run:?}");
    assert!(
        run.stderr.contains("the stored AWS key was rejected"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong));
    // No AWS key at all: refused before a job exists.
    let (status, body) = server.call(
        "POST",
        "/v1/external-keys/delete",
        Some(&key),
        Some(&json!({ "ids": [server.get("/v1/external-keys", &key)["keys"][0]["id"]] })),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call(
        "POST",
        "/v1/ingestions",
        Some(&key),
        Some(&json!({ "provider": "aws", "bucket": "samples" })),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store one first"),
        "{body}"
    );
}

#[test]
fn a_dnanexus_project_is_ingested_with_the_stored_token() {
    let rt = runtime();
    let mut seed = Seed::new();
    let user = seed.add_user("dana");
    seed.add_token(&user, DX_TOKEN);
    let project = seed.add_project("rnaseq", &user);
    let mut expected = BTreeMap::new();
    for i in 0..60u64 {
        let folder = ["/", "/batch-1/", "/batch-1/lane-2/"][(i % 3) as usize];
        let name = if i % 2 == 0 {
            format!("sample-{i}.quant.sf")
        } else {
            format!("sample-{i}.log")
        };
        let bytes: Vec<u8> = (0..(20_000 + i * 997))
            .map(|b| (b * 31 + i) as u8)
            .collect();
        seed.add_file(
            &project,
            &format!("{folder}{name}"),
            Content::Bytes(bytes.clone()),
            8 * 1024,
        );
        if i % 2 == 0 {
            expected.insert(format!("{}{name}", folder.trim_start_matches('/')), bytes);
        }
    }
    let emulator = rt.block_on(DnanexusEmulator::start(seed)).unwrap();
    let endpoint = emulator.endpoint();
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_DNANEXUS_API_URL", endpoint.as_str()),
        ("KEYLEDGER_INGEST_MAX_ATTEMPTS", "3"),
    ]);
    let key = developer(&server);
    let dx = json!({ "label": "dx", "provider": "dnanexus", "duration": "30d", "dnanexus": { "token": DX_TOKEN } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&dx));
    assert_eq!(status, 201, "{stored}");
    // Save and test: /system/whoami with the stored token.
    let (status, verified) = server.call(
        "POST",
        &format!(
            "/v1/external-keys/{}/verify",
            stored["id"].as_str().unwrap()
        ),
        Some(&key),
        None,
    );
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["last_verified_ok"], true, "{verified}");

    let dir = tempfile::tempdir().unwrap();
    let run = server.cli(
        dir.path(),
        &[
            "ingest",
            "dnanexus",
            "--project",
            &project,
            "--folder",
            "/",
            "--pattern",
            r"\.quant\.sf$",
            "--json",
        ],
        "",
        &[("KEYLEDGER_API_KEY", &key)],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], expected.len() as u64, "{job}");
    let store = server
        .data_dir()
        .join("samples")
        .join(job["store_path"].as_str().unwrap());
    let events = fetched_events(&server, job["id"].as_str().unwrap());
    for (path, bytes) in &expected {
        let on_disk = std::fs::read(store.join(path)).unwrap_or_else(|err| panic!("{path}: {err}"));
        assert_eq!(&on_disk, bytes, "{path}");
        assert_eq!(events[path]["sha256"], sha256_hex(bytes), "{path}");
    }
    // A revoked token fails the next job with a clear message.
    emulator.control().revoke_token(DX_TOKEN);
    let run = server.cli(
        dir.path(),
        &[
            "ingest",
            "dnanexus",
            "--project",
            &project,
            "--pattern",
            "quant",
        ],
        "",
        &[("KEYLEDGER_API_KEY", &key)],
    );
    assert_eq!(run.code, failed_job_exit(&server, &key), "{run:?}");
    assert!(
        run.stderr.contains("DNAnexus token was rejected"),
        "{run:?}"
    );
}

/// The exit code `keyledger ingest` gives the user's newest job, which failed: 9 when the API
/// says the provider refused (`failure_kind`), else 5 (docs/cli.md).
fn failed_job_exit(server: &Server, key: &str) -> i32 {
    let id = server.get("/v1/ingestions", key)["ingestions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = server.get(&format!("/v1/ingestions/{id}"), key);
    assert_eq!(job["state"], "failed", "{job}");
    match job["failure_kind"].as_str() {
        Some("provider_rejected" | "not_found" | "unreachable") => 9,
        _ => 5,
    }
}

fn listing(dir: &std::path::Path) -> String {
    let output = std::process::Command::new("find")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}
