//! Saved sources (`import_organization_samples`, decision 0031): a job's selection and
//! destination saved under a name, run by hand or on a cron schedule in an explicit time zone.
//! Each run is an ordinary job (`GET /v1/ingestions/{id}`); a source is its owner's only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyledger_domain::{
    Action, IngestionId, IngestionState, Schedule, Selection, Source, SourceId, SourceName,
    SourceRun, Timestamp,
};
use keyledger_ingest::{IngestRequest, IngestionView, SaveSource};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ingestions::{StartIngestionRequest, follow_job, ingest_error, ingestor, selection_of};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;

/// The body of `POST /v1/ingestions` (without `force`), a `name`, and an optional schedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveSourceRequest {
    /// Unique among your sources: 1 to 64 characters.
    #[schema(example = "nightly runs")]
    pub name: String,
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
    /// A regular expression that picks files. Default: every file.
    pub pattern: Option<String>,
    /// A folder of your own area of the sample store (default: your user name).
    pub destination: Option<String>,
    /// Five cron fields: minute hour day-of-month month day-of-week (`0 3 * * *`: 03:00 every
    /// day). Six fields (seconds) are refused. None or empty: the source runs by hand only.
    #[schema(example = "0 3 * * *")]
    pub schedule: Option<String>,
    /// The IANA time zone the schedule is read in (required with a schedule).
    #[schema(example = "Europe/Zurich")]
    pub timezone: Option<String>,
}

/// A saved source as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    #[schema(value_type = String, example = "src_N4bQ8wLc2YhT6vRe")]
    pub id: SourceId,
    #[schema(value_type = String)]
    pub name: SourceName,
    #[schema(value_type = String)]
    pub owner: String,
    /// `aws` or `dnanexus`.
    pub provider: String,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub project: Option<String>,
    pub folder: Option<String>,
    pub pattern: String,
    pub destination: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    /// `active` or `paused`.
    pub state: &'static str,
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// When the schedule runs it next; `null` when paused or unscheduled.
    #[schema(value_type = Option<String>)]
    pub next_run_at: Option<Timestamp>,
    pub last_run: Option<SourceRunView>,
    /// The last scheduled run the vault refused (no usable key, the owner may no longer
    /// import), while no run started after it; `null` otherwise.
    pub last_refusal: Option<SourceRefusalView>,
    /// Runs ever started.
    pub runs: u64,
}

/// A scheduled run that did not start: for which occurrence, why, when it was refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceRefusalView {
    #[schema(value_type = String)]
    pub scheduled_for: Timestamp,
    /// The refusal's sentence: `you have no usable external key for Amazon Web Services (aws); store one first`.
    pub reason: String,
    #[schema(value_type = String)]
    pub at: Timestamp,
}

/// One run of a source: its job and the job's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceRunView {
    #[schema(value_type = String)]
    pub ingestion: IngestionId,
    /// The job's state: `queued`, `fetching`, `completed`, `failed` or `cancelled`.
    #[schema(value_type = String)]
    pub state: Option<IngestionState>,
    #[schema(value_type = String)]
    pub started_at: Timestamp,
    /// The occurrence of the schedule it ran for; `null`: run by hand.
    #[schema(value_type = Option<String>)]
    pub scheduled_for: Option<Timestamp>,
}

/// A source with its last runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceDetail {
    #[serde(flatten)]
    pub source: SourceView,
    pub recent_runs: Vec<SourceRunView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceView>,
}

/// Saves a source. Checked as a job is (selection, destination, permission), plus the name
/// (unique among your sources) and the schedule (5 cron fields, an IANA time zone).
#[utoipa::path(post, path = "/v1/sources", tag = "sources", request_body = SaveSourceRequest,
    responses((status = 201, body = SourceView), (status = 400, description = "A bad field, named in `field`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`source_name_taken`", body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn save_source(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<ApiJson<SaveSourceRequest>, ApiError>,
) -> Result<(StatusCode, Json<SourceView>), ApiError> {
    let ApiJson(body) = body?;
    let ingestor = ingestor(&state)?;
    let name = SourceName::parse(&body.name)?;
    let schedule = schedule_of(&body)?;
    let job = StartIngestionRequest {
        provider: body.provider,
        bucket: body.bucket,
        prefix: body.prefix,
        project: body.project,
        folder: body.folder,
        pattern: body.pattern,
        destination: body.destination,
        force: None,
    };
    let selection = selection_of(&job)?;
    let saved = SaveSource {
        name,
        request: IngestRequest {
            selection,
            destination: job.destination,
        },
        schedule,
    };
    let id = ingestor
        .save_source(caller.actor(), saved)
        .await
        .map_err(ingest_error)?;
    tracing::info!(source = %id, "source saved");
    Ok((StatusCode::CREATED, Json(view_of(&state, &id)?.source)))
}

/// The caller's sources, by name.
#[utoipa::path(get, path = "/v1/sources", tag = "sources",
    responses((status = 200, body = SourceList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn list_sources(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<SourceList>, ApiError> {
    ingestor(&state)?;
    let now = state.vault().now();
    let user = &caller.principal.user;
    let mut sources: Vec<SourceView> = state.vault().read(|s| {
        s.sources()
            .filter(|source| &source.owner == user)
            .map(|source| build(s, source, now).source)
            .collect()
    });
    sources.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(Json(SourceList { sources }))
}

/// One of the caller's sources, with its last 20 runs (newest first).
#[utoipa::path(get, path = "/v1/sources/{id}", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = SourceDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn get_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SourceDetail>, ApiError> {
    ingestor(&state)?;
    // `access::judge` admitted only the source's owner.
    Ok(Json(view_of(&state, &SourceId::parse(&id)?)?))
}

/// Runs the source now, as a new job (202, the job as `POST /v1/ingestions` answers it).
/// 409 `source_running` while its previous run's job has not finished.
#[utoipa::path(post, path = "/v1/sources/{id}/run", tag = "sources", params(("id" = String, Path)),
    responses((status = 202, description = "The job, queued"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`source_running`, or no usable external key", body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn run_source(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IngestionView>), ApiError> {
    let id = SourceId::parse(&id)?;
    let first_seq = state.vault().log().head().0 + 1;
    let ingestion = ingestor(&state)?
        .run_source(caller.actor(), &id, None)
        .await
        .map_err(ingest_error)?;
    let view = follow_job(&state, &ingestion, first_seq)?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Pauses the source's schedule (a run by hand still works).
#[utoipa::path(post, path = "/v1/sources/{id}/pause", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn pause_source(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SourceView>, ApiError> {
    let source = SourceId::parse(&id)?;
    let action = Action::PauseSource {
        source: source.clone(),
    };
    change(&state, &caller, &source, action).await
}

/// Resumes the source's schedule from now: occurrences while it was paused do not run.
#[utoipa::path(post, path = "/v1/sources/{id}/resume", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn resume_source(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SourceView>, ApiError> {
    let source = SourceId::parse(&id)?;
    let action = Action::ResumeSource {
        source: source.clone(),
    };
    change(&state, &caller, &source, action).await
}

/// Deletes the source. Its runs' jobs and files stay; a run still going goes on.
#[utoipa::path(delete, path = "/v1/sources/{id}", tag = "sources", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn delete_source(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ingestor(&state)?;
    let source = SourceId::parse(&id)?;
    state
        .vault()
        .run(caller.actor(), Action::DeleteSource { source })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the saved sources' schedule (`ingest.schedule_tick`) on the vault's clock, each run's
/// job followed as a requested one is (its manifest written when it ends); `None` without an
/// ingestor. Only the primary calls it: a read replica never starts a job.
pub fn spawn_source_scheduler(state: &ApiState) -> Option<tokio::task::JoinHandle<()>> {
    let ingestor = state.ingestor()?;
    let tick = ingestor.config().schedule_tick;
    let state = state.clone();
    Some(ingestor.spawn_scheduler(tick, move |ingestion, first_seq| {
        if let Err(error) = follow_job(&state, ingestion, first_seq) {
            tracing::warn!(%ingestion, error = %error.message, "a scheduled run's job cannot be followed");
        }
    }))
}

/// Pauses or resumes `source` (the `action`), answering with the source as it is now.
async fn change(
    state: &ApiState,
    caller: &Caller,
    source: &SourceId,
    action: Action,
) -> Result<Json<SourceView>, ApiError> {
    ingestor(state)?;
    state.vault().run(caller.actor(), action).await?;
    Ok(Json(view_of(state, source)?.source))
}

/// `schedule` and `timezone` parsed once, here: a bad one is a 400 that names its field.
fn schedule_of(body: &SaveSourceRequest) -> Result<Option<Schedule>, ApiError> {
    let cron = body.schedule.as_deref().filter(|c| !c.trim().is_empty());
    let timezone = body.timezone.as_deref().filter(|t| !t.trim().is_empty());
    match (cron, timezone) {
        (Some(cron), timezone) => Ok(Some(Schedule::parse(cron, timezone)?)),
        (None, Some(_)) => Err(keyledger_domain::ValidationError::new(
            "timezone",
            "a time zone goes with a schedule: send `schedule` too, or leave `timezone` out",
        )
        .into()),
        (None, None) => Ok(None),
    }
}

fn view_of(state: &ApiState, id: &SourceId) -> Result<SourceDetail, ApiError> {
    let now = state.vault().now();
    state
        .vault()
        .read(|s| s.source(id).map(|source| build(s, source, now)))
        .ok_or_else(|| {
            keyledger_domain::DomainError::NotFound {
                what: "source",
                id: id.to_string(),
            }
            .into()
        })
}

fn build(state: &keyledger_domain::State, source: &Source, now: Timestamp) -> SourceDetail {
    let run = |run: &SourceRun| SourceRunView {
        ingestion: run.ingestion.clone(),
        state: state.ingestion(&run.ingestion).map(|job| job.state),
        started_at: run.started_at,
        scheduled_for: run.scheduled_for,
    };
    let (bucket, prefix, project, folder, pattern) = match &source.selection {
        Selection::Aws {
            bucket,
            prefix,
            pattern,
        } => (Some(bucket), Some(prefix), None, None, pattern),
        Selection::Dnanexus {
            project,
            folder,
            pattern,
        } => (None, None, Some(project), Some(folder), pattern),
    };
    SourceDetail {
        source: SourceView {
            id: source.id.clone(),
            name: source.name.clone(),
            owner: source.owner.to_string(),
            provider: source.selection.provider().to_string(),
            bucket: bucket.cloned(),
            prefix: prefix.cloned(),
            project: project.cloned(),
            folder: folder.cloned(),
            pattern: pattern.clone(),
            destination: source.destination.clone(),
            schedule: source.schedule.as_ref().map(|s| s.cron().to_owned()),
            timezone: source.schedule.as_ref().map(|s| s.timezone().to_owned()),
            state: if source.paused { "paused" } else { "active" },
            created_at: source.created_at,
            next_run_at: state.source_next_run(source, now),
            last_run: source.last_run().map(run),
            last_refusal: source.current_refusal().map(|refusal| SourceRefusalView {
                scheduled_for: refusal.scheduled_for,
                reason: refusal.reason.clone(),
                at: refusal.at,
            }),
            runs: source.runs,
        },
        recent_runs: source.recent_runs.iter().rev().map(run).collect(),
    }
}
