//! `keyledger serve`: opens the vault, bootstraps the first admin on an empty data directory,
//! runs the background work and the REST API until SIGINT/SIGTERM, then flushes key usage.
//!
//! Shutdown is bounded: the HTTP server gives requests in flight `http.shutdown_grace_ms` and
//! then closes every connection, and the steps after it (relay, usage flush) get the same grace
//! each, so the process exits and releases the data directory's lock promptly and a new `serve`
//! on the same directory can start right away.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use keyledger_domain::UserId;

use crate::config::Config;
use crate::exit::{Exit, Failure};
use crate::local;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file, merged over the embedded default (config/keyledger.toml).
    #[arg(long, env = "KEYLEDGER_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    local::init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keyledger")
        .build()?;
    let grace = config.api_config().shutdown_grace;
    let result = runtime.block_on(serve(config));
    // Tasks still running (an ingestion job, a blocking read) must not hold the exit up.
    runtime.shutdown_timeout(grace);
    result
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let master = local::master_key(&config)?;
    let vault = local::open_vault(&config, &master)?;
    drop(master);
    if !vault.read(|state| state.has_users()) {
        let admin = UserId::parse(&config.bootstrap.admin_user)
            .map_err(|err| Failure::new(Exit::Usage, err.to_string()))?;
        let created = vault
            .bootstrap(admin.clone())
            .await
            .context("cannot create the first admin")?;
        local::print_admin_key(&admin, &created);
    }
    let background = vault.spawn_background();
    let listener = tokio::net::TcpListener::bind(&config.http.addr)
        .await
        .map_err(|err| {
            Failure::new(
                Exit::Server,
                format!(
                    "cannot listen on {} (http.addr / KEYLEDGER_HTTP_ADDR): {err}",
                    config.http.addr
                ),
            )
        })?;
    let address = listener.local_addr()?;
    println!("keyledger listening on http://{address}");
    let _ = std::io::stdout().flush();
    tracing::info!(%address, data_dir = %config.data_dir.display(), "serving");

    let ingest_config = ingest_config(&config)?;
    let ingestor = keyledger_ingest::Ingestor::new(vault.clone(), ingest_config.clone());
    match ingestor.recover().await {
        Ok(report) => tracing::info!(?report, "ingestion recovered after start"),
        Err(err) => tracing::warn!(error = %err, "could not recover interrupted ingestions"),
    }
    if config.http.trust_forwarded_for && config.http.trusted_proxy_hops == 0 {
        tracing::warn!(
            "http.trust_forwarded_for is deprecated; it means http.trusted_proxy_hops = 1: \
             set that to the number of proxies in front of keyledger instead"
        );
    }
    let api_config = config.api_config();
    let grace = api_config.shutdown_grace;
    let state = keyledger_api::ApiState::new(vault.clone(), api_config)
        .with_credential_checker(std::sync::Arc::new(keyledger_api::ProviderChecker::new(
            ingest_config,
        )))
        .with_ingestor(ingestor);
    let relay = match local::bus_config(&config, None)? {
        Some(bus) => {
            tracing::info!(url = %bus.url, stream = %bus.stream, "publishing events to NATS JetStream");
            Some(keyledger_bus::Relay::spawn(vault.clone(), bus))
        }
        None => None,
    };
    let served = keyledger_api::serve(listener, state, local::shutdown_signal()).await;
    background.abort();
    if let Some(relay) = relay
        && tokio::time::timeout(grace, relay.shutdown()).await.is_err()
    {
        tracing::warn!(
            "the relay did not stop within the shutdown grace; it resumes from its checkpoint at the next start"
        );
    }
    match tokio::time::timeout(grace, vault.flush_usage()).await {
        Ok(Ok(recorded)) => tracing::info!(recorded, "key usage flushed"),
        Ok(Err(err)) => tracing::warn!(error = %err, "could not flush key usage at shutdown"),
        Err(_) => tracing::warn!("key usage was not flushed within the shutdown grace"),
    }
    tracing::info!("stopped");
    served
        .map_err(|err| Failure::new(Exit::Server, format!("the HTTP server failed: {err}")).into())
}

/// `[ingest]`: where sample files go and how the connectors reach their providers.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct IngestSection {
    store_root: Option<PathBuf>,
    s3_endpoint: Option<String>,
    s3_force_path_style: bool,
    sts_endpoint: Option<String>,
    dnanexus_api_url: Option<String>,
    max_attempts: u32,
    files_in_parallel: Option<usize>,
    max_jobs: Option<usize>,
    preview_max_scanned: Option<u64>,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            store_root: None,
            s3_endpoint: None,
            s3_force_path_style: true,
            sts_endpoint: None,
            dnanexus_api_url: None,
            max_attempts: 0,
            files_in_parallel: None,
            max_jobs: None,
            preview_max_scanned: None,
        }
    }
}

fn ingest_config(config: &Config) -> anyhow::Result<keyledger_ingest::IngestConfig> {
    let section: IngestSection = config.section("ingest")?.unwrap_or_default();
    let mut ingest = keyledger_ingest::IngestConfig {
        store_root: section
            .store_root
            .filter(|root| !root.as_os_str().is_empty())
            .unwrap_or_else(|| config.data_dir.join("samples")),
        ..keyledger_ingest::IngestConfig::default()
    };
    if let Some(endpoint) = section.s3_endpoint.filter(|e| !e.is_empty()) {
        ingest.s3.endpoint = Some(endpoint);
        ingest.s3.force_path_style = section.s3_force_path_style;
    }
    ingest.sts_endpoint = section.sts_endpoint.filter(|e| !e.is_empty());
    if let Some(url) = section.dnanexus_api_url.filter(|u| !u.is_empty()) {
        ingest.dnanexus.api_url = url;
    }
    if section.max_attempts > 0 {
        ingest.s3.max_attempts = section.max_attempts;
        ingest.dnanexus.max_attempts = section.max_attempts;
    }
    if let Some(files) = section.files_in_parallel {
        ingest.files_in_parallel = files.max(1);
    }
    if let Some(jobs) = section.max_jobs {
        ingest.max_jobs = jobs.max(1);
    }
    if let Some(scanned) = section.preview_max_scanned {
        ingest.preview_max_scanned = scanned.max(1);
    }
    Ok(ingest)
}
