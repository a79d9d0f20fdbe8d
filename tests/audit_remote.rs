//! The audit commands next to a running server, through the binary: the data directory is
//! held, so the offline form names the command that works; `--remote` verifies and replays the
//! server's log with an auditor's key; checkpoints, the expected head and cut-off exports decide
//! the exit status (6), not only the hash chain.

use std::path::Path;

use serde_json::json;

use crate::support::{CliRun, Server};

/// A user with `role` and a key of theirs.
fn user_key(server: &Server, user: &str, role: &str) -> String {
    server.create_user(user, &[role]);
    let (status, body) = server.call(
        "POST",
        &format!("/v1/users/{user}/api-keys"),
        Some(&server.admin_key),
        Some(&json!({ "name": "audit", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

fn audit(server: &Server, config: &Path, key: &str, args: &[&str]) -> CliRun {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    server.cli(config, &all, "", &[("KEYLEDGER_API_KEY", key)])
}

#[test]
fn verify_and_replay_work_next_to_a_running_server() {
    let server = Server::start();
    let auditor = user_key(&server, "aud", "auditor");
    let member = user_key(&server, "mia", "member");
    for name in ["one", "two", "three"] {
        server.create_key(&server.admin_key, name, "7d");
    }
    let config = tempfile::tempdir().unwrap();
    let config = config.path();
    let data = server.data_dir();
    let data = data.to_str().unwrap();

    // The data directory is the server's: each offline form says which command works instead.
    for (args, instead) in [
        (
            vec!["verify", "--data", data],
            "`keyledger audit verify --remote`",
        ),
        (
            vec!["replay", "--seq", "3", "--data", data],
            "`keyledger audit replay --remote`",
        ),
        (
            vec!["export", "--data", data],
            "`keyledger audit export --remote`",
        ),
        (
            vec!["checkpoint", "--data", data],
            "`keyledger audit checkpoint --remote`",
        ),
    ] {
        let run = audit(&server, config, &auditor, &args);
        assert_eq!(
            run.code, 4,
            "in use: a conflict with the current state: {run:?}"
        );
        assert!(
            run.stderr.contains("in use by a running server") && run.stderr.contains(instead),
            "{args:?}: {run:?}"
        );
    }

    // The same commands with --remote, as an auditor.
    let run = audit(&server, config, &auditor, &["verify", "--remote", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let head = server.get("/v1/events?limit=1", &auditor)["head"]
        .as_u64()
        .unwrap();
    assert_eq!(report["verified_through"], head, "{report}");
    assert_eq!(report["terminated"], true, "{report}");
    assert!(
        report["chained_only_events"].as_u64().unwrap() > 0,
        "the newest events are not signed yet: {report}"
    );
    let run = audit(&server, config, &auditor, &["verify", "--remote"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("chained only:"), "{run:?}");
    assert!(run.stdout.contains("as the server publishes it"), "{run:?}");
    // Not signed at the head: refused when a checkpoint is required.
    let run = audit(
        &server,
        config,
        &auditor,
        &["verify", "--remote", "--require-checkpoint"],
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stdout.contains("not covered by a signed checkpoint")
            || run.stdout.contains("no signed checkpoint covers"),
        "{run:?}"
    );

    // A checkpoint signed now covers the head, which the checkpoint command prints.
    let run = audit(&server, config, &auditor, &["checkpoint", "--remote"]);
    assert_eq!(run.code, 0, "{run:?}");
    let signed_head = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("head "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no head in {run:?}"))
        .to_owned();
    let run = audit(
        &server,
        config,
        &auditor,
        &[
            "verify",
            "--remote",
            "--require-checkpoint",
            "--expect-head",
            &signed_head,
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("OK: "), "{run:?}");
    assert!(!run.stdout.contains("chained only:"), "{run:?}");

    // The log moves on: the old head is still in it, but no longer signed at the end.
    server.create_key(&server.admin_key, "four", "7d");
    let run = audit(
        &server,
        config,
        &auditor,
        &["verify", "--remote", "--expect-head", &signed_head],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = audit(
        &server,
        config,
        &auditor,
        &["verify", "--remote", "--require-checkpoint"],
    );
    assert_eq!(run.code, 6, "{run:?}");
    let (seq, _) = signed_head.split_once(':').unwrap();
    let other = format!("{seq}:{}", "0".repeat(64));
    let run = audit(
        &server,
        config,
        &auditor,
        &["verify", "--remote", "--expect-head", &other],
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stdout.contains("--expect-head"), "{run:?}");

    // Replay as of a seq, over the API.
    let run = audit(
        &server,
        config,
        &auditor,
        &["replay", "--remote", "--seq", seq, "--json"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"aud\""), "{run:?}");

    // Someone without view_audit_log hears which permission and who can grant it (exit 2).
    for args in [
        vec!["verify", "--remote"],
        vec!["replay", "--remote", "--seq", "3"],
    ] {
        let run = audit(&server, config, &member, &args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("`view_audit_log`")
                && run
                    .stderr
                    .contains("`keyledger admin users grant mia auditor`"),
            "{args:?}: {run:?}"
        );
    }
}

#[test]
fn an_export_cut_off_is_named_and_fails() {
    let server = Server::start();
    for name in ["one", "two"] {
        server.create_key(&server.admin_key, name, "7d");
    }
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.jsonl");
    let admin = server.admin_key.clone();
    let run = audit(
        &server,
        dir.path(),
        &admin,
        &["export", "--remote", "--out", export.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let text = std::fs::read_to_string(&export).unwrap();
    let verify = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        audit(
            &server,
            dir.path(),
            &admin,
            &["verify", path.to_str().unwrap()],
        )
    };
    let run = verify("whole.jsonl", &text);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("export: complete"), "{run:?}");

    let lines: Vec<&str> = text.lines().collect();
    // The last line (the end record) gone, as in a copy cut short or an export of an older version.
    let run = verify(
        "unterminated.jsonl",
        &(lines[..lines.len() - 1].join("\n") + "\n"),
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stdout.contains("unterminated, possibly truncated"),
        "{run:?}"
    );
    // Cut inside the last event's line.
    let body = lines[..lines.len() - 1].join("\n");
    let run = verify("cut.jsonl", &body[..body.len() - 30]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stdout.contains("stops in the middle"), "{run:?}");
    assert!(run.stderr.contains("truncated"), "{run:?}");
}
