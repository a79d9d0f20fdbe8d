//! `--remote` against a stand-in for the API routes the server mounts on this crate's
//! functions (`GET /v1/events`, `GET /v1/audit/public-key`): the pages put together make the
//! same export as the offline one, and it verifies.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use clap::Parser;
use keyledger_audit::cli::{AuditCommand, Remote, RunContext};
use keyledger_audit::verify::{VerifyOptions, verify_export_file};
use keyledger_audit::{export_jsonl, export_page, public_key_info};
use keyledger_crypto::SecretString;
use keyledger_vault::Vault;

use crate::support::*;

#[derive(Parser)]
struct Binary {
    #[command(subcommand)]
    command: AuditCommand,
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

#[test]
fn a_remote_export_is_the_offline_export_and_verifies() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let test = runtime.block_on(async {
        let test = vault().await;
        for n in 0..1200 {
            test.create_key(dev(), &format!("k{n}"), 30).await;
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
    Binary::try_parse_from(["audit", "export", "--remote", "--out", file_arg])
        .unwrap()
        .command
        .run(&context)
        .unwrap();
    Binary::try_parse_from(["audit", "public-key", "--remote"])
        .unwrap()
        .command
        .run(&context)
        .unwrap();
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
