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

use keyledger_domain::{IngestionId, Selection, State, Timestamp, UserId};

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
        Held { versions }
    }

    /// Whether the store holds `file` (as listed) in the same version.
    pub fn holds(&self, file: &RemoteFile) -> bool {
        let key = match &file.listed {
            Listed::S3(object) => object.path.clone(),
            Listed::Dnanexus(found) => found.path.clone(),
        };
        let Some(held) = self.versions.get(&key) else {
            return false;
        };
        if held.size != file.size {
            return false;
        }
        match &file.listed {
            Listed::S3(_) if !file.etag.is_empty() => held.etag == file.etag,
            Listed::S3(object) => object
                .location
                .last_modified_ms
                .is_some_and(|modified| modified < held.requested_at.as_millis()),
            Listed::Dnanexus(_) => !file.etag.is_empty() && held.etag == file.etag,
        }
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
