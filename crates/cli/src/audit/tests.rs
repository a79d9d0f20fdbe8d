//! The audit commands as the binary mounts them: no clash with its global options, offline
//! runs, `verify` failing on a damaged export, and `--remote` against a stand-in for the API
//! routes the server mounts on the audit library (`GET /v1/events`, `GET /v1/audit/public-key`):
//! the pages put together make the same export as the offline one, and it verifies.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use keyledger_audit::verify::{VerifyOptions, verify_export_file};
use keyledger_audit::{export_jsonl, export_page, public_key_info};
use keyledger_crypto::{MasterKey, SecretString};
use keyledger_domain::{Action, Actor, KeyDuration, KeyName, RoleName, Timestamp, UserId};
use keyledger_log::Durability;
use keyledger_vault::{AuditConfig, ManualClock, Vault, VaultConfig};

use super::commands::VerificationFailed;
use super::remote::{Remote, RunContext};
use crate::admin::AdminCommand;
use crate::{Cli, Command};

#[test]
fn the_subcommands_mount_under_the_binary_without_clashes() {
    Cli::command().debug_assert();
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
        Cli::try_parse_from(&args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
    }
    assert!(Cli::try_parse_from(["keyledger", "audit", "verify"]).is_err());
    assert!(Cli::try_parse_from(["keyledger", "audit", "replay"]).is_err());
}

#[tokio::test]
async fn verify_and_replay_run_offline_and_verify_fails_on_damage() {
    let test = vault().await;
    test.create_key("k").await;
    test.vault.checkpoint_now().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let mut out = Vec::new();
    export_jsonl(test.vault.log(), 1, u64::MAX, &mut out).unwrap();
    std::fs::write(&file, &out).unwrap();
    let data = test.close();
    let run = |args: &[&str]| {
        let parsed = Cli::try_parse_from(args).unwrap();
        let context = RunContext {
            json: parsed.client.json,
            remote: None,
        };
        match parsed.command {
            Command::Audit(command) => command.run(&context),
            Command::Admin(AdminCommand::Audit(command)) => command.run(&context),
            _ => Ok(()),
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
    let failed = err.downcast_ref::<VerificationFailed>().unwrap();
    assert_eq!(failed.0.seq, 2);
    // Remote commands without a server say what to do.
    let err = run(&["keyledger", "audit", "public-key", "--remote"]).unwrap_err();
    assert!(err.to_string().contains("login"), "{err}");
}

#[test]
fn a_remote_export_is_the_offline_export_and_verifies() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let test = runtime.block_on(async {
        let test = vault().await;
        for n in 0..1200 {
            test.create_key(&format!("k{n}")).await;
            if n % 500 == 0 {
                test.vault.checkpoint_now().unwrap();
            }
        }
        test
    });
    drop(runtime);
    let head = test.vault.log().head().0;
    let mut offline = Vec::new();
    export_jsonl(test.vault.log(), 1, u64::MAX, &mut offline).unwrap();

    // Pages of 1,000: two for the events, one for the key.
    let (endpoint, server) = serve(test.vault.clone(), 3);
    let context = RunContext {
        json: false,
        remote: Some(Remote {
            endpoint,
            key: SecretString::new(format!("kl_{}", "x".repeat(38))),
        }),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("remote.jsonl");
    let file_arg = file.to_str().unwrap();
    let audit = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
        Command::Audit(command) => command.run(&context),
        other => panic!("not an audit command: {other:?}"),
    };
    audit(&[
        "keyledger",
        "audit",
        "export",
        "--remote",
        "--out",
        file_arg,
    ])
    .unwrap();
    audit(&["keyledger", "audit", "public-key", "--remote"]).unwrap();
    let seen = server.join().unwrap();
    assert_eq!(seen[0], "/v1/events?from=1&limit=1000");
    assert_eq!(seen[1], "/v1/events?from=1001&limit=1000");
    assert_eq!(seen[2], "/v1/audit/public-key");

    assert_eq!(std::fs::read(&file).unwrap(), offline);
    let key = test.vault.checkpoint_public_key().unwrap();
    let outcome = verify_export_file(
        &file,
        VerifyOptions {
            public_key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(outcome.is_ok(), "{}", outcome.render());
    assert_eq!(outcome.verified_through, head);
    assert_eq!(outcome.checkpoints_verified, 3);
}

struct TestVault {
    vault: Vault,
    dir: tempfile::TempDir,
}

/// A fresh vault with an admin and a `dev` user holding the `developer` role, on a fixed clock,
/// without automatic checkpoints or snapshots.
async fn vault() -> TestVault {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
    let config = VaultConfig {
        data_dir: dir.path().to_path_buf(),
        durability: Durability::Flush,
        ..VaultConfig::default()
    };
    let vault = Vault::open(config, &master, clock).unwrap();
    vault.configure_audit(AuditConfig {
        checkpoint_every: 0,
        snapshot_every: 0,
    });
    vault
        .bootstrap(UserId::parse("admin").unwrap())
        .await
        .unwrap();
    vault
        .run(
            user_actor("admin"),
            Action::CreateUser {
                user: UserId::parse("dev").unwrap(),
                display_name: None,
                roles: vec![RoleName::parse("developer").unwrap()],
            },
        )
        .await
        .unwrap();
    TestVault { vault, dir }
}

impl TestVault {
    /// A key of `dev`'s, valid 30 days.
    async fn create_key(&self, name: &str) {
        self.vault
            .create_api_key(
                user_actor("dev"),
                KeyName::parse(name).unwrap(),
                KeyDuration::Days(30),
                None,
            )
            .await
            .unwrap();
    }

    /// Closes the vault, leaving its data directory.
    fn close(self) -> tempfile::TempDir {
        drop(self.vault);
        self.dir
    }
}

fn user_actor(name: &str) -> Actor {
    Actor::User {
        user: UserId::parse(name).unwrap(),
        key: None,
    }
}

/// Serves `requests` requests, one per connection, then stops.
fn serve(vault: Vault, requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut authorized = false;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                authorized |= header
                    .to_ascii_lowercase()
                    .starts_with("authorization: bearer kl_");
            }
            let target = request_line.split_whitespace().nth(1).unwrap().to_owned();
            let body = if !authorized {
                None
            } else if let Some(query) = target.strip_prefix("/v1/events?") {
                let value = |name: &str| {
                    query
                        .split('&')
                        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                };
                let page = export_page(&vault, value("from"), value("limit") as usize).unwrap();
                Some(serde_json::to_string(&page).unwrap())
            } else if target == "/v1/audit/public-key" {
                Some(serde_json::to_string(&public_key_info(&vault).unwrap()).unwrap())
            } else {
                None
            };
            let response = match body {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_owned(),
            };
            stream.write_all(response.as_bytes()).unwrap();
            seen.push(target);
        }
        seen
    });
    (endpoint, handle)
}
