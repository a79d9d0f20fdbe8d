//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in the service):
//! the connector's own readings of what S3 answers (ETags, checksum headers, `Content-Range`,
//! error codes, `Retry-After`). Each builds the SDK's output type from the given header values
//! and calls the real code; nothing here parses on its own.

use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::types::{ChecksumType, ServerSideEncryption};

use crate::client::S3Options;
use crate::error::{ServiceAnswer, Target, classify_service_error};
use crate::fetch::ContentHasher;
use crate::fetch::digest::Expected;
use crate::fetch::headers::get_integrity_headers;
use crate::fetch::range::check_range_response;
use crate::{RemoteFile, S3Error, S3Location, Verification};

/// The header values of a GetObject answer, as the SDK hands them over.
#[derive(Debug, Default)]
pub struct GetObjectHeaders {
    pub etag: Option<String>,
    pub content_range: Option<String>,
    pub server_side_encryption: Option<String>,
    pub sse_customer_algorithm: Option<String>,
    pub checksum_type: Option<String>,
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

impl GetObjectHeaders {
    fn output(&self) -> GetObjectOutput {
        GetObjectOutput::builder()
            .set_e_tag(self.etag.clone())
            .set_content_range(self.content_range.clone())
            .set_server_side_encryption(
                self.server_side_encryption
                    .as_deref()
                    .map(ServerSideEncryption::from),
            )
            .set_sse_customer_algorithm(self.sse_customer_algorithm.clone())
            .set_checksum_type(self.checksum_type.as_deref().map(ChecksumType::from))
            .set_checksum_crc32(self.crc32.clone())
            .set_checksum_crc32_c(self.crc32c.clone())
            .set_checksum_crc64_nvme(self.crc64nvme.clone())
            .set_checksum_sha1(self.sha1.clone())
            .set_checksum_sha256(self.sha256.clone())
            .build()
    }
}

/// What a whole-object GET's headers say `content` must hash to, checked as a fetch checks it.
pub fn verify_content(
    headers: &GetObjectHeaders,
    size: u64,
    content: &[u8],
) -> Result<Vec<Verification>, S3Error> {
    let output = headers.output();
    let expected = Expected::from_headers(size, &get_integrity_headers(&output));
    let mut hasher = ContentHasher::new(&expected);
    hasher.update(content);
    expected.verify("key", &hasher.finish())
}

/// Whether a ranged GET's answer is bytes `position..end` of an object of `size` bytes.
pub fn check_range(
    headers: &GetObjectHeaders,
    size: u64,
    position: u64,
    end: u64,
) -> Result<(), S3Error> {
    let object = RemoteFile {
        path: "key".to_owned(),
        size,
        version: String::new(),
        location: S3Location {
            bucket: "bucket".to_owned(),
            last_modified_ms: None,
        },
    };
    check_range_response(&headers.output(), &object, &OnceLock::new(), position, end)
        .map_err(|failure| failure.error)
}

/// An S3 error answer as the connector classifies it: the error, whether it is retried, and
/// the wait before the next attempt under the default options.
pub fn classify_error(
    status: u16,
    code: &str,
    message: &str,
    bucket_region: Option<String>,
    retry_after: Option<String>,
) -> (S3Error, bool, Duration) {
    let target = Target {
        operation: "GetObject",
        host: "s3.example",
        bucket: "bucket",
        key: Some("key"),
        region: "us-east-1",
    };
    let answer = ServiceAnswer {
        status,
        code,
        message,
        bucket_region,
        retry_after,
    };
    let failure = classify_service_error(target, answer);
    let delay = S3Options::default()
        .retry_policy()
        .delay(1, failure.retry_after);
    (failure.error, failure.retryable, delay)
}
