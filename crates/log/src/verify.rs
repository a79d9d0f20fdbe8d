//! Hash-chain verification, over the stored log or over any sequence of envelopes.

use std::fmt;

use crate::block::numbered;
use crate::envelope::{Envelope, compute_hash, hash_of_stored};
use crate::keys::{event_key, seq_of_event_key};
use crate::{Hash, LogError, Seq};

/// Outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Last seq whose envelope and link checked out (the seq before the walk's start if none).
    pub verified_through: Seq,
    /// Hash of the envelope at `verified_through` (the starting prev hash if none).
    pub head_hash: Hash,
    /// The first damaged seq, if any; nothing after it was checked.
    pub first_bad: Option<BadEvent>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEvent {
    pub seq: Seq,
    pub reason: BadReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReason {
    /// The envelope's hash is not the hash of its content.
    HashMismatch,
    /// `prev_hash` is not the previous envelope's hash.
    BrokenLink,
    /// The next envelope found is not the expected seq.
    Gap { expected: Seq, found: Seq },
    /// The stored bytes are not an envelope.
    Undecodable,
    /// The envelope stored under this seq claims another seq.
    SeqMismatch,
    /// The log's recorded head is beyond the last stored envelope: events at the tail are gone.
    Truncated { recorded_head: Seq },
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::HashMismatch => f.write_str("content does not match its hash"),
            BadReason::BrokenLink => f.write_str("prev_hash does not match the previous event"),
            BadReason::Gap { expected, found } => {
                write!(f, "missing events: expected seq {expected}, found {found}")
            }
            BadReason::Undecodable => f.write_str("stored bytes cannot be decoded"),
            BadReason::SeqMismatch => f.write_str("envelope stored under another seq"),
            BadReason::Truncated { recorded_head } => {
                write!(f, "events missing up to the recorded head {recorded_head}")
            }
        }
    }
}

impl fmt::Display for BadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.reason)
    }
}

/// Verifies an exported sequence: contiguous seqs starting at the first envelope's seq, each
/// hash recomputed, each `prev_hash` linked (the first to `start_prev_hash`).
pub fn verify_envelopes(
    envelopes: impl IntoIterator<Item = Envelope>,
    start_prev_hash: Hash,
) -> VerifyReport {
    let mut walk: Option<ChainWalk> = None;
    for env in envelopes {
        let walk = walk.get_or_insert_with(|| ChainWalk::new(env.seq, start_prev_hash));
        if walk.expected != env.seq {
            return walk.fail(BadReason::Gap {
                expected: walk.expected,
                found: env.seq,
            });
        }
        let actual_hash = compute_hash(&env);
        if let Err(reason) = walk.check_links(&env, &actual_hash) {
            return walk.fail(reason);
        }
    }
    match walk {
        Some(walk) => walk.finish(),
        None => VerifyReport {
            verified_through: 0,
            head_hash: start_prev_hash,
            first_bad: None,
        },
    }
}

/// Walks the stored events `from..=min(to, head)`; the first must link to `prev_hash`.
pub(crate) fn verify_stored(
    events: &sled::Tree,
    from: Seq,
    to: Seq,
    prev_hash: Hash,
    head: Seq,
) -> Result<VerifyReport, LogError> {
    let from = from.max(1);
    let end = to.min(head);
    let mut walk = ChainWalk::new(from, prev_hash);
    if from > end {
        return Ok(walk.finish());
    }
    // The block holding `from` may start before it; its earlier events are not checked.
    let start = crate::block_holding(events, from).unwrap_or(from);
    for item in events.range(event_key(start)..=event_key(end)) {
        let (key, value) = item?;
        let Some(first) = seq_of_event_key(&key) else {
            continue;
        };
        if first > walk.expected {
            return Ok(walk.fail(BadReason::Gap {
                expected: walk.expected,
                found: first,
            }));
        }
        if first < walk.expected && first != start {
            // A block overlapping the one before it: events stored twice.
            return Ok(walk.fail(BadReason::SeqMismatch));
        }
        for (seq, stored) in numbered(first, &value) {
            if seq < walk.expected {
                continue;
            }
            if seq > end {
                break;
            }
            let Ok(stored) = stored else {
                return Ok(walk.fail(BadReason::Undecodable));
            };
            let Ok(env) = Envelope::from_bytes(stored) else {
                return Ok(walk.fail(BadReason::Undecodable));
            };
            if env.seq != seq {
                return Ok(walk.fail(BadReason::SeqMismatch));
            }
            // Hash the stored bytes themselves, so even a non-canonical re-encoding is caught.
            let Some(actual_hash) = hash_of_stored(&env.prev_hash, stored) else {
                return Ok(walk.fail(BadReason::Undecodable));
            };
            if let Err(reason) = walk.check_links(&env, &actual_hash) {
                return Ok(walk.fail(reason));
            }
        }
    }
    if walk.expected <= end {
        // Events are missing between the last one found and `end`.
        let next_stored = events
            .range(event_key(walk.expected)..=event_key(Seq::MAX))
            .keys()
            .next()
            .transpose()?
            .and_then(|key| seq_of_event_key(&key))
            .filter(|seq| *seq <= head);
        let reason = match next_stored {
            Some(found) => BadReason::Gap {
                expected: walk.expected,
                found,
            },
            None => BadReason::Truncated {
                recorded_head: head,
            },
        };
        return Ok(walk.fail(reason));
    }
    Ok(walk.finish())
}

struct ChainWalk {
    expected: Seq,
    prev_hash: Hash,
}

impl ChainWalk {
    fn new(first: Seq, prev_hash: Hash) -> ChainWalk {
        ChainWalk {
            expected: first,
            prev_hash,
        }
    }

    /// Checks `env` (at the expected seq) against its recomputed hash and the previous hash,
    /// and advances on success.
    fn check_links(&mut self, env: &Envelope, actual_hash: &Hash) -> Result<(), BadReason> {
        if *actual_hash != env.hash {
            return Err(BadReason::HashMismatch);
        }
        if env.prev_hash != self.prev_hash {
            return Err(BadReason::BrokenLink);
        }
        self.prev_hash = env.hash;
        self.expected += 1;
        Ok(())
    }

    fn fail(&self, reason: BadReason) -> VerifyReport {
        VerifyReport {
            verified_through: self.expected.saturating_sub(1),
            head_hash: self.prev_hash,
            first_bad: Some(BadEvent {
                seq: self.expected,
                reason,
            }),
        }
    }

    fn finish(&self) -> VerifyReport {
        VerifyReport {
            verified_through: self.expected.saturating_sub(1),
            head_hash: self.prev_hash,
            first_bad: None,
        }
    }
}
