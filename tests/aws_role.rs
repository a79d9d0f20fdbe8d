//! The `role` kind of AWS credential through the real binary, against the testkit's S3 and STS
//! servers (one identity store): the user reads their external ID and trust policy first,
//! stores the role, tests it (AssumeRole, then list, read and region with the session) and
//! ingests with it; each job assumes the role with a session named after it and narrowed to its
//! bucket and prefix; a job that outlives its session assumes the role again and completes; a
//! trust policy without the user's external ID fails the test and the job in STS's words.

use std::time::{Duration, Instant};

use bytes::Bytes;
use keyledger_testkit::fault_proxy::{Fault, FaultProxy, Gate, RequestMatch};
use keyledger_testkit::iam::{AccessKey, Policy, Role};
use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;
use serde_json::{Value, json};

use crate::support::{Server, developer_key, runtime};

/// The S3 server's own key (full access); it puts the objects.
const ADMIN_KEY: &str = "AKIAROLEADMIN0000001";
const ADMIN_SECRET: &str = "roleAdminSecret0123456789abcdefghijklmno";
/// The platform's own long-lived key, in the operator's credentials file.
const PLATFORM_KEY: &str = "AKIAROLEPLATFORM0001";
const PLATFORM_SECRET: &str = "rolePlatformSecret0123456789abcdefghijkl";
const PLATFORM_ARN: &str = "arn:aws:iam::999988887777:user/keyledger";
const LAB_ROLE: &str = "arn:aws:iam::111122223333:role/lab-reader";
const OTHER_ROLE: &str = "arn:aws:iam::111122223333:role/misconfigured";

const OBJECTS: &[(&str, &str)] = &[
    ("runs/a.csv", "gene,count\nBRCA1,1\n"),
    ("runs/held.csv", "gene,count\nTP53,14\n"),
    ("runs/c.csv", "gene,count\nEGFR,3\n"),
    ("other/d.csv", "gene,count\nKRAS,2\n"),
];

struct Lab {
    s3: S3Server,
    sts: StsServer,
    proxy: FaultProxy,
    server: Server,
    _credentials: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

/// The servers, and keyledger configured with the platform's key in a credentials file and
/// 15-minute role sessions.
fn lab() -> Lab {
    lab_with(&[])
}

/// [`lab`] with more of the vault's environment (`extra`).
fn lab_with(extra: &[(&str, &str)]) -> Lab {
    let runtime = runtime();
    let (s3, sts, proxy) = runtime.block_on(async {
        let s3 = S3Server::start(ADMIN_KEY, ADMIN_SECRET).await.unwrap();
        s3.create_bucket("lab").await.unwrap();
        for (key, content) in OBJECTS {
            s3.put_object("lab", key, Bytes::from_static(content.as_bytes()))
                .await
                .unwrap();
        }
        s3.iam().add_access_key(
            AccessKey::new(PLATFORM_KEY, PLATFORM_SECRET).user_in("999988887777", "keyledger"),
        );
        let sts = StsServer::start(s3.iam().clone()).await.unwrap();
        let proxy = FaultProxy::start(s3.address()).await.unwrap();
        (s3, sts, proxy)
    });
    let credentials = tempfile::tempdir().unwrap();
    let file = credentials.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIAWRONGPROFILE0001\naws_secret_access_key = x\n\n\
             [platform]\naws_access_key_id = {PLATFORM_KEY}\naws_secret_access_key = {PLATFORM_SECRET}\n"
        ),
    )
    .unwrap();
    let (endpoint, sts_endpoint) = (proxy.endpoint(), sts.endpoint());
    let file = file.display().to_string();
    let mut env = vec![
        ("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts_endpoint.as_str()),
        ("KEYLEDGER_INGEST_AWS_ROLE_CREDENTIALS_FILE", file.as_str()),
        ("KEYLEDGER_INGEST_AWS_ROLE_PROFILE", "platform"),
        ("KEYLEDGER_INGEST_AWS_ROLE_PRINCIPAL_ARN", PLATFORM_ARN),
        ("KEYLEDGER_INGEST_AWS_ROLE_SESSION_SECONDS", "900"),
    ];
    env.extend_from_slice(extra);
    let server = Server::start_with(&env);
    Lab {
        s3,
        sts,
        proxy,
        server,
        _credentials: credentials,
        _runtime: runtime,
    }
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn store_role(server: &Server, key: &str, role_arn: &str) -> Value {
    let (status, stored) = server.call(
        "POST",
        "/v1/external-keys",
        Some(key),
        Some(
            &json!({ "label": "lab role", "provider": "aws", "kind": "role", "duration": "30d",
            "aws_role": { "role_arn": role_arn, "region": "us-east-1" } }),
        ),
    );
    assert_eq!(status, 201, "{stored}");
    stored
}

fn verify(server: &Server, key: &str, id: &str, scope: Option<Value>) -> Value {
    let (status, verified) = server.call(
        "POST",
        &format!("/v1/external-keys/{id}/verify"),
        Some(key),
        scope.as_ref(),
    );
    assert_eq!(status, 200, "{verified}");
    verified
}

/// `capability: ok` for each capability of a verification.
fn outcomes(verified: &Value) -> Vec<String> {
    verified["capabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("no capabilities: {verified}"))
        .iter()
        .map(|checked| format!("{}: {}", checked["capability"], checked["ok"]))
        .collect()
}

fn start_job(server: &Server, key: &str) -> String {
    let (status, job) = server.call(
        "POST",
        "/v1/ingestions",
        Some(key),
        Some(
            &json!({ "provider": "aws", "bucket": "lab", "prefix": "runs/", "pattern": "\\.csv$" }),
        ),
    );
    assert!(status == 201 || status == 202, "{status} {job}");
    job["id"].as_str().unwrap().to_owned()
}

fn finished_job(server: &Server, key: &str, id: &str) -> Value {
    wait_for("the job to finish", || {
        let job = server.get(&format!("/v1/ingestions/{id}"), key);
        matches!(
            job["state"].as_str(),
            Some("completed" | "failed" | "cancelled")
        )
        .then_some(job)
    })
}

fn events_of(server: &Server, kind: &str) -> Vec<Value> {
    let events = server.get("/v1/events?from=1&limit=10000", &server.admin_key);
    events["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.get("event").unwrap_or(line))
        .filter(|event| event["type"] == kind)
        .cloned()
        .collect()
}

/// Checks the AssumeRoles of job `job_id` in the testkit's record: the platform's key, the
/// user's external ID, the session named after the job and narrowed to s3://lab/runs/.
fn assert_job_sessions(
    assumed: &[keyledger_testkit::iam::AssumedRole],
    job_id: &str,
    external_id: &str,
) {
    for session in assumed {
        assert_eq!(session.role_arn, LAB_ROLE);
        assert_eq!(session.session_name, format!("keyledger-{job_id}"));
        assert_eq!(session.caller_access_key_id, PLATFORM_KEY);
        assert_eq!(session.external_id.as_deref(), Some(external_id));
        assert_eq!(session.duration, Duration::from_secs(900));
        let policy = session.session_policy.as_deref().unwrap();
        assert!(
            policy.contains("arn:aws:s3:::lab/runs/*")
                && policy.contains("\"s3:prefix\":\"runs/*\""),
            "{policy}"
        );
        assert!(
            !policy.contains("PutObject") && !policy.contains("\"*\""),
            "{policy}"
        );
    }
}

#[test]
fn a_role_is_set_up_tested_and_ingests_and_a_job_longer_than_its_session_assumes_it_again() {
    let lab = lab();
    let server = &lab.server;
    let key = developer_key(server, "rosa");

    // The external ID is known before the key exists, the same every time, and the user's own.
    let setup = server.get("/v1/external-keys/aws-role-setup", &key);
    let external_id = setup["external_id"].as_str().unwrap().to_owned();
    assert!(external_id.starts_with("kl-"), "{setup}");
    assert_eq!(
        server.get("/v1/external-keys/aws-role-setup", &key)["external_id"],
        external_id.as_str()
    );
    let other = developer_key(server, "otto");
    assert_ne!(
        server.get("/v1/external-keys/aws-role-setup", &other)["external_id"],
        external_id.as_str()
    );
    assert_eq!(setup["principal_arn"], PLATFORM_ARN, "{setup}");
    assert_eq!(setup["assume_role_configured"], true, "{setup}");
    let statement = &setup["trust_policy"]["Statement"][0];
    assert_eq!(statement["Principal"]["AWS"], PLATFORM_ARN, "{setup}");
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"],
        external_id.as_str()
    );

    // The user's role trusts the platform with that external ID, and may read s3://lab/runs/.
    lab.s3.iam().add_role(
        Role::new(LAB_ROLE, Policy::read_only("lab", "runs/"))
            .trust(PLATFORM_ARN)
            .external_id(&external_id),
    );
    let stored = store_role(server, &key, LAB_ROLE);
    assert_eq!(stored["kind"], "role", "{stored}");
    assert_eq!(stored["role_arn"], LAB_ROLE, "{stored}");
    assert_eq!(stored["external_id"], external_id.as_str(), "{stored}");
    assert_eq!(stored["hint"], LAB_ROLE, "{stored}");
    let id = stored["id"].as_str().unwrap().to_owned();

    // The test assumes the role, then checks the credential, or the bucket and prefix.
    let verified = verify(server, &key, &id, None);
    assert_eq!(verified["last_verified_ok"], true, "{verified}");
    assert_eq!(
        outcomes(&verified),
        ["\"assume_role\": true", "\"identity\": true"]
    );
    let verified = verify(
        server,
        &key,
        &id,
        Some(json!({ "bucket": "lab", "prefix": "runs/" })),
    );
    assert_eq!(verified["last_verified_ok"], true, "{verified}");
    assert_eq!(
        outcomes(&verified),
        [
            "\"assume_role\": true",
            "\"list\": true",
            "\"read\": true",
            "\"region\": true"
        ]
    );
    let verified = verify(
        server,
        &key,
        &id,
        Some(json!({ "bucket": "lab", "prefix": "other/" })),
    );
    assert_eq!(verified["last_verified_ok"], false, "{verified}");
    let detail = verified["last_verified_detail"].as_str().unwrap();
    assert!(
        detail.contains("missing permission: list under other/"),
        "{detail}"
    );

    // A job whose session ends while it runs: held.csv waits at the proxy until the test clock
    // has passed the session's end, so S3 answers ExpiredToken; the job assumes the role again
    // and completes.
    let before = lab.s3.iam().assumed_roles().len();
    let gate = Gate::default();
    lab.proxy.inject(
        RequestMatch::get().path_contains("held.csv"),
        Fault::Hold(gate.clone()),
        1,
    );
    let job_id = start_job(server, &key);
    wait_for("the held transfer to reach the proxy", || {
        (lab.proxy.pending_faults() == 0).then_some(())
    });
    lab.s3.iam().clock().advance(Duration::from_secs(3600));
    gate.open();
    let job = finished_job(server, &key, &job_id);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");

    let assumed: Vec<_> = lab.s3.iam().assumed_roles()[before..].to_vec();
    assert_eq!(
        assumed.len(),
        2,
        "one AssumeRole to start, one after ExpiredToken: {assumed:?}"
    );
    assert_job_sessions(&assumed, &job_id, &external_id);

    // Every AssumeRole is an event, with no secret.
    let recorded = events_of(server, "ExternalKeyRoleAssumed");
    let of_job: Vec<_> = recorded
        .iter()
        .filter(|event| event["data"]["ingestion"] == job_id.as_str())
        .collect();
    assert_eq!(of_job.len(), 2, "{recorded:?}");
    for event in &of_job {
        assert_eq!(event["data"]["role_arn"], LAB_ROLE, "{event}");
        assert_eq!(event["data"]["key"], id.as_str(), "{event}");
        assert!(
            event["data"]["access_key_id"]
                .as_str()
                .unwrap()
                .starts_with("ASIA"),
            "{event}"
        );
    }
    assert!(
        recorded
            .iter()
            .any(|event| event["data"]["ingestion"].is_null()),
        "the tests' AssumeRoles are recorded too: {recorded:?}"
    );
    let everything = server
        .get("/v1/events?from=1&limit=10000", &server.admin_key)
        .to_string();
    for text in [everything.as_str(), server.output().as_str()] {
        assert!(
            !text.contains(PLATFORM_SECRET),
            "the platform's secret leaked"
        );
    }
    drop(lab.sts);
}

#[test]
fn a_trust_policy_without_the_users_external_id_fails_the_test_and_the_job_in_sts_words() {
    let lab = lab();
    let server = &lab.server;
    let key = developer_key(server, "mona");
    // The role trusts the platform, but with another customer's external ID.
    lab.s3.iam().add_role(
        Role::new(OTHER_ROLE, Policy::allow_all())
            .trust(PLATFORM_ARN)
            .external_id("kl-someone-else"),
    );
    // Through the CLI: the trust policy to paste (JSON on standard output), then the key.
    let config = tempfile::tempdir().unwrap();
    let env = [("KEYLEDGER_API_KEY", key.as_str())];
    let run = server.cli(config.path(), &["external", "trust-policy"], "", &env);
    assert_eq!(run.code, 0, "{run:?}");
    let policy: Value = serde_json::from_str(&run.stdout).unwrap();
    let external_id = server.get("/v1/external-keys/aws-role-setup", &key)["external_id"].clone();
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        external_id
    );
    assert!(run.stderr.contains("Your external ID is kl-"), "{run:?}");
    let run = server.cli(
        config.path(),
        &[
            "external",
            "add",
            "aws-role",
            "--label",
            "lab role",
            "--role-arn",
            OTHER_ROLE,
            "--region",
            "us-east-1",
            "--json",
        ],
        "",
        &env,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let stored = run.json();
    assert_eq!(stored["kind"], "role", "{stored}");
    assert_eq!(stored["external_id"], external_id, "{stored}");
    let id = stored["id"].as_str().unwrap().to_owned();

    let verified = verify(server, &key, &id, None);
    assert_eq!(verified["last_verified_ok"], false, "{verified}");
    assert_eq!(outcomes(&verified), ["\"assume_role\": false"]);
    let detail = verified["capabilities"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("missing permission: assume role")
            && detail.contains("STS said AccessDenied"),
        "{detail}"
    );
    assert_eq!(
        verified["last_verified_kind"], "provider_rejected",
        "{verified}"
    );

    let job_id = start_job(server, &key);
    let job = finished_job(server, &key, &job_id);
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["error"].as_str().unwrap_or_default().to_owned() + &job.to_string();
    assert!(
        reason.contains("the role could not be assumed") && reason.contains("AccessDenied"),
        "{job}"
    );
    assert!(lab.s3.iam().assumed_roles().is_empty());
    drop(lab.sts);
}

/// A `role` key's job on an external worker (decision 0030): the vault assumes the role for
/// the job and leases the worker the session; the worker, which holds no platform key, gets a
/// new session from the vault when S3 says the first one expired mid-transfer.
#[test]
fn a_role_keys_job_on_a_worker_gets_its_sessions_from_the_vault() {
    let nats = keyledger_testkit::nats::NatsServer::start().unwrap();
    let store = tempfile::tempdir().unwrap();
    let (nats_url, store_root) = (nats.url(), store.path().display().to_string());
    let lab = lab_with(&[
        ("KEYLEDGER_NATS_URL", nats_url.as_str()),
        ("KEYLEDGER_INGEST_WORKERS", "external"),
        ("KEYLEDGER_INGEST_QUEUE_ACK_WAIT_MS", "2000"),
        ("KEYLEDGER_INGEST_STORE_ROOT", store_root.as_str()),
    ]);
    let server = &lab.server;
    let key = developer_key(server, "rosa");
    let external_id = server.get("/v1/external-keys/aws-role-setup", &key)["external_id"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.s3.iam().add_role(
        Role::new(LAB_ROLE, Policy::read_only("lab", "runs/"))
            .trust(PLATFORM_ARN)
            .external_id(&external_id),
    );
    let id = store_role(server, &key, LAB_ROLE)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.create_user("wrk", &["worker"]);
    let (status, issued) = server.call(
        "POST",
        "/v1/users/wrk/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "k", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{issued}");
    let worker_key = issued["key"].as_str().unwrap().to_owned();

    // The worker's whole environment: no platform key, no credentials file, no STS endpoint.
    let (s3_endpoint, store_url) = (lab.proxy.endpoint(), format!("file://{store_root}"));
    let env = [
        ("KEYLEDGER_WORKER_KEY", worker_key.as_str()),
        ("KEYLEDGER_INGEST_S3_ENDPOINT", s3_endpoint.as_str()),
        ("RUST_LOG", "info"),
        ("NO_COLOR", "1"),
    ];
    for (_, value) in env {
        assert!(!value.contains(PLATFORM_KEY) && !value.contains(PLATFORM_SECRET));
    }
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker.log");
    let mut worker = std::process::Command::new(crate::support::BIN)
        .args(["worker", "--vault", &server.base, "--nats", &nats_url])
        .args(["--store", &store_url, "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start keyledger worker");

    // held.csv waits at the proxy until the test clock has passed the first session's end.
    let gate = Gate::default();
    lab.proxy.inject(
        RequestMatch::get().path_contains("held.csv"),
        Fault::Hold(gate.clone()),
        1,
    );
    let job_id = start_job(server, &key);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.proxy.pending_faults() != 0 {
        let job = server.get(&format!("/v1/ingestions/{job_id}"), &key);
        assert!(
            Instant::now() < deadline
                && !matches!(
                    job["state"].as_str(),
                    Some("completed" | "failed" | "cancelled")
                ),
            "the held transfer did not reach the proxy: {job}\n{}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            server.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only the worker holding the lease gets sessions under it.
    let lease = events_of(server, "ExternalKeyLeased")[0]["data"]["lease"]
        .as_str()
        .unwrap()
        .to_owned();
    server.create_user("wrk2", &["worker"]);
    let (_, other_worker) = server.call(
        "POST",
        "/v1/users/wrk2/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "k", "duration": "7d" })),
    );
    let (status, refused) = server.call(
        "POST",
        &format!("/v1/worker/ingestions/{job_id}/session"),
        Some(other_worker["key"].as_str().unwrap()),
        Some(&json!({ "lease": lease })),
    );
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "not_handed_out", "{refused}");
    let assumed = lab.s3.iam().assumed_roles();
    assert_eq!(
        assumed.len(),
        1,
        "the vault's AssumeRole at the lease: {assumed:?}"
    );
    lab.s3.iam().clock().advance(Duration::from_secs(3600));
    gate.open();
    let job = finished_job(server, &key, &job_id);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(job["state"], "completed", "{job}\n{}", read_log());
    assert_eq!(job["files_fetched"], 3, "{job}");

    // Both sessions were the vault's, for the job, with its session policy.
    let assumed = lab.s3.iam().assumed_roles();
    assert_eq!(
        assumed.len(),
        2,
        "at the lease and after ExpiredToken: {assumed:?}"
    );
    assert_job_sessions(&assumed, &job_id, &external_id);
    let recorded = events_of(server, "ExternalKeyRoleAssumed");
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for event in &recorded {
        assert_eq!(event["data"]["ingestion"], job_id.as_str(), "{event}");
        assert_eq!(event["data"]["key"], id.as_str(), "{event}");
    }
    // One lease for the whole job: the renewal did not start a second.
    let leases = events_of(server, "ExternalKeyLeased");
    assert_eq!(leases.len(), 1, "{leases:?}");
    // The lease ended with the job: no more sessions under it, nor under a made-up one.
    let session_path = format!("/v1/worker/ingestions/{job_id}/session");
    for lease in [
        leases[0]["data"]["lease"].as_str().unwrap(),
        "lease_AAAAAAAAAAAAAAAA",
    ] {
        let (status, refused) = server.call(
            "POST",
            &session_path,
            Some(&worker_key),
            Some(&json!({ "lease": lease })),
        );
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["error"]["code"], "lease_ended", "{refused}");
    }
    assert_eq!(lab.s3.iam().assumed_roles().len(), 2);

    // A role whose trust policy lacks the user's external ID: the vault's AssumeRole at the
    // lease is refused, and the job fails in STS's words.
    lab.s3.iam().add_role(
        Role::new(OTHER_ROLE, Policy::allow_all())
            .trust(PLATFORM_ARN)
            .external_id("kl-someone-else"),
    );
    let mona = developer_key(server, "mona");
    store_role(server, &mona, OTHER_ROLE);
    let refused_id = start_job(server, &mona);
    let failed = finished_job(server, &mona, &refused_id);
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed.to_string();
    assert!(
        reason.contains("the role could not be assumed") && reason.contains("AccessDenied"),
        "{failed}"
    );
    assert_eq!(lab.s3.iam().assumed_roles().len(), 2);
    let _ = worker.kill();
    let _ = worker.wait();
    let worker_log = read_log();
    assert!(
        worker_log.contains("new role session from the vault")
            && !worker_log.contains("assumed the role"),
        "{worker_log}"
    );
    for text in [worker_log.as_str(), server.output().as_str()] {
        assert!(
            !text.contains(PLATFORM_SECRET),
            "the platform's secret leaked"
        );
    }
    drop(lab.sts);
}
