//! Blocks: the stored value of one group commit (see docs/decisions/0007-one-block-per-group.md).
//!
//! A group's events are stored as ONE sled value under `e` + the group's first seq:
//! `BLOCK_MARKER`, then for each envelope its length (u32 little-endian) and its bytes, exactly
//! as [`crate::Envelope::to_bytes`] encodes it (so each event's hash still covers its stored
//! bytes). sled's cost is per value, not per byte: one value per group instead of one per event
//! is what lets appends and replay keep up with a plain sled loop.
//!
//! Every stored event value is a block: one that does not start with the marker is damaged.

use std::ops::Range;

use crate::Seq;

pub(crate) const BLOCK_MARKER: u8 = 0xFF;
const LENGTH_BYTES: usize = 4;

/// Encodes the stored envelopes of one group.
pub(crate) fn encode_block<'a>(envelopes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let envelopes: Vec<&[u8]> = envelopes.into_iter().collect();
    let total = envelopes
        .iter()
        .map(|e| e.len() + LENGTH_BYTES)
        .sum::<usize>();
    let mut block = Vec::with_capacity(1 + total);
    block.push(BLOCK_MARKER);
    for envelope in envelopes {
        // Envelopes are at most MAX_ENVELOPE_BYTES, far below u32::MAX.
        block.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
        block.extend_from_slice(envelope);
    }
    block
}

/// The stored envelopes of a value, in order. Yields `Err(())` once, and then nothing, if the
/// value's framing is damaged.
pub(crate) fn stored_envelopes(value: &[u8]) -> StoredEnvelopes<'_> {
    StoredEnvelopes { value, offset: 0 }
}

/// Walks a stored value; `offset` is where the next envelope's framing starts, so a reader can
/// keep it and resume without walking the value again.
#[derive(Clone)]
pub(crate) struct StoredEnvelopes<'a> {
    value: &'a [u8],
    offset: usize,
}

impl<'a> StoredEnvelopes<'a> {
    pub(crate) fn resume(value: &'a [u8], offset: usize) -> StoredEnvelopes<'a> {
        StoredEnvelopes { value, offset }
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }
}

/// The stored envelopes of the value under `first`, each with the seq its place gives it.
pub(crate) fn numbered(first: Seq, value: &[u8]) -> impl Iterator<Item = (Seq, Result<&[u8], ()>)> {
    stored_envelopes(value)
        .enumerate()
        .map(move |(index, stored)| (first + index as Seq, stored))
}

impl StoredEnvelopes<'_> {
    /// Where in the value the next envelope's bytes are.
    pub(crate) fn next_range(&mut self) -> Option<Result<Range<usize>, ()>> {
        let value = self.value;
        if self.offset == 0 {
            match value.first() {
                None => return None,
                Some(&BLOCK_MARKER) => self.offset = 1,
                Some(_) => {
                    self.offset = value.len();
                    return Some(Err(()));
                }
            }
        }
        let rest = value.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let length = rest
            .get(..LENGTH_BYTES)
            .and_then(|length| <[u8; LENGTH_BYTES]>::try_from(length).ok())
            .map(|length| u32::from_le_bytes(length) as usize)
            .filter(|length| *length > 0 && LENGTH_BYTES + length <= rest.len());
        match length {
            Some(length) => {
                let start = self.offset + LENGTH_BYTES;
                self.offset = start + length;
                Some(Ok(start..self.offset))
            }
            None => {
                self.offset = value.len();
                Some(Err(()))
            }
        }
    }
}

impl<'a> Iterator for StoredEnvelopes<'a> {
    type Item = Result<&'a [u8], ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let value = self.value;
        Some(self.next_range()?.map(|range| &value[range]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_damage_is_reported() {
        let envelopes: [&[u8]; 3] = [b"one", b"two!", b"3"];
        let block = encode_block(envelopes);
        let read: Vec<_> = stored_envelopes(&block).collect();
        assert_eq!(read, vec![Ok(&b"one"[..]), Ok(&b"two!"[..]), Ok(&b"3"[..])]);

        // A value without the block marker (no layout ever stored one): unreadable.
        let read: Vec<_> = stored_envelopes(b"\x05bare").collect();
        assert_eq!(read, vec![Err(())]);

        // A length running past the end, or a zero length: the rest is unreadable.
        let mut cut = block.clone();
        cut.truncate(block.len() - 1);
        let read: Vec<_> = stored_envelopes(&cut).collect();
        assert_eq!(read, vec![Ok(&b"one"[..]), Ok(&b"two!"[..]), Err(())]);
        let read: Vec<_> = stored_envelopes(&[BLOCK_MARKER, 0, 0, 0, 0]).collect();
        assert_eq!(read, vec![Err(())]);
    }
}
