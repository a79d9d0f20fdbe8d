//! `GET /v1/samples?path=…` and `keyledger ingest lineage`: where a stored file came from, and
//! the other versions of the same S3 object, over two real jobs against the S3 test server.

use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{Server, developer_key, runtime};

const ACCESS_KEY_ID: &str = "AKIALINEAGETEST00001";
const SECRET: &str = "lineageSecretKey0123456789abcdefghijklmO";

fn sha256_hex(bytes: &[u8]) -> String {
    keyledger_domain::public::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Imports `runs/` with the CLI (which follows the job to its end) and returns the finished job.
fn import(server: &Server, key: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let run = server.cli(
        dir.path(),
        &[
            "ingest", "s3", "--bucket", "samples", "--prefix", "runs/", "--json",
        ],
        "",
        &[("KEYLEDGER_API_KEY", key)],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["state"], "completed", "{job}");
    job
}

fn lineage(server: &Server, key: &str, path: &str) -> (u16, Value) {
    server.call(
        "GET",
        &format!("/v1/samples?path={}", path.replace('/', "%2F")),
        Some(key),
        None,
    )
}

#[test]
fn a_stored_file_says_where_it_came_from_and_its_other_versions() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    for (name, body) in [("a.csv", "a,1\n"), ("b.csv", "b,1\n")] {
        rt.block_on(s3.put_object("samples", &format!("runs/{name}"), body.as_bytes().to_vec()))
            .unwrap();
    }
    let endpoint = s3.endpoint();
    let server = Server::start_with(&[("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())]);
    let key = developer_key(&server, "lin");
    let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws));
    assert_eq!(status, 201, "{stored}");

    let first = import(&server, &key);
    let changed = b"b,2\nb,3\n".to_vec();
    let new_etag = rt
        .block_on(s3.put_object("samples", "runs/b.csv", changed.clone()))
        .unwrap();
    let second = import(&server, &key);
    let store_path =
        |job: &Value, file: &str| format!("{}/{file}", job["store_path"].as_str().unwrap());

    // The changed object: its source, key, time and SHA-256, and the version before it.
    let (status, answer) = lineage(&server, &key, &store_path(&second, "b.csv"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["path"], store_path(&second, "b.csv"));
    assert_eq!(answer["sha256"], sha256_hex(&changed));
    assert_eq!(answer["size"], changed.len());
    assert_eq!(answer["source"]["bucket"], "samples");
    assert_eq!(answer["source"]["key"], "runs/b.csv");
    assert_eq!(answer["source"]["etag"], new_etag);
    assert_eq!(answer["external_key"], stored["id"]);
    assert_eq!(answer["ingestion"], second["id"]);
    assert!(
        answer["fetched_at"].is_string() || answer["fetched_at"].is_number(),
        "{answer}"
    );
    let earlier = answer["earlier"].as_array().unwrap();
    assert_eq!(earlier.len(), 1, "{answer}");
    assert_eq!(earlier[0]["path"], store_path(&first, "b.csv"));
    assert_eq!(earlier[0]["sha256"], sha256_hex(b"b,1\n"));
    assert_eq!(earlier[0]["ingestion"], first["id"]);
    assert_eq!(answer["later"], json!([]));

    // The first version knows the later one; the unchanged file was not fetched again (the
    // second import skipped it), so it has no other version.
    let (status, answer) = lineage(&server, &key, &store_path(&first, "b.csv"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["earlier"], json!([]));
    assert_eq!(answer["later"][0]["path"], store_path(&second, "b.csv"));
    let (status, answer) = lineage(&server, &key, &store_path(&first, "a.csv"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["earlier"], &answer["later"]),
        (&json!([]), &json!([]))
    );

    // The CLI says the same in words.
    let dir = tempfile::tempdir().unwrap();
    let run = server.cli(
        dir.path(),
        &["ingest", "lineage", &store_path(&second, "b.csv")],
        "",
        &[("KEYLEDGER_API_KEY", key.as_str())],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("s3://samples/runs/b.csv"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Earlier versions:"), "{}", run.stdout);
    assert!(run.stdout.contains(&sha256_hex(b"b,1\n")), "{}", run.stdout);

    // Unknown paths and other users' files are not found; a missing `path` is a 400.
    let (status, answer) = lineage(&server, &key, "lin/batch-x/b.csv");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{answer}"
    );
    let other = developer_key(&server, "oscar");
    let (status, _) = lineage(&server, &other, &store_path(&second, "b.csv"));
    assert_eq!(status, 404);
    let (status, answer) = server.call("GET", "/v1/samples", Some(&key), None);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{answer}"
    );
}
