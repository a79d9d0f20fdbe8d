//! Crypto-shredding, proven on a stolen copy: with the data directory and the master key, the
//! deleted secret cannot be opened by any code path.

use keyledger_audit::open_log_offline;
use keyledger_audit::shredded::{attempt_recovery, shredding_report};
use keyledger_crypto::{Keyring, credential_aad};
use keyledger_domain::Provider;
use keyledger_vault::Vault;

use crate::support::*;

#[tokio::test]
async fn a_deleted_secret_cannot_be_opened_from_a_full_copy_with_the_master_key() {
    let test = vault().await;
    let aws = test.create_aws(dev(), "aws", 30).await;
    let dx = test.create_dnanexus(dev(), "dx", 30).await;
    test.vault
        .delete_external_keys(dev(), vec![aws.clone()])
        .await
        .unwrap();
    let (sealed, owner) = test.vault.read(|state| {
        let key = state.external_key(&aws).unwrap();
        (key.sealed.clone(), key.owner.clone())
    });
    let (dir, master, clock) = test.close();
    let stolen = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), stolen.path());

    // The report names the shredded key and nothing else.
    let log = open_log_offline(stolen.path()).unwrap();
    let report = shredding_report(&log).unwrap();
    assert_eq!(report.shredded.len(), 1);
    assert_eq!(report.shredded[0].id, aws.to_string());
    assert!(report.shredded[0].deleted_seq.is_some());
    assert_eq!(report.retained, 1);
    assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);

    // Every wrapped key left in the copy, unwrapped with the master key, against the sealed
    // secret in the log: nothing opens.
    let attempts = attempt_recovery(&log, &master).unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(!attempts[0].opened);
    let entries = log.data_keys().iter().unwrap();
    assert_eq!(attempts[0].wrapped_keys_tried, entries.len() as u64);
    assert!(
        entries.len() >= 3,
        "the DNAnexus key, the pepper and the signing key remain"
    );
    // The same by hand, including under every entry's id and under the deleted key's id.
    let keyring = Keyring::new(&master).unwrap();
    let aad = credential_aad(&aws, &owner, Provider::Aws);
    for (id, wrapped) in &entries {
        assert!(keyring.open(id, wrapped, &sealed, &aad).is_err());
        assert!(keyring.open(aws.as_str(), wrapped, &sealed, &aad).is_err());
    }
    log.close();

    // The vault itself, opened on the copy with the master key, cannot lease it either; the
    // surviving credential still works.
    let vault = Vault::open(config(stolen.path()), &master, clock).unwrap();
    assert!(vault.lease_external_key(&aws).is_err());
    assert!(vault.lease_external_key(&dx).is_ok());
}

/// Looks for any 60-byte window in the raw files that is a wrapping of the data key sealing
/// `sealed`: what someone reading sled's segment files byte by byte could try.
fn raw_windows_that_open(
    dir: &std::path::Path,
    keyring: &Keyring,
    id: &str,
    sealed: &keyledger_domain::SealedSecret,
    aad: &[u8],
) -> usize {
    let mut opened = 0;
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).unwrap();
        for window in bytes.windows(keyledger_crypto::DATA_KEY_WRAP_LEN) {
            if keyring.open(id, window, sealed, aad).is_ok() {
                opened += 1;
            }
        }
    }
    opened
}

#[tokio::test]
async fn no_byte_of_a_copied_directory_opens_a_deleted_secret_even_searched_byte_by_byte() {
    let test = vault().await;
    let aws = test.create_aws(dev(), "aws", 30).await;
    let (sealed, owner) = test.vault.read(|state| {
        let key = state.external_key(&aws).unwrap();
        (key.sealed.clone(), key.owner.clone())
    });
    let aad = credential_aad(&aws, &owner, Provider::Aws);
    // Positive control: while the key exists, the byte-level search finds its wrapped data key.
    let test = test.reopen();
    let keyring = Keyring::new(&test.master).unwrap();
    assert!(raw_windows_that_open(test.path(), &keyring, aws.as_str(), &sealed, &aad) >= 1);
    test.vault
        .delete_external_keys(dev(), vec![aws.clone()])
        .await
        .unwrap();
    let (dir, master, _) = test.close();
    let stolen = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), stolen.path());
    // The data keys live in a file rewritten whole on every change, not in sled's segments:
    // after the deletion no 60-byte window of any file unwraps into the secret's data key.
    assert_eq!(
        raw_windows_that_open(stolen.path(), &keyring, aws.as_str(), &sealed, &aad),
        0
    );

    // After a rotation the same holds with the new key, and the old key is kept nowhere.
    let file = dir.path().join("master.key");
    keyledger_vault::write_master_key(&file, &master).unwrap();
    let clock = std::sync::Arc::new(keyledger_vault::ManualClock::new(T0));
    keyledger_vault::rotate_master_key_offline(&config(dir.path()), &file, clock).unwrap();
    let new_master = keyledger_vault::read_master_key(&file).unwrap();
    let new_keyring = Keyring::new(&new_master).unwrap();
    assert_eq!(
        raw_windows_that_open(dir.path(), &new_keyring, aws.as_str(), &sealed, &aad),
        0
    );
    assert!(!keyledger_vault::pending_key_path(&file).exists());
}
