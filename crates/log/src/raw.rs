//! The stored events as raw bytes, whatever blocks hold them: for tamper tests and forensic
//! tools, i.e. what someone with write access to the files can read and change. The log itself
//! never goes through here.

use std::collections::BTreeMap;

use crate::block::{encode_block, numbered, stored_envelopes};
use crate::keys::{EVENT_PREFIX, event_key, seq_of_event_key};
use crate::{LogError, Seq, damaged_block};

/// Every stored envelope's bytes, by seq.
pub fn stored_events(events: &sled::Tree) -> Result<BTreeMap<Seq, Vec<u8>>, LogError> {
    let mut stored = BTreeMap::new();
    for item in events.scan_prefix([EVENT_PREFIX]) {
        let (key, value) = item?;
        for (seq, envelope) in numbered(seq_of_event_key(&key).unwrap_or(0), &value) {
            stored.insert(seq, envelope.map_err(|()| damaged_block(seq))?.to_vec());
        }
    }
    Ok(stored)
}

/// Lets `change` edit the stored envelopes by seq, then stores the result back, each envelope
/// in a block of its own under the seq it is mapped to (a changed seq is not re-encoded).
pub fn rewrite_events(
    events: &sled::Tree,
    change: impl FnOnce(&mut BTreeMap<Seq, Vec<u8>>),
) -> Result<(), LogError> {
    let mut stored = stored_events(events)?;
    change(&mut stored);
    let mut batch = sled::Batch::default();
    for key in events.scan_prefix([EVENT_PREFIX]).keys() {
        batch.remove(key?);
    }
    for (seq, envelope) in &stored {
        batch.insert(&event_key(*seq), encode_block([envelope.as_slice()]));
    }
    events.apply_batch(batch)?;
    Ok(())
}

/// Counts the stored envelopes by walking the blocks' framing, decoding nothing: the floor
/// under any read of the whole log (what the replay benchmark compares against).
pub fn count_stored_events(events: &sled::Tree) -> Result<u64, LogError> {
    let mut count = 0u64;
    for item in events.scan_prefix([EVENT_PREFIX]) {
        let (_, value) = item?;
        count += stored_envelopes(&value).count() as u64;
    }
    Ok(count)
}
