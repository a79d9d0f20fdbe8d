//! A batch's manifest: every stored file with its size, SHA-256, source and lineage, and every
//! failed file with its reason. Served as JSON, and written into the batch folder as
//! `SHA256SUMS` (the exact `sha256sum` format, paths relative to the folder) and
//! `manifest.json`.
//!
//! Guarantees, and how they are kept:
//! - The manifest says what the log says: it is built from the job's own events
//!   (`IngestionFileFetched` carries size, SHA-256, the source's ETag or file id, the external
//!   key and the time; `IngestionFileFailed` the reason), never from the folder's contents.
//! - A reader of the batch folder sees a whole manifest file or none: each is written under a
//!   temporary name, fsynced, renamed into place, and the folder fsynced.
//! - Every finished batch gets its files: a task started with the job writes them when it ends,
//!   and `GET /v1/ingestions/{id}` writes them before it first reports the job finished (a
//!   restart in between, a job a restart's recovery ended), so a client that saw "finished"
//!   finds them on disk.
//! - A stored sample that is itself named `SHA256SUMS` or `manifest.json` is never replaced:
//!   that manifest file is then not written (the API still serves the manifest).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard};

use keyledger_domain::{
    Event, ExternalKeyId, Ingestion, IngestionId, IngestionState, Provider, Selection, Timestamp,
    UserId, ingestion_stream, public::hex,
};
use keyledger_vault::{Vault, decode_event, private_files};
use serde::Serialize;

/// The checksum file, as `sha256sum -c` reads it.
pub(crate) const SHA256SUMS: &str = "SHA256SUMS";
pub(crate) const MANIFEST_JSON: &str = "manifest.json";

/// Why a manifest could not be built or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    /// The log could not be read, or an event of the job not decoded.
    #[error("the job's events cannot be read: {0}")]
    Events(String),
    #[error("the manifest files cannot be written: {0}")]
    Write(#[from] std::io::Error),
}

/// What one batch holds and where each file came from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Manifest {
    pub ingestion: IngestionId,
    pub owner: UserId,
    pub batch_id: String,
    /// The batch folder, relative to the sample store's root: `<destination>/<batch id>`.
    pub store_path: String,
    pub provider: Provider,
    pub selection: Selection,
    pub state: IngestionState,
    pub requested_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Stored files, by path.
    pub files: Vec<StoredFile>,
    /// Files that were not stored, by path.
    pub failed: Vec<FailedFile>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StoredFile {
    /// Relative to the batch folder.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub source: Source,
    /// The external key the file was fetched with.
    pub external_key: ExternalKeyId,
    pub fetched_at: Timestamp,
    pub ingestion: IngestionId,
}

/// Where a file was fetched from, pinned to the version that was fetched.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Source {
    /// `key` is the object key: the prefix's folder followed by the stored path.
    S3 {
        bucket: String,
        key: String,
        etag: String,
    },
    Dnanexus {
        project: String,
        file_id: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailedFile {
    pub path: String,
    pub reason: String,
    pub failed_at: Timestamp,
}

impl Manifest {
    /// The manifest of `job`, from its events. `first_seq` is where they start when known (a
    /// job started by this process); otherwise the log is searched by time, and read from its
    /// start should that miss the job's first event. Blocking: it reads the log.
    pub fn build(
        vault: &Vault,
        job: &Ingestion,
        first_seq: Option<u64>,
    ) -> Result<Manifest, ManifestError> {
        let from = first_seq.unwrap_or_else(|| search_start(vault, job.requested_at));
        let mut events = JobEvents::read(vault, job, from)?;
        if !events.saw_request && from > 1 {
            events = JobEvents::read(vault, job, 1)?;
        }
        let JobEvents {
            mut files,
            mut failed,
            ..
        } = events;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        failed.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest {
            ingestion: job.id.clone(),
            owner: job.owner.clone(),
            batch_id: job.batch_id.clone(),
            store_path: format!("{}/{}", job.destination, job.batch_id),
            provider: job.selection.provider(),
            selection: job.selection.clone(),
            state: job.state,
            requested_at: job.requested_at,
            finished_at: job.finished_at,
            files,
            failed,
        })
    }

    /// Writes `SHA256SUMS` and `manifest.json` into the batch folder (created if no file was
    /// stored), each atomically, skipping a name a stored sample already has. Blocking.
    pub fn write_into(&self, batch_dir: &Path) -> Result<(), ManifestError> {
        private_files::create_dir_all(batch_dir)?;
        for (name, content) in self.files_to_write()? {
            write_atomically(batch_dir, name, &content)?;
        }
        File::open(batch_dir)?.sync_all()?;
        Ok(())
    }

    /// `SHA256SUMS` and `manifest.json` with their contents, without a name a stored sample
    /// already has (for an `s3://` store, where they are written as objects).
    pub fn files_to_write(&self) -> Result<Vec<(&'static str, Vec<u8>)>, ManifestError> {
        let taken = |name: &str| self.files.iter().any(|file| file.path == name);
        let sums = sha256sums(
            self.files
                .iter()
                .map(|file| (file.path.as_str(), file.sha256.as_str())),
        );
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut out = Vec::new();
        for (name, content) in [(SHA256SUMS, sums.into_bytes()), (MANIFEST_JSON, json)] {
            if taken(name) {
                tracing::warn!(batch = %self.batch_id, name, "a stored sample has this name; the manifest file is not written");
                continue;
            }
            out.push((name, content));
        }
        Ok(out)
    }
}

/// Per job known to this process: where its events start, and its manifest files' one write.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    first_seq: Option<u64>,
    done: Arc<tokio::sync::OnceCell<()>>,
}

fn writes() -> MutexGuard<'static, HashMap<IngestionId, Writes>> {
    static WRITES: OnceLock<Mutex<HashMap<IngestionId, Writes>>> = OnceLock::new();
    WRITES.get_or_init(Mutex::default).lock()
}

/// Notes where a new job's events start, so its manifest is read from there, not from seq 1.
pub(crate) fn job_started(id: &IngestionId, first_seq: u64) {
    writes().entry(id.clone()).or_insert(Writes {
        first_seq: Some(first_seq),
        done: Arc::default(),
    });
}

/// The job's write: every caller awaits the same one, so whoever returns after it finds the
/// files on disk (or the write failed and was logged). A finished job's events never change, so
/// one write per process is enough.
pub(crate) fn write_for(id: &IngestionId) -> Writes {
    writes()
        .entry(id.clone())
        .or_insert(Writes {
            first_seq: None,
            done: Arc::default(),
        })
        .clone()
}

/// The job has not ended yet: its manifest is not written, and a later call tries again.
#[derive(Debug)]
pub(crate) struct NotFinished;

impl Writes {
    /// Runs `write` unless it already ran to its end (written, or failed and logged).
    pub async fn once<F: Future<Output = Result<(), NotFinished>>>(
        &self,
        write: impl FnOnce(Option<u64>) -> F,
    ) {
        let first_seq = self.first_seq;
        let _ = self.done.get_or_try_init(|| write(first_seq)).await;
    }
}

/// What a job's events say about its files.
#[derive(Debug, Default)]
struct JobEvents {
    files: Vec<StoredFile>,
    failed: Vec<FailedFile>,
    /// Whether the job's first event (`IngestionRequested`) was among those read.
    saw_request: bool,
}

impl JobEvents {
    /// Reads the log from `from` to the job's last event (or the head), keeping its events.
    fn read(vault: &Vault, job: &Ingestion, from: u64) -> Result<JobEvents, ManifestError> {
        let stream = ingestion_stream(&job.id);
        let mut found = JobEvents::default();
        let mut events = vault.log().read_from(from.max(1));
        while let Some(envelope) = events.next_view() {
            let envelope = envelope.map_err(|error| ManifestError::Events(error.to_string()))?;
            if envelope.stream != stream {
                continue;
            }
            match decode_event(envelope.body).map_err(ManifestError::Events)? {
                Event::IngestionRequested { .. } => found.saw_request = true,
                Event::IngestionFileFetched {
                    path,
                    size,
                    sha256,
                    source_etag,
                    external_key,
                    at,
                    ..
                } => found.files.push(StoredFile {
                    source: source_of(&job.selection, &path, source_etag),
                    path,
                    size,
                    sha256: hex(&sha256),
                    external_key,
                    fetched_at: at,
                    ingestion: job.id.clone(),
                }),
                Event::IngestionFileFailed {
                    path, reason, at, ..
                } => found.failed.push(FailedFile {
                    path,
                    reason,
                    failed_at: at,
                }),
                Event::IngestionCompleted { .. }
                | Event::IngestionFailed { .. }
                | Event::IngestionCancelled { .. } => break,
                _ => {}
            }
        }
        Ok(found)
    }
}

/// A position at or before a job's first event, found without reading the log through: the
/// first event recorded less than a minute before the job was requested, by binary search over
/// the events' times (which grow with their positions under one clock; where they do not,
/// [`Manifest::build`] notices the miss and reads from the start).
fn search_start(vault: &Vault, requested_at: Timestamp) -> u64 {
    let target = requested_at.as_millis().saturating_sub(60_000);
    let time_at = |seq: u64| {
        vault
            .log()
            .get(seq)
            .ok()
            .flatten()
            .map_or(i64::MAX, |envelope| envelope.time_ms)
    };
    // The answer lies in low..=high: the first seq whose time is not before the target.
    let (mut low, mut high) = (1, vault.log().head().0.max(1));
    while low < high {
        let middle = low + (high - low) / 2;
        if time_at(middle) < target {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// `sha256sum`'s output for `(path, lowercase hex)` pairs, in the order given: `<hex>  <path>`
/// per line. A path with a backslash or a line break is escaped as GNU coreutils does (the
/// line starts with `\`), so `sha256sum -c` reads every name back exactly.
pub fn sha256sums<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (path, sha256) in files {
        if path.contains(['\\', '\n', '\r']) {
            let escaped = path
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r");
            out.push_str(&format!("\\{sha256}  {escaped}\n"));
        } else {
            out.push_str(&format!("{sha256}  {path}\n"));
        }
    }
    out
}

/// The S3 object key or DNAnexus file a stored path came from (see `keyledger_ingest::s3`:
/// S3 paths are relative to the prefix's folder; DNAnexus records the file id).
fn source_of(selection: &Selection, path: &str, source_etag: String) -> Source {
    match selection {
        Selection::Aws { bucket, prefix, .. } => {
            let folder = prefix.rfind('/').map_or("", |end| &prefix[..=end]);
            Source::S3 {
                bucket: bucket.clone(),
                key: format!("{folder}{path}"),
                etag: source_etag,
            }
        }
        Selection::Dnanexus { project, .. } => Source::Dnanexus {
            project: project.clone(),
            file_id: source_etag,
        },
    }
}

/// Temporary name, fsync, rename. Each write has its own temporary name, so two writers of the
/// same (identical) manifest never interleave.
fn write_atomically(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let temporary: PathBuf = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = private_files::create(&temporary)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&temporary, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sums_lines_are_what_sha256sum_prints() {
        let check = |files: &[(&str, &str)], expect: &str| {
            assert_eq!(sha256sums(files.iter().copied()), expect);
        };
        check(&[], "");
        check(
            &[("a.csv", "ab"), ("d/b c.csv", "cd")],
            "ab  a.csv\ncd  d/b c.csv\n",
        );
        check(&[(r"a\b", "ef")], "\\ef  a\\\\b\n");
    }
}
