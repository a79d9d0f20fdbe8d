//! `POST /v1/ingestions/preview` and `keyledger ingest … --dry-run` against the S3 test server
//! (SigV4 checked): what a selection picks, bounded in a bucket of 50,000 objects, nothing
//! fetched or recorded.

use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{Server, developer_key, runtime};

const ACCESS_KEY_ID: &str = "AKIAPREVIEWTEST00001";
const SECRET: &str = "previewSecretKey0123456789abcdefghijklmO";

/// The object key of object `i`: 50 folders of 1,000, two in five a count table.
fn key_of(i: u64) -> String {
    let extension = if i % 5 < 2 { "counts.csv" } else { "notes.txt" };
    format!("runs/plate-{:02}/sample-{i:05}.{extension}", i / 1000)
}

/// 50,000 objects, seeded as files straight into the s3s-fs directory behind the test server
/// (s3s-fs lists by walking that directory: each object is a file, its size the file's): far
/// quicker than 50,000 PUTs, and the listing is what a preview reads. Object `i` has `i % 7 + 1`
/// bytes.
fn seed(s3: &S3Server) {
    for i in 0..50_000u64 {
        let path = s3.object_path("samples", &key_of(i));
        if i % 1000 == 0 {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        }
        std::fs::write(&path, vec![b'x'; (i % 7 + 1) as usize]).unwrap();
    }
}

fn preview(server: &Server, key: &str, query: &str, body: &Value) -> (u16, Value) {
    server.call(
        "POST",
        &format!("/v1/ingestions/preview{query}"),
        Some(key),
        Some(body),
    )
}

#[test]
fn a_preview_counts_what_a_selection_picks_and_stops_at_its_limit() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    seed(&s3);
    let endpoint = s3.endpoint();
    // A limit of 3,000 entries: three ListObjectsV2 pages, each of which s3s-fs answers by
    // walking all 50,000 files (a real S3 does not), so the test stays quick in a debug build.
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str()),
        ("KEYLEDGER_INGEST_PREVIEW_MAX_SCANNED", "3000"),
    ]);
    let key = developer_key(&server, "pia");

    // No key for the provider yet: the same 409 as a job.
    let everything =
        json!({ "provider": "aws", "bucket": "samples", "prefix": "runs/", "pattern": r"\.csv$" });
    let (status, body) = preview(&server, &key, "", &everything);
    assert_eq!(status, 409, "{body}");

    let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws));
    assert_eq!(status, 201, "{stored}");

    // The whole bucket: the listing stops at the limit and says so.
    let (status, page) = preview(&server, &key, "", &everything);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["complete"], false, "{page}");
    assert_eq!(page["scanned"], 3_000);
    assert_eq!(page["limit"], 3_000);
    assert_eq!(page["matched"], 1_200, "two in five of the first 3,000");
    let expected_bytes: u64 = (0..3_000u64).filter(|i| i % 5 < 2).map(|i| i % 7 + 1).sum();
    assert_eq!(page["total_bytes"], expected_bytes);
    assert!(
        page["note"].as_str().unwrap().contains("stopped listing"),
        "{page}"
    );
    let files = page["files"].as_array().unwrap();
    assert_eq!(files.len(), 100);
    assert_eq!(files[0]["path"], "plate-00/sample-00000.counts.csv");
    assert_eq!(
        files[0]["remote_path"],
        "runs/plate-00/sample-00000.counts.csv"
    );
    assert_eq!(files[0]["size"], 1);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(cursor, files[99]["remote_path"]);

    // The next page continues after the cursor.
    let (status, next) = preview(
        &server,
        &key,
        &format!("?cursor={}&page_size=3", cursor.replace('/', "%2F")),
        &everything,
    );
    assert_eq!(status, 200, "{next}");
    let paths: Vec<&str> = next["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "plate-00/sample-00250.counts.csv",
            "plate-00/sample-00251.counts.csv",
            "plate-00/sample-00255.counts.csv"
        ]
    );

    // One plate: complete, exact counts, the last page has no cursor.
    let plate = json!({ "provider": "aws", "bucket": "samples", "prefix": "runs/plate-07/", "pattern": r"\.csv$", "destination": "pia/run-1" });
    let (status, page) = preview(&server, &key, "?page_size=1000", &plate);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["complete"], true, "{page}");
    assert_eq!(page["matched"], 400);
    assert!(page.get("next_cursor").is_none(), "{page}");
    assert!(page.get("note").is_none(), "{page}");
    assert_eq!(page["files"][0]["path"], "sample-07000.counts.csv");

    // What the API refuses, with what was wrong.
    for (body, query, status, code) in [
        (
            json!({ "provider": "aws", "bucket": "samples", "pattern": "(" }),
            "",
            400,
            "invalid_selection",
        ),
        (
            json!({ "provider": "aws", "bucket": "missing-bucket" }),
            "",
            404,
            "not_found_at_provider",
        ),
        (everything.clone(), "?page_size=0", 400, "invalid_query"),
        (everything.clone(), "?page=2", 400, "invalid_query"),
    ] {
        let (got, answer) = preview(&server, &key, query, &body);
        assert_eq!(got, status, "{body} {query}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        if code == "invalid_selection" {
            assert_eq!(answer["error"]["field"], "pattern", "{answer}");
        }
    }

    // The CLI's dry run: the same answer, exit 0; a selection matching nothing exits 8.
    let dir = tempfile::tempdir().unwrap();
    let env = [("KEYLEDGER_API_KEY", key.as_str())];
    let args = |pattern: &'static str, json: bool| {
        let mut args = vec![
            "ingest",
            "s3",
            "--bucket",
            "samples",
            "--prefix",
            "runs/plate-07/",
            "--pattern",
            pattern,
            "--dry-run",
            "--page-size",
            "2",
        ];
        if json {
            args.push("--json");
        }
        args
    };
    let run = server.cli(dir.path(), &args(r"\.csv$", true), "", &env);
    assert_eq!(run.code, 0, "{run:?}");
    let shown = run.json();
    assert_eq!(shown["matched"], 400);
    assert_eq!(shown["files"].as_array().unwrap().len(), 2);
    let run = server.cli(dir.path(), &args(r"\.csv$", false), "", &env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Dry run: 400 file(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("sample-07000.counts.csv"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("More: add --cursor"), "{}", run.stdout);
    let run = server.cli(dir.path(), &args(r"\.bam$", false), "", &env);
    assert_eq!(run.code, 8, "{run:?}");

    // Nothing was fetched or recorded: no job, no sample store folder of the user.
    let jobs = server.get("/v1/ingestions", &key);
    assert_eq!(jobs["ingestions"], json!([]), "{jobs}");
    assert!(!server.data_dir().join("samples").join("pia").exists());
}
