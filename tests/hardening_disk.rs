//! Finding 5 and private file modes, through the real binary: a data directory on a small
//! tmpfs that fills up and is freed again, and the modes of everything the server writes.
//! Mounting needs root (as in CI); without it the disk test fails and says why.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keyledger_testkit::small_disk::SmallDisk;
use serde_json::{Value, json};

use crate::support::{BIN, Server};

fn create_key(server: &Server, name: &str) -> (u16, Value) {
    server.call(
        "POST",
        "/v1/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": name, "duration": "7d" })),
    )
}

/// Polls `/readyz` every 20 ms (at most 60 s) until its status is `want`; returns the body.
fn wait_for_readiness(server: &Server, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.call("GET", "/readyz", None, None);
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} (wanted {want}): {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_disk_answers_503_and_not_ready_and_the_server_recovers_without_a_restart() {
    let disk = SmallDisk::mount(48 * 1024);
    let data_dir = disk.path().join("data");
    let data = data_dir.display().to_string();
    let mut server = Server::start_with(&[("KEYLEDGER_DATA_DIR", data.as_str())]);
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        let (status, body) = create_key(&server, &format!("before {n}"));
        assert_eq!(status, 201, "{body}");
        acknowledged.push(body["key"].as_str().expect("key").to_owned());
    }

    let filler = disk.fill();
    // sled may still have room in space it holds already: create until storage refuses.
    let mut n = 0;
    let refusal = loop {
        assert!(n < 5_000, "creates never failed on a full disk");
        let (status, body) = create_key(&server, &format!("while full {n}"));
        match status {
            201 => acknowledged.push(body["key"].as_str().expect("key").to_owned()),
            _ => break (status, body),
        }
        n += 1;
    };
    assert_eq!(refusal.0, 503, "a full disk is a clean 503: {}", refusal.1);
    assert_eq!(
        refusal.1["error"]["code"], "storage_unavailable",
        "{}",
        refusal.1
    );

    let ready = wait_for_readiness(&server, 503);
    assert_eq!(ready["ready"], false, "{ready}");
    let event_log = &ready["components"]["event_log"];
    assert_eq!(event_log["ready"], false, "{ready}");
    assert!(
        event_log["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("No space left on device")),
        "readiness says why: {ready}"
    );
    let (status, body) = create_key(&server, "still full");
    assert_eq!(status, 503, "{body}");
    // Verification reads the projection: it goes on while the disk is full.
    assert_eq!(
        server.call("GET", "/v1/me", Some(&acknowledged[0]), None).0,
        200
    );

    fs::remove_file(&filler).expect("free the disk");
    wait_for_readiness(&server, 200);
    let (status, body) = create_key(&server, "after");
    assert_eq!(status, 201, "creates work again without a restart: {body}");
    acknowledged.push(body["key"].as_str().expect("key").to_owned());
    let metrics = server
        .send("GET", "/metrics", None, None)
        .text()
        .expect("metrics");
    assert!(
        metrics.lines().any(
            |line| line.starts_with("keyledger_log_storage_failures_total ")
                && !line.ends_with(" 0")
        ),
        "storage failures are counted:\n{metrics}"
    );

    server.restart();
    wait_for_readiness(&server, 200);
    for (index, key) in acknowledged.iter().enumerate() {
        let (status, body) = server.call("GET", "/v1/me", Some(key), None);
        assert_eq!(status, 200, "acknowledged key {index} lost: {body}");
    }
    server.stop();
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--data"])
        .arg(&data_dir)
        .env_clear()
        .env("KEYLEDGER_CONFIG_DIR", disk.path().join("config"))
        .output()
        .expect("run audit verify");
    assert!(
        verify.status.success(),
        "the log verifies: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn nothing_the_server_writes_is_readable_by_others_even_under_umask_022() {
    // The usual default umask: without explicit modes files would be 0644, folders 0755.
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let mut server = Server::start();
    rustix::process::umask(previous);
    let (status, body) = create_key(&server, "mode check");
    assert_eq!(status, 201, "{body}");
    let backup = server.dir.path().join("backup");
    let (status, body) = server.call(
        "POST",
        "/v1/admin/backup",
        Some(&server.admin_key),
        Some(&json!({ "dir": backup })),
    );
    assert_eq!(status, 200, "{body}");
    server.stop();

    let export = server.dir.path().join("export.jsonl");
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let run = Command::new(BIN)
        .args(["audit", "export", "--out"])
        .arg(&export)
        .arg("--data")
        .arg(server.data_dir())
        .env_clear()
        .env("KEYLEDGER_CONFIG_DIR", server.dir.path().join("config"))
        .output()
        .expect("run audit export");
    rustix::process::umask(previous);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let mut widened = Vec::new();
    for root in [server.data_dir(), backup, export] {
        collect_widened(&root, &mut widened);
    }
    assert!(
        widened.is_empty(),
        "readable or writable by group or others:\n{}",
        widened.join("\n")
    );
}

fn collect_widened(path: &Path, widened: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::symlink_metadata(path).expect("metadata");
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        widened.push(format!("{:o} {}", mode, path.display()));
    }
    if metadata.is_dir() {
        for entry in fs::read_dir(path).expect("read dir") {
            collect_widened(&entry.expect("entry").path(), widened);
        }
    }
}
