//! The golden data directory: a vault written by event format 1 (`tests/fixtures/golden-v1/`)
//! that every later build must open, verify, and replay to the same state and the same public
//! JSON. It is what proves the next change of an event compatible (decision 0018).
//!
//! The fixture holds `data/` (the log, as `keyledger serve` leaves it, without a snapshot so
//! that opening replays every event), `master.key` (a TEST-ONLY master key, published here on
//! purpose: it protects nothing but this fixture), `expected-state.json` and
//! `expected-public-events.json`.
//!
//! Generator: `KEYLEDGER_WRITE_GOLDEN=1 cargo nextest run -p keyledger --test tests -E
//! 'test(/golden/)'` writes `tests/fixtures/golden-v<EVENT_FORMAT>/` when that directory does
//! not exist yet. It never overwrites one: a golden directory of a released format is kept as
//! it is for good, and a new format adds its own beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyledger_crypto::{MasterKey, SecretString};
use keyledger_domain::{
    Action, Actor, FailureKind, GracePeriod, IngestionId, IngestionProgress, KeyDuration, KeyName,
    KeyUsage, Label, Permission, RoleName, Selection, State, Timestamp, UserId,
};
use keyledger_vault::{
    Clock, ManualClock, NewCredential, Projection, Vault, VaultConfig, decode_event,
    read_master_key, rotate_master_key_offline, write_master_key,
};
use serde_json::{Value, json};

/// 2026-09-21T14:13:20Z: every event of the fixture is timed from here.
const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// When the fixture is opened: after every expiry it recorded, before any other.
const OPENED_AT: Timestamp = Timestamp::from_millis(1_790_000_000_000 + 3 * DAY_MS);

fn fixture_dir(format: u8) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/golden-v{format}"))
}

#[test]
fn the_golden_data_directory_opens_verifies_and_replays_the_same() {
    if std::env::var_os("KEYLEDGER_WRITE_GOLDEN").is_some() {
        write_golden(&fixture_dir(keyledger_vault::EVENT_FORMAT));
    }
    check_golden(&fixture_dir(1));
}

fn check_golden(fixture: &Path) {
    let copy = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture.join("data"), copy.path());
    let master = read_master_key(&fixture.join("master.key")).expect("the test master key");
    let vault = open(copy.path(), &master);

    let report = vault.log().verify().expect("verify");
    let (head, head_hash) = vault.log().head();
    assert!(head > 0, "the fixture holds events");
    assert!(
        report.first_bad.is_none(),
        "the hash chain of the golden log: {:?}",
        report.first_bad
    );
    assert_eq!(
        (report.verified_through, report.head_hash),
        (head, head_hash)
    );
    let checkpoint = vault
        .log()
        .last_checkpoint()
        .expect("checkpoints")
        .expect("the fixture holds a signed checkpoint");
    assert!(checkpoint.signature_is_valid());
    assert_eq!(
        vault.checkpoint_public_key().expect("signer"),
        checkpoint.public_key
    );
    assert_eq!(vault.broken(), None, "every event decodes");

    // Replayed from the first event, outside the vault too: the same state either way.
    let mut replayed = Projection::default();
    replayed.replay(vault.log()).expect("replay");
    assert_eq!(replayed.applied_seq, head);
    vault.read(|state| assert_eq!(state, &replayed.state));
    assert_eq!(
        state_view(&replayed.state),
        read_json(fixture, "expected-state.json")
    );
    assert_eq!(
        public_events(&vault),
        read_json(fixture, "expected-public-events.json")
    );
}

fn open(data_dir: &Path, master: &MasterKey) -> Vault {
    let config = VaultConfig {
        data_dir: data_dir.to_path_buf(),
        ..VaultConfig::default()
    };
    Vault::open(config, master, Arc::new(ManualClock::new(OPENED_AT))).expect("open the vault")
}

/// What the fixture's state must be, in a form a reviewer can read.
fn state_view(state: &State) -> Value {
    let mut users: Vec<_> = state.users().collect();
    users.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let mut roles: Vec<_> = state
        .custom_roles()
        .map(|(name, permissions)| json!({"role": name, "permissions": permissions}))
        .collect();
    roles.sort_by_key(|role| role["role"].to_string());
    let mut external_keys: Vec<_> = state.external_keys().collect();
    external_keys.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let mut ingestions: Vec<_> = state.ingestions().collect();
    ingestions.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    json!({
        "users": users,
        "custom_roles": roles,
        "api_keys": state.api_keys().collect::<Vec<_>>(),
        "api_key_status_at_opening": state
            .api_keys()
            .map(|key| json!({"key": key.id, "status": key.status_at(OPENED_AT).as_str()}))
            .collect::<Vec<_>>(),
        "external_keys": external_keys,
        "ingestions": ingestions,
        "master_key_generation": state.master_key_generation(),
    })
}

/// Every event's public JSON (what NATS subscribers and exports see), in log order.
fn public_events(vault: &Vault) -> Value {
    let mut events = Vec::new();
    for envelope in vault.log().read_from(1) {
        let envelope = envelope.expect("read");
        let event = decode_event(&envelope.body).expect("decode");
        let public = keyledger_bus::public_envelope(&envelope, &event);
        events.push(serde_json::to_value(public).expect("public JSON"));
    }
    Value::Array(events)
}

fn read_json(fixture: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(fixture.join(name)).expect(name);
    serde_json::from_str(&text).expect(name)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

// ---- The generator ----

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user id")
}

fn as_user(name: &str) -> Actor {
    Actor::User {
        user: user(name),
        key: None,
    }
}

/// Writes the fixture for today's format: a few users and a custom role, internal keys
/// created, used, rolled, deleted and expired, AWS and DNAnexus keys (verified, deleted,
/// expired), ingestions that completed (with a fetched and a failed file), failed and were
/// cancelled, a master-key rotation and a signed checkpoint.
fn write_golden(fixture: &Path) {
    if fixture.exists() {
        return;
    }
    let data = fixture.join("data");
    let key_file = fixture.join("master.key");
    std::fs::create_dir_all(&data).expect("mkdir");
    let master = MasterKey::generate(&ring::rand::SystemRandom::new()).expect("master key");
    write_master_key(&key_file, &master).expect("write the test master key");
    let clock = Arc::new(ManualClock::new(T0));
    let config = VaultConfig {
        data_dir: data.clone(),
        ..VaultConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let vault = Vault::open(config.clone(), &master, clock.clone()).expect("open");
    runtime.block_on(record_history(&vault, &clock));
    drop(vault);

    rotate_master_key_offline(&config, &key_file, clock.clone()).expect("rotate");
    let master = read_master_key(&key_file).expect("the rotated key");
    let vault = Vault::open(config, &master, clock).expect("reopen");
    vault.checkpoint_now().expect("checkpoint");
    drop(vault);
    // Opening must replay every event: a snapshot would hide the events from the test.
    let _ = std::fs::remove_file(data.join(keyledger_vault::SNAPSHOT_FILE));

    let vault = open(&data, &master);
    let mut replayed = Projection::default();
    replayed.replay(vault.log()).expect("replay");
    let state = serde_json::to_string_pretty(&state_view(&replayed.state)).expect("json");
    let public = serde_json::to_string_pretty(&public_events(&vault)).expect("json");
    drop(vault);
    std::fs::write(fixture.join("expected-state.json"), state + "\n").expect("write");
    std::fs::write(fixture.join("expected-public-events.json"), public + "\n").expect("write");
    let _ = std::fs::remove_file(data.join(keyledger_vault::SNAPSHOT_FILE));
}

async fn record_history(vault: &Vault, clock: &ManualClock) {
    let admin = as_user("admin");
    let run = |actor: Actor, action: Action| async move {
        vault.run(actor, action).await.expect("recorded");
    };
    vault.bootstrap(user("admin")).await.expect("bootstrap");
    run(
        admin.clone(),
        Action::DefineRole {
            role: RoleName::parse("key-keeper").unwrap(),
            permissions: vec![Permission::ManageUserApiKeys],
        },
    )
    .await;
    for (name, display, role) in [
        ("alice", Some("Alice Liddell"), "member"),
        ("bob", None, "key-keeper"),
        ("carol", Some("Carol"), "auditor"),
    ] {
        run(
            admin.clone(),
            Action::CreateUser {
                user: user(name),
                display_name: display.map(|d| keyledger_domain::DisplayName::parse(d).unwrap()),
                roles: vec![RoleName::parse(role).unwrap()],
            },
        )
        .await;
    }
    run(
        admin.clone(),
        Action::GrantRole {
            user: user("carol"),
            role: RoleName::parse("key-keeper").unwrap(),
        },
    )
    .await;
    run(
        admin.clone(),
        Action::RevokeRole {
            user: user("carol"),
            role: RoleName::parse("key-keeper").unwrap(),
        },
    )
    .await;

    let alice = as_user("alice");
    let key = |name: &str, duration| {
        let actor = alice.clone();
        let name = KeyName::parse(name).unwrap();
        async move {
            vault
                .create_api_key(actor, name, duration, None)
                .await
                .expect("key")
                .id
        }
    };
    let laptop = key("laptop", KeyDuration::Days(30)).await;
    let ci = key("ci", KeyDuration::Days(1)).await;
    let old = key("old", KeyDuration::Never).await;
    vault
        .issue_api_key(
            admin.clone(),
            user("bob"),
            KeyName::parse("service").unwrap(),
            KeyDuration::Days(365),
            None,
        )
        .await
        .expect("issued");
    clock.advance_millis(60_000);
    run(
        Actor::System,
        Action::RecordApiKeyUsage {
            usages: vec![KeyUsage {
                key: laptop.clone(),
                last_used_at: clock.now(),
                uses: 12,
            }],
        },
    )
    .await;
    vault
        .roll_api_key(alice.clone(), laptop, GracePeriod::parse("1h").unwrap())
        .await
        .expect("rolled");
    vault
        .delete_api_keys(alice.clone(), vec![old])
        .await
        .expect("deleted");

    let aws = NewCredential::aws(
        "AKIAIOSFODNN7EXAMPLE",
        SecretString::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
        "eu-west-1",
    )
    .unwrap();
    let dnanexus = || {
        NewCredential::dnanexus(SecretString::new(
            "golden-test-dnanexus-token-0123456789".into(),
        ))
        .unwrap()
    };
    let external = |actor: Actor, label: &str, credential, days| {
        let label = Label::parse(label).unwrap();
        async move {
            vault
                .create_external_key(actor, label, credential, KeyDuration::Days(days), None)
                .await
                .expect("external key")
                .id
        }
    };
    let alice_aws = external(alice.clone(), "lab bucket", aws, 90).await;
    let alice_dx = external(alice.clone(), "dx project", dnanexus(), 90).await;
    let bob_dx = external(as_user("bob"), "short", dnanexus(), 1).await;
    let bob_second = {
        let bob_aws = NewCredential::aws(
            "AKIAI44QH8DHBEXAMPLE",
            SecretString::new("je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY".into()),
            "us-east-1",
        )
        .unwrap();
        external(as_user("bob"), "to delete", bob_aws, 30).await
    };
    run(
        alice.clone(),
        Action::RecordExternalKeyVerification {
            key: alice_aws.clone(),
            ok: true,
            detail: "listed bucket lab".into(),
        },
    )
    .await;
    vault
        .delete_external_keys(as_user("bob"), vec![bob_second])
        .await
        .expect("deleted");
    let _ = (alice_dx, bob_dx);

    let ingestion = |n: u32| IngestionId::parse(&format!("ing_{n:016}")).unwrap();
    let request = |id: IngestionId, selection: Selection| {
        let actor = alice.clone();
        async move {
            vault
                .run(
                    actor,
                    Action::RequestIngestion {
                        ingestion: id,
                        selection,
                        destination: "samples".into(),
                        batch_id: "batch-1".into(),
                        force: false,
                    },
                )
                .await
                .expect("requested");
        }
    };
    let progress = |id: &IngestionId, items: Vec<IngestionProgress>| {
        let actions: Vec<Action> = items
            .into_iter()
            .map(|progress| Action::RecordIngestion {
                ingestion: id.clone(),
                progress,
            })
            .collect();
        async move {
            vault
                .run_all(Actor::System, actions)
                .await
                .expect("progress");
        }
    };
    let completed = ingestion(1);
    request(
        completed.clone(),
        Selection::Aws {
            bucket: "lab".into(),
            prefix: "runs/".into(),
            pattern: r".*\.csv$".into(),
        },
    )
    .await;
    progress(
        &completed,
        vec![
            IngestionProgress::KeyUsed,
            IngestionProgress::Listed {
                files: 2,
                bytes: 2048,
            },
        ],
    )
    .await;
    progress(
        &completed,
        vec![
            IngestionProgress::FileFetched {
                path: "runs/a.csv".into(),
                size: 1024,
                sha256: [0xab; 32],
                source_etag: "\"9e107d9d372bb6826bd81d3542a419d6\"".into(),
            },
            IngestionProgress::FileFailed {
                path: "runs/b.csv".into(),
                reason: "object `runs/b.csv` failed verification (ETag MD5)".into(),
                failure_kind: FailureKind::Integrity,
            },
        ],
    )
    .await;
    progress(&completed, vec![IngestionProgress::Completed]).await;
    let failed = ingestion(2);
    request(
        failed.clone(),
        Selection::Dnanexus {
            project: "project-golden".into(),
            folder: "/reads".into(),
            pattern: r".*\.bam$".into(),
        },
    )
    .await;
    progress(
        &failed,
        vec![
            IngestionProgress::KeyUsed,
            IngestionProgress::Failed {
                reason: "cannot resolve host `api.example.invalid`: check the endpoint".into(),
                failure_kind: FailureKind::Unreachable,
            },
        ],
    )
    .await;
    let cancelled = ingestion(3);
    request(
        cancelled.clone(),
        Selection::Aws {
            bucket: "lab".into(),
            prefix: "".into(),
            pattern: ".*".into(),
        },
    )
    .await;
    run(
        alice.clone(),
        Action::CancelIngestion {
            ingestion: cancelled,
        },
    )
    .await;

    // Two days on: `ci` and bob's one-day DNAnexus key expire.
    clock.advance_millis(2 * DAY_MS);
    run(Actor::System, Action::ExpireDue).await;
    let _ = ci;
}
