//! The read replica: started after 1,000 keys exist, it verifies all of them as the vault does,
//! and follows creations and deletions within a second.

use std::net::SocketAddr;
use std::time::Duration;

use keyledger_bus::Relay;
use keyledger_bus::replica::{Replica, ReplicaConfig, Verification};
use keyledger_domain::{
    Action, Actor, FromTrusted, KeyDuration, KeyName, Permission, RoleName, UserId,
};
use keyledger_vault::Vault;

use crate::support::*;

struct Client {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl Client {
    async fn verify(&self, key: &str) -> Verification {
        let response = self
            .http
            .post(format!("{}/v1/keys/verify", self.base))
            .bearer_auth(&self.bearer)
            .json(&serde_json::json!({ "key": key }))
            .send()
            .await
            .expect("verify request");
        assert_eq!(response.status(), 200);
        response.json().await.expect("verification JSON")
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
}

/// What the vault itself answers for `key`, in the replica's JSON form.
fn vault_says(vault: &Vault, key: &str) -> Verification {
    match vault.authenticate_key(key) {
        Ok(principal) => Verification::Valid {
            valid: keyledger_bus::replica::monostate::True,
            key_id: principal.key.to_string(),
            owner: principal.user.to_string(),
            permissions: principal.permissions.iter().collect(),
            expires_at: principal.expires_at,
        },
        Err(failure) => Verification::Invalid {
            valid: keyledger_bus::replica::monostate::False,
            reason: failure.reason().to_owned(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_replica_verifies_every_key_and_follows_changes_within_a_second() {
    let nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    let admin_key = bootstrap(&vault).await;
    let keys = create_keys(&vault, 1_000, 64).await;
    let relay = Relay::spawn(vault.clone(), config.clone());

    let replica = Replica::start(ReplicaConfig {
        bus: config.clone(),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        master_key: master_key(),
    })
    .await
    .expect("start the replica");
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", replica.local_addr()),
        bearer: admin_key.secret.expose().to_owned(),
    };
    assert!(
        eventually(Duration::from_secs(30), async || client
            .get("/healthz")
            .await
            .0
            == 200)
        .await,
        "the replica did not catch up: {:?}",
        replica.status()
    );
    let (_, status) = client.get("/v1/replica/status").await;
    assert_eq!(status["applied_seq"], vault.log().head().0);
    assert_eq!(status["consistent"], true);

    for key in &keys {
        let answer = client.verify(key.secret.expose()).await;
        assert!(answer.is_valid(), "{} did not verify: {answer:?}", key.id);
        assert_eq!(answer, vault_says(&vault, key.secret.expose()));
    }
    let malformed = client.verify("kl_not-a-key").await;
    assert_eq!(malformed, vault_says(&vault, "kl_not-a-key"));
    assert!(!malformed.is_valid());

    // Changes after the start: 10 keys created, 10 deleted.
    let created = create_keys(&vault, 10, 10).await;
    let deleted: Vec<_> = keys[..10].iter().map(|key| key.id.clone()).collect();
    vault
        .delete_api_keys(admin(), deleted)
        .await
        .expect("delete keys");
    let reflected = eventually(Duration::from_secs(1), async || {
        for key in &created {
            if !client.verify(key.secret.expose()).await.is_valid() {
                return false;
            }
        }
        for key in &keys[..10] {
            if client.verify(key.secret.expose()).await.is_valid() {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        reflected,
        "changes not reflected within 1 s: {:?}",
        replica.status()
    );
    for key in created.iter().chain(&keys[..10]) {
        assert_eq!(
            client.verify(key.secret.expose()).await,
            vault_says(&vault, key.secret.expose())
        );
    }

    replica.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_needs_a_key_with_the_verify_permission() {
    let nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    let admin_key = bootstrap(&vault).await;
    let role = RoleName::from_trusted("key-user".to_owned());
    vault
        .run(
            admin(),
            Action::DefineRole {
                role: role.clone(),
                permissions: vec![Permission::ManageUserApiKeys],
            },
        )
        .await
        .expect("define role");
    let bob = UserId::from_trusted("bob".to_owned());
    vault
        .run(
            admin(),
            Action::CreateUser {
                user: bob.clone(),
                display_name: None,
                roles: vec![role],
            },
        )
        .await
        .expect("create user");
    let bob_key = vault
        .create_api_key(
            Actor::User {
                user: bob,
                key: None,
            },
            KeyName::from_trusted("bob".to_owned()),
            KeyDuration::Never,
            None,
        )
        .await
        .expect("bob's key");
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    let replica = Replica::start(ReplicaConfig {
        bus: config,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        master_key: master_key(),
    })
    .await
    .expect("start the replica");
    let head = vault.log().head().0;
    assert!(
        eventually(Duration::from_secs(30), async || replica
            .status()
            .applied_seq
            == head)
        .await
    );

    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/keys/verify", replica.local_addr());
    let body = serde_json::json!({ "key": admin_key.secret.expose() });
    let anonymous = http.post(&url).json(&body).send().await.expect("request");
    assert_eq!(anonymous.status(), 401);
    let forbidden = http
        .post(&url)
        .bearer_auth(bob_key.secret.expose())
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(forbidden.status(), 403);
    let error: serde_json::Value = forbidden.json().await.expect("error JSON");
    assert_eq!(error["error"]["code"], "permission_denied");
    let garbage = http
        .post(&url)
        .bearer_auth(admin_key.secret.expose())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(garbage.status(), 400);
    let allowed = http
        .post(&url)
        .bearer_auth(admin_key.secret.expose())
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(allowed.status(), 200);
    assert!(
        replica
            .verify(admin_key.secret.expose())
            .is_some_and(|v| v.is_valid())
    );
    replica.shutdown().await;
}
