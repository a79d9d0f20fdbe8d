//! Rotation of a stored external secret without downtime, through the binary: a job running
//! when the secret is replaced finishes on the old one, the next job uses the new one, the old
//! data key is destroyed once nothing holds it (and gone from the data directory), and the audit
//! tools show both ends. A job is held mid-transfer by the fault proxy's gate, never by a sleep.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
use keyledger_testkit::fault_proxy::{Fault, FaultProxy, Gate, RequestMatch};
use keyledger_testkit::iam::AccessKey;
use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{CliRun, Server, files_containing, runtime};

const OLD_ID: &str = "AKIAROTATEOLDKEY0001";
const OLD_SECRET: &str = "rotateOldSecret0123456789abcdefghijklmno";
const NEW_ID: &str = "AKIAROTATENEWKEY0002";
const NEW_SECRET: &str = "rotateNewSecret0123456789abcdefghijklmno";

const OBJECTS: &[(&str, &str)] = &[
    ("runs/quant_1.csv", "gene,count\nBRCA1,1\n"),
    ("runs/held.csv", "gene,count\nTP53,14\n"),
    ("runs/quant_3.csv", "gene,count\nEGFR,3\n"),
];

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

/// dana (role `developer`) and her internal key.
fn developer(server: &Server) -> String {
    server.create_user("dana", &["developer"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/dana/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "rotate", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

/// Every event of the log (public JSON), from the audit route.
fn events(server: &Server) -> Vec<Value> {
    let page = server.get("/v1/events?from=1&limit=10000", &server.admin_key);
    page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.get("event").unwrap_or(line).clone())
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == kind)
        .collect()
}

/// The wrapped data keys in `data_keys.bin` (magic, count, then id and wrapped key, each
/// length-prefixed, then a SHA-256), by id.
fn data_keys(data_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(data_dir.join("log/data_keys.bin")).unwrap();
    let mut rest = &bytes[8..bytes.len() - 32];
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head.to_vec()
    };
    let count = u32::from_be_bytes(take(4).try_into().unwrap());
    let mut entries = BTreeMap::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4).try_into().unwrap()) as usize;
        let id = String::from_utf8(take(len)).unwrap();
        let len = u32::from_be_bytes(take(4).try_into().unwrap()) as usize;
        entries.insert(id, take(len));
    }
    entries
}

fn cli(server: &Server, key: &str, args: &[&str], stdin: &str) -> CliRun {
    let config = tempfile::tempdir().unwrap();
    server.cli(config.path(), args, stdin, &[("KEYLEDGER_API_KEY", key)])
}

#[test]
fn a_running_job_finishes_on_the_old_secret_and_the_next_job_uses_the_new_one() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(OLD_ID, OLD_SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    for (name, body) in OBJECTS {
        rt.block_on(s3.put_object("samples", name, Bytes::from_static(body.as_bytes())))
            .unwrap();
    }
    let proxy = rt.block_on(FaultProxy::start(s3.address())).unwrap();
    let gate = Gate::default();
    proxy.inject(
        RequestMatch::get().path_contains("held.csv"),
        Fault::Hold(gate.clone()),
        1,
    );
    let endpoint = proxy.endpoint();
    let mut server = Server::start_with(&[("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())]);
    let key = developer(&server);
    let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": OLD_ID, "secret_access_key": OLD_SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws));
    assert_eq!(status, 201, "{stored}");
    let id = stored["id"].as_str().unwrap().to_owned();
    let old_wrapped = data_keys(&server.data_dir())
        .remove(&id)
        .expect("the original data key bears the key's id");

    // A job that stays running: its transfer of held.csv waits at the proxy's gate.
    let (status, job) = server.call(
        "POST",
        "/v1/ingestions",
        Some(&key),
        Some(
            &json!({ "provider": "aws", "bucket": "samples", "prefix": "runs/",
                      "pattern": "\\.csv$" }),
        ),
    );
    assert!(status == 201 || status == 202, "{status} {job}");
    let job_id = job["id"].as_str().unwrap().to_owned();
    wait_for("the held transfer to reach the proxy", || {
        proxy
            .requests()
            .iter()
            .any(|request| request.path_and_query.contains("held.csv"))
            .then_some(())
    });

    // The new access key exists at the provider; the secret goes in on standard input.
    s3.iam().add_access_key(AccessKey::new(NEW_ID, NEW_SECRET));
    let run = cli(
        &server,
        &key,
        &[
            "external",
            "rotate",
            "aws",
            "--access-key-id",
            NEW_ID,
            "--secret-stdin",
        ],
        &format!("{NEW_SECRET}\n"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "Replaced the secret of aws key {id} \"lab\" (AKIA…0002)"
        )),
        "{run:?}"
    );
    assert!(!run.stdout.contains(NEW_SECRET) && !run.stderr.contains(NEW_SECRET));
    let listed = server.get("/v1/external-keys", &key);
    let after = &listed["keys"][0];
    assert_eq!(after["id"], stored["id"], "{listed}");
    assert_eq!(after["label"], "lab");
    assert_eq!(after["region"], "us-east-1");
    assert_eq!(after["expires_at"], stored["expires_at"]);
    assert_eq!(after["hint"], "AKIA…0002");

    // The rotation is recorded; the old data key lives on while the job holds it.
    let log = events(&server);
    let rotated = of_type(&log, "ExternalKeyRotated");
    assert_eq!(rotated.len(), 1, "{log:?}");
    let data = &rotated[0]["data"];
    assert_eq!(data["key"], id.as_str());
    assert_eq!(data["previous_data_key"], id.as_str());
    assert_eq!(data["hint"], "AKIA…0002");
    let new_data_key = data["data_key"].as_str().unwrap().to_owned();
    assert!(
        new_data_key.starts_with(&format!("{id}/")),
        "{new_data_key}"
    );
    assert!(of_type(&log, "ExternalKeyDataKeyDestroyed").is_empty());
    let held = data_keys(&server.data_dir());
    assert_eq!(held.get(&id), Some(&old_wrapped), "held by the running job");
    assert!(held.contains_key(&new_data_key));
    let job = server.get(&format!("/v1/ingestions/{job_id}"), &key);
    assert_eq!(job["state"], "fetching", "{job}");

    // Released, the job completes on the old secret; its end destroys the old data key.
    gate.open();
    let job = wait_for("the held job to finish", || {
        let job = server.get(&format!("/v1/ingestions/{job_id}"), &key);
        (job["state"] != "fetching" && job["state"] != "queued").then_some(job)
    });
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");
    let destroyed = wait_for("the old data key's destruction", || {
        let log = events(&server);
        of_type(&log, "ExternalKeyDataKeyDestroyed")
            .first()
            .map(|event| (*event).clone())
    });
    assert_eq!(destroyed["data"]["data_key"], id.as_str(), "{destroyed}");
    assert_eq!(destroyed["data"]["key"], id.as_str());
    let left = data_keys(&server.data_dir());
    assert!(!left.contains_key(&id), "{:?}", left.keys());
    assert!(left.contains_key(&new_data_key));
    let canaries: [&[u8]; 3] = [&old_wrapped, OLD_SECRET.as_bytes(), NEW_SECRET.as_bytes()];
    assert_eq!(
        files_containing(&server.data_dir(), &canaries),
        Vec::<String>::new()
    );

    // The provider forgets the old key: only the new secret can work from now on.
    s3.iam().remove_access_key(OLD_ID);
    let run = cli(
        &server,
        &key,
        &[
            "ingest",
            "s3",
            "--bucket",
            "samples",
            "--prefix",
            "runs/",
            "--pattern",
            "\\.csv$",
            "--json",
            // The files are stored already: fetch them again, with the new secret.
            "--force",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let second = run.json();
    assert_eq!(second["state"], "completed", "{second}");
    assert_eq!(second["files_fetched"], 3, "{second}");

    // The audit tools, offline, show both ends.
    let rotated_seq = rotated[0]["seq"].as_u64().unwrap();
    server.stop();
    let data = server.data_dir();
    let data = data.to_str().unwrap();
    let run = cli(
        &server,
        &key,
        &["audit", "shredded", "--prove", "--data", data],
        "",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Data keys of secrets replaced by rotations"),
        "{run:?}"
    );
    let row = run
        .stdout
        .lines()
        .find(|line| line.contains(&id) && line.contains("destroyed"))
        .unwrap_or_else(|| panic!("no destroyed row for {id}: {run:?}"));
    assert!(row.contains(&rotated_seq.to_string()), "{row}");
    assert!(run.stdout.contains("0 opened"), "{run:?}");
    assert!(!run.stdout.contains("Anomalies"), "{run:?}");
    let run = cli(&server, &key, &["audit", "export", "--data", data], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("ExternalKeyRotated"), "{run:?}");
    assert!(
        run.stdout.contains("ExternalKeyDataKeyDestroyed"),
        "{run:?}"
    );
    assert!(!run.stdout.contains(NEW_SECRET) && !run.stdout.contains(OLD_SECRET));
    let before = (rotated_seq - 1).to_string();
    let after = rotated_seq.to_string();
    let run = cli(
        &server,
        &key,
        &["audit", "replay", "--diff", &before, &after, "--data", data],
        "",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|line| line.contains("key rolled") && line.contains(&id)),
        "{run:?}"
    );
}

#[test]
fn a_replaced_secret_held_when_the_server_stops_is_destroyed_at_the_next_start() {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(OLD_ID, OLD_SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    for (name, body) in OBJECTS {
        rt.block_on(s3.put_object("samples", name, Bytes::from_static(body.as_bytes())))
            .unwrap();
    }
    let proxy = rt.block_on(FaultProxy::start(s3.address())).unwrap();
    let gate = Gate::default();
    proxy.inject(
        RequestMatch::get().path_contains("held.csv"),
        Fault::Hold(gate.clone()),
        1,
    );
    let endpoint = proxy.endpoint();
    let env = [("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())];
    let mut server = Server::start_with(&env);
    let key = developer(&server);
    let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": OLD_ID, "secret_access_key": OLD_SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws));
    assert_eq!(status, 201, "{stored}");
    let id = stored["id"].as_str().unwrap().to_owned();
    let (status, job) = server.call(
        "POST",
        "/v1/ingestions",
        Some(&key),
        Some(&json!({ "provider": "aws", "bucket": "samples", "prefix": "runs/" })),
    );
    assert!(status == 201 || status == 202, "{status} {job}");
    wait_for("the held transfer to reach the proxy", || {
        proxy
            .requests()
            .iter()
            .any(|request| request.path_and_query.contains("held.csv"))
            .then_some(())
    });
    let body = json!({ "aws": { "access_key_id": NEW_ID, "secret_access_key": NEW_SECRET,
                                "region": "us-east-1" } });
    let (status, rotated) = server.call(
        "PUT",
        &format!("/v1/external-keys/{id}/credential"),
        Some(&key),
        Some(&body),
    );
    assert_eq!(status, 200, "{rotated}");
    assert!(data_keys(&server.data_dir()).contains_key(&id), "held");

    // The server dies with the job holding the old data key; nothing holds it after a start.
    server.stop();
    gate.open();
    server.restart();
    let left = data_keys(&server.data_dir());
    assert!(!left.contains_key(&id), "{:?}", left.keys());
    assert_eq!(left.keys().filter(|k| k.starts_with(&id)).count(), 1);
    let log = events(&server);
    let destroyed = of_type(&log, "ExternalKeyDataKeyDestroyed");
    assert_eq!(destroyed.len(), 1, "{log:?}");
    assert_eq!(destroyed[0]["data"]["data_key"], id.as_str());
    assert_eq!(destroyed[0]["actor"], "system");
    // The key works on with its new secret: the listing shows it active under the new hint.
    let listed = server.get("/v1/external-keys", &key);
    assert_eq!(listed["keys"][0]["hint"], "AKIA…0002", "{listed}");
    assert_eq!(listed["keys"][0]["status"], "active", "{listed}");
}

#[test]
fn a_rotated_dnanexus_token_works_and_the_old_one_is_destroyed_at_once() {
    const OLD_TOKEN: &str = "dxRotateOldToken0123456789";
    const NEW_TOKEN: &str = "dxRotateNewToken0123456789";
    let rt = runtime();
    let mut seed = Seed::new();
    let user = seed.add_user("dana");
    seed.add_token(&user, OLD_TOKEN);
    let project = seed.add_project("rnaseq", &user);
    seed.add_file(
        &project,
        "/sample-1.quant.sf",
        Content::Bytes(b"Name\tTPM\nBRCA1\t3.5\n".to_vec()),
        8 * 1024,
    );
    let emulator = rt.block_on(DnanexusEmulator::start(seed)).unwrap();
    let endpoint = emulator.endpoint();
    let server = Server::start_with(&[("KEYLEDGER_INGEST_DNANEXUS_API_URL", endpoint.as_str())]);
    let key = developer(&server);
    let dx = json!({ "label": "dx", "provider": "dnanexus", "duration": "30d",
                     "dnanexus": { "token": OLD_TOKEN } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&dx));
    assert_eq!(status, 201, "{stored}");
    let id = stored["id"].as_str().unwrap().to_owned();

    emulator.control().add_token(&user, NEW_TOKEN).unwrap();
    let run = cli(
        &server,
        &key,
        &["external", "rotate", "dnanexus", "--secret-stdin"],
        &format!("{NEW_TOKEN}\n"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("…6789"), "{run:?}");
    emulator.control().revoke_token(OLD_TOKEN);

    // No job held the old data key: it went with the rotation.
    let log = events(&server);
    assert_eq!(of_type(&log, "ExternalKeyRotated").len(), 1, "{log:?}");
    let destroyed = of_type(&log, "ExternalKeyDataKeyDestroyed");
    assert_eq!(destroyed.len(), 1, "{log:?}");
    assert_eq!(destroyed[0]["data"]["data_key"], id.as_str());
    assert!(!data_keys(&server.data_dir()).contains_key(&id));

    let run = cli(&server, &key, &["external", "verify", "dnanexus"], "");
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli(
        &server,
        &key,
        &[
            "ingest",
            "dnanexus",
            "--project",
            &project,
            "--folder",
            "/",
            "--pattern",
            "\\.quant\\.sf$",
            "--json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["files_fetched"], 1, "{run:?}");
}

#[test]
fn only_the_owner_rotates_and_bad_bodies_are_refused_with_a_reason() {
    let server = Server::start();
    let key = developer(&server);
    let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": OLD_ID, "secret_access_key": OLD_SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws));
    assert_eq!(status, 201, "{stored}");
    let path = format!(
        "/v1/external-keys/{}/credential",
        stored["id"].as_str().unwrap()
    );
    let good = json!({ "aws": { "access_key_id": NEW_ID, "secret_access_key": NEW_SECRET,
                                "region": "eu-west-2" } });

    // Another user (even an admin) does not see the key at all.
    let (status, body) = server.call("PUT", &path, Some(&server.admin_key), Some(&good));
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    let check = |body: Value, status: u16, field: &str, words: &str| {
        let (got, answer) = server.call("PUT", &path, Some(&key), Some(&body));
        assert_eq!(got, status, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{body} → {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
        }
        for secret in [NEW_SECRET, "dxNotTheRightProvider01234"] {
            assert!(!answer.to_string().contains(secret), "{answer}");
        }
    };
    check(json!({}), 400, "aws", "needs an `aws` object");
    check(
        json!({ "dnanexus": { "token": "dxNotTheRightProvider01234" } }),
        400,
        "aws",
        "needs an `aws` object",
    );
    check(
        json!({ "aws": { "access_key_id": "AKIAshort", "secret_access_key": NEW_SECRET,
                         "region": "eu-west-2" } }),
        400,
        "access_key_id",
        "AKIA",
    );
    check(
        json!({ "aws": { "access_key_id": NEW_ID, "secret_access_key": "short",
                         "region": "eu-west-2" } }),
        400,
        "secret_access_key",
        "40 characters",
    );
    check(
        json!({ "aws": { "access_key_id": NEW_ID, "secret_access_key": NEW_SECRET } }),
        422,
        "",
        "region",
    );
    let bearer = format!("Bearer {key}");
    let (status, body, _) = server.raw(
        "PUT",
        &path,
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        b"{not json".to_vec(),
    );
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // Nothing of that changed the key; the good body does, and the region may change with it.
    let listed = server.get("/v1/external-keys", &key);
    assert_eq!(listed["keys"][0]["hint"], "AKIA…0001", "{listed}");
    let (status, body) = server.call("PUT", &path, Some(&key), Some(&good));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hint"], "AKIA…0002", "{body}");
    assert_eq!(body["region"], "eu-west-2", "{body}");

    // A deleted key is gone for its owner too.
    let (status, body) = server.call(
        "DELETE",
        &format!("/v1/external-keys/{}", stored["id"].as_str().unwrap()),
        Some(&key),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call("PUT", &path, Some(&key), Some(&good));
    assert_eq!(status, 404, "{body}");
}
