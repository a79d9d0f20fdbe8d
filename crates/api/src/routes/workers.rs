//! The routes of ingestion worker processes (`run_ingestion_jobs`, decision 0025): lease the
//! credential of a job the work queue handed the caller, and report its progress. A worker's
//! credential can do nothing else.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyledger_domain::{IngestionId, IngestionProgress};
use keyledger_ingest::ListedVersion;
use keyledger_ingest::wire::{
    GrantBody, MAX_REPORT_ITEMS, MAX_UNCHANGED_FILES, ReportAnswer, ReportItem, UnchangedAnswer,
    WireCredential,
};
use keyledger_vault::ExternalCredential;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;

/// How long a lease lasts from its grant, and again from each recorded step of its job (a
/// listing, a file, a skip: decision 0033), so a job longer than this is not refused while it
/// reports; it ends earlier with its job, or when the key is deleted, expires or is rotated.
pub(crate) const WORKER_LEASE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The ticket the job's message on the work queue carried. Never printed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseJobRequest {
    /// Hex; from the job's message on `KEYLEDGER_JOBS`.
    pub ticket: String,
}

/// Progress of a job under a lease.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportJobRequest {
    /// The lease (`lease_…`) the grant named.
    pub lease: String,
    /// Items in order, recorded all or none: `{type: "listed", files, bytes}`,
    /// `{type: "file_fetched", path, size, sha256, source_etag}`,
    /// `{type: "file_failed", path, reason, failure_kind}`, `{type: "completed"}`,
    /// `{type: "failed", reason, failure_kind}`, `{type: "skipped", files, bytes}`.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
}

/// Leases the credential of a job the work queue handed the caller: checks the ticket, that the
/// job is live and its key active, records `ExternalKeyLeased` (ending any earlier lease of
/// the job) and returns the job and the secret. Only for worker processes.
#[utoipa::path(post, path = "/v1/worker/ingestions/{id}/lease", tag = "worker", params(("id" = String, Path)),
    request_body = LeaseJobRequest,
    responses((status = 200, description = "The job, its lease and its credential"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Not a worker, or a job the queue did not hand you", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The job has finished, or its key is no longer usable", body = ErrorBody)))]
pub(crate) async fn lease_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<LeaseJobRequest>, ApiError>,
) -> Result<Json<GrantBody>, ApiError> {
    let ApiJson(body) = body?;
    let id = IngestionId::parse(&id)?;
    let mut grant = state
        .vault()
        .lease_job(caller.actor(), &id, &body.ticket, WORKER_LEASE_TTL)
        .await?;
    let renewable = matches!(grant.credential, ExternalCredential::AwsRole { .. });
    if renewable {
        // Decision 0030: the vault assumes the role for the job; the worker gets the session.
        match role_session(&state, &grant.job, &grant.credential).await {
            Ok(session) => grant.credential = session,
            Err(error) => {
                let item = IngestionProgress::Failed {
                    reason: error.message.clone(),
                    failure_kind: error.failure_kind(),
                };
                let recorded = state
                    .vault()
                    .report_job(caller.actor(), &id, &grant.lease, vec![item])
                    .await;
                if let Err(failure) = recorded {
                    tracing::warn!(ingestion = %id, error = %failure, "could not record the job's failure");
                }
                return Err(role_refused(error.message));
            }
        }
    }
    tracing::info!(ingestion = %id, lease = %grant.lease, "job credential leased to a worker");
    let body = GrantBody::from_grant(&grant, renewable)
        .map_err(|problem| ApiError::new(StatusCode::CONFLICT, "role_not_assumed", problem))?;
    Ok(Json(body))
}

/// A new session of a job's `role` key for the worker holding the job's lease (decision 0030):
/// the vault assumes the role again for the job (session named after it, narrowed to its bucket
/// and prefix) and records `ExternalKeyRoleAssumed`. The lease stays the same. Refused once
/// the lease ended (409 `lease_ended`), for a worker other than the lease's (403
/// `not_handed_out`), or when the job's key is not a `role` key.
#[utoipa::path(post, path = "/v1/worker/ingestions/{id}/session", tag = "worker", params(("id" = String, Path)),
    request_body = RenewSessionRequest,
    responses((status = 200, description = "The new session: `{provider: \"aws\", access_key_id, secret_access_key, region, session_token, token_expires_at}`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The lease ended (with why), the key is not a role key, or the role could not be assumed", body = ErrorBody)))]
pub(crate) async fn renew_session(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<RenewSessionRequest>, ApiError>,
) -> Result<Json<WireCredential>, ApiError> {
    let ApiJson(body) = body?;
    let id = IngestionId::parse(&id)?;
    let (job, credential) = state
        .vault()
        .job_credential(&caller.actor(), &id, &body.lease)?;
    if !matches!(credential, ExternalCredential::AwsRole { .. }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_renewable",
            format!(
                "the key of ingestion `{id}` is not a role key: its credential has no session to renew"
            ),
        ));
    }
    let session = role_session(&state, &job, &credential)
        .await
        .map_err(|error| role_refused(error.message))?;
    tracing::info!(ingestion = %id, lease = %body.lease, "role session renewed for a worker");
    let wire = WireCredential::from_credential(&session)
        .map_err(|problem| ApiError::new(StatusCode::CONFLICT, "role_not_assumed", problem))?;
    Ok(Json(wire))
}

/// The lease whose session is renewed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewSessionRequest {
    /// The lease (`lease_…`) the grant named.
    pub lease: String,
}

async fn role_session(
    state: &ApiState,
    job: &keyledger_domain::Ingestion,
    credential: &ExternalCredential,
) -> Result<ExternalCredential, keyledger_ingest::SourceError> {
    let Some(ingestor) = state.ingestor() else {
        return Err(keyledger_ingest::SourceError::new(
            keyledger_ingest::SourceErrorKind::Invalid,
            "this server runs no ingestions, so it assumes no roles",
        ));
    };
    keyledger_ingest::session_for_job(state.vault(), ingestor.config(), job, credential).await
}

fn role_refused(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "role_not_assumed", message)
}

/// Records a job's progress under the caller's lease (all items or none). A file or listing
/// already recorded is skipped; a lease that ended is refused with the reason (409
/// `lease_ended`), and the worker stops the job.
#[utoipa::path(post, path = "/v1/worker/ingestions/{id}/report", tag = "worker", params(("id" = String, Path)),
    request_body = ReportJobRequest,
    responses((status = 200, description = "How many items were recorded and skipped"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The lease ended (with why), or the job finished", body = ErrorBody)))]
pub(crate) async fn report_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<ReportJobRequest>, ApiError>,
) -> Result<Json<ReportAnswer>, ApiError> {
    let ApiJson(body) = body?;
    let id = IngestionId::parse(&id)?;
    if body.items.len() > MAX_REPORT_ITEMS {
        return Err(ApiError::bad_request(
            "validation_failed",
            format!("items: at most {MAX_REPORT_ITEMS} in one report"),
        )
        .with_field_name("items"));
    }
    let total = body.items.len();
    let items = body
        .items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            // serde's message would repeat an unknown `type`: the refusal names the shape.
            serde_json::from_value::<ReportItem>(item)
                .map_err(|_| {
                    "not a report item: `type` is listed, file_fetched, file_failed, completed, failed or skipped, with that type's fields".to_owned()
                })
                .and_then(ReportItem::into_progress)
                .map_err(|problem| format!("items[{index}]: {problem}"))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|problem| {
            ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", problem)
                .with_field_name("items")
        })?;
    let recorded = state
        .vault()
        .report_job(caller.actor(), &id, &body.lease, items)
        .await?;
    Ok(Json(ReportAnswer {
        recorded,
        skipped: total - recorded,
    }))
}

/// Part of a job's listing, with versions, under the job's lease.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnchangedFilesRequest {
    /// The lease (`lease_…`) the grant named.
    pub lease: String,
    /// At most 1000: `{remote_path, size, etag, last_modified_ms}` (the S3 key or the DNAnexus
    /// `/folder/name`; the S3 ETag or the DNAnexus file id, empty when the listing gave none;
    /// S3's last-modified time in milliseconds since the epoch, or null).
    #[schema(value_type = Vec<Object>)]
    pub files: Vec<serde_json::Value>,
}

/// Which of the listed files the store already holds in the same version from the same source
/// (incremental sync, decision 0033): the indices of those to skip, by the same rule as an
/// embedded job's; none when the job was started with `force`. Records nothing: the worker
/// reports the skip (`{type: "skipped", files, bytes}`) with the listing. Only the worker
/// holding the job's live lease may ask (409 `lease_ended`, 403 `not_handed_out`).
#[utoipa::path(post, path = "/v1/worker/ingestions/{id}/unchanged", tag = "worker", params(("id" = String, Path)),
    request_body = UnchangedFilesRequest,
    responses((status = 200, description = "`{unchanged: [index…]}`: the files to skip"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The lease ended (with why)", body = ErrorBody)))]
pub(crate) async fn unchanged_files(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<UnchangedFilesRequest>, ApiError>,
) -> Result<Json<UnchangedAnswer>, ApiError> {
    let ApiJson(body) = body?;
    let id = IngestionId::parse(&id)?;
    if body.files.len() > MAX_UNCHANGED_FILES {
        return Err(ApiError::bad_request(
            "validation_failed",
            format!("files: at most {MAX_UNCHANGED_FILES} in one request"),
        )
        .with_field_name("files"));
    }
    let files = body
        .files
        .into_iter()
        .enumerate()
        .map(|(index, file)| {
            serde_json::from_value::<ListedVersion>(file).map_err(|_| {
                format!(
                    "files[{index}]: give remote_path, size, etag and last_modified_ms (or null)"
                )
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|problem| {
            ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", problem)
                .with_field_name("files")
        })?;
    let vault = state.vault();
    let job = vault.leased_job(&caller.actor(), &id, &body.lease)?;
    let unchanged = vault.read(|current| keyledger_ingest::unchanged(current, &job, &files));
    Ok(Json(UnchangedAnswer { unchanged }))
}

impl std::fmt::Debug for LeaseJobRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseJobRequest { ticket: [redacted] }")
    }
}
