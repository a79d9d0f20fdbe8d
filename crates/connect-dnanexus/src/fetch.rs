//! Fetching one file: parallel ranged GETs streamed to disk at their offsets, the whole-file
//! SHA-256 computed as the bytes land, part MD5s checked in batches, resume through a sidecar
//! of complete parts (re-checked before they are trusted).
//!
//! How the work is cut: every part not yet verified is cut into *lanes* of at most
//! `chunk_size` bytes (never across a part boundary), queued in file order, at most
//! `concurrency` running at once. The ranges in flight therefore stay next to each other, so
//! the whole-file SHA-256 keeps pace with the transfer instead of trailing the last byte. A
//! lane that breaks off resumes from its last byte. A lane accumulates ~1 MiB blocks and hands
//! each to a blocking thread that writes it at its offset and feeds the SHA-256.
//!
//! How the SHA-256 stays bounded in memory: it is a *hash stream* that must see its bytes in
//! order. A block at the stream's frontier is hashed from memory by the thread that wrote it; a
//! block that lands ahead of the frontier is only recorded, and whoever later reaches it reads it
//! back from the page cache (on a separate blocking task, so no lane waits for it). No block is
//! kept in memory after it is written.
//!
//! How parts are verified: a part whose bytes are all on disk goes to the source's
//! [`PartVerifier`], which reads it back from the page cache and hashes it together with other
//! parts (of this file or of other files fetched at the same time) in the SIMD lanes of one
//! core. The fetch waits for its parts' verdicts after its last byte.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, HeaderMap, HeaderName, HeaderValue, RANGE};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{ApiClient, describe_transport, is_retryable_status, retry_after};
use crate::error::transport_error;
use crate::verify::PartVerifier;
use crate::{DnanexusError, DnanexusOptions, FetchedFile, RemoteFile};

/// Bytes a lane collects before writing and hashing them.
const BLOCK_BYTES: usize = 1 << 20;
/// Read size when hashing from disk: small enough that the bytes just copied are still in the
/// CPU's cache when the hash reads them.
const READ_BACK_BYTES: usize = 128 << 10;
/// Lifetime asked for a download URL (seconds); an expired URL is simply asked for again.
const URL_DURATION_S: u64 = 24 * 3600;
/// A URL this close to expiry is replaced before use.
const URL_EXPIRY_MARGIN_MS: u64 = 60_000;
/// Verified bytes written before a background sync is started.
const SYNC_BYTES: u64 = 64 << 20;
const SIDECAR_HEADER: &str = "keyledger-dnanexus-parts v1";

pub(crate) async fn fetch(
    api: &ApiClient,
    verifier: &Arc<PartVerifier>,
    options: &DnanexusOptions,
    file: &RemoteFile,
    partial_path: &Path,
    progress: &(dyn Fn(u64) + Sync),
    cancel: &CancellationToken,
) -> Result<FetchedFile, DnanexusError> {
    let layout = Layout::of(file)?;
    if cancel.is_cancelled() {
        return Err(DnanexusError::Cancelled);
    }
    let sidecar_path = sidecar_path(partial_path);
    let prepared = {
        let (file, layout, partial_path, sidecar_path, verifier) = (
            file.clone(),
            layout.clone(),
            partial_path.to_path_buf(),
            sidecar_path.clone(),
            Arc::clone(verifier),
        );
        tokio::task::spawn_blocking(move || {
            prepare(&file, &layout, &partial_path, &sidecar_path, &verifier)
        })
        .await
        .map_err(join_error)??
    };
    let transfer = Arc::new(Transfer::new(
        file,
        &layout,
        prepared,
        sidecar_path.clone(),
        Arc::clone(verifier),
        tokio::runtime::Handle::current(),
    ));
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(DnanexusError::Cancelled),
        outcome = transfer.clone().run(api, options, progress) => outcome,
    };
    // Whatever happened, nothing may touch the partial file once this call returns.
    transfer.quiesce().await;
    match outcome {
        Ok(fetched) => Ok(fetched),
        Err(error @ DnanexusError::Verification { .. }) => {
            remove_if_present(partial_path)?;
            remove_if_present(&sidecar_path)?;
            Err(error)
        }
        // A verification failure found while the lanes were stopping outranks their error.
        Err(error) => match lock(&transfer.failure).take() {
            Some(verification @ DnanexusError::Verification { .. }) => {
                remove_if_present(partial_path)?;
                remove_if_present(&sidecar_path)?;
                Err(verification)
            }
            _ => Err(error),
        },
    }
}

fn sidecar_path(partial_path: &Path) -> PathBuf {
    let mut name = partial_path.as_os_str().to_owned();
    name.push(".parts");
    PathBuf::from(name)
}

/// Where each part lives in the file.
#[derive(Clone, Debug)]
struct Layout {
    parts: Vec<PartSpan>,
}

#[derive(Clone, Debug)]
struct PartSpan {
    index: u32,
    offset: u64,
    size: u64,
    md5: Option<String>,
}

impl Layout {
    fn of(file: &RemoteFile) -> Result<Self, DnanexusError> {
        if file.parts.is_empty() && file.size > 0 {
            return Err(DnanexusError::InvalidInput(format!(
                "{} has no parts; list it again",
                file.id
            )));
        }
        let mut offset = 0;
        let mut parts = Vec::with_capacity(file.parts.len());
        for part in &file.parts {
            if let Some(md5) = &part.md5
                && (md5.len() != 32 || !md5.bytes().all(|byte| byte.is_ascii_hexdigit()))
            {
                return Err(DnanexusError::InvalidInput(format!(
                    "{} part {} has a malformed MD5",
                    file.id, part.index
                )));
            }
            parts.push(PartSpan {
                index: part.index,
                offset,
                size: part.size,
                md5: part.md5.as_ref().map(|md5| md5.to_ascii_lowercase()),
            });
            offset += part.size;
        }
        if offset != file.size {
            return Err(DnanexusError::InvalidInput(format!(
                "{}: parts add up to {offset} bytes but the file has {}",
                file.id, file.size
            )));
        }
        Ok(Self { parts })
    }
}

/// The partial file, opened and sized, with the parts a previous attempt verified.
struct Prepared {
    data: Arc<File>,
    verified: Vec<bool>,
    sidecar: Option<File>,
}

/// Opens the partial file; re-checks the parts the sidecar claims (in one batch); rewrites the
/// sidecar with the parts that still verify.
fn prepare(
    file: &RemoteFile,
    layout: &Layout,
    partial_path: &Path,
    sidecar_path: &Path,
    verifier: &PartVerifier,
) -> Result<Prepared, DnanexusError> {
    let use_sidecar = layout.parts.len() > 1;
    let mut claimed = if use_sidecar {
        read_sidecar(sidecar_path, file, layout)
    } else {
        BTreeSet::new()
    };
    // Sample data is private to the service whatever the umask (the mode survives the rename).
    let data = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(partial_path)?;
    let on_disk = data.metadata()?.len();
    if on_disk != file.size {
        claimed.clear();
    }
    if claimed.is_empty() {
        if on_disk != 0 {
            // Nothing to keep: drop whatever bytes an earlier attempt left.
            data.set_len(0)?;
        }
        data.set_len(file.size)?;
    }
    let verified = recheck_claimed_parts(&data, layout, &claimed, verifier);
    let sidecar = if use_sidecar {
        let mut sidecar = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(sidecar_path)?;
        let mut text = format!(
            "{SIDECAR_HEADER}\n{} {} {}\n",
            file.id,
            file.size,
            layout.parts.len()
        );
        for (part, _) in layout.parts.iter().zip(&verified).filter(|(_, ok)| **ok) {
            text.push_str(&format!(
                "{} {}\n",
                part.index,
                part.md5.as_deref().unwrap_or_default()
            ));
        }
        sidecar.write_all(text.as_bytes())?;
        Some(sidecar)
    } else {
        // Only an earlier attempt can have left one. A fresh file skips the unlink, which
        // takes the folder's lock that the parallel fetches' creates need.
        if on_disk != 0 {
            remove_if_present(sidecar_path)?;
        }
        None
    };
    Ok(Prepared {
        data: Arc::new(data),
        verified,
        sidecar,
    })
}

/// Which parts still have their MD5 on disk, of those the sidecar claims (a fresh fetch claims
/// nothing and reads nothing).
fn recheck_claimed_parts(
    data: &File,
    layout: &Layout,
    claimed: &BTreeSet<u32>,
    verifier: &PartVerifier,
) -> Vec<bool> {
    let mut verified = vec![false; layout.parts.len()];
    let checks: Vec<(usize, &PartSpan, &str)> = layout
        .parts
        .iter()
        .enumerate()
        .filter(|(_, part)| claimed.contains(&part.index))
        .filter_map(|(at, part)| Some((at, part, part.md5.as_deref()?)))
        .collect();
    let ranges: Vec<(&File, u64, u64)> = checks
        .iter()
        .map(|(_, part, _)| (data, part.offset, part.size))
        .collect();
    for ((at, _, expected), digest) in checks.iter().zip(verifier.md5_now(&ranges)) {
        verified[*at] = digest.is_ok_and(|digest| hex(&digest) == *expected);
    }
    verified
}

/// Part indices the sidecar claims complete for this very file (same id, size, parts, MD5s).
fn read_sidecar(path: &Path, file: &RemoteFile, layout: &Layout) -> BTreeSet<u32> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    let mut lines = text.lines();
    let expected_identity = format!("{} {} {}", file.id, file.size, layout.parts.len());
    if lines.next() != Some(SIDECAR_HEADER) || lines.next() != Some(expected_identity.as_str()) {
        return BTreeSet::new();
    }
    lines
        .filter_map(|line| {
            let (index, md5) = line.split_once(' ')?;
            let index: u32 = index.parse().ok()?;
            let part = layout.parts.iter().find(|part| part.index == index)?;
            (part.md5.as_deref() == Some(md5)).then_some(index)
        })
        .collect()
}

/// Shared state of one fetch.
struct Transfer {
    file_id: String,
    project: String,
    size: u64,
    data: Arc<File>,
    parts: Vec<PartTrack>,
    whole: HashStream,
    sha256: Mutex<Option<[u8; 32]>>,
    verifier: Arc<PartVerifier>,
    /// Parts handed to the verifier whose verdict has not come back.
    checks_pending: AtomicUsize,
    checks_done: tokio::sync::Notify,
    sidecar: Mutex<Option<File>>,
    sidecar_path: PathBuf,
    uses_sidecar: bool,
    parts_verified: AtomicUsize,
    bytes_done: AtomicU64,
    /// Bytes this attempt still has to write; the write that brings it to zero finishes the
    /// file (size check and fsync) on its own blocking thread.
    unwritten: AtomicU64,
    /// That write found the file complete and synced it.
    finished_on_disk: std::sync::atomic::AtomicBool,
    failure: Mutex<Option<DnanexusError>>,
    /// Cancelled when the fetch ends or fails: lanes and read-backs stop.
    abort: CancellationToken,
    /// Read-backs and background syncs: blocking work on the file that outlives a lane.
    read_backs: Mutex<Vec<JoinHandle<()>>>,
    /// Bytes of complete parts written since the last background sync was started.
    unsynced: AtomicU64,
    /// A background `fdatasync` is running.
    syncing: std::sync::atomic::AtomicBool,
    /// Block writes still running on blocking threads (a dropped lane does not stop them).
    writes_in_flight: AtomicUsize,
    /// Taken around each write to the file (see `write_block`).
    write_turn: Mutex<()>,
    writes_done: tokio::sync::Notify,
    runtime: tokio::runtime::Handle,
}

struct PartTrack {
    span: PartSpan,
    /// Its MD5 is to be checked in this attempt (it has one and was not verified before).
    check: bool,
    /// Bytes of this part written in this attempt.
    written: AtomicU64,
}

/// A contiguous span of one part fetched by one ranged GET (resumed by more after a break).
#[derive(Clone, Copy, Debug)]
struct Lane {
    part: usize,
    start: u64,
    end: u64,
}

impl Transfer {
    fn new(
        file: &RemoteFile,
        layout: &Layout,
        prepared: Prepared,
        sidecar_path: PathBuf,
        verifier: Arc<PartVerifier>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let parts = layout
            .parts
            .iter()
            .zip(&prepared.verified)
            .map(|(span, verified)| PartTrack {
                span: span.clone(),
                check: !verified && span.md5.is_some(),
                written: AtomicU64::new(0),
            })
            .collect();
        Self {
            file_id: file.id.clone(),
            project: file.project.clone(),
            size: file.size,
            data: prepared.data,
            parts,
            whole: HashStream::new(file.size),
            sha256: Mutex::new(None),
            verifier,
            checks_pending: AtomicUsize::new(0),
            checks_done: tokio::sync::Notify::new(),
            uses_sidecar: prepared.sidecar.is_some(),
            sidecar: Mutex::new(prepared.sidecar),
            sidecar_path,
            parts_verified: AtomicUsize::new(prepared.verified.iter().filter(|ok| **ok).count()),
            bytes_done: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            finished_on_disk: std::sync::atomic::AtomicBool::new(false),
            failure: Mutex::new(None),
            abort: CancellationToken::new(),
            read_backs: Mutex::new(Vec::new()),
            unsynced: AtomicU64::new(0),
            syncing: std::sync::atomic::AtomicBool::new(false),
            writes_in_flight: AtomicUsize::new(0),
            write_turn: Mutex::new(()),
            writes_done: tokio::sync::Notify::new(),
            runtime,
        }
    }

    async fn run(
        self: Arc<Self>,
        api: &ApiClient,
        options: &DnanexusOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<FetchedFile, DnanexusError> {
        // Parts verified earlier (and empty parts) are already on disk: feed them to the hashes.
        let mut pending = Vec::new();
        for (at, part) in self.parts.iter().enumerate() {
            let span = &part.span;
            if span.size == 0 || (!part.check && span.md5.is_some()) {
                self.bytes_done.fetch_add(span.size, Ordering::Relaxed);
                self.record_written(at, span.offset, span.offset + span.size, None);
            } else {
                pending.push(at);
            }
        }
        if self.size == 0 {
            self.record_written_whole_empty();
        }
        progress(self.bytes_done.load(Ordering::Relaxed));

        let lanes = plan_lanes(&self.parts, &pending, options.chunk_size);
        let to_write = pending.iter().map(|&at| self.parts[at].span.size).sum();
        self.unwritten.store(to_write, Ordering::SeqCst);
        let urls = DownloadUrls::default();
        let network = Network {
            api,
            options,
            urls: &urls,
            progress,
        };
        let lanes_done =
            futures::stream::iter(lanes.into_iter().map(|lane| self.run_lane(&network, lane)))
                .buffer_unordered(options.concurrency)
                .try_collect::<Vec<()>>();
        let lanes_outcome = tokio::select! {
            biased;
            () = self.abort.cancelled() => Err(self.take_failure()),
            outcome = lanes_done => outcome.map(|_| ()),
        };
        lanes_outcome?;
        // Every byte is on disk; wait for the read-backs still hashing and the part checks.
        self.settle().await.map_err(join_error)?;
        if let Some(error) = lock(&self.failure).take() {
            return Err(error);
        }
        let sha256 = lock(&self.sha256).ok_or_else(|| {
            std::io::Error::other("internal error: the SHA-256 did not cover the whole file")
        })?;
        let parts_with_md5 = self.parts.iter().filter(|part| part.span.md5.is_some());
        if self.parts_verified.load(Ordering::SeqCst) != parts_with_md5.count() {
            return Err(std::io::Error::other("internal error: a part was not checked").into());
        }
        let finished_on_disk = self.finished_on_disk.load(Ordering::SeqCst);
        if !finished_on_disk || self.uses_sidecar {
            let this = self.clone();
            tokio::task::spawn_blocking(move || -> Result<(), DnanexusError> {
                if !finished_on_disk {
                    this.finish_on_disk()?;
                }
                // Verified and durable: the resume hint has served its purpose.
                if this.uses_sidecar {
                    remove_if_present(&this.sidecar_path)?;
                }
                Ok(())
            })
            .await
            .map_err(join_error)??;
        }
        Ok(FetchedFile {
            size: self.size,
            sha256,
            parts_verified: self.parts_verified.load(Ordering::Relaxed),
        })
    }

    /// Fetches a lane with one ranged GET; a GET that breaks off is resumed from the last byte
    /// received.
    async fn run_lane(
        self: &Arc<Self>,
        network: &Network<'_>,
        lane: Lane,
    ) -> Result<(), DnanexusError> {
        let options = network.options;
        let mut offset = lane.start;
        let mut failures = 0u32;
        while offset < lane.end {
            let url = network
                .urls
                .get(network.api, &self.file_id, &self.project)
                .await?;
            let (reached, outcome) = self
                .fetch_range(network, &url, lane.part, offset, lane.end)
                .await;
            if reached > offset {
                failures = 0;
                offset = reached;
            }
            let failure = match outcome {
                Ok(()) => continue,
                Err(failure) => failure,
            };
            failures += 1;
            match failure {
                RangeFailure::Fatal(error) => return Err(error),
                RangeFailure::UrlRejected(error) => {
                    if failures >= options.max_attempts {
                        return Err(error);
                    }
                    tracing::debug!(file = %self.file_id, %error, "download URL rejected; asking for a new one");
                    network.urls.invalidate(url.generation).await;
                }
                RangeFailure::Retry { error, retry_after } => {
                    if failures >= options.max_attempts {
                        return Err(error);
                    }
                    let delay = network.api.retry.delay(failures, retry_after);
                    tracing::debug!(file = %self.file_id, failures, ?delay, %error, "retrying a ranged GET");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        Ok(())
    }

    /// GETs `[start, end)` and writes it; returns how far the data got, and how it ended.
    async fn fetch_range(
        self: &Arc<Self>,
        network: &Network<'_>,
        url: &DownloadUrl,
        part: usize,
        start: u64,
        end: u64,
    ) -> (u64, Result<(), RangeFailure>) {
        let request = network
            .api
            .http
            .get(&url.url)
            .headers(url.headers.clone())
            .header(RANGE, format!("bytes={start}-{}", end - 1));
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = transport_error(error, &network.api.host);
                let failure = if matches!(error, DnanexusError::Unreachable { .. }) {
                    RangeFailure::Fatal(error)
                } else {
                    RangeFailure::retry(error, None)
                };
                return (start, Err(failure));
            }
        };
        let status = response.status();
        let whole_file = start == 0 && end == self.size;
        if status != StatusCode::PARTIAL_CONTENT && !(status == StatusCode::OK && whole_file) {
            let code = status.as_u16();
            let wait = retry_after(response.headers());
            let body = response.bytes().await.unwrap_or_default();
            let error = network.api.api_error(code, &body);
            let failure = match code {
                200 => RangeFailure::Fatal(DnanexusError::invalid_response(
                    "the download server ignored the Range header",
                )),
                403 | 404 | 410 => RangeFailure::UrlRejected(error),
                code if is_retryable_status(code) => RangeFailure::retry(error, wait),
                _ => RangeFailure::Fatal(error),
            };
            return (start, Err(failure));
        }
        if status == StatusCode::PARTIAL_CONTENT {
            let range_start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|value| value.to_str().ok())
                .and_then(content_range_start);
            if range_start.is_some_and(|range_start| range_start != start) {
                return (
                    start,
                    Err(RangeFailure::Fatal(DnanexusError::invalid_response(
                        "the download server answered a different range",
                    ))),
                );
            }
        }

        // Frames are collected (not copied) until about a block's worth, then written and
        // hashed together on a blocking thread.
        let mut position = start;
        let mut frames: Vec<Bytes> = Vec::new();
        let mut collected = 0u64;
        let ending = loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    if position + collected + bytes.len() as u64 > end {
                        break Err(RangeFailure::Fatal(DnanexusError::invalid_response(
                            "the download server sent more bytes than asked",
                        )));
                    }
                    collected += bytes.len() as u64;
                    frames.push(bytes);
                    if collected >= BLOCK_BYTES as u64 {
                        if let Err(error) = self
                            .write_block(part, position, std::mem::take(&mut frames))
                            .await
                        {
                            return (position, Err(RangeFailure::Fatal(error)));
                        }
                        position = self.advanced(network, position, std::mem::take(&mut collected));
                    }
                }
                Ok(None) => break Ok(()),
                // A body cut short: keep what arrived, resume from there.
                Err(error) => {
                    break Err(RangeFailure::retry(
                        DnanexusError::Transport(describe_transport(error)),
                        None,
                    ));
                }
            }
        };
        if collected > 0 {
            if let Err(error) = self.write_block(part, position, frames).await {
                return (position, Err(RangeFailure::Fatal(error)));
            }
            position = self.advanced(network, position, collected);
        }
        match ending {
            Ok(()) if position < end => (
                position,
                Err(RangeFailure::retry(
                    DnanexusError::Transport(format!(
                        "the download ended after {} of {} bytes",
                        position - start,
                        end - start
                    )),
                    None,
                )),
            ),
            ending => (position, ending),
        }
    }

    fn advanced(&self, network: &Network<'_>, position: u64, len: u64) -> u64 {
        let done = self.bytes_done.fetch_add(len, Ordering::Relaxed) + len;
        (network.progress)(done);
        position + len
    }

    /// Writes consecutive frames from `offset` on a blocking thread, feeding the SHA-256 and
    /// handing complete parts to the verifier. Each frame is written and hashed before the next
    /// is touched, while it is still in the CPU's cache (hashing a whole block after writing it
    /// read it back from memory: SHA-256 runs at ≈1.2 GB/s from memory and ≈1.9 GB/s from cache
    /// here).
    async fn write_block(
        self: &Arc<Self>,
        part: usize,
        offset: u64,
        frames: Vec<Bytes>,
    ) -> Result<(), DnanexusError> {
        let this = self.clone();
        self.writes_in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::task::spawn_blocking(move || -> Result<(), DnanexusError> {
            let _done = WriteDone(&this);
            let mut start = offset;
            for frame in &frames {
                {
                    // The kernel serialises buffered writes to one file on its inode lock, and
                    // a writer waiting for it spins while the holder runs: on 2 cores that
                    // burnt up to 6 % of the CPU (perf). Waiting here sleeps instead.
                    let _turn = lock(&this.write_turn);
                    this.data.write_all_at(frame, start)?;
                }
                let end = start + frame.len() as u64;
                this.record_written(part, start, end, Some(std::slice::from_ref(frame)));
                start = end;
            }
            // The last write of the attempt also finishes the file: one hop to a blocking
            // thread fewer per file, and the fsync overlaps the part checks.
            let written = start - offset;
            if this.unwritten.fetch_sub(written, Ordering::SeqCst) == written {
                this.finish_on_disk()?;
                this.finished_on_disk.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .await
        .map_err(join_error)?
    }

    /// Checks that the file has its size and makes it durable.
    fn finish_on_disk(&self) -> Result<(), DnanexusError> {
        let on_disk = self.data.metadata()?.len();
        if on_disk != self.size {
            return Err(DnanexusError::Verification {
                file: self.file_id.clone(),
                part: 0,
                expected: format!("{} bytes", self.size),
                actual: format!("{on_disk} bytes"),
            });
        }
        self.data.sync_all()?;
        Ok(())
    }

    /// Marks `[start, end)` of part `part` as on disk: feeds the SHA-256, and hands the part to
    /// the verifier once all its bytes are written.
    fn record_written(self: &Arc<Self>, part: usize, start: u64, end: u64, data: Option<&[Bytes]>) {
        let track = &self.parts[part];
        let len = end - start;
        if track.check && track.written.fetch_add(len, Ordering::SeqCst) + len == track.span.size {
            if let Some(sidecar) = lock(&self.sidecar).as_mut() {
                // A claim for a later resume, which re-checks it: a failed write costs nothing.
                let md5 = track.span.md5.as_deref().unwrap_or_default();
                let _ = sidecar.write_all(format!("{} {md5}\n", track.span.index).as_bytes());
            }
            self.check_part(part);
            self.sync_in_background(track.span.size);
        }
        let step = self.whole.written(start, end, data);
        self.follow(step);
    }

    fn record_written_whole_empty(self: &Arc<Self>) {
        let step = self.whole.written(0, 0, None);
        self.follow(step);
    }

    /// Queues part `part` (all on disk) for its MD5 check; the verdict fails the fetch or
    /// records the part as verified.
    fn check_part(self: &Arc<Self>, part: usize) {
        self.checks_pending.fetch_add(1, Ordering::SeqCst);
        // Weak: a queued check must not keep a dropped fetch (and, through it, the verifier)
        // alive.
        let transfer = Arc::downgrade(self);
        let span = &self.parts[part].span;
        self.verifier.submit(
            &self.runtime,
            Arc::clone(&self.data),
            span.offset,
            span.size,
            self.abort.clone(),
            Box::new(move |digest| {
                let Some(this) = transfer.upgrade() else {
                    return;
                };
                this.part_checked(part, digest);
                if this.checks_pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                    this.checks_done.notify_waiters();
                }
            }),
        );
    }

    fn part_checked(&self, part: usize, digest: std::io::Result<[u8; 16]>) {
        let span = &self.parts[part].span;
        let digest = match digest {
            Ok(digest) => digest,
            Err(error) => return self.fail(error.into()),
        };
        let actual = hex(&digest);
        let expected = span.md5.clone().unwrap_or_default();
        if actual != expected {
            return self.fail(DnanexusError::Verification {
                file: self.file_id.clone(),
                part: span.index,
                expected,
                actual,
            });
        }
        self.parts_verified.fetch_add(1, Ordering::SeqCst);
    }

    fn follow(self: &Arc<Self>, step: Step) {
        match step {
            Step::Idle => {}
            Step::Finished(sha256) => *lock(&self.sha256) = Some(sha256),
            Step::ReadBack(hasher) => {
                let this = self.clone();
                let handle = self.runtime.spawn_blocking(move || {
                    match this.whole.read_back(hasher, &this.data, &this.abort) {
                        Ok(step) => this.follow(step),
                        Err(error) => this.fail(error.into()),
                    }
                });
                lock(&self.read_backs).push(handle);
            }
        }
    }

    /// Starts an `fdatasync` of the file once [`SYNC_BYTES`] of complete parts are unsynced
    /// (one at a time), so that the final sync, which the caller waits for, finds little left
    /// to write: the disk works while the download goes on.
    fn sync_in_background(self: &Arc<Self>, written: u64) {
        let unsynced = self.unsynced.fetch_add(written, Ordering::Relaxed) + written;
        if unsynced < SYNC_BYTES
            || self.abort.is_cancelled()
            || self.syncing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.unsynced.store(0, Ordering::Relaxed);
        let this = self.clone();
        let handle = self.runtime.spawn_blocking(move || {
            if let Err(error) = this.data.sync_data() {
                this.fail(error.into());
            }
            this.syncing.store(false, Ordering::Release);
        });
        lock(&self.read_backs).push(handle);
    }

    /// Stops the read-backs and part checks and waits until no thread of this fetch touches
    /// the file. Writes go first: a finishing write may still start a read-back or a check.
    async fn quiesce(&self) {
        self.abort.cancel();
        until_zero(&self.writes_in_flight, &self.writes_done).await;
        // Queued checks of an aborted fetch are dropped unread; a running batch finishes. A
        // read-back that panicked has nothing left to stop.
        let _ = self.settle().await;
    }

    /// Waits for the part checks (asking for them at once) and for every read-back and
    /// background sync; reports the first of those that panicked.
    async fn settle(&self) -> Result<(), tokio::task::JoinError> {
        self.verifier.hurry(&self.runtime, &self.data);
        let mut outcome = Ok(());
        loop {
            let handles = std::mem::take(&mut *lock(&self.read_backs));
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                if let Err(error) = handle.await {
                    outcome = outcome.and(Err(error));
                }
            }
        }
        until_zero(&self.checks_pending, &self.checks_done).await;
        outcome
    }

    fn fail(&self, error: DnanexusError) {
        let mut failure = lock(&self.failure);
        // A verification failure outranks whatever it caused.
        if failure.is_none() || matches!(error, DnanexusError::Verification { .. }) {
            *failure = Some(error);
        }
        self.abort.cancel();
    }

    fn take_failure(&self) -> DnanexusError {
        lock(&self.failure)
            .take()
            .unwrap_or(DnanexusError::Cancelled)
    }
}

/// Waits until `counter` is zero; whoever brings it to zero notifies `reached` (waiters).
async fn until_zero(counter: &AtomicUsize, reached: &tokio::sync::Notify) {
    loop {
        let notified = reached.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if counter.load(Ordering::SeqCst) == 0 {
            return;
        }
        notified.await;
    }
}

/// Counts a block write as finished when dropped (also if the write panicked).
struct WriteDone<'a>(&'a Transfer);

impl Drop for WriteDone<'_> {
    fn drop(&mut self) {
        if self.0.writes_in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.writes_done.notify_waiters();
        }
    }
}

/// What a lane needs besides the transfer itself.
struct Network<'a> {
    api: &'a ApiClient,
    options: &'a DnanexusOptions,
    urls: &'a DownloadUrls,
    progress: &'a (dyn Fn(u64) + Sync),
}

/// How a ranged GET failed.
enum RangeFailure {
    /// Retrying cannot help.
    Fatal(DnanexusError),
    /// The URL expired or was refused: ask for a new one.
    UrlRejected(DnanexusError),
    /// Throttling, a server error or a broken connection: wait, then resume.
    Retry {
        error: DnanexusError,
        retry_after: Option<Duration>,
    },
}

impl RangeFailure {
    fn retry(error: DnanexusError, retry_after: Option<Duration>) -> Self {
        RangeFailure::Retry { error, retry_after }
    }
}

/// Lanes for the parts still to fetch, in file order: each part cut into spans of at most
/// `chunk_size` (an empty part gets one empty lane).
fn plan_lanes(parts: &[PartTrack], pending: &[usize], chunk_size: u64) -> Vec<Lane> {
    let mut lanes = Vec::new();
    for &at in pending {
        let span = &parts[at].span;
        let end = span.offset + span.size;
        let mut start = span.offset;
        loop {
            let lane_end = start.saturating_add(chunk_size).min(end);
            lanes.push(Lane {
                part: at,
                start,
                end: lane_end,
            });
            if lane_end >= end {
                break;
            }
            start = lane_end;
        }
    }
    lanes
}

/// The file's current download URL, shared by all lanes; asked for once and again only when it
/// expires or is refused.
#[derive(Default)]
struct DownloadUrls {
    current: tokio::sync::Mutex<Option<Arc<DownloadUrl>>>,
    generations: AtomicU64,
}

/// A download URL is a credential: no `Debug`, never logged.
struct DownloadUrl {
    url: String,
    headers: HeaderMap,
    expires_ms: Option<u64>,
    generation: u64,
}

impl DownloadUrls {
    async fn get(
        &self,
        api: &ApiClient,
        file_id: &str,
        project: &str,
    ) -> Result<Arc<DownloadUrl>, DnanexusError> {
        let mut current = self.current.lock().await;
        if let Some(url) = current.as_ref()
            && url
                .expires_ms
                .is_none_or(|expires| expires > now_ms() + URL_EXPIRY_MARGIN_MS)
        {
            return Ok(url.clone());
        }
        // The URL itself carries the authorisation: the token never goes to the data server.
        let input =
            json!({"project": project, "preauthenticated": true, "duration": URL_DURATION_S});
        let output = api
            .call(&format!("/{file_id}/download"), &input)
            .await
            .map_err(|error| match error {
                DnanexusError::Api { kind, .. } if kind == "ResourceNotFound" => {
                    DnanexusError::FileNotFound {
                        id: file_id.to_owned(),
                    }
                }
                other => other,
            })?;
        let url = output
            .get("url")
            .and_then(Value::as_str)
            .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
            .ok_or_else(|| DnanexusError::invalid_response("download returned no http(s) url"))?
            .to_owned();
        let mut headers = HeaderMap::new();
        match output.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => {
                for (name, value) in given {
                    let header = value.as_str().and_then(|value| {
                        Some((
                            HeaderName::from_bytes(name.as_bytes()).ok()?,
                            HeaderValue::from_str(value).ok()?,
                        ))
                    });
                    let Some((name, mut value)) = header else {
                        return Err(DnanexusError::invalid_response(
                            "download returned a header that is not a string",
                        ));
                    };
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
            }
            Some(_) => {
                return Err(DnanexusError::invalid_response(
                    "download returned headers that are not an object",
                ));
            }
        }
        let expires_ms = output.get("expires").and_then(Value::as_u64);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let url = Arc::new(DownloadUrl {
            url,
            headers,
            expires_ms,
            generation,
        });
        *current = Some(url.clone());
        Ok(url)
    }

    /// Forgets the URL of `generation` (a newer one, fetched by another lane, is kept).
    async fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|url| url.generation == generation)
        {
            *current = None;
        }
    }
}

/// The whole file's SHA-256, which must see the bytes in order while they land in any order.
/// Whoever holds the hasher (the "baton") advances the frontier; the others only record ranges.
struct HashStream {
    state: Mutex<StreamState>,
}

struct StreamState {
    frontier: u64,
    end: u64,
    /// `None` while a thread is hashing, and after the end.
    hasher: Option<Hasher>,
    /// Written but not yet hashed ranges, `start → end`, merged when adjacent.
    pending: BTreeMap<u64, u64>,
    done: bool,
}

/// What the thread that reported a write must do next.
enum Step {
    Idle,
    Finished([u8; 32]),
    /// Hash the written ranges at the frontier from disk (the caller now holds the hasher).
    ReadBack(Hasher),
}

impl HashStream {
    /// The SHA-256 of a file of `size` bytes.
    fn new(size: u64) -> Self {
        Self {
            state: Mutex::new(StreamState {
                frontier: 0,
                end: size,
                hasher: Some(Hasher::new()),
                pending: BTreeMap::new(),
                done: false,
            }),
        }
    }

    /// Records that `[start, end)` is on disk; `data` holds those bytes if still in memory.
    fn written(&self, start: u64, end: u64, data: Option<&[Bytes]>) -> Step {
        let mut state = lock(&self.state);
        if state.done {
            return Step::Idle;
        }
        if end > start {
            insert_range(&mut state.pending, start, end);
        }
        if state.hasher.is_none()
            || (state.frontier != state.end && !state.pending.contains_key(&state.frontier))
        {
            return Step::Idle;
        }
        let Some(mut hasher) = state.hasher.take() else {
            return Step::Idle;
        };
        if let Some(frames) = data
            && start == state.frontier
            && frames.iter().map(|frame| frame.len() as u64).sum::<u64>() == end - start
        {
            let run_end = state.pending.remove(&start).unwrap_or(end);
            if run_end > end {
                state.pending.insert(end, run_end);
            }
            drop(state);
            for frame in frames {
                hasher.update(frame);
            }
            state = lock(&self.state);
            state.frontier = end;
        }
        if state.frontier == state.end {
            state.done = true;
            return Step::Finished(hasher.finish());
        }
        if state.pending.contains_key(&state.frontier) {
            return Step::ReadBack(hasher);
        }
        state.hasher = Some(hasher);
        Step::Idle
    }

    /// Holding the hasher, hashes from disk every written range at the frontier, then hands
    /// the hasher back (or finishes).
    fn read_back(
        &self,
        mut hasher: Hasher,
        data: &File,
        abort: &CancellationToken,
    ) -> std::io::Result<Step> {
        let mut buffer = vec![0u8; READ_BACK_BYTES];
        loop {
            let (from, to) = {
                let mut state = lock(&self.state);
                if state.frontier == state.end {
                    state.done = true;
                    return Ok(Step::Finished(hasher.finish()));
                }
                let frontier = state.frontier;
                match state.pending.remove(&frontier) {
                    Some(to) => (frontier, to),
                    None => {
                        state.hasher = Some(hasher);
                        return Ok(Step::Idle);
                    }
                }
            };
            let mut position = from;
            while position < to {
                if abort.is_cancelled() {
                    return Ok(Step::Idle);
                }
                let len = (to - position).min(READ_BACK_BYTES as u64) as usize;
                data.read_exact_at(&mut buffer[..len], position)?;
                hasher.update(&buffer[..len]);
                position += len as u64;
            }
            lock(&self.state).frontier = to;
        }
    }
}

fn insert_range(pending: &mut BTreeMap<u64, u64>, mut start: u64, mut end: u64) {
    if let Some((&before_start, &before_end)) = pending.range(..=start).next_back()
        && before_end >= start
    {
        pending.remove(&before_start);
        start = before_start;
        end = end.max(before_end);
    }
    while let Some((&after_start, &after_end)) = pending.range(start..).next() {
        if after_start > end {
            break;
        }
        pending.remove(&after_start);
        end = end.max(after_end);
    }
    pending.insert(start, end);
}

/// The whole-file SHA-256, boxed so that passing the baton moves a pointer.
struct Hasher(Box<ring::digest::Context>);

impl Hasher {
    fn new() -> Self {
        Hasher(Box::new(ring::digest::Context::new(&ring::digest::SHA256)))
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(self.0.finish().as_ref());
        digest
    }
}

/// `bytes 5-9/100` → 5.
fn content_range_start(header: &str) -> Option<u64> {
    header
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic elsewhere does not poison it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn join_error(error: tokio::task::JoinError) -> DnanexusError {
    DnanexusError::Io(std::io::Error::other(format!(
        "a worker thread failed: {error}"
    )))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut pending = BTreeMap::new();
        for (start, end) in [(10, 20), (30, 40), (20, 30), (50, 60), (45, 50)] {
            insert_range(&mut pending, start, end);
        }
        assert_eq!(
            pending.into_iter().collect::<Vec<_>>(),
            [(10, 40), (45, 60)]
        );
    }

    #[test]
    fn out_of_order_writes_hash_like_in_order() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("data"))
            .unwrap();
        file.write_all_at(&bytes, 0).unwrap();
        let stream = HashStream::new(10_000);
        let abort = CancellationToken::new();
        let mut digest = None;
        for (start, end, in_memory) in [
            (4000, 6000, true),
            (0, 1000, true),
            (6000, 10_000, false),
            (1000, 4000, true),
        ] {
            let frames = vec![
                Bytes::copy_from_slice(&bytes[start..(start + end) / 2]),
                Bytes::copy_from_slice(&bytes[(start + end) / 2..end]),
            ];
            let mut step = stream.written(
                start as u64,
                end as u64,
                in_memory.then_some(frames.as_slice()),
            );
            while let Step::ReadBack(hasher) = step {
                step = stream.read_back(hasher, &file, &abort).unwrap();
            }
            if let Step::Finished(found) = step {
                digest = Some(found);
            }
        }
        let expected = ring::digest::digest(&ring::digest::SHA256, &bytes);
        assert_eq!(digest.map(|d| d.to_vec()), Some(expected.as_ref().to_vec()));
    }

    #[test]
    fn lanes_are_chunks_in_file_order() {
        let track = |offset: u64, size: u64| PartTrack {
            span: PartSpan {
                index: 1,
                offset,
                size,
                md5: None,
            },
            check: false,
            written: AtomicU64::new(0),
        };
        let mib = 1u64 << 20;
        let one_part = [track(0, 100 * mib)];
        let lanes = plan_lanes(&one_part, &[0], 16 * mib);
        assert_eq!(lanes.len(), 7, "100 MiB is 7 chunks of 16 MiB");
        assert_eq!(lanes.first().map(|lane| lane.start), Some(0));
        assert_eq!(lanes.last().map(|lane| lane.end), Some(100 * mib));
        assert!(lanes.windows(2).all(|pair| pair[0].end == pair[1].start));
        let many: Vec<PartTrack> = (0..16).map(|i| track(i * 64 * mib, 64 * mib)).collect();
        let pending: Vec<usize> = (0..16).collect();
        let lanes = plan_lanes(&many, &pending, 8 * mib);
        assert_eq!(lanes.len(), 128, "8 chunks per 64 MiB part");
        assert!(lanes.windows(2).all(|pair| pair[0].end == pair[1].start));
        assert!(
            lanes.iter().all(|lane| {
                let span = &many[lane.part].span;
                lane.start >= span.offset && lane.end <= span.offset + span.size
            }),
            "no lane crosses a part boundary"
        );
        let empty = [track(0, 0)];
        assert_eq!(
            plan_lanes(&empty, &[0], mib).len(),
            1,
            "an empty part still gets its lane"
        );
        assert_eq!(content_range_start("bytes 5-9/100"), Some(5));
    }
}
