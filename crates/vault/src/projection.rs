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
    // Borrowing: strings are copied once, straight into the ids' shared buffers.
    bincode::serde::borrow_decode_from_slice(body, BINCODE)
        .map(|(event, _)| event)
        .map_err(|err| err.to_string())
}

impl Projection {
    /// Applies committed envelopes; ones already applied are skipped.
    pub fn apply_envelopes(&mut self, envelopes: &[Envelope]) {
        for envelope in envelopes {
            if envelope.seq <= self.applied_seq {
                continue;
            }
            let event = decode_event(&envelope.body);
            self.apply_decoded(
                envelope.seq,
                envelope.stream.clone(),
                envelope.version,
                envelope.hash,
                event,
            );
        }
    }

    fn apply_decoded(
        &mut self,
        seq: u64,
        stream: String,
        version: u64,
        hash: Hash,
        event: Result<Event, String>,
    ) {
        if seq <= self.applied_seq {
            return;
        }
        match event {
            Ok(event) => self.state.apply_owned(event),
            Err(err) => {
                tracing::error!(seq, error = %err, "an event in the log cannot be decoded");
                self.broken
                    .get_or_insert_with(|| format!("event {seq} cannot be decoded: {err}"));
            }
        }
        match self.versions.get_mut(&stream) {
            Some(current) => *current = version,
            None => {
                self.versions.insert(stream, version);
            }
        }
        self.applied_seq = seq;
        self.applied_hash = hash;
    }

    /// Folds every event after `applied_seq` into the state. Reading and decoding run on a
    /// second thread, folding on this one, so start-up uses both cores.
    pub fn replay(&mut self, log: &EventLog) -> Result<u64, VaultError> {
        const CHUNK: usize = 1024;
        type Decoded = (u64, String, u64, Hash, Result<Event, String>);
        let (sender, receiver) =
            std::sync::mpsc::sync_channel::<Result<Vec<Decoded>, VaultError>>(8);
        let events = log.read_from(self.applied_seq + 1);
        let decoder = std::thread::Builder::new()
            .name("keyledger-replay-decoder".into())
            .spawn(move || {
                let mut chunk = Vec::with_capacity(CHUNK);
                for envelope in events {
                    match envelope {
                        Ok(envelope) => {
                            let event = decode_event(&envelope.body);
                            chunk.push((
                                envelope.seq,
                                envelope.stream,
                                envelope.version,
                                envelope.hash,
                                event,
                            ));
                            if chunk.len() == CHUNK
                                && sender
                                    .send(Ok(std::mem::replace(
                                        &mut chunk,
                                        Vec::with_capacity(CHUNK),
                                    )))
                                    .is_err()
                            {
                                return;
                            }
                        }
                        Err(err) => {
                            let _ = sender.send(Err(err.into()));
                            return;
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = sender.send(Ok(chunk));
                }
            })
            .map_err(|err| VaultError::Io(format!("cannot start the replay thread: {err}")))?;
        let mut count = 0;
        for chunk in receiver {
            for (seq, stream, version, hash, event) in chunk? {
                self.apply_decoded(seq, stream, version, hash, event);
                count += 1;
            }
        }
        let _ = decoder.join();
        Ok(count)
    }
}
