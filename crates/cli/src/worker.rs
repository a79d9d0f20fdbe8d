//! `keyledger worker`: an ingestion worker process (decision 0025). It takes jobs from the NATS
//! work queue, leases each job's credential from the vault with its own key, and stores the
//! files in the shared sample store. The work itself is `keyledger_worker`; this is its
//! command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyledger_crypto::SecretString;
use keyledger_ingest::CancellationToken;

use crate::config::Config;
use crate::exit::{Exit, Failure};
use crate::{local, serve};

/// Where the worker's key comes from: never the command line (it would show in `ps`).
const KEY_VARIABLE: &str = "KEYLEDGER_WORKER_KEY";

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The vault's API, e.g. https://vault.example.org.
    #[arg(long, value_name = "URL")]
    pub vault: String,
    /// NATS (the vault's nats.url): the work queue.
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// The shared sample store: `file:///srv/samples` (or a plain path), or
    /// `s3://bucket/prefix` configured by `KEYLEDGER_STORE_ENDPOINT`, `…_REGION`,
    /// `…_ACCESS_KEY_ID`, `…_SECRET_ACCESS_KEY` (the operator's, not a user's key).
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// With an s3:// store: the local folder for partial downloads (default: a folder in the
    /// system's temporary directory, per process).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// A file holding the worker's internal key (a user with the `worker` role); default: the
    /// KEYLEDGER_WORKER_KEY environment variable.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Jobs at once in this process.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Files of one job fetched at once. Default: as an embedded job, `[ingest]
    /// files_in_parallel` large files (8) or `small_files_in_parallel` small ones (32).
    #[arg(long, value_name = "N")]
    pub files_per_job: Option<usize>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Seconds running jobs get to finish on SIGTERM before they are handed back.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// Configuration file: `[ingest]` (connector endpoints, retries, queue names) and `[nats]`
    /// (credentials, TLS) are read from it.
    #[arg(long, env = "KEYLEDGER_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn run(args: &WorkerArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    local::init_tracing(&config);
    let key = worker_key(args)?;
    let (store_root, object_store) = store(args)?;
    let mut ingest = serve::ingest_config_for(&config, false)?;
    ingest.store_root = store_root;
    ingest.object_store = object_store;
    if let Some(files) = args.files_per_job {
        if files == 0 {
            return Err(Failure::new(Exit::Usage, "--files-per-job: at least 1").into());
        }
        ingest.files_in_parallel = files;
        ingest.small_files_in_parallel = files;
    }
    let bus = local::bus_config(&config, Some(&args.nats))?.ok_or_else(|| {
        Failure::new(
            Exit::Usage,
            "--nats: give the URL of the vault's NATS server",
        )
    })?;
    let queue = serve::job_queue_config(&config)?;
    let worker_config = keyledger_worker::WorkerConfig {
        bus,
        queue,
        ingest,
        concurrency: args.concurrency,
        listen: args.listen,
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        ..keyledger_worker::WorkerConfig::new(
            args.vault.clone(),
            key,
            args.nats.clone(),
            PathBuf::new(),
        )
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keyledger-worker")
        .build()?;
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        {
            let shutdown = shutdown.clone();
            let signal = local::shutdown_signal();
            tokio::spawn(async move {
                signal.await;
                tracing::info!("shutdown requested: draining");
                shutdown.cancel();
            });
        }
        let metrics = Arc::new(keyledger_worker::Metrics::default());
        keyledger_worker::run(worker_config, metrics, shutdown, |address| {
            println!("keyledger worker: health on http://{address}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        })
        .await
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    result.map_err(|error| Failure::new(Exit::Server, error.to_string()).into())
}

fn worker_key(args: &WorkerArgs) -> anyhow::Result<SecretString> {
    let text = match &args.key_file {
        Some(path) => std::fs::read_to_string(path).map_err(|error| {
            Failure::new(
                Exit::Usage,
                format!("--key-file: cannot read {}: {error}", path.display()),
            )
        })?,
        None => std::env::var(KEY_VARIABLE).map_err(|_| {
            Failure::new(
                Exit::Usage,
                format!(
                    "the worker needs its own key: set {KEY_VARIABLE} or --key-file (a user with the `worker` role; `keyledger admin users create worker-1 --role worker` and issue it a key)"
                ),
            )
        })?,
    };
    let key = text.trim();
    if key.is_empty() {
        return Err(Failure::new(Exit::Usage, "the worker's key is empty").into());
    }
    Ok(SecretString::new(key.to_owned()))
}

/// The store's local root and, for `s3://bucket/prefix`, the object store (decision 0029).
type StoreChoice = (PathBuf, Option<Arc<keyledger_ingest::ObjectTarget>>);

fn store(args: &WorkerArgs) -> anyhow::Result<StoreChoice> {
    if !args.store.starts_with("s3://") {
        if args.scratch.is_some() {
            return Err(Failure::new(
                Exit::Usage,
                "--scratch is for s3:// stores; a file:// store keeps its partial files inside",
            )
            .into());
        }
        return Ok((store_root(&args.store)?, None));
    }
    let target = keyledger_ingest::ObjectTarget::from_url(
        &args.store,
        keyledger_ingest::ObjectTarget::env_options(),
    )
    .map_err(|reason| Failure::new(Exit::Usage, format!("--store: {reason}")))?;
    let scratch = args.scratch.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("keyledger-worker-{}", std::process::id()))
    });
    Ok((scratch, Some(Arc::new(target))))
}

/// `file:///srv/samples` or a plain path.
fn store_root(url: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(Failure::new(
                Exit::Usage,
                "--store: a file URL names an absolute path: file:///srv/samples",
            )
            .into());
        }
        return Ok(PathBuf::from(path));
    }
    if url.contains("://") {
        return Err(Failure::new(
            Exit::Usage,
            "--store: give file:///path (a folder every worker and the vault share) or s3://bucket/prefix",
        )
        .into());
    }
    Ok(PathBuf::from(url))
}
