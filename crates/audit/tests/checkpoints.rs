//! Checkpoints made by the vault as the log grows (off the writer thread), and on demand; the
//! public key and the export over the API's page function.

use keyledger_audit::verify::{VerifyOptions, verify_export};
use keyledger_audit::{ExportLine, export_jsonl, export_page, public_key, public_key_info};
use keyledger_vault::{AuditConfig, SNAPSHOT_FILE, published_public_key};

use crate::support::*;

#[tokio::test]
async fn the_vault_signs_checkpoints_and_writes_snapshots_as_the_log_grows() {
    let test = vault().await;
    test.vault.configure_audit(AuditConfig {
        checkpoint_every: 5,
        snapshot_every: 10,
    });
    for n in 0..20 {
        test.create_key(dev(), &format!("k{n}"), 30).await;
    }
    let head = test.vault.log().head().0;
    let last_due = head / 5 * 5;
    eventually("checkpoints up to the head", || {
        test.vault
            .log()
            .last_checkpoint()
            .unwrap()
            .is_some_and(|c| c.seq == last_due)
    });
    let checkpoints = test.vault.log().checkpoints(1, u64::MAX).unwrap();
    let seqs: Vec<u64> = checkpoints.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=head / 5).map(|n| n * 5).collect::<Vec<_>>());
    let key = test.vault.checkpoint_public_key().unwrap();
    for checkpoint in &checkpoints {
        assert!(checkpoint.signature_is_valid());
        assert_eq!(checkpoint.public_key, key);
        assert_eq!(
            checkpoint.hash,
            test.vault.log().get(checkpoint.seq).unwrap().unwrap().hash
        );
    }
    eventually("a snapshot", || test.path().join(SNAPSHOT_FILE).exists());

    // On demand: the head, once.
    let now = test.vault.checkpoint_now().unwrap();
    assert_eq!(now.seq, head);
    assert_eq!(test.vault.checkpoint_now().unwrap(), now);
}

#[tokio::test]
async fn the_public_key_is_the_one_that_signs_and_the_one_the_directory_publishes() {
    let test = vault().await;
    let key = test.vault.checkpoint_public_key().unwrap();
    assert_eq!(
        public_key(&test.vault).unwrap(),
        keyledger_domain::public::hex(&key)
    );
    assert_eq!(published_public_key(test.vault.log()).unwrap(), Some(key));
    let info = public_key_info(&test.vault).unwrap();
    assert_eq!(info.algorithm, "ed25519");
    assert_eq!(info.last_checkpoint, None);
    test.vault.checkpoint_now().unwrap();
    assert!(
        public_key_info(&test.vault)
            .unwrap()
            .last_checkpoint
            .is_some()
    );
    // The key survives a restart.
    let test = test.reopen();
    assert_eq!(test.vault.checkpoint_public_key().unwrap(), key);
}

#[tokio::test]
async fn pages_of_the_export_put_together_are_the_export() {
    let test = vault().await;
    for n in 0..9 {
        test.create_key(dev(), &format!("k{n}"), 30).await;
        if n % 4 == 0 {
            test.vault.checkpoint_now().unwrap();
        }
    }
    let mut whole = Vec::new();
    export_jsonl(test.vault.log(), 1, u64::MAX, &mut whole).unwrap();
    let mut paged = Vec::new();
    let mut from = Some(1);
    // Pages carry no end record: whoever puts them together writes it (as `--remote` does).
    let mut tally = keyledger_audit::EndTally::default();
    while let Some(start) = from {
        let page = export_page(&test.vault, start, 4).unwrap();
        for line in &page.lines {
            tally.count(line);
            paged.extend_from_slice(serde_json::to_string(line).unwrap().as_bytes());
            paged.push(b'\n');
        }
        from = page.next_from;
    }
    paged.extend_from_slice(serde_json::to_string(&tally.end_line()).unwrap().as_bytes());
    paged.push(b'\n');
    assert_eq!(
        String::from_utf8(paged).unwrap(),
        String::from_utf8(whole.clone()).unwrap()
    );
    // Lines deserialize back into the types the API returns.
    let text = String::from_utf8(whole).unwrap();
    for line in text.lines() {
        let parsed: ExportLine = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);
    }
    let key = test.vault.checkpoint_public_key().unwrap();
    assert!(
        verify_export(
            text.as_bytes(),
            VerifyOptions {
                public_key: Some(key),
                ..Default::default()
            }
        )
        .unwrap()
        .is_ok()
    );
    // A partial export verifies from its first event, anchored by its checkpoints.
    let mut part = Vec::new();
    export_jsonl(test.vault.log(), 6, 12, &mut part).unwrap();
    let outcome = verify_export(
        part.as_slice(),
        VerifyOptions {
            public_key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(outcome.is_ok(), "{}", outcome.render());
    assert_eq!(outcome.first_seq, Some(6));
    assert_eq!(outcome.verified_through, 12);
}
