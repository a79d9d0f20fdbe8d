//! What S3 answers that the connector reads itself (the SDK parses the XML): ETag and checksum
//! headers checked against content, `Content-Range` of ranged reads, error codes and
//! `Retry-After`. Structured input: `arbitrary` builds the header values.
#![no_main]

use keyledger_connect_s3::fuzzing::{
    GetObjectHeaders, check_range, classify_error, verify_content,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, u16, u64, u64, [Option<String>; 10], &[u8])| {
    let (selector, status, a, b, fields, content) = input;
    let [
        etag,
        content_range,
        sse,
        sse_c,
        checksum_type,
        crc32,
        crc32c,
        crc64,
        sha1,
        sha256,
    ] = fields;
    match selector % 3 {
        0 => {
            let headers = GetObjectHeaders {
                etag,
                server_side_encryption: sse,
                sse_customer_algorithm: sse_c,
                checksum_type,
                crc32,
                crc32c,
                crc64nvme: crc64,
                sha1,
                sha256,
                ..GetObjectHeaders::default()
            };
            let _ = verify_content(&headers, content.len() as u64, content);
        }
        1 => {
            // The connector asks for non-empty ranges inside the object it listed.
            let size = a.max(1);
            let position = b % size;
            let end = position + 1 + (u64::from(status) % (size - position));
            let headers = GetObjectHeaders {
                etag,
                content_range,
                ..GetObjectHeaders::default()
            };
            let _ = check_range(&headers, size, position, end);
        }
        _ => {
            let code = etag.unwrap_or_default();
            let message = content_range.unwrap_or_default();
            let (error, _retryable, delay) = classify_error(status, &code, &message, sse, sse_c);
            let _ = error.to_string();
            assert!(delay.as_secs() <= 24 * 3600, "{delay:?}");
        }
    }
});
