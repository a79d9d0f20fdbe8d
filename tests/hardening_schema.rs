//! Input validation and the OpenAPI document, checked against the running binary:
//! - no error echoes what was sent: a canary secret in every field of every body route, in
//!   every path parameter and in the query never comes back in a refusal;
//! - every status and error code an operation answers with is in `/openapi.json` (each route
//!   walked with bad input), and schemathesis, driven by the document, finds nothing;
//! - names refuse characters that hide what they say; ingestion selections are strict and a
//!   destination must be in the caller's own area of the sample store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Server;

/// Shaped like an AWS secret (40 characters, with `/` and `+`), as if pasted into the wrong field.
const CANARY: &str = "CANARYsecretDoNotEcho/0123456789+abcdXYZ";
/// The same without the characters a URL path treats specially.
const PATH_CANARY: &str = "CANARYsecretDoNotEcho0123456789abcdXYZ";

/// One operation of the document, with a concrete path and (for body routes) a valid body.
struct Probe {
    method: &'static str,
    route: &'static str,
    path: String,
    body: Option<Value>,
}

/// A valid request for every route that takes a body. The canary test checks that this list
/// covers every body route of the document, so a new one cannot be left out.
fn body_probes(key_id: &str, backup_dir: &Path) -> Vec<Probe> {
    let probe = |method, route: &'static str, path: &str, body: Value| Probe {
        method,
        route,
        path: path.to_owned(),
        body: Some(body),
    };
    vec![
        probe(
            "POST",
            "/v1/auth/login",
            "/v1/auth/login",
            json!({ "key": "kl_x" }),
        ),
        probe(
            "POST",
            "/v1/keys/verify",
            "/v1/keys/verify",
            json!({ "key": "kl_x" }),
        ),
        probe(
            "POST",
            "/v1/api-keys",
            "/v1/api-keys",
            json!({ "name": "n", "duration": "7d", "scopes": ["view_audit_log"],
                    "networks": ["10.0.0.0/8"] }),
        ),
        probe(
            "POST",
            "/v1/admin/keys/{id}/revoke",
            "/v1/admin/keys/key_0000000000000000/revoke",
            json!({ "reason": "found in a public repository" }),
        ),
        probe(
            "POST",
            "/v1/users/{user}/deactivate",
            "/v1/users/nobody/deactivate",
            json!({ "reason": "left the company" }),
        ),
        probe(
            "POST",
            "/v1/api-keys/delete",
            "/v1/api-keys/delete",
            json!({ "ids": ["key_0000000000000000"] }),
        ),
        probe(
            "POST",
            "/v1/api-keys/{id}/roll",
            &format!("/v1/api-keys/{key_id}/roll"),
            json!({ "grace": "1h" }),
        ),
        probe(
            "POST",
            "/v1/external-keys",
            "/v1/external-keys",
            json!({ "label": "l", "provider": "aws", "duration": "7d",
                    "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                             "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                             "region": "us-east-1" } }),
        ),
        probe(
            "POST",
            "/v1/external-keys/delete",
            "/v1/external-keys/delete",
            json!({ "ids": ["ext_0000000000000000"] }),
        ),
        probe(
            "POST",
            "/v1/worker/ingestions/{id}/lease",
            "/v1/worker/ingestions/ing_0000000000000000/lease",
            json!({ "ticket": "00" }),
        ),
        probe(
            "POST",
            "/v1/worker/ingestions/{id}/report",
            "/v1/worker/ingestions/ing_0000000000000000/report",
            json!({ "lease": "lease_x", "items": [{ "type": "file_failed", "path": "a.csv",
                    "reason": "r", "failure_kind": "transient" }] }),
        ),
        probe(
            "POST",
            "/v1/worker/ingestions/{id}/session",
            "/v1/worker/ingestions/ing_0000000000000000/session",
            json!({ "lease": "lease_x" }),
        ),
        probe(
            "POST",
            "/v1/worker/ingestions/{id}/unchanged",
            "/v1/worker/ingestions/ing_0000000000000000/unchanged",
            json!({ "lease": "lease_x", "files": [{ "remote_path": "runs/a.csv", "size": 1, "etag": "e" }] }),
        ),
        probe(
            "PUT",
            "/v1/external-keys/{id}/credential",
            "/v1/external-keys/ext_0000000000000000/credential",
            json!({ "dnanexus": { "token": "dxTokenForTheProbe0123456789" } }),
        ),
        probe(
            "POST",
            "/v1/external-keys/{id}/verify",
            "/v1/external-keys/ext_0000000000000000/verify",
            json!({ "bucket": "lab", "prefix": "runs/" }),
        ),
        probe(
            "POST",
            "/v1/users",
            "/v1/users",
            json!({ "user": "someone", "display_name": "Some One", "roles": ["member"] }),
        ),
        probe(
            "POST",
            "/v1/users/{user}/api-keys",
            "/v1/users/admin/api-keys",
            json!({ "name": "n", "duration": "7d" }),
        ),
        probe(
            "POST",
            "/v1/ingestions",
            "/v1/ingestions",
            json!({ "provider": "aws", "bucket": "samples", "prefix": "runs/",
                    "pattern": ".*", "destination": "admin/run-1" }),
        ),
        probe(
            "POST",
            "/v1/ingestions",
            "/v1/ingestions",
            json!({ "provider": "dnanexus", "project": "project-0123456789ABCDEF01234567",
                    "folder": "/reads", "pattern": ".*", "destination": "admin" }),
        ),
        probe(
            "POST",
            "/v1/ingestions/preview",
            "/v1/ingestions/preview",
            json!({ "provider": "aws", "bucket": "samples", "prefix": "runs/",
                    "pattern": ".*", "destination": "admin/run-1" }),
        ),
        probe(
            "POST",
            "/v1/sources",
            "/v1/sources",
            json!({ "name": "nightly", "provider": "aws", "bucket": "samples", "prefix": "runs/",
                    "pattern": ".*", "destination": "admin/run-1", "schedule": "0 3 * * *",
                    "timezone": "Europe/Zurich" }),
        ),
        probe(
            "POST",
            "/v1/admin/backup",
            "/v1/admin/backup",
            json!({ "dir": backup_dir }),
        ),
        probe(
            "PUT",
            "/v1/roles/{role}",
            "/v1/roles/reviewer",
            json!({ "permissions": ["view_audit_log"] }),
        ),
        // Unsigned, so refused with 401 before the body is read: nothing of it can come back.
        probe(
            "POST",
            "/v1/secret-scanning/github",
            "/v1/secret-scanning/github",
            json!([{ "token": "kl_x", "type": "keyledger_api_key", "url": "u", "source": "content" }]),
        ),
    ]
}

/// Every way to put the canary into a body: in place of each value (as a string, inside an
/// array, inside an object), as an unknown field's value and as an unknown field's name.
fn canary_variants(body: &Value) -> Vec<Value> {
    let mut variants = Vec::new();
    for pointer in leaf_pointers(body, String::new()) {
        for replacement in [json!(CANARY), json!([CANARY]), json!({ "x": CANARY })] {
            let mut variant = body.clone();
            *variant.pointer_mut(&pointer).expect("leaf") = replacement;
            variants.push(variant);
        }
    }
    for (name, value) in [("extra", json!(CANARY)), (CANARY, json!(1))] {
        let mut variant = body.clone();
        // An array body (the secret-scanning intake) has no unknown fields of its own.
        let Some(fields) = variant.as_object_mut() else {
            continue;
        };
        fields.insert(name.to_owned(), value);
        variants.push(variant);
    }
    variants
}

fn leaf_pointers(value: &Value, prefix: String) -> Vec<String> {
    match value {
        Value::Object(fields) => fields
            .iter()
            .flat_map(|(name, field)| leaf_pointers(field, format!("{prefix}/{name}")))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(index, item)| leaf_pointers(item, format!("{prefix}/{index}")))
            .collect(),
        _ => vec![prefix],
    }
}

/// Every `(METHOD, route)` of the document, with whether it takes a body.
fn operations(document: &Value) -> Vec<(String, String, bool)> {
    let mut found = Vec::new();
    for (route, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            found.push((
                method.to_ascii_uppercase(),
                route.clone(),
                operation.get("requestBody").is_some(),
            ));
        }
    }
    found
}

/// The statuses the document gives an operation, and the error codes it lists for `status`.
fn documented(document: &Value, method: &str, route: &str) -> Value {
    document["paths"][route][method.to_ascii_lowercase()]["responses"].clone()
}

fn documented_codes(responses: &Value, status: u16) -> Vec<String> {
    let description = responses[status.to_string()]["description"]
        .as_str()
        .unwrap_or("");
    let Some((_, codes)) = description.split_once("Codes:") else {
        return Vec::new();
    };
    codes
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_refusal_echoes_a_submitted_value() {
    let server = Server::start();
    let admin = server.admin_key.clone();
    let (key_id, _) = server.create_key(&admin, "roll-me", "7d");
    let backup_dir = server.dir.path().join("backup");
    let (status, document) = server.call("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);

    let probes = body_probes(&key_id, &backup_dir);
    let body_routes: BTreeSet<(String, String)> = operations(&document)
        .into_iter()
        .filter(|(_, _, has_body)| *has_body)
        .map(|(method, route, _)| (method, route))
        .collect();
    let probed: BTreeSet<(String, String)> = probes
        .iter()
        .map(|probe| (probe.method.to_owned(), probe.route.to_owned()))
        .collect();
    assert_eq!(probed, body_routes, "every body route has a probe here");

    let mut refusals = 0;
    let mut echoes = Vec::new();
    let mut look = |method: &str, path: &str, body: Option<&Value>| {
        let response = server.send(method, path, Some(&admin), body);
        let status = response.status().as_u16();
        let headers = format!("{:?}", response.headers());
        let text = response.text().unwrap_or_default();
        if status < 400 {
            return;
        }
        refusals += 1;
        if [CANARY, PATH_CANARY]
            .iter()
            .any(|canary| text.contains(canary) || headers.contains(canary))
        {
            echoes.push(format!("{method} {path} {body:?} -> {status} {text}"));
        }
    };
    for probe in &probes {
        for variant in canary_variants(probe.body.as_ref().expect("a body")) {
            look(probe.method, &probe.path, Some(&variant));
        }
    }
    // Path parameters and the query.
    for (method, route, has_body) in operations(&document) {
        if !route.contains('{') {
            continue;
        }
        let path: String = route
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    PATH_CANARY
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        look(&method, &path, has_body.then(|| json!({})).as_ref());
    }
    for query in [
        format!("from={PATH_CANARY}"),
        format!("limit={PATH_CANARY}"),
        format!("{PATH_CANARY}=1"),
    ] {
        look("GET", &format!("/v1/events?{query}"), None);
    }
    assert_eq!(
        echoes,
        Vec::<String>::new(),
        "refusals that echo the canary"
    );
    assert!(refusals > 100, "only {refusals} refusals were provoked");
}

#[test]
fn every_answer_is_in_the_openapi_document() {
    let server = Server::start();
    let admin = server.admin_key.clone();
    let (key_id, _) = server.create_key(&admin, "walked", "7d");
    let (_, document) = server.call("GET", "/openapi.json", None, None);
    let backup_dir = server.dir.path().join("walk-backup");
    let probes = body_probes(&key_id, &backup_dir);

    let mut problems = Vec::new();
    let mut answers = 0;
    let mut check =
        |method: &str, route: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
            let (status, answer, _) = server.raw(method, path, headers, body.to_vec());
            answers += 1;
            let responses = documented(&document, method, route);
            if responses.get(status.to_string()).is_none() {
                problems.push(format!(
                    "{method} {path}: {status} is not documented: {answer}"
                ));
                return;
            }
            if status >= 400 && !(route == "/readyz" && status == 503) {
                let code = answer["error"]["code"].as_str().unwrap_or("(none)");
                if !documented_codes(&responses, status)
                    .iter()
                    .any(|c| c == code)
                {
                    problems.push(format!(
                        "{method} {path}: {status} with code `{code}` is not documented"
                    ));
                }
            }
        };
    let bearer = format!("Bearer {admin}");
    let auth = ("authorization", bearer.as_str());
    let json_type = ("content-type", "application/json");
    for (method, route, has_body) in operations(&document) {
        let path: String = route
            .split('/')
            .map(|part| match part {
                "{id}" if route.starts_with("/v1/api-keys") => key_id.as_str(),
                "{id}" if route.starts_with("/v1/external-keys") => "ext_0000000000000000",
                "{id}" => "ing_0000000000000000",
                "{user}" => "nobody",
                "{role}" => "auditor",
                other => other,
            })
            .collect::<Vec<_>>()
            .join("/");
        let valid = probes
            .iter()
            .find(|probe| probe.method == method && probe.route == route)
            .and_then(|probe| probe.body.as_ref())
            .map(|body| body.to_string().into_bytes())
            .unwrap_or_default();
        check(&method, &route, &path, &[], b"");
        check(&method, &route, &path, &[("x-api-key", "nonsense")], b"");
        check(&method, &route, &path, &[auth], b"");
        if has_body {
            check(&method, &route, &path, &[auth, json_type], &valid);
            check(
                &method,
                &route,
                &path,
                &[auth, ("content-type", "text/plain")],
                &valid,
            );
            let malformed: [&[u8]; 6] = [b"{", b"[]", b"{}", b"{\"unknown\": 1}", b"", b"\xff\xfe"];
            for body in malformed {
                check(&method, &route, &path, &[auth, json_type], body);
            }
        }
        if route.contains('{') {
            let malformed: String = route
                .split('/')
                .map(|part| {
                    if part.starts_with('{') {
                        "bad%20id!"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let body: &[u8] = if has_body { &valid } else { b"" };
            let headers: &[(&str, &str)] = if has_body {
                &[auth, json_type]
            } else {
                &[auth]
            };
            check(&method, &route, &malformed, headers, body);
        }
    }
    for query in ["from=x", "limit=0", "limit=99999", "other=1"] {
        check(
            "GET",
            "/v1/events",
            &format!("/v1/events?{query}"),
            &[auth],
            b"",
        );
    }
    assert_eq!(
        problems,
        Vec::<String>::new(),
        "answers the document does not describe"
    );
    assert!(answers > 150, "only {answers} answers were checked");
}

#[test]
fn names_refuse_characters_that_hide_what_they_say() {
    let server = Server::start();
    let admin = server.admin_key.clone();
    let check = |path: &str, body: Value, field: &str, fragment: &str| {
        let (status, answer) = server.call("POST", path, Some(&admin), Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(fragment), "{body}: {message}");
        assert!(
            !message.contains("gnp") && !message.contains("visible"),
            "{message}"
        );
    };
    // `\u{202E}gnp.exe` shows as `exe.png`.
    check(
        "/v1/api-keys",
        json!({ "name": "\u{202E}gnp.exe", "duration": "7d" }),
        "name",
        "bidirectional control character (U+202A–202E, U+2066–2069, U+200E/200F, U+061C) at character 1",
    );
    check(
        "/v1/api-keys",
        json!({ "name": "visible\u{200B}gnp", "duration": "7d" }),
        "name",
        "zero-width character (U+200B–200D, U+2060) at character 8",
    );
    check(
        "/v1/users",
        json!({ "user": "carol", "display_name": "\u{FEFF}visible", "roles": [] }),
        "display_name",
        "byte order mark (U+FEFF) at character 1",
    );
    check(
        "/v1/external-keys",
        json!({ "label": "visible\u{2067}gnp", "provider": "dnanexus", "duration": "7d",
                "dnanexus": { "token": "dxTokenAbcdefghijklmnop1234" } }),
        "label",
        "bidirectional control character",
    );
    check(
        "/v1/api-keys",
        json!({ "name": "visible\u{85}gnp", "duration": "7d" }),
        "name",
        "control character at character 8",
    );
    // Plain non-ASCII names stay welcome.
    server.create_key(&admin, "clé d’accès ☕", "7d");
}

#[test]
fn ingestion_selections_and_destinations_are_strict() {
    let server = Server::start();
    let admin = server.admin_key.clone();
    let check = |body: Value, status: u16, code: &str, fragment: &str| {
        let (got, answer) = server.call("POST", "/v1/ingestions", Some(&admin), Some(&body));
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(fragment), "{body}: {message}");
        // A refused selection names its field, as the message's start does.
        if code == "invalid_selection" {
            let field = answer["error"]["field"].as_str().expect("field");
            assert!(message.starts_with(&format!("{field}: ")), "{answer}");
            let fields = ["bucket", "prefix", "pattern", "project", "folder"];
            assert!(fields.contains(&field), "{answer}");
        }
    };
    let aws = |bucket: &str, prefix: &str, destination: &str| json!({ "provider": "aws", "bucket": bucket, "prefix": prefix, "destination": destination });
    let dx = |project: &str, folder: &str| json!({ "provider": "dnanexus", "project": project, "folder": folder });
    let selection = "invalid_selection";
    check(
        aws("a..b", "", "admin"),
        400,
        selection,
        "bucket: not a bucket name: no two dots",
    );
    check(
        aws("-lab", "", "admin"),
        400,
        selection,
        "start and end with a letter or digit",
    );
    check(
        aws("192.168.0.1", "", "admin"),
        400,
        selection,
        "not an IP address",
    );
    check(aws("xn--lab", "", "admin"), 400, selection, "AWS reserves");
    check(aws("Lab", "", "admin"), 400, selection, "lowercase");
    check(
        aws("lab", "runs/../x", "admin"),
        400,
        selection,
        "prefix: must not have",
    );
    check(
        dx("project-../../", "/"),
        400,
        selection,
        "project: not a project id",
    );
    check(
        dx("project-0123456789ABCDEF0123", "/"),
        400,
        selection,
        "project: not a project id",
    );
    check(
        dx("rnaseq", "/reads/../x"),
        400,
        selection,
        "folder: must not have",
    );
    // The destination: the caller's own area of the store only.
    check(
        aws("lab", "", "bob"),
        403,
        "permission_denied",
        "your own folder `admin`",
    );
    check(
        aws("lab", "", "bob/admin"),
        403,
        "permission_denied",
        "your own folder `admin`",
    );
    check(aws("lab", "", "/etc"), 400, "invalid_input", "absolute");
    check(
        aws("lab", "", "admin/../bob"),
        400,
        "invalid_input",
        "starting with `.`",
    );
    // Past every check (no AWS key is stored, so the job itself is refused).
    check(
        aws("lab", "runs/", "admin/run-1"),
        409,
        "no_external_key",
        "",
    );
    check(
        dx("project-0123456789ABCDEF01234567", "/reads"),
        409,
        "no_external_key",
        "",
    );
    check(dx("My project", "/"), 409, "no_external_key", "");
}

/// Schemathesis generates requests from `/openapi.json` (examples, boundary values, random
/// data) for every operation and checks each answer: no 5xx, a documented status, a body that
/// matches the documented schema, the documented content type and headers.
#[test]
fn schemathesis_finds_nothing() {
    /// Bounds the whole run; it takes well under a minute on an idle machine.
    const WALL_CLOCK_LIMIT: Duration = Duration::from_secs(240);
    let schemathesis = schemathesis_path();
    let server = Server::start();
    let report_dir = server.dir.path().join("schemathesis");
    // Into a file, not a pipe: a full pipe would stall the fuzzer until the time limit.
    let log_path = server.dir.path().join("schemathesis.log");
    let log = std::fs::File::create(&log_path).expect("schemathesis log");
    let mut child = Command::new(&schemathesis)
        .args([
            "run",
            &format!("{}/openapi.json", server.base),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
            "--header",
            &format!("Authorization: Bearer {}", server.admin_key),
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "20",
            "--seed",
            "20261205",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            // A backup writes a directory wherever the request says: random absolute paths
            // would litter the machine. `every_answer_is_in_the_openapi_document` walks it.
            "--exclude-path",
            "/v1/admin/backup",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report_dir)
        .env("NO_COLOR", "1")
        // Its example database goes into the working directory: keep it out of the checkout.
        .current_dir(server.dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("schemathesis log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("could not start {}: {error}", schemathesis.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for schemathesis") {
            break status;
        }
        if started.elapsed() > WALL_CLOCK_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let report = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("schemathesis ran longer than {WALL_CLOCK_LIMIT:?}:\n{report}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("{report}");
    assert!(
        status.success(),
        "schemathesis found problems (exit {:?}) in {:?}:\n{report}",
        status.code(),
        started.elapsed()
    );
    assert!(
        !server.output().contains("panicked"),
        "the server panicked:\n{}",
        server.output()
    );
}

/// `<repo>/.venv/bin/schemathesis`, installing it with `scripts/python-deps.sh` when missing.
/// Never skips: a machine without it fails here with the reason.
fn schemathesis_path() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemathesis = repo.join(".venv/bin/schemathesis");
    if schemathesis.is_file() {
        return schemathesis;
    }
    let script = repo.join("scripts/python-deps.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|error| panic!("could not run {}: {error}", script.display()));
    assert!(
        output.status.success() && schemathesis.is_file(),
        "schemathesis is missing and {} failed (exit {:?}):\n{}",
        script.display(),
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    schemathesis
}
