//! What S3 says an object's content hashes to, and hashing the content to compare.
//!
//! The guarantee: a fetch verifies the strongest check the object really has, computed the way
//! S3 computed it, so a sound object always verifies and a retry is never asked for a check
//! that cannot pass. Kept by choosing one check per object in [`Expected::from_headers`]:
//! a full-object checksum (CRC64NVME, CRC32, CRC32C, SHA-1, SHA-256, hashed over the whole
//! stream), else a composite one (`<checksum of the parts' checksums>-<parts>`, hashed part by
//! part over the upload's own part boundaries, learnt with HEAD `partNumber`), else the ETag's
//! MD5 (single-part uploads only: MD5 is computed only when it is the only check), else the
//! size alone (a multipart upload without checksums), which [`Expected::verify`] reports.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crc_fast::CrcAlgorithm;

use crate::error::{S3Error, Verification};

/// The integrity data S3 gave for the object (from HeadObject or a whole-object GET).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    /// The ETag is the content's MD5 (a single-part upload not encrypted with SSE-KMS or
    /// SSE-C) and the object has no checksum: the MD5 is the check.
    pub etag_is_md5: bool,
    /// The full-object checksum to verify (the strongest the object has), base64 as S3 sends
    /// it; at most one.
    pub checksums: Vec<(Verification, String)>,
    /// The composite checksum to verify when the object has no full-object one.
    pub composite: Option<Composite>,
    /// A multipart object's checksum came without `-<parts>` and without
    /// `x-amz-checksum-type` (as some S3-compatible stores answer): it is in `checksums` and
    /// in `composite`, and the object verifies if either matches.
    pub full_or_composite: bool,
}

/// A composite checksum: the checksum of the concatenated binary checksums of the upload's
/// parts, sent as `<base64>-<parts>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Composite {
    pub kind: Verification,
    /// Base64 of the checksum of checksums (without `-<parts>`).
    pub value: String,
    pub part_count: u64,
    /// The upload's parts in order (learnt from HEAD with `partNumber`); empty until known.
    pub parts: Vec<PartChecksum>,
    /// `parts` were inferred from the first and last part (equal parts but the last, as every
    /// client uploads): a mismatch is checked again against every part's HEAD before it counts.
    pub parts_assumed: bool,
}

/// One part of a multipart upload, as HEAD with `partNumber` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartChecksum {
    pub length: u64,
    /// Base64, when S3 gave the part's checksum.
    pub checksum: Option<String>,
}

/// Strongest first: the order in which an object's checksums are preferred.
const STRENGTH: [Verification; 5] = [
    Verification::ChecksumSha256,
    Verification::ChecksumSha1,
    Verification::ChecksumCrc64Nvme,
    Verification::ChecksumCrc32c,
    Verification::ChecksumCrc32,
];

/// The response fields [`Expected`] is built from.
#[derive(Debug, Default)]
pub(crate) struct IntegrityHeaders<'a> {
    pub etag: &'a str,
    /// `x-amz-server-side-encryption` is `aws:kms*`, or an SSE-C algorithm is set: the ETag
    /// is then not the MD5 of the content, even for a single-part upload.
    pub encrypted_with_kms_or_customer_key: bool,
    /// `x-amz-checksum-type: COMPOSITE`.
    pub composite_checksums: bool,
    /// `x-amz-checksum-type: FULL_OBJECT`.
    pub full_object_checksums: bool,
    pub crc32: Option<&'a str>,
    pub crc32c: Option<&'a str>,
    pub crc64nvme: Option<&'a str>,
    pub sha1: Option<&'a str>,
    pub sha256: Option<&'a str>,
}

impl Expected {
    pub fn from_headers(size: u64, headers: &IntegrityHeaders<'_>) -> Expected {
        let etag = headers.etag.trim().trim_matches('"').to_owned();
        let candidates = [
            (Verification::ChecksumCrc32, headers.crc32),
            (Verification::ChecksumCrc32c, headers.crc32c),
            (Verification::ChecksumCrc64Nvme, headers.crc64nvme),
            (Verification::ChecksumSha1, headers.sha1),
            (Verification::ChecksumSha256, headers.sha256),
        ];
        // A multipart upload's ETag is `<md5 of the part md5s>-<parts>`.
        let etag_parts = etag
            .rsplit_once('-')
            .and_then(|(_, parts)| parts.parse::<u64>().ok())
            .filter(|parts| *parts > 0);
        let mut full_object = Vec::new();
        let mut composite = Vec::new();
        let mut full_or_composite = false;
        for (kind, value) in candidates {
            let Some(value) = value.map(str::trim).filter(|value| !value.is_empty()) else {
                continue;
            };
            let composite_of = |value: &str, part_count: u64| Composite {
                kind,
                value: value.to_owned(),
                part_count,
                parts: Vec::new(),
                parts_assumed: false,
            };
            // CRC64NVME checksums are always full-object.
            let may_be_composite = kind != Verification::ChecksumCrc64Nvme;
            // A composite checksum ends in "-<parts>" (base64 has no '-').
            match value.rsplit_once('-') {
                Some((checksum, parts)) => {
                    if let Ok(part_count) = parts.parse::<u64>()
                        && part_count > 0
                        && may_be_composite
                    {
                        composite.push(composite_of(checksum, part_count));
                    }
                }
                None => match etag_parts {
                    Some(parts) if may_be_composite && headers.composite_checksums => {
                        composite.push(composite_of(value, parts));
                    }
                    // A multipart object, and the store does not say which kind of checksum
                    // it is: both are computed, either may match.
                    Some(parts) if may_be_composite && !headers.full_object_checksums => {
                        full_or_composite = true;
                        full_object.push((kind, value.to_owned()));
                        composite.push(composite_of(value, parts));
                    }
                    _ if headers.composite_checksums => {}
                    _ => full_object.push((kind, value.to_owned())),
                },
            }
        }
        let strength = |kind: &Verification| STRENGTH.iter().position(|strong| strong == kind);
        full_object.sort_by_key(|(kind, _)| strength(kind));
        full_object.truncate(1);
        composite.sort_by_key(|composite| strength(&composite.kind));
        let full_or_composite = full_or_composite
            && full_object.first().map(|(kind, _)| *kind)
                == composite.first().map(|composite| composite.kind);
        let composite = if full_object.is_empty() || full_or_composite {
            composite.into_iter().next()
        } else {
            None
        };
        let etag_is_md5 = full_object.is_empty()
            && composite.is_none()
            && !headers.encrypted_with_kms_or_customer_key
            && etag.len() == 32
            && etag.bytes().all(|byte| byte.is_ascii_hexdigit());
        Expected {
            size,
            etag,
            etag_is_md5,
            checksums: full_object,
            composite,
            full_or_composite,
        }
    }

    /// Compares the content's digests with what S3 reported. Returns what was checked.
    pub fn verify(&self, key: &str, actual: &Digests) -> Result<Vec<Verification>, S3Error> {
        let mismatch =
            |what: Verification, expected: String, actual: String| S3Error::Verification {
                key: key.to_owned(),
                what,
                expected,
                actual,
            };
        if actual.length != self.size {
            return Err(mismatch(
                Verification::Size,
                format!("{} bytes", self.size),
                format!("{} bytes", actual.length),
            ));
        }
        let mut verified = vec![Verification::Size];
        if self.etag_is_md5 {
            let md5 = actual.md5_hex.clone().unwrap_or_default();
            if !md5.eq_ignore_ascii_case(&self.etag) {
                return Err(mismatch(Verification::EtagMd5, self.etag.clone(), md5));
            }
            verified.push(Verification::EtagMd5);
        }
        let mut full_object_mismatch = None;
        for (kind, expected) in &self.checksums {
            let computed = actual
                .checksums
                .iter()
                .find(|(computed_kind, _)| computed_kind == kind)
                .map(|(_, value)| value.clone())
                .unwrap_or_default();
            if &computed != expected {
                full_object_mismatch = Some(mismatch(*kind, expected.clone(), computed));
                break;
            }
            verified.push(*kind);
        }
        match (full_object_mismatch, &self.composite) {
            (None, Some(_)) if self.full_or_composite => {}
            (None, Some(composite)) => {
                verify_composite(composite, actual)
                    .map_err(|(expected, computed)| mismatch(composite.kind, expected, computed))?;
                verified.push(composite.kind);
            }
            (None, None) => {}
            (Some(error), Some(composite)) if self.full_or_composite => {
                // Not the whole content's checksum: it must then be the composite one.
                if verify_composite(composite, actual).is_err() {
                    return Err(error);
                }
                verified.push(composite.kind);
            }
            (Some(error), _) => return Err(error),
        }
        Ok(verified)
    }
}

/// Checks each part's checksum (when S3 gave it), then the checksum of checksums. Returns
/// `(expected, computed)` on a mismatch.
fn verify_composite(composite: &Composite, actual: &Digests) -> Result<(), (String, String)> {
    let Some(parts) = &actual.composite_parts else {
        return Err((
            format!("{}-{}", composite.value, composite.part_count),
            "no per-part checksums computed".to_owned(),
        ));
    };
    for (index, (known, computed)) in composite.parts.iter().zip(parts).enumerate() {
        let computed = BASE64.encode(computed);
        if let Some(expected) = &known.checksum
            && *expected != computed
        {
            return Err((
                format!(
                    "{expected} for part {} of {}",
                    index + 1,
                    composite.part_count
                ),
                computed,
            ));
        }
    }
    let mut concatenated = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        concatenated.extend_from_slice(part);
    }
    let combined = format!(
        "{}-{}",
        BASE64.encode(part_digest(composite.kind, &concatenated)),
        parts.len()
    );
    let expected = format!("{}-{}", composite.value, composite.part_count);
    if combined != expected {
        return Err((expected, combined));
    }
    Ok(())
}

/// Hashes of the content, as they compare with S3's values.
#[derive(Clone, Debug)]
pub(crate) struct Digests {
    pub length: u64,
    pub sha256: [u8; 32],
    pub md5_hex: Option<String>,
    pub checksums: Vec<(Verification, String)>,
    /// The binary checksum of each complete part, for a composite checksum.
    pub composite_parts: Option<Vec<Vec<u8>>>,
}

/// The binary checksum of `bytes` as S3 concatenates it into a composite checksum.
pub(crate) fn part_digest(kind: Verification, bytes: &[u8]) -> Vec<u8> {
    let mut hasher = PartHasher::new(kind);
    hasher.update(bytes);
    hasher.finish()
}

/// One part's checksum being computed.
pub(crate) enum PartHasher {
    Crc32(crc_fast::Digest),
    Sha(ring::digest::Context),
}

impl PartHasher {
    pub(crate) fn new(kind: Verification) -> PartHasher {
        match kind {
            Verification::ChecksumCrc32 => {
                PartHasher::Crc32(crc_fast::Digest::new(CrcAlgorithm::Crc32IsoHdlc))
            }
            Verification::ChecksumCrc32c => {
                PartHasher::Crc32(crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi))
            }
            Verification::ChecksumSha1 => PartHasher::Sha(ring::digest::Context::new(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            )),
            _ => PartHasher::Sha(ring::digest::Context::new(&ring::digest::SHA256)),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            PartHasher::Crc32(digest) => digest.update(bytes),
            PartHasher::Sha(context) => context.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        match self {
            PartHasher::Crc32(digest) => (digest.finalize() as u32).to_be_bytes().to_vec(),
            PartHasher::Sha(context) => context.finish().as_ref().to_vec(),
        }
    }
}
