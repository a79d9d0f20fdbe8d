//! An ingestion job as the projection knows it.

use serde::{Deserialize, Serialize};

use crate::event::{FailureKind, Selection};
use crate::time::Timestamp;
use crate::values::{ExternalKeyId, IngestionId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestionState {
    Queued,
    Fetching,
    Completed,
    Failed,
    Cancelled,
}

impl IngestionState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            IngestionState::Completed | IngestionState::Failed | IngestionState::Cancelled
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOutcome {
    pub path: String,
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    pub failure: Option<String>,
    /// `None` for a verified file.
    pub failure_kind: Option<FailureKind>,
    /// The source's version that was fetched (S3 ETag, DNAnexus file id); empty for a failed
    /// file.
    pub source_etag: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingestion {
    pub id: IngestionId,
    pub owner: UserId,
    pub external_key: ExternalKeyId,
    pub selection: Selection,
    pub destination: String,
    pub batch_id: String,
    pub state: IngestionState,
    pub requested_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub files_selected: Option<u64>,
    pub bytes_selected: Option<u64>,
    pub files: Vec<FileOutcome>,
    /// Files the job did not fetch because the store holds them in the same version
    /// (`IngestionFilesSkipped`), and their bytes.
    pub files_skipped: u64,
    pub bytes_skipped: u64,
    pub error: Option<String>,
    /// Why a failed or cancelled job ended (`None` while it runs and once it completed).
    pub failure_kind: Option<FailureKind>,
}
