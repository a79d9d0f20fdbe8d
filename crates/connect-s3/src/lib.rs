//! The S3 side of sample ingestion: list a user's sample files and fetch them with the AWS key
//! stored in the vault. Implements [`keyledger_connect::Source`].
//!
//! - [`S3Source::new`] builds an `aws-sdk-s3` client from exactly the stored key (no
//!   environment variables, profiles or instance metadata are consulted).
//! - [`Source::check_access`] is "save and test" (ListBuckets);
//!   [`S3Source::check_bucket_access`] tests one bucket, for keys that may not list buckets.
//! - [`S3Source::probe_identity`] and [`S3Source::probe_bucket`] are the least-privilege test
//!   (`probe`): each capability an ingestion needs, reported separately in AWS's words.
//! - [`S3Source::assuming_role`] builds one that signs with sessions of an IAM role instead
//!   (`role`: AssumeRole with the platform's key, an external ID and a session policy; assumed
//!   again before the session ends and once on `ExpiredToken`).
//! - [`Source::list`] selects objects by bucket, prefix and a regex over the full key.
//! - [`Source::fetch`] downloads one object into a partial file with parallel ranged GETs
//!   pinned to the listed ETag, bounded memory, retries, resume, and verification (the size,
//!   and the strongest check the object has: a full-object or composite `x-amz-checksum-*`,
//!   else the ETag's MD5 for a single-part upload), and returns its SHA-256. The caller renames
//!   the partial file into place.
//!
//! Files: `client` (the SDK client, retries, "save and test"), `probe` (the least-privilege
//! test), `role` (AssumeRole and the session's refresh), `list`, `fetch` (one folder: the transfer, its checks and hashing), `error`, `source`
//! (the [`Source`] implementation).
//!
//! Architecture invariants: no secret reaches an error, a log line or a `Debug` output; the
//! connector never creates the final file, only the partial file and its resume record
//! (`<partial>.parts`).

mod client;
mod error;
mod fetch;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod list;
mod probe;
mod role;
mod source;

pub use client::{AccessCheck, AwsCredentials, S3Options, S3Source};
pub use error::{S3Error, Verification};
pub use keyledger_connect::{PartialFile, Progress, Source, Unreachable};
pub use probe::{Probe, ProbeFailure, Refusal};
pub use role::{
    AssumeRoleSettings, AssumedSession, OnAssumed, SessionIssuer, assume_role_once,
    read_only_session_policy, session_name,
};
pub use tokio_util::sync::CancellationToken;

/// Where a listed object lives beyond its key (the path), size and ETag (the version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub last_modified_ms: Option<i64>,
}

/// One object as listed: `path` is the key, `version` the ETag without quotes.
pub type RemoteFile = keyledger_connect::RemoteFile<S3Location>;

/// A fetched and verified object; `verified` lists what was checked, `Size` first.
pub type FetchedFile = keyledger_connect::FetchedFile<Vec<Verification>>;

/// What a listing selects: the objects of bucket `container` under key prefix `within` whose
/// full key matches `pattern` (unanchored: write `^…$` to match whole keys).
pub type S3Selection = keyledger_connect::Selection<regex::Regex>;
