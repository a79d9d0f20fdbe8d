//! Provider failures as users meet them, through the real binary's API: each is classified
//! (`kind` of a verification, `failure_kind` of a job, a file and their events) and told as a
//! sentence in the provider's own words, never as Rust `Debug` text, never with a secret. An
//! endpoint that cannot be reached is reported at once, not after retries that cannot help.

use bytes::Bytes;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;
use serde_json::{Value, json};

use crate::support::{Server, developer_key, runtime};

const ACCESS_KEY_ID: &str = "AKIAERRORSTEST000001";
const SECRET: &str = "errorsSecretKey0123456789abcdefghijklmnO";
const WRONG_SECRET: &str = "wrongSecretKey0123456789abcdefghijklmnOP";
const DX_TOKEN: &str = "dxErrorsToken0123456789abcdef";
const WRONG_DX_TOKEN: &str = "dxWrongToken0123456789abcdefgh";

/// Shapes of Rust `Debug` output and SDK internals that must never reach a user.
const DEBUG_SHAPES: &[&str] = &[
    "{",
    "}",
    "DispatchFailure",
    "ConnectorError",
    "Error(",
    "Some(",
    "source:",
    "kind:",
    "hyper",
];

fn store_aws(server: &Server, key: &str, secret: &str) -> String {
    let body = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": secret, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(key), Some(&body));
    assert_eq!(status, 201, "{stored}");
    stored["id"].as_str().unwrap().to_owned()
}

fn store_dnanexus(server: &Server, key: &str, token: &str) -> String {
    let body = json!({ "label": "dx", "provider": "dnanexus", "duration": "30d",
        "dnanexus": { "token": token } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(key), Some(&body));
    assert_eq!(status, 201, "{stored}");
    stored["id"].as_str().unwrap().to_owned()
}

/// "Save and test". A verification that retried an unreachable endpoint would outlast the
/// server's request timeout and answer 503 ("try again") instead of 200.
fn verify(server: &Server, key: &str, external: &str) -> Value {
    let (status, verified) = server.call(
        "POST",
        &format!("/v1/external-keys/{external}/verify"),
        Some(key),
        None,
    );
    assert_eq!(status, 200, "{verified}");
    assert_readable("verify detail", &verified["last_verified_detail"]);
    verified
}

/// Starts an ingestion and waits (bounded) until it has finished.
fn ingest(server: &Server, key: &str, body: Value) -> Value {
    let (status, job) = server.call("POST", "/v1/ingestions", Some(key), Some(&body));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // At most 4 minutes: far beyond any run that does not retry, on a busy machine.
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

/// The public JSON of the failure events of `ingestion`, from the audit export.
fn failure_events(server: &Server, ingestion: &str) -> Vec<Value> {
    let page = server.get("/v1/events?from=1&limit=10000", &server.admin_key);
    page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.get("event").unwrap_or(line).clone())
        .filter(|event| {
            matches!(
                event["type"].as_str(),
                Some("IngestionFailed" | "IngestionFileFailed")
            ) && event["data"]["ingestion"] == ingestion
        })
        .collect()
}

/// A message for people: a sentence, no `Debug` shapes, no secret.
fn assert_readable(what: &str, text: &Value) {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {text}"));
    assert!(!text.trim().is_empty(), "{what}: empty");
    for shape in DEBUG_SHAPES {
        assert!(!text.contains(shape), "{what} contains `{shape}`: {text}");
    }
    for secret in [SECRET, WRONG_SECRET, DX_TOKEN, WRONG_DX_TOKEN] {
        assert!(!text.contains(secret), "{what} leaks a secret: {text}");
    }
}

/// A failed job, its `failure_kind`, its message and its `IngestionFailed` event.
fn assert_job_failed(server: &Server, job: &Value, kind: &str, words: &[&str]) {
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["failure_kind"], kind, "{job}");
    assert_readable("job error", &job["error"]);
    let error = job["error"].as_str().unwrap();
    for word in words {
        assert!(error.contains(word), "`{word}` missing from: {error}");
    }
    let events = failure_events(server, job["id"].as_str().unwrap());
    let failed: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "IngestionFailed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0]["data"]["failure_kind"], kind, "{}", failed[0]);
    assert_eq!(failed[0]["data"]["reason"], job["error"]);
}

fn aws_job(bucket: &str) -> Value {
    json!({ "provider": "aws", "bucket": bucket, "prefix": "", "pattern": "" })
}

fn dnanexus_job(project: &str) -> Value {
    json!({ "provider": "dnanexus", "project": project, "folder": "/", "pattern": "" })
}

/// Checks that both providers, listing and verifying, report an unreachable endpoint with
/// `words` in the message.
fn check_unreachable(s3_endpoint: &str, dnanexus_url: &str, s3_words: &[&str], dx_words: &[&str]) {
    // The key test without a bucket asks STS, which lives beside S3 here.
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", s3_endpoint),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", s3_endpoint),
        ("KEYLEDGER_INGEST_DNANEXUS_API_URL", dnanexus_url),
    ]);
    let key = developer_key(&server, "dana");
    let aws = store_aws(&server, &key, SECRET);
    let dx = store_dnanexus(&server, &key, DX_TOKEN);

    for (external, words) in [(&aws, s3_words), (&dx, dx_words)] {
        let verified = verify(&server, &key, external);
        assert_eq!(verified["last_verified_ok"], false, "{verified}");
        assert_eq!(verified["last_verified_kind"], "unreachable", "{verified}");
        let detail = verified["last_verified_detail"].as_str().unwrap();
        for word in words {
            assert!(detail.contains(word), "`{word}` missing from: {detail}");
        }
        assert!(!detail.contains("try again"), "{detail}");
    }

    let job = ingest(&server, &key, aws_job("samples"));
    assert_job_failed(&server, &job, "unreachable", s3_words);
    let job = ingest(&server, &key, dnanexus_job("rnaseq"));
    assert_job_failed(&server, &job, "unreachable", dx_words);
}

#[test]
fn an_endpoint_whose_name_does_not_resolve_is_reported_at_once_by_both_providers() {
    // `.invalid` never resolves (RFC 6761).
    check_unreachable(
        "http://s3.nonexistent.invalid",
        "https://api.nonexistent.invalid",
        &[
            "cannot resolve host `s3.nonexistent.invalid`",
            "check the endpoint",
        ],
        &[
            "cannot resolve host `api.nonexistent.invalid`",
            "check the endpoint",
        ],
    );
}

#[test]
fn a_refused_connection_is_reported_at_once_by_both_providers() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
        // Closed here: nothing listens on the port any more.
    };
    let authority = format!("127.0.0.1:{port}");
    let words = [
        format!("the connection to `{authority}` was refused"),
        "check the endpoint".to_owned(),
    ];
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    check_unreachable(
        &format!("http://{authority}"),
        &format!("http://{authority}"),
        &words,
        &words,
    );
}

#[test]
fn rejected_keys_missing_places_and_corrupt_files_are_classified_in_the_providers_words() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    let objects = (0..2).map(|i| (format!("s{i}.csv"), Bytes::from(format!("gene,{i}\n"))));
    rt.block_on(s3.put_objects("samples", objects)).unwrap();

    let mut seed = Seed::new();
    let user = seed.add_user("eve");
    seed.add_token(&user, DX_TOKEN);
    let project = seed.add_project("rnaseq", &user);
    let bytes = |i: u64| -> Vec<u8> { (0..40_000u64).map(|b| (b * 7 + i) as u8).collect() };
    seed.add_file(&project, "/good.sf", Content::Bytes(bytes(1)), 8 * 1024);
    seed.add_file(&project, "/bad.sf", Content::Bytes(bytes(2)), 8 * 1024);
    let emulator = rt.block_on(DnanexusEmulator::start(seed)).unwrap();
    let bad_file = emulator
        .control()
        .files(&project)
        .into_iter()
        .find(|file| file.name == "bad.sf")
        .unwrap();
    emulator
        .control()
        .corrupt_part_md5(&bad_file.id, 2)
        .unwrap();

    let sts = rt.block_on(StsServer::start(s3.iam().clone())).unwrap();
    let s3_endpoint = s3.endpoint();
    let sts_endpoint = sts.endpoint();
    let dx_endpoint = emulator.endpoint();
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", s3_endpoint.as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts_endpoint.as_str()),
        ("KEYLEDGER_INGEST_DNANEXUS_API_URL", dx_endpoint.as_str()),
        ("KEYLEDGER_INGEST_MAX_ATTEMPTS", "2"),
    ]);

    // Rejected credentials: S3's error code, DNAnexus' verdict.
    let dana = developer_key(&server, "dana");
    let aws = store_aws(&server, &dana, WRONG_SECRET);
    let dx = store_dnanexus(&server, &dana, WRONG_DX_TOKEN);
    let verified = verify(&server, &dana, &aws);
    assert_eq!(
        verified["last_verified_kind"], "provider_rejected",
        "{verified}"
    );
    assert!(
        verified["last_verified_detail"]
            .as_str()
            .unwrap()
            .contains("SignatureDoesNotMatch"),
        "{verified}"
    );
    let verified = verify(&server, &dana, &dx);
    assert_eq!(
        verified["last_verified_kind"], "provider_rejected",
        "{verified}"
    );
    let job = ingest(&server, &dana, aws_job("samples"));
    assert_job_failed(
        &server,
        &job,
        "provider_rejected",
        &["rejected", "SignatureDoesNotMatch"],
    );
    let job = ingest(&server, &dana, dnanexus_job(&project));
    assert_job_failed(&server, &job, "provider_rejected", &["token was rejected"]);

    // Accepted credentials, places that do not exist.
    let eve = developer_key(&server, "eve");
    let aws = store_aws(&server, &eve, SECRET);
    let dx = store_dnanexus(&server, &eve, DX_TOKEN);
    for external in [&aws, &dx] {
        let verified = verify(&server, &eve, external);
        assert_eq!(verified["last_verified_ok"], true, "{verified}");
        assert!(verified["last_verified_kind"].is_null(), "{verified}");
    }
    let job = ingest(&server, &eve, aws_job("no-such-bucket"));
    assert_job_failed(
        &server,
        &job,
        "not_found",
        &["`no-such-bucket` does not exist"],
    );
    let job = ingest(
        &server,
        &eve,
        dnanexus_job("project-0123456789ABCDEF01234567"),
    );
    assert_job_failed(&server, &job, "not_found", &["was not found"]);

    // A file that fails verification: the job completes, the file carries its kind.
    let job = ingest(&server, &eve, dnanexus_job(&project));
    assert_eq!(job["state"], "completed", "{job}");
    assert!(job["failure_kind"].is_null(), "{job}");
    let (status, detail) = server.call(
        "GET",
        &format!("/v1/ingestions/{}", job["id"].as_str().unwrap()),
        Some(&eve),
        None,
    );
    assert_eq!(status, 200, "{detail}");
    let files = detail["files"].as_array().unwrap();
    let bad = files.iter().find(|file| file["path"] == "bad.sf").unwrap();
    assert_eq!(bad["state"], "failed", "{bad}");
    assert_eq!(bad["failure_kind"], "integrity", "{bad}");
    assert_readable("file error", &bad["error"]);
    let good = files.iter().find(|file| file["path"] == "good.sf").unwrap();
    assert!(good.get("failure_kind").is_none(), "{good}");
    let events = failure_events(&server, job["id"].as_str().unwrap());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "IngestionFileFailed");
    assert_eq!(events[0]["data"]["failure_kind"], "integrity");
    assert_readable("file event reason", &events[0]["data"]["reason"]);
}
