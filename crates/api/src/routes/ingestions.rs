//! Ingestion jobs (`import_organization_samples`): start one over the caller's own external key,
//! follow it, list them, cancel one; a finished batch's manifest and files, for its owner only.

pub(crate) mod manifest;
pub(crate) mod preview;

use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyledger_domain::{DomainError, Ingestion, IngestionId, Provider, Selection};
use keyledger_ingest::{IngestError, IngestRequest, IngestionView, StartOptions};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
pub use manifest::sha256sums;
use manifest::{MANIFEST_JSON, Manifest};

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
    /// Fetch every selected file, even those your earlier imports from the same source already
    /// stored in the same version (which are otherwise skipped and counted in `files_skipped`).
    pub force: Option<bool>,
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
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn start_ingestion(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<ApiJson<StartIngestionRequest>, ApiError>,
) -> Result<(StatusCode, Json<IngestionView>), ApiError> {
    let ApiJson(body) = body?;
    let ingestor = ingestor(&state)?;
    let selection = selection_of(&body)?;
    // The job's events all come after this position: its manifest is read from here on.
    let first_seq = state.vault().log().head().0 + 1;
    let id = ingestor
        .start_with(
            caller.actor(),
            IngestRequest {
                selection,
                destination: body.destination,
            },
            StartOptions {
                force: body.force.unwrap_or(false),
            },
        )
        .await
        .map_err(ingest_error)?;
    tracing::info!(ingestion = %id, "ingestion started");
    let view = follow_job(&state, &id, first_seq)?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// After a job was started (by a request or a saved source's run): its manifest is written
/// into the batch folder when it ends, reading its events from `first_seq` on. Its view now.
pub(crate) fn follow_job(
    state: &ApiState,
    id: &IngestionId,
    first_seq: u64,
) -> Result<IngestionView, ApiError> {
    let ingestor = ingestor(state)?;
    manifest::job_started(id, first_seq);
    {
        let (state, id, ingestor) = (state.clone(), id.clone(), ingestor.clone());
        tokio::spawn(async move {
            ingestor.wait(&id).await;
            write_manifest(&state, &id).await;
        });
    }
    ingestor
        .status(id)
        .ok_or_else(|| ApiError::internal("the job vanished after it was started"))
}

/// One of the caller's jobs: state, per-file progress, bytes, errors.
#[utoipa::path(get, path = "/v1/ingestions/{id}", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 200, description = "The job"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn get_ingestion(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<IngestionView>, ApiError> {
    let id = IngestionId::parse(&id)?;
    // `access::judge` admitted only the job's owner.
    let view = ingestor(&state)?
        .status(&id)
        .ok_or_else(|| not_found(&id))?;
    if view.state.is_finished() {
        // Whoever sees the job finished finds its manifest in the batch folder.
        write_manifest(&state, &id).await;
    }
    Ok(Json(view))
}

/// A batch's manifest: each stored file's path, size, SHA-256, source (bucket, key and ETag, or
/// project and file id), external key, time and job, and each failed file with its reason.
#[utoipa::path(get, path = "/v1/ingestions/{id}/manifest", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 200, description = "The manifest (also `manifest.json` in the batch folder)"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn get_ingestion_manifest(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = IngestionId::parse(&id)?;
    let job = job(&state, &id)?;
    let batch_dir = batch_dir(&state, &job)?;
    let on_disk = batch_dir.join(MANIFEST_JSON);
    let is_sample = job.files.iter().any(|file| file.path == MANIFEST_JSON);
    if job.state.is_finished() && !is_sample {
        write_manifest(&state, &id).await;
        // Written once, when the job ended: served as is, without reading the log again.
        if let Ok(bytes) = tokio::fs::read(&on_disk).await {
            return Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response());
        }
    }
    let vault = state.vault().clone();
    let manifest = tokio::task::spawn_blocking(move || Manifest::build(&vault, &job, None))
        .await
        .map_err(|_| ApiError::internal("reading the job's events was interrupted"))?
        .map_err(|error| {
            tracing::error!(ingestion = %id, %error, "the job's events cannot be read");
            ApiError::internal("the job's events cannot be read; see the server log")
        })?;
    Ok(Json(manifest).into_response())
}

/// One stored file of a batch, streamed to the job's owner: `Content-Length`, `ETag` and
/// `X-Checksum-Sha256` (its SHA-256, hex), and one byte range on request (`Range: bytes=…`,
/// answered 206; a range that cannot be served gets the whole file). Only files the job's
/// events name can be fetched: the path is looked up, never joined blindly.
#[utoipa::path(get, path = "/v1/ingestions/{id}/files/{*path}", tag = "ingestion",
    params(("id" = String, Path), ("path" = String, Path, description = "The file's path in the batch, `/` between folders")),
    responses((status = 200, description = "The file's bytes"), (status = 206, description = "The requested range"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn get_ingestion_file(
    State(state): State<ApiState>,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = IngestionId::parse(&id)?;
    let job = job(&state, &id)?;
    // The submitted path is never echoed or joined: only a recorded one is used.
    let missing = || ApiError::not_found("this batch has no stored file at that path");
    let (recorded, size, sha256) = job
        .files
        .iter()
        .find_map(|file| {
            let sha256 = file.sha256.filter(|_| file.path == path)?;
            Some((
                file.path.clone(),
                file.size,
                keyledger_domain::public::hex(&sha256),
            ))
        })
        .ok_or_else(missing)?;
    let (status, start, length) = match requested_range(&headers, size) {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = match object_store(&state)? {
        Some(object) => {
            let relative = format!("{}/{}/{recorded}", job.destination, job.batch_id);
            object_body(&object, &id, &relative, size, start, length).await?
        }
        None => {
            let location = batch_dir(&state, &job)?.join(&recorded);
            file_body(&id, &location, size, start, length).await?
        }
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(value) = HeaderValue::from_str(&sha256) {
        headers.insert("x-checksum-sha256", value);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(range) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + length - 1))
    {
        headers.insert(header::CONTENT_RANGE, range);
    }
    Ok(response)
}

/// A recorded file's bytes from the `file://` store, checked to still have its recorded size.
async fn file_body(
    id: &IngestionId,
    location: &std::path::Path,
    size: u64,
    start: u64,
    length: u64,
) -> Result<Body, ApiError> {
    let mut file = tokio::fs::File::open(&location).await.map_err(|error| {
        tracing::warn!(ingestion = %id, %error, "a recorded sample file cannot be opened");
        ApiError::not_found("the file is recorded but no longer in the sample store")
    })?;
    let on_disk = file
        .metadata()
        .await
        .map(|m| m.is_file().then_some(m.len()));
    if !matches!(on_disk, Ok(Some(length)) if length == size) {
        tracing::warn!(ingestion = %id, "a recorded sample file changed size in the store");
        return Err(ApiError::not_found(
            "the file in the sample store no longer matches its record",
        ));
    }
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|_| ApiError::internal("the file cannot be read"))?;
    }
    Ok(Body::from_stream(tokio_util::io::ReaderStream::new(
        file.take(length),
    )))
}

/// A recorded file's bytes from the `s3://` store (decision 0029), checked to still have its
/// recorded size.
async fn object_body(
    object: &keyledger_ingest::ObjectTarget,
    id: &IngestionId,
    relative: &str,
    size: u64,
    start: u64,
    length: u64,
) -> Result<Body, ApiError> {
    let range = (length < size).then(|| start..start + length);
    let (stored, stream) = object.read(relative, range).await.map_err(|error| {
        tracing::warn!(ingestion = %id, %error, "a recorded sample object cannot be read");
        ApiError::not_found("the file is recorded but no longer in the sample store")
    })?;
    if stored != size {
        tracing::warn!(ingestion = %id, "a recorded sample object changed size in the store");
        return Err(ApiError::not_found(
            "the file in the sample store no longer matches its record",
        ));
    }
    Ok(Body::from_stream(stream))
}

/// One satisfiable range of `Range: bytes=a-b`, `bytes=a-` or `bytes=-n`, as inclusive
/// `(first, last)`; anything else (several ranges, units, past the end) is ignored and the
/// whole file is sent, as RFC 9110 allows.
fn requested_range(headers: &HeaderMap, size: u64) -> Option<(u64, u64)> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            (size.checked_sub(suffix.min(size))?, size - 1)
        }
        (first, "") => (first.parse().ok()?, size - 1),
        (first, last) => (first.parse().ok()?, last.parse::<u64>().ok()?.min(size - 1)),
    };
    (first <= last && first < size).then_some((first, last))
}

/// The caller's jobs, newest first, without per-file detail.
#[utoipa::path(get, path = "/v1/ingestions", tag = "ingestion",
    responses((status = 200, body = IngestionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn list_ingestions(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<IngestionList>, ApiError> {
    Ok(Json(IngestionList {
        ingestions: ingestor(&state)?.list(&caller.principal.user),
    }))
}

/// Cancels a running or queued job; its partial files are removed.
#[utoipa::path(post, path = "/v1/ingestions/{id}/cancel", tag = "ingestion", params(("id" = String, Path)),
    responses((status = 200, description = "The job"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "The job has already finished", body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn cancel_ingestion(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IngestionView>, ApiError> {
    let id = IngestionId::parse(&id)?;
    ingestor(&state)?
        .cancel(caller.actor(), &id)
        .await
        .map(Json)
        .map_err(ingest_error)
}

/// The selection a job's body describes; a field of the other provider is refused by name.
pub(crate) fn selection_of(body: &StartIngestionRequest) -> Result<Selection, ApiError> {
    let provider = Provider::parse(&body.provider)?;
    let pattern = body.pattern.clone().unwrap_or_else(|| ".*".to_owned());
    let field_error = |field: &'static str, problem: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("{field}: {problem} provider {provider}"),
        )
        .with_field_name(field)
    };
    Ok(match provider {
        Provider::Aws => {
            if body.project.is_some() {
                return Err(field_error("project", "not used with"));
            }
            if body.folder.is_some() {
                return Err(field_error("folder", "not used with"));
            }
            let bucket = body
                .bucket
                .clone()
                .ok_or_else(|| field_error("bucket", "required for"))?;
            Selection::Aws {
                bucket,
                prefix: body.prefix.clone().unwrap_or_default(),
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
                .clone()
                .ok_or_else(|| field_error("project", "required for"))?;
            Selection::Dnanexus {
                project,
                folder: body.folder.clone().unwrap_or_else(|| "/".to_owned()),
                pattern,
            }
        }
    })
}

/// Writes the finished job's manifest files into its batch folder, once per process; callers
/// return only after that write. A failure is logged, not returned: the API still serves the
/// manifest.
async fn write_manifest(state: &ApiState, id: &IngestionId) {
    manifest::write_for(id)
        .once(|first_seq| async move {
            let job = state
                .vault()
                .read(|s| s.ingestion(id).cloned())
                .filter(|job| job.state.is_finished())
                .ok_or(manifest::NotFinished)?;
            let Ok(batch_dir) = batch_dir(state, &job) else {
                return Ok(());
            };
            if let Ok(Some(object)) = object_store(state) {
                write_manifest_objects(state, &object, job, first_seq).await;
                return Ok(());
            }
            let vault = state.vault().clone();
            let written = tokio::task::spawn_blocking(move || {
                Manifest::build(&vault, &job, first_seq)?.write_into(&batch_dir)
            })
            .await;
            match written {
                Ok(Ok(())) => tracing::info!(ingestion = %id, "manifest written"),
                Ok(Err(error)) => {
                    tracing::warn!(ingestion = %id, %error, "the batch's manifest files could not be written");
                }
                Err(error) => {
                    tracing::warn!(ingestion = %id, %error, "writing the batch's manifest files stopped");
                }
            }
            Ok(())
        })
        .await;
}

/// The manifest files as objects of an `s3://` store (decision 0029); a failure is logged.
async fn write_manifest_objects(
    state: &ApiState,
    object: &keyledger_ingest::ObjectTarget,
    job: Ingestion,
    first_seq: Option<u64>,
) {
    let id = job.id.clone();
    let batch = format!("{}/{}", job.destination, job.batch_id);
    let vault = state.vault().clone();
    let built = tokio::task::spawn_blocking(move || {
        Manifest::build(&vault, &job, first_seq)?.files_to_write()
    })
    .await;
    let files = match built {
        Ok(Ok(files)) => files,
        Ok(Err(error)) => {
            tracing::warn!(ingestion = %id, %error, "the batch's manifest files could not be built");
            return;
        }
        Err(error) => {
            tracing::warn!(ingestion = %id, %error, "building the batch's manifest files stopped");
            return;
        }
    };
    for (name, content) in files {
        if let Err(error) = object.put_small(&format!("{batch}/{name}"), content).await {
            tracing::warn!(ingestion = %id, %error, "a manifest file could not be written to the store");
        }
    }
    tracing::info!(ingestion = %id, "manifest written");
}

/// The `s3://` sample store, if the server has one.
fn object_store(
    state: &ApiState,
) -> Result<Option<std::sync::Arc<keyledger_ingest::ObjectTarget>>, ApiError> {
    Ok(ingestor(state)?.config().object_store.clone())
}

/// The job (`access::judge` admitted only its owner).
fn job(state: &ApiState, id: &IngestionId) -> Result<Ingestion, ApiError> {
    state
        .vault()
        .read(|s| s.ingestion(id).cloned())
        .ok_or_else(|| not_found(id))
}

/// `<store root>/<destination>/<batch id>`.
fn batch_dir(state: &ApiState, job: &Ingestion) -> Result<PathBuf, ApiError> {
    Ok(ingestor(state)?
        .config()
        .store_root
        .join(&job.destination)
        .join(&job.batch_id))
}

fn not_found(id: &IngestionId) -> ApiError {
    DomainError::NotFound {
        what: "ingestion",
        id: id.to_string(),
    }
    .into()
}

pub(crate) fn ingestor(state: &ApiState) -> Result<&keyledger_ingest::Ingestor, ApiError> {
    state.ingestor().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "ingestion is not enabled in this server",
        )
    })
}

pub(crate) fn ingest_error(err: IngestError) -> ApiError {
    match err {
        IngestError::InvalidSelection(refusal) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_selection",
            refusal.to_string(),
        )
        .with_field_name(refusal.field),
        IngestError::InvalidDestination(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
                .with_field_name("destination")
        }
        IngestError::ForeignDestination { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "permission_denied", err.to_string())
                .with_field_name("destination")
        }
        IngestError::Refused(domain) => domain.into(),
        IngestError::Source(error) => preview::source_error(error),
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
