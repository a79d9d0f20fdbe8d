//! Rotation of an external secret: leases taken before it keep the old secret, the old data key
//! is destroyed at the last release (or at once, or at the next start), never while held.

use std::time::Duration;

use keyledger_crypto::SecretString;
use keyledger_domain::{DataKeyId, Event, ExternalKeyId, KeyDuration, Label};
use keyledger_vault::{ExternalCredential, Lease, NewCredential, Vault};

use crate::support::*;

fn token(text: &str) -> NewCredential {
    NewCredential::dnanexus(SecretString::new(text.into())).unwrap()
}

fn token_of(lease: &Lease) -> String {
    match &lease.credential {
        ExternalCredential::Dnanexus { token } => token.expose().to_owned(),
        other => panic!("unexpected {other:?}"),
    }
}

fn destroyed_events(vault: &Vault) -> Vec<DataKeyId> {
    vault
        .log()
        .read_from(1)
        .map(|envelope| keyledger_vault::decode_event(&envelope.unwrap().body).unwrap())
        .filter_map(|event| match event {
            Event::ExternalKeyDataKeyDestroyed { data_key, .. } => Some(data_key),
            _ => None,
        })
        .collect()
}

fn present(vault: &Vault, data_key: &DataKeyId) -> bool {
    vault.log().data_key(data_key.as_str()).unwrap().is_some()
}

/// Waits (bounded) for the destruction the last release started on the runtime.
async fn until_gone(vault: &Vault, data_key: &DataKeyId) {
    for _ in 0..500 {
        if !present(vault, data_key) && destroyed_events(vault).contains(data_key) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{data_key} was not destroyed");
}

async fn stored(test: &TestVault) -> ExternalKeyId {
    test.vault
        .create_external_key(
            dev(),
            Label::parse("dx").unwrap(),
            token("dxTokenBeforeRotation01"),
            KeyDuration::Never,
            None,
        )
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn a_lease_keeps_its_secret_and_the_last_release_destroys_the_old_data_key() {
    let test = vault().await;
    let id = stored(&test).await;
    let original = DataKeyId::original(&id);
    let running = test.vault.lease_external_key(&id).unwrap();
    let copy = running.clone();
    assert_eq!(
        test.vault.live_leases(&original),
        1,
        "clones share one lease"
    );

    let view = test
        .vault
        .rotate_external_key(dev(), id.clone(), token("dxTokenAfterRotation0002"))
        .await
        .unwrap();
    assert_eq!((view.id.clone(), view.hint.as_str()), (id.clone(), "…0002"));
    let fresh = test.vault.lease_external_key(&id).unwrap();
    assert_eq!(token_of(&fresh), "dxTokenAfterRotation0002");
    assert_eq!(token_of(&running), "dxTokenBeforeRotation01");
    assert_ne!(fresh.data_key(), &original);
    // Held: still there, nothing destroyed.
    assert!(present(&test.vault, &original));
    assert!(destroyed_events(&test.vault).is_empty());

    drop(running);
    assert!(present(&test.vault, &original), "a clone still holds it");
    let hold = copy.into_hold();
    assert!(
        present(&test.vault, &original),
        "the job's hold still holds it"
    );
    drop(hold);
    until_gone(&test.vault, &original).await;
    assert_eq!(
        destroyed_events(&test.vault),
        std::slice::from_ref(&original)
    );
    assert_eq!(
        token_of(&test.vault.lease_external_key(&id).unwrap()),
        "dxTokenAfterRotation0002"
    );

    // Nobody holds the current key now: the next rotation destroys it at once.
    let current = fresh.data_key().clone();
    drop(fresh);
    test.vault
        .rotate_external_key(dev(), id.clone(), token("dxTokenAfterRotation0003"))
        .await
        .unwrap();
    assert!(!present(&test.vault, &current));
    assert_eq!(destroyed_events(&test.vault), [original, current]);
}

#[tokio::test]
async fn a_data_key_retired_while_held_is_destroyed_at_the_next_start() {
    let test = vault().await;
    let id = stored(&test).await;
    let original = DataKeyId::original(&id);
    let held = test.vault.lease_external_key(&id).unwrap();
    test.vault
        .rotate_external_key(dev(), id.clone(), token("dxTokenAfterRotation0002"))
        .await
        .unwrap();
    assert!(present(&test.vault, &original));

    // The process ends with the lease live; after a start nothing can hold it.
    let test = test.reopen();
    assert!(!present(&test.vault, &original));
    assert_eq!(
        destroyed_events(&test.vault),
        std::slice::from_ref(&original)
    );
    drop(held);
    let test = test.reopen();
    assert_eq!(destroyed_events(&test.vault), [original], "recorded once");
    assert_eq!(
        token_of(&test.vault.lease_external_key(&id).unwrap()),
        "dxTokenAfterRotation0002"
    );
}
