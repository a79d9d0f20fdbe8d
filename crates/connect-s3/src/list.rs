//! Listing the objects an ingestion selects: bucket + prefix + regex.

use regex::Regex;

use crate::client::{S3Source, check_bucket_name};
use crate::error::{S3Error, classify};

/// One object as listed: what a fetch needs, and what pins it (the ETag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteObject {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Without the surrounding quotes.
    pub etag: String,
    pub last_modified_ms: Option<i64>,
}

impl S3Source {
    /// Every object under `prefix` whose full key matches `pattern`, in key order. Follows
    /// continuation tokens (1,000 keys a page); skips "directory" placeholders (keys ending
    /// in `/`).
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        pattern: &Regex,
    ) -> Result<Vec<RemoteObject>, S3Error> {
        check_bucket_name(bucket)?;
        let target = self.target("ListObjectsV2", bucket, None);
        let mut objects = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let token = continuation.take();
            let page = self
                .with_retries(target, None, || {
                    let request = self
                        .client
                        .list_objects_v2()
                        .bucket(bucket)
                        .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                        .set_continuation_token(token.clone());
                    async move {
                        request
                            .send()
                            .await
                            .map_err(|error| classify(error, target))
                    }
                })
                .await?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.ends_with('/') || !pattern.is_match(key) {
                    continue;
                }
                objects.push(RemoteObject {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    size: object
                        .size()
                        .and_then(|size| u64::try_from(size).ok())
                        .unwrap_or(0),
                    etag: unquote(object.e_tag().unwrap_or_default()),
                    last_modified_ms: object
                        .last_modified()
                        .and_then(|time| time.to_millis().ok()),
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(objects);
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
