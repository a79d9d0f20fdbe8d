//! The service core: opens the log, replays it into the projection, applies commands
//! (decide → append → apply), answers queries, leases external credentials, and runs the expiry
//! sweeper and usage aggregation.
//!
//! Architecture invariants:
//! - Nothing changes state except appending events; the projection is only ever written by the
//!   log's commit hook, in sequence order, before the append is acknowledged (read-your-writes).
//! - Plaintext secrets exist only in memory, inside `SecretString`/`SecretBytes`.
//! - Time comes from the injected [`Clock`].

mod auth;
mod background;
mod clock;
mod external;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod governance;
mod inventory;
mod keys;
mod leaks;
mod leases;
mod master_key;
mod names;
mod per_thread;
mod projection;
mod rotation;
mod snapshot;
mod telemetry;
mod workers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics::Key;
use parking_lot::RwLock;

use keyledger_crypto::{CryptoError, Keyring, MasterKey};
use keyledger_domain::{
    Action, Actor, Command, DomainError, DurationPolicy, Event, State, Timestamp, UserId,
};
use keyledger_log::{
    AppendBatch, AppendError, Durability, EventLog, ExpectedVersion, LogConfig, LogError, LogView,
    NewEvent, StreamGuard,
};

pub use auth::{
    AuthFailure, Principal, SESSION_PREFIX, SessionToken, check_api_key, check_api_key_from,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use external::{AwsSessionToken, ExternalCredential, ExternalKeyView, Lease, NewCredential};
pub use inventory::{
    InventoryItem, InventoryKind, InventoryPage, InventoryQuery, InventorySort, InventoryStatus,
};
pub use keyledger_log::private_files;
pub use keys::{ApiKeyView, CreatedApiKey};
pub use leaks::{LeakLabel, LeakReport, LeakVerdict};
pub use leases::DataKeyHold;
pub use master_key::{
    MasterKeyOrigin, load_or_create_master_key, read_master_key, write_master_key,
};
/// The metrics vocabulary (`Key`, `Label`, `Counter`, …) that [`Telemetry`] hands out.
pub use metrics;
pub use per_thread::PerThread;
pub use projection::{
    EVENT_FORMAT, EncodeEventError, Projection, decode_event, encode_event, upcast,
};
pub use rotation::{
    PEPPER_ID, RewrapReport, RotationOutcome, VAULT_SECRET_PREFIX, entries_opened_by,
    is_vault_secret, pending_key_path, rewrap_sealed_material, rotate_master_key_offline,
    rotation_request_id, sealed_key,
};
pub use snapshot::{
    AuditConfig, BACKUP_MANIFEST, BackupManifest, PUBLIC_KEY_META, SNAPSHOT_FILE, StartupReport,
    backup_log, published_public_key, read_backup_manifest,
};
pub use telemetry::{ComponentHealth, LATENCY_BUCKETS, Telemetry};
pub use workers::JobGrant;

/// How the vault is set up. `Default` is the embedded default under `./data`.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub duration_policy: DurationPolicy,
    /// How often aggregated key usage is recorded (at most one event per key per interval).
    pub usage_flush_interval: Duration,
    /// How often the sweeper looks for keys that have expired.
    pub sweep_interval: Duration,
    /// How long a session token from `POST /v1/auth/login` lives.
    pub session_ttl: Duration,
    /// Days before expiry at which each key's coming expiry is announced (`…KeyExpiring`), once
    /// per key and horizon. Empty: no warnings.
    pub expiry_warning_days: Vec<u32>,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            data_dir: PathBuf::from("data"),
            durability: Durability::Full,
            duration_policy: DurationPolicy::default(),
            usage_flush_interval: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(5),
            session_ttl: Duration::from_secs(3600),
            expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS.to_vec(),
        }
    }
}

/// The default expiry-warning horizons, in days.
pub const DEFAULT_EXPIRY_WARNING_DAYS: [u32; 3] = [30, 7, 1];

impl VaultConfig {
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    Auth(#[from] AuthFailure),
    /// The log refused to open or read (the data directory's lock is `Locked` instead).
    #[error("storage error: {0}")]
    Log(#[from] LogError),
    /// The log refused an append for another reason than a concurrent change.
    #[error("storage error: {0}")]
    Append(#[source] AppendError),
    /// What the log or the projection returned breaks the vault's own invariants (a bug, or a
    /// damaged data directory); `what` says which, without any value from the request.
    #[error("storage error: {what}")]
    Inconsistent { what: &'static str },
    /// bincode refused the projection; its error (Debug text) is the source, not the message.
    #[error("storage error: cannot encode a snapshot")]
    SnapshotEncode(#[source] bincode::error::EncodeError),
    #[error("the request was retried too often against concurrent changes; try again")]
    Contended,
    #[error(
        "this request id was already used for an earlier request (seq {first_seq}); its result cannot be shown twice"
    )]
    DuplicateRequest { first_seq: u64 },
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("configuration: {0}")]
    Config(String),
    /// A file or thread operation failed; `context` says which, on which path.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The new master key file could not replace the old one: the rotation is recorded in the
    /// log but not finished on disk.
    #[error(
        "cannot move {} over {}: {source}; run the rotation again to finish it",
        pending.display(),
        master_key_file.display()
    )]
    RotationNotFinished {
        pending: PathBuf,
        master_key_file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {thread} thread panicked")]
    ThreadPanicked { thread: &'static str },
    #[error("the log is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "the data directory {} is in use by another keyledger process (stop it, or talk to it over HTTP)",
        dir.display()
    )]
    Locked { dir: PathBuf },
    /// Refused before anything was appended.
    #[error("{0}; nothing was written")]
    Encode(#[from] EncodeEventError),
}

impl VaultError {
    /// An I/O failure, with what was being done (`cannot read master key <path>`).
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> VaultError {
        VaultError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The log's storage health as the `event_log` readiness component and two counters.
fn report_storage(telemetry: &Telemetry, health: &keyledger_log::StorageHealth) {
    let detail = match &health.fault {
        Some(fault) => fault.clone(),
        None => "appends are written".to_owned(),
    };
    telemetry.set_component("event_log", health.writable(), detail);
    telemetry.set_counter(
        "keyledger_log_storage_failures_total",
        "",
        "Group commits of the log that failed on storage (disk full, I/O error).",
        health.failures as f64,
    );
    telemetry.set_counter(
        "keyledger_log_storage_recoveries_total",
        "",
        "Recoveries of the log writer from storage failures, without a restart.",
        health.recoveries as f64,
    );
}

/// The outcome of a command: the events it recorded and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub events: Vec<Event>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub at: Timestamp,
}

/// Decisions made again after this many conflicting appends give up with `Contended`.
const EXECUTE_ATTEMPTS: usize = 8;

impl Executed {
    /// A command that decided nothing needed recording.
    fn nothing(at: Timestamp) -> Executed {
        Executed {
            events: Vec::new(),
            first_seq: 0,
            last_seq: 0,
            at,
        }
    }

    /// The outcome of appending `events`; `None` when a concurrent change means deciding again.
    fn settle(
        events: Vec<Event>,
        at: Timestamp,
        appended: Result<keyledger_log::Committed, AppendError>,
    ) -> Option<Result<Executed, VaultError>> {
        match appended {
            Ok(committed) if committed.duplicate => Some(Err(VaultError::DuplicateRequest {
                first_seq: committed.first_seq,
            })),
            Ok(committed) => Some(Ok(Executed {
                events,
                first_seq: committed.first_seq,
                last_seq: committed.last_seq,
                at,
            })),
            Err(AppendError::Conflict { .. }) => None,
            Err(err) => Some(Err(VaultError::Append(err))),
        }
    }
}

/// The vault. Cheap to clone: every clone is the same vault.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("data_dir", &self.inner.config.data_dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: VaultConfig,
    /// The only handle that appends; everything outside the vault gets `log_view`.
    log: EventLog,
    log_view: LogView,
    projection: Arc<RwLock<Projection>>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    usage: background::UsageAggregate,
    leases: leases::LeaseTable,
    telemetry: Arc<Telemetry>,
    audit: snapshot::AuditRuntime,
    /// Held for writing while a user's deactivation is decided and appended, for reading while
    /// a key is created: no key of a user can slip in beside their offboarding.
    offboarding: tokio::sync::RwLock<()>,
    /// Held from decision to append by whoever claims a name (a key, a source) for an owner.
    names: names::NameLocks,
}

impl Vault {
    /// Opens (or creates) the vault in `config.data_dir`, replaying the log into the projection.
    pub fn open(
        config: VaultConfig,
        master: &MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Vault, VaultError> {
        let projection = Arc::new(RwLock::new(Projection::default()));
        let telemetry = Arc::new(Telemetry::default());
        let hook_projection = Arc::clone(&projection);
        // Handles kept by the writer's hook: counting a commit is two atomic adds.
        let appended_events = telemetry.counter(
            Key::from_static_name("keyledger_log_appended_events_total"),
            "Events appended to the log.",
        );
        let group_commits = telemetry.counter(
            Key::from_static_name("keyledger_log_group_commits_total"),
            "Durable group commits of the log.",
        );
        let on_commit = Box::new(move |envelopes: &[keyledger_log::Envelope]| {
            let mut projection = hook_projection.write();
            projection.apply_envelopes(envelopes);
            drop(projection);
            appended_events.increment(envelopes.len() as u64);
            group_commits.increment(1);
        });
        // 0700 whatever the umask; a directory left by an older version loses group and other
        // bits here.
        keyledger_log::private_files::create_dir_all(&config.data_dir)
            .and_then(|()| keyledger_log::private_files::restrict_dir(&config.data_dir))
            .map_err(|err| {
                VaultError::io(
                    format!("cannot create data directory {}", config.data_dir.display()),
                    err,
                )
            })?;
        let mut log_config = LogConfig::new(config.log_dir());
        log_config.durability = config.durability;
        let log = EventLog::open(log_config, on_commit).map_err(|err| match err {
            LogError::Locked { .. } => VaultError::Locked {
                dir: config.data_dir.clone(),
            },
            other => VaultError::from(other),
        })?;
        let storage = log.storage_monitor();
        telemetry.add_collector(move |telemetry| report_storage(telemetry, &storage.health()));
        let startup = {
            let mut projection = projection.write();
            snapshot::restore_projection(&config, &log, master, &mut projection)?
        };
        let audit = snapshot::AuditRuntime::new(&config, startup);
        let wrapping = Keyring::new(master)?;
        external::check_master_key(&log, &wrapping)?;
        // Fixed for the life of the vault (rotation is offline): no lock on the hot path.
        let keyring = Arc::new(rotation::keyring_with_pepper(&log, master, &wrapping)?);
        let vault = Vault {
            inner: Arc::new(Inner {
                config,
                log_view: log.view(),
                log,
                projection,
                keyring,
                clock,
                usage: background::UsageAggregate::default(),
                leases: leases::LeaseTable::default(),
                telemetry,
                audit,
                offboarding: tokio::sync::RwLock::new(()),
                names: names::NameLocks::default(),
            }),
        };
        vault.shred_data_keys_of_deleted_credentials()?;
        vault.destroy_retired_data_keys_at_start()?;
        snapshot::start(&vault)?;
        Ok(vault)
    }

    pub fn config(&self) -> &VaultConfig {
        &self.inner.config
    }

    /// The log, read-only: read, verify, follow. Appends go through [`Vault::execute`] (and so
    /// through `decide`) only.
    pub fn log(&self) -> &LogView {
        &self.inner.log_view
    }

    /// Where components report metrics and readiness.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Why the vault cannot serve correctly, if it cannot (an undecodable event in the log).
    pub fn broken(&self) -> Option<String> {
        self.inner.projection.read().broken.clone()
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Runs `f` against the current state. Keep it short: appends wait while it runs.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let projection = self.inner.projection.read();
        f(&projection.state)
    }

    /// The sequence number of the last event the projection has applied.
    pub fn applied_seq(&self) -> u64 {
        self.inner.projection.read().applied_seq
    }

    fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// Decides and appends a command. Concurrent changes to the same streams are detected by
    /// expected versions; the command is then decided again against the newer state.
    pub async fn execute(
        &self,
        command: Command,
        request_id: Option<[u8; 16]>,
    ) -> Result<Executed, VaultError> {
        self.execute_all(std::slice::from_ref(&command), request_id)
            .await
    }

    /// Decides the commands against the same state and appends all their events in one atomic
    /// append; on a concurrent change, decides them all again. One caller's commands only (the
    /// batch records the first one's actor); see [`Vault::run_all`].
    async fn execute_all(
        &self,
        commands: &[Command],
        request_id: Option<[u8; 16]>,
    ) -> Result<Executed, VaultError> {
        for _ in 0..EXECUTE_ATTEMPTS {
            let now = self.now();
            let (events, batch) = self.prepare(commands, request_id, now)?;
            if events.is_empty() {
                return Ok(Executed::nothing(now));
            }
            let appended = self.inner.log.append(batch).await;
            if let Some(settled) = Executed::settle(events, now, appended) {
                return settled;
            }
        }
        Err(VaultError::Contended)
    }

    /// Like [`Vault::execute`], for callers without an async runtime (CLI tools, tests).
    pub fn execute_blocking(
        &self,
        command: Command,
        request_id: Option<[u8; 16]>,
    ) -> Result<Executed, VaultError> {
        for _ in 0..EXECUTE_ATTEMPTS {
            let now = self.now();
            let (events, batch) = self.prepare(std::slice::from_ref(&command), request_id, now)?;
            if events.is_empty() {
                return Ok(Executed::nothing(now));
            }
            let appended = self.inner.log.append_blocking(batch);
            if let Some(settled) = Executed::settle(events, now, appended) {
                return settled;
            }
        }
        Err(VaultError::Contended)
    }

    fn prepare(
        &self,
        commands: &[Command],
        request_id: Option<[u8; 16]>,
        now: Timestamp,
    ) -> Result<(Vec<Event>, AppendBatch), VaultError> {
        let projection = self.inner.projection.read();
        let mut events = Vec::new();
        let mut reads = std::collections::BTreeSet::new();
        for command in commands {
            let decision =
                keyledger_domain::decide_with_reads(&projection.state, command.clone(), now)?;
            events.extend(decision.events);
            reads.extend(decision.reads);
        }
        let mut seen = std::collections::HashSet::new();
        let mut new_events = Vec::with_capacity(events.len());
        for event in &events {
            let stream = event.stream_id();
            // The first event of each stream carries the version the decision was based on.
            let expected = if seen.insert(stream.clone()) {
                match projection.versions.get(&stream) {
                    Some(version) => ExpectedVersion::Exact(*version),
                    None => ExpectedVersion::NoStream,
                }
            } else {
                ExpectedVersion::Any
            };
            new_events.push(NewEvent {
                stream,
                expected,
                body: encode_event(event)?,
            });
        }
        // Streams the decisions read but do not write must not move before the append lands.
        let guards = reads
            .into_iter()
            .filter(|stream| !seen.contains(stream))
            .map(|stream| StreamGuard {
                expected: match projection.versions.get(&stream) {
                    Some(version) => ExpectedVersion::Exact(*version),
                    None => ExpectedVersion::NoStream,
                },
                stream,
            })
            .collect();
        drop(projection);
        // The commands of one call come from one caller (`run_all`); the first one names it.
        let actor = commands
            .first()
            .map(|command| command.actor.to_string())
            .unwrap_or_default();
        let batch = AppendBatch {
            request_id,
            actor,
            time_ms: now.as_millis(),
            events: new_events,
            guards,
        };
        Ok((events, batch))
    }

    /// [`Vault::run`] for an action that claims a name unique among `owner`'s things (a saved
    /// source): never decided and appended beside another claim for the same owner.
    pub async fn run_claiming_name(
        &self,
        owner: &UserId,
        actor: Actor,
        action: Action,
    ) -> Result<Executed, VaultError> {
        let _names = self.inner.names.lock(owner).await;
        self.run(actor, action).await
    }

    /// A shortcut for commands without a request id.
    pub async fn run(&self, actor: Actor, action: Action) -> Result<Executed, VaultError> {
        self.execute(Command::new(actor, action), None).await
    }

    /// Runs several actions of one actor as ONE atomic append (all their events or none), each
    /// decided against the same state as if it were alone: for actions that do not depend on
    /// each other's effects, such as the progress items of one ingestion (decision 0007). A
    /// refusal of any of them refuses all.
    pub async fn run_all(
        &self,
        actor: Actor,
        actions: Vec<Action>,
    ) -> Result<Executed, VaultError> {
        let commands: Vec<Command> = actions
            .into_iter()
            .map(|action| Command::new(actor.clone(), action))
            .collect();
        self.execute_all(&commands, None).await
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use keyledger_domain::UserId;

    use super::*;

    /// An event that fails to encode refuses the whole command with a typed error before the
    /// log is asked to append anything: no empty body enters the hash chain.
    #[tokio::test]
    async fn an_event_that_fails_to_encode_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
        let config = VaultConfig {
            data_dir: dir.path().to_path_buf(),
            ..VaultConfig::default()
        };
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
        let vault = Vault::open(config, &master, clock).unwrap();
        let head = vault.log().head();

        projection::ENCODING_FAILS.set(true);
        let refused = vault.bootstrap(UserId::parse("admin").unwrap()).await;
        projection::ENCODING_FAILS.set(false);
        match refused {
            Err(VaultError::Encode(error)) => {
                assert_eq!(error.event_type(), "UserCreated");
                let message = VaultError::Encode(error).to_string();
                assert_eq!(
                    message,
                    "a UserCreated event could not be encoded for the event log; nothing was written"
                );
            }
            Err(other) => panic!("expected VaultError::Encode, got {other}"),
            Ok(_) => panic!("an event that failed to encode was appended"),
        }
        assert_eq!(vault.log().head(), head, "nothing may be appended");

        // Encoding works again: the same command goes through, and the body is not empty.
        vault
            .bootstrap(UserId::parse("admin").unwrap())
            .await
            .unwrap();
        assert!(vault.log().head().0 > head.0);
    }

    /// Storage failures keep the log's typed error as their source, and say what they said
    /// when they carried its text.
    #[test]
    fn storage_failures_keep_the_log_error_as_their_source() {
        let opened = VaultError::from(LogError::Reopening);
        assert_eq!(
            opened.to_string(),
            "storage error: the log's storage is being reopened after a storage failure; retry shortly"
        );
        let source = opened
            .source()
            .and_then(|source| source.downcast_ref::<LogError>());
        assert!(matches!(source, Some(LogError::Reopening)), "{source:?}");

        let appended = Executed::settle(
            Vec::new(),
            Timestamp::from_millis(0),
            Err(AppendError::Closed),
        );
        let Some(Err(appended)) = appended else {
            panic!("a closed log must refuse the append");
        };
        assert_eq!(appended.to_string(), "storage error: the log is closed");
        let source = appended
            .source()
            .and_then(|source| source.downcast_ref::<AppendError>());
        assert!(matches!(source, Some(AppendError::Closed)), "{source:?}");
    }

    /// A file that cannot be read keeps the `io::Error` as its source; the message still names
    /// the file and the OS's reason, as it did when it carried their text.
    #[test]
    fn io_failures_keep_the_io_error_as_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let error = read_master_key(&path).unwrap_err();
        assert!(matches!(error, VaultError::Io { .. }), "{error:?}");
        let message = error.to_string();
        let prefix = format!("cannot read master key {}: ", path.display());
        assert!(message.starts_with(&prefix), "{message}");
        assert!(message.contains("No such file or directory"), "{message}");
        let source = error
            .source()
            .and_then(|source| source.downcast_ref::<std::io::Error>());
        assert_eq!(
            source.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    /// The encoding failure stays reachable as the error's source (not in its message).
    #[test]
    fn an_encoding_failure_keeps_bincode_error_as_its_source() {
        projection::ENCODING_FAILS.set(true);
        let error = encode_event(&keyledger_domain::Event::UserCreated {
            user: UserId::parse("admin").unwrap(),
            display_name: None,
            at: Timestamp::from_millis(0),
        })
        .unwrap_err();
        projection::ENCODING_FAILS.set(false);
        assert!(error.source().is_some());
        assert!(!error.to_string().contains("Other"), "{error}");
    }
}
