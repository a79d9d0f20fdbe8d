//! The read replica: started after 1,000 keys exist, it verifies all of them as the vault does,
//! and follows creations and deletions; its readiness follows its lag in both directions.
//!
//! Every wait is for a condition (the relay published through the head, the replica applied
//! it), bounded generously so the tests hold on a busy machine; how long following took is
//! printed, not asserted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keyledger_api::replica::ReplicaServer;
use keyledger_bus::replica::{LagLimits, Replica, ReplicaConfig, Verification};
use keyledger_bus::{BusConfig, Relay, RelayHandle};
use keyledger_domain::{
    Action, Actor, FromTrusted, KeyDuration, KeyName, Permission, RoleName, UserId,
};
use keyledger_log::Seq;
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
            scopes: principal.scopes.map(|s| s.iter().collect()),
            networks: vault.read(|state| {
                state
                    .api_key(&principal.key)
                    .map(|k| k.networks.iter().map(ToString::to_string).collect())
                    .unwrap_or_default()
            }),
        },
        Err(failure) => Verification::Invalid {
            valid: keyledger_bus::replica::monostate::False,
            reason: failure.reason().to_owned(),
        },
    }
}

/// Generous bound of every wait: conditions, not durations, decide when a test goes on.
const PATIENCE: Duration = Duration::from_secs(60);

/// The replica and its HTTP side, as `keyledger replica` runs them.
async fn start_replica(config: &BusConfig, limits: LagLimits) -> ReplicaServer {
    ReplicaServer::start(
        ReplicaConfig {
            bus: config.clone(),
            master_key: master_key(),
            limits,
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("start the replica")
}

/// Waits until the relay acknowledged every event up to the vault's head *and* the replica
/// applied it; returns that head.
async fn replica_has_everything(vault: &Vault, relay: &RelayHandle, replica: &Replica) -> Seq {
    let head = vault.log().head().0;
    let published = tokio::time::timeout(PATIENCE, relay.published_through(head))
        .await
        .expect("the relay published through the head");
    assert!(published.published_seq >= head, "relay: {published:?}");
    assert!(
        eventually(PATIENCE, async || replica.status().applied_seq >= head).await,
        "the replica did not apply through {head}: {:?}",
        replica.status()
    );
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_replica_verifies_every_key_and_follows_changes() {
    let nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    let admin_key = bootstrap(&vault).await;
    let keys = create_keys(&vault, 1_000, 64).await;
    let relay = Relay::spawn(vault.clone(), config.clone());

    let replica = start_replica(&config, LagLimits::default()).await;
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", replica.local_addr()),
        bearer: admin_key.secret.expose().to_owned(),
    };
    // The relay may still be publishing when the replica first reaches the stream's end, so
    // the replica is compared with the head only once both have got there.
    let head = replica_has_everything(&vault, &relay, &replica).await;
    assert!(
        eventually(PATIENCE, async || client.get("/healthz").await.0 == 200).await,
        "the replica did not turn ready: {:?}",
        replica.status()
    );
    let (_, status) = client.get("/v1/replica/status").await;
    assert_eq!(status["applied_seq"], head);
    assert_eq!(status["consistent"], true);
    assert_eq!(status["caught_up"], true);
    assert_eq!(status["lag_events"], 0);

    for key in &keys {
        let answer = client.verify(key.secret.expose()).await;
        assert!(answer.is_valid(), "{} did not verify: {answer:?}", key.id);
        assert_eq!(answer, vault_says(&vault, key.secret.expose()));
    }
    let malformed = client.verify("kl_not-a-key").await;
    assert_eq!(malformed, vault_says(&vault, "kl_not-a-key"));
    assert!(!malformed.is_valid());

    // Changes after the start: 10 keys created, 10 deleted.
    let changed = Instant::now();
    let created = create_keys(&vault, 10, 10).await;
    let deleted: Vec<_> = keys[..10].iter().map(|key| key.id.clone()).collect();
    vault
        .delete_api_keys(admin(), deleted)
        .await
        .expect("delete keys");
    // A scoped key, and a key an administrator revoked: the replica says what the vault says.
    let scope = keyledger_domain::KeyScope::parse(
        Some(&["verify_api_keys".to_owned()]),
        Some(&["203.0.113.0/24".to_owned()]),
    )
    .expect("scope");
    let scoped = vault
        .create_scoped_api_key(
            admin(),
            keyledger_domain::KeyName::parse("scoped").expect("name"),
            keyledger_domain::KeyDuration::Never,
            scope,
            None,
        )
        .await
        .expect("scoped key");
    vault
        .revoke_api_key(
            admin(),
            keys[10].id.clone(),
            keyledger_domain::Reason::parse("found in a public repository").expect("reason"),
        )
        .await
        .expect("revoke");
    replica_has_everything(&vault, &relay, &replica).await;
    let answer = client.verify(scoped.secret.expose()).await;
    assert_eq!(answer, vault_says(&vault, scoped.secret.expose()));
    let Verification::Valid {
        scopes, networks, ..
    } = &answer
    else {
        panic!("the scoped key did not verify: {answer:?}");
    };
    assert_eq!(
        scopes.as_deref(),
        Some(&[keyledger_domain::Permission::VerifyApiKeys][..])
    );
    assert_eq!(networks, &["203.0.113.0/24".to_owned()]);
    // Given the address the key was presented from, the replica judges the networks itself.
    let from = |address: &str| {
        replica
            .verify_from(scoped.secret.expose(), address.parse().unwrap())
            .expect("the replica is ready")
    };
    assert!(from("203.0.113.7").is_valid());
    assert_eq!(
        from("198.51.100.1"),
        Verification::invalid(&keyledger_vault::AuthFailure::NetworkNotAllowed)
    );
    let revoked = client.verify(keys[10].secret.expose()).await;
    assert!(!revoked.is_valid(), "{revoked:?}");
    assert_eq!(revoked, vault_says(&vault, keys[10].secret.expose()));
    eprintln!(
        "the replica applied 11 changes {} ms after they began",
        changed.elapsed().as_millis()
    );
    for key in created.iter().chain(&keys[..10]) {
        assert_eq!(
            client.verify(key.secret.expose()).await,
            vault_says(&vault, key.secret.expose())
        );
    }
    assert!(
        created
            .iter()
            .all(|key| vault_says(&vault, key.secret.expose()).is_valid())
    );

    replica.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_falls_behind_is_not_ready_until_it_catches_up_again() {
    let nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    bootstrap(&vault).await;
    let relay = Relay::spawn(vault.clone(), config.clone());
    let limits = LagLimits {
        max_lag_events: 5,
        max_silence: Duration::from_secs(30),
        probe_interval: Duration::from_millis(50),
    };
    let replica = start_replica(&config, limits).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", replica.local_addr());
    let health = async || {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or_default()
    };
    let metrics_text = async || {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    };
    replica_has_everything(&vault, &relay, &replica).await;
    assert!(eventually(PATIENCE, async || health().await == 200).await);

    // Ahead of the replica by 20 events: more than the limit of 5.
    replica.hold_applying(true);
    create_keys(&vault, 20, 4).await;
    let head = vault.log().head().0;
    tokio::time::timeout(PATIENCE, relay.published_through(head))
        .await
        .expect("published");
    let behind = eventually(PATIENCE, async || {
        let status = replica.status();
        status.lag_events == Some(20) && !status.caught_up && !status.ready
    })
    .await;
    assert!(behind, "the lag was not reported: {:?}", replica.status());
    assert_eq!(health().await, 503);
    let detail = replica.status().detail;
    assert!(
        detail.contains("20 events behind the stream (limit 5)"),
        "{detail}"
    );
    let metrics = metrics_text().await;
    assert!(
        metrics.contains("keyledger_replica_lag_events 20"),
        "{metrics}"
    );
    assert!(metrics.contains("keyledger_replica_ready 0"), "{metrics}");

    // Applying again, it catches up and is ready again.
    replica.hold_applying(false);
    let caught_up = eventually(PATIENCE, async || {
        let status = replica.status();
        status.applied_seq == head && status.lag_events == Some(0) && status.caught_up
    })
    .await;
    assert!(caught_up, "{:?}", replica.status());
    assert!(eventually(PATIENCE, async || health().await == 200).await);
    let metrics = metrics_text().await;
    assert!(
        metrics.contains("keyledger_replica_lag_events 0"),
        "{metrics}"
    );
    assert!(metrics.contains("keyledger_replica_ready 1"), "{metrics}");
    assert!(
        metrics.contains(&format!("keyledger_replica_applied_seq {head}")),
        "{metrics}"
    );

    replica.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_hears_nothing_from_nats_is_not_ready_until_nats_is_back() {
    let mut nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    let admin_key = bootstrap(&vault).await;
    let relay = Relay::spawn(vault.clone(), config.clone());
    let limits = LagLimits {
        max_lag_events: 100,
        max_silence: Duration::from_secs(1),
        probe_interval: Duration::from_millis(100),
    };
    let replica = start_replica(&config, limits).await;
    replica_has_everything(&vault, &relay, &replica).await;
    assert!(eventually(PATIENCE, async || replica.status().ready).await);

    nats.stop().expect("stop nats-server");
    let silent = eventually(PATIENCE, async || {
        let status = replica.status();
        status.last_contact_ms.is_some_and(|ms| ms > 1_000) && !status.ready && !status.caught_up
    })
    .await;
    assert!(silent, "still ready without NATS: {:?}", replica.status());

    nats.restart().expect("restart nats-server");
    let key = create_keys(&vault, 1, 1).await.remove(0);
    replica_has_everything(&vault, &relay, &replica).await;
    assert!(
        eventually(PATIENCE, async || replica.status().ready).await,
        "not ready again after NATS came back: {:?}",
        replica.status()
    );
    assert!(
        replica
            .verify(key.secret.expose())
            .is_some_and(|v| v.is_valid())
    );
    assert!(
        replica
            .verify(admin_key.secret.expose())
            .is_some_and(|v| v.is_valid())
    );

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
    let replica = start_replica(&config, LagLimits::default()).await;
    let head = vault.log().head().0;
    assert!(eventually(PATIENCE, async || replica.status().applied_seq == head).await);

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
