//! Running the server: first start, restarts, `admin bootstrap`, health, metrics, headers, OpenAPI.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::{BIN, Server, find_key};

#[test]
fn first_start_prints_the_admin_key_once_and_warns_about_the_master_key() {
    let mut server = Server::start();
    let first = server.output();
    assert!(first.contains("created the first admin `admin`"), "{first}");
    assert!(first.contains("shown only this once"));
    assert!(
        first.contains("warning: generated a new master key"),
        "{first}"
    );
    let mode = std::fs::metadata(server.data_dir().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Uses are recorded at most once a minute, and at shutdown: a restart keeps "last used".
    let (used_id, used) = server.create_key(&server.admin_key, "used once", "7d");
    assert_eq!(server.call("GET", "/v1/me", Some(&used), None).0, 200);
    server.restart();
    let keys = server.get("/v1/api-keys", &server.admin_key);
    let used = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == used_id.as_str())
        .unwrap();
    assert!(
        used["last_used_at"].is_string(),
        "usage was not flushed at shutdown: {keys}"
    );
    let second = server.stdout();
    assert!(
        find_key(&second).is_none(),
        "a restart printed a key:\n{second}"
    );
    assert_eq!(
        server
            .output()
            .matches("generated a new master key")
            .count(),
        1,
        "the restart warned again"
    );
    assert_eq!(server.get("/v1/me", &server.admin_key)["user"], "admin");
}

#[test]
fn admin_bootstrap_is_local_and_once() {
    let server = Server::start();
    // While the server holds the data directory, bootstrap refuses with a clear message.
    let run = std::process::Command::new(BIN)
        .args(["admin", "bootstrap"])
        .env_clear()
        .env("KEYLEDGER_DATA_DIR", server.data_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("in use by a running keyledger server"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    // On a fresh data directory it creates the admin, once; `serve` then does not.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bootstrap = |user: &str| {
        std::process::Command::new(BIN)
            .args(["admin", "bootstrap", "--user", user, "--json"])
            .env_clear()
            .env("KEYLEDGER_DATA_DIR", &data)
            .output()
            .unwrap()
    };
    let first = bootstrap("root");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let created: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(created["user"], "root");
    let key = created["key"].as_str().unwrap().to_owned();
    let again = bootstrap("root");
    assert_eq!(again.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already bootstrapped"));

    let mut served = std::process::Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("KEYLEDGER_DATA_DIR", &data)
        .env("KEYLEDGER_HTTP_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(served.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let _ = served.kill();
    let _ = served.wait();
    assert!(
        line.starts_with("keyledger listening on"),
        "serve printed before listening: {line}"
    );
    assert!(find_key(&line).is_none());
    assert!(key.starts_with("kl_"));
}

#[test]
fn health_readiness_metrics_and_openapi() {
    let server = Server::start();
    let (status, health) = server.call("GET", "/healthz", None, None);
    assert_eq!((status, health), (200, json!({ "status": "ok" })));
    let (status, ready) = server.call("GET", "/readyz", None, None);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["components"]["http"]["ready"], true);
    assert_eq!(ready["log_head_seq"], ready["applied_seq"]);

    server.create_key(&server.admin_key, "metrics", "7d");
    assert_eq!(server.call("GET", "/v1/me", Some("kl_wrong"), None).0, 401);
    let response = server.send("GET", "/metrics", None, None);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = response.text().unwrap();
    for expected in [
        "keyledger_http_requests_total{method=\"POST\",route=\"/v1/api-keys\",status=\"201\"} 1",
        "keyledger_http_request_duration_seconds_bucket{route=\"/v1/api-keys\",le=\"+Inf\"} 1",
        "keyledger_http_request_duration_seconds_count{route=\"/v1/api-keys\"} 1",
        "keyledger_http_refusals_total{reason=\"malformed\"} 1",
        "keyledger_projection_lag_events 0",
        "# TYPE keyledger_log_appended_events_total counter",
        "keyledger_log_head_seq",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }

    // Security headers on every response, success or error.
    for (path, key) in [
        ("/v1/api-keys", Some(server.admin_key.as_str())),
        ("/v1/api-keys", None),
        ("/healthz", None),
        ("/nope", None),
    ] {
        let response = server.send("GET", path, key, None);
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers.contains_key("x-request-id"), "{path}");
    }
    let response = server.send("GET", "/v1/me", None, None);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"keyledger\""
    );

    // The OpenAPI document lists every route the router has.
    let (status, openapi) = server.call("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for route in keyledger_api::route_table() {
        let operation = &openapi["paths"][route.path][route.method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} is missing from /openapi.json",
            route.method,
            route.path
        );
    }
    assert!(openapi["components"]["securitySchemes"]["api_key"].is_object());
}

#[test]
fn x_api_key_header_and_request_ids() {
    let server = Server::start();
    let (status, me, headers) = server.raw(
        "GET",
        "/v1/me",
        &[
            ("x-api-key", &server.admin_key),
            ("x-request-id", "trace-me-42"),
        ],
        Vec::new(),
    );
    assert_eq!(status, 200, "{me}");
    assert_eq!(headers["x-request-id"], "trace-me-42");
    let (status, body, _) = server.raw(
        "GET",
        "/v1/me",
        &[("authorization", "Basic YWRtaW46YWRtaW4=")],
        Vec::new(),
    );
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
}
