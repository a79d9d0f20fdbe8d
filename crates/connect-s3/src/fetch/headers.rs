//! The integrity headers of a HeadObject or GetObject answer, as [`IntegrityHeaders`].

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumType;

use crate::fetch::digest::IntegrityHeaders;

/// The two answers carry the same accessors but share no trait: one body for both.
macro_rules! integrity_headers_of {
    ($name:ident, $output:ty) => {
        pub(crate) fn $name(output: &$output) -> IntegrityHeaders<'_> {
            IntegrityHeaders {
                etag: output.e_tag().unwrap_or_default(),
                encrypted_with_kms_or_customer_key: output
                    .server_side_encryption()
                    .is_some_and(|sse| sse.as_str().starts_with("aws:kms"))
                    || output.sse_customer_algorithm().is_some(),
                composite_checksums: output.checksum_type() == Some(&ChecksumType::Composite),
                full_object_checksums: output.checksum_type() == Some(&ChecksumType::FullObject),
                crc32: output.checksum_crc32(),
                crc32c: output.checksum_crc32_c(),
                crc64nvme: output.checksum_crc64_nvme(),
                sha1: output.checksum_sha1(),
                sha256: output.checksum_sha256(),
            }
        }
    };
}

integrity_headers_of!(head_integrity_headers, HeadObjectOutput);
integrity_headers_of!(get_integrity_headers, GetObjectOutput);
