//! The small trait every provider adapter implements, and what crosses it.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use keyledger_domain::{FailureKind, Provider, Selection};
use keyledger_vault::Lease;
use tokio_util::sync::CancellationToken;

use crate::IngestConfig;

/// A boxed future, so that [`SampleSource`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Called with the number of bytes newly written to the partial file (a delta, not a total).
pub type Progress<'a> = dyn Fn(u64) + Send + Sync + 'a;

/// Where sample files come from: one provider, one leased credential.
///
/// Implementations never put a secret into an error, a log line or a `Debug` output.
pub trait SampleSource: Send + Sync + fmt::Debug {
    fn provider(&self) -> Provider;

    /// "Save and test": checks the credential against the provider and describes what it saw.
    fn check(&self) -> BoxFuture<'_, Result<String, SourceError>>;

    /// The files a selection picks, in a stable order.
    fn list<'a>(
        &'a self,
        selection: &'a Selection,
    ) -> BoxFuture<'a, Result<Vec<RemoteFile>, SourceError>>;

    /// Downloads and verifies one listed file into `partial_path`. On success the partial file is
    /// complete and fsynced; the caller moves it into place. On failure the caller discards it
    /// (and its resume record, `<partial_path>.parts`).
    fn fetch<'a>(
        &'a self,
        file: &'a RemoteFile,
        partial_path: &'a Path,
        progress: &'a Progress<'a>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Fetched, SourceError>>;
}

/// One file a selection picked.
#[derive(Clone)]
pub struct RemoteFile {
    /// Where to store it, relative to the batch folder (`sub/x.csv`). Not yet sanitised: the
    /// store refuses paths that would leave the batch folder.
    pub path: String,
    pub size: u64,
    /// The provider's identity of the content: the S3 ETag (may be empty when the store lists
    /// none) or the DNAnexus file id.
    pub etag: String,
    /// What the adapter needs to fetch it again (the connector's own listing entry).
    pub handle: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for RemoteFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

/// A fetched and verified file, in its partial file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub size: u64,
    pub sha256: [u8; 32],
    /// The identity the fetch was pinned to (S3 ETag, DNAnexus file id).
    pub source_etag: String,
}

/// What kind of failure a [`SourceError`] is: decides whether the job, the file or nothing fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The provider refused the stored credential: every further request would fail too.
    CredentialsRejected,
    /// The credential is valid but may not read this.
    AccessDenied,
    /// The bucket, project, object or file does not exist (any more).
    NotFound,
    /// The bytes did not match what the provider reported (size, MD5, checksum).
    Verification,
    /// The remote file changed while it was being fetched.
    Changed,
    Cancelled,
    /// Network trouble or throttling that outlasted the connector's own retries.
    Transient,
    /// The endpoint cannot be reached at all (its name does not resolve, the connection is
    /// refused, TLS fails): retrying cannot help until the configuration changes.
    Unreachable,
    /// The provider refused the request for a reason with no better kind (its own words say
    /// which).
    Rejected,
    /// The request itself is wrong (a bad name, a wrong region, a malformed answer).
    Invalid,
    /// Writing the local file failed.
    Local,
}

impl SourceErrorKind {
    /// The kind recorded in events and shown by the API, which programs decide on.
    pub fn failure_kind(self) -> FailureKind {
        match self {
            SourceErrorKind::CredentialsRejected
            | SourceErrorKind::AccessDenied
            | SourceErrorKind::Rejected => FailureKind::ProviderRejected,
            SourceErrorKind::NotFound => FailureKind::NotFound,
            SourceErrorKind::Verification | SourceErrorKind::Changed => FailureKind::Integrity,
            SourceErrorKind::Cancelled => FailureKind::Cancelled,
            SourceErrorKind::Transient => FailureKind::Transient,
            SourceErrorKind::Unreachable => FailureKind::Unreachable,
            SourceErrorKind::Invalid => FailureKind::Internal,
            SourceErrorKind::Local => FailureKind::Storage,
        }
    }
}

/// A failure of a [`SampleSource`]. The message says what went wrong and what to do, and never
/// carries a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
}

impl SourceError {
    pub fn failure_kind(&self) -> FailureKind {
        self.kind.failure_kind()
    }

    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> SourceError {
        SourceError {
            kind,
            message: message.into(),
        }
    }
}

/// Builds the adapter for a leased credential.
pub fn source_for(
    lease: &Lease,
    config: &IngestConfig,
) -> Result<Arc<dyn SampleSource>, SourceError> {
    match lease.provider {
        Provider::Aws => Ok(Arc::new(crate::s3::S3SampleSource::from_lease(
            lease, &config.s3,
        )?)),
        Provider::Dnanexus => Ok(Arc::new(crate::dnanexus::DnanexusSampleSource::from_lease(
            lease,
            &config.dnanexus,
        )?)),
    }
}
