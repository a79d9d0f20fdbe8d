//! Bad input: each case gets a 4xx whose message names the problem, and nothing changes.

use serde_json::{Value, json};

use crate::support::Server;

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// A fragment the error message must contain (case-insensitive).
    mentions: &'static str,
}

fn json_case(
    what: &'static str,
    method: &'static str,
    path: &str,
    body: Value,
    status: u16,
    mentions: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.to_string().into_bytes(),
        status,
        mentions,
    }
}

fn raw_case(
    what: &'static str,
    path: &str,
    content_type: Option<&'static str>,
    body: &[u8],
    status: u16,
    mentions: &'static str,
) -> Case {
    Case {
        what,
        method: "POST",
        path: path.to_owned(),
        content_type,
        body: body.to_vec(),
        status,
        mentions,
    }
}

fn key(name: Value, duration: Value) -> Value {
    json!({ "name": name, "duration": duration })
}

fn aws(access_key_id: &str, secret: &str, region: &str) -> Value {
    json!({ "label": "bucket", "provider": "aws", "aws": { "access_key_id": access_key_id, "secret_access_key": secret, "region": region }, "duration": "30d" })
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AKID: &str = "AKIAIOSFODNN7EXAMPLE";

fn cases(existing_key: &str, existing_external: &str) -> Vec<Case> {
    let keys = "/v1/api-keys";
    let external = "/v1/external-keys";
    vec![
        json_case(
            "empty name",
            "POST",
            keys,
            key(json!(""), json!("30d")),
            400,
            "name: must not be empty",
        ),
        json_case(
            "blank name",
            "POST",
            keys,
            key(json!("   "), json!("30d")),
            400,
            "name: must not be empty",
        ),
        json_case(
            "huge name",
            "POST",
            keys,
            key(json!("x".repeat(65)), json!("30d")),
            400,
            "name: must be at most 64",
        ),
        json_case(
            "bell in name",
            "POST",
            keys,
            key(json!("ci\u{7}"), json!("30d")),
            400,
            "contains a control character at character",
        ),
        json_case(
            "newline in name",
            "POST",
            keys,
            key(json!("a\nb"), json!("30d")),
            400,
            "contains a control character at character",
        ),
        json_case(
            "zero days",
            "POST",
            keys,
            key(json!("ci"), json!("0d")),
            400,
            "duration: must be at least 1 day",
        ),
        json_case(
            "zero as a number",
            "POST",
            keys,
            key(json!("ci"), json!(0)),
            400,
            "at least 1 day",
        ),
        json_case(
            "negative duration",
            "POST",
            keys,
            key(json!("ci"), json!("-5d")),
            400,
            "not a duration: use",
        ),
        json_case(
            "negative number",
            "POST",
            keys,
            key(json!("ci"), json!(-5)),
            400,
            "not a duration: use",
        ),
        json_case(
            "non-numeric duration",
            "POST",
            keys,
            key(json!("ci"), json!("soon")),
            400,
            "duration: not a duration: use",
        ),
        json_case(
            "huge duration",
            "POST",
            keys,
            key(json!("ci"), json!("99999999999d")),
            400,
            "not a duration: use",
        ),
        json_case(
            "duration over the policy",
            "POST",
            keys,
            key(json!("ci"), json!("4000d")),
            400,
            "at most 3650 days",
        ),
        json_case(
            "astronomical number",
            "POST",
            keys,
            key(json!("ci"), json!(1e30)),
            400,
            "not a duration: use",
        ),
        json_case(
            "null duration",
            "POST",
            keys,
            key(json!("ci"), Value::Null),
            422,
            "invalid type: null",
        ),
        json_case(
            "missing duration",
            "POST",
            keys,
            json!({ "name": "ci" }),
            422,
            "missing field `duration`",
        ),
        json_case(
            "unknown field",
            "POST",
            keys,
            json!({ "name": "ci", "duration": "7d", "owner": "bob" }),
            422,
            "unknown field `owner`",
        ),
        json_case(
            "name of the wrong type",
            "POST",
            keys,
            key(json!(42), json!("7d")),
            422,
            "invalid type: integer",
        ),
        json_case(
            "an array, not an object",
            "POST",
            keys,
            json!(["ci", "7d"]),
            422,
            "must be a JSON object",
        ),
        raw_case(
            "malformed JSON",
            keys,
            Some("application/json"),
            b"{\"name\": \"ci\",",
            400,
            "not valid JSON",
        ),
        raw_case(
            "empty body",
            keys,
            Some("application/json"),
            b"",
            400,
            "body is empty",
        ),
        raw_case(
            "wrong content type",
            keys,
            Some("text/plain"),
            br#"{"name":"ci","duration":"7d"}"#,
            415,
            "Content-Type: application/json",
        ),
        raw_case(
            "no content type",
            keys,
            None,
            br#"{"name":"ci","duration":"7d"}"#,
            415,
            "Content-Type",
        ),
        raw_case(
            "oversized body",
            keys,
            Some("application/json"),
            format!(
                "{{\"name\":\"{}\",\"duration\":\"7d\"}}",
                "x".repeat(70_000)
            )
            .as_bytes(),
            413,
            "larger than",
        ),
        json_case(
            "unknown provider",
            "POST",
            external,
            json!({ "label": "b", "provider": "gcp", "duration": "30d" }),
            400,
            "provider: not a provider: use aws or dnanexus",
        ),
        json_case(
            "short access key id",
            "POST",
            external,
            aws("AKIA123", SECRET, "eu-west-2"),
            400,
            "access_key_id",
        ),
        json_case(
            "lowercase access key id",
            "POST",
            external,
            aws(&AKID.to_lowercase(), SECRET, "eu-west-2"),
            400,
            "access_key_id",
        ),
        json_case(
            "short secret",
            "POST",
            external,
            aws(AKID, "tooshort", "eu-west-2"),
            400,
            "secret_access_key",
        ),
        json_case(
            "invalid region",
            "POST",
            external,
            aws(AKID, SECRET, "mars-north-1"),
            400,
            "not an AWS region",
        ),
        json_case(
            "region without a number",
            "POST",
            external,
            aws(AKID, SECRET, "us-east"),
            400,
            "region",
        ),
        json_case(
            "aws without its object",
            "POST",
            external,
            json!({ "label": "b", "provider": "aws", "duration": "30d" }),
            400,
            "`aws` object",
        ),
        json_case(
            "both credential objects",
            "POST",
            external,
            json!({ "label": "b", "provider": "dnanexus", "aws": {"access_key_id": AKID, "secret_access_key": SECRET, "region": "eu-west-2"}, "dnanexus": {"token": "dxTokenAbcdefghijklmnop"}, "duration": "30d" }),
            400,
            "leave out the `aws` object",
        ),
        json_case(
            "short DNAnexus token",
            "POST",
            external,
            json!({ "label": "b", "provider": "dnanexus", "dnanexus": { "token": "abc" }, "duration": "30d" }),
            400,
            "token",
        ),
        json_case(
            "unknown field in the AWS object",
            "POST",
            external,
            json!({ "label": "b", "provider": "aws", "aws": { "access_key_id": AKID, "secret_access_key": SECRET, "region": "eu-west-2", "role_arn": "x" }, "duration": "30d" }),
            422,
            "unknown field `role_arn`",
        ),
        json_case(
            "a session token on an access key",
            "POST",
            external,
            json!({ "label": "b", "provider": "aws", "kind": "access_key", "aws": { "access_key_id": AKID, "secret_access_key": SECRET, "region": "eu-west-2", "session_token": "x" }, "duration": "30d" }),
            400,
            "set kind `session`",
        ),
        json_case(
            "a session without its expiry",
            "POST",
            external,
            json!({ "label": "b", "provider": "aws", "aws": { "access_key_id": AKID, "secret_access_key": SECRET, "region": "eu-west-2", "session_token": "x" }, "duration": "30d" }),
            400,
            "needs session_expires_at",
        ),
        json_case(
            "an unknown kind",
            "POST",
            external,
            json!({ "label": "b", "provider": "aws", "kind": "federated", "aws": { "access_key_id": AKID, "secret_access_key": SECRET, "region": "eu-west-2" }, "duration": "30d" }),
            400,
            "use access_key, session or role",
        ),
        json_case(
            "a role sent with an access key",
            "POST",
            external,
            json!({ "label": "b", "provider": "aws", "kind": "role", "aws": { "access_key_id": AKID, "secret_access_key": SECRET, "region": "eu-west-2" }, "duration": "30d" }),
            400,
            "leave out the `aws` object and send `aws_role`",
        ),
        json_case(
            "a role ARN that is not one",
            "POST",
            external,
            json!({ "label": "b", "provider": "aws", "kind": "role", "aws_role": { "role_arn": "arn:aws:iam::12:user/x", "region": "eu-west-2" }, "duration": "30d" }),
            400,
            "not an IAM role ARN",
        ),
        json_case(
            "empty label",
            "POST",
            external,
            json!({ "label": "", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop" }, "duration": "30d" }),
            400,
            "label: must not be empty",
        ),
        json_case(
            "external duration zero",
            "POST",
            external,
            json!({ "label": "b", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop" }, "duration": 0 }),
            400,
            "at least 1 day",
        ),
        json_case(
            "no ids",
            "POST",
            "/v1/api-keys/delete",
            json!({ "ids": [] }),
            400,
            "list at least one id",
        ),
        json_case(
            "a malformed id",
            "POST",
            "/v1/api-keys/delete",
            json!({ "ids": ["nope"] }),
            400,
            "ids[0]",
        ),
        json_case(
            "a malformed second id",
            "POST",
            "/v1/api-keys/delete",
            json!({ "ids": [existing_key, "key_bad"] }),
            400,
            "ids[1]",
        ),
        json_case(
            "an unknown id with a real one",
            "POST",
            "/v1/api-keys/delete",
            json!({ "ids": [existing_key, "key_0000000000000000"] }),
            404,
            "key_0000000000000000",
        ),
        json_case(
            "ids as a string",
            "POST",
            "/v1/api-keys/delete",
            json!({ "ids": existing_key }),
            422,
            "expected a sequence",
        ),
        json_case(
            "an internal id for an external key",
            "POST",
            "/v1/external-keys/delete",
            json!({ "ids": [existing_key] }),
            400,
            "ext_",
        ),
        json_case(
            "an unknown external id with a real one",
            "POST",
            "/v1/external-keys/delete",
            json!({ "ids": [existing_external, "ext_0000000000000000"] }),
            404,
            "ext_0000000000000000",
        ),
        Case {
            what: "a malformed path id",
            method: "DELETE",
            path: "/v1/api-keys/not-an-id".into(),
            content_type: None,
            body: Vec::new(),
            status: 400,
            mentions: "not a valid id",
        },
        json_case(
            "grace too long",
            "POST",
            &format!("/v1/api-keys/{existing_key}/roll"),
            json!({ "grace": "8d" }),
            400,
            "at most 7 days",
        ),
        json_case(
            "grace in weeks",
            "POST",
            &format!("/v1/api-keys/{existing_key}/roll"),
            json!({ "grace": "1w" }),
            400,
            "not a grace period",
        ),
        json_case(
            "a user name with spaces",
            "POST",
            "/v1/users",
            json!({ "user": "Bad User" }),
            400,
            "user: use 1 to 64",
        ),
        json_case(
            "an unknown role",
            "POST",
            "/v1/users",
            json!({ "user": "newbie", "roles": ["wizard"] }),
            422,
            "role `wizard` does not exist",
        ),
        json_case(
            "an unknown permission",
            "PUT",
            "/v1/roles/custom",
            json!({ "permissions": ["fly"] }),
            400,
            "permission: not a permission; known:",
        ),
        json_case(
            "redefining a built-in role",
            "PUT",
            "/v1/roles/admin",
            json!({ "permissions": [] }),
            409,
            "built in",
        ),
        Case {
            what: "a malformed role in the path",
            method: "PUT",
            path: "/v1/users/admin/roles/Not%20A%20Role".into(),
            content_type: None,
            body: Vec::new(),
            status: 400,
            mentions: "role: use",
        },
        Case {
            what: "revoking the last admin",
            method: "DELETE",
            path: "/v1/users/admin/roles/admin".into(),
            content_type: None,
            body: Vec::new(),
            status: 409,
            mentions: "last admin",
        },
    ]
}

/// What must not change: keys (without usage times, which every request moves), external
/// keys, users.
fn state(server: &Server) -> Value {
    let strip = |mut list: Value| {
        for item in list["keys"].as_array_mut().into_iter().flatten() {
            item.as_object_mut().map(|o| o.remove("last_used_at"));
        }
        list
    };
    json!({
        "keys": strip(server.get("/v1/api-keys", &server.admin_key)),
        "external": strip(server.get("/v1/external-keys", &server.admin_key)),
        "users": server.get("/v1/users", &server.admin_key),
        "roles": server.get("/v1/roles", &server.admin_key),
    })
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let server = Server::start();
    let (existing_key, _) = server.create_key(&server.admin_key, "keep me", "30d");
    let (status, external) = server.call(
        "POST",
        "/v1/external-keys",
        Some(&server.admin_key),
        Some(&aws(AKID, SECRET, "eu-west-2")),
    );
    assert_eq!(status, 201);
    let existing_external = external["id"].as_str().unwrap().to_owned();
    let cases = cases(&existing_key, &existing_external);
    assert!(cases.len() >= 30, "{} cases", cases.len());

    let before = state(&server);
    let mut failures = Vec::new();
    for case in &cases {
        let mut headers = vec![("authorization", format!("Bearer {}", server.admin_key))];
        if let Some(content_type) = case.content_type {
            headers.push(("content-type", content_type.to_owned()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body, _) = server.raw(case.method, &case.path, &headers, case.body.clone());
        let message = body["error"]["message"].as_str().unwrap_or("");
        if status != case.status
            || body["error"]["code"].as_str().is_none()
            || !message
                .to_lowercase()
                .contains(&case.mentions.to_lowercase())
        {
            failures.push(format!(
                "{}: expected {} mentioning {:?}, got {status} {body}",
                case.what, case.status, case.mentions
            ));
        }
        assert!(
            !message.contains(SECRET),
            "{}: the message echoes the secret",
            case.what
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(state(&server), before, "bad input changed the state");
    // And the server is still healthy: no panic, no 500 along the way.
    assert_eq!(server.call("GET", "/readyz", None, None).0, 200);
    assert!(
        !server
            .send("GET", "/metrics", None, None)
            .text()
            .unwrap()
            .contains("status=\"500\"")
    );
}
