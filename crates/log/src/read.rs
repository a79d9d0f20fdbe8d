//! Reading committed events: an iterator over the stored blocks, from any seq.

use std::fmt;
use std::sync::Arc;

use crate::block::StoredEnvelopes;
use crate::keys::{event_key, seq_of_event_key};
use crate::stores::Database;
use crate::{Envelope, EnvelopeView, LogError, Seq};

/// Iterator over committed envelopes; holds the database open while it lives.
pub struct EventIter {
    blocks: Option<sled::Iter>,
    current: Option<CurrentBlock>,
    from: Seq,
    end: Seq,
    /// Reported once, instead of any event (the database could not be read).
    failure: Option<LogError>,
    /// Keeps the database it reads open (also across a reopen after a storage failure).
    _database: Option<Arc<Database>>,
}

impl EventIter {
    /// The stored events `from..=end` (`end` is not capped here).
    pub(crate) fn new(from: Seq, end: Seq, database: Arc<Database>) -> EventIter {
        let from = from.max(1);
        let blocks = (from <= end).then(|| {
            // The block holding `from` may start before it.
            let start = block_holding(&database.events, from).unwrap_or(from);
            database.events.range(event_key(start)..=event_key(end))
        });
        EventIter {
            blocks,
            current: None,
            from,
            end,
            failure: None,
            _database: Some(database),
        }
    }

    /// An iterator that yields `error` and ends.
    pub(crate) fn failed(error: LogError) -> EventIter {
        EventIter {
            blocks: None,
            current: None,
            from: 1,
            end: 0,
            failure: Some(error),
            _database: None,
        }
    }

    /// The next stored envelope in range, as its seq and raw bytes.
    fn next_stored(&mut self) -> Option<Result<(Seq, &[u8]), LogError>> {
        if let Some(error) = self.failure.take() {
            return Some(Err(error));
        }
        loop {
            if let Some(block) = &mut self.current {
                let mut envelopes = StoredEnvelopes::resume(&block.value, block.offset);
                let seq = block.next_seq;
                match envelopes.next_range() {
                    None => self.current = None,
                    Some(Err(())) => {
                        self.stop();
                        return Some(Err(damaged_block(seq)));
                    }
                    Some(Ok(_)) if seq > self.end => {
                        self.stop();
                        return None;
                    }
                    Some(Ok(range)) => {
                        block.offset = envelopes.offset();
                        block.next_seq += 1;
                        if seq >= self.from {
                            let block = self.current.as_ref()?;
                            return Some(Ok((seq, &block.value[range])));
                        }
                    }
                }
                continue;
            }
            match self.blocks.as_mut()?.next()? {
                Ok((key, value)) => {
                    self.current = Some(CurrentBlock {
                        next_seq: seq_of_event_key(&key).unwrap_or(0),
                        value,
                        offset: 0,
                    });
                }
                Err(error) => {
                    self.stop();
                    return Some(Err(error.into()));
                }
            }
        }
    }

    /// The next envelope, decoded in place (nothing allocated): for readers of the whole log.
    pub fn next_view(&mut self) -> Option<Result<EnvelopeView<'_>, LogError>> {
        Some(self.next_stored()?.and_then(|(seq, stored)| {
            EnvelopeView::from_bytes(stored).map_err(|error| LogError::Decode {
                seq,
                reason: error.reason,
            })
        }))
    }

    fn stop(&mut self) {
        self.blocks = None;
        self.current = None;
    }
}

/// The block an [`EventIter`] is reading.
struct CurrentBlock {
    /// The seq of the next envelope in it.
    next_seq: Seq,
    value: sled::IVec,
    /// Where the next envelope's framing starts.
    offset: usize,
}

impl Iterator for EventIter {
    type Item = Result<Envelope, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.next_stored()?
                .and_then(|(seq, stored)| decode_stored(seq, stored)),
        )
    }
}

impl fmt::Debug for EventIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventIter").finish_non_exhaustive()
    }
}

pub(crate) fn decode_stored(seq: Seq, value: &[u8]) -> Result<Envelope, LogError> {
    Envelope::from_bytes(value).map_err(|error| LogError::Decode {
        seq,
        reason: error.reason,
    })
}

/// The first seq of the block that holds `seq` (the last block starting at or before it).
pub(crate) fn block_holding(events: &sled::Tree, seq: Seq) -> Option<Seq> {
    events
        .range(event_key(0)..=event_key(seq))
        .keys()
        .next_back()
        .and_then(Result::ok)
        .and_then(|key| seq_of_event_key(&key))
}

pub(crate) fn damaged_block(seq: Seq) -> LogError {
    LogError::Decode {
        seq,
        reason: "the stored block's framing is damaged".to_owned(),
    }
}
