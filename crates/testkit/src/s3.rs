//! A real S3 server inside the test process: s3s-fs over a temporary directory, with SigV4
//! checked for real (`SimpleAuth`), served by hyper on `127.0.0.1:<free port>`, and S3's own
//! handling of checksums (per-part, composite and full-object checksums, `partNumber`,
//! `x-amz-checksum-mode`; see [`crate::s3_checksums`]).
//!
//! Who may do what is decided by the server's [`Iam`] (see [`crate::s3_access`]): the key the
//! server was started with has full access; a test adds keys bounded by a policy
//! ([`crate::iam::AccessKey::policy`]), and an [`crate::sts::StsServer`] sharing the same `Iam`
//! issues temporary credentials that this server accepts until they expire.
//!
//! Test data is seeded through the S3 API (PutObject, multipart upload) so that s3s-fs stores
//! the ETag and checksums itself; a file copied straight into the directory would make s3s-fs
//! re-hash the whole file on every GET and HEAD.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = keyledger_testkit::s3::S3Server::start("AKIAIOSFODNN7EXAMPLE", "secret").await?;
//! server.create_bucket("samples").await?;
//! server.put_object("samples", "run1/a.fastq", b"ACGT".to_vec()).await?;
//! println!("{}", server.endpoint());
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
pub use aws_sdk_s3::types::ChecksumAlgorithm;

pub use crate::s3_checksums::ChecksumDialect;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::iam::{AccessKey, Iam};
use crate::s3_access::{IamAccess, IamAuth};
use crate::s3_edge::{Edge, Verdict};

/// Region the seeding client signs for. s3s accepts any region in the credential scope; a bucket
/// given a region with [`S3Server::set_bucket_region`] accepts only its own.
pub const REGION: &str = "us-east-1";

/// How many PutObject requests [`S3Server::put_objects`] keeps in flight.
const SEED_CONCURRENCY: usize = 16;

/// Chunk size of generated bodies.
const GENERATED_CHUNK: usize = 1 << 20;

/// An in-process S3 server. Stops (and deletes its temporary directory) when dropped.
pub struct S3Server {
    address: SocketAddr,
    root: Root,
    client: aws_sdk_s3::Client,
    access_key_id: String,
    iam: Iam,
    edge: Edge,
    accept_task: tokio::task::JoinHandle<()>,
}

enum Root {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl S3Server {
    /// Starts a server over a fresh temporary directory that accepts only requests signed
    /// with this access key id and secret.
    pub async fn start(access_key_id: &str, secret_access_key: &str) -> anyhow::Result<S3Server> {
        Self::start_with_dialect(access_key_id, secret_access_key, ChecksumDialect::Aws).await
    }

    /// Like [`S3Server::start`], answering checksums in `dialect` (to stand for S3-compatible
    /// stores that differ from AWS).
    pub async fn start_with_dialect(
        access_key_id: &str,
        secret_access_key: &str,
        dialect: ChecksumDialect,
    ) -> anyhow::Result<S3Server> {
        let dir = tempfile::tempdir().context("creating the S3 server's directory")?;
        Self::serve(
            Root::Temporary(dir),
            access_key_id,
            secret_access_key,
            dialect,
        )
        .await
    }

    /// Starts a server over an existing directory (kept after the server stops), so a bench
    /// can seed large data once and reuse it across runs.
    pub async fn start_in(
        root: &Path,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> anyhow::Result<S3Server> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        Self::serve(
            Root::Kept(root.to_path_buf()),
            access_key_id,
            secret_access_key,
            ChecksumDialect::Aws,
        )
        .await
    }

    /// `http://127.0.0.1:PORT`, for path-style addressing.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The socket address the server listens on (what a [`crate::fault_proxy::FaultProxy`]
    /// forwards to).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The directory holding the buckets (one sub-directory per bucket).
    pub fn root(&self) -> &Path {
        match &self.root {
            Root::Temporary(dir) => dir.path(),
            Root::Kept(path) => path,
        }
    }

    /// The access key id the server accepts.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The identities this server accepts: add keys and roles here, and start an
    /// [`crate::sts::StsServer`] over a clone of it to issue temporary credentials.
    pub fn iam(&self) -> &Iam {
        &self.iam
    }

    /// Puts `bucket` in `region`: from now on a request signed for another region is refused as
    /// S3 refuses it (400 `AuthorizationHeaderMalformed` "… expecting '<region>'", with
    /// `x-amz-bucket-region`), and HeadBucket names the region. The seeding client signs for
    /// [`REGION`]: seed the bucket first. See [`crate::s3_edge`].
    pub fn set_bucket_region(&self, bucket: &str, region: &str) {
        self.edge.set_region(bucket, region);
    }

    /// Moves the server's clock by `offset_secs` (negative: behind): a request signed more than
    /// 15 minutes from it is refused with 403 `RequestTimeTooSkewed`, as S3 does for a client
    /// whose clock is off. 0 (the start) leaves the check to s3s.
    pub fn set_clock_offset(&self, offset_secs: i64) {
        self.edge.set_offset(offset_secs);
    }

    /// A client signed with the server's own credentials, for seeding and inspection.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Creates a bucket (an existing bucket is not an error).
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        if self.root().join(bucket).is_dir() {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|error| sdk_error("CreateBucket", bucket, error))?;
        Ok(())
    }

    /// Stores one object with PutObject and returns its ETag (without quotes). The SDK sends
    /// a CRC32 checksum, which s3s-fs stores and returns on HEAD.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<String> {
        put(&self.client, bucket, key, body.into()).await
    }

    /// Stores many objects with concurrent PutObjects. The iterator is consumed lazily, so a
    /// generator of bodies keeps memory bounded.
    pub async fn put_objects<I>(&self, bucket: &str, objects: I) -> anyhow::Result<usize>
    where
        I: IntoIterator<Item = (String, Bytes)>,
    {
        let client = &self.client;
        futures::stream::iter(objects)
            .map(|(key, body)| async move { put(client, bucket, &key, body).await })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_fold(0usize, |count, _| async move { Ok(count + 1) })
            .await
    }

    /// Stores `count` objects of `size` generated bytes each, named by `key_of(index)`; the
    /// content of object `index` is [`generated_bytes`]`(seed + index, 0, size)`.
    pub async fn put_generated_objects(
        &self,
        bucket: &str,
        count: u64,
        size: usize,
        seed: u64,
        key_of: impl Fn(u64) -> String + Send + Sync,
    ) -> anyhow::Result<usize> {
        let objects = (0..count).map(|index| {
            let body = generated_bytes(seed.wrapping_add(index), 0, size);
            (key_of(index), Bytes::from(body))
        });
        self.put_objects(bucket, objects).await
    }

    /// Stores one large object of `size` generated bytes (see [`generated_bytes`]) with a
    /// single streamed PutObject: memory stays at one chunk whatever the size, and the ETag is
    /// the MD5 of the content, as for any single-part upload.
    pub async fn put_generated_object(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        seed: u64,
    ) -> anyhow::Result<String> {
        let body = ByteStream::from_body_1_x(GeneratedBody {
            seed,
            offset: 0,
            size,
        });
        let output = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(i64::try_from(size)?)
            .body(body)
            .send()
            .await
            .map_err(|error| sdk_error("PutObject", key, error))?;
        Ok(unquote(output.e_tag().unwrap_or_default()))
    }

    /// Stores one large object of `size` generated bytes with a single streamed PutObject that
    /// carries `checksum` as S3 and current clients do today (CRC64NVME, S3's default since
    /// 2025), or no checksum at all (`None`: then only the ETag's MD5 describes the content).
    pub async fn put_generated_object_with(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        seed: u64,
        checksum: Option<ChecksumAlgorithm>,
    ) -> anyhow::Result<String> {
        let body = ByteStream::from_body_1_x(GeneratedBody {
            seed,
            offset: 0,
            size,
        });
        let client = match checksum {
            Some(_) => self.client.clone(),
            None => without_checksums(&self.client),
        };
        let output = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(i64::try_from(size)?)
            .set_checksum_algorithm(checksum)
            .body(body)
            .send()
            .await
            .map_err(|error| sdk_error("PutObject", key, error))?;
        Ok(unquote(output.e_tag().unwrap_or_default()))
    }

    /// Stores `size` generated bytes as awscli does above its multipart threshold: parts of
    /// `part_size` bytes, each with a checksum of `algorithm` (CRC32 by default in awscli), so
    /// that S3 keeps a composite checksum `<checksum of the parts' checksums>-<parts>`
    /// (CRC64NVME gives a full-object one). Memory stays at one part.
    pub async fn put_generated_object_multipart(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        seed: u64,
        part_size: u64,
        algorithm: ChecksumAlgorithm,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(part_size > 0, "part_size must be positive");
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .checksum_algorithm(algorithm.clone())
            .send()
            .await
            .map_err(|error| sdk_error("CreateMultipartUpload", key, error))?;
        let upload_id = upload
            .upload_id()
            .context("CreateMultipartUpload returned no upload id")?;
        let mut completed = Vec::new();
        let mut offset = 0u64;
        let mut part_number = 0i32;
        while offset < size {
            part_number += 1;
            let length = part_size.min(size - offset);
            let part = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .content_length(i64::try_from(length)?)
                .checksum_algorithm(algorithm.clone())
                .body(ByteStream::from_body_1_x(GeneratedBody {
                    seed,
                    offset,
                    size: offset + length,
                }))
                .send()
                .await
                .map_err(|error| sdk_error("UploadPart", key, error))?;
            completed.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .set_checksum_crc32(part.checksum_crc32().map(str::to_owned))
                    .set_checksum_crc32_c(part.checksum_crc32_c().map(str::to_owned))
                    .set_checksum_crc64_nvme(part.checksum_crc64_nvme().map(str::to_owned))
                    .set_checksum_sha1(part.checksum_sha1().map(str::to_owned))
                    .set_checksum_sha256(part.checksum_sha256().map(str::to_owned))
                    .build(),
            );
            offset += length;
        }
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|error| sdk_error("CompleteMultipartUpload", key, error))?;
        Ok(unquote(output.e_tag().unwrap_or_default()))
    }

    /// Stores one object with a multipart upload of `part_size` parts (s3s-fs, like S3,
    /// refuses parts under 5 MiB except the last). The ETag is `<md5 of part md5s>-<parts>`.
    pub async fn put_object_multipart(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        part_size: usize,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(part_size > 0, "part_size must be positive");
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| sdk_error("CreateMultipartUpload", key, error))?;
        let upload_id = upload
            .upload_id()
            .context("CreateMultipartUpload returned no upload id")?;
        let mut completed = Vec::new();
        for (index, chunk) in body.chunks(part_size).enumerate() {
            let part_number = i32::try_from(index + 1)?;
            let part = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(body.slice_ref(chunk)))
                .send()
                .await
                .map_err(|error| sdk_error("UploadPart", key, error))?;
            completed.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|error| sdk_error("CompleteMultipartUpload", key, error))?;
        Ok(unquote(output.e_tag().unwrap_or_default()))
    }

    /// The file s3s-fs keeps an object's bytes in (to tamper with it behind S3's back).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root().join(bucket).join(key)
    }

    async fn serve(
        root: Root,
        access_key_id: &str,
        secret_access_key: &str,
        dialect: ChecksumDialect,
    ) -> anyhow::Result<S3Server> {
        let root_path = match &root {
            Root::Temporary(dir) => dir.path().to_path_buf(),
            Root::Kept(path) => path.clone(),
        };
        let file_system = s3s_fs::FileSystem::new(&root_path).map_err(|error| {
            anyhow::anyhow!(
                "opening the s3s-fs directory {}: {error:?}",
                root_path.display()
            )
        })?;
        let mut builder = S3ServiceBuilder::new(crate::s3_checksums::ChecksumKeeper::new(
            file_system,
            &root_path,
            dialect,
        ));
        // Without auth s3s accepts anonymous requests, which would hide a client signing
        // with the wrong key.
        let iam = Iam::new();
        iam.add_access_key(AccessKey::new(access_key_id, secret_access_key));
        builder.set_auth(IamAuth(iam.clone()));
        builder.set_access(IamAccess(iam.clone()));
        let service = builder.build();
        let edge = Edge::default();
        let front = edge.clone();
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let service = service.clone();
                let verdict = front.judge(
                    request.method(),
                    request.uri().path(),
                    request.uri().query(),
                    request.headers(),
                );
                async move {
                    match verdict {
                        Verdict::Refuse(answer) => Ok(answer),
                        Verdict::Pass(region) => {
                            let mut answer = service.call(request.map(s3s::Body::from)).await?;
                            if let Some(region) = region
                                && let Ok(value) = http::HeaderValue::from_str(&region)
                            {
                                answer.headers_mut().insert("x-amz-bucket-region", value);
                            }
                            Ok::<_, s3s::HttpError>(answer)
                        }
                    }
                }
            });

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the S3 server")?;
        let address = listener.local_addr()?;
        let accept_task = tokio::spawn(async move {
            // Dropping the set (when the accept task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let (socket, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "S3 test server: accept failed");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                connections.spawn(async move {
                    let _ = ConnectionBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });

        let client = seeding_client(
            &format!("http://{address}"),
            access_key_id,
            secret_access_key,
        );
        Ok(S3Server {
            address,
            root,
            client,
            access_key_id: access_key_id.to_owned(),
            iam,
            edge,
            accept_task,
        })
    }
}

impl fmt::Debug for S3Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint())
            .field("root", &self.root())
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Deterministic pseudo-random bytes: the content at absolute `offset` of a generated object
/// with this seed, so tests can check any range without keeping the object in memory.
pub fn generated_bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; len];
    fill_generated(seed, offset, &mut buffer);
    buffer
}

/// Fills `buffer` with the generated content starting at absolute `offset` (see
/// [`generated_bytes`]).
pub fn fill_generated(seed: u64, offset: u64, buffer: &mut [u8]) {
    let mut position = offset;
    let mut filled = 0;
    while filled < buffer.len() {
        let word = generated_word(seed, position / 8).to_le_bytes();
        let within = usize::try_from(position % 8).unwrap_or(0);
        let take = (8 - within).min(buffer.len() - filled);
        buffer[filled..filled + take].copy_from_slice(&word[within..within + take]);
        filled += take;
        position += take as u64;
    }
}

fn generated_word(seed: u64, index: u64) -> u64 {
    // splitmix64: cheap, and every word depends on its position.
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A request body of generated bytes with an exact length, produced one chunk at a time.
struct GeneratedBody {
    seed: u64,
    offset: u64,
    size: u64,
}

impl Body for GeneratedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let remaining = self.size - self.offset;
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(remaining)
            .unwrap_or(GENERATED_CHUNK)
            .min(GENERATED_CHUNK);
        let chunk = generated_bytes(self.seed, self.offset, len);
        self.offset += len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset == self.size
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size - self.offset)
    }
}

/// The same client, sending no checksum unless an operation requires one.
fn without_checksums(client: &aws_sdk_s3::Client) -> aws_sdk_s3::Client {
    let config = client
        .config()
        .to_builder()
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn seeding_client(endpoint: &str, access_key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "keyledger-testkit",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Bytes,
) -> anyhow::Result<String> {
    let output = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|error| sdk_error("PutObject", key, error))?;
    Ok(unquote(output.e_tag().unwrap_or_default()))
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn sdk_error<E>(operation: &str, target: &str, error: E) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow::anyhow!(
        "{operation} {target} on the S3 test server failed: {}",
        aws_sdk_s3::error::DisplayErrorContext(error)
    )
}
