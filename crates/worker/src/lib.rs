//! `keyledger worker`: an ingestion worker process (decision 0025). Any number of them, on any
//! number of machines, share the work queue's durable pull consumer; each job's credential is
//! leased from the vault for that job only, its files fetched, verified, stored in the shared
//! sample store, and reported back to the vault, which records them.
//!
//! Guarantees, and how:
//! - **A job is never lost**: a job message is acknowledged only once its end is recorded in the
//!   vault's log (or the vault says it is over); while it runs the worker sends progress acks
//!   every third of `ack_wait`, so a worker that dies leaves the job to another one after
//!   `ack_wait`.
//! - **Nothing recorded twice**: the vault skips a file or listing already recorded, and a new
//!   lease ends the old one (`keyledger_vault::JobGrant`).
//! - **The last delivery fails the job**: a job delivered `max_deliver` times is recorded as
//!   failed with that reason, and terminated.
//! - **Secrets stay in memory**: the credential arrives over the worker's authenticated HTTPS
//!   connection, goes into the connectors' secret types, and is never written, logged or
//!   counted; the worker writes only sample files and partial files.
//! - **Drain**: on shutdown the worker stops taking jobs, gives running ones `drain_timeout` to
//!   finish, then stops them and hands them back (`-NAK`).
//!
//! Files: `client` (the vault's worker routes), `health` (`/healthz`, `/readyz`, `/metrics`),
//! `run` (the queue loop and one job).

mod client;
mod health;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use keyledger_bus::BusConfig;
use keyledger_bus::jobs::JobQueueConfig;
use keyledger_crypto::SecretString;
use keyledger_ingest::IngestConfig;

pub use health::Metrics;
pub use run::run;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The vault's API: `https://vault.example.org`.
    pub vault_url: String,
    /// The worker's own internal key (a user with the `worker` role). Never printed.
    pub api_key: SecretString,
    /// Where NATS is (the vault's `[nats]`).
    pub bus: BusConfig,
    pub queue: JobQueueConfig,
    /// Where samples go (`store_root`), and how the connectors reach the providers.
    pub ingest: IngestConfig,
    /// Jobs at once in this process.
    pub concurrency: usize,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    /// How long running jobs may take to finish on shutdown before they are handed back.
    pub drain_timeout: Duration,
}

impl WorkerConfig {
    /// A worker of the vault at `vault_url` with the key `api_key`, NATS at `nats_url` and the
    /// sample store at `store_root`; everything else the defaults.
    pub fn new(
        vault_url: String,
        api_key: SecretString,
        nats_url: String,
        store_root: PathBuf,
    ) -> WorkerConfig {
        WorkerConfig {
            vault_url,
            api_key,
            bus: BusConfig::from_url(nats_url),
            queue: JobQueueConfig::default(),
            ingest: IngestConfig {
                store_root,
                ..IngestConfig::default()
            },
            concurrency: 4,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] keyledger_bus::BusError),
    #[error("cannot serve /healthz on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}
