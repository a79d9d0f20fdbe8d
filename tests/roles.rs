//! Coherent default roles (decision 0012): a fresh `member` stores the external key an import
//! needs and imports with it; every refusal names the missing permission and the command that
//! grants it, over HTTP (in a field) and in the CLI's one error line.

use bytes::Bytes;
use keyledger_testkit::s3::S3Server;
use serde_json::json;

use crate::support::Server;

const ACCESS_KEY_ID: &str = "AKIAROLESTEST0000001";
const SECRET: &str = "rolesSecretKey0123456789abcdefghijklmnOP";

/// Creates `user` with `role` and issues their first key, both through the CLI as the admin.
fn user_with_key(server: &Server, user: &str, role: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let admin = [("KEYLEDGER_API_KEY", server.admin_key.as_str())];
    let run = server.cli(
        dir.path(),
        &["admin", "users", "create", user, "--role", role],
        "",
        &admin,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = server.cli(
        dir.path(),
        &["admin", "users", "issue-key", user, "--name", "first"],
        "",
        &admin,
    );
    assert_eq!(run.code, 0, "{run:?}");
    crate::support::find_key(&run.stdout).unwrap_or_else(|| panic!("no key in {run:?}"))
}

#[test]
fn a_fresh_member_stores_an_aws_key_and_ingests_with_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    for name in ["a", "b", "c"] {
        let body = Bytes::from(format!("gene,count\nBRCA1,{name}\n"));
        rt.block_on(s3.put_object("samples", &format!("runs/{name}.csv"), body))
            .unwrap();
    }
    let endpoint = s3.endpoint();
    let server = Server::start_with(&[("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())]);
    let key = user_with_key(&server, "mia", "member");
    let dir = tempfile::tempdir().unwrap();
    let as_mia = [("KEYLEDGER_API_KEY", key.as_str())];

    let stored = server.cli(
        dir.path(),
        &[
            "external",
            "add",
            "aws",
            "--label",
            "lab",
            "--access-key-id",
            ACCESS_KEY_ID,
            "--region",
            "us-east-1",
            "--secret-stdin",
        ],
        &format!("{SECRET}\n"),
        &as_mia,
    );
    assert_eq!(
        stored.code, 0,
        "a member stores the key an import needs: {stored:?}"
    );
    let ingested = server.cli(
        dir.path(),
        &[
            "ingest",
            "s3",
            "--bucket",
            "samples",
            "--prefix",
            "runs/",
            "--pattern",
            r"\.csv$",
            "--json",
        ],
        "",
        &as_mia,
    );
    assert_eq!(ingested.code, 0, "{ingested:?}");
    let job = ingested.json();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");
}

#[test]
fn a_refusal_names_the_missing_permission_and_who_can_grant_it() {
    let server = Server::start();
    let key = user_with_key(&server, "aud", "auditor");
    let grant = "`keyledger admin users grant aud member`";

    // Over HTTP: the permission in a field, the fix in the message.
    let body = json!({ "label": "dx", "provider": "dnanexus",
        "dnanexus": { "token": "dxTokenAbcdefghijklmnop1234" }, "duration": "30d" });
    let (status, answer) = server.call("POST", "/v1/external-keys", Some(&key), Some(&body));
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "permission_denied");
    assert_eq!(answer["error"]["permission"], "manage_user_api_keys");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("which your roles (auditor) do not grant"),
        "{message}"
    );
    assert!(
        message.contains("`manage_organization_users` (the admin role)"),
        "{message}"
    );
    assert!(message.contains(grant), "{message}");
    // A check made by the route before the vault decides says the same.
    let (status, answer) = server.call("GET", "/v1/api-keys", Some(&key), None);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["permission"], "manage_user_api_keys");
    assert!(answer["error"]["message"].as_str().unwrap().contains(grant));

    // In the CLI: one line, exit 2 (not permitted), the command that fixes it.
    let dir = tempfile::tempdir().unwrap();
    let as_aud = [("KEYLEDGER_API_KEY", key.as_str())];
    let run = server.cli(dir.path(), &["keys", "list"], "", &as_aud);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("`manage_user_api_keys`"), "{run:?}");
    assert!(run.stderr.contains(grant), "{run:?}");
    let run = server.cli(
        dir.path(),
        &["admin", "users", "grant", "aud", "admin"],
        "",
        &as_aud,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("`manage_organization_users`")
            && run
                .stderr
                .contains("`keyledger admin users grant aud admin`"),
        "{run:?}"
    );
    // Granting the suggested role is the whole fix.
    let admin = [("KEYLEDGER_API_KEY", server.admin_key.as_str())];
    let run = server.cli(
        dir.path(),
        &["admin", "users", "grant", "aud", "member"],
        "",
        &admin,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = server.cli(dir.path(), &["keys", "list"], "", &as_aud);
    assert_eq!(run.code, 0, "{run:?}");
}
