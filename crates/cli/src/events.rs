//! `keyledger events tail` and `keyledger replica`: the NATS side of the vault, and the `[nats]`
//! configuration section that `serve` uses to start the outbox relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use keyledger_bus::replica::LagLimits;
use keyledger_bus::{BusConfig, StartAt, TailOptions};
use keyledger_domain::Timestamp;

use crate::config::Config;
use crate::exit::{Exit, Failure};

/// `[nats]`: publication is off while `url` is empty (the embedded default) and on as soon as it
/// is set.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    url: String,
    stream: String,
    subject_prefix: String,
    replicate: bool,
    credentials_file: String,
    token: String,
    tls_required: bool,
    ca_file: String,
    replica_max_lag_events: u64,
    replica_max_lag_seconds: u64,
}

impl Default for NatsSection {
    fn default() -> Self {
        let bus = BusConfig::default();
        NatsSection {
            url: String::new(),
            stream: bus.stream,
            subject_prefix: bus.subject_prefix,
            replicate: bus.replicate,
            credentials_file: String::new(),
            token: String::new(),
            tls_required: false,
            ca_file: String::new(),
            replica_max_lag_events: LagLimits::default().max_lag_events,
            replica_max_lag_seconds: LagLimits::default().max_silence.as_secs(),
        }
    }
}

/// The bus configuration, or `None` when publication is off.
pub fn bus_config(
    config: &Config,
    url_override: Option<&str>,
) -> anyhow::Result<Option<BusConfig>> {
    let section: NatsSection = config.section("nats")?.unwrap_or_default();
    let url = url_override.map(str::to_owned).unwrap_or(section.url);
    if url.trim().is_empty() {
        return Ok(None);
    }
    let non_empty = |s: String| (!s.trim().is_empty()).then_some(s);
    Ok(Some(BusConfig {
        url,
        stream: section.stream,
        subject_prefix: section.subject_prefix,
        replicate: section.replicate,
        credentials_file: non_empty(section.credentials_file).map(PathBuf::from),
        token: non_empty(section.token),
        tls_required: section.tls_required,
        ca_file: non_empty(section.ca_file).map(PathBuf::from),
        ..BusConfig::default()
    }))
}

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print events from the NATS stream: human lines, or the published JSON with --json.
    Tail {
        /// Start at this log sequence number, or at a time (RFC 3339 or a date).
        #[arg(long)]
        from: Option<String>,
        /// Keep printing new events.
        #[arg(long)]
        follow: bool,
        /// Only this subject (suffix or full), wildcards allowed: `api_key.*`.
        #[arg(long)]
        subject: Option<String>,
        /// The NATS server [default: nats.url / KEYLEDGER_NATS_URL].
        #[arg(long)]
        nats_url: Option<String>,
        /// Configuration file, merged over the embedded default.
        #[arg(long, env = "KEYLEDGER_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReplicaArgs {
    /// Where the replica's HTTP API (`POST /v1/keys/verify`) listens.
    #[arg(long, default_value = "127.0.0.1:8081", env = "KEYLEDGER_REPLICA_ADDR")]
    http_addr: SocketAddr,
    /// The NATS server [default: nats.url / KEYLEDGER_NATS_URL].
    #[arg(long)]
    nats_url: Option<String>,
    /// Configuration file, merged over the embedded default (for [nats] and the master key).
    #[arg(long, env = "KEYLEDGER_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(command: &EventsCommand, json: bool) -> anyhow::Result<()> {
    let EventsCommand::Tail {
        from,
        follow,
        subject,
        nats_url,
        config,
    } = command;
    let config = Config::load(config.as_deref())?;
    let bus = require_bus(&config, nats_url.as_deref())?;
    let from = match from.as_deref() {
        None => StartAt::Beginning,
        Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => StartAt::Seq(
            text.parse()
                .map_err(|_| Failure::new(Exit::Usage, format!("--from: `{text}` is too large")))?,
        ),
        Some(text) => StartAt::Time(
            Timestamp::parse_rfc3339(text)
                .map_err(|err| Failure::new(Exit::Usage, format!("--from: {err}")))?,
        ),
    };
    let options = TailOptions {
        from,
        follow: *follow,
        subject: subject.clone(),
        json,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut out = std::io::stdout();
        keyledger_bus::tail(&bus, &options, &mut out)
            .await
            .map_err(|err| Failure::new(Exit::Server, err.to_string()))
    })?;
    Ok(())
}

pub fn run_replica(args: &ReplicaArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    crate::serve::init_tracing(&config);
    let bus = require_bus(&config, args.nats_url.as_deref())?;
    let master_key = crate::serve::master_key_existing(&config)?;
    let limits = lag_limits(&config)?;
    let replica = keyledger_bus::replica::ReplicaConfig {
        bus,
        http_addr: args.http_addr,
        master_key,
        limits,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        keyledger_bus::replica::run(replica, crate::serve::shutdown_signal())
            .await
            .map_err(|err| Failure::new(Exit::Server, err.to_string()))
    })?;
    Ok(())
}

/// `nats.replica_max_lag_events` and `nats.replica_max_lag_seconds`: past either, the replica
/// answers 503 on `/healthz`.
fn lag_limits(config: &Config) -> anyhow::Result<LagLimits> {
    let section: NatsSection = config.section("nats")?.unwrap_or_default();
    if section.replica_max_lag_seconds == 0 {
        return Err(Failure::new(
            Exit::Usage,
            "nats.replica_max_lag_seconds must be at least 1 (the replica probes the stream every second)",
        )
        .into());
    }
    Ok(LagLimits {
        max_lag_events: section.replica_max_lag_events,
        max_silence: std::time::Duration::from_secs(section.replica_max_lag_seconds),
        ..LagLimits::default()
    })
}

fn require_bus(config: &Config, url: Option<&str>) -> anyhow::Result<BusConfig> {
    bus_config(config, url)?.ok_or_else(|| {
        Failure::new(Exit::Usage, "no NATS server configured: pass --nats-url, set KEYLEDGER_NATS_URL, or nats.url in the configuration").into()
    })
}
