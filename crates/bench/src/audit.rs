//! The audit figures: offline verification throughput, and vault start-up with a snapshot
//! against a full replay. Each function builds its own log in a temporary directory.
//!
//! The generated log is a fresh log in a scratch directory, written with the log's own
//! `append` (opaque bodies, no vault): a million realistic events in seconds. No vault's log
//! is ever appended to behind its back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_crypto::MasterKey;
use keyledger_domain::{
    Event, FromTrusted, KeyHint, KeyId, KeyName, SecretHash, Timestamp, UserId,
};
use keyledger_log::{
    AppendBatch, Checkpoint, Durability, EventLog, ExpectedVersion, LogConfig, NewEvent,
};
use keyledger_vault::{
    AuditConfig, SNAPSHOT_FILE, SystemClock, Vault, VaultConfig, VaultError, encode_event,
};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use keyledger_audit::verify::{VerifyOptions, VerifyOutcome, verify_export_file, verify_log};
use keyledger_audit::{AuditError, export_jsonl, open_log_offline};

/// `audit verify` on an export and on a data directory.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyBench {
    pub events: u64,
    pub checkpoints: u64,
    pub export_bytes: u64,
    pub export: Duration,
    pub verify_export: Duration,
    /// Opening the data directory's log offline (sled recovery, stream and request indexes).
    pub open_data_dir: Duration,
    /// Verifying the opened log: every stored event and every checkpoint.
    pub verify_data_dir: Duration,
}

impl VerifyBench {
    pub fn export_events_per_second(&self) -> f64 {
        self.events as f64 / self.verify_export.as_secs_f64()
    }

    /// Verification of the opened data directory.
    pub fn data_dir_events_per_second(&self) -> f64 {
        self.events as f64 / self.verify_data_dir.as_secs_f64()
    }
}

/// Vault start-up with and without a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupBench {
    pub events: u64,
    /// `Vault::open` replaying every event.
    pub full_replay: Duration,
    /// Of which rebuilding the projection (the rest is opening sled and the key material).
    pub full_replay_projection: Duration,
    /// `Vault::open` from the snapshot at the head.
    pub with_snapshot: Duration,
    /// Of which loading and checking the snapshot.
    pub with_snapshot_projection: Duration,
    /// Writing the snapshot (encode, sign, write, fsync).
    pub snapshot_write: Duration,
    /// Of which encoding the state: how long the projection's read lock is held, during which
    /// appends wait for the commit hook.
    pub snapshot_encode: Duration,
    pub snapshot_bytes: u64,
}

/// Builds an `events`-event log with a checkpoint every 1,000 events, exports it, and verifies
/// the export and the data directory.
pub fn bench_verify(events: u64) -> Result<VerifyBench, AuditError> {
    let dir = tempfile::tempdir().map_err(|err| io_error("temporary directory", err))?;
    let signer = signing_key()?;
    let log = generate_log(&dir.path().join("log"), events)?;
    let checkpoints = sign_checkpoints(&log, &signer, 1000)?;
    let export_path = dir.path().join("export.jsonl");
    let started = Instant::now();
    {
        let file =
            std::fs::File::create(&export_path).map_err(|err| io_error(&export_path, err))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        export_jsonl(&log.view(), 1, u64::MAX, &mut out)?;
    }
    let export = started.elapsed();
    log.close();
    let export_bytes = std::fs::metadata(&export_path)
        .map_err(|err| io_error(&export_path, err))?
        .len();
    let options = VerifyOptions {
        public_key: Some(public_key(&signer)),
        ..VerifyOptions::default()
    };

    let started = Instant::now();
    let outcome = verify_export_file(&export_path, options)?;
    let verify_export = started.elapsed();
    check_verified(&outcome, events)?;

    let started = Instant::now();
    let log = open_log_offline(dir.path())?;
    let open_data_dir = started.elapsed();
    let started = Instant::now();
    let outcome = verify_log(&log.view(), options);
    let verify_data_dir = started.elapsed();
    log.close();
    check_verified(&outcome?, events)?;
    Ok(VerifyBench {
        events,
        checkpoints,
        export_bytes,
        export,
        verify_export,
        open_data_dir,
        verify_data_dir,
    })
}

/// Builds an `events`-event log, opens a vault on it (full replay), writes a snapshot, and opens
/// it again (snapshot plus nothing to replay).
pub fn bench_startup(events: u64) -> Result<StartupBench, AuditError> {
    let dir = tempfile::tempdir().map_err(|err| io_error("temporary directory", err))?;
    let master =
        MasterKey::generate(&SystemRandom::new()).map_err(keyledger_vault::VaultError::from)?;
    let config = VaultConfig {
        data_dir: dir.path().to_path_buf(),
        durability: Durability::Flush,
        ..VaultConfig::default()
    };
    // A vault seals its pepper when it first opens an empty data directory; a log with events
    // and no pepper is refused as damaged. The generated events go in after that.
    drop(Vault::open(config.clone(), &master, Arc::new(SystemClock))?);
    generate_log(&dir.path().join("log"), events)?.close();
    let quiet = AuditConfig {
        checkpoint_every: 0,
        snapshot_every: 0,
    };

    let started = Instant::now();
    let vault = Vault::open(config.clone(), &master, Arc::new(SystemClock))?;
    let full_replay = started.elapsed();
    vault.configure_audit(quiet);
    let full_replay_projection = vault.startup_report().elapsed;
    let started = Instant::now();
    vault.snapshot_now()?;
    let snapshot_write = started.elapsed();
    let started = Instant::now();
    let encoded = vault.read(|state| {
        bincode::serde::encode_to_vec(state, bincode::config::standard()).map(|bytes| bytes.len())
    });
    let snapshot_encode = started.elapsed();
    std::hint::black_box(encoded.ok());
    let expected = vault.read(|state| state.clone());
    drop(vault);
    let snapshot_path = dir.path().join(SNAPSHOT_FILE);
    let snapshot_bytes = std::fs::metadata(&snapshot_path)
        .map_err(|err| io_error(&snapshot_path, err))?
        .len();

    let started = Instant::now();
    let vault = Vault::open(config, &master, Arc::new(SystemClock))?;
    let with_snapshot = started.elapsed();
    vault.configure_audit(quiet);
    let with_snapshot_projection = vault.startup_report().elapsed;
    if vault.startup_report().snapshot_seq != Some(events)
        || !vault.read(|state| *state == expected)
    {
        return Err(AuditError::Usage(format!(
            "start-up from the snapshot did not give the replayed state: {:?}",
            vault.startup_report()
        )));
    }
    Ok(StartupBench {
        events,
        full_replay,
        full_replay_projection,
        with_snapshot,
        with_snapshot_projection,
        snapshot_write,
        snapshot_encode,
        snapshot_bytes,
    })
}

/// A log of realistic events in `dir`: a user, then keys created, used and deleted.
pub fn generate_log(dir: &Path, events: u64) -> Result<EventLog, AuditError> {
    let mut config = LogConfig::new(dir);
    config.durability = Durability::Flush;
    let log = EventLog::open(config, Box::new(|_: &[keyledger_log::Envelope]| {}))?;
    let owner = UserId::from_trusted("bench".into());
    let start = 1_790_000_000_000i64;
    let mut seq = 0u64;
    while seq < events {
        let mut batch = Vec::with_capacity(1000);
        for _ in 0..1000.min(events - seq) {
            seq += 1;
            let at = Timestamp::from_millis(start + seq as i64);
            let key = KeyId::from_trusted(format!("key_{:016}", seq / 4));
            let event = match seq % 4 {
                _ if seq == 1 => Event::UserCreated {
                    user: owner.clone(),
                    display_name: None,
                    at,
                },
                0 => Event::ApiKeyCreated {
                    key,
                    owner: owner.clone(),
                    name: KeyName::from_trusted(format!("key {seq}")),
                    hint: KeyHint::from_trusted("kl_AbCd…wXyZ".into()),
                    secret_hash: SecretHash([(seq % 251) as u8; 32]),
                    created_at: at,
                    expires_at: Some(at.plus_days(30)),
                },
                3 => Event::ApiKeyDeleted {
                    key,
                    owner: owner.clone(),
                    at,
                },
                _ => Event::ApiKeyUsed {
                    key,
                    owner: owner.clone(),
                    last_used_at: at,
                    uses: 10,
                },
            };
            batch.push(NewEvent {
                stream: event.stream_id(),
                expected: ExpectedVersion::Any,
                body: encode_event(&event).map_err(VaultError::from)?,
            });
        }
        log.append_blocking(AppendBatch {
            request_id: None,
            guards: Vec::new(),
            actor: "system".into(),
            time_ms: start + seq as i64,
            events: batch,
        })
        .map_err(|err| AuditError::Usage(format!("generating the log: {err}")))?;
    }
    Ok(log)
}

/// Signs a checkpoint at every multiple of `every`; returns how many.
pub fn sign_checkpoints(
    log: &EventLog,
    signer: &Ed25519KeyPair,
    every: u64,
) -> Result<u64, AuditError> {
    let mut checkpoints = Vec::new();
    let mut seq = every;
    while seq <= log.head().0 {
        if let Some(envelope) = log.get(seq)? {
            checkpoints.push(Checkpoint::sign(seq, envelope.hash, signer));
        }
        seq += every;
    }
    log.put_checkpoints(&checkpoints)?;
    Ok(checkpoints.len() as u64)
}

/// A fresh Ed25519 key (for benchmarks and tests).
pub fn signing_key() -> Result<Ed25519KeyPair, AuditError> {
    let rng = SystemRandom::new();
    let failed = || AuditError::Usage("cannot generate an Ed25519 key".to_owned());
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed())?;
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| failed())
}

/// The 32-byte public half of `key`.
pub fn public_key(key: &Ed25519KeyPair) -> [u8; 32] {
    use ring::signature::KeyPair;
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key().as_ref());
    out
}

fn check_verified(outcome: &VerifyOutcome, events: u64) -> Result<(), AuditError> {
    if outcome.is_ok() && outcome.verified_through == events {
        Ok(())
    } else {
        Err(AuditError::Usage(format!(
            "the benchmark's own log did not verify: {}",
            outcome.render()
        )))
    }
}

fn io_error(path: impl AsRef<Path>, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.as_ref().to_path_buf(),
        source,
    }
}
