//! The vocabulary every ingestion connector speaks, and the pieces they share.
//!
//! A connector (`keyledger-connect-s3`, `keyledger-connect-dnanexus`) implements [`Source`]:
//! - [`Source::check_access`]: "save and test" a credential, describing what the provider saw;
//! - [`Source::list`]: the files a selection picks, as [`RemoteFile`]s;
//! - [`Source::fetch`]: one remote file into a [`PartialFile`], verified, as a [`FetchedFile`],
//!   reporting [`Progress`] as deltas.
//!
//! And builds it from the same parts: [`PartialFile`] (the partial file, its space reservation,
//! its resume record, discard), [`InOrderHasher`] (a whole-file hash while bytes land in any
//! order), [`RetryPolicy`] (backoff honouring `Retry-After`, seconds or HTTP-date) and
//! [`network`] (an unreachable endpoint told apart from a passing failure).
//!
//! Architecture invariants:
//! - No provider, no credential, no network client here: this crate knows files, bytes and
//!   time, nothing of S3 or DNAnexus. It does no I/O of its own beyond the partial file a
//!   caller names and reading back what a fetch wrote.
//! - A connector never creates the final file: only the partial file and its resume record.
//! - Nothing here formats a secret: errors and `Debug` output carry paths, sizes and provider
//!   names only.

mod hash;
pub mod network;
mod partial;
mod retry;

use std::future::Future;

use tokio_util::sync::CancellationToken;

pub use hash::{Digest, InOrderHasher, Step};
pub use network::Unreachable;
pub use partial::{Opened, PartialFile, RecordIdentity, append_claims_to};
pub use retry::{RetryPolicy, retry_after, sleep_unless_cancelled};

/// Called with the number of bytes newly written to the partial file: a delta, never a total.
/// Bytes taken over from an interrupted fetch count once, when the fetch starts.
pub type Progress<'a> = dyn Fn(u64) + Send + Sync + 'a;

/// One file a listing found, as a connector needs it to fetch it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile<L> {
    /// The provider's full path of the file: the S3 key, the DNAnexus `/folder/name`.
    pub path: String,
    pub size: u64,
    /// The provider's identity of this content, which a fetch is pinned to: the S3 ETag
    /// (unquoted; empty when a store lists none), the DNAnexus file id (closed files never
    /// change).
    pub version: String,
    /// What else the connector needs: the bucket; the project, folder, name and parts.
    pub location: L,
}

/// What a listing selects: the files of one `container` (an S3 bucket, a DNAnexus project)
/// under `within` (a key prefix, a folder) whose path matches `pattern`. Connectors say how
/// each is read (S3 matches the full key, DNAnexus the path below the folder).
#[derive(Clone, Debug)]
pub struct Selection<P> {
    pub container: String,
    pub within: String,
    pub pattern: P,
}

impl<P> Selection<P> {
    pub fn new(container: impl Into<String>, within: impl Into<String>, pattern: P) -> Self {
        Selection {
            container: container.into(),
            within: within.into(),
            pattern,
        }
    }
}

/// A fetched file, complete and verified in its partial file, fsynced, its resume record gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedFile<V> {
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// The version the fetch was pinned to (see [`RemoteFile::version`]).
    pub version: String,
    /// What was checked against what the provider reported.
    pub verified: V,
    /// Bytes taken over from an earlier, interrupted fetch (re-checked, not downloaded).
    pub resumed_bytes: u64,
}

/// Where sample files come from: one provider, one credential.
///
/// Implementations never put a secret into an error, a log line or a `Debug` output, and
/// classify every failure (credential rejected, not found, transient, unreachable, …) in
/// their error type.
pub trait Source {
    /// What a listing selects (a bucket, prefix and pattern; a project, folder and pattern).
    type Selection: ?Sized + Sync;
    /// Where a listed file lives beyond its path, size and version.
    type Location: Send + Sync;
    /// What [`FetchedFile::verified`] reports.
    type Verified;
    /// What [`Source::check_access`] saw.
    type Access;
    type Error: std::error::Error + Send + Sync + 'static;

    /// "Save and test": checks the credential against the provider.
    fn check_access(&self) -> impl Future<Output = Result<Self::Access, Self::Error>> + Send;

    /// The files `selection` picks, in a stable order.
    fn list(
        &self,
        selection: &Self::Selection,
    ) -> impl Future<Output = Result<Vec<RemoteFile<Self::Location>>, Self::Error>> + Send;

    /// Downloads `file` into `partial` and verifies it. On success the partial file is
    /// complete and fsynced and its resume record gone; the caller renames it into place. On a
    /// verification failure (or a file that changed or vanished) both are deleted. After any
    /// other failure or a cancellation both are kept, so that fetching the same file into the
    /// same partial file again resumes; a caller that gives up calls [`PartialFile::discard`].
    fn fetch(
        &self,
        file: &RemoteFile<Self::Location>,
        partial: &PartialFile,
        progress: &Progress<'_>,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<FetchedFile<Self::Verified>, Self::Error>> + Send;
}

/// How much of a selection a bounded listing (a preview) may look at: at most `max_scanned`
/// entries of the provider's listing, matching or not, so that its time and memory stay bounded
/// in a bucket of millions of objects; `start_after` continues a listing after that path (the
/// provider's full path, as in [`RemoteFile::path`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListBound {
    pub max_scanned: u64,
    pub start_after: Option<String>,
}

/// What a bounded listing found: the matching files in its stable order, how many entries of
/// the provider's listing it looked at, and whether it reached the end of the selection
/// (`false`: it stopped at [`ListBound::max_scanned`] and more may match).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundedListing<L> {
    pub files: Vec<RemoteFile<L>>,
    pub scanned: u64,
    pub complete: bool,
}
