//! Keeping the log fast to open and provable as it grows: signed checkpoints made off the
//! writer thread, signed snapshots of the projection for start-up, and consistent backups.
//!
//! - Checkpoints: a worker thread (`keyledger-audit`) wakes on every durable commit and, at each
//!   multiple of [`AuditConfig::checkpoint_every`], verifies the chain since the previous
//!   checkpoint and signs `(seq, hash)` with the vault's Ed25519 key. The key is generated on
//!   first use and sealed under the master key (see `rotation.rs`); its public half is also kept
//!   in clear in `meta` (`checkpoint_public_key`) for offline tools.
//! - Snapshots: `<data_dir>/snapshot.bin` holds the bincode of the state and stream versions at
//!   a seq, with that seq's chain hash, signed by the same key. At start-up it is used only if
//!   the signature holds and the log has that very hash at that seq; otherwise the log is
//!   replayed in full, with a warning.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keyledger_crypto::{CryptoError, Keyring, MasterKey, SecretBytes};
use keyledger_domain::State;
use keyledger_domain::public::hex;
use keyledger_log::private_files;
use keyledger_log::{Checkpoint, EventLog, GENESIS_HASH, Hash, LogView, Seq};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::projection::Projection;
use crate::rotation::{SIGNING_KEY_ID, seal_into, unseal};
use crate::{Clock, SystemClock, Vault, VaultConfig, VaultError};

/// The snapshot file in the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The manifest a backup directory carries next to its `log/`.
pub const BACKUP_MANIFEST: &str = "backup.json";
/// The `meta` key of the checkpoint public key (32 bytes, in clear).
pub const PUBLIC_KEY_META: &str = "checkpoint_public_key";

/// Bumped whenever the encoding of `State` changes: a snapshot of another layout is then refused
/// (and the log replayed) instead of being misread. 02: internal keys stored in a slab. 03:
/// ingestions and their failed files carry a failure kind. 04: an index of each owner's
/// internal keys. 05: the data keys of rotated external keys. 06: the jobs' leases to workers;
/// expiry warnings, honeytokens; scoped and revoked keys, deactivated users. 07: saved sources,
/// forced syncs, lease lengths. 08: each source's last refused scheduled run
/// (`SourceRunRefused`).
const SNAPSHOT_MAGIC: &[u8; 8] = b"KLSNAP08";
const SNAPSHOT_CONTEXT: &[u8] = b"keyledger/snapshot/v1\0";
/// Magic, seq, hash, payload digest, public key, signature.
const SNAPSHOT_HEADER_LEN: usize = 8 + 8 + 32 + 32 + 32 + 64;
const BACKUP_FORMAT: &str = "keyledger-backup/v1";
/// Checkpoints signed and stored per durable write when catching up.
const CHECKPOINT_CHUNK: usize = 1000;

/// How often the vault signs checkpoints and writes snapshots by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// A checkpoint at every multiple of this seq; 0: only on demand.
    pub checkpoint_every: u64,
    /// A snapshot once this many events were applied since the last one; 0: only on demand.
    pub snapshot_every: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every: 1000,
            snapshot_every: 100_000,
        }
    }
}

/// How the projection was rebuilt when the vault opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupReport {
    /// The seq of the snapshot the state started from, if one was used.
    pub snapshot_seq: Option<u64>,
    /// Events folded from the log after the snapshot (all of them without one).
    pub replayed_events: u64,
    /// Why a snapshot file was present but not used.
    pub ignored_snapshot: Option<String>,
    pub elapsed: Duration,
}

/// What a backup directory holds, written to `backup.json` next to `log/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: String,
    /// Every event up to this seq is in the backup, none after it.
    pub head: u64,
    pub head_hash: String,
    pub data_keys: u64,
    pub meta_entries: u64,
    /// Hex of the checkpoint public key, to pin when verifying the backup.
    pub checkpoint_public_key: Option<String>,
    pub created_at: keyledger_domain::Timestamp,
}

impl Vault {
    /// Changes how often checkpoints and snapshots are made; takes effect at the next commit.
    pub fn configure_audit(&self, config: AuditConfig) {
        let shared = &self.inner.audit.shared;
        shared
            .checkpoint_every
            .store(config.checkpoint_every, Ordering::Relaxed);
        shared
            .snapshot_every
            .store(config.snapshot_every, Ordering::Relaxed);
        shared.wake.notify_one();
    }

    pub fn audit_config(&self) -> AuditConfig {
        let shared = &self.inner.audit.shared;
        AuditConfig {
            checkpoint_every: shared.checkpoint_every.load(Ordering::Relaxed),
            snapshot_every: shared.snapshot_every.load(Ordering::Relaxed),
        }
    }

    pub fn startup_report(&self) -> &StartupReport {
        &self.inner.audit.startup
    }

    /// The Ed25519 public key that signs checkpoints and snapshots.
    pub fn checkpoint_public_key(&self) -> Result<[u8; 32], VaultError> {
        public_key_of(self.signer()?.as_ref())
    }

    /// Verifies the chain since the last checkpoint and signs the current head.
    pub fn checkpoint_now(&self) -> Result<Checkpoint, VaultError> {
        let signer = self.signer()?;
        let log = &self.inner.log;
        let (head, _) = log.head();
        if head == 0 {
            return Err(VaultError::Config(
                "the log is empty: there is nothing to checkpoint yet".to_owned(),
            ));
        }
        let last = log.last_checkpoint()?;
        if let Some(last) = last.filter(|last| last.seq == head) {
            return Ok(last);
        }
        let checkpoint = sign_verified(log, &signer, last.as_ref(), head)?;
        log.put_checkpoints(&[checkpoint])?;
        Ok(checkpoint)
    }

    /// Writes a snapshot of the projection now; `None` if the projection is broken (an
    /// undecodable event) and must not be snapshotted.
    pub fn snapshot_now(&self) -> Result<Option<u64>, VaultError> {
        let signer = self.signer()?;
        take_snapshot(&self.inner.projection, &signer, &self.inner.audit.shared)
    }

    /// Copies the log, consistently, into `dir/log` and writes `dir/backup.json`, while the
    /// vault keeps serving (see [`keyledger_log::EventLog::backup_to`]). The master key is not
    /// part of a backup.
    pub fn backup_to(&self, dir: &Path) -> Result<BackupManifest, VaultError> {
        backup_log(&self.inner.log, dir)
    }

    fn signer(&self) -> Result<Arc<Ed25519KeyPair>, VaultError> {
        self.inner.audit.signer.get().cloned().ok_or_else(|| {
            VaultError::Config("the checkpoint signing key is not loaded yet".to_owned())
        })
    }
}

/// Writes a consistent backup of `log` into `dir` (missing or empty): `dir/log` and
/// `dir/backup.json`. Works on a log opened without the master key.
pub fn backup_log(log: &EventLog, dir: &Path) -> Result<BackupManifest, VaultError> {
    let io = |what: &str, err: std::io::Error| {
        VaultError::io(format!("cannot {what} {}", dir.display()), err)
    };
    private_files::create_dir_all(dir).map_err(|err| io("create", err))?;
    private_files::restrict_dir(dir).map_err(|err| io("restrict", err))?;
    let summary = log.backup_to(&dir.join("log"))?;
    let manifest = BackupManifest {
        format: BACKUP_FORMAT.to_owned(),
        head: summary.head,
        head_hash: hex(&summary.head_hash),
        data_keys: summary.data_keys,
        meta_entries: summary.meta_entries,
        checkpoint_public_key: published_public_key(&log.view())?.map(|key| hex(&key)),
        created_at: SystemClock.now(),
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|err| VaultError::io("cannot encode the backup manifest", err.into()))?;
    write_atomically(&dir.join(BACKUP_MANIFEST), &text)?;
    Ok(manifest)
}

/// Reads `dir/backup.json`.
pub fn read_backup_manifest(dir: &Path) -> Result<BackupManifest, VaultError> {
    let path = dir.join(BACKUP_MANIFEST);
    let text = fs::read(&path)
        .map_err(|err| VaultError::io(format!("cannot read {}", path.display()), err))?;
    parse_backup_manifest(&text)
        .map_err(|reason| VaultError::Corrupt(format!("{} {reason}", path.display())))
}

/// Parses the bytes of a `backup.json`; `Err` says what is wrong with them (after the path).
pub(crate) fn parse_backup_manifest(text: &[u8]) -> Result<BackupManifest, String> {
    let manifest: BackupManifest =
        serde_json::from_slice(text).map_err(|err| format!("is not a backup manifest: {err}"))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(format!(
            "has format {:?}; this version reads {BACKUP_FORMAT:?}",
            manifest.format
        ));
    }
    Ok(manifest)
}

/// The checkpoint public key as the data directory publishes it (in clear, unauthenticated:
/// an auditor pins the key obtained from the running vault or another trusted place).
pub fn published_public_key(log: &LogView) -> Result<Option<[u8; 32]>, VaultError> {
    Ok(log
        .meta()
        .get(PUBLIC_KEY_META)?
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok()))
}

/// The vault's share of checkpoint and snapshot work; the worker thread stops and is joined
/// when this is dropped (with the vault).
pub(crate) struct AuditRuntime {
    startup: StartupReport,
    shared: Arc<AuditShared>,
    signer: OnceLock<Arc<Ed25519KeyPair>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl AuditRuntime {
    pub(crate) fn new(config: &VaultConfig, startup: StartupReport) -> AuditRuntime {
        let defaults = AuditConfig::default();
        AuditRuntime {
            shared: Arc::new(AuditShared {
                checkpoint_every: AtomicU64::new(defaults.checkpoint_every),
                snapshot_every: AtomicU64::new(defaults.snapshot_every),
                last_snapshot: AtomicU64::new(startup.snapshot_seq.unwrap_or(0)),
                snapshot_lock: Mutex::new(()),
                snapshot_path: config.data_dir.join(SNAPSHOT_FILE),
                stop: AtomicBool::new(false),
                wake: Notify::new(),
            }),
            startup,
            signer: OnceLock::new(),
            worker: Mutex::new(None),
        }
    }
}

impl Drop for AuditRuntime {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let handle = self.worker.get_mut().take();
        let joinable = handle.filter(|h| h.thread().id() != std::thread::current().id());
        if joinable.is_some_and(|handle| handle.join().is_err()) {
            tracing::error!("the checkpoint and snapshot worker panicked");
        }
    }
}

struct AuditShared {
    checkpoint_every: AtomicU64,
    snapshot_every: AtomicU64,
    last_snapshot: AtomicU64,
    /// Serialises snapshot writers (the worker and `snapshot_now`).
    snapshot_lock: Mutex<()>,
    snapshot_path: std::path::PathBuf,
    stop: AtomicBool,
    wake: Notify,
}

/// Rebuilds the projection at start-up: from a valid snapshot plus the events after it, or from
/// the whole log.
pub(crate) fn restore_projection(
    config: &VaultConfig,
    log: &EventLog,
    master: &MasterKey,
    projection: &mut Projection,
) -> Result<StartupReport, VaultError> {
    let started = Instant::now();
    let path = config.data_dir.join(SNAPSHOT_FILE);
    let mut snapshot_seq = None;
    let mut ignored_snapshot = None;
    match load_snapshot(&path, log, master) {
        Ok(Some(restored)) => {
            snapshot_seq = Some(restored.applied_seq);
            *projection = restored;
        }
        Ok(None) => {}
        Err(reason) => {
            tracing::warn!(
                path = %path.display(),
                %reason,
                "ignoring the projection snapshot; replaying the whole log"
            );
            ignored_snapshot = Some(reason);
        }
    }
    let replayed_events = projection.replay(&log.view())?;
    let report = StartupReport {
        snapshot_seq,
        replayed_events,
        ignored_snapshot,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        snapshot_seq = report.snapshot_seq,
        replayed = report.replayed_events,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "projection restored"
    );
    Ok(report)
}

/// Loads (or generates and seals) the checkpoint signing key and starts the worker.
pub(crate) fn start(vault: &Vault) -> Result<(), VaultError> {
    let log = &vault.inner.log;
    let keyring = vault.keyring();
    let pkcs8 = match unseal(log, SIGNING_KEY_ID, keyring)? {
        Some(pkcs8) => pkcs8,
        None => {
            let document =
                Ed25519KeyPair::generate_pkcs8(keyring.rng()).map_err(|_| CryptoError::Random)?;
            let pkcs8 = SecretBytes::new(document.as_ref().to_vec());
            seal_into(log, SIGNING_KEY_ID, pkcs8.expose(), keyring)?;
            pkcs8
        }
    };
    let signer = Arc::new(Ed25519KeyPair::from_pkcs8(pkcs8.expose()).map_err(|_| {
        VaultError::Corrupt("the sealed checkpoint signing key is not an Ed25519 key".to_owned())
    })?);
    let public_key = public_key_of(&signer)?;
    if published_public_key(&log.view())? != Some(public_key) {
        log.meta().put(PUBLIC_KEY_META, public_key)?;
    }
    let _ = vault.inner.audit.signer.set(signer.clone());

    let worker = Worker {
        log: log.clone(),
        projection: Arc::clone(&vault.inner.projection),
        signer,
        shared: Arc::clone(&vault.inner.audit.shared),
    };
    let handle = std::thread::Builder::new()
        .name("keyledger-audit".to_owned())
        .spawn(move || worker.run())
        .map_err(|err| VaultError::io("cannot start the audit worker", err))?;
    *vault.inner.audit.worker.lock() = Some(handle);
    Ok(())
}

/// Holds no handle on the vault itself, only on what it needs, so the vault's drop (which stops
/// and joins it) is never waiting on it.
struct Worker {
    log: EventLog,
    projection: Arc<RwLock<Projection>>,
    signer: Arc<Ed25519KeyPair>,
    shared: Arc<AuditShared>,
}

impl Worker {
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot start the checkpoint worker; only on-demand checkpoints will be made");
                return;
            }
        };
        let mut commits = self.log.subscribe();
        // The seq of the last checkpoint this worker knows of; refreshed from the log only when
        // a new one is due, so an ordinary commit costs two comparisons.
        let mut last_checkpointed = 0;
        runtime.block_on(async {
            loop {
                if self.stopping() {
                    break;
                }
                if let Err(error) = self.make_due_checkpoints(&mut last_checkpointed) {
                    tracing::error!(%error, "checkpoint not signed; retrying at the next commit");
                }
                if self.stopping() {
                    break;
                }
                if let Err(error) = self.snapshot_if_due() {
                    tracing::warn!(%error, "snapshot not written; retrying at the next commit");
                }
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { break },
                    () = self.shared.wake.notified() => {}
                }
            }
        });
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// Signs every due multiple of `checkpoint_every` up to the head, in chunks.
    fn make_due_checkpoints(&self, last_checkpointed: &mut Seq) -> Result<(), VaultError> {
        let every = self.shared.checkpoint_every.load(Ordering::Relaxed);
        if every == 0 {
            return Ok(());
        }
        let (head, _) = self.log.head();
        if (*last_checkpointed / every + 1) * every > head {
            return Ok(());
        }
        let mut last = self.log.last_checkpoint()?;
        loop {
            *last_checkpointed = last.map_or(0, |c| c.seq);
            let next = (last.map_or(0, |c| c.seq) / every + 1) * every;
            if next > head || self.stopping() {
                return Ok(());
            }
            let mut chunk = Vec::with_capacity(CHECKPOINT_CHUNK);
            let mut seq = next;
            while seq <= head && chunk.len() < CHECKPOINT_CHUNK {
                let checkpoint = sign_verified(&self.log, &self.signer, last.as_ref(), seq)?;
                last = Some(checkpoint);
                chunk.push(checkpoint);
                seq += every;
            }
            self.log.put_checkpoints(&chunk)?;
        }
    }

    fn snapshot_if_due(&self) -> Result<(), VaultError> {
        let every = self.shared.snapshot_every.load(Ordering::Relaxed);
        if every == 0 {
            return Ok(());
        }
        let applied = self.projection.read().applied_seq;
        if applied >= self.shared.last_snapshot.load(Ordering::Relaxed) + every {
            take_snapshot(&self.projection, &self.signer, &self.shared)?;
        }
        Ok(())
    }
}

/// Verifies the chain from the last checkpoint (or the start) through `seq`, then signs the hash
/// at `seq`. A checkpoint never vouches for a chain the vault could not verify itself.
fn sign_verified(
    log: &EventLog,
    signer: &Ed25519KeyPair,
    last: Option<&Checkpoint>,
    seq: Seq,
) -> Result<Checkpoint, VaultError> {
    let (from, prev_hash) = match last {
        Some(last) if last.seq < seq => (last.seq + 1, last.hash),
        _ => (1, GENESIS_HASH),
    };
    let report = log.verify_range(from, seq, prev_hash)?;
    if let Some(bad) = report.first_bad {
        return Err(VaultError::Corrupt(format!(
            "refusing to sign a checkpoint at seq {seq}: the chain is damaged at {bad}"
        )));
    }
    if report.verified_through != seq {
        return Err(VaultError::Corrupt(format!(
            "refusing to sign a checkpoint at seq {seq}: only verified through {}",
            report.verified_through
        )));
    }
    Ok(Checkpoint::sign(seq, report.head_hash, signer))
}

#[derive(Serialize)]
struct SnapshotBodyRef<'a> {
    state: &'a State,
    versions: &'a HashMap<String, u64, rustc_hash::FxBuildHasher>,
}

#[derive(Deserialize)]
pub(crate) struct SnapshotBody {
    pub state: State,
    pub versions: HashMap<String, u64, rustc_hash::FxBuildHasher>,
}

const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// Decoding a snapshot claims at most this many bytes: a damaged length is refused before
/// anything is allocated for it, instead of aborting start-up on a huge allocation. A state
/// bigger than this (far beyond a million keys) is not restored from its snapshot: the log is
/// replayed instead, with a warning.
const SNAPSHOT_DECODE_LIMIT: usize = 1 << 31;

type SnapshotDecodeConfig = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<SNAPSHOT_DECODE_LIMIT>,
>;

const SNAPSHOT_DECODE: SnapshotDecodeConfig =
    bincode::config::standard().with_limit::<SNAPSHOT_DECODE_LIMIT>();

/// Encodes the projection under its read lock, then signs and writes the file outside it.
fn take_snapshot(
    projection: &RwLock<Projection>,
    signer: &Ed25519KeyPair,
    shared: &AuditShared,
) -> Result<Option<u64>, VaultError> {
    let _writer = shared.snapshot_lock.lock();
    let (seq, hash, payload) = {
        let projection = projection.read();
        if projection.broken.is_some() || projection.applied_seq == 0 {
            return Ok(None);
        }
        let body = SnapshotBodyRef {
            state: &projection.state,
            versions: &projection.versions,
        };
        let payload =
            bincode::serde::encode_to_vec(&body, BINCODE).map_err(VaultError::SnapshotEncode)?;
        (projection.applied_seq, projection.applied_hash, payload)
    };
    let digest = sha256(&payload);
    let signature = signer.sign(&snapshot_message(seq, &hash, &digest));
    let mut file = Vec::with_capacity(SNAPSHOT_HEADER_LEN + payload.len());
    file.extend_from_slice(SNAPSHOT_MAGIC);
    file.extend_from_slice(&seq.to_be_bytes());
    file.extend_from_slice(&hash);
    file.extend_from_slice(&digest);
    file.extend_from_slice(signer.public_key().as_ref());
    file.extend_from_slice(signature.as_ref());
    file.extend_from_slice(&payload);
    write_atomically(&shared.snapshot_path, &file)?;
    shared.last_snapshot.store(seq, Ordering::Relaxed);
    tracing::info!(seq, bytes = file.len(), "projection snapshot written");
    Ok(Some(seq))
}

/// Reads and checks the snapshot file. `Ok(None)` when there is none; `Err(reason)` when there
/// is one that must not be used.
fn load_snapshot(
    path: &Path,
    log: &EventLog,
    master: &MasterKey,
) -> Result<Option<Projection>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read it: {err}")),
    };
    let SnapshotFile {
        seq,
        hash,
        digest,
        signature,
        payload,
    } = parse_snapshot_file(&bytes)?;
    let keyring = Keyring::new(master).map_err(|err| err.to_string())?;
    let pkcs8 = unseal(log, SIGNING_KEY_ID, &keyring)
        .map_err(|err| err.to_string())?
        .ok_or("there is no signing key to check it against")?;
    let signer = Ed25519KeyPair::from_pkcs8(pkcs8.expose())
        .map_err(|_| "the sealed signing key is not an Ed25519 key".to_owned())?;
    UnparsedPublicKey::new(&ED25519, signer.public_key().as_ref())
        .verify(&snapshot_message(seq, &hash, &digest), signature)
        .map_err(|_| "its signature is not the vault's".to_owned())?;
    match log.get(seq) {
        Ok(Some(envelope)) if envelope.hash == hash => {}
        Ok(Some(_)) => {
            return Err(format!(
                "the log's chain hash at seq {seq} differs from the snapshot's"
            ));
        }
        Ok(None) => return Err(format!("the log has no event {seq}")),
        Err(err) => return Err(format!("cannot read event {seq}: {err}")),
    }
    let body = decode_snapshot_body(payload)?;
    Ok(Some(Projection {
        state: body.state,
        versions: body.versions,
        applied_seq: seq,
        applied_hash: hash,
        broken: None,
    }))
}

/// A snapshot file split into its header fields and payload; not yet authenticated.
pub(crate) struct SnapshotFile<'a> {
    pub seq: Seq,
    pub hash: Hash,
    pub digest: [u8; 32],
    pub signature: &'a [u8],
    pub payload: &'a [u8],
}

/// Splits a snapshot file and checks its magic and payload digest; the signature is the
/// caller's to check.
pub(crate) fn parse_snapshot_file(bytes: &[u8]) -> Result<SnapshotFile<'_>, String> {
    if bytes.len() < SNAPSHOT_HEADER_LEN || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err("not a keyledger snapshot (bad header)".to_owned());
    }
    let (header, payload) = bytes.split_at(SNAPSHOT_HEADER_LEN);
    let field = |start: usize, len: usize| &header[start..start + len];
    let file = SnapshotFile {
        seq: Seq::from_be_bytes(field(8, 8).try_into().unwrap_or_default()),
        hash: field(16, 32).try_into().unwrap_or_default(),
        digest: field(48, 32).try_into().unwrap_or_default(),
        signature: field(112, 64),
        payload,
    };
    if sha256(payload) != file.digest {
        return Err("its content does not match its digest (damaged)".to_owned());
    }
    Ok(file)
}

/// Decodes a snapshot's payload: the state and stream versions.
pub(crate) fn decode_snapshot_body(payload: &[u8]) -> Result<SnapshotBody, String> {
    bincode::serde::decode_from_slice(payload, SNAPSHOT_DECODE)
        .map(|(body, _)| body)
        .map_err(|err| format!("cannot decode it: {err}"))
}

fn snapshot_message(seq: Seq, hash: &Hash, digest: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SNAPSHOT_CONTEXT.len() + 8 + 64);
    message.extend_from_slice(SNAPSHOT_CONTEXT);
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(hash);
    message.extend_from_slice(digest);
    message
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

fn public_key_of(signer: &Ed25519KeyPair) -> Result<[u8; 32], VaultError> {
    <[u8; 32]>::try_from(signer.public_key().as_ref())
        .map_err(|_| VaultError::Corrupt("an Ed25519 public key is not 32 bytes".to_owned()))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, then syncs the folder.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let io = |err: std::io::Error| VaultError::io(format!("cannot write {}", path.display()), err);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = std::path::PathBuf::from(temporary);
    let mut file = private_files::create(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temporary, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `vault_snapshot` fuzz target: a payload whose stream name claims about
    /// 2^61 bytes made the decoder allocate them, which aborted the process.
    #[test]
    fn a_huge_claimed_length_is_an_error_not_an_allocation() {
        let payload: [u8; 115] = [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfd, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
            0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
            0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x30, 0x30, 0x30, 0x30, 0x30, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3b,
            0x00, 0x00, 0x00,
        ];
        assert!(decode_snapshot_body(&payload).is_err());
    }
}
