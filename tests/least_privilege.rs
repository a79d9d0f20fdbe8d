//! The least-privilege test of an external key (`POST /v1/external-keys/{id}/verify` with a
//! bucket and prefix or a project, `keyledger external verify`), through the real binary against
//! the testkit's S3 server (which enforces a per-key policy), its STS server and the DNAnexus
//! emulator: each capability is reported on its own, a refusal in the provider's words.

use std::path::Path;

use bytes::Bytes;
use keyledger_testkit::dnanexus::{DnanexusEmulator, Level, Seed};
use keyledger_testkit::iam::{AccessKey, Policy};
use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;
use serde_json::{Value, json};

use crate::support::{CliRun, Server, developer_key, runtime};

const ADMIN_KEY_ID: &str = "AKIAPROBEADMIN000001";
const ADMIN_SECRET: &str = "probeAdminSecret0123456789abcdefghijklmn";
/// Limited to `s3://lab/runs/*`: may list under `runs/` and read below it, nothing else (not
/// ListBuckets, not HeadBucket).
const LIMITED_KEY_ID: &str = "AKIAPROBELIMITED0001";
const LIMITED_SECRET: &str = "probeLimitedSecret0123456789abcdefghijkl";
const WRONG_SECRET: &str = "probeWrongSecret0123456789abcdefghijklmn";
const UNKNOWN_KEY_ID: &str = "AKIAPROBEUNKNOWN0001";
const DX_TOKEN: &str = "dxProbeToken0123456789abcdefgh";

fn store_aws(server: &Server, key: &str, access_key_id: &str, secret: &str) -> String {
    let body = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": access_key_id, "secret_access_key": secret, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(key), Some(&body));
    assert_eq!(status, 201, "{stored}");
    stored["id"].as_str().unwrap().to_owned()
}

fn verify(server: &Server, key: &str, external: &str, scope: Option<Value>) -> (u16, Value) {
    server.call(
        "POST",
        &format!("/v1/external-keys/{external}/verify"),
        Some(key),
        scope.as_ref(),
    )
}

/// `(capability, ok, detail)` of a verification's report.
fn capabilities(verified: &Value) -> Vec<(String, bool, String)> {
    verified["capabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("no capabilities: {verified}"))
        .iter()
        .map(|checked| {
            (
                checked["capability"].as_str().unwrap().to_owned(),
                checked["ok"].as_bool().unwrap(),
                checked["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn cli(server: &Server, config: &Path, key: &str, args: &[&str]) -> CliRun {
    server.cli(config, args, "", &[("KEYLEDGER_API_KEY", key)])
}

fn never_shows_a_secret(text: &str) {
    for secret in [ADMIN_SECRET, LIMITED_SECRET, WRONG_SECRET, DX_TOKEN] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

/// Starts an ingestion and waits (bounded) until it has finished.
fn ingest(server: &Server, key: &str, body: Value) -> Value {
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
fn a_key_limited_to_a_prefix_passes_for_it_and_is_refused_elsewhere() {
    let rt = runtime();
    let s3 = rt
        .block_on(S3Server::start(ADMIN_KEY_ID, ADMIN_SECRET))
        .unwrap();
    rt.block_on(s3.create_bucket("lab")).unwrap();
    let objects = [
        ("runs/a.csv", "gene,1\n"),
        ("runs/b.csv", "gene,2\n"),
        ("other/x.csv", "gene,3\n"),
    ]
    .map(|(key, body)| (key.to_owned(), Bytes::from(body)));
    rt.block_on(s3.put_objects("lab", objects)).unwrap();
    s3.iam().add_access_key(
        AccessKey::new(LIMITED_KEY_ID, LIMITED_SECRET)
            .user("lab-runs")
            .policy(Policy::read_only("lab", "runs/")),
    );
    let sts = rt.block_on(StsServer::start(s3.iam().clone())).unwrap();
    let (s3_endpoint, sts_endpoint) = (s3.endpoint(), sts.endpoint());
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", s3_endpoint.as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts_endpoint.as_str()),
    ]);
    let home = tempfile::tempdir().unwrap();
    let config = home.path();

    let lena = developer_key(&server, "lena");
    let limited = store_aws(&server, &lena, LIMITED_KEY_ID, LIMITED_SECRET);

    // The bucket and prefix the key was made for: list, read and region pass.
    let run = cli(
        &server,
        config,
        &lena,
        &[
            "external", "verify", "aws", "--bucket", "lab", "--prefix", "runs/",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    for line in [
        "✓ list     listed s3://lab/runs/ (first object: runs/a.csv)",
        "✓ read     read the first byte of s3://lab/runs/a.csv",
        "✓ region   bucket `lab` answers in us-east-1",
    ] {
        assert!(run.stdout.contains(line), "{line:?} missing: {run:?}");
    }
    never_shows_a_secret(&format!("{run:?}"));

    // Another prefix: listing is refused in S3's words, and the command exits 9.
    let run = cli(
        &server,
        config,
        &lena,
        &[
            "external", "verify", "aws", "--bucket", "lab", "--prefix", "other/",
        ],
    );
    assert_eq!(run.code, 9, "{run:?}");
    assert!(
        run.stdout
            .contains("✗ list     missing permission: list under other/ (S3 said AccessDenied: User: arn:aws:iam::"),
        "{run:?}"
    );
    assert!(run.stdout.contains("✗ read     not tested"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "did not pass the check with AWS: list: missing permission: list under other/"
        ),
        "{run:?}"
    );
    // The outcome is recorded on the key.
    let listed = server.get("/v1/external-keys", &lena);
    let key = &listed["keys"][0];
    assert_eq!(key["last_verified_ok"], false, "{key}");
    assert!(
        key["last_verified_detail"]
            .as_str()
            .unwrap()
            .contains("missing permission: list under other/"),
        "{key}"
    );

    // Without a bucket: the key itself (GetCallerIdentity), though it may not ListBuckets.
    let (status, verified) = verify(&server, &lena, &limited, None);
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["last_verified_ok"], true, "{verified}");
    let checked = capabilities(&verified);
    assert_eq!(checked.len(), 1, "{verified}");
    assert_eq!(checked[0].0, "identity");
    assert!(checked[0].1, "{verified}");
    assert!(checked[0].2.contains(":user/lab-runs"), "{verified}");

    // And the key ingests what it passed the test for.
    let job = ingest(
        &server,
        &lena,
        json!({ "provider": "aws", "bucket": "lab", "prefix": "runs/", "pattern": "" }),
    );
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 2, "{job}");

    // Fields that do not fit the key are refused before anything is asked of AWS.
    for (body, field) in [
        (json!({ "project": "rnaseq" }), "project"),
        (json!({ "prefix": "runs/" }), "prefix"),
        (json!({ "bucket": "lab/runs" }), "bucket"),
        (
            json!({ "bucket": "lab", "prefix": "runs/../other/" }),
            "prefix",
        ),
    ] {
        let (status, refused) = verify(&server, &lena, &limited, Some(body.clone()));
        assert_eq!(status, 400, "{body}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{body}: {refused}"
        );
    }

    // A wrong secret and an unknown key are told apart, by STS and by S3.
    let wanda = developer_key(&server, "wanda");
    let wrong = store_aws(&server, &wanda, LIMITED_KEY_ID, WRONG_SECRET);
    let umar = developer_key(&server, "umar");
    let unknown = store_aws(&server, &umar, UNKNOWN_KEY_ID, LIMITED_SECRET);
    let lab = json!({ "bucket": "lab", "prefix": "runs/" });
    for (user, external, words) in [
        (&wanda, &wrong, ["wrong secret", "SignatureDoesNotMatch"]),
        (&umar, &unknown, ["unknown key", "InvalidClientTokenId"]),
    ] {
        let (status, verified) = verify(&server, user, external, None);
        assert_eq!(status, 200, "{verified}");
        assert_eq!(
            verified["last_verified_kind"], "provider_rejected",
            "{verified}"
        );
        let detail = verified["last_verified_detail"].as_str().unwrap();
        for word in words {
            assert!(detail.contains(word), "{word:?} missing: {verified}");
        }
        never_shows_a_secret(&verified.to_string());
    }
    for (user, external, words) in [
        (&wanda, &wrong, ["wrong secret", "SignatureDoesNotMatch"]),
        (&umar, &unknown, ["unknown key", "InvalidAccessKeyId"]),
    ] {
        let (status, verified) = verify(&server, user, external, Some(lab.clone()));
        assert_eq!(status, 200, "{verified}");
        assert_eq!(
            verified["last_verified_kind"], "provider_rejected",
            "{verified}"
        );
        let checked = capabilities(&verified);
        assert_eq!(checked[0].0, "list");
        assert!(!checked[0].1, "{verified}");
        for word in words {
            assert!(checked[0].2.contains(word), "{word:?} missing: {verified}");
        }
        never_shows_a_secret(&verified.to_string());
    }
}

#[test]
fn a_dnanexus_token_reports_its_user_and_its_level_on_a_project() {
    let rt = runtime();
    let mut seed = Seed::new();
    let owner = seed.add_user("olga");
    let user = seed.add_user("vera");
    seed.add_token(&user, DX_TOKEN);
    let viewed = seed.add_project("rnaseq", &owner);
    seed.add_member(&viewed, &user, Level::View);
    let private = seed.add_project("private", &owner);
    let emulator = rt.block_on(DnanexusEmulator::start(seed)).unwrap();
    let endpoint = emulator.endpoint();
    let server = Server::start_with(&[("KEYLEDGER_INGEST_DNANEXUS_API_URL", endpoint.as_str())]);
    let home = tempfile::tempdir().unwrap();
    let vera = developer_key(&server, "vera");
    let (status, stored) = server.call(
        "POST",
        "/v1/external-keys",
        Some(&vera),
        Some(
            &json!({ "label": "dx", "provider": "dnanexus", "duration": "30d",
            "dnanexus": { "token": DX_TOKEN } }),
        ),
    );
    assert_eq!(status, 201, "{stored}");
    let external = stored["id"].as_str().unwrap();

    // The token's user, and VIEW on the project by name: enough to ingest.
    let run = cli(
        &server,
        home.path(),
        &vera,
        &["external", "verify", "dnanexus", "--project", "rnaseq"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("✓ user     DNAnexus accepted the token; it belongs to user-vera"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "✓ project  VIEW access to rnaseq ({viewed}): enough to ingest"
        )),
        "{run:?}"
    );
    never_shows_a_secret(&format!("{run:?}"));

    // A project the token cannot see is refused, and the user still reported.
    let (status, verified) = verify(
        &server,
        &vera,
        external,
        Some(json!({ "project": private })),
    );
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["last_verified_ok"], false, "{verified}");
    let checked = capabilities(&verified);
    assert_eq!(
        checked
            .iter()
            .map(|(name, ok, _)| (name.as_str(), *ok))
            .collect::<Vec<_>>(),
        [("user", true), ("project", false)],
        "{verified}"
    );

    // An AWS field on a DNAnexus key is refused.
    let (status, refused) = verify(&server, &vera, external, Some(json!({ "bucket": "lab" })));
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "bucket", "{refused}");
}
