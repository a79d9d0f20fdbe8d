//! What every request of one fetch shares, and the small helpers the transfer's files use.

use std::sync::OnceLock;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use tokio_util::sync::CancellationToken;

use crate::RemoteFile;
use crate::client::S3Source;
use crate::error::{Failure, S3Error};

/// What every part of one fetch shares.
pub(crate) struct PartContext {
    pub source: S3Source,
    pub object: RemoteFile,
    /// The ETag every request is pinned to: the listed one, or, for stores that list no
    /// ETags (s3s-fs), the one of the first response.
    pub etag: OnceLock<String>,
    pub cancel: CancellationToken,
}

/// What a part does with the response head and the bytes it writes.
pub(crate) trait RangeSink: Send {
    fn on_response(&mut self, _response: &GetObjectOutput) {}
    fn on_written(&mut self, bytes: &[u8]);
}

/// How one attempt at a range ended.
pub(crate) struct AttemptEnd {
    pub written: u64,
    pub outcome: Result<(), Failure>,
}

pub(crate) fn failed(written: u64, failure: Failure) -> AttemptEnd {
    AttemptEnd {
        written,
        outcome: Err(failure),
    }
}

pub(crate) fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, S3Error> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result?),
        Err(join_error) => Err(S3Error::Io(std::io::Error::other(join_error))),
    }
}

/// Errors after which the bytes on disk are worthless.
pub(crate) fn discards_partial(error: &S3Error) -> bool {
    matches!(
        error,
        S3Error::Verification { .. } | S3Error::ObjectChanged { .. } | S3Error::NotFound { .. }
    )
}
