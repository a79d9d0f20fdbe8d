//! Shared set-up: a vault in a temporary directory, events appended through it, and a private
//! nats-server per test.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_bus::BusConfig;
use keyledger_crypto::MasterKey;
use keyledger_domain::{Actor, FromTrusted, KeyDuration, KeyName, UserId};
use keyledger_log::Durability;
use keyledger_testkit::nats::NatsServer;
use keyledger_vault::{CreatedApiKey, SystemClock, Vault, VaultConfig};

pub fn master_key() -> MasterKey {
    MasterKey::parse(&"ab".repeat(32)).expect("a fixed test master key")
}

pub fn open_vault(dir: &Path) -> Vault {
    open_vault_with_clock(dir, Arc::new(SystemClock))
}

/// [`open_vault`] reading the time from `clock`.
pub fn open_vault_with_clock(dir: &Path, clock: Arc<dyn keyledger_vault::Clock>) -> Vault {
    let config = VaultConfig {
        data_dir: dir.to_path_buf(),
        durability: Durability::Flush,
        ..VaultConfig::default()
    };
    Vault::open(config, &master_key(), clock).expect("open the vault")
}

pub fn nats() -> NatsServer {
    NatsServer::start().expect("start a private nats-server (apt-get install -y nats-server)")
}

/// Fast retries, so tests that take NATS away recover quickly.
pub fn bus_config(nats: &NatsServer) -> BusConfig {
    BusConfig {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ack_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..BusConfig::from_url(nats.url())
    }
}

pub fn admin() -> Actor {
    Actor::User {
        user: UserId::from_trusted("admin".to_owned()),
        key: None,
    }
}

pub async fn bootstrap(vault: &Vault) -> CreatedApiKey {
    vault
        .bootstrap(UserId::from_trusted("admin".to_owned()))
        .await
        .expect("bootstrap the first admin")
}

static KEY_NAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Creates `count` internal keys as the admin, `concurrency` at a time (one event each).
pub async fn create_keys(vault: &Vault, count: usize, concurrency: usize) -> Vec<CreatedApiKey> {
    let mut created = Vec::with_capacity(count);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    while created.len() < count {
        while tasks.len() < concurrency && next < count {
            let vault = vault.clone();
            // An owner's active keys have distinct names, across every call in a test.
            let name = KeyName::from_trusted(format!(
                "key-{}",
                KEY_NAMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            tasks.spawn(async move {
                vault
                    .create_api_key(admin(), name, KeyDuration::Never, None)
                    .await
            });
            next += 1;
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        created.push(done.expect("task").expect("create a key"));
    }
    created
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
