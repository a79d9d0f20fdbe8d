//! The read replica (`keyledger replica`): follows the replication stream into its own
//! projection and serves key verification, so verification scales out on NATS.
//!
//! The public stream carries no key hashes, so it cannot verify keys. The replica follows
//! `KEYLEDGER_REPLICATION` instead: the log's own envelopes, with the HMAC-SHA256 hashes of
//! internal keys (peppered with a key derived from the master key) and only the ciphertext of
//! external secrets. The replica holds the master key to derive the pepper, checks the hash
//! chain of every envelope it applies, and never decrypts anything (it has no data keys).
//! See `docs/decisions/0004-nats-relay.md`.
//!
//! This module is the follower and its projection, with no HTTP: a [`ReplicaView`] answers
//! what the replica's HTTP side (`keyledger_api::replica`, with the API's authentication and
//! error JSON) asks — [`ReplicaView::authenticate`], [`ReplicaView::status`],
//! [`ReplicaView::metrics_text`].
//!
//! Readiness says the truth about lag, and how: the replica knows how far the stream reaches
//! from every delivery (its stream sequence plus the messages still pending) and, independently
//! of deliveries, by asking the stream for its last sequence every
//! [`LagLimits::probe_interval`]. It is ready only while it is consistent, holds the pepper, is
//! at most [`LagLimits::max_lag_events`] behind that last sequence, and heard from NATS (a
//! delivery or a probe answer) within [`LagLimits::max_silence`]. `caught_up` is recomputed on
//! every look, so it turns false again as soon as the replica falls behind.

use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use keyledger_crypto::{Keyring, MasterKey};
use keyledger_domain::{Permission, State, Timestamp};
use keyledger_log::{Envelope, Seq, compute_hash};
use keyledger_vault::{AuthFailure, Clock, Projection, SystemClock, Telemetry, check_api_key_from};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::subscriber::{get_stream, ordered};
use crate::wire::Channel;
use crate::{BusConfig, BusError, StartAt};

/// How a replica is set up.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub bus: BusConfig,
    /// The vault's master key: the replica derives the pepper of key hashes from it.
    pub master_key: MasterKey,
    /// How far behind the replica may be and still answer ready.
    pub limits: LagLimits,
}

/// How far behind the stream a replica may be and still be ready (`nats.replica_max_lag_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagLimits {
    /// Most events the replica may be behind the stream's last message.
    pub max_lag_events: u64,
    /// Longest time without hearing from NATS (a delivery or an answer to a probe).
    pub max_silence: Duration,
    /// How often the replica asks the stream for its last sequence.
    pub probe_interval: Duration,
}

impl Default for LagLimits {
    fn default() -> Self {
        LagLimits {
            max_lag_events: 100,
            max_silence: Duration::from_secs(10),
            probe_interval: Duration::from_secs(1),
        }
    }
}

/// What the replica knows about itself (`GET /v1/replica/status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaStatus {
    /// The last log event applied to the replica's projection.
    pub applied_seq: Seq,
    /// The stream sequence of the last replication message read (applied or already known).
    pub applied_stream_seq: u64,
    /// Messages in the stream after `applied_stream_seq`, as of `last_contact_ms` ago; `None`
    /// while unknown (not connected yet, or following failed).
    pub lag_events: Option<u64>,
    /// Milliseconds since NATS last delivered a message or answered a probe.
    pub last_contact_ms: Option<u64>,
    /// Milliseconds since the newest applied event was appended to the vault's log (grows
    /// while the vault is idle too, so it is reported, not used for readiness).
    pub newest_event_age_ms: Option<u64>,
    /// At the end of the stream right now: no lag, and NATS heard from within the limit.
    pub caught_up: bool,
    /// What `/healthz` answers: consistent, pepper read, lag and silence within the limits.
    pub ready: bool,
    pub connected: bool,
    /// False after a gap or a broken hash chain in the stream: it then stops applying.
    pub consistent: bool,
    pub detail: String,
}

/// What the follower records; [`Shared::status`] derives the rest when asked.
#[derive(Clone, Debug, Default)]
struct Progress {
    applied_seq: Seq,
    applied_stream_seq: u64,
    lag_events: Option<u64>,
    last_contact: Option<Instant>,
    newest_event_time_ms: Option<i64>,
    connected: bool,
    consistent: bool,
    detail: String,
}

/// The answer of `POST /v1/keys/verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Verification {
    Valid {
        valid: monostate::True,
        key_id: String,
        owner: String,
        permissions: Vec<Permission>,
        expires_at: Option<Timestamp>,
        /// A scoped key's scopes (absent: unscoped); `permissions` is what they leave.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scopes: Option<Vec<Permission>>,
        /// Client networks the key is allowed from (absent: anywhere).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        networks: Vec<String>,
    },
    Invalid {
        valid: monostate::False,
        reason: String,
    },
}

/// A running replica: the follower task and its projection.
#[derive(Debug)]
pub struct Replica {
    view: ReplicaView,
    stop: watch::Sender<bool>,
    follower: JoinHandle<()>,
}

/// What the replica knows, for its HTTP side: cheap to clone, shares the running replica's
/// projection and progress.
#[derive(Clone, Debug)]
pub struct ReplicaView {
    shared: Arc<Shared>,
}

/// Why a key was not verified.
#[derive(Debug)]
pub enum Refusal {
    /// The key does not verify (unknown, malformed, expired, deleted, …).
    Auth(AuthFailure),
    /// The replica cannot verify yet: it has not read the vault's pepper.
    NotReady,
}

/// A key that verified, with its owner's permissions right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedKey {
    pub key_id: String,
    pub owner: String,
    pub permissions: Vec<Permission>,
    pub expires_at: Option<Timestamp>,
    pub scopes: Option<Vec<Permission>>,
    pub networks: Vec<String>,
}

impl Replica {
    /// Starts following the replication stream. NATS need not be up yet: the replica retries
    /// with backoff and is not ready until it has caught up.
    pub async fn start(config: ReplicaConfig) -> Result<Replica, BusError> {
        config.bus.check()?;
        let shared = Arc::new(Shared {
            projection: RwLock::new(Projection::default()),
            keyring: RwLock::new(None),
            clock: Arc::new(SystemClock),
            progress: Mutex::new(Progress {
                consistent: true,
                detail: "starting".to_owned(),
                ..Progress::default()
            }),
            limits: config.limits,
            telemetry: Telemetry::default(),
            hold: watch::channel(false).0,
        });
        let (stop, stopped) = watch::channel(false);
        let follower = tokio::spawn(follow(
            shared.clone(),
            config.bus,
            config.master_key,
            stopped,
        ));
        Ok(Replica {
            view: ReplicaView { shared },
            stop,
            follower,
        })
    }

    /// A handle on what the replica knows, for its HTTP side.
    pub fn view(&self) -> ReplicaView {
        self.view.clone()
    }

    pub fn status(&self) -> ReplicaStatus {
        self.view.status()
    }

    /// Verifies a key against the replica's projection, as `POST /v1/keys/verify` does;
    /// `None` while the replica cannot verify yet (it has not read the sealed pepper).
    pub fn verify(&self, presented: &str) -> Option<Verification> {
        self.view.verify(presented)
    }

    /// [`Replica::verify`] for a key presented from `client`: a key limited to some networks
    /// is refused from elsewhere.
    pub fn verify_from(&self, presented: &str, client: IpAddr) -> Option<Verification> {
        self.view.verify_from(presented, Some(client))
    }

    /// A fault for tests: while `held`, the replica reads and applies nothing (as a replica too
    /// slow for the stream would), but keeps probing the stream, so its lag grows.
    #[cfg(feature = "testing")]
    pub fn hold_applying(&self, held: bool) {
        self.view.shared.hold.send_replace(held);
    }

    /// Stops following and waits for the follower.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.follower.await;
    }
}

impl ReplicaView {
    /// The replica's progress, lag and readiness as of now.
    pub fn status(&self) -> ReplicaStatus {
        self.shared.status()
    }

    /// The vault's checks of an internal key (`Vault::authenticate_key`), against the
    /// replica's projection.
    pub fn authenticate(&self, presented: &str) -> Result<VerifiedKey, Refusal> {
        self.shared.authenticate(presented, None)
    }

    /// [`ReplicaView::authenticate`] for a key presented from `client` (when known): a key
    /// limited to some networks is refused from elsewhere.
    pub fn authenticate_from(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<VerifiedKey, Refusal> {
        self.shared.authenticate(presented, client)
    }

    /// See [`Replica::verify`].
    pub fn verify(&self, presented: &str) -> Option<Verification> {
        self.verify_from(presented, None)
    }

    /// See [`Replica::verify_from`].
    pub fn verify_from(&self, presented: &str, client: Option<IpAddr>) -> Option<Verification> {
        match self.authenticate_from(presented, client) {
            Ok(verified) => Some(verified.into()),
            Err(Refusal::Auth(failure)) => Some(Verification::invalid(&failure)),
            Err(Refusal::NotReady) => None,
        }
    }

    /// Prometheus gauges of the replica's progress and lag (unknown values are left out).
    pub fn metrics_text(&self) -> String {
        let status = self.status();
        let telemetry = &self.shared.telemetry;
        let gauges = [
            (
                "keyledger_replica_applied_seq",
                "The last log event applied to the replica's projection.",
                Some(status.applied_seq as f64),
            ),
            (
                "keyledger_replica_lag_events",
                "Messages in the replication stream not yet applied.",
                status.lag_events.map(|lag| lag as f64),
            ),
            (
                "keyledger_replica_last_contact_seconds",
                "Seconds since NATS last delivered a message or answered a lag probe.",
                status.last_contact_ms.map(|ms| ms as f64 / 1000.0),
            ),
            (
                "keyledger_replica_newest_event_age_seconds",
                "Seconds since the newest applied event was appended to the vault's log.",
                status.newest_event_age_ms.map(|ms| ms as f64 / 1000.0),
            ),
            (
                "keyledger_replica_ready",
                "1 while the replica is consistent and within its lag limits, else 0.",
                Some(if status.ready { 1.0 } else { 0.0 }),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                telemetry.set_gauge(name, "", help, value);
            }
        }
        telemetry.render()
    }
}

impl Verification {
    /// The answer for a key that did not verify.
    pub fn invalid(failure: &AuthFailure) -> Verification {
        Verification::Invalid {
            valid: monostate::False,
            reason: failure.reason().to_owned(),
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, Verification::Valid { .. })
    }
}

impl From<VerifiedKey> for Verification {
    fn from(verified: VerifiedKey) -> Verification {
        Verification::Valid {
            valid: monostate::True,
            key_id: verified.key_id,
            owner: verified.owner,
            permissions: verified.permissions,
            expires_at: verified.expires_at,
            scopes: verified.scopes,
            networks: verified.networks,
        }
    }
}

/// `true` and `false` as types, so the untagged enum reads its JSON back by the `valid` field.
pub mod monostate {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct True;
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct False;

    macro_rules! constant_bool {
        ($name:ident, $value:literal) => {
            impl Serialize for $name {
                fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    serializer.serialize_bool($value)
                }
            }

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    if bool::deserialize(deserializer)? == $value {
                        Ok($name)
                    } else {
                        Err(serde::de::Error::custom(concat!(
                            "expected ",
                            stringify!($value)
                        )))
                    }
                }
            }
        };
    }

    constant_bool!(True, true);
    constant_bool!(False, false);
}

struct Shared {
    projection: RwLock<Projection>,
    /// Hashes keys with the vault's pepper; `None` until the sealed pepper was read.
    keyring: RwLock<Option<Arc<Keyring>>>,
    clock: Arc<dyn Clock>,
    progress: Mutex<Progress>,
    limits: LagLimits,
    /// Filled from the status on every `GET /metrics`.
    telemetry: Telemetry,
    /// While true the follower applies nothing (`Replica::hold_applying`, tests only).
    hold: watch::Sender<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl From<AuthFailure> for Refusal {
    fn from(failure: AuthFailure) -> Refusal {
        Refusal::Auth(failure)
    }
}

impl Shared {
    /// The recorded progress, with lag, readiness and their explanation derived as of now.
    fn status(&self) -> ReplicaStatus {
        let progress = self.progress.lock().clone();
        let has_pepper = self.keyring.read().is_some();
        let last_contact_ms = progress
            .last_contact
            .map(|at| at.elapsed().as_millis() as u64);
        let newest_event_age_ms = progress
            .newest_event_time_ms
            .map(|time| (self.clock.now().as_millis() - time).max(0) as u64);
        let silent =
            last_contact_ms.is_none_or(|ms| ms > self.limits.max_silence.as_millis() as u64);
        let caught_up = progress.lag_events == Some(0) && !silent;
        let lag_within = progress
            .lag_events
            .is_some_and(|lag| lag <= self.limits.max_lag_events);
        let ready = progress.consistent && has_pepper && lag_within && !silent;
        let detail = if ready || !progress.consistent || progress.lag_events.is_none() {
            progress.detail.clone()
        } else if !has_pepper {
            "the vault's pepper has not been read yet".to_owned()
        } else if silent {
            format!(
                "no answer from NATS for {} ms (limit {} ms); {}",
                last_contact_ms.unwrap_or_default(),
                self.limits.max_silence.as_millis(),
                progress.detail
            )
        } else {
            format!(
                "{} events behind the stream (limit {}); {}",
                progress.lag_events.unwrap_or_default(),
                self.limits.max_lag_events,
                progress.detail
            )
        };
        ReplicaStatus {
            applied_seq: progress.applied_seq,
            applied_stream_seq: progress.applied_stream_seq,
            lag_events: progress.lag_events,
            last_contact_ms,
            newest_event_age_ms,
            caught_up,
            ready,
            connected: progress.connected,
            consistent: progress.consistent,
            detail,
        }
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock());
    }

    /// NATS answered: the stream ends at `stream_last_seq`.
    fn heard(&self, stream_last_seq: u64) {
        self.update(|progress| {
            progress.last_contact = Some(Instant::now());
            progress.connected = true;
            progress.lag_events = Some(stream_last_seq.saturating_sub(progress.applied_stream_seq));
        });
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.projection.read().state)
    }

    /// The vault's checks of an internal key (`Vault::authenticate_key`), against the replica's
    /// projection: format, peppered hash lookup, status at now, current or still-valid previous
    /// secret, owner, and the owner's permissions right now.
    fn authenticate(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<VerifiedKey, Refusal> {
        let keyring = self.keyring.read().clone();
        let keyring = keyring.ok_or(Refusal::NotReady)?;
        let now = self.clock.now();
        let (principal, networks) = self.read(|state| {
            let principal = check_api_key_from(state, &keyring, presented, now, client)?;
            let networks = state
                .api_key(&principal.key)
                .map(|k| k.networks.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            Ok::<_, AuthFailure>((principal, networks))
        })?;
        let verified = VerifiedKey {
            key_id: principal.key.to_string(),
            owner: principal.user.to_string(),
            permissions: principal.permissions.iter().collect(),
            expires_at: principal.expires_at,
            scopes: principal.scopes.map(|s| s.iter().collect()),
            networks,
        };
        Ok(verified)
    }

    /// Applies envelopes that continue the chain; refuses a gap or a broken hash.
    fn apply(&self, envelopes: Vec<Envelope>) -> Result<(), BusError> {
        let mut projection = self.projection.write();
        let mut expected_seq = projection.applied_seq + 1;
        let mut prev_hash = projection.applied_hash;
        let mut fresh = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            if envelope.seq < expected_seq {
                continue;
            }
            if envelope.seq != expected_seq {
                return Err(BusError::Replication {
                    seq: expected_seq,
                    reason: format!("the stream continues with event {} instead", envelope.seq),
                });
            }
            if envelope.prev_hash != prev_hash || compute_hash(&envelope) != envelope.hash {
                return Err(BusError::Replication {
                    seq: envelope.seq,
                    reason: "its hash does not continue the chain (tampered, or another log)"
                        .to_owned(),
                });
            }
            prev_hash = envelope.hash;
            expected_seq += 1;
            fresh.push(envelope);
        }
        projection.apply_envelopes(&fresh);
        if let Some(broken) = &projection.broken {
            return Err(BusError::Replication {
                seq: projection.applied_seq,
                reason: broken.clone(),
            });
        }
        let applied = projection.applied_seq;
        drop(projection);
        let newest_time = fresh.last().map(|envelope| envelope.time_ms);
        self.update(|progress| {
            progress.applied_seq = applied;
            progress.newest_event_time_ms = newest_time.or(progress.newest_event_time_ms);
        });
        Ok(())
    }
}

/// Follows the replication stream until told to stop, retrying with backoff.
async fn follow(
    shared: Arc<Shared>,
    config: BusConfig,
    master: MasterKey,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = config.backoff_min;
    let mut client = None;
    while !*stop.borrow() {
        let outcome = tokio::select! {
            outcome = follow_once(&shared, &config, &master, &mut client) => outcome,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let error = match outcome {
            Ok(()) => break,
            Err(error) => error,
        };
        let consistent = !matches!(error, BusError::Replication { .. });
        let connected = client.as_ref().is_some_and(|c: &async_nats::Client| {
            c.connection_state() == async_nats::connection::State::Connected
        });
        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "replica cannot follow the stream");
        shared.update(|progress| {
            progress.connected = connected;
            progress.consistent = consistent;
            progress.lag_events = None;
            progress.detail = format!("{error}; retrying in {} ms", backoff.as_millis());
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// Most envelopes applied under one lock.
const APPLY_CHUNK: usize = 512;

async fn follow_once(
    shared: &Shared,
    config: &BusConfig,
    master: &MasterKey,
    client: &mut Option<async_nats::Client>,
) -> Result<(), BusError> {
    let connection = match client {
        Some(connection) => connection.clone(),
        None => client
            .insert(config.connect("keyledger-replica").await?)
            .clone(),
    };
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(config.ack_timeout)
        .build(connection.clone());
    let mut stream = get_stream(&js, &config.replication_stream).await?;
    let keyring = crate::pepper::fetch(&js, config, master).await?;
    *shared.keyring.write() = Some(Arc::new(keyring));
    let applied = shared.status().applied_seq;
    let from = if applied == 0 {
        StartAt::Beginning
    } else {
        StartAt::Seq(applied + 1)
    };
    let (messages, _, pending_at_start) =
        ordered(&stream, Channel::Replication, from, String::new()).await?;
    let stream_last_seq = probe_last_seq(&mut stream).await?;
    shared.update(|progress| {
        // Until the first delivery, the consumer's pending count says where the replica stands.
        progress.applied_stream_seq = stream_last_seq.saturating_sub(pending_at_start);
        progress.detail = format!(
            "following {} at {}",
            config.replication_stream,
            config.display_url()
        );
    });
    shared.heard(stream_last_seq);
    let mut chunks = messages.ready_chunks(APPLY_CHUNK);
    let mut probe = tokio::time::interval(shared.limits.probe_interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hold = shared.hold.subscribe();
    loop {
        let held = *hold.borrow_and_update();
        tokio::select! {
            // A hold takes effect before any further delivery is applied.
            biased;
            _ = hold.changed() => {}
            chunk = chunks.next(), if !held => {
                let Some(chunk) = chunk else { break };
                apply_chunk(shared, chunk)?;
            }
            _ = probe.tick() => match probe_last_seq(&mut stream).await {
                Ok(last) => shared.heard(last),
                Err(error) => {
                    // Silence is what readiness judges; the consumer reports a lost connection.
                    tracing::debug!(%error, "the replica's lag probe got no answer");
                    let connected = connection.connection_state()
                        == async_nats::connection::State::Connected;
                    shared.update(|progress| progress.connected = connected);
                }
            },
        }
    }
    Err(BusError::Consumer {
        consumer: format!("ordered consumer on {}", config.replication_stream),
        reason: "the message stream ended".to_owned(),
    })
}

/// Decodes and applies one batch of deliveries, and records how far the stream reaches.
fn apply_chunk(
    shared: &Shared,
    chunk: Vec<Result<crate::subscriber::RawMessage, BusError>>,
) -> Result<(), BusError> {
    let mut envelopes = Vec::with_capacity(chunk.len());
    let mut position = None;
    for message in chunk {
        let message = message?;
        let envelope =
            Envelope::from_bytes(&message.payload).map_err(|error| BusError::Undecodable {
                stream_seq: message.stream_seq,
                subject: message.subject.clone(),
                reason: error.to_string(),
            })?;
        position = Some((message.stream_seq, message.pending));
        envelopes.push(envelope);
    }
    shared.apply(envelopes)?;
    if let Some((stream_seq, pending)) = position {
        shared.update(|progress| {
            progress.consistent = true;
            progress.applied_stream_seq = stream_seq;
        });
        shared.heard(stream_seq + pending);
    }
    Ok(())
}

/// The stream's last sequence, straight from the server.
async fn probe_last_seq(
    stream: &mut async_nats::jetstream::stream::Stream,
) -> Result<u64, BusError> {
    let info = stream.get_info().await.map_err(|error| BusError::Stream {
        stream: stream.cached_info().config.name.clone(),
        reason: error.to_string(),
    })?;
    Ok(info.state.last_sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_json_has_the_documented_shape() {
        let valid = Verification::Valid {
            valid: monostate::True,
            key_id: "key_1".to_owned(),
            owner: "alice".to_owned(),
            permissions: vec![Permission::VerifyApiKeys],
            expires_at: None,
            scopes: None,
            networks: Vec::new(),
        };
        let json = serde_json::to_string(&valid).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"valid":true,"key_id":"key_1","owner":"alice","permissions":["verify_api_keys"],"expires_at":null}"#
        );
        assert_eq!(
            serde_json::from_str::<Verification>(&json).ok(),
            Some(valid)
        );
        let invalid = Verification::invalid(&AuthFailure::Deleted);
        let json = serde_json::to_string(&invalid).unwrap_or_default();
        assert_eq!(json, r#"{"valid":false,"reason":"deleted"}"#);
        assert_eq!(
            serde_json::from_str::<Verification>(&json).ok(),
            Some(invalid)
        );
    }
}
