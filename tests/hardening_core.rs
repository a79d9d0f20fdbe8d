//! Attacks on the vault's rules through the running binary: races between administrators, and
//! sessions that should not outlive the secret they came from.

use std::sync::{Arc, Barrier};

use serde_json::{Value, json};

use crate::support::Server;

/// Two administrators remove each other's `admin` role at the same moment, again and again:
/// one removal lands, the other is refused, and one administrator is always left.
#[test]
fn two_admins_removing_each_other_always_leave_one() {
    let server = Arc::new(Server::start());
    server.create_user("second", &["admin"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/second/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "second's key", "duration": "1d" })),
    );
    assert_eq!(status, 201, "{body}");
    let keys = [
        ("admin", server.admin_key.clone()),
        ("second", body["key"].as_str().expect("key").to_owned()),
    ];
    for round in 0..15 {
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [(0, 1), (1, 0)]
            .into_iter()
            .map(|(by, target)| {
                let (server, barrier) = (Arc::clone(&server), Arc::clone(&barrier));
                let key = keys[by].1.clone();
                let path = format!("/v1/users/{}/roles/admin", keys[target].0);
                std::thread::spawn(move || {
                    barrier.wait();
                    server.call("DELETE", &path, Some(&key), None)
                })
            })
            .collect();
        let answers: Vec<(u16, Value)> = racers
            .into_iter()
            .map(|racer| racer.join().expect("racer"))
            .collect();
        let landed: Vec<usize> = (0..2).filter(|&i| answers[i].0 < 300).collect();
        assert_eq!(landed.len(), 1, "round {round}: {answers:?}");
        let refused = &answers[1 - landed[0]];
        assert!(
            refused.0 == 409 && refused.1["error"]["code"] == "last_admin" || refused.0 == 403,
            "round {round}: {refused:?}"
        );
        // The survivor still manages the organisation and restores the other.
        let survivor = &keys[landed[0]];
        let users = server.get("/v1/users", &survivor.1);
        let admins: Vec<&str> = users["users"]
            .as_array()
            .expect("users")
            .iter()
            .filter(|u| {
                u["roles"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("admin")))
            })
            .map(|u| u["user"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(admins, [survivor.0], "round {round}");
        let other = keys[1 - landed[0]].0;
        let (status, body) = server.call(
            "PUT",
            &format!("/v1/users/{other}/roles/admin"),
            Some(&survivor.1),
            None,
        );
        assert!(status < 300, "round {round}: {status} {body}");
    }
}

/// A leaked key is rolled with no grace: a session minted from it before the roll stops
/// working at once, and cannot mint a `never`-expiring key.
#[test]
fn a_session_dies_when_its_key_is_rolled_without_grace() {
    let server = Server::start();
    let (id, secret) = server.create_key(&server.admin_key, "leaked", "30d");
    let login = |key: &str| {
        let (status, body) =
            server.call("POST", "/v1/auth/login", None, Some(&json!({ "key": key })));
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    };
    let stolen = login(&secret);
    assert_eq!(server.call("GET", "/v1/me", Some(&stolen), None).0, 200);

    let (status, body) = server.call(
        "POST",
        &format!("/v1/api-keys/{id}/roll"),
        Some(&server.admin_key),
        Some(&json!({ "grace": "0" })),
    );
    assert_eq!(status, 200, "{body}");
    let new_secret = body["key"].as_str().expect("key").to_owned();
    let (status, body) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&stolen),
        Some(&json!({ "name": "backdoor", "duration": "never" })),
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(server.call("GET", "/v1/me", Some(&stolen), None).0, 401);

    let renewed = login(new_secret.as_str());
    assert_eq!(server.call("GET", "/v1/me", Some(&renewed), None).0, 200);
}
