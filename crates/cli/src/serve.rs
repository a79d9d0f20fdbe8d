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
    // Registered before the address is announced: a SIGTERM from then on is a graceful stop.
    let shutdown = local::shutdown_signal();
    println!("keyledger listening on http://{address}");
    let _ = std::io::stdout().flush();
    tracing::info!(%address, data_dir = %config.data_dir.display(), "serving");

    let ingest_config = ingest_config(&config)?;
    let workers = ingest_config.workers;
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
        .with_credential_checker(std::sync::Arc::new(
            keyledger_api::ProviderChecker::new(ingest_config).recording_in(vault.clone()),
        ))
        .with_ingestor(ingestor);
    // Saved sources run on schedule from this process only: a replica never starts a job.
    let scheduler = keyledger_api::spawn_source_scheduler(&state);
    let bus = local::bus_config(&config, None)?;
    let relay = match &bus {
        Some(bus) => {
            tracing::info!(url = %bus.url, stream = %bus.stream, "publishing events to NATS JetStream");
            Some(keyledger_bus::Relay::spawn(vault.clone(), bus.clone()))
        }
        None => None,
    };
    let dispatcher = match (workers, bus) {
        (keyledger_ingest::Workers::External, Some(bus)) => {
            let queue = job_queue_config(&config)?;
            tracing::info!(stream = %queue.stream, "ingestion jobs go to the work queue");
            Some(keyledger_bus::jobs::Dispatcher::spawn(
                vault.clone(),
                bus,
                queue,
            ))
        }
        (keyledger_ingest::Workers::External, None) => {
            return Err(Failure::new(
                Exit::Usage,
                "ingest.workers = \"external\" needs nats.url: the jobs go to worker processes over NATS",
            )
            .into());
        }
        (keyledger_ingest::Workers::Embedded, _) => None,
    };
    let served = keyledger_api::serve(listener, state, shutdown).await;
    background.abort();
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    if let Some(dispatcher) = dispatcher
        && tokio::time::timeout(grace, dispatcher.shutdown())
            .await
            .is_err()
    {
        tracing::warn!("the job dispatcher did not stop within the shutdown grace");
    }
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
    /// `s3://bucket/prefix`: the shared sample store on S3 (decision 0029), configured by
    /// `KEYLEDGER_STORE_*`; `store_root` then holds only partial downloads.
    store_url: Option<String>,
    s3_endpoint: Option<String>,
    s3_force_path_style: bool,
    sts_endpoint: Option<String>,
    dnanexus_api_url: Option<String>,
    max_attempts: u32,
    files_in_parallel: Option<usize>,
    max_jobs: Option<usize>,
    /// `embedded` (this process runs the jobs) or `external` (`keyledger worker` processes).
    workers: String,
    /// The work queue's stream and shared consumer (external workers).
    queue_stream: Option<String>,
    queue_consumer: Option<String>,
    /// A job without an ack or progress ack for this long goes to another worker.
    queue_ack_wait_ms: Option<u64>,
    /// Deliveries of one job at most; the last one records its failure.
    max_deliveries: Option<i64>,
    aws_role_credentials_file: Option<PathBuf>,
    aws_role_profile: String,
    aws_role_principal_arn: Option<String>,
    aws_role_session_seconds: u64,
    preview_max_scanned: Option<u64>,
    /// Seconds between the scheduler's looks for saved sources that are due.
    schedule_tick_secs: Option<u64>,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            store_root: None,
            store_url: None,
            s3_endpoint: None,
            s3_force_path_style: true,
            sts_endpoint: None,
            dnanexus_api_url: None,
            max_attempts: 0,
            files_in_parallel: None,
            max_jobs: None,
            workers: "embedded".to_owned(),
            queue_stream: None,
            queue_consumer: None,
            queue_ack_wait_ms: None,
            max_deliveries: None,
            aws_role_credentials_file: None,
            aws_role_profile: "default".to_owned(),
            aws_role_principal_arn: None,
            aws_role_session_seconds: 3600,
            preview_max_scanned: None,
            schedule_tick_secs: None,
        }
    }
}

/// `[ingest] queue_*` and `max_deliveries`: the work queue of external workers.
pub fn job_queue_config(config: &Config) -> anyhow::Result<keyledger_bus::jobs::JobQueueConfig> {
    let section: IngestSection = config.section("ingest")?.unwrap_or_default();
    let mut queue = keyledger_bus::jobs::JobQueueConfig::default();
    if let Some(stream) = section.queue_stream.filter(|s| !s.is_empty()) {
        queue.stream = stream;
    }
    if let Some(consumer) = section.queue_consumer.filter(|s| !s.is_empty()) {
        queue.consumer = consumer;
    }
    if let Some(millis) = section.queue_ack_wait_ms {
        queue.ack_wait = std::time::Duration::from_millis(millis.max(100));
    }
    if let Some(deliveries) = section.max_deliveries {
        queue.max_deliver = deliveries;
    }
    queue
        .check()
        .map_err(|error| Failure::new(Exit::Usage, error.to_string()))?;
    Ok(queue)
}

pub fn ingest_config(config: &Config) -> anyhow::Result<keyledger_ingest::IngestConfig> {
    ingest_config_for(config, true)
}

/// `[ingest]` of the vault (`platform_key`: with the platform's AWS key for `role` keys) or of a
/// worker, which never reads that key: the vault assumes roles for workers' jobs (decision 0030).
pub fn ingest_config_for(
    config: &Config,
    platform_key: bool,
) -> anyhow::Result<keyledger_ingest::IngestConfig> {
    let section: IngestSection = config.section("ingest")?.unwrap_or_default();
    let aws_role = if platform_key {
        aws_role_platform(&section)?
    } else {
        if section
            .aws_role_credentials_file
            .as_ref()
            .is_some_and(|file| !file.as_os_str().is_empty())
        {
            tracing::warn!(
                "ingest.aws_role_credentials_file is for the vault only: this worker does not read it (the vault assumes roles for workers' jobs)"
            );
        }
        None
    };
    let mut ingest = keyledger_ingest::IngestConfig {
        aws_role,
        store_root: section
            .store_root
            .filter(|root| !root.as_os_str().is_empty())
            .unwrap_or_else(|| config.data_dir.join("samples")),
        ..keyledger_ingest::IngestConfig::default()
    };
    if let Some(url) = section.store_url.filter(|u| !u.is_empty()) {
        let target = keyledger_ingest::ObjectTarget::from_url(
            &url,
            keyledger_ingest::ObjectTarget::env_options(),
        )
        .map_err(|reason| Failure::new(Exit::Usage, format!("[ingest] store_url: {reason}")))?;
        ingest.object_store = Some(std::sync::Arc::new(target));
    }
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
    ingest.workers = match section.workers.as_str() {
        "" | "embedded" => keyledger_ingest::Workers::Embedded,
        "external" => keyledger_ingest::Workers::External,
        _ => {
            return Err(Failure::new(
                Exit::Usage,
                "ingest.workers must be \"embedded\" (this process runs the jobs) or \"external\" (keyledger worker processes over NATS)",
            )
            .into());
        }
    };
    if let Some(scanned) = section.preview_max_scanned {
        ingest.preview_max_scanned = scanned.max(1);
    }
    if let Some(secs) = section.schedule_tick_secs {
        ingest.schedule_tick = std::time::Duration::from_secs(secs.max(1));
    }
    Ok(ingest)
}

/// The platform's own AWS key for assuming users' roles: only from the credentials file the
/// operator names (`[ingest] aws_role_credentials_file`), never from the environment, the
/// default profile or instance metadata (decision 0023).
fn aws_role_platform(
    section: &IngestSection,
) -> anyhow::Result<Option<keyledger_ingest::AwsRolePlatform>> {
    let Some(file) = section
        .aws_role_credentials_file
        .as_ref()
        .filter(|file| !file.as_os_str().is_empty())
    else {
        return Ok(None);
    };
    if !(900..=43_200).contains(&section.aws_role_session_seconds) {
        anyhow::bail!(
            "[ingest] aws_role_session_seconds is {}: AWS accepts 900 to 43200 (and at most the role's maximum session)",
            section.aws_role_session_seconds
        );
    }
    let profile = section.aws_role_profile.trim();
    // The config file is not read: the credentials file alone holds the platform's key.
    let loaded = crate::aws_profile::AwsProfile::from_files(profile, file.clone(), file.clone())
        .map_err(|error| anyhow::anyhow!("[ingest] aws_role_credentials_file: {error:#}"))?;
    if loaded.session_token.is_some() {
        anyhow::bail!(
            "[ingest] aws_role_credentials_file: profile `{profile}` in {} holds temporary credentials; \
             assuming users' roles needs the platform's long-lived key (a session cannot be refreshed by keyledger)",
            file.display()
        );
    }
    let principal_arn = section
        .aws_role_principal_arn
        .clone()
        .filter(|arn| !arn.trim().is_empty());
    tracing::info!(
        file = %file.display(),
        profile,
        access_key_id = %keyledger_domain::KeyHint::mask(&loaded.access_key_id, 4, 4),
        "the platform's AWS key for assuming users' roles"
    );
    Ok(Some(keyledger_ingest::AwsRolePlatform {
        credentials: keyledger_ingest::AwsCredentials {
            access_key_id: loaded.access_key_id,
            secret_access_key: loaded.secret_access_key.expose().to_owned(),
            region: loaded.region.unwrap_or_else(|| "us-east-1".to_owned()),
            session_token: None,
            expires_at: None,
        },
        principal_arn,
        session_duration: std::time::Duration::from_secs(section.aws_role_session_seconds),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(file: Option<&std::path::Path>, profile: &str, seconds: u64) -> IngestSection {
        IngestSection {
            aws_role_credentials_file: file.map(std::path::Path::to_path_buf),
            aws_role_profile: profile.to_owned(),
            aws_role_principal_arn: Some("arn:aws:iam::999988887777:user/keyledger".to_owned()),
            aws_role_session_seconds: seconds,
            ..IngestSection::default()
        }
    }

    #[test]
    fn the_platforms_key_for_roles_comes_only_from_the_named_file() {
        // Nothing named: no key, whatever the environment or ~/.aws hold.
        assert!(
            aws_role_platform(&section(None, "default", 3600))
                .unwrap()
                .is_none()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[platform]\naws_access_key_id = AKIAROLEPLATFORM0001\n\
             aws_secret_access_key = rolePlatformSecret0123456789abcdefghijkl\n\
             [temporary]\naws_access_key_id = ASIAROLEPLATFORM0001\n\
             aws_secret_access_key = x\naws_session_token = t\n",
        )
        .unwrap();
        let platform = aws_role_platform(&section(Some(&file), "platform", 900))
            .unwrap()
            .unwrap();
        assert_eq!(platform.credentials.access_key_id, "AKIAROLEPLATFORM0001");
        assert_eq!(
            platform.session_duration,
            std::time::Duration::from_secs(900)
        );
        assert!(!format!("{platform:?}").contains("rolePlatformSecret"));
        let refused = |profile: &str, seconds: u64| {
            format!(
                "{:#}",
                aws_role_platform(&section(Some(&file), profile, seconds)).unwrap_err()
            )
        };
        assert!(refused("temporary", 3600).contains("temporary credentials"));
        assert!(refused("missing", 3600).contains("no AWS profile `missing`"));
        assert!(refused("platform", 60).contains("900 to 43200"));
    }
}
