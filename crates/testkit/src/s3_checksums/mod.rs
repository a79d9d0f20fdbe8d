//! What S3 does with checksums that s3s-fs 0.14.1 does not: a wrapper around its `S3` impl.
//!
//! s3s-fs keeps the checksums sent with PutObject, ignores those of UploadPart and
//! CompleteMultipartUpload, returns checksums whatever `x-amz-checksum-mode` says and knows
//! nothing of `partNumber`. Real S3 (and so every client written against it, awscli first):
//! - keeps one checksum per part and answers, for a multipart object, either a *composite*
//!   checksum (`<checksum of the parts' checksums>-<parts>`, CRC32/CRC32C/SHA1/SHA256, the
//!   default but for CRC64NVME) or a *full-object* one (CRC64NVME always, CRC32/CRC32C when
//!   the upload asked for `FULL_OBJECT`), with `x-amz-checksum-type`;
//! - answers HEAD/GET with `partNumber` with that part's length, range and checksum, and
//!   `x-amz-mp-parts-count`;
//! - returns checksums on HEAD/GET only with `x-amz-checksum-mode: ENABLED`, and not for a
//!   range that is less than the whole object.
//!
//! The guarantee: an object seeded through this server reads back, checksum headers included,
//! as the same upload to S3 would. It is kept by recording, for every completed multipart
//! upload, its parts' lengths and checksums in `<root>/.keyledger-checksums/<bucket>/<key>.json`
//! (a dot folder is never listed as a bucket) next to the ETag it belongs to; a record whose
//! ETag is not the object's current one is ignored, and PutObject and DeleteObject remove it.

#[macro_use]
mod records;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use futures::{StreamExt as _, TryStreamExt as _};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

pub use records::Algorithm;
use records::{
    ChecksumFields, ObjectRecord, PartRecord, answer_fields, complete_input_checksum,
    completed_part_checksum, composite_checksum, file_checksum, part_algorithm, part_span,
    sent_part_checksum,
};

/// Where the records live, under the server's root.
const RECORDS: &str = ".keyledger-checksums";

/// How the server answers checksums on HEAD and GET.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumDialect {
    /// As AWS S3: `x-amz-checksum-type`, and composite checksums end in `-<parts>`.
    #[default]
    Aws,
    /// As some S3-compatible stores: no `x-amz-checksum-type`, and a composite checksum
    /// without its `-<parts>` suffix, so that it reads like a full-object one.
    Untyped,
}

/// s3s-fs with S3's checksum behaviour.
#[derive(Debug)]
pub struct ChecksumKeeper {
    inner: s3s_fs::FileSystem,
    dialect: ChecksumDialect,
    root: PathBuf,
    /// Multipart uploads in progress, by upload id.
    uploads: Mutex<HashMap<String, Upload>>,
}

#[derive(Debug, Default)]
struct Upload {
    algorithm: Option<Algorithm>,
    full_object: bool,
    parts: BTreeMap<i32, PartRecord>,
}

impl ChecksumKeeper {
    pub fn new(inner: s3s_fs::FileSystem, root: &Path, dialect: ChecksumDialect) -> ChecksumKeeper {
        ChecksumKeeper {
            inner,
            dialect,
            root: root.to_path_buf(),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn record_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root
            .join(RECORDS)
            .join(bucket)
            .join(format!("{key}.json"))
    }

    /// The record of the object whose ETag is `etag`, if it was a multipart upload.
    fn load_record(&self, bucket: &str, key: &str, etag: Option<&ETag>) -> Option<ObjectRecord> {
        let text = std::fs::read(self.record_path(bucket, key)).ok()?;
        let record: ObjectRecord = serde_json::from_slice(&text).ok()?;
        let current = etag?.value().trim_matches('"');
        (record.etag == current).then_some(record)
    }

    /// The fields of a HEAD or GET answer, in this server's dialect.
    fn in_dialect(&self, fields: ChecksumFields) -> ChecksumFields {
        match self.dialect {
            ChecksumDialect::Aws => fields,
            ChecksumDialect::Untyped => {
                let strip = |value: Option<String>| {
                    value.map(|value| match value.rsplit_once('-') {
                        Some((checksum, _)) => checksum.to_owned(),
                        None => value,
                    })
                };
                ChecksumFields {
                    crc32: strip(fields.crc32),
                    crc32c: strip(fields.crc32c),
                    crc64nvme: strip(fields.crc64nvme),
                    sha1: strip(fields.sha1),
                    sha256: strip(fields.sha256),
                    checksum_type: None,
                }
            }
        }
    }

    fn forget_record(&self, bucket: &str, key: &str) {
        let _ = std::fs::remove_file(self.record_path(bucket, key));
    }

    fn uploads(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Upload>> {
        self.uploads.lock()
    }
}

fn internal(error: impl std::fmt::Display) -> S3Error {
    S3Error::with_message(S3ErrorCode::InternalError, error.to_string())
}

fn invalid_part_number() -> S3Error {
    let mut error = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    error.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    error
}

fn checksum_mode_enabled(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|mode| mode.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

#[async_trait::async_trait]
impl S3 for ChecksumKeeper {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.forget_record(&req.input.bucket, &req.input.key);
        self.inner.copy_object(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.inner.delete_bucket(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.forget_record(&req.input.bucket, &req.input.key);
        self.inner.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        for object in &req.input.delete.objects {
            self.forget_record(&req.input.bucket, &object.key);
        }
        self.inner.delete_objects(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn get_object(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let mode = checksum_mode_enabled(req.input.checksum_mode.as_ref());
        let part_number = req.input.part_number.take();
        let whole = req.input.range.is_none();
        // The record is looked up before the GET to turn a part number into a range; its
        // ETag is checked against the answer's.
        let record = std::fs::read(self.record_path(&bucket, &key))
            .ok()
            .and_then(|text| serde_json::from_slice::<ObjectRecord>(&text).ok());
        let mut part = None;
        if let Some(number) = part_number {
            match &record {
                Some(record) => {
                    let (start, end, found) =
                        part_span(record, number).ok_or_else(invalid_part_number)?;
                    req.input.range = Some(Range::Int {
                        first: start,
                        last: Some(end.saturating_sub(1)),
                    });
                    part = Some((number, found.clone()));
                }
                None if number == 1 => {}
                None => return Err(invalid_part_number()),
            }
        }
        let mut response = self.inner.get_object(req).await?;
        let output = &mut response.output;
        let record = record.filter(|record| {
            output
                .e_tag
                .as_ref()
                .is_some_and(|etag| etag.value().trim_matches('"') == record.etag)
        });
        if let (Some(_), None) = (&part, &record) {
            // The object changed between the lookup and the GET.
            return Err(invalid_part_number());
        }
        let fields = match &record {
            Some(record) => {
                output.parts_count = i32::try_from(record.parts.len()).ok();
                // A range that covers the whole object counts as the whole object, as in
                // s3s-fs.
                let total: u64 = record.parts.iter().map(|part| part.length).sum();
                let whole = whole
                    || output.content_length.and_then(|n| u64::try_from(n).ok()) == Some(total);
                match &part {
                    Some((_, found)) => answer_fields(record, Some(found)),
                    None if whole => answer_fields(record, None),
                    None => ChecksumFields::default(),
                }
            }
            None if has_checksum!(output) => ChecksumFields {
                crc32: output.checksum_crc32.take(),
                crc32c: output.checksum_crc32c.take(),
                crc64nvme: output.checksum_crc64nvme.take(),
                sha1: output.checksum_sha1.take(),
                sha256: output.checksum_sha256.take(),
                checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            },
            None => ChecksumFields::default(),
        };
        if mode {
            set_checksums!(output, self.in_dialect(fields));
        } else {
            set_checksums!(output, ChecksumFields::default());
        }
        Ok(response)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn head_object(
        &self,
        mut req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let mode = checksum_mode_enabled(req.input.checksum_mode.as_ref());
        let part_number = req.input.part_number.take();
        let mut response = self.inner.head_object(req).await?;
        let output = &mut response.output;
        let record = self.load_record(&bucket, &key, output.e_tag.as_ref());
        let fields = match (&record, part_number) {
            (Some(record), number) => {
                output.parts_count = i32::try_from(record.parts.len()).ok();
                match number {
                    Some(number) => {
                        let (start, end, part) =
                            part_span(record, number).ok_or_else(invalid_part_number)?;
                        let total = record.parts.iter().map(|part| part.length).sum::<u64>();
                        output.content_length = i64::try_from(end - start).ok();
                        output.content_range =
                            Some(format!("bytes {start}-{}/{total}", end.saturating_sub(1)));
                        answer_fields(record, Some(part))
                    }
                    None => answer_fields(record, None),
                }
            }
            (None, Some(number)) if number != 1 => return Err(invalid_part_number()),
            (None, _) if has_checksum!(output) => ChecksumFields {
                crc32: output.checksum_crc32.take(),
                crc32c: output.checksum_crc32c.take(),
                crc64nvme: output.checksum_crc64nvme.take(),
                sha1: output.checksum_sha1.take(),
                sha256: output.checksum_sha256.take(),
                checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            },
            (None, _) => ChecksumFields::default(),
        };
        if mode {
            set_checksums!(output, self.in_dialect(fields));
        } else {
            set_checksums!(output, ChecksumFields::default());
        }
        Ok(response)
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.inner.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.inner.list_objects_v2(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let mut response = self.inner.put_object(req).await?;
        self.forget_record(&bucket, &key);
        if has_checksum!(response.output) {
            response.output.checksum_type =
                Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
        }
        Ok(response)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let algorithm = match &req.input.checksum_algorithm {
            Some(name) => Some(Algorithm::from_name(name.as_str()).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "unknown checksum algorithm {}",
                    name.as_str()
                )
            })?),
            None => None,
        };
        let full_object = match (&req.input.checksum_type, algorithm) {
            (Some(kind), Some(algorithm)) => {
                let full = kind.as_str() == ChecksumType::FULL_OBJECT;
                let allowed = if full {
                    matches!(
                        algorithm,
                        Algorithm::Crc32 | Algorithm::Crc32c | Algorithm::Crc64Nvme
                    )
                } else {
                    algorithm != Algorithm::Crc64Nvme
                };
                if !allowed {
                    return Err(s3_error!(
                        InvalidRequest,
                        "The {} checksum type cannot be used with the {algorithm:?} algorithm",
                        kind.as_str()
                    ));
                }
                full
            }
            (_, Some(algorithm)) => algorithm.default_full_object(),
            (_, None) => false,
        };
        let mut response = self.inner.create_multipart_upload(req).await?;
        if let Some(upload_id) = &response.output.upload_id {
            self.uploads().insert(
                upload_id.clone(),
                Upload {
                    algorithm,
                    full_object,
                    parts: BTreeMap::new(),
                },
            );
        }
        if let Some(algorithm) = algorithm {
            response.output.checksum_algorithm = Some(ChecksumAlgorithm::from(
                format!("{algorithm:?}").to_ascii_uppercase(),
            ));
            response.output.checksum_type = Some(ChecksumType::from_static(if full_object {
                ChecksumType::FULL_OBJECT
            } else {
                ChecksumType::COMPOSITE
            }));
        }
        Ok(response)
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let upload_id = req.input.upload_id.clone();
        let part_number = req.input.part_number;
        let upload_algorithm = self
            .uploads()
            .get(&upload_id)
            .and_then(|upload| upload.algorithm);
        let algorithm = upload_algorithm.or_else(|| part_algorithm(&req.input, &req.headers));
        let sent = algorithm.and_then(|algorithm| sent_part_checksum(&req.input, algorithm));
        let trailers = req.trailing_headers.take();
        let hashed = Arc::new(Mutex::new((0u64, algorithm.map(Algorithm::hasher))));
        if let Some(body) = req.input.body.take() {
            let hashed = Arc::clone(&hashed);
            let stream = body.map_err(std::io::Error::other).inspect(move |chunk| {
                if let Ok(bytes) = chunk {
                    let mut state = hashed.lock();
                    state.0 += bytes.len() as u64;
                    if let Some(hasher) = &mut state.1 {
                        hasher.update(bytes);
                    }
                }
            });
            req.input.body = Some(StreamingBlob::wrap(stream));
        }
        let mut response = self.inner.upload_part(req).await?;
        let (length, hasher) = std::mem::take(&mut *hashed.lock());
        let computed = match (algorithm, hasher) {
            (Some(algorithm), Some(hasher)) => Some(algorithm.finish(hasher)),
            _ => None,
        };
        if let Some(algorithm) = algorithm {
            let sent = sent.or_else(|| {
                let trailers = trailers.as_ref()?.take()?;
                Some(trailers.get(algorithm.header())?.to_str().ok()?.to_owned())
            });
            if let Some(sent) = sent
                && Some(&sent) != computed.as_ref()
            {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    algorithm.header()
                ));
            }
        }
        if let Some(upload) = self.uploads().get_mut(&upload_id) {
            upload.parts.insert(
                part_number,
                PartRecord {
                    length,
                    checksum: computed.clone(),
                },
            );
        }
        if let (Some(algorithm), Some(value)) = (algorithm, computed) {
            let fields = ChecksumFields::one(algorithm, value, false);
            let output = &mut response.output;
            output.checksum_crc32 = fields.crc32;
            output.checksum_crc32c = fields.crc32c;
            output.checksum_crc64nvme = fields.crc64nvme;
            output.checksum_sha1 = fields.sha1;
            output.checksum_sha256 = fields.sha256;
        }
        Ok(response)
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.inner.upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.inner.list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = &req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let upload = self.uploads().remove(&input.upload_id).unwrap_or_default();
        let listed: Vec<&CompletedPart> = input
            .multipart_upload
            .as_ref()
            .and_then(|upload| upload.parts.as_ref())
            .map(|parts| parts.iter().collect())
            .unwrap_or_default();
        let mut parts = Vec::with_capacity(listed.len());
        for completed in &listed {
            let number = completed.part_number.unwrap_or_default();
            let Some(part) = upload.parts.get(&number) else {
                return Err(s3_error!(InvalidPart, "part {number} was not uploaded"));
            };
            if let Some(algorithm) = upload.algorithm
                && let Some(claimed) = completed_part_checksum(completed, algorithm)
                && Some(&claimed) != part.checksum.as_ref()
            {
                return Err(s3_error!(
                    InvalidPart,
                    "the checksum of part {number} does not match"
                ));
            }
            parts.push(part.clone());
        }
        let claimed_whole = upload
            .algorithm
            .and_then(|algorithm| complete_input_checksum(input, algorithm));
        let object_path = self.root.join(&bucket).join(&key);
        let mut response = self.inner.complete_multipart_upload(req).await?;
        let Some(inner_future) = response.output.future.take() else {
            return Ok(response);
        };
        let record_path = self.record_path(&bucket, &key);
        response.output.future = Some(Box::pin(async move {
            let mut output = inner_future.await?;
            let etag = output
                .e_tag
                .as_ref()
                .map(|etag| etag.value().trim_matches('"').to_owned())
                .unwrap_or_default();
            let checksum = match upload.algorithm {
                None => None,
                Some(algorithm) if upload.full_object => {
                    let whole = file_checksum(&object_path, algorithm)
                        .await
                        .map_err(internal)?;
                    if let Some(claimed) = &claimed_whole
                        && claimed != &whole
                    {
                        return Err(s3_error!(
                            BadDigest,
                            "The full-object {} you specified did not match the calculated checksum.",
                            algorithm.header()
                        ));
                    }
                    Some(whole)
                }
                Some(algorithm) => composite_checksum(algorithm, &parts),
            };
            let record = ObjectRecord {
                etag,
                algorithm: upload.algorithm,
                full_object: upload.full_object,
                checksum: checksum.clone(),
                parts,
            };
            if let Some(parent) = record_path.parent() {
                std::fs::create_dir_all(parent).map_err(internal)?;
            }
            std::fs::write(&record_path, serde_json::to_vec(&record).map_err(internal)?)
                .map_err(internal)?;
            if let (Some(algorithm), Some(value)) = (upload.algorithm, checksum) {
                set_checksums!(
                    output,
                    ChecksumFields::one(algorithm, value, upload.full_object)
                );
            }
            Ok(output)
        }));
        Ok(response)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.uploads().remove(&req.input.upload_id);
        self.inner.abort_multipart_upload(req).await
    }
}
