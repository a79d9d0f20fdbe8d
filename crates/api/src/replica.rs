//! The read replica's HTTP side (`keyledger replica`), built from the API's own pieces: the one
//! parser of presented credentials (`Authorization: Bearer` or `X-API-Key`), the API's JSON
//! body extractor and its error JSON (`{"error": {"code", "message"}}`, codes from
//! [`crate::error::ERROR_CODES`]). The follower and its projection are
//! `keyledger_bus::replica`; this module only answers over HTTP what they know.
//!
//! - `POST /v1/keys/verify` `{"key": "kl_…", "client_address": "203.0.113.7"}` (the address
//!   optional), sent with a key whose owner holds `verify_api_keys` → `{"valid": true, "key_id",
//!   "owner", "permissions", "expires_at"}` or `{"valid": false, "reason"}`. The caller is
//!   authenticated (its own key's networks judged against the peer address) and its permission
//!   checked before the body is looked at.
//! - `GET /healthz` (and `GET /readyz`, the same): 200 while the replica is ready, else 503.
//! - `GET /v1/replica/status`: applied seq, lag, connection.
//! - `GET /metrics`: the lag and readiness as Prometheus gauges.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyledger_bus::BusError;
use keyledger_bus::replica::{
    Refusal, Replica, ReplicaConfig, ReplicaStatus, ReplicaView, Verification, VerifiedKey,
};
use keyledger_domain::Permission;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::presented_credential;
use crate::error::ApiError;
use crate::json::ApiJson;

/// The largest verification request accepted.
const BODY_LIMIT: usize = 16 * 1024;

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A running replica with its HTTP server. Dereferences to the [`Replica`] it serves.
#[derive(Debug)]
pub struct ReplicaServer {
    replica: Replica,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// Runs a replica and its HTTP server until `shutdown` resolves (`keyledger replica`).
pub async fn run(
    config: ReplicaConfig,
    http_addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ReplicaServerError> {
    let server = ReplicaServer::start(config, http_addr).await?;
    tracing::info!(addr = %server.local_addr(), "replica serving");
    shutdown.await;
    server.shutdown().await;
    Ok(())
}

impl ReplicaServer {
    /// Binds `http_addr` (port 0: any free port, see [`ReplicaServer::local_addr`]), then starts
    /// following the replication stream. NATS need not be up yet: `/healthz` answers 503 until
    /// the replica has caught up.
    pub async fn start(
        config: ReplicaConfig,
        http_addr: SocketAddr,
    ) -> Result<ReplicaServer, ReplicaServerError> {
        let bind_error = |source| ReplicaServerError::Bind {
            addr: http_addr,
            source,
        };
        let listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let replica = Replica::start(config).await?;
        let router = router(replica.view());
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            // The peer's address judges the caller's own key when it is limited to networks.
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(error) = axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "the replica's HTTP server failed");
            }
        });
        Ok(ReplicaServer {
            replica,
            local_addr,
            stop,
            server,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the HTTP server (letting requests in progress finish), then the follower.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.replica.shutdown().await;
    }
}

impl Deref for ReplicaServer {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.replica
    }
}

/// Every route of a replica.
pub fn router(replica: ReplicaView) -> Router {
    Router::new()
        .route("/v1/keys/verify", post(verify))
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/replica/status", get(status))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(crate::json::BodyLimit(BODY_LIMIT)))
        .with_state(replica)
}

/// The authenticated caller of a replica route, checked against the replica's projection.
struct ReplicaCaller(VerifiedKey);

impl FromRequestParts<ReplicaView> for ReplicaCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        replica: &ReplicaView,
    ) -> Result<ReplicaCaller, ApiError> {
        let presented = presented_credential(&parts.headers)?.ok_or_else(|| {
            ApiError::unauthenticated(
                "send `Authorization: Bearer <key>` with a key whose owner holds verify_api_keys",
            )
        })?;
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        match replica.authenticate_from(presented, peer) {
            Ok(verified) => Ok(ReplicaCaller(verified)),
            Err(Refusal::Auth(failure)) => Err(ApiError::unauthenticated(format!(
                "the caller's key: {failure}"
            ))),
            Err(Refusal::NotReady) => Err(not_ready()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    key: String,
    /// Where the key's holder presented it from, as `POST /v1/keys/verify` takes it.
    client_address: Option<String>,
}

async fn verify(
    State(replica): State<ReplicaView>,
    ReplicaCaller(caller): ReplicaCaller,
    body: Result<ApiJson<VerifyRequest>, ApiError>,
) -> Result<Json<Verification>, ApiError> {
    if !caller.permissions.contains(&Permission::VerifyApiKeys) {
        return Err(ApiError {
            permission: Some(Permission::VerifyApiKeys),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_denied",
                "verifying keys needs the verify_api_keys permission",
            )
        });
    }
    let ApiJson(request) = body?;
    let client = crate::routes::session::parse_client_address(request.client_address.as_deref())?;
    match replica.authenticate_from(&request.key, client) {
        Ok(verified) => Ok(Json(verified.into())),
        Err(Refusal::Auth(failure)) => Ok(Json(Verification::invalid(&failure))),
        Err(Refusal::NotReady) => Err(not_ready()),
    }
}

async fn health(State(replica): State<ReplicaView>) -> Response {
    let status = replica.status();
    let body = serde_json::json!({
        "status": if status.ready { "ok" } else { "unavailable" },
        "applied_seq": status.applied_seq,
        "lag_events": status.lag_events,
        "last_contact_ms": status.last_contact_ms,
        "caught_up": status.caught_up,
        "detail": status.detail,
    });
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn status(State(replica): State<ReplicaView>) -> Json<ReplicaStatus> {
    Json(replica.status())
}

async fn metrics(State(replica): State<ReplicaView>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        replica.metrics_text(),
    )
        .into_response()
}

fn not_ready() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the replica has not read the vault's pepper yet; see GET /v1/replica/status",
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    /// The replica reads credentials with the API's parser: the scheme in any case, and a
    /// scheme other than Bearer is refused as unauthenticated.
    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer kl_x"),
        );
        assert_eq!(presented_credential(&headers).ok().flatten(), Some("kl_x"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        let refused = presented_credential(&headers).err().map(|err| err.status);
        assert_eq!(refused, Some(StatusCode::UNAUTHORIZED));
    }
}
