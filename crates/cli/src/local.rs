//! What the commands that work on this machine share — `serve`, `replica`, `admin bootstrap`,
//! `events tail`: the master key, opening the vault, tracing, the `[nats]` section and the
//! shutdown signal. It sits below those commands' files and uses none of them, so they never
//! import each other.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use keyledger_bus::BusConfig;
use keyledger_bus::replica::LagLimits;
use keyledger_crypto::MasterKey;
use keyledger_domain::UserId;
use keyledger_vault::{
    CreatedApiKey, MasterKeyOrigin, SystemClock, Vault, VaultError, load_or_create_master_key,
};

use crate::config::Config;
use crate::exit::{Exit, Failure};

/// The master key: `KEYLEDGER_MASTER_KEY` (the key itself), else the configured file, generated
/// there on first use with a warning that production must pass its own.
pub fn master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("KEYLEDGER_MASTER_KEY") {
        return MasterKey::parse(text.trim()).map_err(|err| {
            Failure::new(Exit::Usage, format!("KEYLEDGER_MASTER_KEY: {err}")).into()
        });
    }
    let path = config.master_key_path();
    let (key, origin) = load_or_create_master_key(&path)
        .map_err(|err| Failure::new(Exit::Usage, err.to_string()))?;
    if origin == MasterKeyOrigin::Generated {
        eprintln!(
            "warning: generated a new master key in {} (mode 0600). That is fine for development only: \
             in production pass your own key (KEYLEDGER_MASTER_KEY_FILE or KEYLEDGER_MASTER_KEY) and back it up \
             apart from the data — without it the data directory cannot be read.",
            path.display()
        );
    }
    Ok(key)
}

/// The master key of an existing vault, for processes that must never generate one (replicas).
pub fn master_key_existing(config: &Config) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("KEYLEDGER_MASTER_KEY") {
        return MasterKey::parse(text.trim()).map_err(|err| {
            Failure::new(Exit::Usage, format!("KEYLEDGER_MASTER_KEY: {err}")).into()
        });
    }
    keyledger_vault::read_master_key(&config.master_key_path())
        .map_err(|err| Failure::new(Exit::Usage, err.to_string()).into())
}

/// Prints the first admin's key to standard output, once, with a notice around it.
pub fn print_admin_key(admin: &UserId, created: &CreatedApiKey) {
    let rule = "=".repeat(72);
    println!("{rule}");
    println!(
        "keyledger: created the first admin `{admin}` with this API key (id {}):",
        created.id
    );
    println!();
    println!("    {}", created.secret.expose());
    println!();
    println!("It is shown only this once. Store it now, e.g. `keyledger login` and paste it.");
    println!("{rule}");
    let _ = std::io::stdout().flush();
}

/// Resolves at SIGINT or SIGTERM. The handlers are registered when this is called, not when the
/// future is first polled: call it before announcing that the process is up, so that a signal
/// sent as soon as the address is printed stops the process gracefully instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            },
            (interrupt, terminate) => {
                tracing::warn!(
                    sigint = interrupt.is_ok(),
                    sigterm = terminate.is_ok(),
                    "cannot listen for every stop signal; stopping at the one that can be heard"
                );
                if let Ok(mut interrupt) = interrupt {
                    interrupt.recv().await;
                } else if let Ok(mut terminate) = terminate {
                    terminate.recv().await;
                } else {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

pub fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},sled=warn", config.log.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if config.log.format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Opens the vault in the configured data directory, explaining the usual failures.
pub fn open_vault(config: &Config, master: &MasterKey) -> anyhow::Result<Vault> {
    Vault::open(config.vault_config()?, master, Arc::new(SystemClock)).map_err(|err| {
        let text = err.to_string();
        if matches!(err, VaultError::Locked { .. }) {
            Failure::new(
                Exit::Conflict,
                format!(
                    "the data directory {} is in use by a running keyledger server; stop it first \
                     (or, once an admin exists, manage users over HTTP with `keyledger admin users …`)",
                    config.data_dir.display()
                ),
            )
            .into()
        } else {
            anyhow::Error::from(Failure::new(Exit::Server, format!("cannot open the vault in {}: {text}", config.data_dir.display())))
        }
    })
}

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

/// `nats.replica_max_lag_events` and `nats.replica_max_lag_seconds`: past either, the replica
/// answers 503 on `/healthz`.
pub fn lag_limits(config: &Config) -> anyhow::Result<LagLimits> {
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
