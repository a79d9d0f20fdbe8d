//! Ingestion jobs: select sample files at a provider with a user's stored external key, fetch
//! them with bounded parallelism, verify them, store them, and record every step as an event.
//!
//! - [`Ingestor::start`] checks the request (selection, destination, permission, usable key),
//!   records `IngestionRequested` and runs the job on a tokio task.
//! - A job leases the credential (in memory, for the job only), records `ExternalKeyUsed`,
//!   lists (`IngestionListed`), fetches every file (`IngestionFileFetched` / `…FileFailed`) and
//!   ends with `IngestionCompleted`, `IngestionFailed` or `IngestionCancelled`.
//! - Providers sit behind [`SampleSource`], an enum of the connectors (each implements
//!   `keyledger_connect::Source`): [`s3::S3SampleSource`] and [`dnanexus::DnanexusSampleSource`].
//! - [`probe`] is the least-privilege test of a key: what an ingestion of one selection needs,
//!   capability by capability.
//! - Files land in the sample store (see `store`): `<store_root>/<destination>/<batch id>/<path>`,
//!   visible only once verified.
//! - [`RemoteJob`] runs a job in a worker process for a vault elsewhere, reporting through a
//!   [`JobHost`]; [`wire`] is the JSON of the vault's worker routes (decision 0025). With
//!   [`Workers::External`] this process only records requests: workers run them.
//!
//! Architecture invariants:
//! - The log is the truth: a file is in the store if and only if an `IngestionFileFetched`
//!   event names it (a crash between the rename and the event is repaired by
//!   [`Ingestor::recover`]).
//! - A job stops as soon as its key stops being active (deleted or expired) or the job is
//!   cancelled, and leaves no partial file behind.
//! - No secret reaches an event, an error, a log line, a view or a `Debug` output.

pub mod dnanexus;
mod ingestor;
mod job;
mod live;
mod preview;
mod probe;
mod recorder;
mod remote;
mod remote_job;
mod role;
pub mod s3;
mod selection;
mod shared;
mod source;
mod sources;
mod store;
mod sync;
mod view;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

use keyledger_domain::{DomainError, Selection, UserId, ValidationError};
use keyledger_vault::VaultError;

pub use ingestor::{Ingestor, RecoveryReport};
pub use keyledger_connect_dnanexus::DnanexusOptions;
pub use keyledger_connect_s3::{AwsCredentials, S3Options, SessionIssuer};
pub use preview::{DEFAULT_PREVIEW_PAGE, MAX_PREVIEW_PAGE, Preview, PreviewFile, PreviewRequest};
pub use probe::{CapabilityReport, Probed, check_probe_scope, probe};
pub use remote::{Fetched, Listed, Progress, RemoteFile, SourceError, SourceErrorKind};
pub use remote_job::{JobHost, Refused, RemoteJob, RemoteOutcome, RemoteTally};
pub use role::{record_role_assumed, session_for_job};
pub use source::{RoleUse, SampleSource, source_for, source_for_credential, source_for_use};
pub use sources::{SaveSource, ScheduledRuns};
pub use store::object::ObjectTarget;
pub use store::{
    PARTIAL_DIR, PathClaims, Store, destination_belongs_to, sanitize_remote_path,
    validate_destination,
};
pub use sync::{ListedVersion, StartOptions, unchanged};
pub use tokio_util::sync::CancellationToken;
pub use view::{FileState, FileView, IngestionView, JobState};

/// The reason recorded for jobs a crash or restart interrupted.
pub const INTERRUPTED_REASON: &str = "interrupted by a restart";

/// How ingestion runs. `Default` is the embedded default.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Root of the sample store (default `./data/samples`); with `object_store`, only the
    /// local scratch folder for partial downloads.
    pub store_root: PathBuf,
    /// An `s3://bucket/prefix` sample store (decision 0029); `None`: files under `store_root`.
    pub object_store: Option<std::sync::Arc<ObjectTarget>>,
    /// How to reach S3: an endpoint override for S3-compatible stores, part size, retries.
    pub s3: S3Options,
    /// How to reach DNAnexus (`api_url`), part concurrency, retries.
    pub dnanexus: DnanexusOptions,
    /// Large files fetched at once per job (each already uses several ranged GETs).
    pub files_in_parallel: usize,
    /// Small files fetched at once per job: for many small files, latency is what counts.
    pub small_files_in_parallel: usize,
    /// Files up to this size count as small.
    pub small_file_bytes: u64,
    /// Jobs running at once in this process; more wait in state `queued`.
    pub max_jobs: usize,
    /// Attempts per file for transient failures that outlast the connector's own retries (a
    /// later attempt resumes the partial file).
    pub file_attempts: u32,
    /// How often a running job re-checks its key's status even when the log is quiet (expiry
    /// happens by the clock, without an event).
    pub key_check_interval: Duration,
    /// The STS endpoint the least-privilege test asks `GetCallerIdentity`, and where roles
    /// are assumed; `None`: the key's regional endpoint, `https://sts.<region>.amazonaws.com`.
    pub sts_endpoint: Option<String>,
    /// Who runs the jobs: this process, or worker processes over the work queue.
    pub workers: Workers,
    /// The platform's own AWS key, which assumes the roles of `role` keys; `None`: role keys
    /// can be stored but not used (decision 0023).
    pub aws_role: Option<AwsRolePlatform>,
    /// The most entries of a provider's listing one preview looks at: bounds its time and
    /// memory in a bucket of millions of objects (about 20 ListObjectsV2 pages by default).
    pub preview_max_scanned: u64,
    /// How often the scheduler looks for saved sources whose occurrence is due (decision
    /// 0031): a run starts at most this long after its time.
    pub schedule_tick: Duration,
}

/// Who runs ingestion jobs (`[ingest] workers`, decision 0025).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Workers {
    /// This process runs every job (the embedded default: no NATS needed).
    #[default]
    Embedded,
    /// `keyledger worker` processes run them: this process only records requests, and its
    /// dispatcher publishes them to the work queue.
    External,
}

/// How keyledger assumes users' roles: with its own long-lived key (from a credentials file
/// the operator names, never the environment), for sessions of `session_duration`.
#[derive(Debug, Clone)]
pub struct AwsRolePlatform {
    pub credentials: keyledger_connect_s3::AwsCredentials,
    /// The principal users' trust policies must name (`arn:aws:iam::<account>:user/…` or
    /// `…:role/…`), shown with the external ID; `None`: the setup says to ask the operator.
    pub principal_arn: Option<String>,
    /// Each session's length (AWS: 900 s to the role's maximum, 1 h by default).
    pub session_duration: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            store_root: PathBuf::from("data/samples"),
            object_store: None,
            s3: S3Options::default(),
            dnanexus: DnanexusOptions::default(),
            files_in_parallel: 8,
            small_files_in_parallel: 32,
            small_file_bytes: 16 * 1024 * 1024,
            max_jobs: 4,
            file_attempts: 3,
            key_check_interval: Duration::from_millis(250),
            sts_endpoint: None,
            workers: Workers::Embedded,
            aws_role: None,
            preview_max_scanned: 20_000,
            schedule_tick: Duration::from_secs(30),
        }
    }
}

/// What a user asks to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRequest {
    pub selection: Selection,
    /// Folder under the store root; the owner's user id when `None`.
    pub destination: Option<String>,
}

/// Why a request was refused or a call failed. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The selection is malformed (bad regex, bucket name, folder): a 400 naming the field.
    #[error("{0}")]
    InvalidSelection(ValidationError),
    /// The destination folder is not a safe relative path: a 400.
    #[error("{0}")]
    InvalidDestination(String),
    /// The destination is outside the owner's own area of the store: a 403.
    #[error(
        "destination: you may only import into your own folder `{owner}` or a folder under it (such as `{owner}/run-1`)"
    )]
    ForeignDestination { owner: UserId },
    /// The domain refused: no permission, no usable external key, unknown or finished job.
    #[error(transparent)]
    Refused(DomainError),
    #[error(transparent)]
    Vault(VaultError),
    /// The provider refused or failed a request made for the caller (a preview's listing).
    #[error("{0}")]
    Source(SourceError),
    #[error("the sample store at {path} cannot be used: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<VaultError> for IngestError {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::Domain(domain) => IngestError::Refused(domain),
            other => IngestError::Vault(other),
        }
    }
}

impl From<DomainError> for IngestError {
    fn from(error: DomainError) -> Self {
        IngestError::Refused(error)
    }
}
