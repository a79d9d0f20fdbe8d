//! Governance through the CLI (decision 0026).

use serde_json::json;

use crate::support::{Server, developer_key};

/// `keys create --scope --network`, `admin keys list` (all pages, in
/// `--json` and as a table), `admin keys revoke`, `admin users deactivate|reactivate`.
#[test]
fn the_cli_lists_revokes_and_offboards() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let admin = server.admin_key.clone();
    let env = [("KEYLEDGER_API_KEY", admin.as_str())];
    let cli = |args: &[&str]| server.cli(&config, args, "", &env);
    let mia = developer_key(&server, "mia");
    for n in 0..5 {
        server.create_key(&mia, &format!("key {n}"), "30d");
    }

    let run = cli(&[
        "keys",
        "create",
        "exporter",
        "--scope",
        "view_audit_log",
        "--network",
        "127.0.0.1",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["scopes"], json!(["view_audit_log"]));
    assert_eq!(run.json()["networks"], json!(["127.0.0.1/32"]));

    // Every page is fetched when no cursor is given.
    let run = cli(&["admin", "keys", "list", "--limit", "2", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let listed = run.json();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 8, "{listed}");
    assert_eq!(listed["total"], 8);
    let run = cli(&[
        "admin", "keys", "list", "--user", "mia", "--sort", "-name", "--json",
    ]);
    let listed = run.json();
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["key 4", "key 3", "key 2", "key 1", "key 0", "first"]
    );
    let key_0 = listed["keys"][4]["id"].as_str().unwrap().to_owned();

    let run = cli(&[
        "admin",
        "keys",
        "revoke",
        &key_0,
        "--reason",
        "leaked in a log",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("Revoked {key_0}.")), "{run:?}");
    let run = cli(&["admin", "keys", "list", "--status", "revoked"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("revoked: leaked in a log"),
        "{}",
        run.stdout
    );

    let run = cli(&[
        "admin",
        "users",
        "deactivate",
        "mia",
        "--reason",
        "left the company",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("mia is deactivated: 5 internal and 0 external keys revoked."),
        "{}",
        run.stdout
    );
    let run = cli(&["admin", "keys", "list", "--user", "mia"]);
    assert!(run.stdout.contains("mia (deactivated)"), "{}", run.stdout);
    let run = cli(&["admin", "users", "deactivate", "admin", "--reason", "x"]);
    assert_eq!(run.code, 1, "oneself: {run:?}");
    let run = cli(&["admin", "users", "reactivate", "mia", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.json().get("deactivated").is_none());
}
