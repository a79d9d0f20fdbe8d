//! List and fetch files from DNAnexus projects with a user's stored DNAnexus API token.
//!
//! - [`DnanexusSource::whoami`] checks a token ("save and test").
//! - [`DnanexusSource::list`] finds the closed, visible files under a project folder whose path
//!   *relative to that folder* (for example `sub/x.csv` under `/reads`) matches a regex.
//! - [`DnanexusSource::fetch`] downloads one file into a partial file with parallel ranged GETs,
//!   verifies every part's MD5 (many parts at once, in SIMD lanes) and the total size, computes
//!   the SHA-256 of the content, and can resume after an interruption.
//!
//! Architecture invariants:
//! - The token is sent only to API calls (`POST <api_url>/…`), never to download URLs, and
//!   appears in no error, log line or `Debug` output.
//! - Memory stays bounded whatever the file size: data streams to disk at its offset; the
//!   SHA-256 hashes the bytes in flight or reads them back from the page cache, part MD5s are
//!   read back from the page cache once a part is complete.
//! - Retries follow dxpy: 429 and 5xx (honouring an integer `Retry-After`, capped by
//!   [`DnanexusOptions::max_backoff`]), connection errors and truncated bodies are retried; other
//!   4xx answers are not.

mod client;
mod error;
mod fetch;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod list;
mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use error::{DnanexusError, Unreachable};

use client::ApiClient;
use verify::PartVerifier;

/// A DNAnexus API token. `Debug` never shows it.
#[derive(Clone)]
pub struct DnanexusToken(pub String);

impl std::fmt::Debug for DnanexusToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to reach DNAnexus and how hard to push.
#[derive(Clone, Debug)]
pub struct DnanexusOptions {
    /// API server, default `https://api.dnanexus.com`.
    pub api_url: String,
    /// Parallel ranged GETs per file, default 8.
    pub concurrency: usize,
    /// Largest ranged GET, default 8 MiB; ranges never cross part boundaries. The ranges in
    /// flight (`concurrency` × `chunk_size`) are the window the SHA-256 trails by.
    pub chunk_size: u64,
    /// Attempts per request (and per range without progress) before giving up, default 7.
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt, default 1 s.
    pub initial_backoff: Duration,
    /// Longest delay between attempts, `Retry-After` included, default 60 s.
    pub max_backoff: Duration,
    /// `limit` of each `findDataObjects` page, 1..=1000, default 1000.
    pub list_page_size: u32,
}

impl Default for DnanexusOptions {
    fn default() -> Self {
        Self {
            api_url: "https://api.dnanexus.com".to_owned(),
            concurrency: 8,
            chunk_size: 8 << 20,
            max_attempts: 7,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            list_page_size: 1000,
        }
    }
}

/// A closed file found by [`DnanexusSource::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    pub project: String,
    pub id: String,
    /// Absolute folder, e.g. `/reads/sub`.
    pub folder: String,
    pub name: String,
    pub size: u64,
    /// Parts in order (index from 1); their sizes add up to `size`.
    pub parts: Vec<RemotePart>,
}

impl RemoteFile {
    /// `folder/name`, e.g. `/reads/sub/x.csv`.
    pub fn path(&self) -> String {
        if self.folder == "/" {
            format!("/{}", self.name)
        } else {
            format!("{}/{}", self.folder, self.name)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePart {
    pub index: u32,
    pub size: u64,
    /// Lowercase hex MD5 of the part, when the platform has one.
    pub md5: Option<String>,
}

/// What [`DnanexusSource::fetch`] verified and wrote.
#[derive(Clone, Debug)]
pub struct FetchedFile {
    pub size: u64,
    pub sha256: [u8; 32],
    /// Parts whose MD5 matched (parts without an MD5 are size-checked only).
    pub parts_verified: usize,
}

/// One token's view of DNAnexus. Cheap to clone; clones share connections and the part
/// verifier (parts of files fetched at the same time are checked together).
#[derive(Clone, Debug)]
pub struct DnanexusSource {
    api: Arc<ApiClient>,
    verifier: Arc<PartVerifier>,
    options: DnanexusOptions,
}

impl DnanexusSource {
    pub fn new(token: &DnanexusToken, options: &DnanexusOptions) -> Result<Self, DnanexusError> {
        if options.concurrency == 0 {
            return Err(DnanexusError::InvalidInput(
                "concurrency must be at least 1".into(),
            ));
        }
        if options.chunk_size < 64 << 10 {
            return Err(DnanexusError::InvalidInput(
                "chunk_size must be at least 64 KiB".into(),
            ));
        }
        if options.max_attempts == 0 {
            return Err(DnanexusError::InvalidInput(
                "max_attempts must be at least 1".into(),
            ));
        }
        if !(1..=1000).contains(&options.list_page_size) {
            return Err(DnanexusError::InvalidInput(
                "list_page_size must be from 1 to 1000".into(),
            ));
        }
        let api = ApiClient::new(token, options)?;
        Ok(Self {
            api: Arc::new(api),
            verifier: Arc::new(PartVerifier::new()),
            options: options.clone(),
        })
    }

    /// The user id (`user-…`) the token belongs to; fails with
    /// [`DnanexusError::TokenRejected`] for an expired or revoked token.
    pub async fn whoami(&self) -> Result<String, DnanexusError> {
        let output = self
            .api
            .call("/system/whoami", &serde_json::json!({}))
            .await?;
        output
            .get("id")
            .and_then(|id| id.as_str())
            .map(str::to_owned)
            .ok_or_else(|| DnanexusError::invalid_response("whoami returned no id"))
    }

    /// Closed, visible files under `folder` (recursively) of `project` (an id such as
    /// `project-…` or an exact project name) whose path relative to `folder` matches `pattern`.
    ///
    /// The relative path has no leading slash: under `/reads`, file `/reads/sub/x.csv` is
    /// matched as `sub/x.csv` and `/reads/y.csv` as `y.csv`. The pattern is unanchored (as
    /// [`regex::Regex::is_match`]): write `^…$` to match whole paths. Results are ordered by
    /// folder, then name. A folder that does not exist yields no files.
    pub async fn list(
        &self,
        project: &str,
        folder: &str,
        pattern: &regex::Regex,
    ) -> Result<Vec<RemoteFile>, DnanexusError> {
        list::list(
            &self.api,
            self.options.list_page_size,
            project,
            folder,
            pattern,
        )
        .await
    }

    /// Downloads `file` into `partial_path` and verifies it. `progress` is called with the
    /// number of bytes of the file now on disk and verified or in flight (monotonic, ending at
    /// `file.size`).
    ///
    /// Resume: for a multi-part file a sidecar `<partial_path>.parts` lists the parts written
    /// in full; a later call for the same file re-checks those parts' MD5 on disk and fetches
    /// only the rest. On success the data is fsynced and the sidecar removed; the caller
    /// renames the partial file into place. On a verification failure the partial file and
    /// sidecar are deleted. After any other error or cancellation both are kept so a retry can
    /// resume; a caller abandoning the file deletes them.
    pub async fn fetch(
        &self,
        file: &RemoteFile,
        partial_path: &Path,
        progress: &(dyn Fn(u64) + Sync),
        cancel: &CancellationToken,
    ) -> Result<FetchedFile, DnanexusError> {
        fetch::fetch(
            &self.api,
            &self.verifier,
            &self.options,
            file,
            partial_path,
            progress,
            cancel,
        )
        .await
    }
}
