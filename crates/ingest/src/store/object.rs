//! The sample store on an object store (`s3://bucket/prefix`, decision 0029), shared by workers
//! on many machines: `<prefix>/<destination>/<batch id>/<relative path>`, the same layout as
//! the `file://` store.
//!
//! Invariants:
//! - An object appears only complete and verified. The connector downloads into a local partial
//!   file (resumable, verified against the provider's checks and hashed); the file is then sent
//!   as one multipart upload that is completed only when the bytes sent hash to the verified
//!   SHA-256 and size, and aborted otherwise (an uncompleted upload is never listed nor
//!   readable).
//! - The store's endpoint, region and credentials are the operator's (`KEYLEDGER_STORE_*`),
//!   never a user's external key; they are not printed (`Debug` names the URL only).
//! - Nothing is replaced: an object already under a key is an error, as for the file store.

use std::collections::HashSet;
use std::fmt;
use std::path::Path as LocalPath;
use std::str::FromStr;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use ring::digest;
use tokio::io::AsyncReadExt;

/// Parts of 8 MiB (S3 wants at least 5 MiB for every part but the last).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// The environment variables that configure the store: `KEYLEDGER_STORE_ENDPOINT`,
/// `…_REGION`, `…_ACCESS_KEY_ID`, `…_SECRET_ACCESS_KEY`, `…_SESSION_TOKEN`, `…_ALLOW_HTTP`
/// (any `aws_*` option of `object_store`, without its `aws_` prefix).
pub const ENV_PREFIX: &str = "KEYLEDGER_STORE_";

/// An `s3://bucket/prefix` sample store.
pub struct ObjectTarget {
    url: String,
    prefix: String,
    store: Arc<dyn ObjectStore>,
}

impl fmt::Debug for ObjectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ObjectTarget {
    /// `s3://bucket/prefix` with the operator's options (`(name, value)`, names as in
    /// [`ENV_PREFIX`] without it, e.g. `endpoint`, `secret_access_key`). Says what is wrong
    /// without echoing any value.
    pub fn from_url(
        url: &str,
        options: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ObjectTarget, String> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "`{url}` is not an s3:// URL; give s3://bucket/prefix"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("the store URL names no bucket: s3://bucket/prefix".to_owned());
        }
        let prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            Path::parse(&prefix)
                .map_err(|_| format!("the store prefix `{prefix}` is not a valid object path"))?;
        }
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (name, value) in options {
            let lower = name.to_ascii_lowercase();
            let key = AmazonS3ConfigKey::from_str(&format!("aws_{lower}")).map_err(|_| {
                format!(
                    "{ENV_PREFIX}{}: not an S3 store option",
                    name.to_ascii_uppercase()
                )
            })?;
            builder = builder.with_config(key, value);
        }
        let store = builder
            .build()
            .map_err(|error| format!("the S3 store cannot be set up: {}", sentence(&error)))?;
        Ok(ObjectTarget {
            url: url.to_owned(),
            prefix,
            store: Arc::new(store),
        })
    }

    /// The options from the environment (`KEYLEDGER_STORE_*`).
    pub fn env_options() -> Vec<(String, String)> {
        std::env::vars()
            .filter_map(|(name, value)| {
                name.strip_prefix(ENV_PREFIX)
                    .map(|option| (option.to_owned(), value))
            })
            .collect()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying store (for listing and reading in tests and tools).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `<prefix>/<destination>/<batch id>` as text, without a trailing `/`.
    fn batch_text(&self, destination: &str, batch_id: &str) -> String {
        if self.prefix.is_empty() {
            format!("{destination}/{batch_id}")
        } else {
            format!("{}/{destination}/{batch_id}", self.prefix)
        }
    }

    /// Reads a stored file (`<destination>/<batch id>/<relative>`), the whole of it or
    /// `range` (start, end exclusive), as a stream of bytes.
    pub async fn read(
        &self,
        relative: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<
        (
            u64,
            futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
        ),
        String,
    > {
        let key = self.key_of(relative)?;
        let options = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&key, options)
            .await
            .map_err(|error| sentence(&error))?;
        let size = got.meta.size;
        Ok((size, got.into_stream()))
    }

    /// Writes a small object whole (the batch's manifest files), replacing it.
    pub async fn put_small(&self, relative: &str, bytes: Vec<u8>) -> Result<(), String> {
        let key = self.key_of(relative)?;
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|error| sentence(&error))
    }

    /// The key of a stored file.
    pub fn key(&self, destination: &str, batch_id: &str, relative: &str) -> Result<Path, String> {
        let text = format!("{}/{relative}", self.batch_text(destination, batch_id));
        Path::parse(&text).map_err(|_| {
            format!("`{relative}` cannot be stored as an object name; it was not stored")
        })
    }

    /// The key of `<destination>/<batch id>/<relative>` (a path relative to the store).
    pub fn key_of(&self, relative: &str) -> Result<Path, String> {
        let text = if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        };
        Path::parse(&text).map_err(|_| {
            format!("`{relative}` cannot be stored as an object name; it was not stored")
        })
    }

    /// Sends the verified partial file to `key`: a multipart upload completed only if the bytes
    /// sent are `size` bytes with SHA-256 `sha256`, aborted on any error or mismatch.
    pub async fn publish(
        &self,
        partial: &LocalPath,
        key: &Path,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<(), String> {
        match self.store.head(key).await {
            Ok(_) => return Err(format!("{key} already exists in the store")),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(format!("the store cannot be reached: {}", sentence(&error))),
        }
        let mut upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|error| format!("starting the upload failed: {}", sentence(&error)))?;
        let sent = send_parts(&mut *upload, partial).await;
        let verdict = match sent {
            Ok((sent_size, sent_sha)) if sent_size == size && sent_sha == *sha256 => Ok(()),
            Ok((sent_size, _)) => Err(format!(
                "the bytes sent ({sent_size}) are not the verified file ({size} bytes, its SHA-256); the upload was aborted"
            )),
            Err(error) => Err(error),
        };
        match verdict {
            Ok(()) => upload
                .complete()
                .await
                .map(drop)
                .map_err(|error| format!("completing the upload failed: {}", sentence(&error))),
            Err(reason) => {
                if let Err(error) = upload.abort().await {
                    tracing::warn!(error = %sentence(&error), "could not abort an upload");
                }
                Err(reason)
            }
        }
    }

    /// Deletes one stored object (a file whose report the vault refused).
    pub async fn remove(&self, key: &Path) -> Result<(), String> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(sentence(&error)),
        }
    }

    /// Deletes objects of the batch that `keep` (relative paths) does not name: files a worker
    /// stored and died before its report. Returns how many it deleted.
    pub async fn remove_unrecorded(
        &self,
        destination: &str,
        batch_id: &str,
        keep: &HashSet<String>,
    ) -> Result<u64, String> {
        self.remove_unrecorded_under(&format!("{destination}/{batch_id}"), keep)
            .await
    }

    /// [`ObjectTarget::remove_unrecorded`] for `<destination>/<batch id>` as one path.
    pub async fn remove_unrecorded_under(
        &self,
        batch: &str,
        keep: &HashSet<String>,
    ) -> Result<u64, String> {
        let batch = self.key_of(batch)?;
        let listed: Vec<_> = self
            .store
            .list(Some(&batch))
            .try_collect()
            .await
            .map_err(|error| format!("listing the store failed: {}", sentence(&error)))?;
        let head = format!("{batch}/");
        let mut removed = 0;
        for meta in listed {
            let location = meta.location.as_ref();
            let relative = location.strip_prefix(&head).unwrap_or(location);
            if !keep.contains(relative) {
                self.remove(&meta.location).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Reads the partial file in parts, hashing what it sends.
async fn send_parts(
    upload: &mut dyn object_store::MultipartUpload,
    partial: &LocalPath,
) -> Result<(u64, [u8; 32]), String> {
    let mut file = tokio::fs::File::open(partial)
        .await
        .map_err(|error| format!("reading the verified file failed: {error}"))?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut total = 0u64;
    let mut parts = 0;
    loop {
        let mut buffer = vec![0u8; PART_BYTES];
        let mut filled = 0;
        while filled < PART_BYTES {
            let read = file
                .read(&mut buffer[filled..])
                .await
                .map_err(|error| format!("reading the verified file failed: {error}"))?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        buffer.truncate(filled);
        // An empty file is one empty part.
        if filled == 0 && parts > 0 {
            break;
        }
        context.update(&buffer);
        total += filled as u64;
        parts += 1;
        upload
            .put_part(PutPayload::from(bytes::Bytes::from(buffer)))
            .await
            .map_err(|error| format!("uploading a part failed: {}", sentence(&error)))?;
        if filled < PART_BYTES {
            break;
        }
    }
    let mut sha = [0u8; 32];
    sha.copy_from_slice(context.finish().as_ref());
    Ok((total, sha))
}

/// An object store error as a sentence: its kind and the store's message, which names keys and
/// status codes, never credentials (the signature is computed locally and never sent back).
fn sentence(error: &object_store::Error) -> String {
    let text = error.to_string();
    text.chars().take(400).collect()
}
