//! The in-memory read model: the domain state plus the stream versions that optimistic
//! concurrency needs, advanced only in sequence order; and the log body of an event.
//!
//! Body format: one byte, the event format ([`EVENT_FORMAT`]), then the event in bincode
//! (standard configuration, externally tagged enums). Every reader decodes through
//! [`decode_event`], which hands the format and the bytes to [`upcast`]: the one place where a
//! body of an older format becomes today's `Event` (see docs/decisions/0018).

use std::collections::HashMap;

use keyledger_domain::{Event, State};
use keyledger_log::{Envelope, Hash, LogView};
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

/// The format of the event bodies this build writes. Raise it (and add an arm to [`upcast`])
/// whenever a change to `Event` changes how an already stored body decodes.
pub const EVENT_FORMAT: u8 = 1;

/// The log's body for a domain event: the format byte, then the event. Never empty, and a
/// value that serde or bincode refuses is an error, so a failed encoding cannot enter the
/// hash chain as an empty or partial body.
pub fn encode_event(event: &Event) -> Result<Vec<u8>, EncodeEventError> {
    let mut body = Vec::with_capacity(64);
    body.push(EVENT_FORMAT);
    encode_body(event, &mut body).map_err(|source| EncodeEventError {
        event_type: event.type_name(),
        source,
    })?;
    Ok(body)
}

/// bincode's encoding of any value, appended to `into`: the one place bodies are made, so the
/// tests can make it fail.
fn encode_body(
    value: &impl serde::Serialize,
    into: &mut Vec<u8>,
) -> Result<usize, bincode::error::EncodeError> {
    #[cfg(test)]
    if ENCODING_FAILS.get() {
        return Err(bincode::error::EncodeError::Other(
            "a test made encoding fail",
        ));
    }
    bincode::serde::encode_into_std_write(value, into, BINCODE)
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

/// Today's `Event` for a stored body of any format this build reads.
pub fn decode_event(body: &[u8]) -> Result<Event, String> {
    match body.split_first() {
        Some((&format, bytes)) => upcast(format, bytes),
        None => Err("the event body is empty".to_owned()),
    }
}

/// The one place a stored event of an older format is read as today's `Event`. Format 1 is
/// the first released one, so today it has a single arm; the next change of an event keeps
/// a frozen copy of the old enum (`format_1::Event`), decodes with it here and converts
/// (the test `an_older_format_is_upcast_in_one_place` shows how).
pub fn upcast(format: u8, bytes: &[u8]) -> Result<Event, String> {
    match format {
        EVENT_FORMAT => decode_current(bytes),
        other => Err(format!(
            "event format {other} is not one this build reads (it reads format {EVENT_FORMAT})"
        )),
    }
}

/// A body of today's format, after its format byte.
fn decode_current(bytes: &[u8]) -> Result<Event, String> {
    // Borrowing: strings are copied once, straight into the ids' shared buffers.
    bincode::serde::borrow_decode_from_slice(bytes, DECODE)
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
    pub fn replay(&mut self, log: &LogView) -> Result<u64, VaultError> {
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
        let body: [u8; 62] = [
            EVENT_FORMAT,
            0x0e,
            0x00,
            0x10,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0xfd,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x40,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x02,
            0x05,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0xfd,
            0x00,
            0x00,
            0x00,
        ];
        assert!(decode_event(&body).is_err());
    }

    #[test]
    fn stored_events_still_decode() {
        // `UserCreated` for `admin`, as a vault stored it (format 1).
        let body: [u8; 18] = [
            0x01, 0x00, 0x05, 0x61, 0x64, 0x6d, 0x69, 0x6e, 0x00, 0xfd, 0x42, 0xc4, 0x4a, 0x8d,
            0x44, 0x03, 0x00, 0x00,
        ];
        let event = decode_event(&body).unwrap();
        assert_eq!(encode_event(&event).unwrap(), body);
    }

    /// A frozen copy of an event as an older format stored it: how the next change of an event
    /// keeps old bodies readable. Here a format 0 that had no `display_name` on `UserCreated`.
    mod format_0 {
        use keyledger_domain::{Timestamp, UserId};

        #[derive(serde::Serialize, serde::Deserialize)]
        pub enum Event {
            UserCreated { user: UserId, at: Timestamp },
        }
    }

    /// [`upcast`] as it would read after that change: one more arm, converting to today's event.
    fn upcast_with_format_0(format: u8, bytes: &[u8]) -> Result<Event, String> {
        match format {
            0 => {
                let (old, _): (format_0::Event, usize) =
                    bincode::serde::decode_from_slice(bytes, DECODE).map_err(|e| e.to_string())?;
                Ok(match old {
                    format_0::Event::UserCreated { user, at } => Event::UserCreated {
                        user,
                        display_name: None,
                        at,
                    },
                })
            }
            other => upcast(other, bytes),
        }
    }

    #[test]
    fn an_older_format_is_upcast_in_one_place() {
        let user = keyledger_domain::UserId::parse("admin").unwrap();
        let at = keyledger_domain::Timestamp::from_millis(1_790_000_000_000);
        let expected = Event::UserCreated {
            user: user.clone(),
            display_name: None,
            at,
        };
        let mut old_body = vec![0];
        bincode::serde::encode_into_std_write(
            format_0::Event::UserCreated { user, at },
            &mut old_body,
            BINCODE,
        )
        .unwrap();
        assert_eq!(
            upcast_with_format_0(old_body[0], &old_body[1..]),
            Ok(expected.clone())
        );
        // Bodies of today's format take today's arm, unchanged.
        let body = encode_event(&expected).unwrap();
        assert_eq!(body[0], EVENT_FORMAT);
        assert_eq!(upcast_with_format_0(body[0], &body[1..]), Ok(expected));
        // Without the arm, the old format is refused by name, as is an empty body.
        assert!(
            decode_event(&old_body)
                .unwrap_err()
                .contains("event format 0")
        );
        assert!(decode_event(&[]).is_err());
    }
}
