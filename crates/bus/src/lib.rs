//! Every event on NATS JetStream: the outbox relay, the subscriber library, `events tail` and
//! the read replica.
//!
//! - [`Relay`] publishes the log to `KEYLEDGER` (public JSON, no secrets, no key hashes, no
//!   ciphertext; subjects `keyledger.events.<aggregate>.<event>`) and `KEYLEDGER_REPLICATION`
//!   (the log's binary envelopes, for read replicas; `keyledger.replication.<aggregate>.<event>`),
//!   plus the vault's *sealed* pepper in `KEYLEDGER_REPLICATION_KEYS`. Lock the replication
//!   subjects down with NATS permissions (`docs/examples/nats-permissions.conf`).
//! - [`Subscriber`] reads typed [`PublicEnvelope`]s: durable pull consumers with explicit acks
//!   that keep order, ordered replays, from a log sequence or a time.
//! - [`tail`] prints events for `keyledger events tail`.
//! - [`replica`] follows the replication stream into its own projection and serves key
//!   verification over HTTP (`keyledger replica`).
//! - [`schema`] documents the public wire format (`docs/events.md` is generated from it).
//! - `testing` (feature `testing`, tests and `crates/bench` only): the relay's fault hook and
//!   what a baseline needs to publish the relay's own messages without it.
//!
//! Architecture invariants: NATS is transport and fan-out, the log is the source of truth; the
//! relay never blocks an append; no plaintext secret is ever published (the log holds none);
//! the public stream carries only [`PublicEnvelope`] JSON; each stream holds every event once,
//! in log order (`Nats-Msg-Id` plus `Nats-Expected-Last-Sequence`). Decisions:
//! `docs/decisions/0004-nats-relay.md`.

mod config;
mod error;
pub mod jobs;
mod pepper;
mod relay;
mod subscriber;
mod tail;
mod wire;

pub mod replica;
pub mod schema;

/// The relay's messages without the relay: for the benchmark's raw-publishing baseline.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::relay::ensure_stream;
    pub use crate::wire::Channel;
}

pub use config::BusConfig;
pub use error::BusError;
pub use keyledger_domain::public::{PublicEnvelope, PublicEvent};
pub use relay::{CaughtUp, Relay, RelayHandle, RelayStatus};
pub use subscriber::{Deliveries, Delivery, DurableOptions, Received, Replay, StartAt, Subscriber};
pub use tail::{TailOptions, format_line, tail, tail_with_status};
pub use wire::{decode_public, public_envelope};
