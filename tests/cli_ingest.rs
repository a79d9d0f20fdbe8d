//! `keyledger ingest` as a user meets it: exit codes that say how a job ended, `--detach` for
//! scripts, Ctrl-C that cancels, and a batch's manifest and files on the user's own machine.
//! Real components throughout: the binary, an S3 server with SigV4 checking behind the
//! fault-injecting proxy, coreutils' `sha256sum`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
use keyledger_testkit::fault_proxy::{CannedResponse, Fault, FaultProxy, RequestMatch};
use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{BIN, CliRun, Server, runtime};

const ACCESS_KEY_ID: &str = "AKIACLIINGESTTEST001";
const SECRET: &str = "cliIngestSecretKey0123456789abcdefghijkl";

/// The objects of bucket `samples`: three count tables, one that the proxy can break, a note.
const OBJECTS: &[(&str, &str)] = &[
    ("runs/quant_1.csv", "gene,count\nBRCA1,1\n"),
    ("runs/quant_2.csv", "gene,count\nBRCA1,2\nTP53,14\n"),
    ("runs/plate/quant_3.csv", "gene,count\nTP53,3\n"),
    ("runs/broken.csv", "gene,count\nEGFR,9\n"),
    ("runs/notes.txt", "not a table\n"),
];

/// An S3 server with the objects above, behind a fault proxy, and a keyledger server that
/// reaches S3 through the proxy.
struct Setup {
    rt: tokio::runtime::Runtime,
    _s3: S3Server,
    proxy: FaultProxy,
    server: Server,
    /// dana's internal key (role `developer`, who may store keys and import).
    key: String,
    /// dana's stored AWS key's id.
    aws_key: String,
    config: tempfile::TempDir,
}

impl Setup {
    fn start(extra: &[(&str, &str)]) -> Setup {
        let rt = runtime();
        let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
        rt.block_on(s3.create_bucket("samples")).unwrap();
        for (key, body) in OBJECTS {
            rt.block_on(s3.put_object("samples", key, Bytes::from_static(body.as_bytes())))
                .unwrap();
        }
        let proxy = rt.block_on(FaultProxy::start(s3.address())).unwrap();
        let endpoint = proxy.endpoint();
        let mut env = vec![("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())];
        env.extend_from_slice(extra);
        let server = Server::start_with(&env);
        server.create_user("dana", &["developer"]);
        let (status, body) = server.call(
            "POST",
            "/v1/users/dana/api-keys",
            Some(&server.admin_key),
            Some(&json!({ "name": "ingest", "duration": "7d" })),
        );
        assert_eq!(status, 201, "{body}");
        let key = body["key"].as_str().unwrap().to_owned();
        let aws = json!({ "label": "lab", "provider": "aws", "duration": "30d",
            "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
        let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws));
        assert_eq!(status, 201, "{stored}");
        Setup {
            rt,
            _s3: s3,
            proxy,
            server,
            key,
            aws_key: stored["id"].as_str().unwrap().to_owned(),
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        self.server.cli(
            self.config.path(),
            args,
            "",
            &[("KEYLEDGER_API_KEY", &self.key)],
        )
    }

    /// `keyledger ingest s3 --bucket samples --prefix runs/ --pattern PATTERN [extra…]`.
    fn ingest(&self, pattern: &str, extra: &[&str]) -> CliRun {
        let mut args = vec![
            "ingest",
            "s3",
            "--bucket",
            "samples",
            "--prefix",
            "runs/",
            "--pattern",
            pattern,
        ];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    fn batch_dir(&self, job: &Value) -> std::path::PathBuf {
        self.server
            .data_dir()
            .join("samples")
            .join(job["store_path"].as_str().unwrap())
    }
}

/// Polls `probe` until it gives a value; panics after a minute (nothing here takes that long).
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

fn single_error_line(run: &CliRun) -> &str {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {run:?}");
    assert!(lines[0].starts_with("error: "), "{run:?}");
    lines[0]
}

fn sha256sum_check(dir: &Path) -> std::process::Output {
    Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("coreutils sha256sum")
}

#[test]
fn ingest_exit_codes_say_how_the_job_ended() {
    let setup = Setup::start(&[]);

    // Every selected file stored: 0, and the batch folder holds SHA256SUMS and manifest.json
    // that coreutils accepts as they are.
    let run = setup.ingest(r"quant_\d\.csv$", &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["state"], "completed");
    assert_eq!(job["files_fetched"], 3);
    let batch = setup.batch_dir(&job);
    let checked = sha256sum_check(&batch);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{said}");
    for path in [
        "quant_1.csv: OK",
        "quant_2.csv: OK",
        "plate/quant_3.csv: OK",
    ] {
        assert!(said.lines().any(|line| line == path), "{said}");
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(batch.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["ingestion"], job["id"]);
    assert_eq!(manifest["state"], "completed");
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{manifest}");
    let first = &files[0];
    assert_eq!(first["path"], "plate/quant_3.csv");
    assert_eq!(first["size"], OBJECTS[2].1.len());
    assert_eq!(first["source"]["bucket"], "samples");
    assert_eq!(first["source"]["key"], "runs/plate/quant_3.csv");
    assert!(!first["source"]["etag"].as_str().unwrap().is_empty());
    assert_eq!(first["external_key"], setup.aws_key.as_str());
    assert_eq!(first["ingestion"], job["id"]);
    assert!(first["fetched_at"].as_str().unwrap().ends_with('Z'));
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_json_snapshot!("api_ingestion_manifest", &manifest, {
            ".ingestion" => "[id]",
            ".batch_id" => "[batch]",
            ".store_path" => "[store path]",
            ".requested_at" => "[time]",
            ".finished_at" => "[time]",
            ".files[].external_key" => "[id]",
            ".files[].fetched_at" => "[time]",
            ".files[].ingestion" => "[id]",
        });
    });
    // The API serves the same manifest.
    let served = setup.server.get(
        &format!("/v1/ingestions/{}/manifest", job["id"].as_str().unwrap()),
        &setup.key,
    );
    assert_eq!(served, manifest);

    // A shell glob matches nothing: 8, with what was searched and the regex that was meant.
    let run = setup.ingest("quant_*.csv", &[]);
    assert_eq!(run.code, 8, "{run:?}");
    let line = single_error_line(&run);
    for expected in [
        "nothing matched",
        "s3://samples/runs/",
        "regular expression",
        r"(^|/)quant_[^/]*\.csv$",
    ] {
        assert!(line.contains(expected), "{expected}: {line}");
    }
    // The suggestion works (`--force`: these files were imported above, and would be skipped).
    let run = setup.ingest(r"(^|/)quant_[^/]*\.csv$", &["--json", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["files_fetched"], 3);

    // A glob that is not even a regular expression: refused before a job exists (1), with
    // the same hint.
    let run = setup.ingest("*.h5ad", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        single_error_line(&run).contains(r"(^|/)[^/]*\.h5ad$"),
        "{run:?}"
    );

    // One file the provider will not serve: 7, and the failed file is listed with its reason.
    setup.proxy.inject(
        RequestMatch::get().path_contains("broken.csv"),
        Fault::Respond(CannedResponse::s3_error(
            404,
            "NoSuchKey",
            "The specified key does not exist.",
        )),
        100,
    );
    let run = setup.ingest(r"\.csv$", &[]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("broken.csv") && line.len() > "broken.csv".len() + 2),
        "{run:?}"
    );
    assert!(
        single_error_line(&run).contains("1 of 4 files failed"),
        "{run:?}"
    );
    // `ingest status` says the same.
    let id = setup.server.get("/v1/ingestions", &setup.key)["ingestions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = setup.cli(&["ingest", "status", &id]);
    assert_eq!(status.code, 7, "{status:?}");
    // The manifest lists the failure too.
    let manifest = setup
        .server
        .get(&format!("/v1/ingestions/{id}/manifest"), &setup.key);
    assert_eq!(manifest["failed"][0]["path"], "broken.csv", "{manifest}");
    assert!(manifest["failed"][0]["reason"].as_str().unwrap().len() > 10);

    // The provider refuses the whole selection (no such bucket): the job fails, and the exit
    // code follows the API's failure kind (9 for the provider's refusals, else 5).
    let run = setup.cli(&[
        "ingest",
        "s3",
        "--bucket",
        "no-such-bucket",
        "--pattern",
        "csv",
        "--json",
    ]);
    let job = run.json();
    assert_eq!(job["state"], "failed", "{run:?}");
    let expected = match job["failure_kind"].as_str() {
        Some("provider_rejected" | "not_found" | "unreachable") => 9,
        _ => 5,
    };
    assert_eq!(run.code, expected, "{run:?}");
    let line = single_error_line(&run);
    assert!(!line.contains("Error(") && !line.contains("{"), "{line}");

    // --detach: standard output is the job id alone; the job runs on and completes.
    let run = setup.ingest(r"quant_1\.csv$", &["--detach"]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.stdout.trim();
    assert_eq!(run.stdout, format!("{id}\n"));
    assert!(id.starts_with("ing_"), "{run:?}");
    assert!(run.stderr.contains("keyledger ingest status"), "{run:?}");
    let job = wait_for("the detached job to end", || {
        let job = setup
            .server
            .get(&format!("/v1/ingestions/{id}"), &setup.key);
        (job["state"] != "queued" && job["state"] != "listing" && job["state"] != "fetching")
            .then_some(job)
    });
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(setup.cli(&["ingest", "status", id]).code, 0);
}

/// Starts `keyledger ingest s3 … --pattern 'quant_\d\.csv$'` (following) against `endpoint`.
fn follow_in_background(setup: &Setup, endpoint: &str) -> std::process::Child {
    Command::new(BIN)
        .args([
            "ingest",
            "s3",
            "--bucket",
            "samples",
            "--prefix",
            "runs/",
            "--pattern",
            r"quant_\d\.csv$",
        ])
        .env_clear()
        .env("KEYLEDGER_CONFIG_DIR", setup.config.path())
        .env("KEYLEDGER_ENDPOINT", endpoint)
        .env("KEYLEDGER_API_KEY", &setup.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyledger")
}

/// The newest job once it is fetching the stalled file.
fn wait_until_stalled(setup: &Setup, previous: Option<&str>) -> String {
    wait_for("the job to be fetching the stalled file", || {
        let list = setup.server.get("/v1/ingestions", &setup.key);
        let job = list["ingestions"].get(0)?.clone();
        (job["id"].as_str() != previous
            && job["state"] == "fetching"
            && job["files_running"].as_u64() > Some(0))
        .then(|| job["id"].as_str().unwrap().to_owned())
    })
}

fn interrupt(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits (bounded) for the CLI to exit; its exit code and standard error.
fn exit_of(mut child: std::process::Child) -> (Option<i32>, String) {
    let status = wait_for("the CLI to exit", || child.try_wait().unwrap());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

#[test]
fn ctrl_c_cancels_a_followed_ingestion() {
    let setup = Setup::start(&[("KEYLEDGER_INGEST_MAX_ATTEMPTS", "3")]);
    // Every transfer of this file hangs, so a job stays in `fetching` until cancelled.
    setup.proxy.inject(
        RequestMatch::get().path_contains("quant_2.csv"),
        Fault::Stall {
            duration: Duration::from_secs(600),
        },
        1000,
    );
    let child = follow_in_background(&setup, &setup.server.base);
    let id = wait_until_stalled(&setup, None);
    interrupt(&child);
    let (code, stderr) = exit_of(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Cancelling ingestion {id}… (use --detach to leave jobs running)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("was cancelled"), "{stderr}");
    let job = setup
        .server
        .get(&format!("/v1/ingestions/{id}"), &setup.key);
    assert_eq!(job["state"], "cancelled", "{job}");

    // A second Ctrl-C does not wait for a cancellation that hangs: the CLI reaches the server
    // through a proxy that holds the cancel request.
    let address: std::net::SocketAddr = setup
        .server
        .base
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let front = setup.rt.block_on(FaultProxy::start(address)).unwrap();
    front.inject(
        RequestMatch::any().path_contains("/cancel"),
        Fault::Stall {
            duration: Duration::from_secs(600),
        },
        1,
    );
    let child = follow_in_background(&setup, &front.endpoint());
    let second = wait_until_stalled(&setup, Some(&id));
    interrupt(&child);
    wait_for("the cancel request to reach the proxy", || {
        let seen = front.requests();
        seen.iter()
            .any(|request| request.path_and_query.contains("/cancel"))
            .then_some(())
    });
    interrupt(&child);
    let (code, stderr) = exit_of(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "interrupted again; ingestion {second} may still be cancelling"
        )),
        "{stderr}"
    );
    // Nothing was cancelled: the job still runs, and can be cancelled directly.
    let (status, job) = setup.server.call(
        "POST",
        &format!("/v1/ingestions/{second}/cancel"),
        Some(&setup.key),
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{job}");
}

#[test]
fn a_batch_is_downloaded_checked_and_resumed() {
    let mut setup = Setup::start(&[]);
    let run = setup.ingest(r"quant_\d\.csv$", &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.json()["id"].as_str().unwrap().to_owned();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("batch");
    let target_arg = target.display().to_string();

    // A transfer that breaks off leaves nothing under the file's name.
    let address: std::net::SocketAddr = setup
        .server
        .base
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let front = setup.rt.block_on(FaultProxy::start(address)).unwrap();
    front.inject(
        RequestMatch::get().path_contains("/files/quant_2.csv"),
        Fault::DropMidBody { after_bytes: 5 },
        1,
    );
    let broken = setup.server.cli(
        setup.config.path(),
        &["ingest", "download", &id, "--to", &target_arg],
        "",
        &[
            ("KEYLEDGER_API_KEY", &setup.key),
            ("KEYLEDGER_ENDPOINT", &front.endpoint()),
        ],
    );
    assert_eq!(broken.code, 5, "{broken:?}");
    // Broken off in the body or, when the proxy's close overtakes the response head, before it.
    let last = broken.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the download of quant_2.csv ")
            && last.ends_with("; run the command again to go on"),
        "{broken:?}"
    );
    assert!(!target.join("quant_2.csv").exists());

    let run = setup.cli(&["ingest", "download", &id, "--to", &target_arg]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("3 files in"), "{run:?}");
    for (key, body) in OBJECTS.iter().filter(|(key, _)| key.contains("quant_")) {
        let path = key.strip_prefix("runs/").unwrap();
        assert_eq!(std::fs::read_to_string(target.join(path)).unwrap(), *body);
    }
    let checked = sha256sum_check(&target);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    assert!(target.join("manifest.json").is_file());

    // Run again after a damaged file and a broken earlier transfer: only the damaged file is
    // fetched, the temporary file is replaced, nothing half-written stays under a final name.
    std::fs::write(target.join("quant_2.csv"), "damaged").unwrap();
    let run = setup.cli(&["ingest", "download", &id, "--to", &target_arg, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let summary = run.json();
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_json_snapshot!("cli_ingest_download", &summary, {
            ".ingestion" => "[id]",
            ".batch_id" => "[batch]",
            ".directory" => "[directory]",
        });
    });
    assert_eq!(summary["downloaded"], 1, "{summary}");
    assert_eq!(summary["already_present"], 2, "{summary}");
    assert_eq!(
        std::fs::read_to_string(target.join("quant_2.csv")).unwrap(),
        OBJECTS[1].1
    );
    assert!(sha256sum_check(&target).status.success());
    let leftovers: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // `ingest manifest` shows each file with its source.
    let run = setup.cli(&["ingest", "manifest", &id]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("s3://samples/runs/plate/quant_3.csv"),
        "{run:?}"
    );

    // The files route: one byte range, only the owner, only the batch's own files.
    let path = format!("/v1/ingestions/{id}/files/quant_2.csv");
    let response = reqwest::blocking::Client::new()
        .get(format!("{}{path}", setup.server.base))
        .bearer_auth(&setup.key)
        .header("range", "bytes=5-9")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 206);
    let size = OBJECTS[1].1.len();
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 5-9/{size}").as_str()
    );
    assert_eq!(
        response.bytes().unwrap().as_ref(),
        &OBJECTS[1].1.as_bytes()[5..=9]
    );
    let (status, body) = setup
        .server
        .call("GET", &path, Some(&setup.server.admin_key), None);
    assert_eq!(status, 404, "another user's batch is not found: {body}");
    for escape in [
        "..%2F..%2Fmaster.key",
        "%2E%2E/%2E%2E/master.key",
        "plate/..%2F..%2F..%2Fmaster.key",
        "nothing.csv",
    ] {
        let (status, body) = setup.server.call(
            "GET",
            &format!("/v1/ingestions/{id}/files/{escape}"),
            Some(&setup.key),
            None,
        );
        // 404, or 400 where the client library already folded `%2E%2E` into the route.
        assert!(matches!(status, 400 | 404), "{escape}: {status} {body}");
    }

    // Manifest files lost while the server was down (or never written: it stopped as the job
    // ended) are written again, from the log, before the job is next reported finished.
    let before = setup
        .server
        .get(&format!("/v1/ingestions/{id}/manifest"), &setup.key);
    let job = setup
        .server
        .get(&format!("/v1/ingestions/{id}"), &setup.key);
    let batch = setup.batch_dir(&job);
    setup.server.stop();
    std::fs::remove_file(batch.join("SHA256SUMS")).unwrap();
    std::fs::remove_file(batch.join("manifest.json")).unwrap();
    setup.server.restart();
    let job = setup
        .server
        .get(&format!("/v1/ingestions/{id}"), &setup.key);
    assert_eq!(job["state"], "completed");
    assert!(sha256sum_check(&batch).status.success());
    let rewritten: Value =
        serde_json::from_slice(&std::fs::read(batch.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(rewritten, before);
}

#[test]
fn dnanexus_ingestions_exit_and_record_their_sources_the_same_way() {
    const DX_TOKEN: &str = "dxCliIngestToken0123456789abcdef";
    let rt = runtime();
    let mut seed = Seed::new();
    let user = seed.add_user("dana");
    seed.add_token(&user, DX_TOKEN);
    let project = seed.add_project("rnaseq", &user);
    for (path, body) in [
        ("/quant/s1.quant.sf", "Name\tTPM\nBRCA1\t3.5\n"),
        ("/quant/lane-2/s2.quant.sf", "Name\tTPM\nTP53\t1.0\n"),
        ("/quant/s1.log", "done\n"),
    ] {
        seed.add_file(
            &project,
            path,
            Content::Bytes(body.as_bytes().to_vec()),
            8 * 1024,
        );
    }
    let emulator = rt.block_on(DnanexusEmulator::start(seed)).unwrap();
    let endpoint = emulator.endpoint();
    let server = Server::start_with(&[("KEYLEDGER_INGEST_DNANEXUS_API_URL", endpoint.as_str())]);
    server.create_user("dana", &["developer"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/dana/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "ingest", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let dx = json!({ "label": "dx", "provider": "dnanexus", "duration": "30d", "dnanexus": { "token": DX_TOKEN } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&dx));
    assert_eq!(status, 201, "{stored}");
    let config = tempfile::tempdir().unwrap();
    let ingest = |pattern: &str| {
        server.cli(
            config.path(),
            &[
                "ingest",
                "dnanexus",
                "--project",
                &project,
                "--folder",
                "/quant",
                "--pattern",
                pattern,
                "--json",
            ],
            "",
            &[("KEYLEDGER_API_KEY", &key)],
        )
    };

    let run = ingest("*.sf");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(r"(^|/)[^/]*\.sf$"), "{run:?}");
    let run = ingest("quant.sf$x");
    assert_eq!(run.code, 8, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("no file in {project}:/quant matches")),
        "{run:?}"
    );

    let run = ingest(r"\.quant\.sf$");
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    let id = job["id"].as_str().unwrap();
    let manifest = server.get(&format!("/v1/ingestions/{id}/manifest"), &key);
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{manifest}");
    assert_eq!(files[0]["path"], "lane-2/s2.quant.sf");
    assert_eq!(files[0]["source"]["project"], project.as_str());
    assert!(
        files[0]["source"]["file_id"]
            .as_str()
            .unwrap()
            .starts_with("file-"),
        "{manifest}"
    );
    assert_eq!(files[0]["external_key"], stored["id"]);
    let batch = server
        .data_dir()
        .join("samples")
        .join(job["store_path"].as_str().unwrap());
    assert!(sha256sum_check(&batch).status.success());
}
