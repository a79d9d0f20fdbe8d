//! Master-key rotation: everything re-wrapped in one step, internal keys still verify (the
//! pepper is kept), external keys still open, the old key opens nothing, and an interrupted
//! rotation is refused at start-up and finished by running it again.

use std::sync::Arc;

use keyledger_audit::open_log_offline;
use keyledger_audit::verify::{VerifyOptions, verify_data_dir};
use keyledger_crypto::{Keyring, MasterKey};
use keyledger_domain::{Event, Provider};
use keyledger_vault::{
    ExternalCredential, ManualClock, Vault, VaultError, entries_opened_by, pending_key_path,
    read_master_key, rewrap_sealed_material, rotate_master_key_offline, write_master_key,
};

use crate::support::*;

struct Before {
    dir: tempfile::TempDir,
    old: MasterKey,
    file: std::path::PathBuf,
    internal_secret: String,
    public_key: [u8; 32],
}

async fn vault_with_secrets() -> Before {
    let test = vault().await;
    let created = test
        .vault
        .create_api_key(
            dev(),
            keyledger_domain::KeyName::parse("ci").unwrap(),
            keyledger_domain::KeyDuration::Days(30),
            None,
        )
        .await
        .unwrap();
    test.create_aws(dev(), "aws", 30).await;
    test.create_dnanexus(admin(), "dx", 30).await;
    test.vault.checkpoint_now().unwrap();
    let public_key = test.vault.checkpoint_public_key().unwrap();
    let (dir, old, _) = test.close();
    let file = dir.path().join("master.key");
    write_master_key(&file, &old).unwrap();
    Before {
        dir,
        old,
        file,
        internal_secret: created.secret.expose().to_owned(),
        public_key,
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0.plus_millis(DAY)))
}

fn assert_everything_works_with(before: &Before, master: &MasterKey) {
    let vault = Vault::open(config(before.dir.path()), master, clock()).unwrap();
    vault.configure_audit(QUIET);
    // Internal keys: the pepper did not change.
    let principal = vault.authenticate_key(&before.internal_secret).unwrap();
    assert_eq!(principal.user, user("dev"));
    // External keys: the data keys open under the new master key.
    match vault
        .lease_for(&user("dev"), Provider::Aws)
        .unwrap()
        .credential
    {
        ExternalCredential::Aws {
            secret_access_key, ..
        } => assert_eq!(secret_access_key.expose(), AWS_SECRET),
        other => panic!("not an AWS credential: {other:?}"),
    }
    match vault
        .lease_for(&user("admin"), Provider::Dnanexus)
        .unwrap()
        .credential
    {
        ExternalCredential::Dnanexus { token } => assert_eq!(token.expose(), DNANEXUS_TOKEN),
        other => panic!("not a DNAnexus credential: {other:?}"),
    }
    // The signing key survived: same public key, new checkpoints still sign.
    assert_eq!(vault.checkpoint_public_key().unwrap(), before.public_key);
    vault.checkpoint_now().unwrap();
}

#[tokio::test]
async fn after_a_rotation_the_old_key_opens_nothing_and_everything_still_works() {
    let before = vault_with_secrets().await;
    let outcome =
        rotate_master_key_offline(&config(before.dir.path()), &before.file, clock()).unwrap();
    assert_eq!(outcome.generation, 1);
    assert_eq!(outcome.rewrap.credentials, 2);
    // Pepper, signing key and the master-key check.
    assert_eq!(outcome.rewrap.vault_secrets, 3);
    assert!(!outcome.resumed);
    assert_eq!(outcome.old_fingerprint, before.old.fingerprint());

    let new = read_master_key(&before.file).unwrap();
    assert_eq!(new.fingerprint(), outcome.new_fingerprint);
    assert_ne!(new.fingerprint(), before.old.fingerprint());
    assert!(
        !pending_key_path(&before.file).exists(),
        "no copy of any key is left behind"
    );
    let siblings: Vec<_> = std::fs::read_dir(before.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("master"))
        .collect();
    assert_eq!(siblings, ["master.key"]);

    // The old key: refused at open, and not one stored entry unwraps with it.
    match Vault::open(config(before.dir.path()), &before.old, clock()) {
        Err(VaultError::Config(message)) => assert!(message.contains("does not open")),
        other => panic!("the old key was accepted: {:?}", other.map(|_| ())),
    }
    let log = open_log_offline(before.dir.path()).unwrap();
    assert_eq!(entries_opened_by(&log, &before.old).unwrap(), 0);
    assert!(entries_opened_by(&log, &new).unwrap() >= 5);
    let old_keyring = Keyring::new(&before.old).unwrap();
    for (id, wrapped) in log.data_keys().iter().unwrap() {
        assert!(
            old_keyring.rewrap(&id, &wrapped, &old_keyring).is_err(),
            "{id}"
        );
    }
    // The event records the rotation and no key material.
    let last = log.get(log.head().0).unwrap().unwrap();
    let event = keyledger_vault::decode_event(&last.body).unwrap();
    assert!(matches!(
        event,
        Event::MasterKeyRotated {
            generation: 1,
            data_keys: 2,
            ..
        }
    ));
    assert_eq!(last.actor, "operator");
    log.close();

    assert_everything_works_with(&before, &new);
    // The chain and the checkpoints from before the rotation still verify under the same key.
    let outcome = verify_data_dir(
        before.dir.path(),
        VerifyOptions {
            public_key: Some(before.public_key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(outcome.is_ok(), "{}", outcome.render());
    assert_eq!(outcome.checkpoints_verified, 2);
}

#[tokio::test]
async fn a_rotation_interrupted_after_re_wrapping_is_refused_then_finished() {
    let before = vault_with_secrets().await;
    // Crash after step 2: the new key is in `.new`, storage is re-wrapped, no event, no rename.
    let new = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    write_master_key(&pending_key_path(&before.file), &new).unwrap();
    let log = open_log_offline(before.dir.path()).unwrap();
    rewrap_sealed_material(&log, &before.old, &new).unwrap();
    log.close();
    assert!(Vault::open(config(before.dir.path()), &before.old, clock()).is_err());

    let outcome =
        rotate_master_key_offline(&config(before.dir.path()), &before.file, clock()).unwrap();
    assert!(outcome.resumed);
    assert_eq!(outcome.rewrap.already_rewrapped, 5);
    assert_eq!(
        read_master_key(&before.file).unwrap().fingerprint(),
        new.fingerprint()
    );
    assert_everything_works_with(&before, &new);
}

#[tokio::test]
async fn a_rotation_interrupted_between_the_data_keys_and_the_check_serves_with_neither_key() {
    let before = vault_with_secrets().await;
    let new = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    write_master_key(&pending_key_path(&before.file), &new).unwrap();
    // Only the data keys moved (the crash came before the master-key check was rewritten).
    let log = open_log_offline(before.dir.path()).unwrap();
    let (from, to) = (
        Keyring::new(&before.old).unwrap(),
        Keyring::new(&new).unwrap(),
    );
    let moved: Vec<_> = log
        .data_keys()
        .iter()
        .unwrap()
        .into_iter()
        .map(|(id, wrapped)| {
            let rewrapped = from.rewrap(&id, &wrapped, &to).unwrap();
            (id, rewrapped)
        })
        .collect();
    log.data_keys().replace_all(moved).unwrap();
    log.close();
    match Vault::open(config(before.dir.path()), &before.old, clock()) {
        Err(VaultError::Config(message)) => {
            assert!(message.contains("rotation was interrupted"), "{message}")
        }
        other => panic!(
            "the old key served a half-rotated directory: {:?}",
            other.map(|_| ())
        ),
    }
    assert!(Vault::open(config(before.dir.path()), &new, clock()).is_err());

    let outcome =
        rotate_master_key_offline(&config(before.dir.path()), &before.file, clock()).unwrap();
    assert!(outcome.resumed);
    assert_everything_works_with(&before, &new);
    // Running it once more starts a new rotation (generation 2), not a duplicate of the first.
    let outcome =
        rotate_master_key_offline(&config(before.dir.path()), &before.file, clock()).unwrap();
    assert_eq!(outcome.generation, 2);
    assert!(!outcome.resumed);
}

#[tokio::test]
async fn a_log_with_events_but_no_sealed_pepper_is_refused_not_migrated() {
    // The pepper is sealed before the first event; a log with events and none was damaged or
    // written before the first format (decision 0018), and no key hash in it can be trusted.
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    let legacy = Keyring::new(&master).unwrap();
    let (secret, hint) = keyledger_crypto::generate_api_key(legacy.rng()).unwrap();
    let secret_hash = legacy.hash_api_key(secret.expose());
    {
        use keyledger_domain::{FromTrusted, KeyHint, KeyId, KeyName, RoleName, UserId};
        let log = keyledger_log::EventLog::open(
            keyledger_log::LogConfig::new(dir.path().join("log")),
            Box::new(|_: &[keyledger_log::Envelope]| {}),
        )
        .unwrap();
        let admin = UserId::from_trusted("admin".into());
        let events = [
            Event::UserCreated {
                user: admin.clone(),
                display_name: None,
                at: T0,
            },
            Event::RoleGranted {
                user: admin.clone(),
                role: RoleName::from_trusted("admin".into()),
                at: T0,
            },
            Event::ApiKeyCreated {
                key: KeyId::from_trusted("key_0000000000000001".into()),
                owner: admin,
                name: KeyName::from_trusted("bootstrap".into()),
                hint: KeyHint::from_trusted(hint),
                secret_hash,
                created_at: T0,
                expires_at: None,
            },
        ];
        log.append_blocking(keyledger_log::AppendBatch {
            request_id: None,
            guards: Vec::new(),
            actor: "operator".into(),
            time_ms: T0.as_millis(),
            events: events
                .iter()
                .map(|event| keyledger_log::NewEvent {
                    stream: event.stream_id(),
                    expected: keyledger_log::ExpectedVersion::Any,
                    body: keyledger_vault::encode_event(event).unwrap(),
                })
                .collect(),
        })
        .unwrap();
        log.close();
    }
    let refused = Vault::open(config(dir.path()), &master, clock()).unwrap_err();
    assert!(
        refused.to_string().contains("no sealed pepper"),
        "{refused}"
    );
}
