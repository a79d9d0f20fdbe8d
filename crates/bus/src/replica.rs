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
//! HTTP (JSON, bound to `http_addr`):
//! - `POST /v1/keys/verify` `{"key": "kl_…"}` with `Authorization: Bearer <a key whose owner
//!   holds verify_api_keys>` → `{"valid": true, "key_id", "owner", "permissions",
//!   "expires_at"}` or `{"valid": false, "reason"}`.
//! - `GET /healthz`: 200 once caught up with the stream and consistent, else 503.
//! - `GET /v1/replica/status`: applied seq, lag, connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use keyledger_crypto::{Keyring, MasterKey};
use keyledger_domain::{Permission, State, Timestamp};
use keyledger_log::{Envelope, Seq, compute_hash};
use keyledger_vault::{AuthFailure, Clock, Projection, SystemClock, check_api_key};
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
    /// Where the HTTP API listens (port 0: any free port, see [`Replica::local_addr`]).
    pub http_addr: SocketAddr,
    /// The vault's master key: the replica derives the pepper of key hashes from it.
    pub master_key: MasterKey,
}

/// What the replica knows about itself (`GET /v1/replica/status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaStatus {
    /// The last log event applied to the replica's projection.
    pub applied_seq: Seq,
    /// Events in the stream not yet applied, when known.
    pub lag_events: Option<u64>,
    /// Reached the end of the stream at least once since it started.
    pub caught_up: bool,
    pub connected: bool,
    /// False after a gap or a broken hash chain in the stream: it then stops applying.
    pub consistent: bool,
    pub detail: String,
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
    },
    Invalid {
        valid: monostate::False,
        reason: String,
    },
}

/// A running replica: the follower task and the HTTP server.
#[derive(Debug)]
pub struct Replica {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    follower: JoinHandle<()>,
    server: JoinHandle<()>,
}

/// Runs a replica until `shutdown` resolves (`keyledger replica`).
pub async fn run(
    config: ReplicaConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BusError> {
    let replica = Replica::start(config).await?;
    tracing::info!(addr = %replica.local_addr(), "replica serving");
    shutdown.await;
    replica.shutdown().await;
    Ok(())
}

impl Replica {
    /// Binds the HTTP address and starts following the replication stream. NATS need not be up
    /// yet: the replica retries with backoff and `/healthz` answers 503 until it has caught up.
    pub async fn start(config: ReplicaConfig) -> Result<Replica, BusError> {
        config.bus.check()?;
        let shared = Arc::new(Shared {
            projection: RwLock::new(Projection::default()),
            keyring: RwLock::new(None),
            clock: Arc::new(SystemClock),
            status: Mutex::new(ReplicaStatus {
                consistent: true,
                detail: "starting".to_owned(),
                ..ReplicaStatus::default()
            }),
        });
        let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let router = Router::new()
            .route("/v1/keys/verify", post(verify_handler))
            .route("/healthz", get(health_handler))
            .route("/v1/replica/status", get(status_handler))
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(shared.clone());
        let mut server_stop = stopped.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "the replica's HTTP server failed");
            }
        });
        let follower = tokio::spawn(follow(
            shared.clone(),
            config.bus,
            config.master_key,
            stopped,
        ));
        Ok(Replica {
            shared,
            local_addr,
            stop,
            follower,
            server,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn status(&self) -> ReplicaStatus {
        self.shared.status()
    }

    /// Verifies a key against the replica's projection, as `POST /v1/keys/verify` does;
    /// `None` while the replica cannot verify yet (it has not read the sealed pepper).
    pub fn verify(&self, presented: &str) -> Option<Verification> {
        match self.shared.authenticate(presented) {
            Ok(verified) => Some(verified.into()),
            Err(Refusal::Auth(failure)) => Some(Verification::invalid(&failure)),
            Err(Refusal::NotReady) => None,
        }
    }

    /// Stops following, stops the HTTP server (letting requests in progress finish), and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.follower.await;
        let _ = self.server.await;
    }
}

impl Verification {
    fn invalid(failure: &AuthFailure) -> Verification {
        Verification::Invalid {
            valid: monostate::False,
            reason: failure.reason().to_owned(),
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, Verification::Valid { .. })
    }
}

impl From<Verified> for Verification {
    fn from(verified: Verified) -> Verification {
        Verification::Valid {
            valid: monostate::True,
            key_id: verified.key_id,
            owner: verified.owner,
            permissions: verified.permissions,
            expires_at: verified.expires_at,
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
    status: Mutex<ReplicaStatus>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Why a key was not verified.
enum Refusal {
    Auth(AuthFailure),
    /// The replica has no pepper yet.
    NotReady,
}

impl From<AuthFailure> for Refusal {
    fn from(failure: AuthFailure) -> Refusal {
        Refusal::Auth(failure)
    }
}

/// A key that verified.
struct Verified {
    key_id: String,
    owner: String,
    permissions: Vec<Permission>,
    expires_at: Option<Timestamp>,
}

impl Shared {
    fn status(&self) -> ReplicaStatus {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn update_status(&self, change: impl FnOnce(&mut ReplicaStatus)) {
        change(
            &mut self
                .status
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self
            .projection
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .state)
    }

    /// The vault's checks of an internal key (`Vault::authenticate_key`), against the replica's
    /// projection: format, peppered hash lookup, status at now, current or still-valid previous
    /// secret, owner, and the owner's permissions right now.
    fn authenticate(&self, presented: &str) -> Result<Verified, Refusal> {
        let keyring = self
            .keyring
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let keyring = keyring.ok_or(Refusal::NotReady)?;
        let now = self.clock.now();
        let principal = self.read(|state| check_api_key(state, &keyring, presented, now))?;
        let verified = Verified {
            key_id: principal.key.to_string(),
            owner: principal.user.to_string(),
            permissions: principal.permissions.iter().collect(),
            expires_at: principal.expires_at,
        };
        Ok(verified)
    }

    /// Applies envelopes that continue the chain; refuses a gap or a broken hash.
    fn apply(&self, envelopes: Vec<Envelope>) -> Result<(), BusError> {
        let mut projection = self
            .projection
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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
        self.update_status(|status| status.applied_seq = applied);
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
        shared.update_status(|status| {
            status.connected = connected;
            status.consistent = consistent;
            status.lag_events = None;
            status.detail = format!("{error}; retrying in {} ms", backoff.as_millis());
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
        .build(connection);
    let stream = get_stream(&js, &config.replication_stream).await?;
    let keyring = crate::pepper::fetch(&js, config, master).await?;
    *shared
        .keyring
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(keyring));
    let applied = shared.status().applied_seq;
    let from = if applied == 0 {
        StartAt::Beginning
    } else {
        StartAt::Seq(applied + 1)
    };
    let (messages, _, pending_at_start) =
        ordered(&stream, Channel::Replication, from, String::new()).await?;
    shared.update_status(|status| {
        status.connected = true;
        status.lag_events = Some(pending_at_start);
        status.caught_up |= pending_at_start == 0;
        status.detail = format!(
            "following {} at {}",
            config.replication_stream,
            config.display_url()
        );
    });
    let mut chunks = messages.ready_chunks(APPLY_CHUNK);
    while let Some(chunk) = chunks.next().await {
        let mut envelopes = Vec::with_capacity(chunk.len());
        let mut pending = None;
        for message in chunk {
            let message = message?;
            let envelope =
                Envelope::from_bytes(&message.payload).map_err(|error| BusError::Undecodable {
                    stream_seq: message.stream_seq,
                    subject: message.subject.clone(),
                    reason: error.to_string(),
                })?;
            pending = Some(message.pending);
            envelopes.push(envelope);
        }
        shared.apply(envelopes)?;
        shared.update_status(|status| {
            status.connected = true;
            status.consistent = true;
            status.lag_events = pending;
            status.caught_up |= pending == Some(0);
        });
    }
    Err(BusError::Consumer {
        consumer: format!("ordered consumer on {}", config.replication_stream),
        reason: "the message stream ended".to_owned(),
    })
}

#[derive(Deserialize)]
struct VerifyRequest {
    key: String,
}

async fn verify_handler(
    AxumState(shared): AxumState<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<VerifyRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(caller_key) = bearer(&headers) else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send `Authorization: Bearer <key>` with a key whose owner holds verify_api_keys",
        );
    };
    let caller = match shared.authenticate(caller_key) {
        Ok(caller) => caller,
        Err(Refusal::Auth(failure)) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                &format!("the caller's key: {failure}"),
            );
        }
        Err(Refusal::NotReady) => return not_ready(),
    };
    if !caller.permissions.contains(&Permission::VerifyApiKeys) {
        return error_response(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "verifying keys needs the verify_api_keys permission",
        );
    }
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error_response(
                rejection.status(),
                "invalid_body",
                "send a JSON body `{\"key\": \"kl_…\"}` with `Content-Type: application/json`",
            );
        }
    };
    let verification = match shared.authenticate(&request.key) {
        Ok(verified) => Verification::from(verified),
        Err(Refusal::Auth(failure)) => Verification::invalid(&failure),
        Err(Refusal::NotReady) => return not_ready(),
    };
    Json(verification).into_response()
}

async fn health_handler(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let status = shared.status();
    let has_pepper = shared
        .keyring
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .is_some();
    if status.caught_up && status.consistent && has_pepper {
        Json(serde_json::json!({"status": "ok", "applied_seq": status.applied_seq})).into_response()
    } else {
        let body = serde_json::json!({"status": "unavailable", "applied_seq": status.applied_seq, "detail": status.detail});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn status_handler(AxumState(shared): AxumState<Arc<Shared>>) -> Json<ReplicaStatus> {
    Json(shared.status())
}

fn not_ready() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "the replica has not read the vault's pepper yet; see GET /v1/replica/status",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
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

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "bearer kl_x"
                .parse()
                .unwrap_or(axum::http::HeaderValue::from_static("")),
        );
        assert_eq!(bearer(&headers), Some("kl_x"));
        headers.insert(
            header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(bearer(&headers), None);
    }
}
