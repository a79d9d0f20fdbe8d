//! Shared set-up: a real vault in a temporary directory (manual clock), users, stored keys, an
//! ingestor over a temporary sample store, and helpers to read events and the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyledger_crypto::{MasterKey, SecretString};
use keyledger_domain::{
    Action, Actor, Event, ExternalKeyId, IngestionId, KeyDuration, Label, RoleName, Selection,
    Timestamp, UserId,
};
use keyledger_ingest::{
    DnanexusOptions, IngestConfig, IngestRequest, IngestionView, Ingestor, JobState, S3Options,
};
use keyledger_vault::{ManualClock, NewCredential, Vault, VaultConfig, decode_event};
use tempfile::TempDir;

pub const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);
pub const ACCESS_KEY_ID: &str = "AKIAKEYLEDGERTEST001";
/// 40 characters, like an AWS secret; must never appear in any output.
pub const SECRET: &str = "CANARYsecret0000keyledger0000DO0NOT0LEAK";
pub const WRONG_SECRET: &str = "WRONGsecret00000keyledger0000DO0NOT0LEAK";
pub const BUCKET: &str = "samples";
pub const DX_TOKEN: &str = "CANARY-dx-token-5f1e0c9b7a";

/// How long any wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(120);

pub struct Harness {
    pub vault: Vault,
    pub clock: Arc<ManualClock>,
    pub ingestor: Ingestor,
    pub store_root: PathBuf,
    /// Kept to reopen the vault ([`Harness::reopen`]).
    pub master: MasterKey,
    pub _dir: TempDir,
}

/// Fast retries, so fault tests stay quick. The stall timeout stays generous: with both cores
/// busy, listing 1,500 objects from the in-process server took longer than 800 ms per attempt
/// and the job failed on timing alone. Tests of stalls set their own.
pub fn s3_options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        force_path_style: true,
        max_attempts: 6,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        stall_timeout: Duration::from_secs(30),
        ..S3Options::default()
    }
}

pub fn dnanexus_options(endpoint: &str) -> DnanexusOptions {
    DnanexusOptions {
        api_url: endpoint.to_owned(),
        concurrency: 4,
        chunk_size: 64 * 1024,
        max_attempts: 5,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        list_page_size: 1000,
    }
}

/// A vault with `admin`, `dev` (developer: keys and imports) and `viewer` (auditor: no
/// imports), and an ingestor whose config `tweak` may change.
pub async fn harness(tweak: impl FnOnce(&mut IngestConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let vault = open_vault(dir.path(), &master, &clock);
    vault.bootstrap(user("admin")).await.unwrap();
    for (name, role) in [("dev", "developer"), ("viewer", "auditor")] {
        vault
            .run(
                actor("admin"),
                Action::CreateUser {
                    user: user(name),
                    display_name: None,
                    roles: vec![RoleName::parse(role).unwrap()],
                },
            )
            .await
            .unwrap();
    }
    let store_root = dir.path().join("samples");
    let mut config = IngestConfig {
        store_root: store_root.clone(),
        key_check_interval: Duration::from_millis(50),
        ..IngestConfig::default()
    };
    tweak(&mut config);
    let ingestor = Ingestor::new(vault.clone(), config);
    ingestor.recover().await.unwrap();
    Harness {
        vault,
        clock,
        ingestor,
        store_root,
        master,
        _dir: dir,
    }
}

fn open_vault(dir: &Path, master: &MasterKey, clock: &Arc<ManualClock>) -> Vault {
    Vault::open(
        VaultConfig {
            data_dir: dir.join("vault"),
            ..VaultConfig::default()
        },
        master,
        clock.clone(),
    )
    .unwrap()
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn actor(name: &str) -> Actor {
    Actor::User {
        user: user(name),
        key: None,
    }
}

pub fn dev() -> Actor {
    actor("dev")
}

pub fn aws_selection(bucket: &str, prefix: &str, pattern: &str) -> Selection {
    Selection::Aws {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        pattern: pattern.to_owned(),
    }
}

pub fn request(selection: Selection) -> IngestRequest {
    IngestRequest {
        selection,
        destination: None,
    }
}

impl Harness {
    /// A restart: the vault closed and opened again on the same directory and clock, with a
    /// new ingestor (same configuration) that recovers first. Call it with no job running.
    pub async fn reopen(&mut self) {
        let config = self.ingestor.config().clone();
        let placeholder = tempfile::tempdir().unwrap();
        let stand_in = open_vault(placeholder.path(), &self.master, &self.clock);
        let vault = std::mem::replace(&mut self.vault, stand_in.clone());
        let ingestor =
            std::mem::replace(&mut self.ingestor, Ingestor::new(stand_in, config.clone()));
        drop((vault, ingestor));
        let vault = open_vault(self._dir.path(), &self.master, &self.clock);
        self.ingestor = Ingestor::new(vault.clone(), config);
        self.vault = vault;
        self.ingestor.recover().await.unwrap();
    }

    /// Stores `dev`'s AWS key with this secret.
    pub async fn store_aws_key(&self, secret: &str, duration: KeyDuration) -> ExternalKeyId {
        let credential = NewCredential::aws(
            ACCESS_KEY_ID,
            SecretString::new(secret.to_owned()),
            "us-east-1",
        )
        .unwrap();
        self.vault
            .create_external_key(
                dev(),
                Label::parse("lab").unwrap(),
                credential,
                duration,
                None,
            )
            .await
            .unwrap()
            .id
    }

    pub async fn store_dnanexus_token(&self, token: &str) -> ExternalKeyId {
        let credential = NewCredential::dnanexus(SecretString::new(token.to_owned())).unwrap();
        self.vault
            .create_external_key(
                dev(),
                Label::parse("dx").unwrap(),
                credential,
                KeyDuration::Days(30),
                None,
            )
            .await
            .unwrap()
            .id
    }

    /// Starts a job for `dev` and waits for its end.
    pub async fn ingest(&self, selection: Selection) -> IngestionView {
        let id = self
            .ingestor
            .start(dev(), request(selection))
            .await
            .unwrap();
        self.wait(&id).await
    }

    pub async fn wait(&self, id: &IngestionId) -> IngestionView {
        let view = tokio::time::timeout(WAIT, self.ingestor.wait(id))
            .await
            .expect("the job ends in time")
            .expect("the job exists");
        assert!(view.state.is_finished(), "{view:?}");
        view
    }

    /// Polls the job's view until `condition` holds.
    pub async fn wait_until(
        &self,
        id: &IngestionId,
        condition: impl Fn(&IngestionView) -> bool,
    ) -> IngestionView {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let view = self.ingestor.status(id).expect("the job exists");
            if condition(&view) {
                return view;
            }
            assert!(
                !view.state.is_finished(),
                "the job ended before the condition held: {view:?}"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The events of one ingestion (its own stream and the key's use for it), in log order.
    pub fn events_of(&self, id: &IngestionId) -> Vec<Event> {
        let stream = format!("ingestion/{id}");
        self.vault
            .log()
            .read_from(1)
            .map(|envelope| envelope.unwrap())
            .filter_map(|envelope| {
                let event = decode_event(&envelope.body).unwrap();
                let ours = envelope.stream == stream
                    || matches!(&event, Event::ExternalKeyUsed { ingestion, .. } if ingestion == id);
                ours.then_some(event)
            })
            .collect()
    }

    /// Every file under the store root except the partial area, by path relative to the root.
    pub fn stored_files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        walk(&self.store_root, &mut |path| {
            let relative = path
                .strip_prefix(&self.store_root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if !relative.starts_with(".partial/") {
                files.insert(relative, std::fs::read(path).unwrap());
            }
        });
        files
    }

    /// Every file left in the partial area.
    pub fn partial_leftovers(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        walk(&self.store_root.join(".partial"), &mut |path| {
            files.push(path.to_path_buf())
        });
        files
    }

    /// The batch folder of a job, relative to the store root, with a trailing `/`.
    pub fn batch_prefix(view: &IngestionView) -> String {
        format!("{}/", view.store_path)
    }
}

/// Checks the store against the events: exactly the fetched files are stored, each with the
/// SHA-256 its event recorded; returns them by path relative to the batch folder.
pub fn assert_store_matches_events(
    harness: &Harness,
    view: &IngestionView,
) -> BTreeMap<String, Vec<u8>> {
    let prefix = Harness::batch_prefix(view);
    let stored: BTreeMap<String, Vec<u8>> = harness
        .stored_files()
        .into_iter()
        .filter_map(|(path, bytes)| Some((path.strip_prefix(&prefix)?.to_owned(), bytes)))
        .collect();
    let mut recorded = BTreeMap::new();
    for event in harness.events_of(&view.id) {
        if let Event::IngestionFileFetched {
            path, size, sha256, ..
        } = event
        {
            recorded.insert(path, (size, sha256));
        }
    }
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        recorded.keys().collect::<Vec<_>>(),
        "the store holds exactly the files recorded as fetched"
    );
    for (path, bytes) in &stored {
        let (size, sha256) = recorded[path];
        assert_eq!(bytes.len() as u64, size, "{path}: size");
        assert_eq!(
            sha256,
            sha256_of(bytes),
            "{path}: the recorded sha256 is the file's"
        );
    }
    assert!(
        harness.partial_leftovers().is_empty(),
        "no partial file is left: {:?}",
        harness.partial_leftovers()
    );
    stored
}

pub fn sha256_of(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The type names of events, for order checks.
pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

pub fn assert_finished(view: &IngestionView, state: JobState) {
    assert_eq!(view.state, state, "{view:#?}");
}

/// Nothing a user can see may hold the secret.
pub fn assert_no_secret(view: &IngestionView) {
    let shown = format!("{view:?} {}", serde_json::to_string(view).unwrap());
    for secret in [SECRET, WRONG_SECRET, DX_TOKEN, "CANARY"] {
        assert!(!shown.contains(secret), "a secret leaked: {shown}");
    }
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, visit);
        } else {
            visit(&path);
        }
    }
}
