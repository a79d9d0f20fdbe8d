//! `GET /v1/samples?path=…`: lineage of a stored sample file — where it came from (bucket and
//! key with ETag, or project and file id), with which external key, when, its SHA-256, and every
//! other version of the same remote file the caller stored (earlier and later fetches).
//!
//! Guarantee: the answer says what the log says. The file is found among the caller's own
//! jobs' recorded files (the submitted path is matched, never joined onto the store), and its
//! details come from the jobs' events, as a batch's manifest does.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use keyledger_domain::{ExternalKeyId, Ingestion, IngestionId, Selection, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::ingestions::manifest::{Manifest, Source, StoredFile};
use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SamplesQuery {
    /// A stored file's path in the sample store: the job's `store_path`, `/`, the file's path
    /// in the batch (`alice/batch-20261205-AbCdEf/plate-1/a.csv`).
    pub path: String,
}

/// One stored version of a remote file.
#[derive(Debug, Serialize)]
pub(crate) struct SampleVersion {
    /// Its path in the sample store.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Where it was fetched from, with the version fetched (ETag, file id).
    pub source: Source,
    /// The external key it was fetched with.
    pub external_key: ExternalKeyId,
    pub fetched_at: Timestamp,
    pub ingestion: IngestionId,
}

impl SampleVersion {
    fn new(store_path: &str, file: StoredFile) -> SampleVersion {
        SampleVersion {
            path: format!("{store_path}/{}", file.path),
            size: file.size,
            sha256: file.sha256,
            source: file.source,
            external_key: file.external_key,
            fetched_at: file.fetched_at,
            ingestion: file.ingestion,
        }
    }
}

/// A stored file, where it came from, and every other version of the same remote file.
#[derive(Debug, Serialize)]
pub(crate) struct SampleLineage {
    #[serde(flatten)]
    pub sample: SampleVersion,
    /// Versions of the same remote file (same bucket and key, or project and path) fetched
    /// before this one, newest first.
    pub earlier: Vec<SampleVersion>,
    /// Versions fetched after this one, oldest first.
    pub later: Vec<SampleVersion>,
}

/// Where a stored sample file came from, with which key, when, its SHA-256, and its other
/// versions. Only the caller's own files are found.
#[utoipa::path(get, path = "/v1/samples", tag = "ingestion", params(SamplesQuery),
    responses((status = 200, description = "The file's lineage: `path`, `size`, `sha256`, `source` (`bucket`, `key`, `etag` or `project`, `file_id`), `external_key`, `fetched_at`, `ingestion`, `earlier` and `later` versions"),
        (status = 400, description = "No `path`", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "None of your jobs stored a file at that path", body = ErrorBody),
        (status = 501, description = "Ingestion is not enabled in this server", body = ErrorBody)))]
pub(crate) async fn sample_lineage(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<SamplesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SampleLineage>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query takes only `path`: a stored file's path, its job's `store_path` and its path in the batch",
        )
    })?;
    super::ingestions::ingestor(&state)?;
    let owner = caller.principal.user.clone();
    let wanted = query.path.trim_matches('/').to_owned();
    let jobs: Vec<Ingestion> = state.vault().read(|s| {
        s.ingestions()
            .filter(|job| job.owner == owner)
            .cloned()
            .collect()
    });
    let missing = || ApiError::not_found("none of your jobs stored a file at that path");
    let (job, relative) = jobs
        .iter()
        .find_map(|job| {
            let batch = format!("{}/{}/", job.destination, job.batch_id);
            let relative = wanted.strip_prefix(&batch)?;
            job.files
                .iter()
                .any(|file| file.sha256.is_some() && file.path == relative)
                .then(|| (job.clone(), relative.to_owned()))
        })
        .ok_or_else(missing)?;
    let remote = remote_of(&job.selection, &relative);
    // Every job of the caller's that read the same container may hold a version.
    let related: Vec<Ingestion> = jobs
        .into_iter()
        .filter(|other| same_container(&other.selection, &job.selection))
        .collect();
    let vault = state.vault().clone();
    let versions = tokio::task::spawn_blocking(move || {
        let mut versions = Vec::new();
        for other in &related {
            let manifest = Manifest::build(&vault, other, None)?;
            for file in manifest.files {
                if remote_of(&other.selection, &file.path) == remote {
                    versions.push(SampleVersion::new(&manifest.store_path, file));
                }
            }
        }
        Ok::<_, super::ingestions::manifest::ManifestError>(versions)
    })
    .await
    .map_err(|_| ApiError::internal("reading the jobs' events was interrupted"))?
    .map_err(|error| {
        tracing::error!(%error, "the jobs' events cannot be read");
        ApiError::internal("the jobs' events cannot be read; see the server log")
    })?;
    let mut versions = versions;
    versions.sort_by(|a, b| {
        a.fetched_at
            .cmp(&b.fetched_at)
            .then_with(|| a.path.cmp(&b.path))
    });
    let at = versions
        .iter()
        .position(|version| version.path == wanted)
        .ok_or_else(missing)?;
    let later = versions.split_off(at + 1);
    let sample = versions.pop().ok_or_else(missing)?;
    versions.reverse();
    Ok(Json(SampleLineage {
        sample,
        earlier: versions,
        later,
    }))
}

/// The remote file a stored path of a job came from, without its version: `(bucket, key)` or
/// `(project, folder path)`.
fn remote_of(selection: &Selection, path: &str) -> (String, String) {
    match selection {
        Selection::Aws { bucket, prefix, .. } => {
            let folder = prefix.rfind('/').map_or("", |end| &prefix[..=end]);
            (bucket.clone(), format!("{folder}{path}"))
        }
        Selection::Dnanexus {
            project, folder, ..
        } => (
            project.clone(),
            format!("{}/{path}", folder.trim_end_matches('/')),
        ),
    }
}

fn same_container(a: &Selection, b: &Selection) -> bool {
    match (a, b) {
        (Selection::Aws { bucket: x, .. }, Selection::Aws { bucket: y, .. }) => x == y,
        (Selection::Dnanexus { project: x, .. }, Selection::Dnanexus { project: y, .. }) => x == y,
        _ => false,
    }
}
