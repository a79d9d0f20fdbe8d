//! Governance (decision 0026): the inventory of every key, an administrator's revocation,
//! offboarding in one step (under concurrent use, and with a canary scan of the data directory
//! afterwards), and scoped keys.

use serde_json::{Value, json};

use crate::support::{Server, developer_key, files_containing};

const AWS_CANARY: &str = "CANARYoffboardSECRETdoNotLeak/0123456789";
const DX_CANARY: &str = "CANARYoffboardDXtokenDoNotLeak012345678";

fn inventory(server: &Server, query: &str) -> Value {
    server.get(&format!("/v1/admin/keys{query}"), &server.admin_key)
}

fn ids(page: &Value) -> Vec<String> {
    page["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

fn item<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in {page}"))
}

fn store_external_keys(server: &Server, key: &str) -> (String, String) {
    let aws = json!({ "label": "lab bucket", "provider": "aws", "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": AWS_CANARY, "region": "eu-west-2" }, "duration": "30d" });
    let (status, aws) = server.call("POST", "/v1/external-keys", Some(key), Some(&aws));
    assert_eq!(status, 201, "{aws}");
    let dx = json!({ "label": "dx project", "provider": "dnanexus", "dnanexus": { "token": DX_CANARY }, "duration": "7d" });
    let (status, dx) = server.call("POST", "/v1/external-keys", Some(key), Some(&dx));
    assert_eq!(status, 201, "{dx}");
    (
        aws["id"].as_str().unwrap().to_owned(),
        dx["id"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_inventory_lists_filters_sorts_and_pages_every_key() {
    let server = Server::start();
    let mia = developer_key(&server, "mia");
    let (laptop, _) = server.create_key(&mia, "laptop", "1d");
    let (ci, _) = server.create_key(&mia, "ci", "90d");
    let (aws, dx) = store_external_keys(&server, &mia);
    let (forever, _) = server.create_key(&server.admin_key, "forever", "never");

    let everything = inventory(&server, "?limit=500");
    // bootstrap, mia's first, laptop, ci, forever; two external keys.
    assert_eq!(everything["total"], 7, "{everything}");
    let laptop_item = item(&everything, &laptop);
    assert_eq!(laptop_item["kind"], "internal");
    assert_eq!(laptop_item["owner"], "mia");
    assert_eq!(laptop_item["name"], "laptop");
    assert_eq!(laptop_item["provider"], "internal");
    assert_eq!(laptop_item["status"], "active");
    assert!(laptop_item["hint"].as_str().unwrap().starts_with("kl_"));
    assert!(laptop_item["created_at"].is_string() && laptop_item["expires_at"].is_string());
    assert!(laptop_item.get("last_used_at").is_some());
    assert_eq!(
        laptop_item["effective_permissions"],
        json!(["manage_user_api_keys", "import_organization_samples"])
    );
    let aws_item = item(&everything, &aws);
    assert_eq!(
        (aws_item["kind"].as_str(), aws_item["provider"].as_str()),
        (Some("external"), Some("aws"))
    );
    assert_eq!(aws_item["hint"], "AKIA…MPLE");
    assert_eq!(aws_item["name"], "lab bucket");
    // Nothing secret in any of it.
    let text = everything.to_string();
    assert!(!text.contains(AWS_CANARY) && !text.contains(DX_CANARY));

    // Filters.
    assert_eq!(inventory(&server, "?user=admin")["total"], 2);
    let mine = inventory(&server, "?user=mia&provider=internal");
    assert_eq!(mine["total"], 3, "{mine}");
    assert_eq!(ids(&inventory(&server, "?provider=aws")), vec![aws.clone()]);
    assert_eq!(
        ids(&inventory(&server, "?provider=dnanexus")),
        vec![dx.clone()]
    );
    // Within 7 days: laptop (1 d), mia's first key (7 d) and the DNAnexus key (7 d).
    let soon = inventory(&server, "?expiring_within_days=7&sort=expires");
    assert_eq!(soon["total"], 3, "{soon}");
    assert_eq!(soon["keys"][0]["id"], laptop);
    assert!(!ids(&soon).contains(&forever) && !ids(&soon).contains(&ci));

    // Sorting: by name descending; by owner.
    let by_name = inventory(&server, "?sort=-name&limit=500");
    let names: Vec<&str> = by_name["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted);
    let by_owner = inventory(&server, "?sort=owner&limit=500");
    assert_eq!(by_owner["keys"][0]["owner"], "admin");

    // Cursor pages: every key exactly once, in the same order as one big page, also when a
    // key is created between pages (it sorts last, so it shows up on a later page).
    for sort in [
        "created",
        "-created",
        "expires",
        "last_used",
        "name",
        "-owner",
    ] {
        let whole = ids(&inventory(&server, &format!("?sort={sort}&limit=500")));
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(c) => format!("?sort={sort}&limit=2&cursor={c}"),
                None => format!("?sort={sort}&limit=2"),
            };
            let page = inventory(&server, &query);
            assert!(page["keys"].as_array().unwrap().len() <= 2);
            walked.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(walked, whole, "sort {sort}");
    }

    // Bad queries are 400s that say what is allowed, never echoing the value.
    for (query, field) in [
        ("?status=gone", "status"),
        ("?sort=colour", "sort"),
        ("?provider=gcp", "provider"),
        ("?limit=0", "limit"),
        ("?expiring_within_days=99999", "expiring_within_days"),
        ("?cursor=bm9wZQ", "cursor"),
        ("?user=NOT%20A%20USER", "user"),
    ] {
        let (status, body) = server.call(
            "GET",
            &format!("/v1/admin/keys{query}"),
            Some(&server.admin_key),
            None,
        );
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let (status, body) = server.call(
        "GET",
        "/v1/admin/keys?colour=red",
        Some(&server.admin_key),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    // A member sees only their own keys elsewhere: the inventory is refused.
    let (status, body) = server.call("GET", "/v1/admin/keys", Some(&mia), None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["permission"], "audit_organization_keys");
}

#[test]
fn an_administrator_revokes_any_key_with_a_reason() {
    let server = Server::start();
    let mia = developer_key(&server, "mia");
    let (laptop, laptop_secret) = server.create_key(&mia, "laptop", "30d");
    let (aws, _) = store_external_keys(&server, &mia);

    let revoke = |id: &str, reason: &str| {
        server.call(
            "POST",
            &format!("/v1/admin/keys/{id}/revoke"),
            Some(&server.admin_key),
            Some(&json!({ "reason": reason })),
        )
    };
    let (status, body) = revoke(&laptop, "found in a public repository");
    assert_eq!(
        (status, body["revoked"].as_str()),
        (200, Some(laptop.as_str()))
    );
    let (status, body) = server.call("GET", "/v1/me", Some(&laptop_secret), None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = revoke(&aws, "the bucket moved");
    assert_eq!(status, 200);
    // Gone from the owner's own listing; its data key is destroyed, so nothing can use it.
    let own = server.get("/v1/external-keys", &mia);
    assert!(!own.to_string().contains(&aws), "{own}");

    let page = inventory(&server, "?status=revoked");
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(
        item(&page, &laptop)["revoked_reason"],
        "found in a public repository"
    );
    assert_eq!(item(&page, &aws)["revoked_reason"], "the bucket moved");

    // The reason and who revoked are in the events.
    let events = server.get("/v1/events?limit=10000", &server.admin_key);
    let text = events.to_string();
    assert!(text.contains("ApiKeyRevoked") && text.contains("found in a public repository"));
    assert!(text.contains("ExternalKeyRevoked") && text.contains("the bucket moved"));

    // Twice is 404; an unknown or malformed id, an empty reason are refused clearly.
    assert_eq!(revoke(&laptop, "again").0, 404);
    assert_eq!(revoke("key_AAAAAAAAAAAAAAAA", "x").0, 404);
    let (status, body) = revoke("nope", "x");
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("id")));
    let (status, body) = revoke(&aws, " ");
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("reason"))
    );
}

/// Offboarding: one append deactivates the user and revokes every key; sessions end at once;
/// reactivation restores the account, never the keys; no byte of the user's external secrets
/// can be read from the data directory afterwards, even with the master key.
#[test]
fn offboarding_in_one_step() {
    let mut server = Server::start();
    let mia = developer_key(&server, "mia");
    let (_, laptop) = server.create_key(&mia, "laptop", "30d");
    let (aws, dx) = store_external_keys(&server, &mia);
    let (status, session) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "key": laptop })),
    );
    assert_eq!(status, 200);
    let session = session["token"].as_str().unwrap().to_owned();
    assert_eq!(server.call("GET", "/v1/me", Some(&session), None).0, 200);

    let (status, body) = server.call(
        "POST",
        "/v1/users/mia/deactivate",
        Some(&server.admin_key),
        Some(&json!({ "reason": "left the company" })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_api_keys"].as_array().unwrap().len(), 2);
    let mut external: Vec<&str> = body["revoked_external_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    external.sort();
    let mut expected = vec![aws.as_str(), dx.as_str()];
    expected.sort();
    assert_eq!(external, expected);
    assert_eq!(body["user"]["deactivated"]["reason"], "left the company");

    // Every key and the session stop at once.
    for credential in [&mia, &laptop, &session] {
        let (status, body) = server.call("GET", "/v1/me", Some(credential), None);
        assert_eq!(status, 401, "{body}");
    }
    // The inventory shows it; nothing of mia's is active.
    let page = inventory(&server, "?user=mia");
    assert_eq!(page["total"], 4);
    for key in page["keys"].as_array().unwrap() {
        assert_eq!(key["status"], "revoked", "{key}");
        assert_eq!(key["owner_deactivated"], true);
        assert_eq!(key["revoked_reason"], "left the company");
    }
    // One append: the deactivation and its revocations are consecutive events of one commit.
    let export = server.get("/v1/events?limit=10000", &server.admin_key);
    let lines = export_events(&export);
    let first = lines
        .iter()
        .position(|e| e["type"] == "UserDeactivated")
        .expect("a UserDeactivated event");
    let batch: Vec<&str> = lines[first..first + 5]
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        batch,
        [
            "UserDeactivated",
            "ApiKeyRevoked",
            "ApiKeyRevoked",
            "ExternalKeyRevoked",
            "ExternalKeyRevoked"
        ]
    );
    let times: Vec<&Value> = lines[first..first + 5].iter().map(|e| &e["time"]).collect();
    assert!(times.windows(2).all(|w| w[0] == w[1]), "{times:?}");

    // An admin cannot issue a deactivated user a key; reactivation brings back the account,
    // never the keys.
    let issue = |name: &str| {
        server.call(
            "POST",
            "/v1/users/mia/api-keys",
            Some(&server.admin_key),
            Some(&json!({ "name": name, "duration": "7d" })),
        )
    };
    let (status, body) = issue("again");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("user_deactivated"))
    );
    let (status, body) = server.call(
        "POST",
        "/v1/users/mia/reactivate",
        Some(&server.admin_key),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.get("deactivated").is_none(), "{body}");
    for credential in [&mia, &laptop, &session] {
        assert_eq!(server.call("GET", "/v1/me", Some(credential), None).0, 401);
    }
    let (status, body) = issue("after");
    assert_eq!(status, 201, "{body}");
    let fresh = body["key"].as_str().unwrap();
    assert_eq!(server.get("/v1/me", fresh)["user"], "mia");
    assert_eq!(
        server.get("/v1/external-keys", fresh)["keys"],
        json!([]),
        "no external key comes back"
    );

    // The last administrator and oneself cannot be deactivated.
    let (status, body) = server.call(
        "POST",
        "/v1/users/admin/deactivate",
        Some(&server.admin_key),
        Some(&json!({ "reason": "x" })),
    );
    assert_eq!(status, 400, "oneself: {body}");
    server.create_user("root2", &["admin"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/root2/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "k", "duration": "7d" })),
    );
    assert_eq!(status, 201);
    let root2 = body["key"].as_str().unwrap().to_owned();
    let (status, _) = server.call(
        "POST",
        "/v1/users/admin/deactivate",
        Some(&root2),
        Some(&json!({ "reason": "handing over" })),
    );
    assert_eq!(status, 200);
    let (status, body) = server.call("POST", "/v1/users/admin/reactivate", Some(&root2), None);
    assert_eq!(status, 200, "{body}");
    // admin is active again (with no key): root2 is not the last active administrator.
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/users/root2/deactivate",
                Some(&root2),
                Some(&json!({ "reason": "x" }))
            )
            .0,
        400
    );

    // The canary scan: no plaintext byte of mia's external secrets in the data directory, and
    // with the master key, offline, neither credential can be decrypted: their data keys are gone.
    server.stop();
    let leaks = files_containing(
        &server.data_dir(),
        &[AWS_CANARY.as_bytes(), DX_CANARY.as_bytes()],
    );
    assert!(leaks.is_empty(), "{leaks:?}");
    assert!(!server.output().contains(AWS_CANARY) && !server.output().contains(DX_CANARY));
    let master = keyledger_vault::read_master_key(&server.data_dir().join("master.key")).unwrap();
    let config = keyledger_vault::VaultConfig {
        data_dir: server.data_dir(),
        ..Default::default()
    };
    let vault = keyledger_vault::Vault::open(
        config,
        &master,
        std::sync::Arc::new(keyledger_vault::SystemClock),
    )
    .unwrap();
    for id in [&aws, &dx] {
        let id = keyledger_domain::ExternalKeyId::parse(id).unwrap();
        assert!(vault.lease_external_key(&id).is_err());
        assert!(vault.log().data_key(id.as_str()).unwrap().is_none());
    }
}

/// A request in flight with the user's key either lands before the deactivation's append (and
/// is then undone by it) or is refused after it: whatever the interleaving, afterwards no key
/// of the user works, every key they created is revoked, and every refusal is a 401 or 403.
#[test]
fn offboarding_under_concurrent_use() {
    let server = Server::start();
    let mia = developer_key(&server, "mia");
    let outcomes = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let server = &server;
                let mia = mia.as_str();
                scope.spawn(move || {
                    let mut outcomes = Vec::new();
                    // Each worker creates keys until it is refused: the deactivation lands
                    // somewhere in its sequence.
                    for n in 0..200 {
                        let (status, body) = server.call(
                            "POST",
                            "/v1/api-keys",
                            Some(mia),
                            Some(&json!({ "name": format!("w{worker}-{n}"), "duration": "7d" })),
                        );
                        outcomes.push((status, body));
                        if status != 201 {
                            break;
                        }
                    }
                    outcomes
                })
            })
            .collect();
        // The deactivation races the workers' creates.
        let (status, body) = server.call(
            "POST",
            "/v1/users/mia/deactivate",
            Some(&server.admin_key),
            Some(&json!({ "reason": "left the company" })),
        );
        assert_eq!(status, 200, "{body}");
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    let page = inventory(&server, "?user=mia&limit=500");
    let statuses: std::collections::BTreeMap<String, String> = page["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut created = 0;
    for (status, body) in &outcomes {
        match status {
            201 => {
                created += 1;
                let id = body["id"].as_str().unwrap();
                assert_eq!(
                    statuses.get(id).map(String::as_str),
                    Some("revoked"),
                    "{id}"
                );
                let secret = body["key"].as_str().unwrap();
                assert_eq!(server.call("GET", "/v1/me", Some(secret), None).0, 401);
            }
            401 | 403 => {}
            other => panic!("neither before nor after: {other} {body}"),
        }
    }
    assert!(
        statuses.values().all(|s| s == "revoked"),
        "a key of a deactivated user is not revoked: {statuses:?}"
    );
    eprintln!("{created} creates landed before the deactivation; the rest were refused");
}

#[test]
fn scoped_keys_do_their_scopes_of_what_their_owner_holds_now() {
    let server = Server::start();
    let admin = server.admin_key.clone();
    let create =
        |key: &str, body: Value| server.call("POST", "/v1/api-keys", Some(key), Some(&body));

    let (status, scoped) = create(
        &admin,
        json!({ "name": "auditing", "duration": "7d", "scopes": ["view_audit_log", "verify_api_keys"] }),
    );
    assert_eq!(status, 201, "{scoped}");
    assert_eq!(
        scoped["scopes"],
        json!(["view_audit_log", "verify_api_keys"])
    );
    let scoped_key = scoped["key"].as_str().unwrap().to_owned();
    let me = server.get("/v1/me", &scoped_key);
    assert_eq!(
        me["permissions"],
        json!(["view_audit_log", "verify_api_keys"])
    );
    assert_eq!(me["scopes"], json!(["view_audit_log", "verify_api_keys"]));
    assert_eq!(
        server.call("GET", "/v1/events", Some(&scoped_key), None).0,
        200
    );
    let (status, body) = server.call("GET", "/v1/users", Some(&scoped_key), None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["permission"], "manage_organization_users");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scopes (view_audit_log, verify_api_keys) leave out"),
        "{body}"
    );
    // Verification tells a service the key's scopes and what it may do.
    let verified = server.call(
        "POST",
        "/v1/keys/verify",
        Some(&admin),
        Some(&json!({ "key": scoped_key })),
    );
    assert_eq!(
        verified.1["scopes"],
        json!(["view_audit_log", "verify_api_keys"])
    );
    assert_eq!(
        verified.1["permissions"],
        json!(["view_audit_log", "verify_api_keys"])
    );
    // The event records the scopes.
    let events = server.get("/v1/events?limit=10000", &admin).to_string();
    assert!(events.contains("ApiKeyScoped"), "{events}");

    // A scope the owner does not hold is refused; so is an empty list or an unknown name.
    let mia = developer_key(&server, "mia");
    for (scopes, fragment) in [
        (
            json!(["manage_organization_users"]),
            "not a permission of `mia`",
        ),
        (json!([]), "at least one permission"),
        (json!(["fly"]), "not a permission"),
    ] {
        let (status, body) = create(
            &mia,
            json!({ "name": "x", "duration": "7d", "scopes": scopes }),
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], "scopes");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(fragment),
            "{body}"
        );
    }

    // Effective = scopes ∩ the owner's permissions now: a role taken away shows at once, in
    // requests and in the inventory.
    let (status, body) = create(
        &mia,
        json!({ "name": "keys only", "duration": "7d", "scopes": ["manage_user_api_keys"] }),
    );
    assert_eq!(status, 201, "{body}");
    let (keys_only_id, keys_only) = (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        server.call("GET", "/v1/api-keys", Some(&keys_only), None).0,
        200
    );
    assert_eq!(
        server
            .call("GET", "/v1/ingestions", Some(&keys_only), None)
            .0,
        403
    );
    let (status, _) = server.call(
        "DELETE",
        "/v1/users/mia/roles/developer",
        Some(&admin),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        server.call("GET", "/v1/api-keys", Some(&keys_only), None).0,
        403
    );
    let page = inventory(&server, "?user=mia");
    assert_eq!(
        item(&page, &keys_only_id)["effective_permissions"],
        json!([])
    );
    assert_eq!(
        item(&page, &keys_only_id)["scopes"],
        json!(["manage_user_api_keys"])
    );

    // Networks: the peer address decides; X-Forwarded-For is not trusted by default.
    let (status, elsewhere) = create(
        &admin,
        json!({ "name": "office", "duration": "7d", "networks": ["203.0.113.0/24"] }),
    );
    assert_eq!(status, 201, "{elsewhere}");
    assert_eq!(elsewhere["networks"], json!(["203.0.113.0/24"]));
    let elsewhere = elsewhere["key"].as_str().unwrap().to_owned();
    let (status, body) = server.call("GET", "/v1/me", Some(&elsewhere), None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["message"],
        "this key is not allowed from your network address"
    );
    let (status, _) = server.send_with_headers(
        "GET",
        "/v1/me",
        &elsewhere,
        &[("x-forwarded-for", "203.0.113.7")],
        &json!({}),
    );
    assert_eq!(status, 401, "a forged X-Forwarded-For is ignored");
    let (status, local) = create(
        &admin,
        json!({ "name": "local", "duration": "7d", "networks": ["127.0.0.0/8", "::1"] }),
    );
    assert_eq!(status, 201, "{local}");
    let local = local["key"].as_str().unwrap();
    let me = server.get("/v1/me", local);
    assert_eq!(me["networks"], json!(["127.0.0.0/8", "::1/128"]));
    // An admin issues a service account a narrow key; a scope that account lacks is refused.
    server.create_user("gateway", &["service"]);
    let issue = |body: Value| {
        server.call(
            "POST",
            "/v1/users/gateway/api-keys",
            Some(&admin),
            Some(&body),
        )
    };
    let (status, body) = issue(
        json!({ "name": "gw", "duration": "7d", "scopes": ["verify_api_keys"], "networks": ["127.0.0.1"] }),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["scopes"], json!(["verify_api_keys"]));
    let gateway = body["key"].as_str().unwrap();
    assert_eq!(
        server.get("/v1/me", gateway)["networks"],
        json!(["127.0.0.1/32"])
    );
    // The gateway verifies keys its own clients present: given their address, a key limited
    // to some networks is judged; left out, the networks come back for the gateway to judge.
    let verify = |body: Value| server.call("POST", "/v1/keys/verify", Some(gateway), Some(&body));
    let (status, answer) = verify(json!({ "key": elsewhere, "client_address": "203.0.113.7" }));
    assert_eq!(
        (status, answer["valid"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    let (status, answer) = verify(json!({ "key": elsewhere, "client_address": "198.51.100.1" }));
    assert_eq!(status, 200);
    assert_eq!(answer["valid"], false, "{answer}");
    assert_eq!(answer["reason"], "network_not_allowed");
    let (_, answer) = verify(json!({ "key": elsewhere }));
    assert_eq!(answer["networks"], json!(["203.0.113.0/24"]), "{answer}");
    let (status, answer) = verify(json!({ "key": elsewhere, "client_address": "203.0.113" }));
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("client_address")),
        "{answer}"
    );
    let (status, body) =
        issue(json!({ "name": "gw2", "duration": "7d", "scopes": ["view_audit_log"] }));
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("scopes")),
        "{body}"
    );
    let (status, body) = create(
        &admin,
        json!({ "name": "bad", "duration": "7d", "networks": ["10.0.0.0/33"] }),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("networks"))
    );
}

/// The JSON lines of `GET /v1/events`, events only.
fn export_events(export: &Value) -> Vec<Value> {
    let items: Vec<Value> = match export {
        Value::Array(items) => items.clone(),
        Value::Object(map) => map
            .get("events")
            .or_else(|| map.get("lines"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|item| item.get("event").cloned().unwrap_or(item))
        .filter(|item| item.get("type").is_some())
        .collect()
}
