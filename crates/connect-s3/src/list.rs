//! Listing the objects an ingestion selects: bucket + prefix + regex.

use crate::client::{S3Source, check_bucket_name};
use crate::error::{S3Error, classify};
use keyledger_connect::{BoundedListing, ListBound};

use crate::{RemoteFile, S3Location, S3Selection};

/// Keys a ListObjectsV2 page holds at most.
const PAGE_KEYS: u64 = 1000;

impl S3Source {
    /// Every object under the prefix whose full key matches the pattern, in key order.
    /// Follows continuation tokens (1,000 keys a page); skips "directory" placeholders (keys
    /// ending in `/`).
    pub(crate) async fn list_objects(
        &self,
        selection: &S3Selection,
    ) -> Result<Vec<RemoteFile>, S3Error> {
        let bound = ListBound {
            max_scanned: u64::MAX,
            start_after: None,
        };
        Ok(self.list_bounded(selection, &bound).await?.files)
    }

    /// Like [`Source::list`](keyledger_connect::Source::list), but looks at no more than
    /// `bound.max_scanned` keys (each page asks for no more than what is left), starting after
    /// `bound.start_after` (ListObjectsV2 `StartAfter`): a preview's answer in bounded time and
    /// memory, whatever the size of the bucket.
    pub async fn list_bounded(
        &self,
        selection: &S3Selection,
        bound: &ListBound,
    ) -> Result<BoundedListing<crate::S3Location>, S3Error> {
        let S3Selection {
            container: bucket,
            within: prefix,
            pattern,
        } = selection;
        let bucket = bucket.as_str();
        check_bucket_name(bucket)?;
        let target = self.target("ListObjectsV2", bucket, None);
        let mut objects = Vec::new();
        let mut scanned: u64 = 0;
        let mut continuation: Option<String> = None;
        loop {
            let left = bound.max_scanned - scanned;
            if left == 0 {
                return Ok(BoundedListing {
                    files: objects,
                    scanned,
                    complete: false,
                });
            }
            let max_keys = i32::try_from(left.min(PAGE_KEYS)).unwrap_or(1000);
            let token = continuation.take();
            let start_after = if token.is_none() {
                bound.start_after.clone()
            } else {
                None
            };
            let page = self
                .with_retries(target, None, || {
                    let request = self
                        .client
                        .list_objects_v2()
                        .bucket(bucket)
                        .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                        .set_continuation_token(token.clone())
                        .set_start_after(start_after.clone())
                        .set_max_keys((max_keys < 1000).then_some(max_keys));
                    async move {
                        request
                            .send()
                            .await
                            .map_err(|error| classify(error, target))
                    }
                })
                .await?;
            scanned += page.contents().len() as u64;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.ends_with('/') || !pattern.is_match(key) {
                    continue;
                }
                objects.push(RemoteFile {
                    path: key.to_owned(),
                    size: object
                        .size()
                        .and_then(|size| u64::try_from(size).ok())
                        .unwrap_or(0),
                    version: unquote(object.e_tag().unwrap_or_default()),
                    location: S3Location {
                        bucket: bucket.to_owned(),
                        last_modified_ms: object
                            .last_modified()
                            .and_then(|time| time.to_millis().ok()),
                    },
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(BoundedListing {
                    files: objects,
                    scanned,
                    complete: true,
                });
            }
            match page.next_continuation_token() {
                Some(token) if !token.is_empty() => continuation = Some(token.to_owned()),
                _ => {
                    return Err(S3Error::UnexpectedAnswer(format!(
                        "the listing of bucket `{bucket}` was truncated without a continuation token"
                    )));
                }
            }
        }
    }
}

pub(crate) fn unquote(etag: &str) -> String {
    etag.trim().trim_matches('"').to_owned()
}
