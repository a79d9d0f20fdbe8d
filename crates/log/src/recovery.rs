//! How the writer comes back from a storage failure (a full disk, an I/O error on one write)
//! without a restart.
//!
//! Guarantee: once storage works again the writer appends again by itself; no acknowledged
//! event is lost; an append answered with an error never becomes part of the log, except when
//! its answer said so ([`LogError::NotConfirmed`]: the process stopped before recovery could
//! undo it). It is kept this way:
//! - sled 0.34 latches the first I/O error of its log writer (`Config::global_error`) and fails
//!   every later write until the database is opened again. So a failed group commit always
//!   reopens the database: the writer waits (bounded) for readers to let go of the failed
//!   instance, drops it, and opens the files again; sled recovers to its last intact write.
//! - Before reopening, a probe file is written and synced: while the disk is still full that
//!   fails cheaply, and readers keep the old instance (reads do not need the disk to have room).
//! - After reopening, whatever is stored past the acknowledged (in-memory) head is removed and
//!   made durable: the failed group's block, its idempotency records, its head record. Then the
//!   stored tail must be exactly the acknowledged head, seq and hash; if it is not, acknowledged
//!   events are missing, and the writer stops for good rather than chain onto a hole.
//! - Until a recovery succeeds every append is refused with [`LogError::StorageUnavailable`].
//!   Attempts back off from 50 ms to 2 s and also run while nobody appends; [`StorageMonitor`]
//!   reports the fault (readiness) and counts failures and recoveries (metrics).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::keys::{HEAD_KEY, IDEMPOTENCY_PREFIX, decode_committed, encode_head, event_key};
use crate::stores::Database;
use crate::writer::{Fault, Writer};
use crate::{GENESIS_HASH, Hash, LogError, Seq, last_stored, open_store, wait_for_lock_release};

/// First wait between recovery attempts; doubled after each failed attempt up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a recovery waits for readers (iterators, meta reads) to let go of the failed
/// database before it gives up this attempt.
const READERS_WAIT: Duration = Duration::from_secs(2);
/// Written and synced before reopening: room for a few of sled's writes.
const PROBE_BYTES: usize = 256 * 1024;
const PROBE_FILE: &str = "storage-probe.tmp";

/// Whether the writer can write, and how often storage failed: for readiness and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageHealth {
    /// Why appends are refused right now; `None` while the writer can write.
    pub fault: Option<String>,
    /// Group commits that failed on storage since the log was opened.
    pub failures: u64,
    /// Recoveries from such failures (each one reopened the database).
    pub recoveries: u64,
}

impl StorageHealth {
    pub fn writable(&self) -> bool {
        self.fault.is_none()
    }
}

/// Reports [`StorageHealth`]; cheap to clone, and does not keep the log open.
#[derive(Clone, Default)]
pub struct StorageMonitor {
    state: Arc<MonitorState>,
}

#[derive(Default)]
struct MonitorState {
    fault: Mutex<Option<String>>,
    failures: AtomicU64,
    recoveries: AtomicU64,
}

impl StorageMonitor {
    pub fn health(&self) -> StorageHealth {
        StorageHealth {
            fault: self.lock_fault().clone(),
            failures: self.state.failures.load(Ordering::Relaxed),
            recoveries: self.state.recoveries.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_fault(&self, fault: Option<String>) {
        *self.lock_fault() = fault;
    }

    fn lock_fault(&self) -> MutexGuard<'_, Option<String>> {
        self.state.fault.lock()
    }
}

impl std::fmt::Debug for StorageMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.health().fmt(f)
    }
}

impl Writer {
    /// Records a failed group commit; a recovery attempt is due at once.
    pub(crate) fn storage_failed(&mut self, error: &LogError) {
        self.shared
            .storage
            .state
            .failures
            .fetch_add(1, Ordering::Relaxed);
        let reason = error.to_string();
        let now = Instant::now();
        match &mut self.fault {
            Some(fault) => {
                fault.reason = reason;
                fault.next_attempt = now;
            }
            None => {
                self.fault = Some(Fault {
                    reason,
                    since: now,
                    next_attempt: now,
                    backoff: FIRST_BACKOFF,
                    last_attempt: None,
                });
            }
        }
        self.report_fault();
    }

    /// Attempts a recovery if one is due; clears the fault when it succeeds.
    pub(crate) fn retry_recovery_if_due(&mut self) {
        let Some(fault) = &self.fault else {
            return;
        };
        if Instant::now() < fault.next_attempt {
            return;
        }
        let attempt = self.recover();
        let Some(fault) = &mut self.fault else {
            return;
        };
        match attempt {
            Ok(()) => {
                tracing::warn!(
                    after_ms = fault.since.elapsed().as_millis() as u64,
                    "event log storage recovered; appends resume"
                );
                self.fault = None;
                self.shared
                    .storage
                    .state
                    .recoveries
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.storage.set_fault(None);
            }
            Err(_) if self.stopped.is_some() => {
                self.fault = None;
            }
            Err(error) => {
                let error = error.to_string();
                if fault.last_attempt.as_deref() != Some(error.as_str()) {
                    tracing::warn!(%error, "event log storage still failing; appends stay refused");
                    fault.last_attempt = Some(error);
                }
                fault.next_attempt = Instant::now() + fault.backoff;
                fault.backoff = (fault.backoff * 2).min(MAX_BACKOFF);
                self.report_fault();
            }
        }
    }

    fn report_fault(&self) {
        if let Some(fault) = &self.fault {
            let mut report = format!(
                "appends refused since {} s ago: {}",
                fault.since.elapsed().as_secs(),
                fault.reason
            );
            if let Some(attempt) = &fault.last_attempt {
                report.push_str(&format!(" (last recovery attempt: {attempt})"));
            }
            self.shared.storage.set_fault(Some(report));
        }
    }

    /// Stops the writer for good (nothing a retry could fix).
    pub(crate) fn stop(&mut self, reason: String) {
        self.shared
            .storage
            .set_fault(Some(format!("the log writer stopped: {reason}")));
        self.stopped = Some(reason);
    }

    /// Reopens the database and cuts its stored tail back to the acknowledged head.
    fn recover(&mut self) -> Result<(), LogError> {
        probe_writable(&self.shared.config.path)?;
        self.reopen()?;
        let database = self.shared.database.get()?;
        let head = *self.shared.head.lock();
        let removed = cut_back_to(&database, head)?;
        if removed > 0 {
            tracing::warn!(
                head = head.0,
                removed,
                "removed the stored part of a failed group commit"
            );
        }
        let stored = last_stored(&database.events)?.unwrap_or((0, GENESIS_HASH));
        if stored != head {
            let reason = format!(
                "after a storage failure the stored log ends at event {} but event {} was \
                 acknowledged (or its hash differs); run verify and restore from a backup",
                stored.0, head.0
            );
            tracing::error!(%reason, "acknowledged events are missing; the log writer stops");
            self.stop(reason.clone());
            return Err(LogError::WriterStopped { reason });
        }
        Ok(())
    }

    /// Replaces the failed sled instance with a freshly opened one.
    fn reopen(&mut self) -> Result<(), LogError> {
        let path = self.shared.config.path.clone();
        if let Some(failed) = self.shared.database.take() {
            let failed = match sole_owner(failed) {
                Ok(failed) => failed,
                Err(failed) => {
                    self.shared.database.put(failed);
                    return Err(LogError::StorageUnavailable {
                        reason: "readers still hold the failed database open".to_owned(),
                    });
                }
            };
            drop(failed);
            wait_for_lock_release(&path);
        }
        // Left empty if this fails: reads say so until a later attempt opens it.
        let database = open_store(&self.shared.config)?;
        self.shared.database.put(Arc::new(database));
        Ok(())
    }
}

/// Waits (at most [`READERS_WAIT`]) until `database` has no other holder, and returns it.
fn sole_owner(mut database: Arc<Database>) -> Result<Database, Arc<Database>> {
    let deadline = Instant::now() + READERS_WAIT;
    loop {
        match Arc::try_unwrap(database) {
            Ok(database) => return Ok(database),
            Err(shared) if Instant::now() >= deadline => return Err(shared),
            Err(shared) => database = shared,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes, syncs and removes a file in `dir`: fails while the disk is full or the device
/// refuses writes.
fn probe_writable(dir: &Path) -> Result<(), LogError> {
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        let mut file = crate::private_files::create(&path)?;
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_data()
    })();
    // Removed whether or not it was written: a half-written probe must not hold the space.
    let removed = fs::remove_file(&path);
    written?;
    removed?;
    Ok(())
}

/// Removes every record stored past `head` (events, idempotency records) and writes the head
/// record for `head`, durably. Returns how many event blocks were removed.
fn cut_back_to(database: &Database, head: (Seq, Hash)) -> Result<usize, LogError> {
    let (seq, _) = head;
    let mut batch = sled::Batch::default();
    let mut removed = 0;
    for key in database
        .events
        .range(event_key(seq + 1)..=event_key(Seq::MAX))
        .keys()
    {
        batch.remove(key?);
        removed += 1;
    }
    for item in database.events.scan_prefix([IDEMPOTENCY_PREFIX]) {
        let (key, value) = item?;
        if decode_committed(&value).is_some_and(|committed| committed.last_seq > seq) {
            batch.remove(key);
        }
    }
    if head.0 == 0 {
        batch.remove(HEAD_KEY);
    } else {
        batch.insert(HEAD_KEY, &encode_head(head.0, &head.1)[..]);
    }
    database.events.apply_batch(batch)?;
    database.make_durable()?;
    Ok(removed)
}
