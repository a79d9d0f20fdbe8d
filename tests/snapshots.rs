//! Wire formats under snapshot: the API's JSON responses and the CLI's `--json` output. Ids,
//! keys and times are redacted; everything else is reviewed in `tests/snapshots/`.

use insta::assert_json_snapshot;
use insta::internals::{Content, ContentPath};
use serde_json::{Value, json};

use crate::support::Server;

/// Redactions for every snapshot: generated ids, secrets and times.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
            assert_json_snapshot!($name, $value, {
                ".id" => "[id]",
                ".key" => "[key]",
                ".hint" => insta::dynamic_redaction(redact_hint),
                ".key_id" => "[id]",
                ".token" => "[token]",
                ".created_at" => "[time]",
                ".expires_at" => insta::dynamic_redaction(redact_time),
                ".previous_valid_until" => "[time]",
                ".keys[].id" => "[id]",
                ".keys[].hint" => insta::dynamic_redaction(redact_hint),
                ".keys[].created_at" => "[time]",
                ".keys[].expires_at" => insta::dynamic_redaction(redact_time),
                ".keys[].last_used_at" => insta::dynamic_redaction(redact_time),
                ".keys[].rolled_at" => insta::dynamic_redaction(redact_time),
                ".keys[].previous_valid_until" => insta::dynamic_redaction(redact_time),
                ".keys[].last_verified_at" => insta::dynamic_redaction(redact_time),
                ".users[].created_at" => "[time]",
                ".deleted[]" => "[id]",
            });
        });
    };
}

/// Internal-key hints are random apart from their prefix; AWS hints are not.
fn redact_hint(value: Content, _: ContentPath<'_>) -> Content {
    match value.as_str() {
        Some(text) if text.starts_with("kl_") => Content::from("kl_[hint]"),
        _ => value,
    }
}

/// Times are redacted; a `null` (never) stays visible.
fn redact_time(value: Content, _: ContentPath<'_>) -> Content {
    if value.as_str().is_some() {
        Content::from("[time]")
    } else {
        value
    }
}

#[test]
fn api_responses() {
    let server = Server::start();
    let admin = server.admin_key.clone();
    let call = |method: &str, path: &str, body: Option<Value>| {
        server.call(method, path, Some(&admin), body.as_ref()).1
    };

    snapshot!("api_me", call("GET", "/v1/me", None));
    let created = call(
        "POST",
        "/v1/api-keys",
        Some(json!({ "name": "ci pipeline", "duration": "30d" })),
    );
    snapshot!("api_key_created", &created);
    let id = created["id"].as_str().unwrap().to_owned();
    snapshot!("api_keys_listed", call("GET", "/v1/api-keys", None));
    snapshot!(
        "api_key_rolled",
        call(
            "POST",
            &format!("/v1/api-keys/{id}/roll"),
            Some(json!({ "grace": "1h" }))
        )
    );
    snapshot!(
        "api_keys_deleted",
        call("POST", "/v1/api-keys/delete", Some(json!({ "ids": [id] })))
    );

    let aws = json!({ "label": "genomics bucket", "provider": "aws", "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "eu-west-2" }, "duration": "never" });
    snapshot!(
        "api_external_key_created",
        call("POST", "/v1/external-keys", Some(aws.clone()))
    );
    snapshot!(
        "api_external_key_conflict",
        call("POST", "/v1/external-keys", Some(aws))
    );
    let dx = json!({ "label": "dx project", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop1234" }, "duration": "90d" });
    call("POST", "/v1/external-keys", Some(dx));
    snapshot!(
        "api_external_keys_listed",
        call("GET", "/v1/external-keys", None)
    );

    snapshot!(
        "api_user_created",
        call(
            "POST",
            "/v1/users",
            Some(json!({ "user": "alice", "display_name": "Alice", "roles": ["developer"] }))
        )
    );
    snapshot!("api_users_listed", call("GET", "/v1/users", None));
    snapshot!("api_roles_listed", call("GET", "/v1/roles", None));
    snapshot!(
        "api_key_verified",
        call("POST", "/v1/keys/verify", Some(json!({ "key": admin })))
    );
    snapshot!(
        "api_key_not_verified",
        call(
            "POST",
            "/v1/keys/verify",
            Some(json!({ "key": "kl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }))
        )
    );
    snapshot!(
        "api_session",
        server
            .call(
                "POST",
                "/v1/auth/login",
                None,
                Some(&json!({ "key": admin }))
            )
            .1
    );

    snapshot!(
        "error_validation",
        call(
            "POST",
            "/v1/api-keys",
            Some(json!({ "name": "", "duration": "30d" }))
        )
    );
    snapshot!(
        "error_unknown_field",
        call(
            "POST",
            "/v1/api-keys",
            Some(json!({ "name": "x", "duration": "30d", "scope": "all" }))
        )
    );
    snapshot!(
        "error_not_found",
        call("DELETE", "/v1/api-keys/key_0000000000000000", None)
    );
    snapshot!(
        "error_unauthenticated",
        server.call("GET", "/v1/api-keys", None, None).1
    );
    snapshot!("error_no_route", call("GET", "/v2/anything", None));
}

#[test]
fn cli_json_output() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let env = [("KEYLEDGER_API_KEY", server.admin_key.as_str())];
    let cli = |args: &[&str], stdin: &str| {
        let run = server.cli(home.path(), args, stdin, &env);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        run.json()
    };

    snapshot!("cli_whoami", cli(&["whoami", "--json"], ""));
    let created = cli(
        &["keys", "create", "laptop", "--duration", "7d", "--json"],
        "",
    );
    snapshot!("cli_keys_create", &created);
    snapshot!("cli_keys_list", cli(&["keys", "list", "--json"], ""));
    snapshot!(
        "cli_keys_delete",
        cli(
            &[
                "keys",
                "delete",
                created["id"].as_str().unwrap(),
                "--yes",
                "--json"
            ],
            ""
        )
    );
    let added = cli(
        &[
            "external",
            "add",
            "aws",
            "--label",
            "bucket",
            "--access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
            "--region",
            "us-east-1",
            "--secret-stdin",
            "--json",
        ],
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    );
    snapshot!("cli_external_add", &added);
    snapshot!(
        "cli_external_list",
        cli(&["external", "list", "--json"], "")
    );
    snapshot!(
        "cli_users_create",
        cli(
            &[
                "admin", "users", "create", "bob", "--role", "member", "--json"
            ],
            ""
        )
    );
}
