//! What every job of one ingestor shares: the vault, the configuration, the store, the live
//! jobs, and the metrics they report.
//!
//! Guarantee: a job counts in the `queued`/`running` gauges exactly while its [`GaugeGuard`]
//! lives, whatever way it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use keyledger_domain::IngestionId;
use keyledger_vault::Vault;
use parking_lot::{Mutex, MutexGuard};
use ring::rand::SystemRandom;
use tokio::sync::Semaphore;

use crate::IngestConfig;
use crate::live::LiveJob;
use crate::store::Store;

const JOBS_RUNNING: &str = "keyledger_ingest_jobs_running";
const JOBS_QUEUED: &str = "keyledger_ingest_jobs_queued";
const JOBS_FINISHED: &str = "keyledger_ingest_jobs_finished_total";
const FILES_FETCHED: &str = "keyledger_ingest_files_fetched_total";
const FILES_FAILED: &str = "keyledger_ingest_files_failed_total";
const BYTES_FETCHED: &str = "keyledger_ingest_bytes_fetched_total";

/// What every job of one ingestor shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub vault: Vault,
    pub config: IngestConfig,
    pub store: Store,
    pub rng: SystemRandom,
    jobs: Mutex<HashMap<IngestionId, Arc<LiveJob>>>,
    /// One permit per job allowed to run at once.
    pub slots: Arc<Semaphore>,
    queued: AtomicI64,
    running: AtomicI64,
}

impl Shared {
    pub fn new(vault: Vault, config: IngestConfig) -> Shared {
        let slots = Arc::new(Semaphore::new(config.max_jobs.max(1)));
        let store = match &config.object_store {
            Some(object) => Store::with_object(config.store_root.clone(), Arc::clone(object)),
            None => Store::new(config.store_root.clone()),
        };
        let shared = Shared {
            vault,
            config,
            store,
            rng: SystemRandom::new(),
            jobs: Mutex::new(HashMap::new()),
            slots,
            queued: AtomicI64::new(0),
            running: AtomicI64::new(0),
        };
        shared.report_gauges();
        shared
    }

    /// The live side of every job running in this process.
    pub fn lock_jobs(&self) -> MutexGuard<'_, HashMap<IngestionId, Arc<LiveJob>>> {
        self.jobs.lock()
    }

    pub fn live(&self, id: &IngestionId) -> Option<Arc<LiveJob>> {
        self.lock_jobs().get(id).cloned()
    }

    pub fn forget(&self, id: &IngestionId) {
        self.lock_jobs().remove(id);
    }

    fn report_gauges(&self) {
        let telemetry = self.vault.telemetry();
        telemetry.set_gauge(
            JOBS_RUNNING,
            "",
            "Ingestion jobs running in this process.",
            self.running.load(Ordering::Relaxed) as f64,
        );
        telemetry.set_gauge(
            JOBS_QUEUED,
            "",
            "Ingestion jobs waiting for a free slot in this process.",
            self.queued.load(Ordering::Relaxed) as f64,
        );
    }

    pub fn count_file_fetched(&self, bytes: u64) {
        let telemetry = self.vault.telemetry();
        telemetry.add_counter(
            FILES_FETCHED,
            "",
            "Sample files fetched, verified and stored.",
            1.0,
        );
        telemetry.add_counter(
            BYTES_FETCHED,
            "",
            "Bytes of sample files fetched, verified and stored.",
            bytes as f64,
        );
    }

    pub fn count_file_failed(&self) {
        self.vault.telemetry().add_counter(
            FILES_FAILED,
            "",
            "Sample files that could not be fetched, verified or stored.",
            1.0,
        );
    }

    pub fn count_job_finished(&self, outcome: &str) {
        self.vault.telemetry().add_counter(
            JOBS_FINISHED,
            &format!("outcome=\"{outcome}\""),
            "Ingestion jobs finished in this process, by outcome.",
            1.0,
        );
    }
}

/// Counts a job in a gauge while the guard lives.
#[derive(Debug)]
pub(crate) enum Gauge {
    Queued,
    Running,
}

#[derive(Debug)]
pub(crate) struct GaugeGuard {
    shared: Arc<Shared>,
    gauge: Gauge,
}

impl Gauge {
    pub fn enter(shared: &Arc<Shared>, gauge: Gauge) -> GaugeGuard {
        gauge.counter(shared).fetch_add(1, Ordering::Relaxed);
        shared.report_gauges();
        GaugeGuard {
            shared: Arc::clone(shared),
            gauge,
        }
    }

    fn counter<'s>(&self, shared: &'s Shared) -> &'s AtomicI64 {
        match self {
            Gauge::Queued => &shared.queued,
            Gauge::Running => &shared.running,
        }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge
            .counter(&self.shared)
            .fetch_sub(1, Ordering::Relaxed);
        self.shared.report_gauges();
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => Err(std::io::Error::other(error)),
    }
}
