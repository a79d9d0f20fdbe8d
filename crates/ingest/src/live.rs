//! The in-memory side of a running job, which the job updates and views read: its phase, why
//! it stops, the files in flight and the bytes written.
//!
//! Guarantee: the first reason to stop wins; later ones never overwrite it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyledger_domain::{FailureKind, KeyStatus};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Where a running job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued = 0,
    Listing = 1,
    Fetching = 2,
}

/// Why a job stops before it has fetched everything. The first reason wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `IngestionCancelled` is (or is about to be) in the log.
    Cancelled,
    /// The key was deleted or expired while the job ran.
    KeyUnusable(KeyStatus),
    /// Nothing more can succeed (the provider rejects the key, the log cannot be written).
    Fatal(String, FailureKind),
    /// Someone else recorded the job's end (a restart's recovery in another process).
    FinishedElsewhere,
}

/// The in-memory side of a running job: its cancel token and live progress counters.
#[derive(Debug)]
pub(crate) struct LiveJob {
    /// Stops the listing and every fetch.
    pub cancel: CancellationToken,
    /// Fired once the job's task has ended (final event recorded, partial files removed).
    pub done: CancellationToken,
    stop: Mutex<Option<Stop>>,
    phase: AtomicU8,
    /// The files being fetched, by path.
    pub running: Mutex<BTreeMap<String, Arc<RunningFile>>>,
    /// Bytes written to partial files, files in flight included.
    pub transferred: AtomicU64,
    pub fetch_started: OnceLock<Instant>,
}

/// One file being fetched: its size and the bytes written so far.
#[derive(Debug)]
pub(crate) struct RunningFile {
    pub size: u64,
    pub fetched: AtomicU64,
}

impl LiveJob {
    pub fn new() -> LiveJob {
        LiveJob {
            cancel: CancellationToken::new(),
            done: CancellationToken::new(),
            stop: Mutex::new(None),
            phase: AtomicU8::new(Phase::Queued as u8),
            running: Mutex::new(BTreeMap::new()),
            transferred: AtomicU64::new(0),
            fetch_started: OnceLock::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Queued,
            1 => Phase::Listing,
            _ => Phase::Fetching,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Records why the job stops (unless a reason is already set) and stops it.
    pub fn request_stop(&self, stop: Stop) {
        self.stop.lock().get_or_insert(stop);
        self.cancel.cancel();
    }

    pub fn stop_reason(&self) -> Option<Stop> {
        self.stop.lock().clone()
    }

    /// `(path, size, bytes fetched)` of the files being fetched, by path.
    pub fn running_files(&self) -> Vec<(String, u64, u64)> {
        self.running
            .lock()
            .iter()
            .map(|(path, file)| {
                (
                    path.clone(),
                    file.size,
                    file.fetched.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    pub fn fetch_elapsed(&self) -> Option<Duration> {
        self.fetch_started.get().map(Instant::elapsed)
    }
}
