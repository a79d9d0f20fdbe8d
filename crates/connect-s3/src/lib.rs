//! The S3 side of sample ingestion: list a user's sample files and fetch them with the AWS key
//! stored in the vault.
//!
//! - [`S3Source::new`] builds an `aws-sdk-s3` client from exactly the stored key (no
//!   environment variables, profiles or instance metadata are consulted).
//! - [`S3Source::check_access`] is "save and test".
//! - [`S3Source::list`] selects objects by bucket, prefix and a regex over the full key.
//! - [`S3Source::fetch`] downloads one object into a partial file with parallel ranged GETs
//!   pinned to the listed ETag, bounded memory, retries, resume, and verification (the size,
//!   and the strongest check the object has: a full-object or composite `x-amz-checksum-*`,
//!   else the ETag's MD5 for a single-part upload), and returns its SHA-256. The caller renames
//!   the partial file into place.
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

pub use client::{AccessCheck, AwsCredentials, S3Options, S3Source};
pub use error::{S3Error, Unreachable, Verification};
pub use fetch::{FetchedObject, discard_partial, resume_record_path};
pub use list::RemoteObject;
pub use tokio_util::sync::CancellationToken;
