//! Incremental sync through the real binary: a second import of an unchanged S3 selection
//! fetches nothing (the files are recorded as skipped), after three objects are changed with
//! the real awscli it fetches those three as new versions, and `--force` fetches everything.

use bytes::Bytes;
use keyledger_testkit::awscli::aws;
use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{Server, developer_key, runtime};

const ACCESS_KEY_ID: &str = "AKIASYNCTESTKEY00001";
const SECRET: &str = "syncSecretKey0123456789abcdefghijklmnopO";

fn import(server: &Server, key: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "ingest", "s3", "--bucket", "samples", "--prefix", "runs/", "--json",
    ];
    args.extend_from_slice(extra);
    let run = server.cli(dir.path(), &args, "", &[("KEYLEDGER_API_KEY", key)]);
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["state"], "completed", "{job}");
    job
}

fn counts(job: &Value) -> (u64, u64, u64) {
    (
        job["files_selected"].as_u64().unwrap(),
        job["files_fetched"].as_u64().unwrap(),
        job["files_skipped"].as_u64().unwrap(),
    )
}

#[test]
fn a_second_import_fetches_only_what_changed() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    let body_of = |i: u64| Bytes::from(format!("sample {i}\n").repeat(10));
    let objects = (0..20).map(|i| (format!("runs/s{i:02}.csv"), body_of(i)));
    assert_eq!(rt.block_on(s3.put_objects("samples", objects)).unwrap(), 20);
    let endpoint = s3.endpoint();
    let server = Server::start_with(&[("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())]);
    let key = developer_key(&server, "syd");
    let aws_key = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws_key));
    assert_eq!(status, 201, "{stored}");

    let first = import(&server, &key, &[]);
    assert_eq!(counts(&first), (20, 20, 0), "{first}");

    // Nothing changed: nothing is fetched, every file is recorded as skipped.
    let second = import(&server, &key, &[]);
    assert_eq!(counts(&second), (20, 0, 20), "{second}");
    assert_eq!(second["bytes_skipped"], first["bytes_fetched"]);
    assert_eq!(second["files_failed"], 0);

    // Three objects change, uploaded the way users upload them: with the real awscli.
    let upload_dir = tempfile::tempdir().unwrap();
    for i in [3u64, 7, 11] {
        let local = upload_dir.path().join(format!("s{i:02}.csv"));
        std::fs::write(&local, format!("changed sample {i}\n")).unwrap();
        aws(
            &endpoint,
            ACCESS_KEY_ID,
            SECRET,
            &[
                "s3",
                "cp",
                local.to_str().unwrap(),
                &format!("s3://samples/runs/s{i:02}.csv"),
            ],
            &[],
        )
        .unwrap();
    }
    let third = import(&server, &key, &[]);
    assert_eq!(counts(&third), (20, 3, 17), "{third}");
    let job = server.get(
        &format!("/v1/ingestions/{}", third["id"].as_str().unwrap()),
        &key,
    );
    let paths: Vec<&str> = job["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["s03.csv", "s07.csv", "s11.csv"]);

    // The new version's lineage names the first one.
    let path = format!("{}/s07.csv", third["store_path"].as_str().unwrap());
    let (status, lineage) = server.call(
        "GET",
        &format!("/v1/samples?path={}", path.replace('/', "%2F")),
        Some(&key),
        None,
    );
    assert_eq!(status, 200, "{lineage}");
    assert_eq!(lineage["earlier"][0]["ingestion"], first["id"], "{lineage}");

    // The skip is an event, with its counts.
    let events = server.get("/v1/events?from=1&limit=10000", &server.admin_key);
    let skipped: Vec<&Value> = events["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.get("event").unwrap_or(line))
        .filter(|event| event["type"] == "IngestionFilesSkipped")
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0]["data"]["ingestion"], second["id"]);
    assert_eq!(skipped[0]["data"]["files"], 20);
    assert_eq!(skipped[1]["data"]["files"], 17);

    // --force fetches everything again.
    let forced = import(&server, &key, &["--force"]);
    assert_eq!(counts(&forced), (20, 20, 0), "{forced}");
}
