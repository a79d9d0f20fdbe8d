//! [`Source`] for S3: the connector's part of the shared vocabulary.

use keyledger_connect::{PartialFile, Progress, Source};
use tokio_util::sync::CancellationToken;

use crate::client::{AccessCheck, S3Source};
use crate::error::{S3Error, Verification};
use crate::{FetchedFile, RemoteFile, S3Location, S3Selection};

impl Source for S3Source {
    type Selection = S3Selection;
    type Location = S3Location;
    type Verified = Vec<Verification>;
    type Access = AccessCheck;
    type Error = S3Error;

    /// ListBuckets; see [`S3Source::check_bucket_access`] for keys that may not list buckets.
    async fn check_access(&self) -> Result<AccessCheck, S3Error> {
        self.check_buckets().await
    }

    async fn list(&self, selection: &S3Selection) -> Result<Vec<RemoteFile>, S3Error> {
        self.list_objects(selection).await
    }

    async fn fetch(
        &self,
        file: &keyledger_connect::RemoteFile<Self::Location>,
        partial: &PartialFile,
        progress: &Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<FetchedFile, Self::Error> {
        crate::fetch::fetch(self, file, partial, progress, cancel).await
    }
}
