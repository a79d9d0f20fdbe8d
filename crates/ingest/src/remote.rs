//! What crosses between a job and a provider adapter: listed files, fetched files, failures.
//!
//! Guarantee: nothing here holds a secret; a [`SourceError`]'s message says what went wrong and
//! what to do, and its kind decides whether the job, the file or nothing fails.

use std::fmt;

use keyledger_domain::FailureKind;

pub use keyledger_connect::Progress;

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
    /// The connector's own listing entry, to fetch it again.
    pub listed: Listed,
}

/// A connector's listing entry, by provider.
#[derive(Clone, Debug)]
pub enum Listed {
    S3(keyledger_connect_s3::RemoteFile),
    Dnanexus(keyledger_connect_dnanexus::RemoteFile),
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

impl<V> From<keyledger_connect::FetchedFile<V>> for Fetched {
    fn from(fetched: keyledger_connect::FetchedFile<V>) -> Fetched {
        Fetched {
            size: fetched.size,
            sha256: fetched.sha256,
            source_etag: fetched.version,
        }
    }
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
