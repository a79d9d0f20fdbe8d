//! An object of several parts: HEAD for its checks, then `concurrency` ranged GETs of
//! `part_size` in flight, resuming from the partial file's resume record.
//!
//! Guarantee: a part is claimed in the resume record only after an `fdatasync` of the partial
//! file returned, so every part the record names is on disk; the record itself is not synced
//! (a lost line only costs a re-fetch). Completed parts are made durable once
//! [`CHECKPOINT_BYTES`] of them are unrecorded: a crash re-fetches at most that much plus the
//! parts in flight.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::sync::Arc;

use keyledger_connect::{PartialFile, Progress, RecordIdentity};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::FetchedFile;
use crate::error::S3Error;
use crate::fetch::content_hash::ContentHasher;
use crate::fetch::context::{PartContext, RangeSink, blocking, discards_partial};
use crate::fetch::ordered_hash::OrderedHashing;

/// Completed parts are made durable (fdatasync, then recorded) once this many bytes of them
/// are unrecorded.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

/// The resume record's format line.
const RECORD_FORMAT: &str = "keyledger-s3-parts 1";

/// Reports a part's written bytes to the coordinator.
struct PartProgress {
    events: mpsc::UnboundedSender<u64>,
}

impl RangeSink for PartProgress {
    fn on_written(&mut self, bytes: &[u8]) {
        let _ = self.events.send(bytes.len() as u64);
    }
}

impl PartContext {
    /// HEAD (for the checksums), then `concurrency` ranged GETs of `part_size` in flight,
    /// resuming from the resume record.
    pub(crate) async fn fetch_in_parts(
        self: &Arc<Self>,
        partial: &PartialFile,
        progress: &Progress<'_>,
    ) -> Result<FetchedFile, S3Error> {
        let mut expected = self.head().await?;
        if expected.composite.is_some() {
            self.learn_parts(&mut expected).await?;
        }
        let part_size = self.source.options.part_size;
        let size = expected.size;
        let part_count = size.div_ceil(part_size);
        let identity = format!("{size} {part_size} {}", expected.etag);
        let opening = partial.clone();
        let opened = blocking(move || {
            let record = RecordIdentity {
                format: RECORD_FORMAT,
                identity: &identity,
            };
            let opened = opening.open(size, Some(record))?;
            if opened.claims.is_empty() {
                opening.start_record(record, &[])?;
            }
            Ok(opened)
        })
        .await?;
        let already_done: BTreeSet<u64> = opened
            .claims
            .iter()
            .filter_map(|claim| claim.parse::<u64>().ok())
            .filter(|part| *part < part_count)
            .collect();
        let file = opened.file;
        let file = Arc::new(file);
        let part_range = |index: u64| (index * part_size, ((index + 1) * part_size).min(size));
        let resumed_bytes: u64 = already_done
            .iter()
            .map(|index| {
                let (start, end) = part_range(*index);
                end - start
            })
            .sum();
        if !already_done.is_empty() {
            tracing::info!(
                bucket = %self.object.location.bucket,
                key = %self.object.path,
                parts = already_done.len(),
                resumed_bytes,
                "resuming a partial fetch"
            );
        }

        let hashing = OrderedHashing::start(Arc::clone(&file), size, ContentHasher::new(&expected));
        for index in &already_done {
            let (start, end) = part_range(*index);
            hashing.written(start, end);
        }
        let mut completed = already_done;

        let mut pending: VecDeque<u64> = (0..part_count)
            .filter(|index| !completed.contains(index))
            .collect();
        let (events_sender, mut events) = mpsc::unbounded_channel::<u64>();
        let mut parts: JoinSet<Result<u64, S3Error>> = JoinSet::new();
        let mut unrecorded: Vec<u64> = Vec::new();
        let mut checkpoint: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;

        let outcome: Result<(), S3Error> = loop {
            while parts.len() < self.source.options.concurrency
                && let Some(index) = pending.pop_front()
            {
                let context = Arc::clone(self);
                let file = Arc::clone(&file);
                let sink = PartProgress {
                    events: events_sender.clone(),
                };
                let (start, end) = part_range(index);
                parts.spawn(async move {
                    let mut sink = sink;
                    context.fetch_range(&file, start, end, &mut sink).await?;
                    Ok(index)
                });
            }
            if parts.is_empty() {
                break Ok(());
            }
            if checkpoint.is_none()
                && unrecorded_bytes(&unrecorded, &part_range) >= CHECKPOINT_BYTES
            {
                checkpoint = Some(start_checkpoint(
                    &file,
                    partial,
                    std::mem::take(&mut unrecorded),
                ));
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break Err(S3Error::Cancelled),
                Some(written) = events.recv() => progress(written),
                Some(joined) = parts.join_next() => match joined {
                    Ok(Ok(index)) => {
                        completed.insert(index);
                        unrecorded.push(index);
                        let (start, end) = part_range(index);
                        hashing.written(start, end);
                    }
                    Ok(Err(error)) => break Err(error),
                    Err(join_error) => break Err(S3Error::Internal(format!("a part task failed: {join_error}"))),
                },
                Some(result) = wait_checkpoint(&mut checkpoint) => {
                    if let Err(error) = result {
                        break Err(S3Error::Io(error));
                    }
                }
            }
        };
        parts.abort_all();
        while parts.join_next().await.is_some() {}
        while let Ok(written) = events.try_recv() {
            progress(written);
        }
        if let Some(in_flight) = checkpoint.take() {
            join_checkpoint(in_flight).await?;
        }

        if let Err(error) = outcome {
            // Keep what is on disk for the next attempt, unless it is worthless.
            if !discards_partial(&error) && !unrecorded.is_empty() {
                let record = start_checkpoint(&file, partial, unrecorded);
                if let Err(checkpoint_error) = join_checkpoint(record).await {
                    tracing::warn!(error = %checkpoint_error, "could not record completed parts");
                }
            }
            return Err(error);
        }
        let digests = hashing.finish(size).await?;
        let digests = self
            .recheck_assumed_parts(&mut expected, &file, digests)
            .await?;
        self.finish(file, &expected, digests, resumed_bytes, partial)
            .await
    }
}

fn unrecorded_bytes(parts: &[u64], part_range: &impl Fn(u64) -> (u64, u64)) -> u64 {
    parts
        .iter()
        .map(|index| {
            let (start, end) = part_range(*index);
            end - start
        })
        .sum()
}

/// fdatasync the partial file, then record `parts` as done.
fn start_checkpoint(
    file: &Arc<File>,
    partial: &PartialFile,
    parts: Vec<u64>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let file = Arc::clone(file);
    let partial = partial.clone();
    tokio::task::spawn_blocking(move || {
        file.sync_data()?;
        let claims: Vec<String> = parts.iter().map(u64::to_string).collect();
        partial.append_claims(&claims)
    })
}

async fn wait_checkpoint(
    checkpoint: &mut Option<tokio::task::JoinHandle<std::io::Result<()>>>,
) -> Option<std::io::Result<()>> {
    let handle = checkpoint.as_mut()?;
    let result = match handle.await {
        Ok(result) => result,
        Err(join_error) => Err(std::io::Error::other(join_error)),
    };
    *checkpoint = None;
    Some(result)
}

async fn join_checkpoint(
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<(), S3Error> {
    match handle.await {
        Ok(result) => Ok(result?),
        Err(join_error) => Err(S3Error::Io(std::io::Error::other(join_error))),
    }
}
