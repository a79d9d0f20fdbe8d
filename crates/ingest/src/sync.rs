//! Incremental sync: which listed files the store already holds in the same version from the
//! same source, so that a job skips them (recorded once as `IngestionFilesSkipped`).
//!
//! A file is the same when an earlier job of the same owner over the same container (bucket,
//! project) stored the same remote file (key; folder path) with the same size and:
//! - S3: the same ETag, when the listing gives one; when it gives none (some S3-compatible
//!   stores), an object last modified before the earlier job was requested — what `aws s3 sync`
//!   compares, and sound because a fetch is pinned to the version it started on;
//! - DNAnexus: the same file id (closed files never change; a new upload is a new id).
//!
//! A changed file is fetched as a new version into the new batch; its earlier versions stay
//! where they are, and `GET /v1/samples?path=…` shows both.

use std::collections::HashMap;

use keyledger_domain::{Ingestion, IngestionId, Selection, State, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use crate::dnanexus::normalize_folder;
use crate::remote::{Listed, RemoteFile};
use crate::s3::prefix_folder;

/// How a job starts. `Default`: incremental (skip what the store holds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Fetch every selected file, even those the store already holds in the same version.
    pub force: bool,
}

/// The newest stored version of each remote file of the container, from earlier jobs.
#[derive(Debug, Default)]
pub(crate) struct Held {
    versions: HashMap<String, Version>,
    /// A DNAnexus project: versions are file ids, never empty.
    dnanexus: bool,
}

/// A listed file as the rule compares it: what an external worker sends the vault, which
/// answers with the same rule as an embedded job's (decision 0033).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedVersion {
    /// The remote file: the S3 key, or the DNAnexus `/folder/name`.
    pub remote_path: String,
    pub size: u64,
    /// The S3 ETag or the DNAnexus file id; empty when the listing gave none.
    pub etag: String,
    /// S3: when the object was last modified (milliseconds since the epoch), if listed.
    #[serde(default)]
    pub last_modified_ms: Option<i64>,
}

impl ListedVersion {
    pub fn of(file: &RemoteFile) -> ListedVersion {
        let (remote_path, last_modified_ms) = match &file.listed {
            Listed::S3(object) => (object.path.clone(), object.location.last_modified_ms),
            Listed::Dnanexus(found) => (found.path.clone(), None),
        };
        ListedVersion {
            remote_path,
            size: file.size,
            etag: file.etag.clone(),
            last_modified_ms,
        }
    }
}

/// Which of `files` (listed by a worker for `job`) the store already holds in the same version
/// from the same source: their indices, to skip. None when the job is forced. The one rule,
/// for embedded jobs and external workers alike.
pub fn unchanged(state: &State, job: &Ingestion, files: &[ListedVersion]) -> Vec<usize> {
    if state.sync_forced(&job.id) {
        return Vec::new();
    }
    let held = Held::of(state, &job.owner, &job.selection, &job.id);
    files
        .iter()
        .enumerate()
        .filter(|(_, file)| held.holds_version(file))
        .map(|(index, _)| index)
        .collect()
}

#[derive(Clone, Debug)]
struct Version {
    size: u64,
    etag: String,
    requested_at: Timestamp,
}

impl Held {
    /// What `owner`'s earlier jobs over `selection`'s container stored.
    pub fn of(state: &State, owner: &UserId, selection: &Selection, this: &IngestionId) -> Held {
        let mut versions: HashMap<String, Version> = HashMap::new();
        for job in state.ingestions() {
            if &job.id == this || &job.owner != owner || !same_container(&job.selection, selection)
            {
                continue;
            }
            for file in job.files.iter().filter(|file| file.sha256.is_some()) {
                let version = Version {
                    size: file.size,
                    etag: file.source_etag.clone(),
                    requested_at: job.requested_at,
                };
                versions
                    .entry(remote_key(&job.selection, &file.path))
                    .and_modify(|held| {
                        if held.requested_at < version.requested_at {
                            *held = version.clone();
                        }
                    })
                    .or_insert(version);
            }
        }
        Held {
            versions,
            dnanexus: matches!(selection, Selection::Dnanexus { .. }),
        }
    }

    /// Whether the store holds `file` (as listed) in the same version.
    pub fn holds(&self, file: &RemoteFile) -> bool {
        self.holds_version(&ListedVersion::of(file))
    }

    /// [`Held::holds`] for a file as a worker listed it.
    pub fn holds_version(&self, file: &ListedVersion) -> bool {
        let Some(held) = self.versions.get(&file.remote_path) else {
            return false;
        };
        if held.size != file.size {
            return false;
        }
        if self.dnanexus {
            return !file.etag.is_empty() && held.etag == file.etag;
        }
        if !file.etag.is_empty() {
            return held.etag == file.etag;
        }
        file.last_modified_ms
            .is_some_and(|modified| modified < held.requested_at.as_millis())
    }
}

/// The remote file a stored path of a job came from: the S3 key, or the DNAnexus
/// `/folder/name`.
fn remote_key(selection: &Selection, path: &str) -> String {
    match selection {
        Selection::Aws { prefix, .. } => format!("{}{path}", prefix_folder(prefix)),
        Selection::Dnanexus { folder, .. } => {
            format!("{}/{path}", normalize_folder(folder).trim_end_matches('/'))
        }
    }
}

fn same_container(a: &Selection, b: &Selection) -> bool {
    match (a, b) {
        (Selection::Aws { bucket: x, .. }, Selection::Aws { bucket: y, .. }) => x == y,
        (Selection::Dnanexus { project: x, .. }, Selection::Dnanexus { project: y, .. }) => x == y,
        _ => false,
    }
}
