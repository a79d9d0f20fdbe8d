//! Damage done to the stored events behind the log's back is found at the right seq.

use std::collections::BTreeMap;
use std::path::Path;

use keyledger_log::{BadEvent, BadReason, ExpectedVersion, NewEvent};
use proptest::prelude::*;

use crate::support::{batch, fast_config, open_with};

/// Edits the stored envelopes by seq behind the log's back, as someone with write access to
/// the files could.
fn tamper(dir: &Path, change: impl FnOnce(&mut BTreeMap<u64, Vec<u8>>)) {
    let db = sled::open(dir).expect("open sled");
    let events = db.open_tree("events").expect("events tree");
    keyledger_log::raw::rewrite_events(&events, change).expect("rewrite");
    db.flush().expect("flush");
}

fn first_bad(dir: &Path) -> (Option<BadEvent>, u64) {
    let (log, _) = open_with(fast_config(dir));
    let report = log.verify().expect("verify");
    (report.first_bad, report.verified_through)
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR a byte of an event's stored value (index into the value, wrapped).
    FlipByte {
        event: usize,
        offset: usize,
        mask: u8,
    },
    Drop {
        event: usize,
    },
    SwapWithNext {
        event: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 1..=255u8).prop_map(|(event, offset, mask)| {
            Damage::FlipByte {
                event,
                offset,
                mask,
            }
        }),
        any::<usize>().prop_map(|event| Damage::Drop { event }),
        any::<usize>().prop_map(|event| Damage::SwapWithNext { event }),
    ]
}

/// Batches of (stream index, body) events.
fn batches() -> impl Strategy<Value = Vec<Vec<(u8, Vec<u8>)>>> {
    prop::collection::vec(
        prop::collection::vec((0..4u8, prop::collection::vec(any::<u8>(), 0..200)), 1..5),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn damage_is_found_at_the_first_damaged_seq(batches in batches(), damage in damage()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = open_with(fast_config(dir.path()));
        for events in &batches {
            let events = events
                .iter()
                .map(|(stream, body)| NewEvent {
                    stream: format!("stream-{stream}"),
                    expected: ExpectedVersion::Any,
                    body: body.clone(),
                })
                .collect();
            log.append_blocking(batch(events)).expect("append");
        }
        let count = batches.iter().map(Vec::len).sum::<usize>() as u64;
        let report = log.verify().expect("verify");
        prop_assert_eq!(report.verified_through, count);
        prop_assert_eq!(report.first_bad, None);
        log.close();

        let expected_seq = match damage {
            Damage::FlipByte { event, offset, mask } => {
                let seq = event as u64 % count + 1;
                tamper(dir.path(), |events| {
                    let value = events.get_mut(&seq).expect("stored");
                    let at = offset % value.len();
                    value[at] ^= mask;
                });
                seq
            }
            Damage::Drop { event } => {
                let seq = event as u64 % count + 1;
                tamper(dir.path(), |events| {
                    events.remove(&seq).expect("stored");
                });
                seq
            }
            Damage::SwapWithNext { event } => {
                if count < 2 {
                    return Ok(());
                }
                let seq = event as u64 % (count - 1) + 1;
                tamper(dir.path(), |events| {
                    let a = events.remove(&seq).expect("stored");
                    let b = events.remove(&(seq + 1)).expect("stored");
                    events.insert(seq, b);
                    events.insert(seq + 1, a);
                });
                seq
            }
        };

        let (bad, verified_through) = first_bad(dir.path());
        let bad = bad.expect("damage detected");
        prop_assert_eq!(bad.seq, expected_seq, "{:?} reported {:?}", damage, bad);
        prop_assert_eq!(verified_through, expected_seq - 1);
        match damage {
            Damage::Drop { .. } if expected_seq == count => {
                prop_assert_eq!(bad.reason, BadReason::Truncated { recorded_head: count });
            }
            Damage::Drop { .. } => {
                prop_assert_eq!(bad.reason, BadReason::Gap { expected: expected_seq, found: expected_seq + 1 });
            }
            Damage::SwapWithNext { .. } => prop_assert_eq!(bad.reason, BadReason::SeqMismatch),
            Damage::FlipByte { .. } => prop_assert!(matches!(
                bad.reason,
                BadReason::HashMismatch | BadReason::BrokenLink | BadReason::Undecodable | BadReason::SeqMismatch
            )),
        }
    }
}

#[test]
fn a_dropped_tail_event_is_reported_as_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open_with(fast_config(dir.path()));
    for i in 0..3u8 {
        log.append_blocking(batch(vec![NewEvent {
            stream: "s".into(),
            expected: ExpectedVersion::Any,
            body: vec![i],
        }]))
        .expect("append");
    }
    let head = log.head();
    log.close();
    tamper(dir.path(), |events| {
        events.remove(&3).expect("stored");
    });
    let (log, _) = open_with(fast_config(dir.path()));
    // The head record written with every group still says 3.
    assert_eq!(log.head(), head);
    let report = log.verify().expect("verify");
    assert_eq!(
        report.first_bad,
        Some(BadEvent {
            seq: 3,
            reason: BadReason::Truncated { recorded_head: 3 }
        })
    );
    assert_eq!(log.get(3).expect("get"), None);
}
