//! The last step of a fetch: the verdict, then durability.
//!
//! Guarantee: a fetch returns a file only when its content matched the object's check and its
//! size, and after `fsync`; the resume record goes only then.

use std::fs::File;
use std::sync::Arc;

use keyledger_connect::PartialFile;

use crate::FetchedFile;
use crate::error::{S3Error, Verification};
use crate::fetch::context::{PartContext, blocking};
use crate::fetch::digest::{Digests, Expected};

impl PartContext {
    /// Verifies, fsyncs and removes the resume record.
    pub(crate) async fn finish(
        &self,
        file: Arc<File>,
        expected: &Expected,
        digests: Digests,
        resumed_bytes: u64,
        partial: &PartialFile,
    ) -> Result<FetchedFile, S3Error> {
        let verified = expected.verify(&self.object.path, &digests)?;
        let on_disk = blocking(move || {
            file.sync_all()?;
            Ok(file.metadata()?.len())
        })
        .await?;
        if on_disk != expected.size {
            return Err(S3Error::Verification {
                key: self.object.path.clone(),
                what: Verification::Size,
                expected: format!("{} bytes", expected.size),
                actual: format!("{on_disk} bytes on disk"),
            });
        }
        let partial = partial.clone();
        blocking(move || partial.remove_record()).await?;
        Ok(FetchedFile {
            size: expected.size,
            sha256: digests.sha256,
            version: expected.etag.clone(),
            verified,
            resumed_bytes,
        })
    }
}
