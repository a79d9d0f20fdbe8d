//! The routes, one module per area. [`ROUTES`] lists every route with the permission it needs:
//! the permission matrix test walks it, so a route added here without a test fails there.

pub(crate) mod api_keys;
pub(crate) mod audit;
pub(crate) mod external_keys;
pub(crate) mod health;
pub(crate) mod ingestions;
pub(crate) mod session;
pub(crate) mod users;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post, put};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

pub(crate) use api_keys::*;
pub(crate) use audit::*;
pub(crate) use external_keys::*;
pub(crate) use health::*;
pub(crate) use ingestions::*;
pub(crate) use session::*;
pub(crate) use users::*;

/// One route: its method, path template, and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
    /// `None`: anyone, without a key. `Some("")`: any authenticated caller. Otherwise the
    /// permission the caller's roles must grant.
    pub permission: Option<&'static str>,
}

const fn route(
    method: &'static str,
    path: &'static str,
    permission: Option<&'static str>,
) -> RouteInfo {
    RouteInfo {
        method,
        path,
        permission,
    }
}

const KEYS: Option<&str> = Some("manage_user_api_keys");
const USERS: Option<&str> = Some("manage_organization_users");
const ANY: Option<&str> = Some("");
const INGEST: Option<&str> = Some("import_organization_samples");

pub const ROUTES: &[RouteInfo] = &[
    route("GET", "/healthz", None),
    route("GET", "/readyz", None),
    route("GET", "/metrics", None),
    route("GET", "/openapi.json", None),
    route("POST", "/v1/auth/login", None),
    route("GET", "/v1/me", ANY),
    route("POST", "/v1/keys/verify", Some("verify_api_keys")),
    route("POST", "/v1/api-keys", KEYS),
    route("GET", "/v1/api-keys", KEYS),
    route("POST", "/v1/api-keys/delete", KEYS),
    route("DELETE", "/v1/api-keys/{id}", KEYS),
    route("POST", "/v1/api-keys/{id}/roll", KEYS),
    route("POST", "/v1/external-keys", KEYS),
    route("GET", "/v1/external-keys", KEYS),
    route("POST", "/v1/external-keys/delete", KEYS),
    route("DELETE", "/v1/external-keys/{id}", KEYS),
    route("POST", "/v1/external-keys/{id}/verify", KEYS),
    route("POST", "/v1/users", USERS),
    route("GET", "/v1/users", USERS),
    route("PUT", "/v1/users/{user}/roles/{role}", USERS),
    route("DELETE", "/v1/users/{user}/roles/{role}", USERS),
    route("POST", "/v1/users/{user}/api-keys", USERS),
    route("POST", "/v1/ingestions", INGEST),
    route("GET", "/v1/ingestions", INGEST),
    route("GET", "/v1/ingestions/{id}", INGEST),
    route("POST", "/v1/ingestions/{id}/cancel", INGEST),
    route("GET", "/v1/ingestions/{id}/manifest", INGEST),
    route("GET", "/v1/ingestions/{id}/files/{path}", INGEST),
    route("GET", "/v1/events", Some("view_audit_log")),
    route("GET", "/v1/audit/public-key", None),
    route("POST", "/v1/audit/checkpoints", Some("view_audit_log")),
    route("POST", "/v1/admin/backup", USERS),
    route("GET", "/v1/roles", USERS),
    route("PUT", "/v1/roles/{role}", USERS),
];

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/auth/login", post(login))
        .route("/v1/me", get(me))
        .route("/v1/keys/verify", post(verify_key))
        .route("/v1/api-keys", post(create_api_key).get(list_api_keys))
        .route("/v1/api-keys/delete", post(delete_api_keys))
        .route("/v1/api-keys/{id}", axum::routing::delete(delete_api_key))
        .route("/v1/api-keys/{id}/roll", post(roll_api_key))
        .route(
            "/v1/external-keys",
            post(create_external_key).get(list_external_keys),
        )
        .route("/v1/external-keys/delete", post(delete_external_keys))
        .route(
            "/v1/external-keys/{id}",
            axum::routing::delete(delete_external_key),
        )
        .route("/v1/external-keys/{id}/verify", post(verify_external_key))
        .route("/v1/users", post(create_user).get(list_users))
        .route(
            "/v1/users/{user}/roles/{role}",
            put(grant_role).delete(revoke_role),
        )
        .route("/v1/users/{user}/api-keys", post(issue_api_key))
        .route("/v1/ingestions", post(start_ingestion).get(list_ingestions))
        .route("/v1/ingestions/{id}", get(get_ingestion))
        .route("/v1/ingestions/{id}/cancel", post(cancel_ingestion))
        .route("/v1/ingestions/{id}/manifest", get(get_ingestion_manifest))
        .route("/v1/ingestions/{id}/files/{*path}", get(get_ingestion_file))
        .route("/v1/events", get(list_events))
        .route("/v1/audit/public-key", get(public_key))
        .route("/v1/audit/checkpoints", post(checkpoint))
        .route("/v1/admin/backup", post(backup))
        .route("/v1/roles", get(list_roles))
        .route("/v1/roles/{role}", put(define_role))
        .fallback(|| async { ApiError::for_status(axum::http::StatusCode::NOT_FOUND) })
}

/// The request id for a create: the `Idempotency-Key` header (any printable string of at most
/// 64 characters), hashed with the caller and the route to 16 bytes, so that two callers' keys
/// never collide.
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
) -> Result<Option<[u8; 16]>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().ok().filter(|t| {
        !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    });
    let Some(text) = text else {
        return Err(ApiError {
            field: Some("Idempotency-Key"),
            ..ApiError::bad_request(
                "validation_failed",
                "Idempotency-Key: use 1 to 64 printable ASCII characters",
            )
        });
    };
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        b"keyledger-idempotency".as_slice(),
        caller.principal.user.as_str().as_bytes(),
        route.as_bytes(),
        text.as_bytes(),
    ] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let digest = context.finish();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_ref()[..16]);
    Ok(Some(id))
}
