//! List and fetch files from DNAnexus projects with a user's stored DNAnexus API token.
//! Implements [`keyledger_connect::Source`].
//!
//! - [`Source::check_access`] checks a token ("save and test"): the user it belongs to;
//!   [`DnanexusSource::project_access`] its access level on a project (`probe`).
//! - [`Source::list`] finds the closed, visible files under a project folder whose path
//!   *relative to that folder* (for example `sub/x.csv` under `/reads`) matches a regex.
//! - [`Source::fetch`] downloads one file into a partial file with parallel ranged GETs,
//!   verifies every part's MD5 (many parts at once, in SIMD lanes) and the total size, computes
//!   the SHA-256 of the content, and can resume after an interruption.
//!
//! Files: `client` (the API client and its retries), `list`, `fetch` (one folder: the
//! transfer, ranges, download URLs, resume), `verify` (batched part MD5s), `probe` (access
//! level), `error`, `source` (the [`Source`] implementation).
//!
//! Architecture invariants:
//! - The token is sent only to API calls (`POST <api_url>/…`), never to download URLs, and
//!   appears in no error, log line or `Debug` output.
//! - Memory stays bounded whatever the file size: data streams to disk at its offset; the
//!   SHA-256 hashes the bytes in flight or reads them back from the page cache, part MD5s are
//!   read back from the page cache once a part is complete.
//! - Retries follow dxpy: 429 and 5xx (honouring `Retry-After`, capped by
//!   [`DnanexusOptions::max_backoff`]), connection errors and truncated bodies are retried; other
//!   4xx answers are not.

mod client;
mod error;
mod fetch;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod list;
mod probe;
mod source;
mod verify;

use std::time::Duration;

pub use error::DnanexusError;
pub use keyledger_connect::{PartialFile, Progress, Source, Unreachable};
pub use probe::ProjectAccess;
pub use source::DnanexusSource;

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

/// Where a listed file lives beyond its path (`/folder/name`), size and id (the version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnanexusLocation {
    pub project: String,
    /// Absolute folder, e.g. `/reads/sub`.
    pub folder: String,
    pub name: String,
    /// Parts in order (index from 1); their sizes add up to the file's size.
    pub parts: Vec<RemotePart>,
}

/// A closed file found by a listing: `path` is `/folder/name`, `version` the file id.
pub type RemoteFile = keyledger_connect::RemoteFile<DnanexusLocation>;

/// A listed file from its parts: the path is `folder/name` (`/reads/sub/x.csv`).
pub fn remote_file(
    project: String,
    id: String,
    folder: String,
    name: String,
    size: u64,
    parts: Vec<RemotePart>,
) -> RemoteFile {
    let path = if folder == "/" {
        format!("/{name}")
    } else {
        format!("{folder}/{name}")
    };
    RemoteFile {
        path,
        size,
        version: id,
        location: DnanexusLocation {
            project,
            folder,
            name,
            parts,
        },
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePart {
    pub index: u32,
    pub size: u64,
    /// Lowercase hex MD5 of the part, when the platform has one.
    pub md5: Option<String>,
}

/// A fetched and verified file; `verified` counts the parts whose MD5 matched (parts without
/// an MD5 are size-checked only).
pub type FetchedFile = keyledger_connect::FetchedFile<usize>;

/// What a listing selects: the closed, visible files under folder `within` (recursively) of
/// project `container` (an id such as `project-…` or an exact project name) whose path relative
/// to that folder matches `pattern`.
pub type DnanexusSelection = keyledger_connect::Selection<regex::Regex>;
