//! Every route × (no key, expired key, deleted key, honeytoken, member, admin, auditor, worker, an
//! admin's key scoped to `view_audit_log`) → expected status, and what a 403 says.
//! The routes and who may call each come from `keyledger_api::route_table()` (the API's one
//! declaration), so a new route without a case here fails.

use keyledger_api::{Requirement, RouteAccess};
use keyledger_domain::Permission;
use serde_json::{Value, json};

use crate::support::Server;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoKey,
    Expired,
    Deleted,
    /// A honeytoken of an admin: refused everywhere as an unknown key.
    Honeytoken,
    Member,
    Admin,
    Auditor,
    /// A worker process's user (role `worker`): its two routes, and nothing else.
    Worker,
    /// The admin's own key, scoped to `view_audit_log`: it may do only that (decision 0026).
    Scoped,
}

const CALLERS: [Caller; 9] = [
    Caller::NoKey,
    Caller::Expired,
    Caller::Deleted,
    Caller::Honeytoken,
    Caller::Member,
    Caller::Admin,
    Caller::Auditor,
    Caller::Worker,
    Caller::Scoped,
];

struct Keys {
    expired: String,
    deleted: String,
    honeytoken: String,
    member: String,
    admin: String,
    auditor: String,
    worker: String,
    scoped: String,
}

impl Keys {
    fn of(&self, caller: Caller) -> Option<&str> {
        match caller {
            Caller::NoKey => None,
            Caller::Expired => Some(&self.expired),
            Caller::Deleted => Some(&self.deleted),
            Caller::Honeytoken => Some(&self.honeytoken),
            Caller::Member => Some(&self.member),
            Caller::Admin => Some(&self.admin),
            Caller::Auditor => Some(&self.auditor),
            Caller::Worker => Some(&self.worker),
            Caller::Scoped => Some(&self.scoped),
        }
    }
}

const PLACEHOLDER_KEY: &str = "key_AAAAAAAAAAAAAAAA";
const PLACEHOLDER_EXT: &str = "ext_AAAAAAAAAAAAAAAA";
const PLACEHOLDER_SOURCE: &str = "src_AAAAAAAAAAAAAAAA";

/// Whether the caller's roles grant `permission`: members hold `manage_user_api_keys` and
/// `import_organization_samples` (decision 0012), auditors `view_audit_log`, admins everything;
/// the scoped key only what its scopes leave of its owner's: `view_audit_log`.
fn holds(caller: Caller, permission: Permission) -> bool {
    match caller {
        Caller::Admin => true,
        Caller::Scoped => permission == Permission::ViewAuditLog,
        Caller::Member => matches!(
            permission,
            Permission::ManageUserApiKeys | Permission::ImportOrganizationSamples
        ),
        Caller::Auditor => permission == Permission::ViewAuditLog,
        Caller::Worker => permission == Permission::RunIngestionJobs,
        Caller::NoKey | Caller::Expired | Caller::Deleted | Caller::Honeytoken => false,
    }
}

/// The status the caller must get from the route.
fn expected(route: &RouteAccess, caller: Caller) -> u16 {
    let refused_key = matches!(
        caller,
        Caller::NoKey | Caller::Expired | Caller::Deleted | Caller::Honeytoken
    );
    match route.requirement {
        Requirement::Public if route.path == "/v1/auth/login" => match caller {
            Caller::NoKey => 422,
            Caller::Expired | Caller::Deleted | Caller::Honeytoken => 401,
            _ => 200,
        },
        // Signed by GitHub, whoever calls: the matrix sends no signature.
        Requirement::Public if route.path == "/v1/secret-scanning/github" => 401,
        Requirement::Public => 200,
        _ if refused_key => 401,
        Requirement::AnyCaller => 200,
        Requirement::Permission(permission) | Requirement::Owner(_, permission)
            if !holds(caller, permission) =>
        {
            403
        }
        _ if caller == Caller::Admin => admin_success(route),
        _ => success_with_placeholders(route),
    }
}

/// A permitted caller other than the admin names placeholder ids (see [`request`]): a route
/// about one resource answers 404, a bulk delete of unknown ids too.
fn success_with_placeholders(route: &RouteAccess) -> u16 {
    match (route.method, route.path) {
        ("POST", "/v1/api-keys") | ("POST", "/v1/external-keys") => 201,
        // Nobody in the matrix has stored an AWS key.
        ("POST", "/v1/ingestions") | ("POST", "/v1/ingestions/preview") => 409,
        ("POST", "/v1/api-keys/delete") | ("POST", "/v1/external-keys/delete") => 404,
        // Saving a source needs no external key yet.
        ("POST", "/v1/sources") => 201,
        // Nobody in the matrix stored a sample.
        ("GET", "/v1/samples") => 404,
        (_, path) if path.contains('{') => 404,
        _ => 200,
    }
}

fn admin_success(route: &RouteAccess) -> u16 {
    match (route.method, route.path) {
        ("POST", "/v1/api-keys")
        | ("POST", "/v1/external-keys")
        | ("POST", "/v1/users")
        | ("POST", "/v1/users/{user}/api-keys") => 201,
        // `/v1/users/{user}/deactivate` deactivates a user made for the case; revoking names a
        // key made for it.
        // The admin's DNAnexus key is checked against api.dnanexus.com, which this sandbox
        // cannot reach: the check runs and records a failure, and the call itself succeeds.
        ("POST", "/v1/external-keys/{id}/verify") => 200,
        // Nobody in the matrix has stored an AWS key.
        ("POST", "/v1/ingestions") | ("POST", "/v1/ingestions/preview") => 409,
        ("GET", "/v1/ingestions/{id}")
        | ("POST", "/v1/ingestions/{id}/cancel")
        | ("GET", "/v1/ingestions/{id}/manifest")
        | ("GET", "/v1/ingestions/{id}/files/{path}")
        | ("GET", "/v1/samples") => 404,
        ("POST", "/v1/sources") => 201,
        // The admin's source (made for the case) runs over an AWS key nobody stored.
        ("POST", "/v1/sources/{id}/run") => 409,
        ("DELETE", "/v1/sources/{id}") => 204,
        // No job was handed to anyone in the matrix.
        ("POST", "/v1/worker/ingestions/{id}/lease")
        | ("POST", "/v1/worker/ingestions/{id}/report")
        | ("POST", "/v1/worker/ingestions/{id}/session")
        | ("POST", "/v1/worker/ingestions/{id}/unchanged") => 404,
        _ => 200,
    }
}

fn dnanexus_body() -> Value {
    json!({ "label": "dx", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop1234" }, "duration": "30d" })
}

/// The concrete request for a route. For the admin, ids are of resources made just before, so
/// that the call succeeds; others get well-formed placeholders (they are refused first).
fn request(
    server: &Server,
    keys: &Keys,
    route: &RouteAccess,
    caller: Caller,
    counter: usize,
) -> (String, Option<Value>) {
    let admin = caller == Caller::Admin;
    let fresh_key = || {
        if admin {
            server.create_key(&keys.admin, "matrix", "7d").0
        } else {
            PLACEHOLDER_KEY.to_owned()
        }
    };
    let fresh_external = || {
        if !admin {
            return PLACEHOLDER_EXT.to_owned();
        }
        let (status, body) = server.call(
            "POST",
            "/v1/external-keys",
            Some(&keys.admin),
            Some(&dnanexus_body()),
        );
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    };
    let source_body = || {
        json!({ "name": format!("matrix-source-{counter}"), "provider": "aws", "bucket": "samples",
            "prefix": "runs/", "pattern": ".*", "schedule": "0 3 * * *", "timezone": "Europe/Zurich" })
    };
    let fresh_source = || {
        if !admin {
            return PLACEHOLDER_SOURCE.to_owned();
        }
        let (status, body) = server.call(
            "POST",
            "/v1/sources",
            Some(&keys.admin),
            Some(&source_body()),
        );
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    };
    match (route.method, route.path) {
        ("POST", "/v1/sources") => (route.path.to_owned(), Some(source_body())),
        ("GET", "/v1/sources") => (route.path.to_owned(), None),
        ("GET", "/v1/sources/{id}") | ("DELETE", "/v1/sources/{id}") => {
            (format!("/v1/sources/{}", fresh_source()), None)
        }
        ("POST", "/v1/sources/{id}/run")
        | ("POST", "/v1/sources/{id}/pause")
        | ("POST", "/v1/sources/{id}/resume") => {
            let action = route.path.rsplit('/').next().unwrap_or_default();
            (format!("/v1/sources/{}/{action}", fresh_source()), None)
        }
        (
            _,
            "/healthz"
            | "/readyz"
            | "/metrics"
            | "/openapi.json"
            | "/v1/me"
            | "/v1/api-keys"
            | "/v1/external-keys"
            | "/v1/external-keys/aws-role-setup"
            | "/v1/users"
            | "/v1/roles"
            | "/v1/events"
            | "/v1/audit/public-key",
        ) if route.method == "GET" => (route.path.to_owned(), None),
        ("POST", "/v1/auth/login") => (
            route.path.to_owned(),
            Some(
                keys.of(caller)
                    .map(|k| json!({ "key": k }))
                    .unwrap_or(json!({})),
            ),
        ),
        ("POST", "/v1/keys/verify") => (route.path.to_owned(), Some(json!({ "key": keys.admin }))),
        ("POST", "/v1/secret-scanning/github") => (
            route.path.to_owned(),
            Some(
                json!([{ "token": keys.member, "type": "keyledger_api_key", "url": "", "source": "content" }]),
            ),
        ),
        ("POST", "/v1/api-keys") => (
            route.path.to_owned(),
            // Names are unique among a user's active keys.
            Some(json!({ "name": format!("matrix-{counter}"), "duration": "7d" })),
        ),
        ("POST", "/v1/api-keys/delete") => {
            (route.path.to_owned(), Some(json!({ "ids": [fresh_key()] })))
        }
        ("DELETE", "/v1/api-keys/{id}") => (format!("/v1/api-keys/{}", fresh_key()), None),
        ("POST", "/v1/api-keys/{id}/roll") => (
            format!("/v1/api-keys/{}/roll", fresh_key()),
            Some(json!({ "grace": "0" })),
        ),
        ("POST", "/v1/external-keys") => (route.path.to_owned(), Some(dnanexus_body())),
        ("POST", "/v1/external-keys/delete") => (
            route.path.to_owned(),
            Some(json!({ "ids": [fresh_external()] })),
        ),
        ("DELETE", "/v1/external-keys/{id}") => {
            (format!("/v1/external-keys/{}", fresh_external()), None)
        }
        ("POST", "/v1/external-keys/{id}/verify") => (
            format!("/v1/external-keys/{}/verify", fresh_external()),
            None,
        ),
        ("PUT", "/v1/external-keys/{id}/credential") => (
            format!("/v1/external-keys/{}/credential", fresh_external()),
            Some(json!({ "dnanexus": { "token": "dxTokenRotatedInTheMatrix01" } })),
        ),
        ("POST", "/v1/users") => (
            route.path.to_owned(),
            Some(json!({ "user": format!("new-user-{counter}"), "roles": ["member"] })),
        ),
        ("PUT", "/v1/users/{user}/roles/{role}") => {
            ("/v1/users/zed/roles/auditor".to_owned(), None)
        }
        ("DELETE", "/v1/users/{user}/roles/{role}") => {
            ("/v1/users/zed/roles/auditor".to_owned(), None)
        }
        ("POST", "/v1/users/{user}/api-keys") => (
            "/v1/users/zed/api-keys".to_owned(),
            Some(json!({ "name": format!("issued-{counter}"), "duration": "7d" })),
        ),
        ("POST", "/v1/audit/checkpoints") => (route.path.to_owned(), None),
        ("POST", "/v1/ingestions") | ("POST", "/v1/ingestions/preview") => (
            route.path.to_owned(),
            Some(
                json!({ "provider": "aws", "bucket": "samples", "prefix": "runs/", "pattern": ".*" }),
            ),
        ),
        ("GET", "/v1/ingestions") => (route.path.to_owned(), None),
        ("GET", "/v1/samples") => ("/v1/samples?path=zed%2Fbatch-1%2Fa.csv".to_owned(), None),
        ("GET", "/v1/ingestions/{id}") => ("/v1/ingestions/ing_AAAAAAAAAAAAAAAA".to_owned(), None),
        ("POST", "/v1/ingestions/{id}/cancel") => (
            "/v1/ingestions/ing_AAAAAAAAAAAAAAAA/cancel".to_owned(),
            None,
        ),
        ("GET", "/v1/ingestions/{id}/manifest") => (
            "/v1/ingestions/ing_AAAAAAAAAAAAAAAA/manifest".to_owned(),
            None,
        ),
        ("GET", "/v1/ingestions/{id}/files/{path}") => (
            "/v1/ingestions/ing_AAAAAAAAAAAAAAAA/files/run-1/a.csv".to_owned(),
            None,
        ),
        ("POST", "/v1/worker/ingestions/{id}/lease") => (
            "/v1/worker/ingestions/ing_AAAAAAAAAAAAAAAA/lease".to_owned(),
            Some(json!({ "ticket": "00" })),
        ),
        ("POST", "/v1/worker/ingestions/{id}/report") => (
            "/v1/worker/ingestions/ing_AAAAAAAAAAAAAAAA/report".to_owned(),
            Some(json!({ "lease": "lease_AAAAAAAAAAAAAAAA", "items": [{ "type": "completed" }] })),
        ),
        ("POST", "/v1/worker/ingestions/{id}/session") => (
            "/v1/worker/ingestions/ing_AAAAAAAAAAAAAAAA/session".to_owned(),
            Some(json!({ "lease": "lease_AAAAAAAAAAAAAAAA" })),
        ),
        ("POST", "/v1/worker/ingestions/{id}/unchanged") => (
            "/v1/worker/ingestions/ing_AAAAAAAAAAAAAAAA/unchanged".to_owned(),
            Some(json!({ "lease": "lease_AAAAAAAAAAAAAAAA", "files": [] })),
        ),
        ("POST", "/v1/admin/backup") => {
            // Inside the server's temporary directory, so it goes with the test.
            let dir = server.dir.path().join(format!("matrix-backup-{counter}"));
            (route.path.to_owned(), Some(json!({ "dir": dir })))
        }
        ("PUT", "/v1/roles/{role}") => (
            "/v1/roles/matrix-role".to_owned(),
            Some(json!({ "permissions": ["view_audit_log"] })),
        ),
        ("GET", "/v1/admin/keys") => (route.path.to_owned(), None),
        ("POST", "/v1/admin/keys/{id}/revoke") => {
            let id = if admin {
                server
                    .create_key(&keys.admin, &format!("to-revoke-{counter}"), "7d")
                    .0
            } else {
                PLACEHOLDER_KEY.to_owned()
            };
            (
                format!("/v1/admin/keys/{id}/revoke"),
                Some(json!({ "reason": "matrix" })),
            )
        }
        ("POST", "/v1/users/{user}/deactivate") => {
            let user = format!("leaver-{counter}");
            if admin {
                server.create_user(&user, &["member"]);
            }
            (
                format!("/v1/users/{user}/deactivate"),
                Some(json!({ "reason": "matrix" })),
            )
        }
        ("POST", "/v1/users/{user}/reactivate") => ("/v1/users/zed/reactivate".to_owned(), None),
        (method, path) => {
            panic!("route {method} {path} has no case in the permission matrix: add one")
        }
    }
}

/// Removes what an admin call created that would make the next one conflict.
fn clean_up(server: &Server, keys: &Keys) {
    let list = server.get("/v1/external-keys", &keys.admin);
    let ids: Vec<&Value> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["id"])
        .collect();
    if !ids.is_empty() {
        let (status, body) = server.call(
            "POST",
            "/v1/external-keys/delete",
            Some(&keys.admin),
            Some(&json!({ "ids": ids })),
        );
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn every_route_for_every_kind_of_caller() {
    let mut server = Server::start();
    server.create_user("mia", &["member"]);
    server.create_user("aud", &["auditor"]);
    server.create_user("dev", &["developer"]);
    server.create_user("zed", &["member"]);
    server.create_user("wrk", &["worker"]);
    let issued =
        server.issue_keys_offline(&[("mia", 0), ("aud", 0), ("dev", 2), ("dev", 0), ("wrk", 0)]);
    let (member, auditor, expired, to_delete, worker) = (
        issued[0].clone(),
        issued[1].clone(),
        issued[2].clone(),
        issued[3].clone(),
        issued[4].clone(),
    );
    let to_delete_id = server.get("/v1/me", &to_delete)["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/v1/api-keys/{to_delete_id}"),
                Some(&to_delete),
                None
            )
            .0,
        200
    );
    let (status, trap) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "matrix honeytoken", "duration": "never", "honeytoken": true })),
    );
    assert_eq!(status, 201, "{trap}");
    let (status, scoped) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "scoped", "duration": "7d", "scopes": ["view_audit_log"] })),
    );
    assert_eq!(status, 201, "{scoped}");
    let keys = Keys {
        expired,
        deleted: to_delete,
        honeytoken: trap["key"].as_str().unwrap().to_owned(),
        member,
        admin: server.admin_key.clone(),
        auditor,
        worker,
        scoped: scoped["key"].as_str().unwrap().to_owned(),
    };

    // The refused kinds are refused for the right reason.
    let (_, body) = server.call("GET", "/v1/me", Some(&keys.expired), None);
    assert_eq!(body["error"]["message"], "key expired");
    let (_, body) = server.call("GET", "/v1/me", Some(&keys.deleted), None);
    assert_eq!(
        body["error"]["message"], "unknown key",
        "deleted keys leave the verification index"
    );
    let (_, trapped) = server.call("GET", "/v1/me", Some(&keys.honeytoken), None);
    assert_eq!(
        trapped, body,
        "a honeytoken is refused exactly as an unknown key"
    );

    let mut mismatches = Vec::new();
    let mut cases = 0;
    for route in keyledger_api::route_table() {
        for caller in CALLERS {
            let (path, body) = request(&server, &keys, route, caller, cases);
            let (status, answer) = server.call(route.method, &path, keys.of(caller), body.as_ref());
            let want = expected(route, caller);
            if status != want {
                mismatches.push(format!(
                    "{} {} as {caller:?}: got {status}, expected {want}: {answer}",
                    route.method, route.path
                ));
            }
            // A refusal names the missing permission in a field and the fix in its message.
            if status == 403 && want == 403 {
                let permission = route
                    .requirement
                    .permission()
                    .map(Permission::as_str)
                    .unwrap_or_default();
                let message = answer["error"]["message"].as_str().unwrap_or_default();
                // A scoped key is told about its scopes, not to ask for a role its owner holds.
                let fix = if caller == Caller::Scoped {
                    "which this key's scopes (view_audit_log) leave out"
                } else {
                    "keyledger admin users grant"
                };
                if answer["error"]["permission"] != permission || !message.contains(fix) {
                    mismatches.push(format!(
                        "{} {} as {caller:?}: the 403 does not name `{permission}` and the fix: {answer}",
                        route.method, route.path
                    ));
                }
            }
            if status >= 400 {
                assert!(
                    answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
                    "{} {path}: {answer}",
                    route.method
                );
            }
            if caller == Caller::Admin {
                clean_up(&server, &keys);
            }
            cases += 1;
        }
    }
    assert!(
        mismatches.is_empty(),
        "permission matrix mismatches:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(cases, keyledger_api::route_table().len() * CALLERS.len());

    // Refusals are counted by reason.
    let text = server.send("GET", "/metrics", None, None).text().unwrap();
    for reason in [
        "expired",
        "unknown_key",
        "missing_credentials",
        "permission_denied",
    ] {
        assert!(
            text.contains(&format!(
                "keyledger_http_refusals_total{{reason=\"{reason}\"}}"
            )),
            "no {reason} refusals in\n{text}"
        );
    }
}

#[test]
fn failed_authentications_are_throttled() {
    let server = Server::start_with(&[("KEYLEDGER_HTTP_AUTH_FAILURES_PER_MINUTE", "3")]);
    let wrong = "kl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for _ in 0..3 {
        assert_eq!(server.call("GET", "/v1/me", Some(wrong), None).0, 401);
    }
    let response = server.send("GET", "/v1/me", Some(wrong), None);
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "too_many_failed_authentications");
    // While throttled, even a good key from that address waits; public routes still answer.
    assert_eq!(
        server
            .call("GET", "/v1/me", Some(&server.admin_key), None)
            .0,
        429
    );
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/auth/login",
                None,
                Some(&json!({ "key": server.admin_key }))
            )
            .0,
        429
    );
    assert_eq!(server.call("GET", "/healthz", None, None).0, 200);
}
