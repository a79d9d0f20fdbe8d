//! The audit routes: the log as evidence (`view_audit_log`), the checkpoint public key (public),
//! and consistent backups while serving (`manage_organization_users`).

use std::path::PathBuf;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use keyledger_audit::{AuditError, CheckpointRecord, ExportPage, PublicKeyInfo};
use keyledger_vault::BackupManifest;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// First sequence number to return (default 1).
    pub from: Option<u64>,
    /// At most this many events (default 1000, at most 10000).
    pub limit: Option<usize>,
}

/// Events with their chain hashes and the checkpoints among them, secrets excluded as on NATS
/// (the encoded body is included: the chain hash covers it; see docs/audit.md).
#[utoipa::path(get, path = "/v1/events", tag = "audit", params(EventsQuery),
    responses((status = 200, description = "A page of the export (JSON lines as an array)"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_events(
    State(state): State<ApiState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExportPage>, ApiError> {
    // serde's message would quote the submitted parameter; say what is allowed instead.
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query takes only `from` (a sequence number, 0 or more) and `limit` (1 to 10000)",
        )
    })?;
    let from = query.from.unwrap_or(1);
    let limit = query.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit: use 1 to 10000",
        ));
    }
    let vault = state.vault().clone();
    let page =
        tokio::task::spawn_blocking(move || keyledger_audit::export_page(&vault, from, limit))
            .await
            .map_err(|_| ApiError::internal("the export was interrupted"))?
            .map_err(audit_error)?;
    Ok(Json(page))
}

/// The Ed25519 public key that signs checkpoints. Public: auditors pin it.
#[utoipa::path(get, path = "/v1/audit/public-key", tag = "audit",
    responses((status = 200, description = "{algorithm, public_key (hex)}")))]
pub(crate) async fn public_key(
    State(state): State<ApiState>,
) -> Result<Json<PublicKeyInfo>, ApiError> {
    keyledger_audit::public_key_info(state.vault())
        .map(Json)
        .map_err(audit_error)
}

/// Signs a checkpoint of the log's head now.
#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit",
    responses((status = 200, description = "{seq, hash, signature, public_key}"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn checkpoint(
    State(state): State<ApiState>,
) -> Result<Json<CheckpointRecord>, ApiError> {
    let vault = state.vault().clone();
    tokio::task::spawn_blocking(move || keyledger_audit::checkpoint_now(&vault))
        .await
        .map_err(|_| ApiError::internal("the checkpoint was interrupted"))?
        .map(Json)
        .map_err(audit_error)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// An absolute directory on the server that does not exist yet or is empty.
    #[schema(value_type = String)]
    pub dir: PathBuf,
}

/// Writes a consistent copy of the log (and the wrapped data keys, never the master key) while
/// the server keeps serving.
#[utoipa::path(post, path = "/v1/admin/backup", tag = "audit", request_body = BackupRequest,
    responses((status = 200, description = "The backup's manifest"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "The directory is not empty", body = ErrorBody)))]
pub(crate) async fn backup(
    State(state): State<ApiState>,
    body: Result<ApiJson<BackupRequest>, ApiError>,
) -> Result<Json<BackupManifest>, ApiError> {
    let ApiJson(body) = body?;
    if !body.dir.is_absolute() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "dir: give an absolute path on the server",
        ));
    }
    let occupied = std::fs::read_dir(&body.dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_empty",
            "dir: the directory is not empty; choose a new or empty directory",
        ));
    }
    let vault = state.vault().clone();
    let manifest = tokio::task::spawn_blocking(move || vault.backup_to(&body.dir))
        .await
        .map_err(|_| ApiError::internal("the backup was interrupted"))??;
    tracing::info!(head = manifest.head, "backup written");
    Ok(Json(manifest))
}

fn audit_error(err: AuditError) -> ApiError {
    match err {
        AuditError::Vault(err) => err.into(),
        AuditError::Usage(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
        }
        other => {
            tracing::error!(error = %other, "audit request failed");
            ApiError::internal("the audit request failed; see the server log")
        }
    }
}
