//! Ingestion jobs (`import_organization_samples`): start one over the caller's own external key,
//! follow it, list them, cancel one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyledger_domain::{DomainError, IngestionId, Permission, Provider, Selection};
use keyledger_ingest::{IngestError, IngestRequest, IngestionView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;

/// `{provider: "aws", bucket, prefix, pattern}` or `{provider: "dnanexus", project, folder,
/// pattern}`, as the platform's import dialog asks; `destination` is a folder of the sample store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartIngestionRequest {
    /// `aws` or `dnanexus`.
    #[schema(example = "aws")]
    pub provider: String,
    /// S3: the bucket.
    pub bucket: Option<String>,
    /// S3: only keys under this prefix (default: the whole bucket).
    pub prefix: Option<String>,
    /// DNAnexus: a project id (`project-…`) or name.
    pub project: Option<String>,
    /// DNAnexus: the folder to search, recursively (default `/`).
    pub folder: Option<String>,
    /// A regular expression that picks files (S3: against the key; DNAnexus: the path under the
    /// folder). Default: every file.
    #[schema(example = r".*\.csv$")]
    pub pattern: Option<String>,
    /// A folder of your own area of the sample store: your user name (the default) or a folder
    /// under it, such as `alice/run-1`.
    pub destination: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestionList {
    #[schema(value_type = Vec<Object>)]
    pub ingestions: Vec<IngestionView>,
}

/// Starts an ingestion with the caller's stored key for the provider. 202: it runs in the
/// background; follow it with `GET /v1/ingestions/{id}`.
#[utoipa::path(post, path = "/v1/ingestions", tag = "ingestion", request_body = StartIngestionRequest,
    responses((status = 202, description = "The job, queued"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "No permission, or a destination outside your own folder", body = ErrorBody),
        (status = 409, description = "No usable external key for the provider", body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn start_ingestion(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<ApiJson<StartIngestionRequest>, ApiError>,
) -> Result<(StatusCode, Json<IngestionView>), ApiError> {
    caller.require(&state, Permission::ImportOrganizationSamples)?;
    let ApiJson(body) = body?;
    let ingestor = ingestor(&state)?;
    let provider = Provider::parse(&body.provider)?;
    let pattern = body.pattern.unwrap_or_else(|| ".*".to_owned());
    let field_error = |field: &'static str, problem: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("{field}: {problem} provider {provider}"),
        )
        .with_field_name(field)
    };
    let selection = match provider {
        Provider::Aws => {
            if body.project.is_some() {
                return Err(field_error("project", "not used with"));
            }
            if body.folder.is_some() {
                return Err(field_error("folder", "not used with"));
            }
            let bucket = body
                .bucket
                .ok_or_else(|| field_error("bucket", "required for"))?;
            Selection::Aws {
                bucket,
                prefix: body.prefix.unwrap_or_default(),
                pattern,
            }
        }
        Provider::Dnanexus => {
            if body.bucket.is_some() {
                return Err(field_error("bucket", "not used with"));
            }
            if body.prefix.is_some() {
                return Err(field_error("prefix", "not used with"));
            }
            let project = body
                .project
                .ok_or_else(|| field_error("project", "required for"))?;
            Selection::Dnanexus {
                project,
                folder: body.folder.unwrap_or_else(|| "/".to_owned()),
                pattern,
            }
        }
    };
    let id = ingestor
        .start(
            caller.actor(),
            IngestRequest {
                selection,
                destination: body.destination,
            },
        )
        .await
        .map_err(ingest_error)?;
    tracing::info!(ingestion = %id, "ingestion started");
    let view = ingestor
        .status(&id)
        .ok_or_else(|| ApiError::internal("the job vanished after it was started"))?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// One of the caller's jobs: state, per-file progress, bytes, errors.
#[utoipa::path(get, path = "/v1/ingestions/{id}", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 200, description = "The job"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn get_ingestion(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IngestionView>, ApiError> {
    caller.require(&state, Permission::ImportOrganizationSamples)?;
    let id = IngestionId::parse(&id)?;
    let view = ingestor(&state)?
        .status(&id)
        .filter(|view| view.owner == caller.principal.user);
    view.map(Json).ok_or_else(|| {
        DomainError::NotFound {
            what: "ingestion",
            id: id.to_string(),
        }
        .into()
    })
}

/// The caller's jobs, newest first, without per-file detail.
#[utoipa::path(get, path = "/v1/ingestions", tag = "ingestion",
    responses((status = 200, body = IngestionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn list_ingestions(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<IngestionList>, ApiError> {
    caller.require(&state, Permission::ImportOrganizationSamples)?;
    Ok(Json(IngestionList {
        ingestions: ingestor(&state)?.list(&caller.principal.user),
    }))
}

/// Cancels a running or queued job; its partial files are removed.
#[utoipa::path(post, path = "/v1/ingestions/{id}/cancel", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 200, description = "The job"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "The job has already finished", body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn cancel_ingestion(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IngestionView>, ApiError> {
    caller.require(&state, Permission::ImportOrganizationSamples)?;
    let id = IngestionId::parse(&id)?;
    ingestor(&state)?
        .cancel(caller.actor(), &id)
        .await
        .map(Json)
        .map_err(ingest_error)
}

fn ingestor(state: &ApiState) -> Result<&keyledger_ingest::Ingestor, ApiError> {
    state.ingestor().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "ingestion is not enabled in this server",
        )
    })
}

fn ingest_error(err: IngestError) -> ApiError {
    match err {
        IngestError::InvalidSelection(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_selection", message)
        }
        IngestError::InvalidDestination(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
                .with_field_name("destination")
        }
        IngestError::ForeignDestination { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "permission_denied", err.to_string())
                .with_field_name("destination")
        }
        IngestError::Refused(domain) => domain.into(),
        IngestError::Vault(vault) => vault.into(),
        IngestError::Store { .. } => {
            tracing::error!(error = %err, "the sample store cannot be used");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the sample store cannot be written; see the server log",
            )
        }
    }
}
