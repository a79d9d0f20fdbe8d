//! The in-memory read model: the domain state plus the stream versions that optimistic
//! concurrency needs, advanced only in sequence order.

use std::collections::HashMap;

use keyledger_domain::{Event, State};
use keyledger_log::{Envelope, EventLog, Hash};
use rustc_hash::FxBuildHasher;

use crate::VaultError;

#[derive(Debug, Default)]
pub struct Projection {
    pub state: State,
    /// Stream -> version of its last applied event (FxHash: stream ids are ours).
    pub versions: HashMap<String, u64, FxBuildHasher>,
    pub applied_seq: u64,
    pub applied_hash: Hash,
    /// Set when an event could not be decoded; the vault then refuses to serve as healthy.
    pub broken: Option<String>,
}

const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// Decoding reads at most this many bytes: a body is part of one envelope (at most
/// `MAX_ENVELOPE_BYTES`), so a larger length in a damaged or hostile body is refused before
/// anything is allocated for it, instead of aborting the process on a huge allocation.
const DECODE_LIMIT: usize = 1 << 20;

type DecodeConfig = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
>;

const DECODE: DecodeConfig = bincode::config::standard().with_limit::<DECODE_LIMIT>();

/// The log's body for a domain event. Never empty: a value that serde or bincode refuses is an
/// error, so a failed encoding cannot enter the hash chain as an empty body.
pub fn encode_event(event: &Event) -> Result<Vec<u8>, EncodeEventError> {
    encode_body(event).map_err(|source| EncodeEventError {
        event_type: event.type_name(),
        source,
    })
}

/// bincode's encoding of any value: the one place bodies are made, so the tests can make it fail.
fn encode_body(value: &impl serde::Serialize) -> Result<Vec<u8>, bincode::error::EncodeError> {
    #[cfg(test)]
    if ENCODING_FAILS.get() {
        return Err(bincode::error::EncodeError::Other(
            "a test made encoding fail",
        ));
    }
    bincode::serde::encode_to_vec(value, BINCODE)
}

#[cfg(test)]
thread_local! {
    /// Set by a test: every encoding on this thread fails, as an event serde refuses would.
    pub(crate) static ENCODING_FAILS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A domain event that could not be encoded into a log body. The vault then appends nothing.
/// The message names the event's type only: the bincode error is the source, not the text.
#[derive(Debug, thiserror::Error)]
#[error("a {event_type} event could not be encoded for the event log")]
pub struct EncodeEventError {
    event_type: &'static str,
    #[source]
    source: bincode::error::EncodeError,
}

impl EncodeEventError {
    /// The type of the event that failed, as in the event JSON's `type` field.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }
}

pub fn decode_event(body: &[u8]) -> Result<Event, String> {
    // Borrowing: strings are copied once, straight into the ids' shared buffers.
    bincode::serde::borrow_decode_from_slice(body, DECODE)
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
            note_version(&mut self.versions, &envelope.stream, envelope.version);
            self.fold(envelope.seq, envelope.hash, decode_event(&envelope.body));
        }
    }

    /// Applies one decoded event (its stream version already noted).
    fn fold(&mut self, seq: u64, hash: Hash, event: Result<Event, String>) {
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
        self.applied_seq = seq;
        self.applied_hash = hash;
    }

    /// Folds every event after `applied_seq` into the state. Reading and decoding (and the
    /// stream versions) run on a second thread, folding on this one, so start-up uses both
    /// cores.
    pub fn replay(&mut self, log: &EventLog) -> Result<u64, VaultError> {
        const CHUNK: usize = 1024;
        type Decoded = (u64, Hash, Result<Event, String>);
        let (sender, receiver) =
            std::sync::mpsc::sync_channel::<Result<Vec<Decoded>, VaultError>>(8);
        let mut events = log.read_from(self.applied_seq + 1);
        let mut versions = std::mem::take(&mut self.versions);
        let decoder = std::thread::Builder::new()
            .name("keyledger-replay-decoder".into())
            .spawn(move || {
                let mut chunk = Vec::with_capacity(CHUNK);
                while let Some(envelope) = events.next_view() {
                    let envelope = match envelope {
                        Ok(envelope) => envelope,
                        Err(err) => {
                            let _ = sender.send(Err(err.into()));
                            return versions;
                        }
                    };
                    note_version(&mut versions, envelope.stream, envelope.version);
                    let event = decode_event(envelope.body);
                    chunk.push((envelope.seq, envelope.hash, event));
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if sender.send(Ok(full)).is_err() {
                            return versions;
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = sender.send(Ok(chunk));
                }
                versions
            })
            .map_err(|err| VaultError::io("cannot start the replay thread", err))?;
        let mut count = 0;
        let mut failed = None;
        for chunk in receiver {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            };
            for (seq, hash, event) in chunk {
                self.fold(seq, hash, event);
                count += 1;
            }
        }
        self.versions = decoder
            .join()
            .map_err(|_| VaultError::ThreadPanicked { thread: "replay" })?;
        match failed {
            Some(err) => Err(err),
            None => Ok(count),
        }
    }
}

/// Sets a stream's version; only a stream's first event allocates its name.
fn note_version(versions: &mut HashMap<String, u64, FxBuildHasher>, stream: &str, version: u64) {
    match versions.get_mut(stream) {
        Some(current) => *current = version,
        None => {
            versions.insert(stream.to_owned(), version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `vault_event` fuzz target: a body whose string claims 2^54 bytes made the
    /// decoder allocate them, which aborted the process (no error, no unwinding).
    #[test]
    fn a_huge_claimed_length_is_an_error_not_an_allocation() {
        let body: [u8; 61] = [
            0x0e, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x05, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0xfd, 0x00, 0x00, 0x00,
        ];
        assert!(decode_event(&body).is_err());
    }

    #[test]
    fn stored_events_still_decode() {
        // `UserCreated` for `admin`, as a vault stored it.
        let body: [u8; 17] = [
            0x00, 0x05, 0x61, 0x64, 0x6d, 0x69, 0x6e, 0x00, 0xfd, 0x42, 0xc4, 0x4a, 0x8d, 0x44,
            0x03, 0x00, 0x00,
        ];
        let event = decode_event(&body).unwrap();
        assert_eq!(encode_event(&event).unwrap(), body);
    }
}
