//! A backup taken while the vault keeps appending restores into a directory that verifies and
//! opens to exactly the state at the backup's head.

use keyledger_audit::backup::{backup_offline, restore};
use keyledger_audit::verify::{VerifyOptions, verify_data_dir};
use keyledger_domain::{Provider, State};
use keyledger_vault::{Vault, decode_event, read_backup_manifest};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_and_verifies() {
    let test = vault().await;
    test.create_aws(dev(), "aws", 30).await;
    for n in 0..20 {
        test.create_key(dev(), &format!("k{n}"), 30).await;
    }
    test.vault.checkpoint_now().unwrap();
    let key = test.vault.checkpoint_public_key().unwrap();

    // Appends go on while the backup is written.
    let writer = {
        let vault = test.vault.clone();
        tokio::spawn(async move {
            for n in 0..200 {
                vault
                    .create_api_key(
                        dev(),
                        keyledger_domain::KeyName::parse(&format!("load{n}")).unwrap(),
                        keyledger_domain::KeyDuration::Days(1),
                        None,
                    )
                    .await
                    .unwrap();
            }
        })
    };
    let backup_dir = tempfile::tempdir().unwrap();
    let target = backup_dir.path().join("backup");
    let vault = test.vault.clone();
    let backup_path = target.clone();
    let manifest = tokio::task::spawn_blocking(move || vault.backup_to(&backup_path))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(manifest.head >= 25);
    assert_eq!(read_backup_manifest(&target).unwrap(), manifest);
    assert_eq!(
        manifest.checkpoint_public_key,
        Some(keyledger_domain::public::hex(&key))
    );

    // The state at the backup's head, folded from the original log.
    let mut expected = State::default();
    for envelope in test.vault.log().read_range(1, manifest.head) {
        expected.apply_owned(decode_event(&envelope.unwrap().body).unwrap());
    }

    let restored = tempfile::tempdir().unwrap();
    let outcome = restore(
        &target,
        restored.path(),
        VerifyOptions {
            public_key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(outcome.verify.is_ok(), "{}", outcome.verify.render());
    assert_eq!(outcome.verify.verified_through, manifest.head);
    assert_eq!(outcome.verify.checkpoints_verified, 1);
    // `audit verify` on the restored copy, as an auditor runs it.
    let verified = verify_data_dir(
        restored.path(),
        VerifyOptions {
            public_key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(verified.is_ok());

    // A second restore into the same directory is refused.
    assert!(restore(&target, restored.path(), VerifyOptions::default()).is_err());

    // The data keys went straight into their own file, never into the copy's sled segments.
    assert!(restored.path().join("log").join("data_keys.bin").is_file());
    let vault = Vault::open(config(restored.path()), &test.master, test.clock.clone()).unwrap();
    vault.configure_audit(QUIET);
    assert!(vault.read(|state| *state == expected));
    assert!(vault.lease_for(&user("dev"), Provider::Aws).is_ok());
    assert_eq!(vault.checkpoint_public_key().unwrap(), key);
    // Without the master key, a backup is useless for decryption: another key cannot open it.
    let other = keyledger_crypto::MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    drop(vault);
    assert!(Vault::open(config(restored.path()), &other, test.clock.clone()).is_err());
}

#[tokio::test]
async fn an_offline_backup_needs_no_master_key_and_restores() {
    let test = vault().await;
    test.create_key(dev(), "k", 30).await;
    let head = test.vault.log().head().0;
    let (dir, master, clock) = test.close();
    let backup_dir = tempfile::tempdir().unwrap();
    let manifest = backup_offline(dir.path(), &backup_dir.path().join("b")).unwrap();
    assert_eq!(manifest.head, head);
    let restored = tempfile::tempdir().unwrap();
    let outcome = restore(
        &backup_dir.path().join("b"),
        restored.path(),
        VerifyOptions::default(),
    )
    .unwrap();
    assert!(outcome.verify.is_ok());
    let vault = Vault::open(config(restored.path()), &master, clock).unwrap();
    assert_eq!(vault.log().head().0, head);
    // Backing up into a directory that is not empty is refused.
    drop(vault);
    assert!(backup_offline(dir.path(), &backup_dir.path().join("b")).is_err());
}
