//! How ingestion events change a job's record: the helpers of [`State::apply`].

use super::{FileOutcome, IngestionState, State};
use crate::{FailureKind, IngestionId, Timestamp};

impl State {
    /// `failure`: the reason and its kind, for a failed job.
    pub(super) fn finish_ingestion(
        &mut self,
        id: &IngestionId,
        state: IngestionState,
        failure: Option<(String, FailureKind)>,
        at: Timestamp,
    ) {
        if let Some(job) = self.ingestions.get_mut(id) {
            let (error, failure_kind) = failure.unzip();
            job.state = state;
            job.error = error;
            job.failure_kind = failure_kind;
            job.finished_at = Some(at);
        }
    }

    pub(super) fn file_failed(
        &mut self,
        id: &IngestionId,
        path: String,
        reason: String,
        failure_kind: FailureKind,
    ) {
        if let Some(job) = self.ingestions.get_mut(id) {
            job.files.push(FileOutcome {
                path,
                size: 0,
                sha256: None,
                failure: Some(reason),
                failure_kind: Some(failure_kind),
                source_etag: String::new(),
            });
        }
    }
}
