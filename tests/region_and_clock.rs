//! A bucket in another region than the stored key's, and a clock too far from the provider's,
//! through the real binary: the testkit's S3 server answers both as AWS does (400
//! `AuthorizationHeaderMalformed` naming the bucket's region, 403 `RequestTimeTooSkewed`), the
//! testkit's STS server answers a skewed clock as STS does ("Signature expired"), the
//! key's test (`POST …/verify`, `keyledger external verify`) names them, and a rotation that
//! moves the key to the bucket's region (`keyledger external rotate --region`) makes the test and
//! the ingestion pass.

use bytes::Bytes;
use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;
use serde_json::{Value, json};

use crate::support::{Server, developer_key, runtime};

const KEY_ID: &str = "AKIAREGIONCLOCK00001";
const SECRET: &str = "regionClockSecret0123456789abcdefghijklm";

/// Tests the key on `eu-lab` + `runs/`, or (`scope` null) the key itself.
fn verify_scope(server: &Server, key: &str, external: &str, scope: &Value) -> Value {
    let response = server.send(
        "POST",
        &format!("/v1/external-keys/{external}/verify"),
        Some(key),
        Some(scope),
    );
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().unwrap();
    assert!(!text.contains(SECRET), "{text}");
    // Each name once: the key's `kind` (its credential) beside the test's `last_verified_kind`.
    assert_eq!(text.matches("\"kind\":").count(), 1, "{text}");
    let verified: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(verified["kind"], "access_key", "{verified}");
    verified
}

fn verify(server: &Server, key: &str, external: &str) -> Value {
    verify_scope(
        server,
        key,
        external,
        &json!({ "bucket": "eu-lab", "prefix": "runs/" }),
    )
}

/// `capability: ok|failed: detail`, one line each, for readable assertions.
fn report(verified: &Value) -> Vec<String> {
    verified["capabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("no capabilities: {verified}"))
        .iter()
        .map(|checked| {
            format!(
                "{}: {}: {}",
                checked["capability"].as_str().unwrap(),
                if checked["ok"].as_bool().unwrap() {
                    "ok"
                } else {
                    "failed"
                },
                checked["detail"].as_str().unwrap()
            )
        })
        .collect()
}

/// Starts an ingestion of `eu-lab/runs/` and waits (bounded, polling) until it has finished.
fn ingest(server: &Server, key: &str) -> Value {
    let body = json!({ "provider": "aws", "bucket": "eu-lab", "prefix": "runs/", "pattern": "" });
    let (status, job) = server.call("POST", "/v1/ingestions", Some(key), Some(&body));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    for _ in 0..2400 {
        let job = server.get(&format!("/v1/ingestions/{id}"), key);
        if matches!(
            job["state"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return job;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("ingestion {id} did not finish");
}

#[test]
fn a_wrong_region_and_a_skewed_clock_are_named_and_a_rotation_fixes_the_region() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("eu-lab")).unwrap();
    let objects = [("runs/a.csv", "gene,1\n"), ("runs/b.csv", "gene,2\n")]
        .map(|(key, body)| (key.to_owned(), Bytes::from(body)));
    rt.block_on(s3.put_objects("eu-lab", objects)).unwrap();
    s3.set_bucket_region("eu-lab", "eu-west-1");
    let sts = rt.block_on(StsServer::start(s3.iam().clone())).unwrap();
    let (endpoint, sts_endpoint) = (s3.endpoint(), sts.endpoint());
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts_endpoint.as_str()),
    ]);
    let home = tempfile::tempdir().unwrap();
    let rita = developer_key(&server, "rita");
    let body = json!({ "label": "eu lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&rita), Some(&body));
    assert_eq!(status, 201, "{stored}");
    let external = stored["id"].as_str().unwrap().to_owned();

    // Stored with us-east-1, the bucket in eu-west-1: S3 refuses the listing naming its region.
    let verified = verify(&server, &rita, &external);
    assert_eq!(verified["last_verified_ok"], false, "{verified}");
    assert_eq!(
        verified["last_verified_kind"], "provider_rejected",
        "{verified}"
    );
    let wrong = "wrong region: bucket `eu-lab` is in eu-west-1, not in the key's region us-east-1";
    let lines = report(&verified);
    assert!(
        lines[0].starts_with(&format!("list: failed: {wrong}")),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("read: failed: not tested"),
        "{lines:#?}"
    );
    assert!(
        lines[2].starts_with(&format!("region: failed: {wrong}")),
        "{lines:#?}"
    );
    assert!(
        verified["last_verified_detail"]
            .as_str()
            .unwrap()
            .contains("store the key with region eu-west-1"),
        "{verified}"
    );
    let run = server.cli(
        home.path(),
        &[
            "external", "verify", "aws", "--bucket", "eu-lab", "--prefix", "runs/",
        ],
        "",
        &[("KEYLEDGER_API_KEY", rita.as_str())],
    );
    assert_eq!(run.code, 9, "{run:?}");
    assert!(
        run.stdout.contains(&format!("✗ list     {wrong}")),
        "{run:?}"
    );
    // An ingestion signed for the wrong region fails; it does not fetch anything.
    let job = ingest(&server, &rita);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["files_fetched"], 0, "{job}");

    // The rotation body's region is validated as on create.
    let path = format!("/v1/external-keys/{external}/credential");
    let (status, refused) = server.call(
        "PUT",
        &path,
        Some(&rita),
        Some(
            &json!({ "aws": { "access_key_id": KEY_ID, "secret_access_key": SECRET,
                               "region": "mars-north-1" } }),
        ),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "region", "{refused}");
    assert!(!refused.to_string().contains(SECRET), "{refused}");

    // `external rotate --region` moves the key to the bucket's region, under the same id.
    let run = server.cli(
        home.path(),
        &[
            "external",
            "rotate",
            "aws",
            "--access-key-id",
            KEY_ID,
            "--region",
            "eu-west-1",
            "--secret-stdin",
        ],
        &format!("{SECRET}\n"),
        &[("KEYLEDGER_API_KEY", rita.as_str())],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
    let listed = server.get("/v1/external-keys", &rita);
    assert_eq!(listed["keys"][0]["id"], external.as_str(), "{listed}");
    assert_eq!(listed["keys"][0]["region"], "eu-west-1", "{listed}");

    let verified = verify(&server, &rita, &external);
    assert_eq!(verified["last_verified_ok"], true, "{verified}");
    assert_eq!(
        report(&verified),
        [
            "list: ok: listed s3://eu-lab/runs/ (first object: runs/a.csv)",
            "read: ok: read the first byte of s3://eu-lab/runs/a.csv",
            "region: ok: bucket `eu-lab` answers in eu-west-1, the key's region",
        ]
    );
    let job = ingest(&server, &rita);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 2, "{job}");

    // S3's clock an hour ahead of this machine's: every request is too skewed, and said so.
    s3.set_clock_offset(3600);
    let verified = verify(&server, &rita, &external);
    assert_eq!(verified["last_verified_ok"], false, "{verified}");
    let lines = report(&verified);
    let skew = "clock skew: this server's clock is more than 15 minutes off AWS's; set it right (NTP) \
                (S3 said RequestTimeTooSkewed: The difference between the request time and the \
                current time is too large.)";
    assert_eq!(lines[0], format!("list: failed: {skew}"), "{lines:#?}");
    assert_eq!(lines[2], format!("region: failed: {skew}"), "{lines:#?}");
    let run = server.cli(
        home.path(),
        &[
            "external", "verify", "aws", "--bucket", "eu-lab", "--prefix", "runs/",
        ],
        "",
        &[("KEYLEDGER_API_KEY", rita.as_str())],
    );
    assert_eq!(run.code, 9, "{run:?}");
    assert!(run.stdout.contains("✗ list     clock skew"), "{run:?}");
    assert!(run.stderr.contains("RequestTimeTooSkewed"), "{run:?}");

    // Without a bucket the key itself is asked of STS, whose clock is off too: STS's own words
    // for it ("Signature expired") are named clock skew as well.
    sts.set_clock_offset(3600);
    let verified = verify_scope(&server, &rita, &external, &json!({}));
    assert_eq!(verified["last_verified_ok"], false, "{verified}");
    let lines = report(&verified);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "identity: failed: clock skew: this server's clock is more than 15 minutes off AWS's"
        ) && lines[0].contains("STS said SignatureDoesNotMatch: Signature expired"),
        "{lines:#?}"
    );
    // Clocks set right again, the key works.
    s3.set_clock_offset(0);
    sts.set_clock_offset(0);
    let verified = verify_scope(&server, &rita, &external, &json!({}));
    assert_eq!(verified["last_verified_ok"], true, "{verified}");
}
