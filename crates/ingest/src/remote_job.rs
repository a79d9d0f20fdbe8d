//! A job run by a worker process for a vault elsewhere (decision 0025): the same list → fetch →
//! verify → store as an embedded job, but every outcome is reported to the vault through a
//! [`JobHost`] (the worker's HTTP client), which may refuse it once the lease ended.
//!
//! Guarantees, and how:
//! - A file is in the store only if the vault recorded it: it is renamed into place after it
//!   verified, then reported; a refused report removes it again. Files a dead worker renamed
//!   into place without a report are removed when the job resumes.
//! - A resumed job (redelivered after its worker died) skips every file the vault already
//!   recorded; the vault skips any it is told twice.
//! - The lease ends (key deleted, expired or rotated, job cancelled or handed on): the next
//!   report is refused, so the job stops within one file, and reports why.
//! - Files of one job are fetched at once, as many as an embedded job fetches
//!   (`files_in_parallel`, `small_files_in_parallel`); each is reported on its own, so the
//!   reports stay idempotent per file; a worker runs several jobs at once too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use keyledger_connect::PartialFile;
use keyledger_domain::{FailureKind, IngestionId, Selection};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::IngestConfig;
use crate::job::truncate;
use crate::remote::{Fetched, RemoteFile, SourceErrorKind};
use crate::shared::blocking;
use crate::source::SampleSource;
use crate::store::object::ObjectTarget;
use crate::store::{PathClaims, Store, sanitize_remote_path};
use crate::sync::ListedVersion;
use crate::wire::{MAX_UNCHANGED_FILES, ReportItem};

/// The most a request asking which files are unchanged carries of remote paths, in bytes: well
/// under the API's body limit with the other fields.
const UNCHANGED_PATH_BYTES: usize = 24 * 1024;

/// Why the vault did not record a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The lease ended: the job must stop; the sentence says why.
    Ended(String),
    /// The vault could not be reached or answered with an error: try again later.
    Unavailable(String),
}

/// Where a remote job's outcomes go: the vault, over the worker's authenticated connection.
pub trait JobHost: Send + Sync {
    /// Records `items` (all or none).
    fn report(
        &self,
        items: Vec<ReportItem>,
    ) -> impl std::future::Future<Output = Result<(), Refused>> + Send;

    /// Which of `files` the store already holds in the same version from the same source
    /// (the vault's answer, by the embedded jobs' rule): their indices. Records nothing.
    fn unchanged(
        &self,
        files: Vec<ListedVersion>,
    ) -> impl std::future::Future<Output = Result<Vec<usize>, Refused>> + Send;
}

/// One job as a worker runs it.
#[derive(Debug)]
pub struct RemoteJob {
    pub id: IngestionId,
    pub selection: Selection,
    pub destination: String,
    pub batch_id: String,
    /// The listing is already recorded.
    pub listed: bool,
    /// Paths that already have their outcome.
    pub recorded: HashSet<String>,
}

/// How a remote job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// `IngestionCompleted` (or `IngestionFailed` because no file could be stored) is recorded.
    Finished { failed: bool },
    /// The lease ended; the job stopped (its failure reported when the vault still took it).
    Ended(String),
    /// Stopped on request (a draining worker): hand the job back.
    Stopped,
    /// The vault could not take a report: hand the job back.
    Unavailable(String),
}

/// What a job fetched in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteTally {
    pub files: u64,
    pub bytes: u64,
    pub failed: u64,
    /// Files not fetched: the store already holds them in the same version.
    pub skipped: u64,
}

impl RemoteJob {
    /// Runs the job to its end; `cancel` stops it between files and inside a transfer.
    pub async fn run<H: JobHost>(
        &self,
        host: &H,
        source: &SampleSource,
        store: &Arc<Store>,
        config: &IngestConfig,
        cancel: &CancellationToken,
    ) -> (RemoteOutcome, RemoteTally) {
        let mut tally = RemoteTally::default();
        let outcome = self
            .execute(host, source, store, config, cancel, &mut tally)
            .await;
        let (store, id) = (Arc::clone(store), self.id.clone());
        if let Err(error) = blocking(move || store.remove_partial_dir(&id)).await {
            tracing::warn!(%error, "could not remove the job's partial files");
        }
        (outcome, tally)
    }

    async fn execute<H: JobHost>(
        &self,
        host: &H,
        source: &SampleSource,
        store: &Arc<Store>,
        config: &IngestConfig,
        cancel: &CancellationToken,
        tally: &mut RemoteTally,
    ) -> RemoteOutcome {
        let batch_dir = store.batch_dir(&self.destination, &self.batch_id);
        let prepared = match self.remove_left_over(store).await {
            Ok(()) => {
                let (store, id) = (Arc::clone(store), self.id.clone());
                blocking(move || store.prepare_job(&id)).await
            }
            Err(error) => Err(error),
        };
        let partial_dir = match prepared {
            Ok(dir) => dir,
            Err(error) => {
                let reason = format!("the sample store cannot be used: {error}");
                return self.fail(host, reason, FailureKind::Storage).await;
            }
        };
        let listed = tokio::select! {
            biased;
            () = cancel.cancelled() => return RemoteOutcome::Stopped,
            listed = source.list(&self.selection) => listed,
        };
        let files = match listed {
            Ok(files) => files,
            Err(error) if error.kind == SourceErrorKind::Cancelled => {
                return RemoteOutcome::Stopped;
            }
            Err(error) => {
                let kind = error.failure_kind();
                return self
                    .fail(host, format!("listing failed: {error}"), kind)
                    .await;
            }
        };
        let selected = files.len() as u64;
        let mut first = Vec::new();
        if !self.listed {
            let bytes = files.iter().map(|file| file.size).sum();
            first.push(ReportItem::Listed {
                files: selected,
                bytes,
            });
        }
        let mut claims = PathClaims::default();
        let mut planned = Vec::with_capacity(files.len());
        for file in files {
            match sanitize_remote_path(&file.path)
                .and_then(|path| claims.claim(&path).map(|()| path))
            {
                Ok(path) if self.recorded.contains(&path) => {}
                Ok(path) => planned.push((path, file)),
                Err(reason) if self.recorded.contains(&file.path) => drop(reason),
                Err(reason) => first.push(ReportItem::FileFailed {
                    path: file.path.chars().take(1024).collect(),
                    reason,
                    failure_kind: FailureKind::Storage,
                }),
            }
        }
        // Incremental sync (decision 0033): the vault says which the store already holds.
        let unchanged = match self.unchanged(host, &planned).await {
            Ok(unchanged) => unchanged,
            Err(Refused::Ended(reason)) => return self.ended(host, reason).await,
            Err(Refused::Unavailable(reason)) => return RemoteOutcome::Unavailable(reason),
        };
        if !unchanged.is_empty() {
            let mut index = 0;
            let mut bytes = 0;
            planned.retain(|(_, file)| {
                let skip = unchanged.contains(&index);
                index += 1;
                if skip {
                    bytes += file.size;
                }
                !skip
            });
            tally.skipped = unchanged.len() as u64;
            let at = usize::from(!self.listed);
            first.insert(
                at,
                ReportItem::Skipped {
                    files: tally.skipped,
                    bytes,
                },
            );
            tracing::info!(files = tally.skipped, bytes, "skipped: already stored");
        }
        tracing::info!(files = selected, to_fetch = planned.len(), "listed");
        if let Some(stop) = self.report(host, first).await {
            return stop;
        }
        // Files of the job at once, as an embedded job fetches them: at most
        // `small_files_in_parallel` small files or `files_in_parallel` large ones.
        let capacity = config.small_files_in_parallel.max(1);
        let large_weight = (capacity / config.files_in_parallel.max(1)).max(1);
        let permits = Arc::new(Semaphore::new(capacity));
        // The first file that must stop the job stops the others too.
        let files_cancel = cancel.child_token();
        let shared_tally = Mutex::new(*tally);
        let mut running = FuturesUnordered::new();
        let mut stop = None;
        let (total, mut started) = (planned.len(), 0);
        for (index, (path, file)) in planned.into_iter().enumerate() {
            if files_cancel.is_cancelled() {
                break;
            }
            let weight = if file.size > config.small_file_bytes {
                large_weight
            } else {
                1
            };
            let permit = loop {
                tokio::select! {
                    biased;
                    Some(step) = running.next(), if !running.is_empty() => {
                        if let Some(outcome) = step {
                            stop.get_or_insert(outcome);
                            files_cancel.cancel();
                        }
                    }
                    permit = Arc::clone(&permits).acquire_many_owned(weight as u32) => break permit.ok(),
                }
            };
            let Some(permit) = permit else { break };
            if files_cancel.is_cancelled() {
                break;
            }
            let partial = partial_dir.join(format!("{index}.partial"));
            let (batch_dir, files_cancel, shared_tally) =
                (&batch_dir, &files_cancel, &shared_tally);
            running.push(async move {
                let step = self
                    .one_file(
                        host,
                        source,
                        store,
                        config,
                        files_cancel,
                        batch_dir,
                        &path,
                        &file,
                        &partial,
                        shared_tally,
                    )
                    .await;
                drop(permit);
                step
            });
            started += 1;
        }
        while let Some(step) = running.next().await {
            if let Some(outcome) = step {
                stop.get_or_insert(outcome);
                files_cancel.cancel();
            }
        }
        *tally = *shared_tally.lock();
        if let Some(outcome) = stop {
            return outcome;
        }
        // Stopped (a drain) before every file had started: hand the rest on.
        if started < total {
            return RemoteOutcome::Stopped;
        }
        if selected > 0
            && tally.files == 0
            && tally.skipped == 0
            && self.recorded.is_empty()
            && tally.failed > 0
        {
            let reason = format!("none of the {selected} selected files could be stored");
            return self.fail(host, reason, FailureKind::Internal).await;
        }
        match host.report(vec![ReportItem::Completed]).await {
            Ok(()) => RemoteOutcome::Finished { failed: false },
            Err(refused) => stopped_by(refused),
        }
    }

    /// The indices in `planned` of files the store already holds, asked in requests that stay
    /// under the API's body limit.
    async fn unchanged<H: JobHost>(
        &self,
        host: &H,
        planned: &[(String, RemoteFile)],
    ) -> Result<std::collections::BTreeSet<usize>, Refused> {
        let mut unchanged = std::collections::BTreeSet::new();
        let mut start = 0;
        while start < planned.len() {
            let (mut chunk, mut bytes) = (Vec::new(), 0);
            for (_, file) in &planned[start..] {
                let version = ListedVersion::of(file);
                bytes += version.remote_path.len() + version.etag.len();
                if !chunk.is_empty()
                    && (chunk.len() == MAX_UNCHANGED_FILES || bytes > UNCHANGED_PATH_BYTES)
                {
                    break;
                }
                chunk.push(version);
            }
            let asked = chunk.len();
            for index in host.unchanged(chunk).await? {
                if index < asked {
                    unchanged.insert(start + index);
                }
            }
            start += asked;
        }
        Ok(unchanged)
    }

    /// Removes what workers that died left of the job in the store and its partial area: the
    /// delivery that fails a job no worker finished (`max_deliver`) does it instead of running
    /// the job, so nothing partial stays.
    pub async fn abandon(&self, store: &Arc<Store>) -> std::io::Result<()> {
        self.remove_left_over(store).await?;
        let (store, id) = (Arc::clone(store), self.id.clone());
        blocking(move || store.remove_partial_dir(&id)).await
    }

    /// Removes files renamed into place (or objects stored) without a report by workers that
    /// died: a resumed job does it first.
    async fn remove_left_over(&self, store: &Arc<Store>) -> std::io::Result<()> {
        let (shared, batch_dir, keep) = (
            Arc::clone(store),
            store.batch_dir(&self.destination, &self.batch_id),
            self.recorded.clone(),
        );
        let on_disk = store.object().is_none();
        blocking(move || {
            shared.prepare()?;
            // Renamed into place by a worker that died before its report: not recorded.
            if on_disk {
                shared.remove_unrecorded(&batch_dir, &keep)?;
            }
            Ok(())
        })
        .await?;
        if let Some(object) = store.object() {
            object
                .remove_unrecorded(&self.destination, &self.batch_id, &self.recorded)
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Fetches, verifies, stores and reports one file; `Some` when the job must stop.
    #[allow(clippy::too_many_arguments)]
    async fn one_file<H: JobHost>(
        &self,
        host: &H,
        source: &SampleSource,
        store: &Arc<Store>,
        config: &IngestConfig,
        cancel: &CancellationToken,
        batch_dir: &Path,
        path: &str,
        file: &RemoteFile,
        partial: &Path,
        tally: &Mutex<RemoteTally>,
    ) -> Option<RemoteOutcome> {
        let attempts = config.file_attempts.max(1);
        let mut attempt = 0;
        let fetched = loop {
            attempt += 1;
            let result = source.fetch(file, partial, &|_| {}, cancel).await;
            match result {
                Err(error)
                    if error.kind == SourceErrorKind::Transient
                        && attempt < attempts
                        && !cancel.is_cancelled() =>
                {
                    tracing::warn!(path, attempt, error = %error, "file fetch failed, trying again");
                }
                other => break other,
            }
        };
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                discard(partial).await;
                if cancel.is_cancelled() || error.kind == SourceErrorKind::Cancelled {
                    return Some(RemoteOutcome::Stopped);
                }
                let kind = error.failure_kind();
                if error.kind == SourceErrorKind::CredentialsRejected {
                    return Some(self.fail(host, error.message, kind).await);
                }
                tally.lock().failed += 1;
                let item = ReportItem::FileFailed {
                    path: path.to_owned(),
                    reason: truncate(error.message),
                    failure_kind: kind,
                };
                return self.report(host, vec![item]).await;
            }
        };
        let published = match store.object() {
            Some(object) => {
                let placed = self
                    .publish_object(object, partial, path, &fetched)
                    .await
                    .map_err(std::io::Error::other);
                discard(partial).await;
                Ok(Some(placed))
            }
            None => {
                let items = vec![(partial.to_path_buf(), path.to_owned())];
                let (store, batch_dir) = (Arc::clone(store), batch_dir.to_path_buf());
                blocking(move || Ok(store.publish_all(&batch_dir, &items)))
                    .await
                    .map(|mut results| results.pop().map(|result| result.map(Placed::File)))
            }
        };
        let target = match published {
            Ok(Some(Ok(target))) => target,
            Ok(Some(Err(error))) | Err(error) => {
                discard(partial).await;
                tally.lock().failed += 1;
                let item = ReportItem::FileFailed {
                    path: path.to_owned(),
                    reason: truncate(format!("the file could not be stored: {error}")),
                    failure_kind: FailureKind::Storage,
                };
                return self.report(host, vec![item]).await;
            }
            Ok(None) => return Some(RemoteOutcome::Unavailable("nothing published".into())),
        };
        let item = ReportItem::fetched(
            path.to_owned(),
            fetched.size,
            &fetched.sha256,
            fetched.source_etag.clone(),
        );
        match host.report(vec![item]).await {
            Ok(()) => {
                {
                    let mut tally = tally.lock();
                    tally.files += 1;
                    tally.bytes += fetched.size;
                }
                tracing::info!(path, size = fetched.size, "file stored");
                None
            }
            Err(refused) => {
                // The store must not hold a file the log does not name.
                let removed = match (target, store.object()) {
                    (Placed::Object(key), Some(object)) => object.remove(&key).await,
                    (Placed::File(target), _) => blocking(move || std::fs::remove_file(&target))
                        .await
                        .map_err(|error| error.to_string()),
                    (Placed::Object(_), None) => Ok(()),
                };
                if let Err(error) = removed {
                    tracing::error!(path, %error, "could not remove a file whose report was refused");
                }
                Some(match refused {
                    Refused::Ended(reason) => self.ended(host, reason).await,
                    Refused::Unavailable(reason) => RemoteOutcome::Unavailable(reason),
                })
            }
        }
    }

    /// Sends a verified partial file to the object store (decision 0029).
    async fn publish_object(
        &self,
        object: &ObjectTarget,
        partial: &Path,
        path: &str,
        fetched: &Fetched,
    ) -> Result<Placed, String> {
        let key = object.key(&self.destination, &self.batch_id, path)?;
        object
            .publish(partial, &key, fetched.size, &fetched.sha256)
            .await?;
        Ok(Placed::Object(key))
    }

    /// Reports `items`; `Some` when the job must stop.
    async fn report<H: JobHost>(&self, host: &H, items: Vec<ReportItem>) -> Option<RemoteOutcome> {
        if items.is_empty() {
            return None;
        }
        match host.report(items).await {
            Ok(()) => None,
            Err(Refused::Ended(reason)) => Some(self.ended(host, reason).await),
            Err(Refused::Unavailable(reason)) => Some(RemoteOutcome::Unavailable(reason)),
        }
    }

    /// The lease ended: records the job as failed with the reason, if the vault still takes
    /// it from this lease (not when the job was handed to another worker or finished).
    async fn ended<H: JobHost>(&self, host: &H, reason: String) -> RemoteOutcome {
        tracing::warn!(reason = %reason, "the job's lease ended; stopping");
        let item = ReportItem::Failed {
            reason: truncate(reason.clone()),
            failure_kind: FailureKind::Cancelled,
        };
        match host.report(vec![item]).await {
            Ok(()) => RemoteOutcome::Finished { failed: true },
            Err(_) => RemoteOutcome::Ended(reason),
        }
    }

    async fn fail<H: JobHost>(&self, host: &H, reason: String, kind: FailureKind) -> RemoteOutcome {
        tracing::warn!(reason = %reason, %kind, "ingestion failed");
        let item = ReportItem::Failed {
            reason: truncate(reason),
            failure_kind: kind,
        };
        match host.report(vec![item]).await {
            Ok(()) => RemoteOutcome::Finished { failed: true },
            Err(refused) => stopped_by(refused),
        }
    }
}

/// Where a verified file went.
enum Placed {
    File(PathBuf),
    Object(object_store::path::Path),
}

fn stopped_by(refused: Refused) -> RemoteOutcome {
    match refused {
        Refused::Ended(reason) => RemoteOutcome::Ended(reason),
        Refused::Unavailable(reason) => RemoteOutcome::Unavailable(reason),
    }
}

async fn discard(partial: &Path) {
    let partial = partial.to_path_buf();
    if let Err(error) = blocking(move || PartialFile::new(partial).discard()).await {
        tracing::warn!(%error, "could not delete a partial file");
    }
}
