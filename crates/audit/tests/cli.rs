//! The subcommands as the binary mounts them: no clash with its global options, and `verify`
//! fails (non-zero exit) on a damaged export.

use clap::{CommandFactory, Parser, Subcommand};
use keyledger_audit::cli::{AdminAuditCommand, AuditCommand, RunContext};
use keyledger_audit::export_jsonl;

use crate::support::*;

/// The binary's shape: global `--endpoint` and `--json`, `audit` and `admin` subcommands.
#[derive(Debug, Parser)]
struct Binary {
    #[arg(long, global = true)]
    endpoint: Option<String>,
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(subcommand)]
    Audit(AuditCommand),
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Debug, Subcommand)]
enum Admin {
    Bootstrap,
    #[command(flatten)]
    Audit(AdminAuditCommand),
}

#[test]
fn the_subcommands_mount_under_the_binary_without_clashes() {
    Binary::command().debug_assert();
    for args in [
        vec![
            "keyledger",
            "audit",
            "verify",
            "export.jsonl",
            "--public-key",
            "ab",
        ],
        vec!["keyledger", "audit", "verify", "--data", "copy"],
        vec![
            "keyledger",
            "audit",
            "export",
            "--from",
            "5",
            "--to",
            "9",
            "--format",
            "jsonl",
        ],
        vec![
            "keyledger",
            "--json",
            "audit",
            "replay",
            "--as-of",
            "2026-09-21T12:00:00Z",
        ],
        vec!["keyledger", "audit", "replay", "--seq", "12", "--data", "d"],
        vec![
            "keyledger",
            "audit",
            "replay",
            "--diff",
            "3",
            "2026-09-22",
            "--file",
            "e.jsonl",
        ],
        vec!["keyledger", "audit", "shredded", "--prove"],
        vec!["keyledger", "audit", "public-key", "--remote"],
        vec!["keyledger", "audit", "checkpoint"],
        vec!["keyledger", "admin", "rotate-master-key", "--data", "d"],
        vec!["keyledger", "admin", "backup", "/backups/today"],
        vec![
            "keyledger",
            "admin",
            "restore",
            "/backups/today",
            "--data",
            "new",
        ],
        vec!["keyledger", "admin", "bootstrap"],
    ] {
        Binary::try_parse_from(&args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
    }
    assert!(Binary::try_parse_from(["keyledger", "audit", "verify"]).is_err());
    assert!(Binary::try_parse_from(["keyledger", "audit", "replay"]).is_err());
}

#[tokio::test]
async fn verify_and_replay_run_offline_and_verify_fails_on_damage() {
    let test = vault().await;
    test.create_key(dev(), "k", 30).await;
    test.vault.checkpoint_now().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let mut out = Vec::new();
    export_jsonl(test.vault.log(), 1, u64::MAX, &mut out).unwrap();
    std::fs::write(&file, &out).unwrap();
    let (data, _, _) = test.close();
    let run = |args: &[&str]| {
        let parsed = Binary::try_parse_from(args).unwrap();
        let context = RunContext {
            json: parsed.json,
            remote: None,
        };
        match parsed.command {
            Command::Audit(command) => command.run(&context),
            Command::Admin(Admin::Audit(command)) => command.run(&context),
            Command::Admin(Admin::Bootstrap) => Ok(()),
        }
    };
    let file_arg = file.to_str().unwrap();
    let data_arg = data.path().to_str().unwrap();
    run(&["keyledger", "audit", "verify", file_arg]).unwrap();
    run(&["keyledger", "--json", "audit", "verify", "--data", data_arg]).unwrap();
    run(&[
        "keyledger",
        "audit",
        "replay",
        "--seq",
        "3",
        "--data",
        data_arg,
    ])
    .unwrap();
    run(&[
        "keyledger",
        "audit",
        "replay",
        "--diff",
        "2",
        "6",
        "--file",
        file_arg,
    ])
    .unwrap();
    run(&["keyledger", "audit", "shredded", "--data", data_arg]).unwrap();
    run(&["keyledger", "audit", "public-key", "--data", data_arg]).unwrap();

    let text = String::from_utf8(out).unwrap();
    let damaged: Vec<&str> = text.lines().filter(|l| !l.contains("\"seq\":2,")).collect();
    std::fs::write(&file, damaged.join("\n")).unwrap();
    let err = run(&["keyledger", "audit", "verify", file_arg]).unwrap_err();
    assert!(err.to_string().contains("seq 2"), "{err}");
    let failed = err
        .downcast_ref::<keyledger_audit::cli::VerificationFailed>()
        .unwrap();
    assert_eq!(failed.0.seq, 2);
    // Remote commands without a server say what to do.
    let err = run(&["keyledger", "audit", "public-key", "--remote"]).unwrap_err();
    assert!(err.to_string().contains("login"), "{err}");
}

/// Reading a data directory offline while a vault holds it is the typed `InUse`, which the
/// commands turn into advice to ask the server instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_held_by_a_vault_is_in_use() {
    let test = vault().await;
    match keyledger_audit::open_log_offline(test.path()) {
        Err(keyledger_audit::AuditError::InUse(dir)) => assert_eq!(dir, test.path()),
        Err(other) => panic!("expected AuditError::InUse, got {other:?}"),
        Ok(_) => panic!("a held data directory opened offline"),
    }
}
