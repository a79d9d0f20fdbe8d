//! Tampering with an export or a copied data directory is found at the right seq, for the right
//! reason: a changed byte, a removed event, two swapped events, edited public fields, a moved
//! checkpoint, a forged signature, a checkpoint re-signed with another key.

use base64::Engine;
use keyledger_audit::export_jsonl;
use keyledger_audit::verify::{
    Head, ProblemKind, SignerSource, VerifyOptions, verify_data_dir, verify_export,
};
use keyledger_log::Checkpoint;
use serde_json::Value;

use crate::support::*;

/// A history of ~30 events with checkpoints at seq 10 and 20, exported, and the vault's key.
async fn exported() -> (Vec<String>, [u8; 32], TestVault) {
    let test = vault().await;
    for n in 0..12 {
        test.create_key(dev(), &format!("k{n}"), 30).await;
        if n == 3 || n == 8 {
            let (head, _) = test.vault.log().head();
            let checkpoint = test.vault.checkpoint_now().unwrap();
            assert_eq!(checkpoint.seq, head);
        }
    }
    let mut out = Vec::new();
    export_jsonl(test.vault.log(), 1, u64::MAX, &mut out).unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let key = test.vault.checkpoint_public_key().unwrap();
    (lines, key, test)
}

fn check(lines: &[String], key: Option<[u8; 32]>, expect: Option<(u64, ProblemKind)>) {
    let text = lines.join("\n");
    let outcome = verify_export(
        text.as_bytes(),
        VerifyOptions {
            public_key: key,
            ..Default::default()
        },
    )
    .unwrap();
    let got = outcome.problem.clone().map(|p| (p.seq, p.kind));
    assert_eq!(got, expect, "{}", outcome.render());
}

fn line_of(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            value.get("checkpoint").is_none() && value["seq"] == seq
        })
        .unwrap()
}

fn checkpoint_lines(lines: &[String]) -> Vec<usize> {
    (0..lines.len())
        .filter(|i| lines[*i].starts_with("{\"checkpoint\""))
        .collect()
}

fn edit(line: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_str(line).unwrap();
    f(&mut value);
    serde_json::to_string(&value).unwrap()
}

#[tokio::test]
async fn an_untouched_export_verifies_with_its_checkpoints() {
    let (lines, key, test) = exported().await;
    let head = test.vault.log().head().0;
    let outcome = verify_export(
        lines.join("\n").as_bytes(),
        VerifyOptions {
            public_key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(outcome.is_ok(), "{}", outcome.render());
    assert_eq!(outcome.verified_through, head);
    assert_eq!(outcome.events, head);
    assert_eq!(outcome.checkpoints_verified, 2);
    assert_eq!(outcome.signer_source, SignerSource::Pinned);
    assert!(outcome.render().contains("follow the last checkpoint"));
    // No secret is in the export; key hashes and ciphertext are only inside `body`.
    let text = lines.join("\n");
    for forbidden in ["secret_hash", "sealed", "ciphertext", "nonce", AWS_SECRET] {
        assert!(!text.contains(forbidden), "{forbidden}");
    }
    // Unpinned, the first checkpoint's key is taken and reported as not pinned.
    let outcome = verify_export(text.as_bytes(), VerifyOptions::default()).unwrap();
    assert!(outcome.is_ok());
    assert_eq!(outcome.signer_source, SignerSource::FirstCheckpoint);
    assert!(outcome.render().contains("NOT pinned"));
}

#[tokio::test]
async fn each_kind_of_tampering_with_an_export_is_found_where_it_happened() {
    let (lines, key, _test) = exported().await;
    let pinned = Some(key);
    check(&lines, pinned, None);

    // One byte of an event's body flipped.
    let mut tampered = lines.clone();
    let at = line_of(&tampered, 7);
    tampered[at] = edit(&tampered[at], |v| {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut body = engine.decode(v["body"].as_str().unwrap()).unwrap();
        let last = body.len() - 1;
        body[last] ^= 0x01;
        v["body"] = Value::String(engine.encode(body));
    });
    check(&tampered, pinned, Some((7, ProblemKind::Tampered)));

    // One byte of a hashed envelope field flipped, straight in the text.
    let mut tampered = lines.clone();
    let at = line_of(&tampered, 9);
    tampered[at] = tampered[at].replacen("\"actor\":\"user:dev\"", "\"actor\":\"user:deu\"", 1);
    check(&tampered, pinned, Some((9, ProblemKind::Tampered)));

    // The public fields edited while the body is left alone.
    let mut tampered = lines.clone();
    let at = line_of(&tampered, 8);
    tampered[at] = edit(&tampered[at], |v| {
        v["data"]["name"] = Value::from("innocent")
    });
    check(
        &tampered,
        pinned,
        Some((8, ProblemKind::PublicFieldsAltered)),
    );

    // One event removed.
    let mut tampered = lines.clone();
    tampered.remove(line_of(&tampered, 5));
    check(
        &tampered,
        pinned,
        Some((
            5,
            ProblemKind::Missing {
                expected: 5,
                found: 6,
            },
        )),
    );

    // Two events swapped.
    let mut tampered = lines.clone();
    let at = line_of(&tampered, 12);
    tampered.swap(at, at + 1);
    check(
        &tampered,
        pinned,
        Some((
            12,
            ProblemKind::Reordered {
                expected: 12,
                found: 13,
            },
        )),
    );

    // An event replaced by one with a correct hash but another predecessor.
    let mut tampered = lines.clone();
    let at = line_of(&tampered, 4);
    let forged = keyledger_audit::ExportedEvent::from_envelope(&{
        let mut envelope = serde_json::from_str::<keyledger_audit::ExportedEvent>(&tampered[at])
            .unwrap()
            .to_envelope()
            .unwrap();
        envelope.prev_hash = [9; 32];
        envelope.hash = keyledger_log::compute_hash(&envelope);
        envelope
    });
    tampered[at] = serde_json::to_string(&forged).unwrap();
    check(&tampered, pinned, Some((4, ProblemKind::BrokenLink)));

    let checkpoints = checkpoint_lines(&lines);
    let first: keyledger_audit::CheckpointRecord = serde_json::from_value(
        serde_json::from_str::<Value>(&lines[checkpoints[0]]).unwrap()["checkpoint"].clone(),
    )
    .unwrap();

    // A checkpoint's signature flipped.
    let mut tampered = lines.clone();
    tampered[checkpoints[0]] = edit(&tampered[checkpoints[0]], |v| {
        let signature = v["checkpoint"]["signature"].as_str().unwrap().to_owned();
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        v["checkpoint"]["signature"] = Value::String(format!("{flipped}{}", &signature[1..]));
    });
    check(
        &tampered,
        pinned,
        Some((first.seq, ProblemKind::BadSignature)),
    );

    // A checkpoint re-signed with another key.
    let other = signing_key();
    let resigned = Checkpoint::sign(first.seq, first.to_checkpoint().unwrap().hash, &other);
    let mut tampered = lines.clone();
    tampered[checkpoints[0]] = serde_json::to_string(&keyledger_audit::ExportLine::Checkpoint {
        checkpoint: keyledger_audit::CheckpointRecord::from_checkpoint(&resigned),
    })
    .unwrap();
    let expected = ProblemKind::UnexpectedSigner {
        found: keyledger_domain::public::hex(&resigned.public_key),
        expected: keyledger_domain::public::hex(&key),
    };
    check(&tampered, pinned, Some((first.seq, expected)));
    // Unpinned, it is the second checkpoint that disagrees with the first.
    let second_seq =
        serde_json::from_str::<Value>(&lines[checkpoints[1]]).unwrap()["checkpoint"]["seq"]
            .as_u64()
            .unwrap();
    let text = tampered.join("\n");
    let outcome = verify_export(text.as_bytes(), VerifyOptions::default()).unwrap();
    let problem = outcome.problem.unwrap();
    assert_eq!(problem.seq, second_seq);
    assert!(matches!(problem.kind, ProblemKind::UnexpectedSigner { .. }));

    // A checkpoint moved after a later event no longer matches the chain there.
    let mut tampered = lines.clone();
    let line = tampered.remove(checkpoints[0]);
    tampered.insert(checkpoints[0] + 1, line);
    check(
        &tampered,
        pinned,
        Some((first.seq, ProblemKind::CheckpointMismatch)),
    );

    // A line that is not JSON.
    let mut tampered = lines.clone();
    let at = line_of(&tampered, 3);
    tampered[at].truncate(20);
    let text = tampered.join("\n");
    let problem = verify_export(
        text.as_bytes(),
        VerifyOptions {
            public_key: pinned,
            ..Default::default()
        },
    )
    .unwrap()
    .problem
    .unwrap();
    assert_eq!(problem.seq, 3);
    assert!(matches!(problem.kind, ProblemKind::Unreadable { .. }));
}

/// The vault closed, its data directory copied, and the copy's checkpoint key.
async fn closed_copy() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    [u8; 32],
    u64,
    Vec<u64>,
) {
    let (lines, key, test) = exported().await;
    drop(lines);
    let head = test.vault.log().head().0;
    let checkpoints = test
        .vault
        .log()
        .checkpoints(1, u64::MAX)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    let (dir, _, _) = test.close();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    (dir, copy, key, head, checkpoints)
}

fn check_dir(dir: &std::path::Path, key: Option<[u8; 32]>, expect: Option<(u64, ProblemKind)>) {
    let outcome = verify_data_dir(
        dir,
        VerifyOptions {
            public_key: key,
            ..Default::default()
        },
    )
    .unwrap();
    let got = outcome.problem.clone().map(|p| (p.seq, p.kind));
    assert_eq!(got, expect, "{}", outcome.render());
}

#[tokio::test]
async fn an_untouched_copy_of_a_data_directory_verifies() {
    let (_dir, copy, key, head, checkpoints) = closed_copy().await;
    let outcome = verify_data_dir(
        copy.path(),
        VerifyOptions {
            public_key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(outcome.is_ok(), "{}", outcome.render());
    assert_eq!(outcome.verified_through, head);
    assert_eq!(outcome.checkpoints_verified, checkpoints.len() as u64);
    // Without a pinned key, the key the directory publishes is used and said to be so.
    let outcome = verify_data_dir(copy.path(), VerifyOptions::default()).unwrap();
    assert!(outcome.is_ok());
    assert_eq!(outcome.signer_source, SignerSource::DataDirectory);
}

#[tokio::test]
async fn a_flipped_byte_in_a_data_directory_is_found() {
    let (_dir, copy, key, _, _) = closed_copy().await;
    tamper_events(copy.path(), |events| {
        let value = events.get_mut(&6).unwrap();
        // The last byte of the body: just before prev_hash and hash.
        let at = value.len() - 65;
        value[at] ^= 0x01;
    });
    check_dir(copy.path(), Some(key), Some((6, ProblemKind::Tampered)));
}

#[tokio::test]
async fn a_removed_event_in_a_data_directory_is_found() {
    let (_dir, copy, key, _, _) = closed_copy().await;
    tamper_events(copy.path(), |events| {
        events.remove(&5).unwrap();
    });
    check_dir(
        copy.path(),
        Some(key),
        Some((
            5,
            ProblemKind::Missing {
                expected: 5,
                found: 6,
            },
        )),
    );
}

#[tokio::test]
async fn swapped_events_in_a_data_directory_are_found() {
    let (_dir, copy, key, _, _) = closed_copy().await;
    tamper_events(copy.path(), |events| {
        let a = events.remove(&11).unwrap();
        let b = events.remove(&12).unwrap();
        events.insert(11, b);
        events.insert(12, a);
    });
    check_dir(
        copy.path(),
        Some(key),
        Some((
            11,
            ProblemKind::Reordered {
                expected: 11,
                found: 12,
            },
        )),
    );
}

#[tokio::test]
async fn a_checkpoint_re_signed_with_another_key_is_found() {
    let (_dir, copy, key, _, checkpoints) = closed_copy().await;
    let other = signing_key();
    let seq = checkpoints[1];
    with_raw_trees(copy.path(), |_, meta| {
        let stored = meta.get(Checkpoint::meta_key(seq)).unwrap().unwrap();
        let original = Checkpoint::from_meta(&Checkpoint::meta_key(seq), &stored).unwrap();
        let forged = Checkpoint::sign(seq, original.hash, &other);
        meta.insert(Checkpoint::meta_key(seq), forged.to_meta_value())
            .unwrap();
    });
    let forged_key = public_key(&other);
    let expected = ProblemKind::UnexpectedSigner {
        found: keyledger_domain::public::hex(&forged_key),
        expected: keyledger_domain::public::hex(&key),
    };
    check_dir(copy.path(), Some(key), Some((seq, expected.clone())));
    // The directory's own published key catches it too...
    check_dir(copy.path(), None, Some((seq, expected)));

    // ...unless the forger also replaces the published key and re-signs every checkpoint: only a
    // key pinned from elsewhere catches that.
    with_raw_trees(copy.path(), |_, meta| {
        for seq in &checkpoints {
            let stored = meta.get(Checkpoint::meta_key(*seq)).unwrap().unwrap();
            let original = Checkpoint::from_meta(&Checkpoint::meta_key(*seq), &stored).unwrap();
            let forged = Checkpoint::sign(*seq, original.hash, &other);
            meta.insert(Checkpoint::meta_key(*seq), forged.to_meta_value())
                .unwrap();
        }
        meta.insert(keyledger_vault::PUBLIC_KEY_META, &forged_key[..])
            .unwrap();
    });
    check_dir(copy.path(), None, None);
    let first = checkpoints[0];
    check_dir(
        copy.path(),
        Some(key),
        Some((
            first,
            ProblemKind::UnexpectedSigner {
                found: keyledger_domain::public::hex(&forged_key),
                expected: keyledger_domain::public::hex(&key),
            },
        )),
    );
}

#[tokio::test]
async fn a_checkpoint_with_a_broken_signature_in_a_data_directory_is_found() {
    let (_dir, copy, key, _, checkpoints) = closed_copy().await;
    let seq = checkpoints[0];
    with_raw_trees(copy.path(), |_, meta| {
        let mut stored = meta
            .get(Checkpoint::meta_key(seq))
            .unwrap()
            .unwrap()
            .to_vec();
        let last = stored.len() - 1;
        stored[last] ^= 0x80;
        meta.insert(Checkpoint::meta_key(seq), stored).unwrap();
    });
    check_dir(
        copy.path(),
        Some(key),
        Some((seq, ProblemKind::BadSignature)),
    );
}

/// An export cut off anywhere — after a whole line, inside one, or with its last events removed
/// and the end record kept — is named as truncated, never OK; so is one written before exports
/// had an end record.
#[tokio::test]
async fn a_truncated_export_is_named_and_not_ok() {
    let (lines, key, test) = exported().await;
    let pinned = Some(key);
    let head = test.vault.log().head().0;
    let end = lines.len() - 1;
    assert!(lines[end].starts_with("{\"end\""), "{}", lines[end]);
    check(&lines, pinned, None);

    // Without the end record (cut after a whole line, or an export of an older version).
    check(
        &lines[..end],
        pinned,
        Some((head + 1, ProblemKind::Unterminated)),
    );
    // The last events cut off too.
    let cut = line_of(&lines, head - 2);
    check(
        &lines[..cut],
        pinned,
        Some((head - 2, ProblemKind::Unterminated)),
    );
    // Cut in the middle of a line: the file ends without a newline inside an event.
    let mut text = lines[..end].join("\n");
    text.truncate(text.len() - 40);
    let outcome = verify_export(text.as_bytes(), VerifyOptions::default()).unwrap();
    let problem = outcome.problem.clone().unwrap();
    assert_eq!(
        problem.kind,
        ProblemKind::CutMidLine { line: end as u64 },
        "{}",
        outcome.render()
    );
    assert!(
        outcome.render().contains("truncated"),
        "{}",
        outcome.render()
    );
    // The last event removed, the end record kept.
    let mut tampered = lines.clone();
    tampered.remove(line_of(&tampered, head));
    let outcome = verify_export(tampered.join("\n").as_bytes(), VerifyOptions::default()).unwrap();
    assert!(
        matches!(
            outcome.problem.as_ref().unwrap().kind,
            ProblemKind::EndMismatch { .. }
        ),
        "{}",
        outcome.render()
    );
    // Something after the end record.
    let mut tampered = lines.clone();
    tampered.push(lines[line_of(&lines, 3)].clone());
    let outcome = verify_export(tampered.join("\n").as_bytes(), VerifyOptions::default()).unwrap();
    assert!(
        matches!(
            outcome.problem.as_ref().unwrap().kind,
            ProblemKind::AfterEnd { .. }
        ),
        "{}",
        outcome.render()
    );
}

/// The report says how many events a signed checkpoint covers and how many are only chained;
/// `require_checkpoint` and `expect_head` turn each gap into a failure.
#[tokio::test]
async fn coverage_by_checkpoints_and_the_expected_head() {
    let (lines, key, test) = exported().await;
    let head = test.vault.log().head().0;
    let checkpoints: Vec<u64> = test
        .vault
        .log()
        .checkpoints(1, u64::MAX)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    let last_checkpoint = *checkpoints.last().unwrap();
    let text = lines.join("\n");
    let verify = |options: VerifyOptions| verify_export(text.as_bytes(), options).unwrap();
    let pinned = VerifyOptions {
        public_key: Some(key),
        ..Default::default()
    };

    let outcome = verify(pinned);
    assert!(outcome.is_ok());
    assert_eq!(outcome.signed_events(), last_checkpoint);
    assert_eq!(outcome.chained_only_events(), head - last_checkpoint);
    let report = outcome.render();
    assert!(
        report.contains(&format!(
            "signed: {last_checkpoint} events (1..={last_checkpoint})"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "chained only: {} events ({}..={head})",
            head - last_checkpoint,
            last_checkpoint + 1
        )),
        "{report}"
    );
    assert!(report.contains("export: complete"), "{report}");

    // The head is not signed: refused when a checkpoint is required.
    let required = verify(VerifyOptions {
        require_checkpoint: true,
        ..pinned
    });
    assert_eq!(
        required.problem.map(|p| (p.seq, p.kind)),
        Some((
            last_checkpoint + 1,
            ProblemKind::NotSigned {
                signed_through: Some(last_checkpoint)
            }
        ))
    );

    // The head as printed is accepted back; another hash or a later seq is not.
    let printed = outcome.head().unwrap().to_string();
    let expect = |text: &str| {
        verify(VerifyOptions {
            expect_head: Some(Head::parse(text).unwrap()),
            ..pinned
        })
        .problem
        .map(|p| p.kind)
    };
    assert_eq!(expect(&printed), None);
    let earlier = format!("{last_checkpoint}:{}", lines_hash(&lines, last_checkpoint));
    assert_eq!(expect(&earlier), None);
    let other_hash = format!("{head}:{}", "ab".repeat(32));
    assert!(matches!(
        expect(&other_hash),
        Some(ProblemKind::HeadMismatch { .. })
    ));
    let later = format!("{}:{}", head + 5, "ab".repeat(32));
    assert_eq!(
        expect(&later),
        Some(ProblemKind::HeadNotReached {
            expected: head + 5,
            reached: head
        })
    );
    assert!(Head::parse("12").is_err() && Head::parse("x:ab").is_err());

    // No checkpoint at all: chained, not signed — said so, and refused when one is required.
    let fresh = vault().await;
    fresh.create_key(dev(), "only", 30).await;
    let mut unsigned = Vec::new();
    keyledger_audit::export_jsonl(fresh.vault.log(), 1, u64::MAX, &mut unsigned).unwrap();
    let text = String::from_utf8(unsigned).unwrap();
    assert!(!text.contains("{\"checkpoint\""), "{text}");
    let outcome = verify_export(text.as_bytes(), VerifyOptions::default()).unwrap();
    assert!(outcome.is_ok(), "{}", outcome.render());
    assert_eq!(outcome.signed_events(), 0);
    assert!(
        outcome.render().starts_with("CHAINED, NOT SIGNED"),
        "{}",
        outcome.render()
    );
    let outcome = verify_export(
        text.as_bytes(),
        VerifyOptions {
            require_checkpoint: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        outcome.problem.map(|p| p.kind),
        Some(ProblemKind::NotSigned {
            signed_through: None
        })
    );
}

/// The chain hash of event `seq` as the export states it.
fn lines_hash(lines: &[String], seq: u64) -> String {
    let value: Value = serde_json::from_str(&lines[line_of(lines, seq)]).unwrap();
    value["hash"].as_str().unwrap().to_owned()
}

/// A data directory is held to the same expectations.
#[tokio::test]
async fn a_data_directory_meets_the_expected_head_and_the_checkpoint_requirement() {
    let (_dir, copy, key, head, checkpoints) = closed_copy().await;
    let options = VerifyOptions {
        public_key: Some(key),
        ..Default::default()
    };
    let outcome = verify_data_dir(copy.path(), options).unwrap();
    assert!(outcome.is_ok(), "{}", outcome.render());
    assert_eq!(outcome.terminated, None);
    let printed = outcome.head().unwrap();
    let with = |options: VerifyOptions| {
        verify_data_dir(copy.path(), options)
            .unwrap()
            .problem
            .map(|p| p.kind)
    };
    assert_eq!(
        with(VerifyOptions {
            expect_head: Some(printed),
            ..options
        }),
        None
    );
    assert_eq!(
        with(VerifyOptions {
            expect_head: Some(Head {
                seq: head + 1,
                hash: printed.hash
            }),
            ..options
        }),
        Some(ProblemKind::HeadNotReached {
            expected: head + 1,
            reached: head
        })
    );
    assert_eq!(
        with(VerifyOptions {
            require_checkpoint: true,
            ..options
        }),
        Some(ProblemKind::NotSigned {
            signed_through: checkpoints.last().copied()
        })
    );
}
