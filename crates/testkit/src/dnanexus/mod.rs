//! A DNAnexus API emulator: a real HTTP server on 127.0.0.1 that speaks the subset of the
//! DNAnexus platform API used to list and download files (`../shared/reference/dnanexus-api.md`
//! is the protocol fact sheet it follows), good enough for the official `dx` client and for the
//! keyledger connector.
//!
//! What it models: users with bearer tokens (expiring, revocable), projects with members and
//! folders, and closed files split into parts (index from 1, each with a size and an MD5). File
//! bytes live on disk (a private temporary folder, or the caller's folder for [`Seed::from_dir`])
//! and are streamed from disk in 512 KiB reads, so a 1 GiB file is never held in memory.
//!
//! Routes: `/system/whoami`, `/system/greet`, `/system/findProjects`, `/system/findDataObjects`,
//! `/system/comeBackLater`, `/user-…/describe`, `/project-…/describe`, `/project-…/listFolder`,
//! `/file-…/describe`, `/file-…/download`, and `GET`/`HEAD` of download URLs (under
//! [`DATA_PATH_PREFIX`]) with single byte ranges.
//!
//! Every API response, errors included, is `Content-Type: application/json` with an exact
//! `Content-Length`, written in one piece on a `TCP_NODELAY` socket, never compressed.
//!
//! Tests drive failures through [`EmulatorControl`]: finite runs of error statuses, dropped
//! connections and truncated data bodies ([`FaultRun`]), wrong part MD5s, token expiry and
//! revocation, and expired download URLs. Every request is recorded ([`RequestRecord`]).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
//! let mut seed = Seed::new();
//! let alice = seed.add_user("alice");
//! seed.add_token(&alice, "token-of-alice");
//! let project = seed.add_project("Reads", &alice);
//! let file = seed.add_file(&project, "/reads/a.fastq", Content::Bytes(b"ACGT".to_vec()), 1 << 20);
//! let emulator = DnanexusEmulator::start(seed).await?;
//! println!("{} serves {file}", emulator.endpoint());
//! # Ok(()) }
//! ```

mod api;
mod content;
mod describe;
mod error;
mod http;
mod input;
mod seed;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use content::generated_bytes;
pub use seed::{Content, DEFAULT_PART_SIZE, FROM_DIR_USER, Seed};
pub use state::Level;

use state::Shared;

/// Download URLs are served under this path prefix; use it as a [`FaultRun::path_contains`]
/// filter to target data GETs only.
pub const DATA_PATH_PREFIX: &str = "/F/";

/// A running emulator. Dropping it stops the server and removes its temporary files.
#[derive(Debug)]
pub struct DnanexusEmulator {
    address: SocketAddr,
    control: EmulatorControl,
    server: JoinHandle<()>,
    // Holds generated file content; removed on drop.
    _storage: tempfile::TempDir,
}

impl DnanexusEmulator {
    /// Materialises `seed` (generated content is written to a private temporary folder and every
    /// part's MD5 computed) and serves it on 127.0.0.1 on a free port.
    pub async fn start(seed: Seed) -> anyhow::Result<Self> {
        Self::start_on(seed, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`DnanexusEmulator::start`] on a chosen address (the standalone binary uses it).
    pub async fn start_on(seed: Seed, address: SocketAddr) -> anyhow::Result<Self> {
        let storage = tempfile::Builder::new()
            .prefix("dnanexus-emulator-")
            .tempdir()?;
        let storage_path = storage.path().to_path_buf();
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let model = tokio::task::spawn_blocking(move || seed.materialize(&storage_path)).await??;
        let shared = Arc::new(Shared::new(model, address));
        let server = tokio::spawn(http::serve(listener, shared.clone()));
        Ok(Self {
            address,
            control: EmulatorControl { shared },
            server,
            _storage: storage,
        })
    }

    /// `http://127.0.0.1:<port>`, the API server URL (no trailing slash).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn host(&self) -> String {
        self.address.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The handle tests use to inject faults and inspect what the server saw.
    pub fn control(&self) -> EmulatorControl {
        self.control.clone()
    }
}

impl Drop for DnanexusEmulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What a fault does to a request it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a JSON error of the matching DNAnexus type (503
    /// ServiceUnavailable, 429 RateLimitConditional, 500 InternalError, 403 PermissionDenied, …),
    /// with `Retry-After: <seconds>` when given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer with this status and exactly this error type and message (for example a message
    /// that echoes a secret, to check a client does not repeat it).
    Error {
        status: u16,
        kind: String,
        message: String,
    },
    /// Close the connection without answering.
    Disconnect,
    /// On data GETs only: advertise the full `Content-Length` but close the connection after
    /// sending this many body bytes.
    TruncateBody { after_bytes: u64 },
}

/// A finite run of one fault: it applies to the next `times` requests whose path contains
/// `path_contains` (every request when `None`). Runs are consumed in the order injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRun {
    pub fault: Fault,
    pub times: u32,
    pub path_contains: Option<String>,
}

impl FaultRun {
    pub fn new(fault: Fault, times: u32) -> Self {
        Self {
            fault,
            times,
            path_contains: None,
        }
    }

    /// Restricts the run to requests whose path contains `fragment` (for example
    /// `"/download"`, `"findDataObjects"` or [`DATA_PATH_PREFIX`]).
    pub fn on_path(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.to_owned());
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The `Authorization` header, verbatim, when one was sent.
    pub authorization: Option<String>,
    /// The `Range` header, verbatim, when one was sent.
    pub range: Option<String>,
    /// The status answered; 0 when the connection was dropped without an answer.
    pub status: u16,
    /// Whether this was a GET/HEAD of a download URL.
    pub data: bool,
}

impl std::fmt::Debug for RequestRecord {
    // The Authorization header holds a token: show only whether one was present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRecord")
            .field("method", &self.method)
            .field("path", &self.path)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .field("status", &self.status)
            .field("data", &self.data)
            .finish()
    }
}

/// A file as the emulator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatedFile {
    pub id: String,
    pub project: String,
    pub folder: String,
    pub name: String,
    pub size: u64,
    /// `(size, md5 hex)` of parts 1..=n, as computed from the bytes on disk.
    pub parts: Vec<(u64, String)>,
    /// Where the bytes live.
    pub disk_path: PathBuf,
}

/// Shared handle on a running emulator's state. Cheap to clone.
#[derive(Clone)]
pub struct EmulatorControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmulatorControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorControl")
            .field("address", &self.shared.address)
            .finish()
    }
}

impl EmulatorControl {
    /// Queues a finite fault run.
    pub fn inject(&self, run: FaultRun) {
        self.shared.with_state(|state| state.faults.push(run));
    }

    /// Drops every queued fault run.
    pub fn clear_faults(&self) {
        self.shared.with_state(|state| state.faults.clear());
    }

    /// How many injected fault applications are still pending.
    pub fn pending_faults(&self) -> u32 {
        self.shared
            .with_state(|state| state.faults.iter().map(|run| run.times).sum())
    }

    /// Adds a token for an existing user; fails for an unknown user.
    pub fn add_token(&self, user: &str, token: &str) -> anyhow::Result<()> {
        self.shared
            .with_state(|state| state.add_token(user, token, None))
    }

    /// Makes a token unknown to the server (as `dx logout` does).
    pub fn revoke_token(&self, token: &str) {
        self.shared.with_state(|state| {
            state.tokens.remove(token);
        });
    }

    /// Makes a token expire now.
    pub fn expire_token(&self, token: &str) {
        self.set_token_expiry(token, Some(SystemTime::now() - Duration::from_secs(1)));
    }

    /// Sets (or clears) a token's expiry time.
    pub fn set_token_expiry(&self, token: &str, expires: Option<SystemTime>) {
        self.shared.with_state(|state| {
            if let Some(entry) = state.tokens.get_mut(token) {
                entry.expires_ms = expires.map(state::millis);
            }
        });
    }

    /// Makes `describe` report a wrong MD5 for one part of a file (parts count from 1).
    pub fn corrupt_part_md5(&self, file_id: &str, part: u32) -> anyhow::Result<()> {
        self.shared
            .with_state(|state| state.corrupt_part_md5(file_id, part))
    }

    /// Makes every download URL handed out so far expire (data GETs then get 403).
    pub fn expire_download_urls(&self) {
        self.shared.with_state(|state| {
            for download in state.downloads.values_mut() {
                download.expires_ms = 0;
            }
        });
    }

    /// Every request seen so far (the latest 100,000 at most), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.with_state(|state| state.requests.clone())
    }

    pub fn clear_requests(&self) {
        self.shared.with_state(|state| state.requests.clear());
    }

    /// The `Authorization` headers sent on data GETs (a correct client sends none).
    pub fn data_authorization_headers(&self) -> Vec<String> {
        self.shared.with_state(|state| {
            state
                .requests
                .iter()
                .filter(|record| record.data)
                .filter_map(|record| record.authorization.clone())
                .collect()
        })
    }

    /// How many `/file-…/download` calls were answered with a URL.
    pub fn download_urls_issued(&self) -> usize {
        self.shared.with_state(|state| state.downloads.len())
    }

    /// The id of the project with this name, if any.
    pub fn project_id(&self, name: &str) -> Option<String> {
        self.shared.with_state(|state| {
            state
                .projects
                .iter()
                .find(|project| project.name == name)
                .map(|project| project.id.clone())
        })
    }

    /// A file by id.
    pub fn file(&self, file_id: &str) -> Option<EmulatedFile> {
        self.shared
            .with_state(|state| state.files.get(file_id).map(|file| file.to_public()))
    }

    /// Every file of a project, ordered by path.
    pub fn files(&self, project: &str) -> Vec<EmulatedFile> {
        self.shared.with_state(|state| {
            let mut files: Vec<EmulatedFile> = state
                .files
                .values()
                .filter(|file| file.project == project)
                .map(|file| file.to_public())
                .collect();
            files.sort_by(|a, b| (&a.folder, &a.name).cmp(&(&b.folder, &b.name)));
            files
        })
    }
}
