//! S3's checksum algorithms, what a multipart upload leaves behind (its parts' lengths and
//! checksums), and the checksum fields S3 derives from that record: composite
//! (`<checksum of the parts' checksums>-<parts>`) or full-object, whole or per part.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

/// The checksum algorithms of S3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PartRecord {
    pub(super) length: u64,
    /// Base64, as S3 sends it.
    pub(super) checksum: Option<String>,
}

/// What a completed multipart upload left.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ObjectRecord {
    /// Without quotes.
    pub(super) etag: String,
    pub(super) algorithm: Option<Algorithm>,
    pub(super) full_object: bool,
    /// `<base64>-<parts>` for composite checksums, `<base64>` for full-object ones.
    pub(super) checksum: Option<String>,
    pub(super) parts: Vec<PartRecord>,
}

impl Algorithm {
    pub(super) fn from_name(name: &str) -> Option<Algorithm> {
        match name.to_ascii_uppercase().as_str() {
            "CRC32" => Some(Algorithm::Crc32),
            "CRC32C" => Some(Algorithm::Crc32c),
            "CRC64NVME" => Some(Algorithm::Crc64Nvme),
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    pub(super) fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    pub(super) fn hasher(self) -> ChecksumHasher {
        let mut hasher = ChecksumHasher::default();
        match self {
            Algorithm::Crc32 => hasher.crc32 = Some(Default::default()),
            Algorithm::Crc32c => hasher.crc32c = Some(Default::default()),
            Algorithm::Crc64Nvme => hasher.crc64nvme = Some(Default::default()),
            Algorithm::Sha1 => hasher.sha1 = Some(Default::default()),
            Algorithm::Sha256 => hasher.sha256 = Some(Default::default()),
        }
        hasher
    }

    pub(super) fn finish(self, hasher: ChecksumHasher) -> String {
        self.pick(&hasher.finalize()).unwrap_or_default()
    }

    pub(super) fn digest(self, bytes: &[u8]) -> String {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        self.finish(hasher)
    }

    pub(super) fn pick(self, checksum: &Checksum) -> Option<String> {
        match self {
            Algorithm::Crc32 => checksum.checksum_crc32.clone(),
            Algorithm::Crc32c => checksum.checksum_crc32c.clone(),
            Algorithm::Crc64Nvme => checksum.checksum_crc64nvme.clone(),
            Algorithm::Sha1 => checksum.checksum_sha1.clone(),
            Algorithm::Sha256 => checksum.checksum_sha256.clone(),
        }
    }

    /// Full-object checksums exist for the CRCs only, composite ones for all but CRC64NVME.
    pub(super) fn default_full_object(self) -> bool {
        self == Algorithm::Crc64Nvme
    }
}

/// The checksum fields every response type shares.
#[derive(Default)]
pub(super) struct ChecksumFields {
    pub(super) crc32: Option<String>,
    pub(super) crc32c: Option<String>,
    pub(super) crc64nvme: Option<String>,
    pub(super) sha1: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) checksum_type: Option<ChecksumType>,
}

impl ChecksumFields {
    pub(super) fn one(algorithm: Algorithm, value: String, full_object: bool) -> ChecksumFields {
        let mut fields = ChecksumFields {
            checksum_type: Some(ChecksumType::from_static(if full_object {
                ChecksumType::FULL_OBJECT
            } else {
                ChecksumType::COMPOSITE
            })),
            ..ChecksumFields::default()
        };
        let slot = match algorithm {
            Algorithm::Crc32 => &mut fields.crc32,
            Algorithm::Crc32c => &mut fields.crc32c,
            Algorithm::Crc64Nvme => &mut fields.crc64nvme,
            Algorithm::Sha1 => &mut fields.sha1,
            Algorithm::Sha256 => &mut fields.sha256,
        };
        *slot = Some(value);
        fields
    }
}

macro_rules! set_checksums {
    ($output:expr, $fields:expr) => {{
        let fields = $fields;
        $output.checksum_crc32 = fields.crc32;
        $output.checksum_crc32c = fields.crc32c;
        $output.checksum_crc64nvme = fields.crc64nvme;
        $output.checksum_sha1 = fields.sha1;
        $output.checksum_sha256 = fields.sha256;
        $output.checksum_type = fields.checksum_type;
    }};
}

macro_rules! has_checksum {
    ($output:expr) => {
        $output.checksum_crc32.is_some()
            || $output.checksum_crc32c.is_some()
            || $output.checksum_crc64nvme.is_some()
            || $output.checksum_sha1.is_some()
            || $output.checksum_sha256.is_some()
    };
}

/// The byte range of part `number` (1-based) and its record.
pub(super) fn part_span(record: &ObjectRecord, number: i32) -> Option<(u64, u64, &PartRecord)> {
    let index = usize::try_from(number).ok()?.checked_sub(1)?;
    let part = record.parts.get(index)?;
    let start: u64 = record.parts[..index].iter().map(|part| part.length).sum();
    Some((start, start + part.length, part))
}

/// The checksum fields a HEAD/GET of the whole object, or of part `part`, answers.
pub(super) fn answer_fields(record: &ObjectRecord, part: Option<&PartRecord>) -> ChecksumFields {
    let Some(algorithm) = record.algorithm else {
        return ChecksumFields::default();
    };
    match part {
        // A part of a composite object carries its own checksum; a full-object checksum
        // belongs to the whole object only.
        Some(part) if !record.full_object => match &part.checksum {
            Some(value) => ChecksumFields::one(algorithm, value.clone(), false),
            None => ChecksumFields::default(),
        },
        Some(_) => ChecksumFields::default(),
        None => match &record.checksum {
            Some(value) => ChecksumFields::one(algorithm, value.clone(), record.full_object),
            None => ChecksumFields::default(),
        },
    }
}

/// The algorithm a part upload carries a checksum of: a header, or a trailer it announces.
pub(super) fn part_algorithm(
    input: &UploadPartInput,
    headers: &http::HeaderMap,
) -> Option<Algorithm> {
    let announced = [
        (Algorithm::Crc32, input.checksum_crc32.is_some()),
        (Algorithm::Crc32c, input.checksum_crc32c.is_some()),
        (Algorithm::Crc64Nvme, input.checksum_crc64nvme.is_some()),
        (Algorithm::Sha1, input.checksum_sha1.is_some()),
        (Algorithm::Sha256, input.checksum_sha256.is_some()),
    ]
    .into_iter()
    .find_map(|(algorithm, present)| present.then_some(algorithm));
    announced
        .or_else(|| {
            let trailer = headers.get("x-amz-trailer")?.to_str().ok()?;
            let name = trailer.trim().strip_prefix("x-amz-checksum-")?;
            Algorithm::from_name(name)
        })
        .or_else(|| {
            input
                .checksum_algorithm
                .as_ref()
                .and_then(|algorithm| Algorithm::from_name(algorithm.as_str()))
        })
}

pub(super) fn sent_part_checksum(input: &UploadPartInput, algorithm: Algorithm) -> Option<String> {
    match algorithm {
        Algorithm::Crc32 => input.checksum_crc32.clone(),
        Algorithm::Crc32c => input.checksum_crc32c.clone(),
        Algorithm::Crc64Nvme => input.checksum_crc64nvme.clone(),
        Algorithm::Sha1 => input.checksum_sha1.clone(),
        Algorithm::Sha256 => input.checksum_sha256.clone(),
    }
}

pub(super) fn completed_part_checksum(
    part: &CompletedPart,
    algorithm: Algorithm,
) -> Option<String> {
    match algorithm {
        Algorithm::Crc32 => part.checksum_crc32.clone(),
        Algorithm::Crc32c => part.checksum_crc32c.clone(),
        Algorithm::Crc64Nvme => part.checksum_crc64nvme.clone(),
        Algorithm::Sha1 => part.checksum_sha1.clone(),
        Algorithm::Sha256 => part.checksum_sha256.clone(),
    }
}

pub(super) fn complete_input_checksum(
    input: &CompleteMultipartUploadInput,
    algorithm: Algorithm,
) -> Option<String> {
    match algorithm {
        Algorithm::Crc32 => input.checksum_crc32.clone(),
        Algorithm::Crc32c => input.checksum_crc32c.clone(),
        Algorithm::Crc64Nvme => input.checksum_crc64nvme.clone(),
        Algorithm::Sha1 => input.checksum_sha1.clone(),
        Algorithm::Sha256 => input.checksum_sha256.clone(),
    }
}

/// `<checksum of the concatenated binary part checksums>-<parts>`.
pub(super) fn composite_checksum(algorithm: Algorithm, parts: &[PartRecord]) -> Option<String> {
    let mut concatenated = Vec::new();
    for part in parts {
        concatenated.extend(BASE64.decode(part.checksum.as_deref()?).ok()?);
    }
    Some(format!(
        "{}-{}",
        algorithm.digest(&concatenated),
        parts.len()
    ))
}

/// The checksum of a whole file, read back from disk.
pub(super) async fn file_checksum(path: &Path, algorithm: Algorithm) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = algorithm.hasher();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok(algorithm.finish(hasher));
        }
        hasher.update(&buffer[..read]);
    }
}
