use std::sync::Arc;

use keyledger_crypto::MasterKey;
use keyledger_domain::{Action, Actor, RoleName, Timestamp, UserId};
use keyledger_vault::{ManualClock, Vault, VaultConfig};
use tempfile::TempDir;

pub const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);

pub struct TestVault {
    pub vault: Vault,
    pub clock: Arc<ManualClock>,
    pub master: MasterKey,
    pub dir: TempDir,
    pub admin_key: String,
}

pub fn config(dir: &std::path::Path) -> VaultConfig {
    VaultConfig {
        data_dir: dir.to_path_buf(),
        ..VaultConfig::default()
    }
}

/// A fresh vault with an admin and a `dev` user holding the `developer` role.
pub async fn vault() -> TestVault {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let vault = Vault::open(config(dir.path()), &master, clock.clone()).unwrap();
    let admin = vault.bootstrap(user("admin")).await.unwrap();
    vault
        .run(
            admin_actor(),
            Action::CreateUser {
                user: user("dev"),
                display_name: None,
                roles: vec![RoleName::parse("developer").unwrap()],
            },
        )
        .await
        .unwrap();
    TestVault {
        vault,
        clock,
        master,
        dir,
        admin_key: admin.secret.expose().to_owned(),
    }
}

impl TestVault {
    /// Closes and reopens the vault on the same directory and master key.
    pub fn reopen(self) -> TestVault {
        let TestVault {
            vault,
            clock,
            master,
            dir,
            admin_key,
        } = self;
        drop(vault);
        let vault = Vault::open(config(dir.path()), &master, clock.clone()).unwrap();
        TestVault {
            vault,
            clock,
            master,
            dir,
            admin_key,
        }
    }
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn admin_actor() -> Actor {
    Actor::User {
        user: user("admin"),
        key: None,
    }
}

pub fn dev() -> Actor {
    Actor::User {
        user: user("dev"),
        key: None,
    }
}
