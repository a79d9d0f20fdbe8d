//! The two message forms on NATS.
//!
//! - Public (`<subject_prefix>.<aggregate>.<event>`, stream `KEYLEDGER`): the JSON
//!   [`PublicEnvelope`], which carries no secret, no key hash and no ciphertext.
//! - Replication (`<replication_prefix>.<aggregate>.<event>`, stream `KEYLEDGER_REPLICATION`):
//!   the log's own bytes for the envelope (`Envelope::to_bytes`), hash chain included, so a
//!   replica rebuilds exactly the vault's projection and can check the chain as it goes.
//!
//! Both carry `Nats-Msg-Id` = the event id in hex, so the server drops a re-publish.

use bytes::Bytes;
use keyledger_domain::public::{PublicEnvelope, PublicEvent, hex};
use keyledger_domain::{Event, Timestamp};
use keyledger_log::{Envelope, Seq};
use serde::Deserialize;

use crate::BusConfig;

/// Which of the two streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Public,
    Replication,
}

impl Channel {
    pub(crate) fn stream<'a>(&self, config: &'a BusConfig) -> &'a str {
        match self {
            Channel::Public => &config.stream,
            Channel::Replication => &config.replication_stream,
        }
    }

    pub(crate) fn prefix<'a>(&self, config: &'a BusConfig) -> &'a str {
        match self {
            Channel::Public => &config.subject_prefix,
            Channel::Replication => &config.replication_prefix,
        }
    }

    pub fn subject(&self, config: &BusConfig, event: &Event) -> String {
        format!("{}.{}", self.prefix(config), event.subject_suffix())
    }

    pub fn payload(&self, envelope: &Envelope, event: &Event) -> Bytes {
        match self {
            // Serialising owned, fully typed data into memory cannot fail.
            Channel::Public => Bytes::from(
                serde_json::to_vec(&public_envelope(envelope, event)).unwrap_or_default(),
            ),
            Channel::Replication => Bytes::from(envelope.to_bytes()),
        }
    }

    /// The log position and event id a message of this channel carries, if it is one of ours.
    pub(crate) fn position_of(&self, payload: &[u8]) -> Option<(Seq, String)> {
        match self {
            Channel::Public => {
                #[derive(Deserialize)]
                struct Position {
                    id: String,
                    seq: Seq,
                }
                serde_json::from_slice::<Position>(payload)
                    .ok()
                    .map(|p| (p.seq, p.id))
            }
            Channel::Replication => Envelope::from_bytes(payload)
                .ok()
                .map(|e| (e.seq, hex(&e.event_id))),
        }
    }
}

/// The public JSON form of one logged event: `id` is the event id in hex, `subject` the stream
/// id (`api_key/key_…`), `time` the time of the append.
pub fn public_envelope(envelope: &Envelope, event: &Event) -> PublicEnvelope {
    PublicEnvelope {
        id: hex(&envelope.event_id),
        seq: envelope.seq,
        time: Timestamp::from_millis(envelope.time_ms),
        subject: envelope.stream.clone(),
        actor: envelope.actor.clone(),
        event: PublicEvent::from(event),
    }
}

/// Parses a message of the public stream.
pub fn decode_public(payload: &[u8]) -> Result<PublicEnvelope, String> {
    serde_json::from_slice(payload).map_err(|error| error.to_string())
}
