use std::path::Path;
use std::sync::Arc;

use keyledger_crypto::{MasterKey, SecretString};
use keyledger_domain::{
    Action, Actor, ExternalKeyId, GracePeriod, KeyDuration, KeyId, KeyName, Label, RoleName,
    Timestamp, UserId,
};
use keyledger_log::Durability;
use keyledger_vault::{AuditConfig, ManualClock, NewCredential, Vault, VaultConfig};
use tempfile::TempDir;

pub const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);
pub const MINUTE: i64 = 60_000;
pub const DAY: i64 = 86_400_000;
pub const AWS_SECRET: &str = "CanaryAwsSecretKey0123456789abcdefghijKL";
pub const DNANEXUS_TOKEN: &str = "CanaryDnanexusToken0123456789";

pub struct TestVault {
    pub vault: Vault,
    pub clock: Arc<ManualClock>,
    pub master: MasterKey,
    pub dir: TempDir,
}

pub fn config(dir: &Path) -> VaultConfig {
    VaultConfig {
        data_dir: dir.to_path_buf(),
        durability: Durability::Flush,
        ..VaultConfig::default()
    }
}

/// No checkpoints or snapshots unless a test asks for them: the worker then does nothing.
pub const QUIET: AuditConfig = AuditConfig {
    checkpoint_every: 0,
    snapshot_every: 0,
};

/// A fresh vault with an admin and a `dev` user holding the `developer` role.
pub async fn vault() -> TestVault {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let vault = Vault::open(config(dir.path()), &master, clock.clone()).unwrap();
    vault.configure_audit(QUIET);
    vault.bootstrap(user("admin")).await.unwrap();
    vault
        .run(
            admin(),
            Action::CreateUser {
                user: user("dev"),
                display_name: None,
                roles: vec![role("developer")],
            },
        )
        .await
        .unwrap();
    TestVault {
        vault,
        clock,
        master,
        dir,
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
        } = self;
        drop(vault);
        let vault = Vault::open(config(dir.path()), &master, clock.clone()).unwrap();
        vault.configure_audit(QUIET);
        TestVault {
            vault,
            clock,
            master,
            dir,
        }
    }

    /// Closes the vault and returns what is left: the directory, the master key and the clock.
    pub fn close(self) -> (TempDir, MasterKey, Arc<ManualClock>) {
        drop(self.vault);
        (self.dir, self.master, self.clock)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub async fn create_key(&self, actor: Actor, name: &str, days: u32) -> KeyId {
        self.vault
            .create_api_key(
                actor,
                KeyName::parse(name).unwrap(),
                KeyDuration::Days(days),
                None,
            )
            .await
            .unwrap()
            .id
    }

    pub async fn create_aws(&self, actor: Actor, label: &str, days: u32) -> ExternalKeyId {
        let credential = NewCredential::aws(
            "AKIAIOSFODNN7EXAMPLE",
            SecretString::new(AWS_SECRET.into()),
            "eu-west-1",
        )
        .unwrap();
        self.vault
            .create_external_key(
                actor,
                Label::parse(label).unwrap(),
                credential,
                KeyDuration::Days(days),
                None,
            )
            .await
            .unwrap()
            .id
    }

    pub async fn create_dnanexus(&self, actor: Actor, label: &str, days: u32) -> ExternalKeyId {
        let credential = NewCredential::dnanexus(SecretString::new(DNANEXUS_TOKEN.into())).unwrap();
        self.vault
            .create_external_key(
                actor,
                Label::parse(label).unwrap(),
                credential,
                KeyDuration::Days(days),
                None,
            )
            .await
            .unwrap()
            .id
    }

    pub fn advance(&self, millis: i64) {
        self.clock.advance_millis(millis);
    }
}

/// A scripted history with two moments to look at.
pub struct History {
    pub test: TestVault,
    /// After keys were created, a role granted and a key rolled; before anything expired.
    pub moment_a: Timestamp,
    /// After expiries, deletions and a revoked role.
    pub moment_b: Timestamp,
    /// Real ids and hints in the order they appeared, to replace with stable names.
    pub names: Vec<(String, String)>,
}

/// admin and dev (developer) exist; carol joins as a member; dev creates two internal keys and
/// an AWS key, admin a DNAnexus key; carol is granted developer; dev rolls `ci`. Moment A.
/// A day later the sweeper expires `ci` and the DNAnexus key; dev deletes `laptop` and the AWS
/// key; admin revokes dev's developer role. Moment B.
pub async fn scripted_history() -> History {
    let test = vault().await;
    let mut names = Vec::new();
    test.advance(MINUTE);
    test.vault
        .run(
            admin(),
            Action::CreateUser {
                user: user("carol"),
                display_name: None,
                roles: vec![role("member")],
            },
        )
        .await
        .unwrap();
    test.advance(MINUTE);
    let ci = test
        .vault
        .create_api_key(
            dev(),
            KeyName::parse("ci").unwrap(),
            KeyDuration::Days(1),
            None,
        )
        .await
        .unwrap();
    names.push((ci.id.to_string(), "key_ci".to_owned()));
    names.push((ci.hint.to_string(), "kl_ci…hint".to_owned()));
    test.advance(MINUTE);
    let laptop = test
        .vault
        .create_api_key(
            dev(),
            KeyName::parse("laptop").unwrap(),
            KeyDuration::Days(7),
            Some([7; 16]),
        )
        .await
        .unwrap();
    names.push((laptop.id.to_string(), "key_laptop".to_owned()));
    names.push((laptop.hint.to_string(), "kl_lap…hint".to_owned()));
    test.advance(MINUTE);
    let aws = test.create_aws(dev(), "aws-prod", 30).await;
    names.push((aws.to_string(), "ext_aws".to_owned()));
    test.advance(MINUTE);
    let dx = test.create_dnanexus(admin(), "dx-shared", 1).await;
    names.push((dx.to_string(), "ext_dx".to_owned()));
    test.advance(MINUTE);
    test.vault
        .run(
            admin(),
            Action::GrantRole {
                user: user("carol"),
                role: role("developer"),
            },
        )
        .await
        .unwrap();
    test.advance(MINUTE);
    let rolled = test
        .vault
        .roll_api_key(dev(), ci.id.clone(), GracePeriod::parse("1h").unwrap())
        .await
        .unwrap();
    names.push((rolled.hint.to_string(), "kl_ci…roll".to_owned()));
    test.advance(MINUTE);
    let moment_a = test.vault.now();

    test.advance(DAY);
    test.vault.sweep_expired().await.unwrap();
    test.advance(MINUTE);
    test.vault
        .delete_api_keys(dev(), vec![laptop.id.clone()])
        .await
        .unwrap();
    test.advance(MINUTE);
    test.vault
        .delete_external_keys(dev(), vec![aws.clone()])
        .await
        .unwrap();
    test.advance(MINUTE);
    test.vault
        .run(
            admin(),
            Action::RevokeRole {
                user: user("dev"),
                role: role("developer"),
            },
        )
        .await
        .unwrap();
    test.advance(MINUTE);
    let moment_b = test.vault.now();
    // The bootstrap key's id and hint are random too.
    let bootstrap = test.vault.read(|state| {
        state
            .api_keys_of(&user("admin"))
            .first()
            .map(|k| (k.id.to_string(), k.hint.to_string()))
            .unwrap()
    });
    names.push((bootstrap.0, "key_bootstrap".to_owned()));
    names.push((bootstrap.1, "kl_boot…hint".to_owned()));
    History {
        test,
        moment_a,
        moment_b,
        names,
    }
}

/// Replaces random ids and hints with stable names of the same width (so tables stay
/// aligned), for snapshots.
pub fn redact(text: &str, names: &[(String, String)]) -> String {
    names.iter().fold(text.to_owned(), |text, (real, stable)| {
        let width = real.chars().count();
        assert!(
            stable.chars().count() <= width,
            "{stable} is longer than {real}"
        );
        let padded: String = stable
            .chars()
            .chain(std::iter::repeat('_'))
            .take(width)
            .collect();
        text.replace(real, &padded)
    })
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn role(name: &str) -> RoleName {
    RoleName::parse(name).unwrap()
}

pub fn admin() -> Actor {
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

/// Copies a directory tree (the data directory "stolen" or handed to an auditor).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir`.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Runs `f` on the raw sled trees of a (closed) data directory: what someone with write access
/// to the files can do.
pub fn with_raw_trees(data_dir: &Path, f: impl FnOnce(&sled::Tree, &sled::Tree)) {
    let db = sled::open(data_dir.join("log")).unwrap();
    let events = db.open_tree("events").unwrap();
    let meta = db.open_tree("meta").unwrap();
    f(&events, &meta);
    db.flush().unwrap();
}

/// Edits the stored envelopes of a (closed) data directory by seq, behind the log's back.
pub fn tamper_events(
    data_dir: &Path,
    change: impl FnOnce(&mut std::collections::BTreeMap<u64, Vec<u8>>),
) {
    with_raw_trees(data_dir, |events, _| {
        keyledger_log::raw::rewrite_events(events, change).unwrap();
    });
}

/// Waits (bounded) until `condition` holds.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A fresh Ed25519 key, as a vault other than the one under test would hold.
pub fn signing_key() -> ring::signature::Ed25519KeyPair {
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("an Ed25519 key");
    ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("an Ed25519 key")
}

/// The 32-byte public half of `key`.
pub fn public_key(key: &ring::signature::Ed25519KeyPair) -> [u8; 32] {
    use ring::signature::KeyPair;
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key().as_ref());
    out
}
