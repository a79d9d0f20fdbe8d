//! Fetching one file: parallel ranged GETs streamed to disk at their offsets, the whole-file
//! SHA-256 computed as the bytes land, part MD5s checked in batches, resume through a resume record
//! of complete parts (re-checked before they are trusted).
//!
//! How the work is cut: every part not yet verified is cut into *lanes* of at most
//! `chunk_size` bytes (never across a part boundary), queued in file order, at most
//! `concurrency` running at once. The ranges in flight therefore stay next to each other, so
//! the whole-file SHA-256 keeps pace with the transfer instead of trailing the last byte. A
//! lane that breaks off resumes from its last byte. A lane accumulates ~1 MiB blocks and hands
//! each to a blocking thread that writes it at its offset and feeds the SHA-256.
//!
//! How the SHA-256 stays bounded in memory: it is an `InOrderHasher` (keyledger-connect) that
//! must see its bytes in order. A block at the stream's frontier is hashed from memory by the thread that wrote it; a
//! block that lands ahead of the frontier is only recorded, and whoever later reaches it reads it
//! back from the page cache (on a separate blocking task, so no lane waits for it). No block is
//! kept in memory after it is written.
//!
//! How parts are verified: a part whose bytes are all on disk goes to the source's
//! `PartVerifier`, which reads it back from the page cache and hashes it together with other
//! parts (of this file or of other files fetched at the same time) in the SIMD lanes of one
//! core. The fetch waits for its parts' verdicts after its last byte.
//!
//! Files, lowest first (none imports from a file above it): `layout` (parts and lanes),
//! `urls` (the shared download URL), `resume` (opening the partial file, trusting earlier
//! parts), `transfer` (shared state and the disk side), `range` (the network side), and this
//! file, the entry point.

mod layout;
mod range;
mod resume;
mod transfer;
mod urls;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use keyledger_connect::{PartialFile, Progress};
use tokio_util::sync::CancellationToken;

use crate::client::ApiClient;
use crate::verify::PartVerifier;
use crate::{DnanexusError, DnanexusOptions, FetchedFile, RemoteFile};
use layout::{Layout, plan_lanes};
use range::Network;
use resume::prepare;
use transfer::{Transfer, join_error};
use urls::DownloadUrls;

pub(crate) async fn fetch(
    api: &ApiClient,
    verifier: &Arc<PartVerifier>,
    options: &DnanexusOptions,
    file: &RemoteFile,
    partial: &PartialFile,
    progress: &Progress<'_>,
    cancel: &CancellationToken,
) -> Result<FetchedFile, DnanexusError> {
    let layout = Layout::of(file)?;
    if cancel.is_cancelled() {
        return Err(DnanexusError::Cancelled);
    }
    let prepared = {
        let (file, layout, partial, verifier) = (
            file.clone(),
            layout.clone(),
            partial.clone(),
            Arc::clone(verifier),
        );
        tokio::task::spawn_blocking(move || prepare(&file, &layout, &partial, &verifier))
            .await
            .map_err(join_error)??
    };
    let transfer = Arc::new(Transfer::new(
        file,
        &layout,
        prepared,
        partial.clone(),
        Arc::clone(verifier),
        tokio::runtime::Handle::current(),
    ));
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(DnanexusError::Cancelled),
        outcome = run(transfer.clone(), api, options, progress) => outcome,
    };
    // Whatever happened, nothing may touch the partial file once this call returns.
    transfer.quiesce().await;
    match outcome {
        Ok(fetched) => Ok(fetched),
        Err(error @ DnanexusError::Verification { .. }) => {
            partial.discard()?;
            Err(error)
        }
        // A verification failure found while the lanes were stopping outranks their error.
        Err(error) => match transfer.failure.lock().take() {
            Some(verification @ DnanexusError::Verification { .. }) => {
                partial.discard()?;
                Err(verification)
            }
            _ => Err(error),
        },
    }
}

/// Runs the lanes of one attempt, then waits for the hashes and part checks.
async fn run(
    this: Arc<Transfer>,
    api: &ApiClient,
    options: &DnanexusOptions,
    progress: &Progress<'_>,
) -> Result<FetchedFile, DnanexusError> {
    // Parts verified earlier (and empty parts) are already on disk: feed them to the hashes.
    let mut pending = Vec::new();
    let mut resumed_bytes = 0;
    for (at, part) in this.parts.iter().enumerate() {
        let span = &part.span;
        if span.size == 0 || (!part.check && span.md5.is_some()) {
            resumed_bytes += span.size;
            this.record_written(at, span.offset, span.offset + span.size, None);
        } else {
            pending.push(at);
        }
    }
    if this.size == 0 {
        this.record_written_whole_empty();
    }

    let lanes = plan_lanes(&this.parts, &pending, options.chunk_size);
    let to_write = pending.iter().map(|&at| this.parts[at].span.size).sum();
    this.unwritten.store(to_write, Ordering::SeqCst);
    let urls = DownloadUrls::default();
    let network = Network {
        api,
        urls: &urls,
        progress,
    };
    let lanes_done =
        futures::stream::iter(lanes.into_iter().map(|lane| this.run_lane(&network, lane)))
            .buffer_unordered(options.concurrency)
            .try_collect::<Vec<()>>();
    let lanes_outcome = tokio::select! {
        biased;
        () = this.abort.cancelled() => Err(this.take_failure()),
        outcome = lanes_done => outcome.map(|_| ()),
    };
    lanes_outcome?;
    // Every byte is on disk; wait for the read-backs still hashing and the part checks.
    this.settle().await.map_err(join_error)?;
    if let Some(error) = this.failure.lock().take() {
        return Err(error);
    }
    let sha256 = this.sha256.lock().ok_or_else(|| {
        std::io::Error::other("internal error: the SHA-256 did not cover the whole file")
    })?;
    let parts_with_md5 = this.parts.iter().filter(|part| part.span.md5.is_some());
    if this.parts_verified.load(Ordering::SeqCst) != parts_with_md5.count() {
        return Err(std::io::Error::other("internal error: a part was not checked").into());
    }
    let finished_on_disk = this.finished_on_disk.load(Ordering::SeqCst);
    if !finished_on_disk || this.uses_record {
        let this = this.clone();
        tokio::task::spawn_blocking(move || -> Result<(), DnanexusError> {
            if !finished_on_disk {
                this.finish_on_disk()?;
            }
            // Verified and durable: the resume record has served its purpose.
            if this.uses_record {
                this.partial.remove_record()?;
            }
            Ok(())
        })
        .await
        .map_err(join_error)??;
    }
    Ok(FetchedFile {
        size: this.size,
        sha256,
        version: this.file_id.clone(),
        verified: this.parts_verified.load(Ordering::Relaxed),
        resumed_bytes,
    })
}
