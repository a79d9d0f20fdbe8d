//! The seed page's whole workflow, over HTTP, plus sessions, rolls, idempotency and revocation.

use serde_json::{Value, json};

use crate::support::Server;

fn ids(list: &Value) -> Vec<String> {
    list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn the_seed_workflow() {
    let server = Server::start();
    let admin = server.admin_key.clone();

    // Users with roles.
    server.create_user("alice", &["developer"]);
    server.create_user("bob", &["member", "auditor"]);
    let users = server.get("/v1/users", &admin);
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);

    // Several internal keys; the key is in the create response only.
    let mut created = Vec::new();
    for (name, duration) in [
        ("laptop", "30d"),
        ("ci pipeline", "1y"),
        ("notebook", "never"),
    ] {
        let (status, body) = server.call(
            "POST",
            "/v1/api-keys",
            Some(&admin),
            Some(&json!({ "name": name, "duration": duration })),
        );
        assert_eq!(status, 201, "{body}");
        let key = body["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("kl_") && key.len() == 41);
        assert!(body["hint"].as_str().unwrap().starts_with(&key[..7]));
        assert_eq!(body["expires_at"].is_null(), duration == "never");
        created.push((body["id"].as_str().unwrap().to_owned(), key));
    }
    // The new keys work.
    for (id, key) in &created {
        assert_eq!(server.get("/v1/me", key)["key_id"], id.as_str());
    }

    // The list is masked: hints, never a key.
    let list = server.get("/v1/api-keys", &admin);
    let text = list.to_string();
    for (id, key) in &created {
        assert!(text.contains(id.as_str()));
        assert!(!text.contains(key.as_str()), "a listing shows a key");
    }
    for item in list["keys"].as_array().unwrap() {
        assert!(item.get("key").is_none());
        assert_eq!(item["status"], "active");
        assert!(item["hint"].as_str().unwrap().contains('…'));
    }
    assert_eq!(ids(&list).len(), 4, "three keys and the bootstrap key");

    // Bulk delete of two of three.
    let (status, body) = server.call(
        "POST",
        "/v1/api-keys/delete",
        Some(&admin),
        Some(&json!({ "ids": [created[0].0, created[1].0] })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], json!([created[0].0, created[1].0]));
    let remaining = ids(&server.get("/v1/api-keys", &admin));
    assert!(!remaining.contains(&created[0].0) && !remaining.contains(&created[1].0));
    assert!(remaining.contains(&created[2].0));
    // A deleted key is forgotten by the verification index: it is an unknown key now.
    let (status, body) = server.call("GET", "/v1/me", Some(&created[0].1), None);
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (401, Some("unknown key"))
    );

    // An external AWS key; a second one is refused with "delete it first".
    let aws = json!({
        "label": "genomics bucket",
        "provider": "aws",
        "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "eu-west-2" },
        "duration": "90d",
    });
    let (status, first) = server.call("POST", "/v1/external-keys", Some(&admin), Some(&aws));
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["hint"], "AKIA…MPLE");
    assert!(!first.to_string().contains("wJalrXUtnFEMI"));
    let (status, second) = server.call("POST", "/v1/external-keys", Some(&admin), Some(&aws));
    assert_eq!(status, 409, "{second}");
    assert_eq!(second["error"]["code"], "external_key_exists");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delete it first"),
        "{second}"
    );

    // A DNAnexus key.
    let dnanexus = json!({ "label": "dx project", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop1234" }, "duration": "30d" });
    let (status, dx) = server.call("POST", "/v1/external-keys", Some(&admin), Some(&dnanexus));
    assert_eq!(status, 201, "{dx}");
    assert_eq!(dx["provider"], "dnanexus");
    assert_eq!(dx["hint"], "…1234");

    let external = server.get("/v1/external-keys", &admin);
    assert_eq!(
        ids(&external),
        [first["id"].as_str().unwrap(), dx["id"].as_str().unwrap()]
    );
    assert!(!external.to_string().contains("dxTokenAbcdefghijklmnop1234"));

    // Bulk delete of the external keys; afterwards a new AWS key may be stored.
    let (status, body) = server.call(
        "POST",
        "/v1/external-keys/delete",
        Some(&admin),
        Some(&json!({ "ids": [first["id"], dx["id"]] })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids(&server.get("/v1/external-keys", &admin)),
        Vec::<String>::new()
    );
    let (status, body) = server.call("POST", "/v1/external-keys", Some(&admin), Some(&aws));
    assert_eq!(status, 201, "{body}");

    // Everything survives a restart (the projection is rebuilt from the log).
    let before = (
        server.get("/v1/api-keys", &admin)["keys"]
            .as_array()
            .unwrap()
            .len(),
        ids(&server.get("/v1/external-keys", &admin)),
    );
    let mut server = server;
    server.restart();
    let after = (
        server.get("/v1/api-keys", &admin)["keys"]
            .as_array()
            .unwrap()
            .len(),
        ids(&server.get("/v1/external-keys", &admin)),
    );
    assert_eq!(before, after);
}

#[test]
fn an_admin_issues_a_new_users_first_key() {
    let server = Server::start();
    server.create_user("newbie", &["member"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/newbie/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "first", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let me = server.get("/v1/me", &key);
    assert_eq!(me["user"], "newbie", "{me}");
    // A member cannot issue keys, and nobody can issue one to a user who does not exist.
    let (status, _) = server.call(
        "POST",
        "/v1/users/newbie/api-keys",
        Some(&key),
        Some(&json!({ "name": "more", "duration": "7d" })),
    );
    assert_eq!(status, 403);
    let (status, body) = server.call(
        "POST",
        "/v1/users/ghost/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "x", "duration": "7d" })),
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn a_revoked_role_takes_effect_at_once() {
    let mut server = Server::start();
    server.create_user("carol", &["developer"]);
    let carol = server.issue_keys_offline(&[("carol", 0)]).remove(0);
    assert_eq!(
        server.call("GET", "/v1/api-keys", Some(&carol), None).0,
        200
    );
    let (status, _) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&carol),
        Some(&json!({ "name": "mine", "duration": "7d" })),
    );
    assert_eq!(status, 201);

    let (status, body) = server.call(
        "DELETE",
        "/v1/users/carol/roles/developer",
        Some(&server.admin_key),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call("GET", "/v1/api-keys", Some(&carol), None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manage_user_api_keys")
    );
    let (status, _) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&carol),
        Some(&json!({ "name": "again", "duration": "7d" })),
    );
    assert_eq!(status, 403);
    // Still authenticated: who she is has not changed, only what she may do.
    assert_eq!(server.get("/v1/me", &carol)["permissions"], json!([]));

    // A custom role that grants the permission back works at once too.
    let (status, body) = server.call(
        "PUT",
        "/v1/roles/key-keeper",
        Some(&server.admin_key),
        Some(&json!({ "permissions": ["manage_user_api_keys"] })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/users/carol/roles/key-keeper",
                Some(&server.admin_key),
                None
            )
            .0,
        200
    );
    assert_eq!(
        server.call("GET", "/v1/api-keys", Some(&carol), None).0,
        200
    );
}

#[test]
fn sessions_rolls_and_idempotency() {
    let server = Server::start();
    let admin = server.admin_key.clone();
    let (id, key) = server.create_key(&admin, "session source", "7d");

    // A session token works as Bearer and dies with its key.
    let (status, session) =
        server.call("POST", "/v1/auth/login", None, Some(&json!({ "key": key })));
    assert_eq!(status, 200, "{session}");
    let token = session["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("kls_"));
    let me = server.get("/v1/me", &token);
    assert_eq!(
        (me["key_id"].as_str(), me["via_session"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    let (status, body) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "key": token })),
    );
    assert_eq!(status, 400, "a session cannot log in again: {body}");

    // Roll with a grace period: both secrets work; then roll with none: the old one stops.
    let (status, rolled) = server.call(
        "POST",
        &format!("/v1/api-keys/{id}/roll"),
        Some(&admin),
        Some(&json!({ "grace": "1h" })),
    );
    assert_eq!(status, 200, "{rolled}");
    let new_key = rolled["key"].as_str().unwrap().to_owned();
    assert_eq!(rolled["id"], id.as_str());
    assert!(rolled["previous_valid_until"].is_string());
    assert_eq!(server.call("GET", "/v1/me", Some(&key), None).0, 200);
    assert_eq!(server.call("GET", "/v1/me", Some(&new_key), None).0, 200);
    let (status, rolled_again) = server.call(
        "POST",
        &format!("/v1/api-keys/{id}/roll"),
        Some(&admin),
        Some(&json!({})),
    );
    assert_eq!(status, 200);
    let (status, body) = server.call("GET", "/v1/me", Some(&new_key), None);
    assert_eq!(status, 401, "{body}");
    let newest = rolled_again["key"].as_str().unwrap().to_owned();
    assert_eq!(server.call("GET", "/v1/me", Some(&newest), None).0, 200);

    // Deleting the key ends the session.
    assert_eq!(
        server
            .call("DELETE", &format!("/v1/api-keys/{id}"), Some(&admin), None)
            .0,
        200
    );
    let (status, body) = server.call("GET", "/v1/me", Some(&token), None);
    assert_eq!(status, 401, "{body}");

    // The same Idempotency-Key twice creates one key; the repeat is refused, not re-shown.
    let count = |server: &Server| {
        server.get("/v1/api-keys", &admin)["keys"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count(&server);
    let create = |server: &Server| {
        server.send_with_headers(
            "POST",
            "/v1/api-keys",
            &admin,
            &[("Idempotency-Key", "create-ci-key-1")],
            &json!({ "name": "ci", "duration": "30d" }),
        )
    };
    assert_eq!(create(&server).0, 201);
    let (status, body) = create(&server);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "duplicate_request");
    assert_eq!(count(&server), before + 1);
    let (status, body) = server.send_with_headers(
        "POST",
        "/v1/api-keys",
        &admin,
        &[("Idempotency-Key", &"x".repeat(65))],
        &json!({ "name": "ci", "duration": "30d" }),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn other_services_verify_keys() {
    let mut server = Server::start();
    server.create_user("platform", &["service"]);
    server.create_user("dana", &["developer"]);
    let keys = server.issue_keys_offline(&[("platform", 0), ("dana", 0)]);
    let (service, dana) = (&keys[0], &keys[1]);

    let (status, body) = server.call(
        "POST",
        "/v1/keys/verify",
        Some(service),
        Some(&json!({ "key": dana })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], true);
    assert_eq!(body["owner"], "dana");
    assert_eq!(
        body["permissions"],
        json!(["manage_user_api_keys", "import_organization_samples"])
    );

    let middle = if &dana[10..11] == "a" { "b" } else { "a" };
    let typo = format!("{}{middle}{}", &dana[..10], &dana[11..]);
    let (_, body) = server.call(
        "POST",
        "/v1/keys/verify",
        Some(service),
        Some(&json!({ "key": typo })),
    );
    assert_eq!(
        (body["valid"].as_bool(), body["reason"].as_str()),
        (Some(false), Some("malformed")),
        "{body}"
    );
    let (_, body) = server.call(
        "POST",
        "/v1/keys/verify",
        Some(service),
        Some(&json!({ "key": "kl_nope" })),
    );
    assert_eq!(body["valid"], false);

    // dana may not verify other people's keys.
    let (status, _) = server.call(
        "POST",
        "/v1/keys/verify",
        Some(dana),
        Some(&json!({ "key": service })),
    );
    assert_eq!(status, 403);
}
