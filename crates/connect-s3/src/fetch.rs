//! Fetching one object into a partial file: parallel ranged GETs pinned to the listed ETag,
//! bounded memory, retries that resume where a body stopped, a resume record across runs, and
//! verification before the file is handed back.
//!
//! Memory per object is `concurrency` write buffers of [`WRITE_BUFFER`] bytes plus one read
//! buffer for hashing, whatever the object's size.
//!
//! Hashing (SHA-256 for the ingestion event, and the object's one check: a full-object or
//! composite checksum, else the ETag's MD5; see [`digest`]) needs the content in order. Objects
//! of one part are hashed as their body streams. Larger objects are hashed by two blocking
//! threads (SHA-256 on one, the check on the other) that re-read the completed in-order prefix
//! of the file while later parts are still downloading (from the page cache), so hashing
//! overlaps the transfer instead of following it. A composite checksum needs the upload's part
//! boundaries, which differ from the ranges fetched: they are learnt with HEAD `partNumber`
//! before the transfer starts, and the hasher closes a part's checksum as it crosses each one.

pub(crate) mod digest;
mod sidecar;

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc as std_mpsc};

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{S3Source, backoff, check_bucket_name, sleep_unless_cancelled};
use crate::error::{Failure, S3Error, Verification, classify};
use crate::list::{RemoteObject, unquote};
use digest::{Composite, ContentHasher, Digests, Expected, IntegrityHeaders, PartChecksum};
use sidecar::Identity;

/// Bytes a part accumulates before one positional write.
const WRITE_BUFFER: usize = 1 << 20;

/// Completed parts are made durable (fdatasync, then recorded in the sidecar) once this many
/// bytes of them are unrecorded: a crash re-fetches at most this much plus the parts in flight.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

/// Read size of the hashing thread.
const HASH_READ: usize = 1 << 20;

/// A fetched and verified object, in the partial file.
#[derive(Clone, Debug)]
pub struct FetchedObject {
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// The ETag the fetch was pinned to (without quotes).
    pub etag: String,
    /// What was checked, `Size` first.
    pub verified: Vec<Verification>,
    /// Bytes taken from an earlier, interrupted fetch (re-read and verified, not downloaded).
    pub resumed_bytes: u64,
}

impl S3Source {
    /// Downloads `object` into `partial_path` and verifies it; the caller renames the file
    /// into place. `progress` receives the number of bytes newly written, as they are written.
    ///
    /// On success the file is complete, verified and fsynced, and its resume record is gone.
    /// On a verification failure, a changed or vanished object, the partial file and its
    /// record are deleted. On other errors (cancellation, network, local I/O) a multi-part
    /// fetch keeps both, and fetching the same object into the same path again skips the parts
    /// already on disk and verifies the whole content; call [`discard_partial`] to give up.
    pub async fn fetch(
        &self,
        object: &RemoteObject,
        partial_path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<FetchedObject, S3Error> {
        check_bucket_name(&object.bucket)?;
        if object.key.is_empty() {
            return Err(S3Error::InvalidInput(
                "the object key must not be empty".to_owned(),
            ));
        }
        let single =
            object.size > 0 && object.size <= self.options.part_size && !object.etag.contains('-');
        let context = Arc::new(PartContext {
            source: self.clone(),
            object: object.clone(),
            etag: OnceLock::new(),
            cancel: cancel.clone(),
        });
        if !object.etag.is_empty() {
            let _ = context.etag.set(object.etag.clone());
        }
        let result = if single {
            context.fetch_single(partial_path, progress).await
        } else {
            context.fetch_in_parts(partial_path, progress).await
        };
        match &result {
            Ok(_) => {}
            Err(error) if single || discards_partial(error) => {
                if let Err(cleanup) = discard_partial(partial_path) {
                    tracing::warn!(path = %partial_path.display(), error = %cleanup, "could not delete a partial file");
                }
            }
            Err(_) => {}
        }
        result
    }
}

/// Deletes a partial file and its resume record (missing files are fine).
pub fn discard_partial(partial_path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(partial_path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    sidecar::remove(partial_path)
}

/// The resume record of a partial file (`<partial>.parts`).
pub fn resume_record_path(partial_path: &Path) -> PathBuf {
    sidecar::sidecar_path(partial_path)
}

/// Errors after which the bytes on disk are worthless.
fn discards_partial(error: &S3Error) -> bool {
    matches!(
        error,
        S3Error::Verification { .. } | S3Error::ObjectChanged { .. } | S3Error::NotFound { .. }
    )
}

/// What every part of one fetch shares.
struct PartContext {
    source: S3Source,
    object: RemoteObject,
    /// The ETag every request is pinned to: the listed one, or, for stores that list no
    /// ETags (s3s-fs), the one of the first response.
    etag: OnceLock<String>,
    cancel: CancellationToken,
}

/// What a part does with the response head and the bytes it writes.
trait RangeSink: Send {
    fn on_response(&mut self, _response: &GetObjectOutput) {}
    fn on_written(&mut self, bytes: &[u8]);
}

/// Hashes a single-part object as it streams, in order.
struct StreamingHash<'a> {
    progress: &'a (dyn Fn(u64) + Send + Sync),
    size: u64,
    expected: Option<Expected>,
    hasher: Option<ContentHasher>,
}

impl RangeSink for StreamingHash<'_> {
    fn on_response(&mut self, response: &GetObjectOutput) {
        if self.expected.is_none() {
            let expected = Expected::from_headers(self.size, &get_integrity_headers(response));
            self.hasher = Some(ContentHasher::new(&expected));
            self.expected = Some(expected);
        }
    }

    fn on_written(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
        (self.progress)(bytes.len() as u64);
    }
}

/// Reports a part's written bytes to the coordinator.
struct PartProgress {
    events: mpsc::UnboundedSender<u64>,
}

impl RangeSink for PartProgress {
    fn on_written(&mut self, bytes: &[u8]) {
        let _ = self.events.send(bytes.len() as u64);
    }
}

/// How one attempt at a range ended.
struct AttemptEnd {
    written: u64,
    outcome: Result<(), Failure>,
}

impl PartContext {
    /// One ranged GET for the whole object, hashed while it streams; no HEAD, the GET's own
    /// ETag and checksum headers are the reference.
    async fn fetch_single(
        &self,
        partial_path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<FetchedObject, S3Error> {
        let size = self.object.size;
        let path = partial_path.to_path_buf();
        let file = Arc::new(blocking(move || sidecar::create_reserved(&path, size)).await?);
        let mut sink = StreamingHash {
            progress,
            size,
            expected: None,
            hasher: None,
        };
        self.fetch_range(&file, 0, size, &mut sink).await?;
        let (Some(mut expected), Some(hasher)) = (sink.expected, sink.hasher) else {
            return Err(S3Error::UnexpectedAnswer(
                "no response head was received".to_owned(),
            ));
        };
        let mut digests = hasher.finish();
        if expected.composite.is_some() && self.learn_parts(&mut expected).await? {
            // A small multipart upload: its part boundaries were unknown while it streamed,
            // so the (at most one part size of) content is hashed again from disk.
            digests = rehash(&file, &expected).await?;
        }
        let digests = self
            .recheck_assumed_parts(&mut expected, &file, digests)
            .await?;
        self.finish(file, &expected, digests, 0, partial_path).await
    }

    /// HEAD (for the checksums), then `concurrency` ranged GETs of `part_size` in flight,
    /// resuming from the sidecar.
    async fn fetch_in_parts(
        self: &Arc<Self>,
        partial_path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<FetchedObject, S3Error> {
        let mut expected = self.head().await?;
        if expected.composite.is_some() {
            self.learn_parts(&mut expected).await?;
        }
        let part_size = self.source.options.part_size;
        let identity = Identity {
            size: expected.size,
            part_size,
            etag: expected.etag.clone(),
        };
        let path = partial_path.to_path_buf();
        let (file, already_done) =
            blocking(move || sidecar::open_for_resume(&path, &identity)).await?;
        let file = Arc::new(file);
        let size = expected.size;
        let part_count = size.div_ceil(part_size);
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
                bucket = %self.object.bucket,
                key = %self.object.key,
                parts = already_done.len(),
                resumed_bytes,
                "resuming a partial fetch"
            );
        }

        let hasher = PrefixHasher::start(Arc::clone(&file), ContentHasher::new(&expected));
        let mut completed = already_done;
        let mut prefix_end = contiguous_prefix(&completed, part_count, part_size, size);
        hasher.advance(prefix_end);

        let mut pending: std::collections::VecDeque<u64> = (0..part_count)
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
                    partial_path,
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
                        let new_prefix_end = contiguous_prefix(&completed, part_count, part_size, size);
                        if new_prefix_end > prefix_end {
                            prefix_end = new_prefix_end;
                            hasher.advance(prefix_end);
                        }
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
                let record = start_checkpoint(&file, partial_path, unrecorded);
                if let Err(checkpoint_error) = join_checkpoint(record).await {
                    tracing::warn!(error = %checkpoint_error, "could not record completed parts");
                }
            }
            return Err(error);
        }
        let digests = hasher.finish(size).await?;
        let digests = self
            .recheck_assumed_parts(&mut expected, &file, digests)
            .await?;
        self.finish(file, &expected, digests, resumed_bytes, partial_path)
            .await
    }

    /// Verifies, fsyncs and removes the resume record.
    async fn finish(
        &self,
        file: Arc<File>,
        expected: &Expected,
        digests: Digests,
        resumed_bytes: u64,
        partial_path: &Path,
    ) -> Result<FetchedObject, S3Error> {
        let verified = expected.verify(&self.object.key, &digests)?;
        let on_disk = blocking(move || {
            file.sync_all()?;
            Ok(file.metadata()?.len())
        })
        .await?;
        if on_disk != expected.size {
            return Err(S3Error::Verification {
                key: self.object.key.clone(),
                what: Verification::Size,
                expected: format!("{} bytes", expected.size),
                actual: format!("{on_disk} bytes on disk"),
            });
        }
        let path = partial_path.to_path_buf();
        blocking(move || sidecar::remove(&path)).await?;
        Ok(FetchedObject {
            size: expected.size,
            sha256: digests.sha256,
            etag: expected.etag.clone(),
            verified,
            resumed_bytes,
        })
    }

    /// HeadObject with checksums; the object must still be the one listed.
    async fn head(&self) -> Result<Expected, S3Error> {
        let object = &self.object;
        let target = self
            .source
            .target("HeadObject", &object.bucket, Some(&object.key));
        let head = self
            .source
            .with_retries(target, Some(&self.cancel), || {
                let request = self
                    .source
                    .client
                    .head_object()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .set_if_match(self.etag.get().map(|etag| quoted(etag)))
                    .checksum_mode(ChecksumMode::Enabled);
                async move {
                    request
                        .send()
                        .await
                        .map_err(|error| classify(error, target))
                }
            })
            .await;
        let head = match head {
            Ok(head) => head,
            Err(S3Error::AccessDenied { .. }) => return Err(self.explain_denied_head().await),
            Err(error) => return Err(error),
        };
        let size = head
            .content_length()
            .and_then(|length| u64::try_from(length).ok());
        let expected = Expected::from_headers(size.unwrap_or(0), &head_integrity_headers(&head));
        if expected.etag.is_empty() {
            return Err(S3Error::UnexpectedAnswer(format!(
                "S3 answered HeadObject for {} without an ETag",
                object.key
            )));
        }
        let pinned = self.etag.get_or_init(|| expected.etag.clone());
        if expected.etag != *pinned || size != Some(object.size) {
            return Err(S3Error::ObjectChanged {
                key: object.key.clone(),
            });
        }
        Ok(expected)
    }

    /// Learns the upload's part boundaries and part checksums, which a composite checksum is
    /// computed over: HEAD with `partNumber` 1..N (N from the checksum's `-N`), a few at a
    /// time. Needs only `s3:GetObject`, unlike GetObjectAttributes.
    ///
    /// Returns whether the composite checksum stays to be verified: when the store did not say
    /// whether the checksum is composite and cannot describe the parts, only the full-object
    /// reading of it is checked.
    async fn learn_parts(&self, expected: &mut Expected) -> Result<bool, S3Error> {
        let size = expected.size;
        let Some(composite) = &mut expected.composite else {
            return Ok(false);
        };
        match self.head_parts(composite, size, false).await {
            Ok(()) => Ok(true),
            Err(error) if expected.full_or_composite && !matches!(error, S3Error::Cancelled) => {
                tracing::info!(
                    bucket = %self.object.bucket,
                    key = %self.object.key,
                    error = %error,
                    "the parts of an object with an untyped checksum could not be learnt; \
                     verifying it as a full-object checksum"
                );
                expected.composite = None;
                expected.full_or_composite = false;
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Learns the parts: unless `exact`, from the first and the last part when the others can
    /// be of the first's size (two HEADs instead of N); else every part's HEAD.
    async fn head_parts(
        &self,
        composite: &mut Composite,
        size: u64,
        exact: bool,
    ) -> Result<(), S3Error> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let concurrency = self.source.options.concurrency;
        let kind = composite.kind;
        let part_count = composite.part_count;
        if !exact && part_count > 2 {
            let (first, last) = futures::try_join!(
                self.head_part(1, part_count, kind),
                self.head_part(part_count, part_count, kind)
            )?;
            let uniform = first
                .length
                .checked_mul(part_count - 1)
                .and_then(|middle| middle.checked_add(last.length));
            if uniform == Some(size) && last.length <= first.length {
                let mut parts = Vec::with_capacity(usize::try_from(part_count).unwrap_or(0));
                parts.push(first.clone());
                for _ in 2..part_count {
                    parts.push(PartChecksum {
                        length: first.length,
                        checksum: None,
                    });
                }
                parts.push(last);
                composite.parts = parts;
                composite.parts_assumed = true;
                return Ok(());
            }
        }
        let parts: Vec<PartChecksum> = futures::stream::iter(1..=part_count)
            .map(|number| self.head_part(number, part_count, kind))
            .buffered(concurrency)
            .try_collect()
            .await?;
        let total: u64 = parts.iter().map(|part| part.length).sum();
        if total != size {
            return Err(S3Error::Transport(format!(
                "S3 described {part_count} parts of {total} bytes in all for {}, which has {size} \
                 bytes",
                self.object.key
            )));
        }
        composite.parts = parts;
        composite.parts_assumed = false;
        Ok(())
    }

    /// When the composite checksum failed over parts inferred from the first and the last, the
    /// parts may not have been equal: learns each part's length and hashes the file (complete
    /// on disk) again before the verdict.
    async fn recheck_assumed_parts(
        &self,
        expected: &mut Expected,
        file: &Arc<File>,
        digests: Digests,
    ) -> Result<Digests, S3Error> {
        let size = expected.size;
        let Some(composite) = &mut expected.composite else {
            return Ok(digests);
        };
        if !composite.parts_assumed || expected.verify(&self.object.key, &digests).is_ok() {
            return Ok(digests);
        }
        let Some(composite) = &mut expected.composite else {
            return Ok(digests);
        };
        self.head_parts(composite, size, true).await?;
        rehash(file, expected).await
    }

    /// HEAD of part `number`: its length and, when S3 gives it, its checksum.
    async fn head_part(
        &self,
        number: u64,
        part_count: u64,
        kind: Verification,
    ) -> Result<PartChecksum, S3Error> {
        let object = &self.object;
        let target = self
            .source
            .target("HeadObject", &object.bucket, Some(&object.key));
        let part_number = i32::try_from(number)
            .map_err(|_| S3Error::Transport(format!("{} claims {part_count} parts", object.key)))?;
        let head = self
            .source
            .with_retries(target, Some(&self.cancel), || {
                let request = self
                    .source
                    .client
                    .head_object()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .part_number(part_number)
                    .set_if_match(self.etag.get().map(|etag| quoted(etag)))
                    .checksum_mode(ChecksumMode::Enabled);
                async move {
                    request
                        .send()
                        .await
                        .map_err(|error| classify(error, target))
                }
            })
            .await?;
        let parts_count = head
            .parts_count()
            .and_then(|count| u64::try_from(count).ok());
        if parts_count.is_some_and(|count| count != part_count) {
            return Err(S3Error::ObjectChanged {
                key: object.key.clone(),
            });
        }
        let length = head
            .content_length()
            .and_then(|length| u64::try_from(length).ok())
            .ok_or_else(|| {
                S3Error::Transport(format!(
                    "S3 answered HeadObject for part {number} of {} without a length",
                    object.key
                ))
            })?;
        let headers = head_integrity_headers(&head);
        let checksum = match kind {
            Verification::ChecksumCrc32 => headers.crc32,
            Verification::ChecksumCrc32c => headers.crc32c,
            Verification::ChecksumSha1 => headers.sha1,
            Verification::ChecksumSha256 => headers.sha256,
            _ => None,
        }
        .map(str::trim)
        .filter(|value| !value.is_empty() && !value.contains('-'))
        .map(str::to_owned);
        Ok(PartChecksum { length, checksum })
    }

    /// A HEAD answer has no body, so a rejected signature and a missing permission both read
    /// as a bare 403. A one-byte GET carries S3's error code and tells them apart.
    async fn explain_denied_head(&self) -> S3Error {
        let object = &self.object;
        let target = self
            .source
            .target("GetObject", &object.bucket, Some(&object.key));
        let request = self
            .source
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_range((object.size > 0).then(|| "bytes=0-0".to_owned()));
        match request.send().await {
            Err(error) => classify(error, target).error,
            Ok(_) => S3Error::AccessDenied {
                bucket: object.bucket.clone(),
            },
        }
    }

    /// Fetches bytes `start..end` into the file at the same offsets, retrying from where an
    /// interrupted body stopped.
    async fn fetch_range(
        &self,
        file: &Arc<File>,
        start: u64,
        end: u64,
        sink: &mut dyn RangeSink,
    ) -> Result<(), S3Error> {
        let options = &self.source.options;
        let mut position = start;
        let mut failures = 0;
        let mut buffer = Vec::with_capacity(
            WRITE_BUFFER.min(usize::try_from(end - start).unwrap_or(WRITE_BUFFER)),
        );
        while position < end {
            if self.cancel.is_cancelled() {
                return Err(S3Error::Cancelled);
            }
            let attempt = self
                .stream_range(file, position, end, &mut buffer, sink)
                .await;
            position += attempt.written;
            let failure = match attempt.outcome {
                Ok(()) if position == end => return Ok(()),
                Ok(()) => Failure::retryable(S3Error::Transport(format!(
                    "the body of {} ended {} bytes early",
                    self.object.key,
                    end - position
                ))),
                Err(failure) => failure,
            };
            // A connection that delivered bytes before failing is not counted against the part.
            failures = if attempt.written > 0 { 1 } else { failures + 1 };
            if !failure.retryable || failures >= options.max_attempts {
                return Err(failure.error);
            }
            let delay = backoff(options, failures, failure.retry_after);
            tracing::warn!(
                bucket = %self.object.bucket,
                key = %self.object.key,
                resume_at = position,
                attempt = failures,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "ranged GET failed, retrying"
            );
            sleep_unless_cancelled(delay, Some(&self.cancel)).await?;
        }
        Ok(())
    }

    /// One GET of `position..end`, streamed to disk in [`WRITE_BUFFER`] writes.
    async fn stream_range(
        &self,
        file: &Arc<File>,
        position: u64,
        end: u64,
        buffer: &mut Vec<u8>,
        sink: &mut dyn RangeSink,
    ) -> AttemptEnd {
        let object = &self.object;
        let stall_timeout = self.source.options.stall_timeout;
        let target = self
            .source
            .target("GetObject", &object.bucket, Some(&object.key));
        let request = self
            .source
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .range(format!("bytes={position}-{}", end - 1))
            .set_if_match(self.etag.get().map(|etag| quoted(etag)))
            // S3 returns checksums only when asked. Asked with a raw header rather than
            // `checksum_mode`, which would also make the SDK re-hash the body itself (twice the
            // work, and a mismatch surfacing as a broken body that is retried).
            .customize()
            .mutate_request(|request| {
                request
                    .headers_mut()
                    .insert("x-amz-checksum-mode", "ENABLED");
            });
        let response = tokio::select! {
            () = self.cancel.cancelled() => return failed(0, Failure::fatal(S3Error::Cancelled)),
            response = request.send() => response,
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => return failed(0, classify(error, target)),
        };
        if let Err(failure) = check_range_response(&response, object, &self.etag, position, end) {
            return failed(0, failure);
        }
        sink.on_response(&response);

        let mut body = response.body;
        let mut flushed = 0u64;
        buffer.clear();
        let outcome = loop {
            let chunk = tokio::select! {
                () = self.cancel.cancelled() => return failed(flushed, Failure::fatal(S3Error::Cancelled)),
                chunk = tokio::time::timeout(stall_timeout, body.next()) => chunk,
            };
            let bytes = match chunk {
                Err(_) => {
                    break Err(Failure::retryable(S3Error::Transport(format!(
                        "no data for {stall_timeout:?} while reading {}",
                        object.key
                    ))));
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(error))) => {
                    break Err(Failure::retryable(S3Error::Transport(format!(
                        "the body of {} was interrupted: {}",
                        object.key,
                        crate::error::describe_causes(&error)
                    ))));
                }
                Ok(Some(Ok(bytes))) => bytes,
            };
            let received = flushed + buffer.len() as u64 + bytes.len() as u64;
            if position + received > end {
                break Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
                    "S3 sent more bytes than requested for {}",
                    object.key
                ))));
            }
            buffer.extend_from_slice(&bytes);
            if buffer.len() >= WRITE_BUFFER {
                match write_at(file, buffer, position + flushed).await {
                    Ok(()) => {
                        sink.on_written(buffer);
                        flushed += buffer.len() as u64;
                        buffer.clear();
                    }
                    Err(error) => return failed(flushed, Failure::fatal(S3Error::Io(error))),
                }
            }
        };
        // Bytes received before an interruption are good: keep them and resume after them.
        if !buffer.is_empty() {
            match write_at(file, buffer, position + flushed).await {
                Ok(()) => {
                    sink.on_written(buffer);
                    flushed += buffer.len() as u64;
                    buffer.clear();
                }
                Err(error) => return failed(flushed, Failure::fatal(S3Error::Io(error))),
            }
        }
        AttemptEnd {
            written: flushed,
            outcome,
        }
    }
}

fn failed(written: u64, failure: Failure) -> AttemptEnd {
    AttemptEnd {
        written,
        outcome: Err(failure),
    }
}

/// The response must be the requested range of the listed object.
pub(crate) fn check_range_response(
    response: &GetObjectOutput,
    object: &RemoteObject,
    pinned: &OnceLock<String>,
    position: u64,
    end: u64,
) -> Result<(), Failure> {
    let changed = || {
        Failure::fatal(S3Error::ObjectChanged {
            key: object.key.clone(),
        })
    };
    // Servers that ignore If-Match are caught here.
    let etag = unquote(response.e_tag().unwrap_or_default());
    if etag.is_empty() {
        return Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
            "S3 answered GetObject for {} without an ETag",
            object.key
        ))));
    }
    if *pinned.get_or_init(|| etag.clone()) != etag {
        return Err(changed());
    }
    let Some(range) = response.content_range() else {
        return Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
            "S3 ignored the Range header for {}",
            object.key
        ))));
    };
    // "bytes <first>-<last>/<total>"
    let parsed = range
        .strip_prefix("bytes ")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(span, total)| {
            let (first, last) = span.split_once('-')?;
            Some((
                first.parse::<u64>().ok()?,
                last.parse::<u64>().ok()?,
                total.parse::<u64>().ok(),
            ))
        });
    match parsed {
        Some((_, _, Some(total))) if total != object.size => Err(changed()),
        Some((first, last, _)) if first == position && last.checked_add(1) == Some(end) => Ok(()),
        _ => Err(Failure::fatal(S3Error::UnexpectedAnswer(format!(
            "S3 answered range `{range}` for bytes {position}-{} of {}",
            end - 1,
            object.key
        )))),
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn head_integrity_headers(head: &HeadObjectOutput) -> IntegrityHeaders<'_> {
    IntegrityHeaders {
        etag: head.e_tag().unwrap_or_default(),
        encrypted_with_kms_or_customer_key: head
            .server_side_encryption()
            .is_some_and(|sse| sse.as_str().starts_with("aws:kms"))
            || head.sse_customer_algorithm().is_some(),
        composite_checksums: head.checksum_type() == Some(&ChecksumType::Composite),
        full_object_checksums: head.checksum_type() == Some(&ChecksumType::FullObject),
        crc32: head.checksum_crc32(),
        crc32c: head.checksum_crc32_c(),
        crc64nvme: head.checksum_crc64_nvme(),
        sha1: head.checksum_sha1(),
        sha256: head.checksum_sha256(),
    }
}

pub(crate) fn get_integrity_headers(response: &GetObjectOutput) -> IntegrityHeaders<'_> {
    IntegrityHeaders {
        etag: response.e_tag().unwrap_or_default(),
        encrypted_with_kms_or_customer_key: response
            .server_side_encryption()
            .is_some_and(|sse| sse.as_str().starts_with("aws:kms"))
            || response.sse_customer_algorithm().is_some(),
        composite_checksums: response.checksum_type() == Some(&ChecksumType::Composite),
        full_object_checksums: response.checksum_type() == Some(&ChecksumType::FullObject),
        crc32: response.checksum_crc32(),
        crc32c: response.checksum_crc32_c(),
        crc64nvme: response.checksum_crc64_nvme(),
        sha1: response.checksum_sha1(),
        sha256: response.checksum_sha256(),
    }
}

/// The end offset of the longest run of completed parts from the start.
fn contiguous_prefix(completed: &BTreeSet<u64>, part_count: u64, part_size: u64, size: u64) -> u64 {
    let mut next = 0;
    while next < part_count && completed.contains(&next) {
        next += 1;
    }
    (next * part_size).min(size)
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
    partial_path: &Path,
    parts: Vec<u64>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let file = Arc::clone(file);
    let path = partial_path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        file.sync_data()?;
        sidecar::append_completed(&path, &parts)
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

async fn write_at(file: &Arc<File>, buffer: &mut Vec<u8>, offset: u64) -> std::io::Result<()> {
    let file = Arc::clone(file);
    let data = std::mem::take(buffer);
    let (data, result) = tokio::task::spawn_blocking(move || {
        let result = file.write_all_at(&data, offset);
        (data, result)
    })
    .await
    .map_err(std::io::Error::other)?;
    *buffer = data;
    result
}

/// Hashes the whole file again for `expected` (the content is complete on disk).
async fn rehash(file: &Arc<File>, expected: &Expected) -> Result<Digests, S3Error> {
    let mut hasher = ContentHasher::new(expected);
    let size = expected.size;
    let file = Arc::clone(file);
    blocking(move || {
        let mut buffer = vec![0u8; HASH_READ];
        let mut offset = 0u64;
        while offset < size {
            let len = usize::try_from(size - offset)
                .unwrap_or(HASH_READ)
                .min(HASH_READ);
            file.read_exact_at(&mut buffer[..len], offset)?;
            hasher.update(&buffer[..len]);
            offset += len as u64;
        }
        Ok(hasher.finish())
    })
    .await
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, S3Error> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result?),
        Err(join_error) => Err(S3Error::Io(std::io::Error::other(join_error))),
    }
}

/// Two blocking threads hashing the file's completed prefix, in order, while later parts are
/// still downloading: one computes the SHA-256, the other the MD5 and CRCs
/// ([`ContentHasher::split`]), so neither hash waits for the other. Each reads the prefix
/// back from the page cache.
struct PrefixHasher {
    watermarks: Vec<std_mpsc::Sender<u64>>,
    stop: Arc<AtomicBool>,
    threads: Vec<tokio::task::JoinHandle<std::io::Result<ContentHasher>>>,
}

impl PrefixHasher {
    fn start(file: Arc<File>, hasher: ContentHasher) -> PrefixHasher {
        let stop = Arc::new(AtomicBool::new(false));
        let (first, second) = hasher.split();
        let mut watermarks = Vec::with_capacity(2);
        let mut threads = Vec::with_capacity(2);
        for hasher in [first, second] {
            let (sender, updates) = std_mpsc::channel::<u64>();
            let (file, stopped) = (Arc::clone(&file), Arc::clone(&stop));
            threads.push(tokio::task::spawn_blocking(move || {
                hash_prefix(&file, hasher, &updates, &stopped)
            }));
            watermarks.push(sender);
        }
        PrefixHasher {
            watermarks,
            stop,
            threads,
        }
    }

    /// Bytes `0..end` are on disk.
    fn advance(&self, end: u64) {
        for watermarks in &self.watermarks {
            let _ = watermarks.send(end);
        }
    }

    /// Waits for the hash of bytes `0..size`.
    async fn finish(mut self, size: u64) -> Result<Digests, S3Error> {
        self.advance(size);
        self.watermarks.clear();
        let mut merged: Option<ContentHasher> = None;
        for thread in std::mem::take(&mut self.threads) {
            let hasher = match thread.await {
                Ok(result) => result?,
                Err(join_error) => return Err(S3Error::Io(std::io::Error::other(join_error))),
            };
            if hasher.length() != size {
                return Err(S3Error::Internal(format!(
                    "hashed {} of {size} bytes",
                    hasher.length()
                )));
            }
            merged = Some(match merged {
                Some(first) => first.merge(hasher),
                None => hasher,
            });
        }
        let Some(hasher) = merged else {
            return Err(S3Error::Internal("the hashing threads are gone".to_owned()));
        };
        Ok(hasher.finish())
    }
}

impl Drop for PrefixHasher {
    fn drop(&mut self) {
        // An abandoned fetch must not leave a thread reading a large file.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Hashes `file` from its start up to the latest watermark received, until the channel closes.
fn hash_prefix(
    file: &File,
    mut hasher: ContentHasher,
    updates: &std_mpsc::Receiver<u64>,
    stopped: &AtomicBool,
) -> std::io::Result<ContentHasher> {
    let mut buffer = vec![0u8; HASH_READ];
    let mut hashed = 0u64;
    while let Ok(mut target) = updates.recv() {
        while let Ok(later) = updates.try_recv() {
            target = target.max(later);
        }
        while hashed < target {
            if stopped.load(Ordering::Relaxed) {
                return Ok(hasher);
            }
            let len = usize::try_from(target - hashed)
                .unwrap_or(HASH_READ)
                .min(HASH_READ);
            file.read_exact_at(&mut buffer[..len], hashed)?;
            hasher.update(&buffer[..len]);
            hashed += len as u64;
        }
    }
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Content-Range: bytes 0-18446744073709551615/10` overflowed `last + 1` (a panic in
    /// debug builds, a wrapped comparison in release ones) instead of being refused.
    #[test]
    fn a_range_ending_at_u64_max_is_refused() {
        let response = GetObjectOutput::builder()
            .e_tag("\"abc\"")
            .content_range("bytes 0-18446744073709551615/10")
            .build();
        let object = RemoteObject {
            bucket: "bucket".to_owned(),
            key: "key".to_owned(),
            size: 10,
            etag: "abc".to_owned(),
            last_modified_ms: None,
        };
        let checked = check_range_response(&response, &object, &OnceLock::new(), 0, 10);
        assert!(checked.is_err());
    }

    #[test]
    fn the_prefix_ends_at_the_first_missing_part() {
        let completed: BTreeSet<u64> = [0, 1, 3].into_iter().collect();
        assert_eq!(contiguous_prefix(&completed, 4, 10, 35), 20);
        let all: BTreeSet<u64> = (0..4).collect();
        assert_eq!(contiguous_prefix(&all, 4, 10, 35), 35);
        assert_eq!(contiguous_prefix(&BTreeSet::new(), 4, 10, 35), 0);
    }
}
