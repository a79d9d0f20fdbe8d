//! Key layout of the `events` tree (see docs/decisions/0003-log-storage-layout.md).
//!
//! Everything written by a group commit lives in ONE tree so that a single `apply_batch` makes
//! events, stream versions, idempotency records and the head record atomic together.

use crate::{Committed, Hash, Seq};

/// `e` + first seq of a group (u64 big-endian) -> the group's block of envelopes (see
/// `block.rs`); in logs written before blocks, `e` + seq -> one bincode envelope.
pub(crate) const EVENT_PREFIX: u8 = b'e';
/// `s` + stream id (UTF-8) -> version (u64 big-endian): an index, complete through the seq
/// under [`STREAMS_THROUGH_KEY`]; later versions are read back from the events at open.
pub(crate) const STREAM_PREFIX: u8 = b's';
/// `v` -> the seq (u64 big-endian) through which the stream index is complete.
pub(crate) const STREAMS_THROUGH_KEY: &[u8] = b"v";
/// `i` + request id (16 bytes) -> first seq, last seq (u64 big-endian each).
pub(crate) const IDEMPOTENCY_PREFIX: u8 = b'i';
/// `h` -> last committed seq (u64 big-endian) + its hash.
pub(crate) const HEAD_KEY: &[u8] = b"h";

pub(crate) type EventKey = [u8; 9];

pub(crate) fn event_key(seq: Seq) -> EventKey {
    let mut key = [0; 9];
    key[0] = EVENT_PREFIX;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn seq_of_event_key(key: &[u8]) -> Option<Seq> {
    match key {
        [EVENT_PREFIX, rest @ ..] => Some(Seq::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

pub(crate) fn stream_key(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + stream.len());
    key.push(STREAM_PREFIX);
    key.extend_from_slice(stream.as_bytes());
    key
}

pub(crate) fn idempotency_key(request_id: &[u8; 16]) -> [u8; 17] {
    let mut key = [0; 17];
    key[0] = IDEMPOTENCY_PREFIX;
    key[1..].copy_from_slice(request_id);
    key
}

pub(crate) fn encode_committed(committed: &Committed) -> [u8; 16] {
    let mut value = [0; 16];
    value[..8].copy_from_slice(&committed.first_seq.to_be_bytes());
    value[8..].copy_from_slice(&committed.last_seq.to_be_bytes());
    value
}

pub(crate) fn decode_committed(value: &[u8]) -> Option<Committed> {
    let value: &[u8; 16] = value.try_into().ok()?;
    let (first, last) = value.split_at(8);
    Some(Committed {
        first_seq: Seq::from_be_bytes(first.try_into().ok()?),
        last_seq: Seq::from_be_bytes(last.try_into().ok()?),
        duplicate: false,
    })
}

pub(crate) fn decode_version(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

pub(crate) fn encode_head(seq: Seq, hash: &Hash) -> [u8; 40] {
    let mut value = [0; 40];
    value[..8].copy_from_slice(&seq.to_be_bytes());
    value[8..].copy_from_slice(hash);
    value
}

pub(crate) fn decode_head(value: &[u8]) -> Option<(Seq, Hash)> {
    let value: &[u8; 40] = value.try_into().ok()?;
    let (seq, hash) = value.split_at(8);
    Some((
        Seq::from_be_bytes(seq.try_into().ok()?),
        hash.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_numerically_and_round_trip() {
        let seqs = [1u64, 2, 255, 256, 65_535, 65_536, u64::MAX];
        for pair in seqs.windows(2) {
            assert!(event_key(pair[0]) < event_key(pair[1]));
        }
        for seq in seqs {
            assert_eq!(seq_of_event_key(&event_key(seq)), Some(seq));
        }
        assert_eq!(seq_of_event_key(b"s12345678"), None);
        assert_eq!(seq_of_event_key(b"e1234"), None);
    }

    #[test]
    fn records_round_trip() {
        let committed = Committed {
            first_seq: 7,
            last_seq: 9,
            duplicate: false,
        };
        assert_eq!(
            decode_committed(&encode_committed(&committed)),
            Some(committed)
        );
        assert_eq!(decode_head(&encode_head(5, &[3; 32])), Some((5, [3; 32])));
        assert_eq!(decode_version(&9u64.to_be_bytes()), Some(9));
        assert_eq!(decode_version(b"short"), None);
    }
}
