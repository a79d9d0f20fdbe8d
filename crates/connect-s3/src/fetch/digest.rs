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

/// The binary checksum of `bytes` as S3 concatenates it into a composite checksum.
fn part_digest(kind: Verification, bytes: &[u8]) -> Vec<u8> {
    let mut hasher = PartHasher::new(kind);
    hasher.update(bytes);
    hasher.finish()
}

/// One part's checksum being computed.
enum PartHasher {
    Crc32(crc_fast::Digest),
    Sha(ring::digest::Context),
}

impl PartHasher {
    fn new(kind: Verification) -> PartHasher {
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

    fn update(&mut self, bytes: &[u8]) {
        match self {
            PartHasher::Crc32(digest) => digest.update(bytes),
            PartHasher::Sha(context) => context.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            PartHasher::Crc32(digest) => (digest.finalize() as u32).to_be_bytes().to_vec(),
            PartHasher::Sha(context) => context.finish().as_ref().to_vec(),
        }
    }
}

/// Hashes content part by part over the upload's part boundaries.
struct CompositeHasher {
    kind: Verification,
    lengths: Vec<u64>,
    /// Index of the part being hashed, and bytes of it seen.
    index: usize,
    in_part: u64,
    current: Option<PartHasher>,
    finished: Vec<Vec<u8>>,
}

impl CompositeHasher {
    fn new(composite: &Composite) -> Option<CompositeHasher> {
        if composite.parts.is_empty() {
            return None;
        }
        Some(CompositeHasher {
            kind: composite.kind,
            lengths: composite.parts.iter().map(|part| part.length).collect(),
            index: 0,
            in_part: 0,
            current: Some(PartHasher::new(composite.kind)),
            finished: Vec::with_capacity(composite.parts.len()),
        })
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(length) = self.lengths.get(self.index).copied() else {
                // More bytes than the parts hold: the length check reports it.
                return;
            };
            let room = usize::try_from(length - self.in_part).unwrap_or(usize::MAX);
            let take = room.min(bytes.len());
            if let Some(current) = &mut self.current {
                current.update(&bytes[..take]);
            }
            self.in_part += take as u64;
            bytes = &bytes[take..];
            self.close_full_parts();
        }
    }

    /// Finishes the current part when it is complete (and any empty parts after it).
    fn close_full_parts(&mut self) {
        while let Some(length) = self.lengths.get(self.index).copied()
            && self.in_part == length
        {
            let done = self
                .current
                .replace(PartHasher::new(self.kind))
                .map(PartHasher::finish)
                .unwrap_or_default();
            self.finished.push(done);
            self.index += 1;
            self.in_part = 0;
        }
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.close_full_parts();
        self.finished
    }
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

/// Hashes content fed in order: SHA-256 always, MD5 and the checksums S3 reported.
pub(crate) struct ContentHasher {
    length: u64,
    /// `None` only in the second half of a [`ContentHasher::split`].
    sha256: Option<ring::digest::Context>,
    /// md5-many's single-stream MD5: 10–20 % faster here than md-5's assembly.
    md5: Option<md5_many::Md5State>,
    crcs: Vec<(Verification, crc_fast::Digest)>,
    sha1: Option<ring::digest::Context>,
    sha256_checksum: bool,
    composite: Option<CompositeHasher>,
}

impl ContentHasher {
    pub fn new(expected: &Expected) -> ContentHasher {
        let wants =
            |kind: Verification| expected.checksums.iter().any(|(wanted, _)| *wanted == kind);
        let crcs = [
            (Verification::ChecksumCrc32, CrcAlgorithm::Crc32IsoHdlc),
            (Verification::ChecksumCrc32c, CrcAlgorithm::Crc32Iscsi),
            (Verification::ChecksumCrc64Nvme, CrcAlgorithm::Crc64Nvme),
        ]
        .into_iter()
        .filter(|(kind, _)| wants(*kind))
        .map(|(kind, algorithm)| (kind, crc_fast::Digest::new(algorithm)))
        .collect();
        ContentHasher {
            length: 0,
            sha256: Some(ring::digest::Context::new(&ring::digest::SHA256)),
            md5: expected.etag_is_md5.then(md5_many::Md5State::new),
            crcs,
            sha1: wants(Verification::ChecksumSha1)
                .then(|| ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY)),
            sha256_checksum: wants(Verification::ChecksumSha256),
            composite: expected.composite.as_ref().and_then(CompositeHasher::new),
        }
    }

    /// Splits the work into two hashers to be fed the same bytes on two threads: SHA-256 and
    /// SHA-1 in the first, MD5, the CRCs and the per-part checksums in the second (MD5 alone
    /// costs about as much as SHA-256 with SHA-NI). [`ContentHasher::merge`] puts them back
    /// together.
    pub fn split(self) -> (ContentHasher, ContentHasher) {
        let second = ContentHasher {
            length: self.length,
            sha256: None,
            md5: self.md5,
            crcs: self.crcs,
            sha1: None,
            sha256_checksum: false,
            composite: self.composite,
        };
        let first = ContentHasher {
            length: self.length,
            sha256: self.sha256,
            md5: None,
            crcs: Vec::new(),
            sha1: self.sha1,
            sha256_checksum: self.sha256_checksum,
            composite: None,
        };
        (first, second)
    }

    /// Joins the halves of a [`ContentHasher::split`] that saw the same bytes.
    pub fn merge(self, second: ContentHasher) -> ContentHasher {
        let mut crcs = self.crcs;
        crcs.extend(second.crcs);
        ContentHasher {
            length: self.length.min(second.length),
            sha256: self.sha256.or(second.sha256),
            md5: self.md5.or(second.md5),
            crcs,
            sha1: self.sha1.or(second.sha1),
            sha256_checksum: self.sha256_checksum || second.sha256_checksum,
            composite: self.composite.or(second.composite),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.length += bytes.len() as u64;
        if let Some(sha256) = &mut self.sha256 {
            sha256.update(bytes);
        }
        if let Some(md5) = &mut self.md5 {
            md5.update(bytes);
        }
        for (_, crc) in &mut self.crcs {
            crc.update(bytes);
        }
        if let Some(sha1) = &mut self.sha1 {
            sha1.update(bytes);
        }
        if let Some(composite) = &mut self.composite {
            composite.update(bytes);
        }
    }

    pub fn length(&self) -> u64 {
        self.length
    }

    pub fn finish(self) -> Digests {
        let sha256_digest = self
            .sha256
            .unwrap_or_else(|| ring::digest::Context::new(&ring::digest::SHA256))
            .finish();
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(sha256_digest.as_ref());
        let mut checksums = Vec::new();
        for (kind, crc) in &self.crcs {
            let value = crc.finalize();
            let encoded = if *kind == Verification::ChecksumCrc64Nvme {
                BASE64.encode(value.to_be_bytes())
            } else {
                BASE64.encode((value as u32).to_be_bytes())
            };
            checksums.push((*kind, encoded));
        }
        if let Some(sha1) = self.sha1 {
            checksums.push((
                Verification::ChecksumSha1,
                BASE64.encode(sha1.finish().as_ref()),
            ));
        }
        if self.sha256_checksum {
            checksums.push((Verification::ChecksumSha256, BASE64.encode(sha256)));
        }
        Digests {
            length: self.length,
            sha256,
            md5_hex: self.md5.map(|md5| hex(&md5.finalize())),
            checksums,
            composite_parts: self.composite.map(CompositeHasher::finish),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(kind, base64 of the standard check value over "123456789")`.
    fn check(kind: Verification, expected_base64: &str) {
        let expected = Expected {
            size: 9,
            etag: "25f9e794323b453885f5181f1b624d0b".to_owned(),
            etag_is_md5: true,
            checksums: vec![(kind, expected_base64.to_owned())],
            composite: None,
            full_or_composite: false,
        };
        // One hasher, and the two halves of a split one fed the same bytes, agree.
        let mut hasher = ContentHasher::new(&expected);
        let (mut first, mut second) = ContentHasher::new(&expected).split();
        for bytes in [&b"1234"[..], b"56789"] {
            hasher.update(bytes);
            first.update(bytes);
            second.update(bytes);
        }
        for digests in [hasher.finish(), first.merge(second).finish()] {
            assert_eq!(
                expected.verify("k", &digests).unwrap(),
                vec![Verification::Size, Verification::EtagMd5, kind]
            );
        }
    }

    #[test]
    fn checksums_match_reference_values() {
        // Check values: CRC-32 0xCBF43926, CRC-32C 0xE3069283, CRC-64/NVME 0xAE8B14860A799888.
        check(
            Verification::ChecksumCrc32,
            &BASE64.encode(0xCBF4_3926u32.to_be_bytes()),
        );
        check(
            Verification::ChecksumCrc32c,
            &BASE64.encode(0xE306_9283u32.to_be_bytes()),
        );
        check(
            Verification::ChecksumCrc64Nvme,
            &BASE64.encode(0xAE8B_1486_0A79_9888u64.to_be_bytes()),
        );
        check(Verification::ChecksumSha1, "98O8HYCOBHMq32eZZczDTKeuNEE=");
        check(
            Verification::ChecksumSha256,
            "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=",
        );
    }

    #[test]
    fn composite_and_encrypted_objects_are_not_compared_whole() {
        let headers = IntegrityHeaders {
            etag: "\"0123456789abcdef0123456789abcdef\"",
            encrypted_with_kms_or_customer_key: true,
            crc32: Some("AAAAAA==-3"),
            sha256: Some("abc="),
            ..IntegrityHeaders::default()
        };
        let expected = Expected::from_headers(1, &headers);
        assert!(!expected.etag_is_md5);
        assert_eq!(
            expected.checksums,
            vec![(Verification::ChecksumSha256, "abc=".to_owned())]
        );
        let composite = Expected::from_headers(
            1,
            &IntegrityHeaders {
                composite_checksums: true,
                ..headers
            },
        );
        assert!(composite.checksums.is_empty());
        assert!(
            !Expected::from_headers(
                1,
                &IntegrityHeaders {
                    etag: "abc-2",
                    ..IntegrityHeaders::default()
                }
            )
            .etag_is_md5
        );
    }

    /// `(etag, checksum type, crc32, crc64nvme, sha256)` → what is verified besides the size:
    /// `(full-object kinds, composite "<kind> <value> <parts>", either, etag MD5)`.
    fn choose(
        etag: &str,
        checksum_type: &str,
        crc32: Option<&str>,
        crc64nvme: Option<&str>,
        sha256: Option<&str>,
        expect: &str,
    ) {
        let expected = Expected::from_headers(
            1,
            &IntegrityHeaders {
                etag,
                composite_checksums: checksum_type == "COMPOSITE",
                full_object_checksums: checksum_type == "FULL_OBJECT",
                crc32,
                crc64nvme,
                sha256,
                ..IntegrityHeaders::default()
            },
        );
        let full: Vec<String> = expected
            .checksums
            .iter()
            .map(|(kind, value)| format!("{kind} {value}"))
            .collect();
        let composite = expected
            .composite
            .map(|c| format!("{} {} {}", c.kind, c.value, c.part_count))
            .unwrap_or_default();
        let actual = format!(
            "full=[{}] composite=[{composite}] either={} md5={}",
            full.join(","),
            expected.full_or_composite,
            expected.etag_is_md5
        );
        assert_eq!(actual, expect, "{etag} {checksum_type}");
    }

    #[test]
    fn the_check_is_the_strongest_the_object_really_has() {
        let md5 = "0123456789abcdef0123456789abcdef";
        // A single-part upload: the checksum, no MD5; MD5 only when there is nothing else.
        choose(
            md5,
            "FULL_OBJECT",
            None,
            Some("crc="),
            None,
            "full=[x-amz-checksum-crc64nvme crc=] composite=[] either=false md5=false",
        );
        choose(
            md5,
            "",
            None,
            None,
            None,
            "full=[] composite=[] either=false md5=true",
        );
        // The strongest of several.
        choose(
            md5,
            "FULL_OBJECT",
            Some("c32="),
            Some("c64="),
            Some("sha="),
            "full=[x-amz-checksum-sha256 sha=] composite=[] either=false md5=false",
        );
        // awscli's multipart upload on AWS: composite, `-<parts>` and the type.
        choose(
            "abc-5",
            "COMPOSITE",
            Some("qPiXKg==-5"),
            None,
            None,
            "full=[] composite=[x-amz-checksum-crc32 qPiXKg== 5] either=false md5=false",
        );
        // The same without `-<parts>` but typed.
        choose(
            "abc-5",
            "COMPOSITE",
            Some("qPiXKg=="),
            None,
            None,
            "full=[] composite=[x-amz-checksum-crc32 qPiXKg== 5] either=false md5=false",
        );
        // Untyped and unsuffixed (the store): either reading may match.
        choose(
            "abc-5",
            "",
            Some("qPiXKg=="),
            None,
            None,
            "full=[x-amz-checksum-crc32 qPiXKg==] composite=[x-amz-checksum-crc32 qPiXKg== 5] either=true md5=false",
        );
        // A full-object multipart checksum (CRC64NVME always is).
        choose(
            "abc-5",
            "",
            None,
            Some("c64="),
            None,
            "full=[x-amz-checksum-crc64nvme c64=] composite=[] either=false md5=false",
        );
        choose(
            "abc-5",
            "FULL_OBJECT",
            Some("c32="),
            None,
            None,
            "full=[x-amz-checksum-crc32 c32=] composite=[] either=false md5=false",
        );
        // A multipart upload without checksums: the size only.
        choose(
            "abc-5",
            "",
            None,
            None,
            None,
            "full=[] composite=[] either=false md5=false",
        );
    }

    /// A composite checksum computed over part boundaries that cut through `update` calls.
    #[test]
    fn a_composite_checksum_is_computed_over_the_upload_parts() {
        let content: Vec<u8> = (0..100u8).collect();
        let lengths = [40u64, 40, 20];
        let mut part_crcs = Vec::new();
        let mut offset = 0usize;
        for length in lengths {
            let end = offset + length as usize;
            part_crcs.extend(part_digest(
                Verification::ChecksumCrc32,
                &content[offset..end],
            ));
            offset = end;
        }
        let value = BASE64.encode(part_digest(Verification::ChecksumCrc32, &part_crcs));
        let expected = Expected {
            size: 100,
            etag: "abc-3".to_owned(),
            etag_is_md5: false,
            checksums: Vec::new(),
            composite: Some(Composite {
                kind: Verification::ChecksumCrc32,
                value,
                part_count: 3,
                parts: lengths
                    .iter()
                    .map(|length| PartChecksum {
                        length: *length,
                        checksum: None,
                    })
                    .collect(),
                parts_assumed: false,
            }),
            full_or_composite: false,
        };
        let mut hasher = ContentHasher::new(&expected);
        for chunk in content.chunks(33) {
            hasher.update(chunk);
        }
        assert_eq!(
            expected.verify("k", &hasher.finish()).unwrap(),
            vec![Verification::Size, Verification::ChecksumCrc32]
        );
        let mut corrupted = content.clone();
        corrupted[50] ^= 1;
        let mut hasher = ContentHasher::new(&expected);
        hasher.update(&corrupted);
        assert!(expected.verify("k", &hasher.finish()).is_err());
    }

    #[test]
    fn a_mismatch_names_what_failed() {
        let expected = Expected {
            size: 3,
            etag: "900150983cd24fb0d6963f7d28e17f72".to_owned(),
            etag_is_md5: true,
            checksums: Vec::new(),
            composite: None,
            full_or_composite: false,
        };
        let mut hasher = ContentHasher::new(&expected);
        hasher.update(b"abd");
        let error = expected.verify("k", &hasher.finish()).unwrap_err();
        assert!(
            matches!(
                error,
                S3Error::Verification {
                    what: Verification::EtagMd5,
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
