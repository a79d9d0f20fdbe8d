//! What S3 says about the object before and after its bytes: HeadObject for its size, ETag
//! and checksums, and HEAD `partNumber` for the part boundaries a composite checksum is
//! computed over (only `s3:GetObject` needed, unlike GetObjectAttributes).
//!
//! Guarantee: a fetch never starts on an object other than the one listed (same ETag, same
//! size), and a composite checksum is only ever compared over the upload's real part lengths.

use std::fs::File;
use std::sync::Arc;

use aws_sdk_s3::types::ChecksumMode;

use crate::error::{S3Error, Verification, classify};
use crate::fetch::content_hash::rehash;
use crate::fetch::context::{PartContext, quoted};
use crate::fetch::digest::{Composite, Digests, Expected, PartChecksum};
use crate::fetch::headers::head_integrity_headers;

impl PartContext {
    /// HeadObject with checksums; the object must still be the one listed.
    pub(crate) async fn head(&self) -> Result<Expected, S3Error> {
        let object = &self.object;
        let target = self
            .source
            .target("HeadObject", &object.location.bucket, Some(&object.path));
        let head = self
            .source
            .with_retries(target, Some(&self.cancel), || {
                let request = self
                    .source
                    .client
                    .head_object()
                    .bucket(&object.location.bucket)
                    .key(&object.path)
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
                object.path
            )));
        }
        let pinned = self.etag.get_or_init(|| expected.etag.clone());
        if expected.etag != *pinned || size != Some(object.size) {
            return Err(S3Error::ObjectChanged {
                key: object.path.clone(),
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
    pub(crate) async fn learn_parts(&self, expected: &mut Expected) -> Result<bool, S3Error> {
        let size = expected.size;
        let Some(composite) = &mut expected.composite else {
            return Ok(false);
        };
        match self.head_parts(composite, size, false).await {
            Ok(()) => Ok(true),
            Err(error) if expected.full_or_composite && !matches!(error, S3Error::Cancelled) => {
                tracing::info!(
                    bucket = %self.object.location.bucket,
                    key = %self.object.path,
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
    pub(crate) async fn head_parts(
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
                self.object.path
            )));
        }
        composite.parts = parts;
        composite.parts_assumed = false;
        Ok(())
    }

    /// When the composite checksum failed over parts inferred from the first and the last, the
    /// parts may not have been equal: learns each part's length and hashes the file (complete
    /// on disk) again before the verdict.
    pub(crate) async fn recheck_assumed_parts(
        &self,
        expected: &mut Expected,
        file: &Arc<File>,
        digests: Digests,
    ) -> Result<Digests, S3Error> {
        let size = expected.size;
        let Some(composite) = &mut expected.composite else {
            return Ok(digests);
        };
        if !composite.parts_assumed || expected.verify(&self.object.path, &digests).is_ok() {
            return Ok(digests);
        }
        let Some(composite) = &mut expected.composite else {
            return Ok(digests);
        };
        self.head_parts(composite, size, true).await?;
        rehash(file, expected).await
    }

    /// HEAD of part `number`: its length and, when S3 gives it, its checksum.
    pub(crate) async fn head_part(
        &self,
        number: u64,
        part_count: u64,
        kind: Verification,
    ) -> Result<PartChecksum, S3Error> {
        let object = &self.object;
        let target = self
            .source
            .target("HeadObject", &object.location.bucket, Some(&object.path));
        let part_number = i32::try_from(number).map_err(|_| {
            S3Error::Transport(format!("{} claims {part_count} parts", object.path))
        })?;
        let head = self
            .source
            .with_retries(target, Some(&self.cancel), || {
                let request = self
                    .source
                    .client
                    .head_object()
                    .bucket(&object.location.bucket)
                    .key(&object.path)
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
                key: object.path.clone(),
            });
        }
        let length = head
            .content_length()
            .and_then(|length| u64::try_from(length).ok())
            .ok_or_else(|| {
                S3Error::Transport(format!(
                    "S3 answered HeadObject for part {number} of {} without a length",
                    object.path
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
    pub(crate) async fn explain_denied_head(&self) -> S3Error {
        let object = &self.object;
        let target = self
            .source
            .target("GetObject", &object.location.bucket, Some(&object.path));
        let request = self
            .source
            .client
            .get_object()
            .bucket(&object.location.bucket)
            .key(&object.path)
            .set_range((object.size > 0).then(|| "bytes=0-0".to_owned()));
        match request.send().await {
            Err(error) => classify(error, target).error,
            Ok(_) => S3Error::AccessDenied {
                bucket: object.location.bucket.clone(),
            },
        }
    }
}
