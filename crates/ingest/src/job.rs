//! One ingestion job, from its slot to its final event: lease, list, fetch with bounded
//! parallelism, publish, record, clean up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyledger_connect::PartialFile;

use keyledger_domain::{
    DomainError, ExternalKeyId, FailureKind, IngestionId, IngestionProgress, IngestionState,
    KeyStatus, Selection,
};
use keyledger_vault::VaultError;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::live::{LiveJob, Phase, RunningFile, Stop};
use crate::recorder::{Interrupted, Recorder};
use crate::remote::{Fetched, RemoteFile, SourceError, SourceErrorKind};
use crate::shared::{Gauge, GaugeGuard, Shared, blocking};
use crate::source::{RoleUse, SampleSource, source_for_use};
use crate::store::{PathClaims, sanitize_remote_path};
use crate::sync::{Held, StartOptions};

/// Longest reason recorded in an event, in characters.
const MAX_REASON_CHARS: usize = 500;
/// Longest remote path recorded for a refused file, in characters.
const MAX_PATH_CHARS: usize = 1024;
/// First pause before a file is attempted again after a transient failure.
const FILE_RETRY_DELAY: Duration = Duration::from_millis(500);

/// What a job's final event says.
#[derive(Debug)]
enum Outcome {
    Completed,
    Failed(String, FailureKind),
    Cancelled,
    /// The end is already recorded (or cannot be).
    Nothing,
}

impl From<Interrupted> for Outcome {
    fn from(interrupted: Interrupted) -> Outcome {
        match interrupted {
            Interrupted::Finished => Outcome::Nothing,
            Interrupted::Vault(error) => Outcome::Failed(
                format!("the job's progress could not be recorded: {error}"),
                FailureKind::Storage,
            ),
        }
    }
}

/// A verified file in its partial file, waiting to be published and recorded.
#[derive(Debug)]
struct Ready {
    path: String,
    partial: PathBuf,
    fetched: Fetched,
}

/// How many verified files are published together: one directory fsync covers them all.
const PUBLISH_BATCH: usize = 64;

#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    selected: u64,
    fetched: u64,
    failed: u64,
    /// Selected files not fetched because the store holds them (not counted in `selected`).
    skipped: u64,
    first_failure: Option<(String, FailureKind)>,
}

impl Tally {
    fn fail(&mut self, reason: &str, kind: FailureKind) {
        self.failed += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some((reason.to_owned(), kind));
        }
    }
}

/// A job's fixed facts and shared context.
#[derive(Debug)]
pub(crate) struct Job {
    pub shared: Arc<Shared>,
    pub id: IngestionId,
    pub key: ExternalKeyId,
    pub selection: Selection,
    pub batch_dir: PathBuf,
    pub live: Arc<LiveJob>,
    /// Appends to the job's stream, one append at a time.
    pub recorder: Recorder,
    /// Files selected, stored and failed so far.
    pub tally: Mutex<Tally>,
    /// Whether to fetch files the store already holds in the same version.
    pub options: StartOptions,
}

impl Job {
    /// Runs the job to its end on the current task, then cleans up. The final event is recorded
    /// unless someone else already recorded one.
    pub async fn run(self: Arc<Self>, queued: GaugeGuard) {
        let span = tracing::info_span!("ingestion", id = %self.id, key = %self.key);
        async {
            let outcome = match self.execute(queued).await {
                Ok(outcome) | Err(outcome) => outcome,
            };
            self.finish(outcome).await;
        }
        .instrument(span)
        .await;
    }

    /// Records a failure for a job whose task died (a panic), and cleans up.
    pub async fn abandon(self: Arc<Self>, why: String) {
        self.finish(Outcome::Failed(why, FailureKind::Internal))
            .await;
    }

    async fn execute(self: &Arc<Self>, queued: GaugeGuard) -> Result<Outcome, Outcome> {
        let slot = tokio::select! {
            biased;
            () = self.live.cancel.cancelled() => return Ok(self.stopped_outcome()),
            slot = Arc::clone(&self.shared.slots).acquire_owned() => slot,
        };
        let Ok(_slot) = slot else {
            return Ok(Outcome::Failed(
                "the ingestion service is shutting down; start the ingestion again".to_owned(),
                FailureKind::Transient,
            ));
        };
        drop(queued);
        let _running = Gauge::enter(&self.shared, Gauge::Running);
        self.live.set_phase(Phase::Listing);
        let watching = CancellationToken::new();
        tokio::spawn(Arc::clone(self).watch(watching.clone()));
        let _stop_watching = watching.drop_guard();

        if let Some(stop) = self.standing() {
            self.live.request_stop(stop);
            return Ok(self.stopped_outcome());
        }
        // `_credential_hold` keeps the lease's data key alive until the job ends, however it
        // ends: a rotation meanwhile lets this job finish on the secret it started with.
        let (source, _credential_hold) = {
            let lease = match self.shared.vault.lease_external_key(&self.key) {
                Ok(lease) => lease,
                Err(VaultError::Domain(DomainError::NotActive { status, .. })) => {
                    return Ok(Outcome::Failed(
                        self.key_unusable(status),
                        FailureKind::Cancelled,
                    ));
                }
                Err(error) => {
                    return Ok(Outcome::Failed(
                        format!("the external key {} could not be opened: {error}", self.key),
                        FailureKind::Internal,
                    ));
                }
            };
            // The lease's credential is dropped here: the source keeps the only copy, for this
            // job only.
            let role_use = RoleUse {
                purpose: self.id.to_string(),
                scope: match &self.selection {
                    Selection::Aws { bucket, prefix, .. } => Some((bucket.clone(), prefix.clone())),
                    Selection::Dnanexus { .. } => None,
                },
                on_assumed: Some(crate::role::recording_hook(
                    self.shared.vault.clone(),
                    self.key.clone(),
                    Some(self.id.clone()),
                )),
            };
            match source_for_use(&lease, &self.shared.config, role_use) {
                Ok(source) => (Arc::new(source), lease.into_hold()),
                Err(error) => {
                    let kind = error.failure_kind();
                    return Ok(Outcome::Failed(error.message, kind));
                }
            }
        };
        self.record(IngestionProgress::KeyUsed).await?;
        // A role is assumed before anything is listed: a refusal (a trust policy without the
        // external ID) ends the job in STS's words.
        if let SampleSource::S3(s3) = source.as_ref()
            && let Err(error) = s3.assume_role_now().await
        {
            let kind = error.failure_kind();
            return Ok(Outcome::Failed(error.message, kind));
        }

        let listed = tokio::select! {
            biased;
            () = self.live.cancel.cancelled() => return Ok(self.stopped_outcome()),
            listed = source.list(&self.selection) => listed,
        };
        let files = match listed {
            Ok(files) => files,
            Err(error) if error.kind == SourceErrorKind::Cancelled => {
                return Ok(self.stopped_outcome());
            }
            Err(error) => {
                return Ok(Outcome::Failed(
                    self.listing_failed(&error),
                    error.failure_kind(),
                ));
            }
        };

        let selected = files.len() as u64;
        self.tally.lock().selected = selected;
        let mut claims = PathClaims::default();
        let mut planned = Vec::with_capacity(files.len());
        let mut refused = Vec::new();
        let bytes: u64 = files.iter().map(|file| file.size).sum();
        for file in files {
            match sanitize_remote_path(&file.path)
                .and_then(|path| claims.claim(&path).map(|()| path))
            {
                Ok(path) => planned.push((path, file)),
                Err(reason) => refused.push((file.path, reason)),
            }
        }
        tracing::info!(files = selected, bytes, refused = refused.len(), "listed");
        self.record(IngestionProgress::Listed {
            files: selected,
            bytes,
        })
        .await?;
        if !self.options.force {
            let held = self.shared.vault.read(|state| {
                let owner = state.ingestion(&self.id).map(|job| job.owner.clone());
                owner.map(|owner| Held::of(state, &owner, &self.selection, &self.id))
            });
            if let Some(held) = held {
                let before = planned.len();
                let mut skipped_bytes = 0;
                planned.retain(|(_, file)| {
                    let holds = held.holds(file);
                    if holds {
                        skipped_bytes += file.size;
                    }
                    !holds
                });
                let skipped = (before - planned.len()) as u64;
                if skipped > 0 {
                    tracing::info!(
                        files = skipped,
                        bytes = skipped_bytes,
                        "skipped: already stored"
                    );
                    {
                        let mut tally = self.tally.lock();
                        tally.selected = selected - skipped;
                        tally.skipped = skipped;
                    }
                    self.record(IngestionProgress::Skipped {
                        files: skipped,
                        bytes: skipped_bytes,
                    })
                    .await?;
                }
            }
        }
        for (path, reason) in refused {
            // The store refuses a name that would leave the batch folder.
            self.tally.lock().fail(&reason, FailureKind::Storage);
            self.shared.count_file_failed();
            self.record(IngestionProgress::FileFailed {
                path: path.chars().take(MAX_PATH_CHARS).collect(),
                reason,
                failure_kind: FailureKind::Storage,
            })
            .await?;
        }

        self.live.set_phase(Phase::Fetching);
        let _ = self.live.fetch_started.set(Instant::now());
        let partial_dir = {
            let store = Arc::clone(&self.shared);
            let id = self.id.clone();
            match blocking(move || store.store.prepare_job(&id)).await {
                Ok(dir) => dir,
                Err(error) => {
                    return Ok(Outcome::Failed(
                        format!("the sample store cannot hold partial files: {error}"),
                        FailureKind::Storage,
                    ));
                }
            }
        };
        self.fetch_all(source, planned, &partial_dir).await;

        let tally = self.tally.lock().clone();
        Ok(match self.live.stop_reason() {
            Some(_) => self.stopped_outcome(),
            // Files skipped because the store holds them count as stored.
            None if tally.selected > 0 && tally.fetched == 0 && tally.skipped == 0 => {
                let (first, kind) = tally
                    .first_failure
                    .unwrap_or_else(|| ("unknown".to_owned(), FailureKind::Internal));
                Outcome::Failed(
                    format!(
                        "none of the {} selected files could be stored; the first error: {first}",
                        tally.selected
                    ),
                    kind,
                )
            }
            None => Outcome::Completed,
        })
    }

    /// Fetches every planned file, at most `small_files_in_parallel` small files or
    /// `files_in_parallel` large ones at once, until done or stopped. Verified files go to the
    /// publisher, which stores and records them in batches while fetching goes on.
    async fn fetch_all(
        self: &Arc<Self>,
        source: Arc<SampleSource>,
        planned: Vec<(String, RemoteFile)>,
        partial_dir: &Path,
    ) {
        let config = &self.shared.config;
        let capacity = config.small_files_in_parallel.max(1);
        let large_weight = (capacity / config.files_in_parallel.max(1)).max(1);
        let permits = Arc::new(Semaphore::new(capacity));
        let (ready, queue) = mpsc::unbounded_channel();
        let publisher = tokio::spawn(Arc::clone(self).publish_loop(queue));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let absorb = |joined: Result<(), tokio::task::JoinError>| {
            if let Err(error) = joined {
                self.live.request_stop(Stop::Fatal(
                    format!("a file transfer stopped unexpectedly: {error}"),
                    FailureKind::Internal,
                ));
            }
        };
        for (index, (path, file)) in planned.into_iter().enumerate() {
            if self.live.cancel.is_cancelled() {
                break;
            }
            // Between files, the key must still be active and the job still wanted.
            if let Some(stop) = self.standing() {
                self.live.request_stop(stop);
                break;
            }
            let weight = if file.size > config.small_file_bytes {
                large_weight
            } else {
                1
            };
            let permit = tokio::select! {
                biased;
                () = self.live.cancel.cancelled() => break,
                permit = Arc::clone(&permits).acquire_many_owned(weight as u32) => permit,
            };
            let Ok(permit) = permit else { break };
            while let Some(joined) = tasks.try_join_next() {
                absorb(joined);
            }
            let partial = partial_dir.join(format!("{index}.partial"));
            tasks.spawn(Arc::clone(self).fetch_one(
                Arc::clone(&source),
                path,
                file,
                partial,
                permit,
                ready.clone(),
            ));
        }
        while let Some(joined) = tasks.join_next().await {
            absorb(joined);
        }
        drop(ready);
        if let Err(error) = publisher.await {
            self.live.request_stop(Stop::Fatal(
                format!("storing the fetched files stopped unexpectedly: {error}"),
                FailureKind::Internal,
            ));
        }
    }

    /// Fetches and verifies one file, then hands it to the publisher (or records its failure).
    async fn fetch_one(
        self: Arc<Self>,
        source: Arc<SampleSource>,
        path: String,
        file: RemoteFile,
        partial: PathBuf,
        permit: OwnedSemaphorePermit,
        ready: mpsc::UnboundedSender<Ready>,
    ) {
        let running = Arc::new(RunningFile {
            size: file.size,
            fetched: AtomicU64::new(0),
        });
        self.live
            .running
            .lock()
            .insert(path.clone(), Arc::clone(&running));
        let progress = |bytes: u64| {
            running.fetched.fetch_add(bytes, Ordering::Relaxed);
            self.live.transferred.fetch_add(bytes, Ordering::Relaxed);
        };
        let attempts = self.shared.config.file_attempts.max(1);
        let mut attempt = 0;
        let fetched = loop {
            attempt += 1;
            let result = source
                .fetch(&file, &partial, &progress, &self.live.cancel)
                .await;
            match result {
                Err(error)
                    if error.kind == SourceErrorKind::Transient
                        && attempt < attempts
                        && !self.live.cancel.is_cancelled() =>
                {
                    tracing::warn!(path = %path, attempt, error = %error, "file fetch failed, trying again");
                    let delay = FILE_RETRY_DELAY * attempt;
                    tokio::select! {
                        () = self.live.cancel.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                other => break other,
            }
        };
        // The transfer is over: the next file may start while this one is stored.
        drop(permit);
        match fetched {
            Ok(fetched) => {
                // Still shown as running until the publisher has stored it.
                let _ = ready.send(Ready {
                    path,
                    partial,
                    fetched,
                });
            }
            Err(error) => {
                self.live.running.lock().remove(&path);
                self.file_failed(&path, &partial, error).await;
            }
        }
    }

    /// Publishes verified files in batches (rename into place, one fsync per folder) and records
    /// each one's event after its batch is durable.
    async fn publish_loop(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Ready>) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            let files = std::mem::take(&mut batch);
            if self.live.cancel.is_cancelled() {
                // The partial area goes with the job.
                let mut running = self.live.running.lock();
                for ready in &files {
                    running.remove(&ready.path);
                }
                continue;
            }
            let items: Vec<(PathBuf, String, u64, [u8; 32])> = files
                .iter()
                .map(|ready| {
                    let (size, sha256) = (ready.fetched.size, ready.fetched.sha256);
                    (ready.partial.clone(), ready.path.clone(), size, sha256)
                })
                .collect();
            let published = {
                let shared = Arc::clone(&self.shared);
                let batch_dir = self.batch_dir.clone();
                blocking(move || Ok(shared.store.publish_verified(&batch_dir, &items))).await
            };
            let published = match published {
                Ok(published) => published,
                Err(error) => files
                    .iter()
                    .map(|_| Err(std::io::Error::other(error.to_string())))
                    .collect(),
            };
            let mut stored = Vec::with_capacity(files.len());
            for (ready, result) in files.into_iter().zip(published) {
                match result {
                    Ok(target) => stored.push((ready, target)),
                    Err(error) => {
                        self.live.running.lock().remove(&ready.path);
                        self.discard(&ready.partial).await;
                        let reason = format!("the file could not be stored: {error}");
                        self.record_file_failure(ready.path, reason, FailureKind::Storage)
                            .await;
                    }
                }
            }
            self.record_fetched(stored).await;
        }
    }

    /// Records the events of files renamed into place, in one append (all or none). Files whose
    /// events could not be recorded are removed again.
    async fn record_fetched(&self, stored: Vec<(Ready, PathBuf)>) {
        if stored.is_empty() {
            return;
        }
        let items = stored
            .iter()
            .map(|(ready, _)| IngestionProgress::FileFetched {
                path: ready.path.clone(),
                size: ready.fetched.size,
                sha256: ready.fetched.sha256,
                source_etag: ready.fetched.source_etag.clone(),
            })
            .collect();
        let recorded = self.recorder.record_all(&self.shared.vault, items).await;
        {
            let mut running = self.live.running.lock();
            let mut tally = self.tally.lock();
            for (ready, _) in &stored {
                running.remove(&ready.path);
                if recorded.is_ok() {
                    tally.fetched += 1;
                    self.shared.count_file_fetched(ready.fetched.size);
                }
            }
        }
        let Err(interrupted) = recorded else {
            return;
        };
        // The store must not hold a file the log does not name.
        let shared = Arc::clone(&self.shared);
        let removed = blocking(move || {
            for (ready, target) in stored {
                if let Err(error) = shared.store.remove_stored(&target) {
                    tracing::error!(path = %ready.path, %error, "could not remove a file whose event was not recorded");
                }
            }
            Ok(())
        })
        .await;
        if let Err(error) = removed {
            tracing::error!(%error, "could not remove files whose events were not recorded");
        }
        if let Interrupted::Vault(error) = interrupted {
            self.live.request_stop(Stop::Fatal(
                format!("the job's progress could not be recorded: {error}"),
                FailureKind::Storage,
            ));
        }
    }

    async fn file_failed(&self, path: &str, partial: &Path, error: SourceError) {
        self.discard(partial).await;
        if self.live.cancel.is_cancelled() || error.kind == SourceErrorKind::Cancelled {
            return;
        }
        let kind = error.failure_kind();
        if error.kind == SourceErrorKind::CredentialsRejected {
            self.live.request_stop(Stop::Fatal(error.message, kind));
            return;
        }
        tracing::warn!(path = %path, error = %error, "file failed");
        self.record_file_failure(path.to_owned(), error.message, kind)
            .await
    }

    async fn record_file_failure(&self, path: String, reason: String, kind: FailureKind) {
        let reason = truncate(reason);
        self.shared.count_file_failed();
        match self
            .record(IngestionProgress::FileFailed {
                path,
                reason: reason.clone(),
                failure_kind: kind,
            })
            .await
        {
            Ok(()) => self.tally.lock().fail(&reason, kind),
            Err(Interrupted::Finished) => {}
            Err(Interrupted::Vault(error)) => {
                self.live.request_stop(Stop::Fatal(
                    format!("the job's progress could not be recorded: {error}"),
                    FailureKind::Storage,
                ));
            }
        }
    }

    async fn discard(&self, partial: &Path) {
        let partial = partial.to_path_buf();
        if let Err(error) = blocking(move || PartialFile::new(partial).discard()).await {
            tracing::warn!(%error, "could not delete a partial file; the job's clean-up will retry");
        }
    }

    /// Records the final event, removes the partial area and forgets the job.
    async fn finish(&self, outcome: Outcome) {
        let (progress, label) = match outcome {
            Outcome::Completed => (Some(IngestionProgress::Completed), "completed"),
            Outcome::Failed(reason, failure_kind) => {
                tracing::warn!(reason = %reason, %failure_kind, "ingestion failed");
                (
                    Some(IngestionProgress::Failed {
                        reason: truncate(reason),
                        failure_kind,
                    }),
                    "failed",
                )
            }
            Outcome::Cancelled => (Some(IngestionProgress::Cancelled), "cancelled"),
            Outcome::Nothing => (None, "cancelled"),
        };
        if let Some(progress) = progress
            && let Err(Interrupted::Vault(error)) = self.record(progress).await
        {
            tracing::error!(%error, "could not record the end of an ingestion; a restart will mark it failed");
        }
        let label =
            self.shared.vault.read(
                |state| match state.ingestion(&self.id).map(|job| job.state) {
                    Some(IngestionState::Completed) => "completed",
                    Some(IngestionState::Failed) => "failed",
                    Some(IngestionState::Cancelled) => "cancelled",
                    _ => label,
                },
            );
        let shared = Arc::clone(&self.shared);
        let id = self.id.clone();
        if let Err(error) = blocking(move || shared.store.remove_partial_dir(&id)).await {
            tracing::error!(%error, "could not remove the job's partial files");
        }
        self.shared.count_job_finished(label);
        self.shared.forget(&self.id);
        self.live.done.cancel();
        tracing::info!(outcome = label, "ingestion finished");
    }

    /// Watches the log (and the clock) for the key or the job being withdrawn.
    async fn watch(self: Arc<Self>, until: CancellationToken) {
        let mut commits = Some(self.shared.vault.log().subscribe());
        let mut tick = tokio::time::interval(self.shared.config.key_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = async {
                match commits.as_mut() {
                    Some(receiver) => receiver.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = until.cancelled() => return,
                open = changed => if !open { commits = None },
                _ = tick.tick() => {}
            }
            if let Some(stop) = self.standing() {
                tracing::info!(?stop, "stopping the job");
                self.live.request_stop(stop);
                return;
            }
        }
    }

    /// Why the job must stop now, if it must.
    fn standing(&self) -> Option<Stop> {
        let vault = &self.shared.vault;
        let now = vault.now();
        vault.read(|state| {
            match state.ingestion(&self.id).map(|job| job.state) {
                Some(IngestionState::Cancelled) => return Some(Stop::Cancelled),
                Some(state) if state.is_finished() => return Some(Stop::FinishedElsewhere),
                None => return Some(Stop::FinishedElsewhere),
                Some(_) => {}
            }
            match state.external_key(&self.key).map(|key| key.status_at(now)) {
                Some(KeyStatus::Active) => None,
                Some(status) => Some(Stop::KeyUnusable(status)),
                None => Some(Stop::KeyUnusable(KeyStatus::Deleted)),
            }
        })
    }

    fn stopped_outcome(&self) -> Outcome {
        match self.live.stop_reason() {
            Some(Stop::Cancelled) | None => Outcome::Cancelled,
            Some(Stop::KeyUnusable(status)) => {
                Outcome::Failed(self.key_unusable(status), FailureKind::Cancelled)
            }
            Some(Stop::Fatal(reason, kind)) => Outcome::Failed(reason, kind),
            Some(Stop::FinishedElsewhere) => Outcome::Nothing,
        }
    }

    fn key_unusable(&self, status: KeyStatus) -> String {
        let tally = self.tally.lock().clone();
        let progress = if tally.selected > 0 {
            format!(
                "; it stopped after {} of {} files",
                tally.fetched, tally.selected
            )
        } else {
            String::new()
        };
        format!(
            "the external key {} was {} while the job ran{progress}; store a new key and start \
             the ingestion again",
            self.key,
            status.as_str()
        )
    }

    fn listing_failed(&self, error: &SourceError) -> String {
        let place = match &self.selection {
            Selection::Aws { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
            Selection::Dnanexus {
                project, folder, ..
            } => format!("{project}:{folder}"),
        };
        format!("listing {place} failed: {error}")
    }

    async fn record(&self, progress: IngestionProgress) -> Result<(), Interrupted> {
        self.recorder.record(&self.shared.vault, progress).await
    }
}

/// `reason` if it has at most [`MAX_REASON_CHARS`] characters, else its longest prefix that
/// ends at a word boundary, with "…": a recorded reason never ends in half a word.
pub(crate) fn truncate(reason: String) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        return reason;
    }
    let cut: String = reason.chars().take(MAX_REASON_CHARS - 1).collect();
    let kept = match cut.rfind(char::is_whitespace) {
        Some(end) if end > 0 => cut[..end].trim_end(),
        _ => cut.as_str(),
    };
    format!("{kept}…")
}

/// Runs blocking file work off the async threads.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_between_words() {
        let word = "verification ";
        let reason = word.repeat(100);
        let short = truncate(reason.clone());
        assert!(short.chars().count() <= MAX_REASON_CHARS, "{short}");
        assert!(short.ends_with("verification…"), "{short}");
        assert!(reason.starts_with(short.trim_end_matches('…')));
        assert_eq!(truncate("short".to_owned()), "short");
        // One endless word: cut where it must be, still marked.
        let long = "x".repeat(MAX_REASON_CHARS * 2);
        assert_eq!(truncate(long).chars().count(), MAX_REASON_CHARS);
    }
}
