//! The in-memory read model: the domain state plus the stream versions that optimistic
//! concurrency needs, advanced only in sequence order.

use std::collections::HashMap;

use keyledger_domain::{Event, State};
use keyledger_log::{Envelope, EventLog, Hash};

use crate::VaultError;

#[derive(Debug, Default)]
pub struct Projection {
    pub state: State,
    pub versions: HashMap<String, u64>,
    pub applied_seq: u64,
    pub applied_hash: Hash,
    /// Set when an event could not be decoded; the vault then refuses to serve as healthy.
    pub broken: Option<String>,
}

const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// The log's body for a domain event.
pub fn encode_event(event: &Event) -> Vec<u8> {
    // Encoding an owned, fully-typed value into a Vec cannot fail.
    bincode::serde::encode_to_vec(event, BINCODE).unwrap_or_default()
}

pub fn decode_event(body: &[u8]) -> Result<Event, String> {
    bincode::serde::decode_from_slice(body, BINCODE)
        .map(|(event, _)| event)
        .map_err(|err| err.to_string())
}

impl Projection {
    /// Applies committed envelopes; ones already applied are skipped.
    pub fn apply_envelopes(&mut self, envelopes: &[Envelope]) {
        for envelope in envelopes {
            self.apply_envelope(
                envelope.seq,
                &envelope.stream,
                envelope.version,
                &envelope.body,
                envelope.hash,
            );
        }
    }

    fn apply_envelope(&mut self, seq: u64, stream: &str, version: u64, body: &[u8], hash: Hash) {
        if seq <= self.applied_seq {
            return;
        }
        match decode_event(body) {
            Ok(event) => self.state.apply_owned(event),
            Err(err) => {
                tracing::error!(seq, error = %err, "an event in the log cannot be decoded");
                self.broken
                    .get_or_insert_with(|| format!("event {seq} cannot be decoded: {err}"));
            }
        }
        match self.versions.get_mut(stream) {
            Some(current) => *current = version,
            None => {
                self.versions.insert(stream.to_owned(), version);
            }
        }
        self.applied_seq = seq;
        self.applied_hash = hash;
    }

    /// Folds every event after `applied_seq` into the state.
    pub fn replay(&mut self, log: &EventLog) -> Result<u64, VaultError> {
        let mut count = 0;
        for envelope in log.read_from(self.applied_seq + 1) {
            let envelope = envelope?;
            self.apply_envelope(
                envelope.seq,
                &envelope.stream,
                envelope.version,
                &envelope.body,
                envelope.hash,
            );
            count += 1;
        }
        Ok(count)
    }
}
