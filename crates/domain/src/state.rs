//! The projection: current state as a pure fold over the events.

mod ingestions;
mod lease;
pub use lease::JobLease;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

mod governance;
mod hasher;
mod ingestion;
mod organization;
mod sources;

pub use hasher::SecretHashBuilder;
pub use ingestion::{FileOutcome, Ingestion, IngestionState};
pub use organization::{Deactivation, Revocation};
pub use sources::{RECENT_SOURCE_RUNS, Source, SourceRefusal, SourceRun};

use crate::error::{DomainError, Holder};
use crate::event::{Event, ExternalKeyPublic, FailureKind, SealedSecret, SecretHash};
use crate::key_status::KeyStatus;
use crate::permissions::{Permission, PermissionSet, built_in_permissions};
use crate::time::Timestamp;
use crate::values::{
    DataKeyId, DisplayName, ExternalKeyId, IngestionId, KeyHint, KeyId, KeyName, Label, Network,
    Provider, RoleName, SourceId, UserId,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub display_name: Option<DisplayName>,
    pub roles: BTreeSet<RoleName>,
    pub created_at: Timestamp,
    /// Set while the user is deactivated: they hold no permission and no key of theirs works.
    pub deactivated: Option<Deactivation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub hint: KeyHint,
    pub secret_hash: SecretHash,
    pub valid_until: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub owner: UserId,
    pub name: KeyName,
    pub hint: KeyHint,
    pub secret_hash: SecretHash,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub status: KeyStatus,
    pub status_changed_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub uses: u64,
    pub previous: Option<PreviousSecret>,
    pub rolled_at: Option<Timestamp>,
    /// What the key may do of its owner's permissions; `None`: all of them.
    pub scopes: Option<PermissionSet>,
    /// The client networks the key is allowed from; empty: anywhere.
    pub networks: Vec<Network>,
    /// Set when an administrator (or the owner's deactivation) revoked it; its status is then
    /// `Deleted`.
    pub revoked: Option<Revocation>,
}

impl ApiKey {
    /// The status as of `now`: an active key past its expiry is reported expired even before the
    /// sweeper has recorded it.
    pub fn status_at(&self, now: Timestamp) -> KeyStatus {
        match (self.status, self.expires_at) {
            (KeyStatus::Active, Some(expires)) if expires <= now => KeyStatus::Expired,
            (status, _) => status,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalKey {
    pub id: ExternalKeyId,
    pub owner: UserId,
    pub label: Label,
    pub public: ExternalKeyPublic,
    pub sealed: SealedSecret,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub status: KeyStatus,
    pub status_changed_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub last_verified: Option<Verification>,
    /// Set when an administrator (or the owner's deactivation) revoked it; its status is then
    /// `Deleted` and its data key is destroyed.
    pub revoked: Option<Revocation>,
}

impl ExternalKey {
    pub fn provider(&self) -> Provider {
        self.public.provider()
    }

    pub fn status_at(&self, now: Timestamp) -> KeyStatus {
        match (self.status, self.expires_at) {
            (KeyStatus::Active, Some(expires)) if expires <= now => KeyStatus::Expired,
            (status, _) => status,
        }
    }
}

/// The data keys of a credential whose secret was rotated: the one sealing the current secret,
/// and those retired by rotations but not destroyed yet (a running job still holds them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedDataKeys {
    pub current: DataKeyId,
    pub retired: Vec<DataKeyId>,
    /// When the last rotation was recorded.
    pub rotated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub detail: String,
    pub at: Timestamp,
}

/// Which of a key's secrets a presented one matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretKind {
    Current,
    /// The secret before the last roll, accepted until its grace period ends.
    Previous,
}

/// Everything the vault knows, rebuilt by folding the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    users: BTreeMap<UserId, User>,
    custom_roles: BTreeMap<RoleName, PermissionSet>,
    /// Every internal key ever created, deleted ones included (for audit), in creation order.
    /// The two maps point into it: a verification is one hash lookup and an index.
    api_keys: Vec<ApiKey>,
    /// FxHash: key ids are ours, not attacker-chosen.
    api_key_index: HashMap<KeyId, usize, FxBuildHasher>,
    /// Current and still-valid previous secrets of every key, for O(1) verification: the key's
    /// slot and which of its secrets the hash is.
    api_key_by_hash: HashMap<SecretHash, (usize, SecretKind), SecretHashBuilder>,
    /// The slots of each owner's keys, deleted ones included: a decision about one user's keys
    /// (is this name taken?) reads that user's keys, not everyone's.
    api_key_slots_by_owner: HashMap<UserId, Vec<usize>>,
    external_keys: HashMap<ExternalKeyId, ExternalKey>,
    active_external: HashMap<(UserId, Provider), ExternalKeyId>,
    /// Only credentials rotated at least once; the others use their original data key.
    rotated_data_keys: HashMap<ExternalKeyId, RotatedDataKeys>,
    /// The current lease of each job a worker leased (decision 0025).
    job_leases: HashMap<IngestionId, JobLease>,
    /// Jobs that fetch every selected file (`IngestionSyncForced`, decision 0033).
    forced_syncs: std::collections::HashSet<IngestionId>,
    ingestions: HashMap<IngestionId, Ingestion>,
    master_key_generation: u32,
    /// Expiry warnings, leaked secrets, honeytokens (`state/governance.rs`).
    governance: governance::Governance,
    /// Saved sources, deleted ones removed (`state/sources.rs`).
    sources: BTreeMap<SourceId, sources::Source>,
}

impl State {
    pub fn apply(&mut self, event: &Event) {
        self.apply_owned(event.clone());
    }

    /// Like [`State::apply`], without copying the event: what replay uses.
    pub fn apply_owned(&mut self, event: Event) {
        if let Event::IngestionListed { ingestion, at, .. }
        | Event::IngestionFileFetched { ingestion, at, .. }
        | Event::IngestionFileFailed { ingestion, at, .. }
        | Event::IngestionFilesSkipped { ingestion, at, .. } = &event
        {
            self.renew_lease(ingestion, *at);
        }
        match event {
            Event::UserCreated {
                user,
                display_name,
                at,
            } => {
                self.users.insert(
                    user.clone(),
                    User {
                        id: user,
                        display_name,
                        roles: BTreeSet::new(),
                        created_at: at,
                        deactivated: None,
                    },
                );
            }
            Event::RoleDefined {
                role, permissions, ..
            } => {
                self.custom_roles
                    .insert(role, permissions.into_iter().collect());
            }
            Event::RoleGranted { user, role, .. } => {
                if let Some(user) = self.users.get_mut(&user) {
                    user.roles.insert(role);
                }
            }
            Event::RoleRevoked { user, role, .. } => {
                if let Some(user) = self.users.get_mut(&user) {
                    user.roles.remove(&role);
                }
            }
            Event::ApiKeyCreated {
                key,
                owner,
                name,
                hint,
                secret_hash,
                created_at,
                expires_at,
            } => {
                let record = ApiKey {
                    id: key,
                    owner,
                    name,
                    hint,
                    secret_hash,
                    created_at,
                    expires_at,
                    status: KeyStatus::Active,
                    status_changed_at: None,
                    last_used_at: None,
                    uses: 0,
                    previous: None,
                    rolled_at: None,
                    scopes: None,
                    networks: Vec::new(),
                    revoked: None,
                };
                let slot = match self.api_key_index.get(&record.id) {
                    Some(&slot) => {
                        let previous_owner = self.api_keys[slot].owner.clone();
                        if previous_owner != record.owner {
                            if let Some(slots) =
                                self.api_key_slots_by_owner.get_mut(&previous_owner)
                            {
                                slots.retain(|&s| s != slot);
                            }
                            self.api_key_slots_by_owner
                                .entry(record.owner.clone())
                                .or_default()
                                .push(slot);
                        }
                        self.api_keys[slot] = record;
                        slot
                    }
                    None => {
                        let slot = self.api_keys.len();
                        self.api_key_index.insert(record.id.clone(), slot);
                        self.api_key_slots_by_owner
                            .entry(record.owner.clone())
                            .or_default()
                            .push(slot);
                        self.api_keys.push(record);
                        slot
                    }
                };
                self.api_key_by_hash
                    .insert(secret_hash, (slot, SecretKind::Current));
            }
            Event::ApiKeyRolled {
                key,
                hint,
                secret_hash,
                previous_valid_until,
                at,
                ..
            } => {
                let Some(&slot) = self.api_key_index.get(&key) else {
                    return;
                };
                let api_key = &mut self.api_keys[slot];
                if let Some(older) = api_key.previous.take() {
                    self.api_key_by_hash.remove(&older.secret_hash);
                }
                let old_hint = std::mem::replace(&mut api_key.hint, hint);
                let old_hash = std::mem::replace(&mut api_key.secret_hash, secret_hash);
                if previous_valid_until > at {
                    self.api_key_by_hash
                        .insert(old_hash, (slot, SecretKind::Previous));
                    api_key.previous = Some(PreviousSecret {
                        hint: old_hint,
                        secret_hash: old_hash,
                        valid_until: previous_valid_until,
                    });
                } else {
                    self.api_key_by_hash.remove(&old_hash);
                }
                api_key.rolled_at = Some(at);
                self.api_key_by_hash
                    .insert(secret_hash, (slot, SecretKind::Current));
            }
            Event::ApiKeyDeleted { key, at, .. } => {
                self.set_api_key_status(&key, KeyStatus::Deleted, at)
            }
            Event::ApiKeyExpired { key, at, .. } => {
                self.set_api_key_status(&key, KeyStatus::Expired, at)
            }
            Event::ApiKeyUsed {
                key,
                last_used_at,
                uses,
                ..
            } => {
                if let Some(api_key) = self.api_key_mut(&key) {
                    api_key.last_used_at = api_key.last_used_at.max(Some(last_used_at));
                    api_key.uses += uses;
                }
            }
            Event::ExternalKeyCreated {
                key,
                owner,
                label,
                public,
                sealed,
                created_at,
                expires_at,
            } => {
                self.active_external
                    .insert((owner.clone(), public.provider()), key.clone());
                self.external_keys.insert(
                    key.clone(),
                    ExternalKey {
                        id: key,
                        owner,
                        label,
                        public,
                        sealed,
                        created_at,
                        expires_at,
                        status: KeyStatus::Active,
                        status_changed_at: None,
                        last_used_at: None,
                        last_verified: None,
                        revoked: None,
                    },
                );
            }
            Event::ExternalKeyDeleted { key, at, .. } => {
                self.set_external_status(&key, KeyStatus::Deleted, at)
            }
            Event::ExternalKeyExpired { key, at, .. } => {
                self.set_external_status(&key, KeyStatus::Expired, at)
            }
            Event::ExternalKeyVerified {
                key,
                ok,
                detail,
                at,
                ..
            } => {
                if let Some(external) = self.external_keys.get_mut(&key) {
                    external.last_verified = Some(Verification { ok, detail, at });
                }
            }
            Event::ExternalKeyUsed { key, at, .. } => {
                if let Some(external) = self.external_keys.get_mut(&key) {
                    external.last_used_at = external.last_used_at.max(Some(at));
                }
            }
            Event::ExternalKeyRotated {
                key,
                public,
                sealed,
                previous_data_key,
                data_key,
                at,
                ..
            } => {
                let Some(external) = self.external_keys.get_mut(&key) else {
                    return;
                };
                // A session token cannot be extended: the key ends with it at the latest, as
                // when it is stored.
                if let Some(token) = public.token_expires_at() {
                    external.expires_at =
                        Some(external.expires_at.map_or(token, |at| at.min(token)));
                }
                external.public = public;
                external.sealed = sealed;
                match self.rotated_data_keys.get_mut(&key) {
                    Some(keys) => {
                        keys.retired.push(previous_data_key);
                        keys.current = data_key;
                        keys.rotated_at = at;
                    }
                    None => {
                        self.rotated_data_keys.insert(
                            key,
                            RotatedDataKeys {
                                current: data_key,
                                retired: vec![previous_data_key],
                                rotated_at: at,
                            },
                        );
                    }
                }
            }
            Event::ExternalKeyDataKeyDestroyed { key, data_key, .. } => {
                if let Some(keys) = self.rotated_data_keys.get_mut(&key) {
                    keys.retired.retain(|retired| retired != &data_key);
                }
            }
            // A role assumed for a job is its use; the job's `ExternalKeyUsed` says so already.
            Event::ExternalKeyRoleAssumed { .. } => {}
            Event::IngestionRequested {
                ingestion,
                owner,
                external_key,
                selection,
                destination,
                batch_id,
                at,
            } => {
                self.ingestions.insert(
                    ingestion.clone(),
                    Ingestion {
                        id: ingestion,
                        owner,
                        external_key,
                        selection,
                        destination,
                        batch_id,
                        state: IngestionState::Queued,
                        requested_at: at,
                        finished_at: None,
                        files_selected: None,
                        bytes_selected: None,
                        files: Vec::new(),
                        files_skipped: 0,
                        bytes_skipped: 0,
                        error: None,
                        failure_kind: None,
                    },
                );
            }
            Event::IngestionListed {
                ingestion,
                files,
                bytes,
                ..
            } => {
                if let Some(job) = self.ingestions.get_mut(&ingestion) {
                    job.state = IngestionState::Fetching;
                    job.files_selected = Some(files);
                    job.bytes_selected = Some(bytes);
                }
            }
            Event::IngestionFileFetched {
                ingestion,
                path,
                size,
                sha256,
                source_etag,
                ..
            } => {
                if let Some(job) = self.ingestions.get_mut(&ingestion) {
                    job.files.push(FileOutcome {
                        path,
                        size,
                        sha256: Some(sha256),
                        failure: None,
                        failure_kind: None,
                        source_etag,
                    });
                }
            }
            Event::IngestionFileFailed {
                ingestion,
                path,
                reason,
                failure_kind,
                ..
            } => self.file_failed(&ingestion, path, reason, failure_kind),
            Event::IngestionCompleted { ingestion, at, .. } => {
                self.finish_ingestion(&ingestion, IngestionState::Completed, None, at)
            }
            Event::IngestionFailed {
                ingestion,
                reason,
                failure_kind,
                at,
            } => self.finish_ingestion(
                &ingestion,
                IngestionState::Failed,
                Some((reason, failure_kind)),
                at,
            ),
            Event::IngestionCancelled { ingestion, at } => {
                self.finish_ingestion(&ingestion, IngestionState::Cancelled, None, at);
                if let Some(job) = self.ingestions.get_mut(&ingestion) {
                    job.failure_kind = Some(FailureKind::Cancelled);
                }
            }
            Event::MasterKeyRotated { generation, .. } => self.master_key_generation = generation,
            event @ (Event::ApiKeyExpiring { .. }
            | Event::ExternalKeyExpiring { .. }
            | Event::ApiKeyLeaked { .. }
            | Event::HoneytokenCreated { .. }
            | Event::HoneytokenUsed { .. }) => self.apply_governance(event),
            leased @ Event::ExternalKeyLeased { .. } => self.apply_lease(leased),
            event @ (Event::ApiKeyScoped { .. }
            | Event::ApiKeyRevoked { .. }
            | Event::ExternalKeyRevoked { .. }
            | Event::UserDeactivated { .. }
            | Event::UserReactivated { .. }) => self.apply_organization(event),
            Event::IngestionFilesSkipped {
                ingestion,
                files,
                bytes,
                ..
            } => {
                if let Some(job) = self.ingestions.get_mut(&ingestion) {
                    job.files_skipped += files;
                    job.bytes_skipped += bytes;
                }
            }
            event @ (Event::SourceSaved { .. }
            | Event::SourcePaused { .. }
            | Event::SourceResumed { .. }
            | Event::SourceDeleted { .. }
            | Event::SourceRunStarted { .. }
            | Event::SourceRunRefused { .. }) => self.apply_source(event),
            Event::IngestionSyncForced { ingestion, .. } => {
                self.forced_syncs.insert(ingestion);
            }
        }
    }

    pub fn user(&self, id: &UserId) -> Option<&User> {
        self.users.get(id)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// The permissions a user holds right now, through all their roles. Unknown users hold none.
    pub fn permissions_of(&self, user: &UserId) -> PermissionSet {
        self.users
            .get(user)
            .map_or(PermissionSet::EMPTY, |user| self.permissions_of_user(user))
    }

    /// The permissions a user's roles grant right now; none while the user is deactivated.
    pub fn permissions_of_user(&self, user: &User) -> PermissionSet {
        if user.deactivated.is_some() {
            return PermissionSet::EMPTY;
        }
        user.roles.iter().fold(PermissionSet::EMPTY, |set, role| {
            set.union(self.role_permissions(role).unwrap_or_default())
        })
    }

    pub fn has_permission(&self, user: &UserId, permission: Permission) -> bool {
        self.users.get(user).is_some_and(|u| {
            u.deactivated.is_none()
                && u.roles.iter().any(|role| {
                    self.role_permissions(role)
                        .is_some_and(|p| p.contains(&permission))
                })
        })
    }

    /// The refusal of `permission` to `user`, naming the roles they hold right now.
    pub fn permission_denied(&self, user: &UserId, permission: Permission) -> DomainError {
        let roles = self
            .users
            .get(user)
            .map(|holder| holder.roles.iter().cloned().collect())
            .unwrap_or_default();
        DomainError::PermissionDenied {
            permission,
            holder: Some(Holder {
                user: user.clone(),
                roles,
            }),
        }
    }

    /// A role's permissions, or None when the role does not exist.
    pub fn role_permissions(&self, role: &RoleName) -> Option<PermissionSet> {
        built_in_permissions(role).or_else(|| self.custom_roles.get(role).copied())
    }

    pub fn custom_roles(&self) -> impl Iterator<Item = (&RoleName, &PermissionSet)> {
        self.custom_roles.iter()
    }

    pub fn api_key(&self, id: &KeyId) -> Option<&ApiKey> {
        self.api_key_index
            .get(id)
            .and_then(|&slot| self.api_keys.get(slot))
    }

    pub(crate) fn api_key_mut(&mut self, id: &KeyId) -> Option<&mut ApiKey> {
        let slot = *self.api_key_index.get(id)?;
        self.api_keys.get_mut(slot)
    }

    pub fn api_keys(&self) -> impl Iterator<Item = &ApiKey> {
        self.api_keys.iter()
    }

    /// The key a secret hash belongs to, whether it is the current or a still-valid previous secret.
    pub fn api_key_by_hash(&self, hash: &SecretHash) -> Option<&ApiKey> {
        let (slot, _) = self.api_key_slot_for_secret(hash)?;
        self.api_key_at(slot)
    }

    /// The slot of the key a secret hash belongs to (see [`State::api_key_at`]), and which of
    /// its secrets it is (a previous one is valid only until its `valid_until`).
    pub fn api_key_slot_for_secret(&self, hash: &SecretHash) -> Option<(usize, SecretKind)> {
        self.api_key_by_hash.get(hash).copied()
    }

    /// A key by its slot: its position among every key this state has seen, stable for the
    /// life of the state (keys are never removed). Cheaper than an id to count uses by.
    pub fn api_key_at(&self, slot: usize) -> Option<&ApiKey> {
        self.api_keys.get(slot)
    }

    pub fn api_key_slot(&self, id: &KeyId) -> Option<usize> {
        self.api_key_index.get(id).copied()
    }

    /// Every key `owner` ever had, deleted ones included, in creation order.
    pub fn api_keys_owned_by(&self, owner: &UserId) -> impl Iterator<Item = &ApiKey> {
        self.api_key_slots_by_owner
            .get(owner)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|&slot| self.api_keys.get(slot))
    }

    /// The caller's keys, newest first, deleted ones left out.
    pub fn api_keys_of(&self, owner: &UserId) -> Vec<&ApiKey> {
        let mut keys: Vec<&ApiKey> = self
            .api_keys_owned_by(owner)
            .filter(|k| k.status != KeyStatus::Deleted)
            .collect();
        keys.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        keys
    }

    pub fn external_key(&self, id: &ExternalKeyId) -> Option<&ExternalKey> {
        self.external_keys.get(id)
    }

    pub fn external_keys(&self) -> impl Iterator<Item = &ExternalKey> {
        self.external_keys.values()
    }

    /// The caller's external key for a provider that has not been deleted or expired.
    pub fn active_external_key(&self, owner: &UserId, provider: Provider) -> Option<&ExternalKey> {
        self.active_external
            .get(&(owner.clone(), provider))
            .and_then(|id| self.external_keys.get(id))
    }

    pub fn external_keys_of(&self, owner: &UserId) -> Vec<&ExternalKey> {
        let mut keys: Vec<&ExternalKey> = self
            .external_keys
            .values()
            .filter(|k| &k.owner == owner && k.status != KeyStatus::Deleted)
            .collect();
        keys.sort_by(|a, b| {
            a.provider()
                .cmp(&b.provider())
                .then_with(|| b.created_at.cmp(&a.created_at))
        });
        keys
    }

    /// The data key that seals the credential's current secret.
    pub fn data_key_of(&self, key: &ExternalKeyId) -> DataKeyId {
        self.rotated_data_keys
            .get(key)
            .map_or_else(|| DataKeyId::original(key), |keys| keys.current.clone())
    }

    /// When the credential's secret was last replaced by a rotation.
    pub fn rotated_at(&self, key: &ExternalKeyId) -> Option<Timestamp> {
        self.rotated_data_keys.get(key).map(|keys| keys.rotated_at)
    }

    /// Data keys retired by a rotation and not destroyed yet, with their credential.
    pub fn retired_data_keys(&self) -> impl Iterator<Item = (&ExternalKeyId, &DataKeyId)> {
        self.rotated_data_keys
            .iter()
            .flat_map(|(key, keys)| keys.retired.iter().map(move |retired| (key, retired)))
    }

    /// Whether `data_key` was retired by a rotation of `key` and is not destroyed yet.
    pub fn is_retired(&self, key: &ExternalKeyId, data_key: &DataKeyId) -> bool {
        self.rotated_data_keys
            .get(key)
            .is_some_and(|keys| keys.retired.contains(data_key))
    }

    pub fn ingestion(&self, id: &IngestionId) -> Option<&Ingestion> {
        self.ingestions.get(id)
    }

    pub fn ingestions(&self) -> impl Iterator<Item = &Ingestion> {
        self.ingestions.values()
    }

    pub fn master_key_generation(&self) -> u32 {
        self.master_key_generation
    }

    pub(crate) fn set_api_key_status(&mut self, key: &KeyId, status: KeyStatus, at: Timestamp) {
        let Some(&slot) = self.api_key_index.get(key) else {
            return;
        };
        let api_key = &mut self.api_keys[slot];
        api_key.status = status;
        api_key.status_changed_at = Some(at);
        // Deleted keys no longer verify at all; expired ones stay findable so the caller hears
        // "key expired" rather than "unknown key".
        if status == KeyStatus::Deleted {
            self.api_key_by_hash.remove(&api_key.secret_hash);
            if let Some(previous) = api_key.previous.take() {
                self.api_key_by_hash.remove(&previous.secret_hash);
            }
        }
    }

    pub(crate) fn set_external_status(
        &mut self,
        key: &ExternalKeyId,
        status: KeyStatus,
        at: Timestamp,
    ) {
        let Some(external) = self.external_keys.get_mut(key) else {
            return;
        };
        external.status = status;
        external.status_changed_at = Some(at);
        let slot = (external.owner.clone(), external.provider());
        if self.active_external.get(&slot) == Some(key) {
            self.active_external.remove(&slot);
        }
    }
}
