//! Start-up from a snapshot gives exactly the state of a full replay; a damaged, foreign or
//! mismatched snapshot is ignored (full replay, with the reason recorded).

use keyledger_domain::{Action, State};
use keyledger_vault::{SNAPSHOT_FILE, Vault, decode_event};

use crate::support::*;

fn full_replay(vault: &Vault) -> State {
    let mut state = State::default();
    for envelope in vault.log().read_from(1) {
        state.apply_owned(decode_event(&envelope.unwrap().body).unwrap());
    }
    state
}

async fn snapshotted() -> (TestVault, u64, Vec<keyledger_domain::KeyId>) {
    let test = vault().await;
    let mut keys = Vec::new();
    for n in 0..10 {
        keys.push(test.create_key(dev(), &format!("k{n}"), 30).await);
        test.advance(MINUTE);
    }
    let seq = test.vault.snapshot_now().unwrap().unwrap();
    assert_eq!(seq, test.vault.log().head().0);
    // Events after the snapshot, which start-up replays on top of it.
    for n in 10..13 {
        keys.push(test.create_key(dev(), &format!("k{n}"), 30).await);
    }
    (test, seq, keys)
}

#[tokio::test]
async fn start_up_from_a_snapshot_equals_a_full_replay() {
    let (test, seq, keys) = snapshotted().await;
    let head = test.vault.log().head().0;
    let test = test.reopen();
    let report = test.vault.startup_report().clone();
    assert_eq!(report.snapshot_seq, Some(seq));
    assert_eq!(report.replayed_events, head - seq);
    assert_eq!(report.ignored_snapshot, None);
    assert!(test.vault.read(|state| *state == full_replay(&test.vault)));
    // The stream versions came back too: a change to a key from before the snapshot goes
    // through on the first attempt.
    test.vault
        .delete_api_keys(dev(), vec![keys[0].clone()])
        .await
        .unwrap();
    test.vault
        .run(
            dev(),
            Action::DeleteApiKeys {
                keys: vec![keys[11].clone()],
            },
        )
        .await
        .unwrap();
    assert!(test.vault.read(|state| *state == full_replay(&test.vault)));
}

#[tokio::test]
async fn a_damaged_snapshot_is_ignored_and_the_log_replayed() {
    let (test, _, _) = snapshotted().await;
    let head = test.vault.log().head().0;
    let path = test.path().join(SNAPSHOT_FILE);
    let (dir, master, clock) = test.close();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let vault = Vault::open(config(dir.path()), &master, clock).unwrap();
    vault.configure_audit(QUIET);
    let report = vault.startup_report();
    assert_eq!(report.snapshot_seq, None);
    assert_eq!(report.replayed_events, head);
    assert!(
        report
            .ignored_snapshot
            .as_deref()
            .unwrap()
            .contains("damaged")
    );
    assert!(vault.read(|state| *state == full_replay(&vault)));

    // A file that is not a snapshot at all.
    drop(vault);
    std::fs::write(&path, b"not a snapshot").unwrap();
    let vault = Vault::open(
        config(dir.path()),
        &master,
        std::sync::Arc::new(keyledger_vault::ManualClock::new(T0)),
    )
    .unwrap();
    assert!(vault.startup_report().ignored_snapshot.is_some());
    assert!(vault.read(|state| *state == full_replay(&vault)));
}

#[tokio::test]
async fn a_snapshot_signed_by_another_vault_is_ignored() {
    let (test, _, _) = snapshotted().await;
    let other = vault().await;
    other.create_key(dev(), "x", 1).await;
    other.vault.snapshot_now().unwrap();
    let foreign = std::fs::read(other.path().join(SNAPSHOT_FILE)).unwrap();
    let (dir, master, clock) = test.close();
    std::fs::write(dir.path().join(SNAPSHOT_FILE), foreign).unwrap();
    let vault = Vault::open(config(dir.path()), &master, clock).unwrap();
    vault.configure_audit(QUIET);
    assert!(
        vault
            .startup_report()
            .ignored_snapshot
            .as_deref()
            .unwrap()
            .contains("signature")
    );
    assert!(vault.read(|state| *state == full_replay(&vault)));
}

#[tokio::test]
async fn a_snapshot_whose_chain_hash_differs_from_the_log_is_ignored() {
    // Two copies of one directory diverge after seq S; a snapshot of one at a later seq is
    // validly signed (same key) but does not match the other's chain there.
    let test = vault().await;
    test.create_key(dev(), "common", 30).await;
    let (dir, master, clock) = test.close();
    let twin = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), twin.path());

    let original = Vault::open(config(dir.path()), &master, clock.clone()).unwrap();
    original.configure_audit(QUIET);
    original
        .create_api_key(
            dev(),
            keyledger_domain::KeyName::parse("only-here").unwrap(),
            keyledger_domain::KeyDuration::Days(1),
            None,
        )
        .await
        .unwrap();
    original.snapshot_now().unwrap();
    let snapshot = std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
    drop(original);

    let diverged = Vault::open(config(twin.path()), &master, clock.clone()).unwrap();
    diverged.configure_audit(QUIET);
    diverged
        .create_api_key(
            dev(),
            keyledger_domain::KeyName::parse("only-there").unwrap(),
            keyledger_domain::KeyDuration::Days(1),
            None,
        )
        .await
        .unwrap();
    drop(diverged);
    std::fs::write(twin.path().join(SNAPSHOT_FILE), snapshot).unwrap();
    let vault = Vault::open(config(twin.path()), &master, clock).unwrap();
    vault.configure_audit(QUIET);
    let reason = vault.startup_report().ignored_snapshot.clone().unwrap();
    assert!(reason.contains("chain hash"), "{reason}");
    assert!(vault.read(|state| *state == full_replay(&vault)));
    assert!(vault.read(|state| state.api_keys().any(|k| k.name.as_str() == "only-there")));
}
