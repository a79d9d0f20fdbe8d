//! What the API shows of a job: the projection's record merged with the live counters of a
//! running job.

use std::sync::atomic::Ordering;

use keyledger_domain::{
    ExternalKeyId, FailureKind, Ingestion, IngestionId, IngestionState, Provider, Selection,
    Timestamp, UserId, public::hex,
};
use serde::Serialize;

use crate::live::{LiveJob, Phase};

/// A job's state as users see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free job slot.
    Queued,
    Listing,
    Fetching,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A file's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Fetching,
    Verified,
    Failed,
}

/// One file of a job: finished (verified or failed) or being fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileView {
    /// Relative to the batch folder.
    pub path: String,
    pub state: FileState,
    /// The file's size (0 for a failed file).
    pub size: u64,
    /// Bytes on disk so far (the size once verified).
    pub bytes_fetched: u64,
    /// Lowercase hex SHA-256 of a verified file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure, for a failed file (absent for failures recorded before kinds
    /// existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
}

/// A job as the API returns it (JSON). Never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngestionView {
    pub id: IngestionId,
    pub owner: UserId,
    pub provider: Provider,
    pub external_key: ExternalKeyId,
    pub selection: Selection,
    pub destination: String,
    pub batch_id: String,
    /// Where the files go, relative to the store root: `<destination>/<batch id>`.
    pub store_path: String,
    pub state: JobState,
    pub requested_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Known once listed.
    pub files_selected: Option<u64>,
    pub bytes_selected: Option<u64>,
    pub files_fetched: u64,
    pub files_failed: u64,
    /// Files selected but not fetched: the store already holds them in the same version from
    /// the same source (incremental sync; `force` fetches them again), and their bytes.
    pub files_skipped: u64,
    pub bytes_skipped: u64,
    pub files_running: u64,
    /// Files listed but not yet started (0 before listing and once finished).
    pub files_pending: u64,
    /// Bytes of verified files.
    pub bytes_fetched: u64,
    /// Bytes written so far, files in flight included.
    pub bytes_transferred: u64,
    /// Average transfer rate since fetching started (or over the whole job once finished).
    pub bytes_per_second: Option<u64>,
    /// Why a failed job failed, as a sentence.
    pub error: Option<String>,
    /// What kind of failure ended a failed or cancelled job (`provider_rejected`, `not_found`,
    /// `unreachable`, `transient`, `integrity`, `storage`, `internal`, `cancelled`); `null`
    /// otherwise, and for failures recorded before kinds existed.
    pub failure_kind: Option<FailureKind>,
    /// Verified, failed and running files, by path. Left empty by [`crate::Ingestor::list`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileView>,
}

pub(crate) fn build(job: &Ingestion, live: Option<&LiveJob>, with_files: bool) -> IngestionView {
    let verified = job.files.iter().filter(|f| f.failure.is_none());
    let (files_fetched, bytes_fetched) =
        verified.fold((0u64, 0u64), |(n, b), f| (n + 1, b + f.size));
    let files_failed = job.files.len() as u64 - files_fetched;
    let finished = job.state.is_finished();
    let live = live.filter(|_| !finished);

    let state = match job.state {
        IngestionState::Completed => JobState::Completed,
        IngestionState::Failed => JobState::Failed,
        IngestionState::Cancelled => JobState::Cancelled,
        IngestionState::Fetching => JobState::Fetching,
        IngestionState::Queued => match live.map(LiveJob::phase) {
            Some(Phase::Listing | Phase::Fetching) => JobState::Listing,
            _ => JobState::Queued,
        },
    };

    let running = live.map(LiveJob::running_files).unwrap_or_default();
    let files_running = running.len() as u64;
    let files_pending = match (live, job.files_selected) {
        (Some(_), Some(selected)) => {
            selected.saturating_sub(job.files.len() as u64 + files_running + job.files_skipped)
        }
        _ => 0,
    };
    let bytes_transferred = match live {
        Some(live) => live.transferred.load(Ordering::Relaxed).max(bytes_fetched),
        None => bytes_fetched,
    };
    let bytes_per_second = match (live, job.finished_at) {
        (Some(live), _) => live.fetch_elapsed().and_then(|elapsed| {
            let secs = elapsed.as_secs_f64();
            (secs > 0.0).then(|| (bytes_transferred as f64 / secs) as u64)
        }),
        (None, Some(finished_at)) if bytes_fetched > 0 => {
            let millis = finished_at.as_millis() - job.requested_at.as_millis();
            (millis > 0).then(|| bytes_fetched.saturating_mul(1000) / millis as u64)
        }
        _ => None,
    };

    let files = if with_files {
        let mut files: Vec<FileView> = job
            .files
            .iter()
            .map(|outcome| FileView {
                path: outcome.path.clone(),
                state: if outcome.failure.is_some() {
                    FileState::Failed
                } else {
                    FileState::Verified
                },
                size: outcome.size,
                bytes_fetched: outcome.size,
                sha256: outcome.sha256.map(|digest| hex(&digest)),
                error: outcome.failure.clone(),
                failure_kind: outcome.failure_kind,
            })
            .collect();
        files.extend(running.into_iter().map(|(path, size, fetched)| FileView {
            path,
            state: FileState::Fetching,
            size,
            bytes_fetched: fetched.min(size),
            sha256: None,
            error: None,
            failure_kind: None,
        }));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    } else {
        Vec::new()
    };

    IngestionView {
        id: job.id.clone(),
        owner: job.owner.clone(),
        provider: job.selection.provider(),
        external_key: job.external_key.clone(),
        selection: job.selection.clone(),
        destination: job.destination.clone(),
        batch_id: job.batch_id.clone(),
        store_path: format!("{}/{}", job.destination, job.batch_id),
        state,
        requested_at: job.requested_at,
        finished_at: job.finished_at,
        files_selected: job.files_selected,
        bytes_selected: job.bytes_selected,
        files_fetched,
        files_failed,
        files_skipped: job.files_skipped,
        bytes_skipped: job.bytes_skipped,
        files_running,
        files_pending,
        bytes_fetched,
        bytes_transferred,
        bytes_per_second,
        error: job.error.clone(),
        failure_kind: job.failure_kind,
        files,
    }
}
