//! Fetching one object into a partial file: parallel ranged GETs pinned to the listed ETag,
//! bounded memory, retries that resume where a body stopped, a resume record across runs, and
//! verification before the file is handed back.
//!
//! Memory per object is `concurrency` write buffers of 1 MiB plus the hashing threads' read
//! buffers, whatever the object's size.
//!
//! Hashing (SHA-256 for the ingestion event, and the object's one check: a full-object or
//! composite checksum, else the ETag's MD5; see `digest`) needs the content in order. Objects
//! of one part are hashed as their body streams. Larger objects are hashed by two blocking
//! threads (SHA-256 on one, the check on the other) that re-read the completed in-order prefix
//! of the file while later parts are still downloading (from the page cache), so hashing
//! overlaps the transfer instead of following it. A composite checksum needs the upload's part
//! boundaries, which differ from the ranges fetched: they are learnt with HEAD `partNumber`
//! before the transfer starts, and the hasher closes a part's checksum as it crosses each one.
//!
//! Files, lowest first (none imports from a file above it): `context` (what a fetch shares),
//! `digest` (what S3 says the content hashes to), `headers` (those
//! of a HEAD or GET answer), `content_hash` (hashing it that way),
//! `ordered_hash` (in order while parts complete in any order), `range` (one ranged GET into
//! the file), `head` (HeadObject, part boundaries), `verify` (the verdict and fsync), `single`
//! and `parts` (the two ways to fetch), and this file, the entry point.

mod content_hash;
mod context;
pub(crate) mod digest;
mod head;
pub(crate) mod headers;
mod ordered_hash;
mod parts;
pub(crate) mod range;
mod single;
mod verify;

use std::sync::{Arc, OnceLock};

use keyledger_connect::{PartialFile, Progress};
use tokio_util::sync::CancellationToken;

use crate::client::{S3Source, check_bucket_name};
use crate::error::S3Error;
use crate::{FetchedFile, RemoteFile};
use context::{PartContext, discards_partial};

#[cfg(feature = "fuzzing")]
pub(crate) use content_hash::ContentHasher;

/// Downloads `object` into `partial` and verifies it (see [`keyledger_connect::Source::fetch`]).
///
/// On a verification failure, a changed or vanished object, the partial file and its
/// record are deleted. On other errors (cancellation, network, local I/O) a multi-part
/// fetch keeps both, and fetching the same object into the same path again skips the parts
/// already on disk and verifies the whole content.
pub(crate) async fn fetch(
    source: &S3Source,
    object: &RemoteFile,
    partial: &PartialFile,
    progress: &Progress<'_>,
    cancel: &CancellationToken,
) -> Result<FetchedFile, S3Error> {
    check_bucket_name(&object.location.bucket)?;
    if object.path.is_empty() {
        return Err(S3Error::InvalidInput(
            "the object key must not be empty".to_owned(),
        ));
    }
    let single =
        object.size > 0 && object.size <= source.options.part_size && !object.version.contains('-');
    let context = Arc::new(PartContext {
        source: source.clone(),
        object: object.clone(),
        etag: OnceLock::new(),
        cancel: cancel.clone(),
    });
    if !object.version.is_empty() {
        let _ = context.etag.set(object.version.clone());
    }
    let result = if single {
        context.fetch_single(partial, progress).await
    } else {
        context.fetch_in_parts(partial, progress).await
    };
    match &result {
        Ok(_) => {}
        Err(error) if single || discards_partial(error) => {
            if let Err(cleanup) = partial.discard() {
                tracing::warn!(path = %partial.path().display(), error = %cleanup, "could not delete a partial file");
            }
        }
        Err(_) => {}
    }
    result
}
