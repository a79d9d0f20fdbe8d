//! An object of one part: one ranged GET, hashed in order as its body streams. No HEAD: the
//! GET's own ETag and checksum headers are the reference.

use std::sync::Arc;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use keyledger_connect::{PartialFile, Progress};

use crate::FetchedFile;
use crate::error::S3Error;
use crate::fetch::content_hash::{ContentHasher, rehash};
use crate::fetch::context::{PartContext, RangeSink, blocking};
use crate::fetch::digest::Expected;
use crate::fetch::headers::get_integrity_headers;

/// Hashes a single-part object as it streams, in order.
struct StreamingHash<'a> {
    progress: &'a Progress<'a>,
    size: u64,
    expected: Option<Expected>,
    hasher: Option<ContentHasher>,
}

impl RangeSink for StreamingHash<'_> {
    fn on_response(&mut self, response: &GetObjectOutput) {
        if self.expected.is_none() {
            let expected = Expected::from_headers(self.size, &get_integrity_headers(response));
            self.hasher = Some(ContentHasher::new(&expected));
            self.expected = Some(expected);
        }
    }

    fn on_written(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
        (self.progress)(bytes.len() as u64);
    }
}

impl PartContext {
    /// One ranged GET for the whole object, hashed while it streams; no HEAD, the GET's own
    /// ETag and checksum headers are the reference.
    pub(crate) async fn fetch_single(
        &self,
        partial: &PartialFile,
        progress: &Progress<'_>,
    ) -> Result<FetchedFile, S3Error> {
        let size = self.object.size;
        let creating = partial.clone();
        let file = Arc::new(blocking(move || creating.create(size)).await?);
        let mut sink = StreamingHash {
            progress,
            size,
            expected: None,
            hasher: None,
        };
        self.fetch_range(&file, 0, size, &mut sink).await?;
        let (Some(mut expected), Some(hasher)) = (sink.expected, sink.hasher) else {
            return Err(S3Error::UnexpectedAnswer(
                "no response head was received".to_owned(),
            ));
        };
        let mut digests = hasher.finish();
        if expected.composite.is_some() && self.learn_parts(&mut expected).await? {
            // A small multipart upload: its part boundaries were unknown while it streamed,
            // so the (at most one part size of) content is hashed again from disk.
            digests = rehash(&file, &expected).await?;
        }
        let digests = self
            .recheck_assumed_parts(&mut expected, &file, digests)
            .await?;
        self.finish(file, &expected, digests, 0, partial).await
    }
}
