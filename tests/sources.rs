//! Saved sources through the real binary (decision 0031): the API's refusals name the bad
//! field, and the docs' `keyledger source …` commands, run as written, save a scheduled source,
//! list and show it, run it as an ordinary job against the S3 test server, pause, resume and
//! delete it. Schedules by the clock are tested in `crates/ingest/tests/sources.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{CliRun, Server, developer_key, runtime};

const ACCESS_KEY_ID: &str = "AKIASOURCETESTKEY001";
const SECRET: &str = "sourceSecretKey0123456789abcdefghijklmnO";

fn body(name: &str, schedule: Option<&str>, timezone: Option<&str>) -> Value {
    json!({ "name": name, "provider": "aws", "bucket": "samples", "prefix": "runs/",
        "pattern": r"\.csv$", "schedule": schedule, "timezone": timezone })
}

/// The job, polled until it finished (bounded: 120 s).
fn finished_job(server: &Server, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = server.get(&format!("/v1/ingestions/{id}"), key);
        if matches!(
            job["state"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return job;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn source_cli(server: &Server, key: &str, args: &[&str]) -> CliRun {
    let dir = tempfile::tempdir().unwrap();
    server.cli(dir.path(), args, "", &[("KEYLEDGER_API_KEY", key)])
}

#[test]
fn a_bad_schedule_or_time_zone_is_refused_naming_the_field() {
    let server = Server::start();
    let key = developer_key(&server, "syd");
    for (schedule, timezone, field, fragment) in [
        (Some("0 3 * *"), Some("UTC"), "schedule", "5 cron fields"),
        (Some("0 0 3 * * *"), Some("UTC"), "schedule", "has 6"),
        (
            Some("0 25 * * *"),
            Some("UTC"),
            "schedule",
            "not a cron expression",
        ),
        (Some("0 3 * * *"), None, "timezone", "IANA"),
        (
            Some("0 3 * * *"),
            Some("Europe/Atlantis"),
            "timezone",
            "IANA",
        ),
        (None, Some("UTC"), "timezone", "goes with a schedule"),
    ] {
        let (status, answer) = server.call(
            "POST",
            "/v1/sources",
            Some(&key),
            Some(&body("bad", schedule, timezone)),
        );
        assert_eq!(status, 400, "{schedule:?} {timezone:?}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{message}");
    }
    let (status, answer) = server.call(
        "POST",
        "/v1/sources",
        Some(&key),
        Some(&json!({ "name": "bad", "provider": "aws", "bucket": "samples", "pattern": "([" })),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        (&answer["error"]["code"], &answer["error"]["field"]),
        (&json!("invalid_selection"), &json!("pattern")),
        "{answer}"
    );
    // A saved name is taken until the source is deleted.
    let good = body("nightly", Some("0 3 * * *"), Some("Europe/Zurich"));
    let (status, saved) = server.call("POST", "/v1/sources", Some(&key), Some(&good));
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["state"], "active");
    assert_eq!(saved["timezone"], "Europe/Zurich");
    assert!(saved["next_run_at"].is_string(), "{saved}");
    assert_eq!(saved["last_run"], Value::Null);
    assert_eq!(saved["last_refusal"], Value::Null, "{saved}");
    let (status, again) = server.call("POST", "/v1/sources", Some(&key), Some(&good));
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("source_name_taken")),
        "{again}"
    );
}

/// An S3 test server (and the runtime serving it) holding three `.csv` and three `.txt`
/// objects under `runs/`, a server using it (with `env` added), and user `syd`'s key, with an
/// AWS key stored for it.
fn with_s3(env: &[(&str, &str)]) -> (tokio::runtime::Runtime, S3Server, Server, String) {
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    let objects = (0..6).map(|i| {
        let name = if i % 2 == 0 { "csv" } else { "txt" };
        (
            format!("runs/s{i}.{name}"),
            Bytes::from(format!("sample {i}\n")),
        )
    });
    rt.block_on(s3.put_objects("samples", objects)).unwrap();
    let endpoint = s3.endpoint();
    let mut all = vec![("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())];
    all.extend_from_slice(env);
    let server = Server::start_with(&all);
    let key = developer_key(&server, "syd");
    let aws_key = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws_key));
    assert_eq!(status, 201, "{stored}");
    (rt, s3, server, key)
}

#[test]
fn the_docs_source_commands_save_run_pause_and_delete_a_source() {
    let (_rt, _s3, server, key) = with_s3(&[]);

    // As docs/cli.md writes them.
    let saved = source_cli(
        &server,
        &key,
        &[
            "source",
            "save",
            "nightly",
            "--provider",
            "aws",
            "--bucket",
            "samples",
            "--prefix",
            "runs/",
            "--pattern",
            r"\.csv$",
            "--schedule",
            "0 3 * * *",
            "--timezone",
            "Europe/Zurich",
        ],
    );
    assert_eq!(saved.code, 0, "{saved:?}");
    assert!(
        saved.stdout.starts_with("Saved source nightly (src_"),
        "{saved:?}"
    );
    let list = source_cli(&server, &key, &["source", "list", "--json"]).json();
    let source = &list["sources"][0];
    let id = source["id"].as_str().unwrap().to_owned();
    assert_eq!(source["schedule"], "0 3 * * *");
    assert_eq!(source["bucket"], "samples");
    assert_eq!(source["runs"], 0);
    let table = source_cli(&server, &key, &["source", "list"]);
    assert!(
        table.stdout.contains("0 3 * * * (Europe/Zurich)"),
        "{table:?}"
    );

    let run = source_cli(&server, &key, &["source", "run", &id]);
    assert_eq!(run.code, 0, "{run:?}");
    let job_id = run.stdout.trim().to_owned();
    assert!(job_id.starts_with("ing_"), "{run:?}");
    let job = finished_job(&server, &key, &job_id);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");
    let shown = server.get(&format!("/v1/sources/{id}"), &key);
    assert_eq!(shown["runs"], 1);
    assert_eq!(shown["last_run"]["ingestion"], job_id.as_str());
    assert_eq!(shown["last_run"]["state"], "completed");
    assert_eq!(shown["last_run"]["scheduled_for"], Value::Null);
    assert_eq!(shown["recent_runs"].as_array().unwrap().len(), 1);
    let text = source_cli(&server, &key, &["source", "show", &id]);
    assert!(
        text.stdout.contains(&job_id) && text.stdout.contains("by hand"),
        "{text:?}"
    );

    // Another user sees nothing of it.
    let other = developer_key(&server, "zoe");
    let (status, _) = server.call("GET", &format!("/v1/sources/{id}"), Some(&other), None);
    assert_eq!(status, 404);
    let refused = source_cli(&server, &other, &["source", "run", &id]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert_eq!(refused.stderr.trim().lines().count(), 1, "{refused:?}");

    let paused = source_cli(&server, &key, &["source", "pause", &id, "--json"]).json();
    assert_eq!(
        (&paused["state"], &paused["next_run_at"]),
        (&json!("paused"), &Value::Null)
    );
    let resumed = source_cli(&server, &key, &["source", "resume", &id, "--json"]).json();
    assert_eq!(resumed["state"], "active");
    assert!(resumed["next_run_at"].is_string(), "{resumed}");
    let deleted = source_cli(&server, &key, &["source", "delete", &id]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let list = source_cli(&server, &key, &["source", "list", "--json"]).json();
    assert_eq!(list["sources"], json!([]));
    // The run's job stays.
    let job = server.get(&format!("/v1/ingestions/{job_id}"), &key);
    assert_eq!(job["state"], "completed");
}

/// `keyledger serve` runs the schedule by itself, on the real clock: an every-minute source
/// starts a run within a minute (bounded polling, no timed assertion), whose job completes and
/// whose manifest lands in the batch folder without anyone asking for the job.
#[test]
fn the_server_runs_a_scheduled_source_by_itself() {
    let (_rt, _s3, server, key) = with_s3(&[("KEYLEDGER_INGEST_SCHEDULE_TICK_SECS", "1")]);
    let (status, saved) = server.call(
        "POST",
        "/v1/sources",
        Some(&key),
        Some(&body("every minute", Some("* * * * *"), Some("UTC"))),
    );
    assert_eq!(status, 201, "{saved}");
    let id = saved["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let run = loop {
        let source = server.get(&format!("/v1/sources/{id}"), &key);
        if source["last_run"]["state"] == "completed" {
            break source["last_run"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled run completed: {source}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let scheduled_for = run["scheduled_for"].as_str().unwrap();
    assert!(scheduled_for.ends_with(":00.000Z"), "{run}");
    let jobs = server.get("/v1/ingestions", &key);
    let job = &jobs["ingestions"][0];
    assert_eq!(job["id"], run["ingestion"]);
    let sums = server
        .data_dir()
        .join("samples")
        .join(job["store_path"].as_str().unwrap())
        .join("SHA256SUMS");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sums.exists() {
        assert!(
            Instant::now() < deadline,
            "no manifest at {}",
            sums.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&sums).unwrap().lines().count(), 3);
}

/// A scheduled run refused for lack of a key is visible, not silent: the server records it once
/// (`last_refusal` in the source's view), and `keyledger source list` / `source show` mark it.
/// On the real clock: an every-minute source of a user without an AWS key (bounded polling).
#[test]
fn a_scheduled_run_without_a_key_shows_its_refusal() {
    let server = Server::start_with(&[("KEYLEDGER_INGEST_SCHEDULE_TICK_SECS", "1")]);
    let key = developer_key(&server, "noor");
    let (status, saved) = server.call(
        "POST",
        "/v1/sources",
        Some(&key),
        Some(&body("every minute", Some("* * * * *"), Some("UTC"))),
    );
    assert_eq!(status, 201, "{saved}");
    let id = saved["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let source = loop {
        let source = server.get(&format!("/v1/sources/{id}"), &key);
        if source["last_refusal"].is_object() {
            break source;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal was recorded: {source}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(source["last_run"], Value::Null, "{source}");
    let refusal = &source["last_refusal"];
    let reason = refusal["reason"].as_str().unwrap();
    assert!(reason.contains("no usable external key"), "{refusal}");
    assert!(
        refusal["scheduled_for"]
            .as_str()
            .unwrap()
            .ends_with(":00.000Z"),
        "{refusal}"
    );

    let table = source_cli(&server, &key, &["source", "list"]);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.contains("REFUSED "), "{}", table.stdout);
    let shown = source_cli(&server, &key, &["source", "show", id]);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(
        shown.stdout.contains("  refused      the run for ")
            && shown.stdout.contains("no usable external key"),
        "{}",
        shown.stdout
    );
}
