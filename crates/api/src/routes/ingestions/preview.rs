//! `POST /v1/ingestions/preview`: what a job's selection picks, listed with the caller's own
//! key, without fetching or recording anything (`keyledger_ingest::Ingestor::preview`).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use keyledger_ingest::{
    DEFAULT_PREVIEW_PAGE, MAX_PREVIEW_PAGE, Preview, PreviewRequest, SourceError, SourceErrorKind,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{StartIngestionRequest, ingest_error, ingestor, selection_of};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The `next_cursor` of the previous page of the same selection.
    pub cursor: Option<String>,
    /// Paths in the page (default 100, at most 1000).
    pub page_size: Option<usize>,
}

/// What a job with this body would fetch: count, total bytes, the first page of paths with
/// sizes and a cursor for more. Nothing is fetched or recorded. The listing stops after
/// `limit` entries (`complete: false`, with a `note`), so the answer is quick in any bucket.
#[utoipa::path(post, path = "/v1/ingestions/preview", tag = "ingestion", request_body = StartIngestionRequest,
    params(PreviewQuery),
    responses((status = 200, description = "What the selection picks: `provider`, `matched`, `total_bytes`, `scanned`, `complete`, `limit`, `note`, `files` (`path`, `remote_path`, `size`), `next_cursor`"),
        (status = 400, description = "A malformed selection (such as a bad regex) or query", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "The bucket or project does not exist", body = ErrorBody),
        (status = 409, description = "No usable external key for the provider, or the provider refused it", body = ErrorBody),
        (status = 502, description = "The provider could not be reached or failed", body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn preview_ingestion(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<PreviewQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<ApiJson<StartIngestionRequest>, ApiError>,
) -> Result<Json<Preview>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "the query takes only `cursor` (a path from `next_cursor`) and `page_size` (1 to {MAX_PREVIEW_PAGE})"
            ),
        )
    })?;
    let ApiJson(body) = body?;
    let ingestor = ingestor(&state)?;
    if body.destination.is_some() {
        // Accepted so that the console can send the job's body as it stands; not checked here.
        tracing::debug!("a preview ignores the destination");
    }
    let selection = selection_of(&body)?;
    let page_size = query.page_size.unwrap_or(DEFAULT_PREVIEW_PAGE);
    if !(1..=MAX_PREVIEW_PAGE).contains(&page_size) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("page_size: use 1 to {MAX_PREVIEW_PAGE}"),
        ));
    }
    let preview = ingestor
        .preview(
            caller.actor(),
            PreviewRequest {
                selection,
                cursor: query.cursor.filter(|cursor| !cursor.is_empty()),
                page_size,
            },
        )
        .await
        .map_err(ingest_error)?;
    Ok(Json(preview))
}

/// A provider's answer to a request made for the caller, as the API says it.
pub(crate) fn source_error(error: SourceError) -> ApiError {
    let (status, code) = match error.kind {
        SourceErrorKind::CredentialsRejected => (StatusCode::CONFLICT, "key_rejected"),
        SourceErrorKind::AccessDenied | SourceErrorKind::Rejected => {
            (StatusCode::CONFLICT, "provider_refused")
        }
        SourceErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found_at_provider"),
        SourceErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid_selection"),
        SourceErrorKind::Transient
        | SourceErrorKind::Unreachable
        | SourceErrorKind::Verification
        | SourceErrorKind::Changed
        | SourceErrorKind::Cancelled
        | SourceErrorKind::Local => (StatusCode::BAD_GATEWAY, "provider_unavailable"),
    };
    ApiError::new(status, code, error.message)
}
