//! Commands: what someone asks the vault to do. `decide` turns one into events or refuses it.

use serde::{Deserialize, Serialize};

use crate::event::{Actor, ExternalKeyPublic, FailureKind, SealedSecret, SecretHash, Selection};
use crate::permissions::Permission;
use crate::time::Timestamp;
use crate::values::{
    AccessKeyId, DataKeyId, DisplayName, ExternalKeyId, GracePeriod, IngestionId, KeyDuration,
    KeyHint, KeyId, KeyName, KeyScope, Label, Reason, RoleName, Schedule, SourceId, SourceName,
    UserId,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub actor: Actor,
    pub action: Action,
}

impl Command {
    pub fn new(actor: Actor, action: Action) -> Command {
        Command { actor, action }
    }
}

/// A new internal key as the vault generated it: the secret itself never reaches the domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    pub key: KeyId,
    pub name: KeyName,
    pub duration: KeyDuration,
    pub hint: KeyHint,
    pub secret_hash: SecretHash,
    /// Scopes and allowed networks; the default is an unscoped key.
    pub scope: KeyScope,
}

/// A new external key, already sealed by the vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewExternalKey {
    pub key: ExternalKeyId,
    pub label: Label,
    pub public: ExternalKeyPublic,
    pub sealed: SealedSecret,
    pub duration: KeyDuration,
}

/// One AssumeRole of a `role` key, as STS answered it (no credential).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssumed {
    pub key: ExternalKeyId,
    pub ingestion: Option<IngestionId>,
    pub session_name: String,
    pub access_key_id: AccessKeyId,
    pub session_expires_at: Timestamp,
}

/// A new secret for an existing external key, already sealed by the vault under a new data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalKeyRotation {
    pub key: ExternalKeyId,
    pub public: ExternalKeyPublic,
    pub sealed: SealedSecret,
    pub data_key: DataKeyId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    pub key: KeyId,
    pub last_used_at: crate::time::Timestamp,
    pub uses: u64,
}

/// Progress of a running ingestion, reported by the job runner (actor `System`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestionProgress {
    /// The credential was leased for this job (credential lineage).
    KeyUsed,
    Listed {
        files: u64,
        bytes: u64,
    },
    FileFetched {
        path: String,
        size: u64,
        sha256: [u8; 32],
        source_etag: String,
    },
    FileFailed {
        path: String,
        reason: String,
        failure_kind: FailureKind,
    },
    Completed,
    Failed {
        reason: String,
        failure_kind: FailureKind,
    },
    Cancelled,
    /// Files already in the store in the same version, not fetched again.
    Skipped {
        files: u64,
        bytes: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The first admin and its first key; refused once any user exists.
    BootstrapAdmin {
        admin: UserId,
        key: NewApiKey,
    },
    CreateUser {
        user: UserId,
        display_name: Option<DisplayName>,
        roles: Vec<RoleName>,
    },
    GrantRole {
        user: UserId,
        role: RoleName,
    },
    RevokeRole {
        user: UserId,
        role: RoleName,
    },
    DefineRole {
        role: RoleName,
        permissions: Vec<Permission>,
    },

    CreateApiKey(NewApiKey),
    /// An admin gives a user a key (a new user's first key, a service account's key).
    IssueApiKey {
        owner: UserId,
        key: NewApiKey,
    },
    /// All listed keys go, or none.
    DeleteApiKeys {
        keys: Vec<KeyId>,
    },
    RollApiKey {
        key: KeyId,
        grace: GracePeriod,
        hint: KeyHint,
        secret_hash: SecretHash,
    },
    RecordApiKeyUsage {
        usages: Vec<KeyUsage>,
    },
    /// Records every expiry that is due at `now`.
    ExpireDue,

    CreateExternalKey(NewExternalKey),
    DeleteExternalKeys {
        keys: Vec<ExternalKeyId>,
    },
    RecordExternalKeyVerification {
        key: ExternalKeyId,
        ok: bool,
        detail: String,
    },
    /// Replaces the secret of an active key in place; its previous data key is retired.
    RotateExternalKey(ExternalKeyRotation),
    /// Records the destruction of a retired data key (actor `System`, once no job holds it).
    /// Nothing is recorded when it is not retired (any more).
    RecordDataKeyDestroyed {
        key: ExternalKeyId,
        data_key: DataKeyId,
    },
    /// Records an AssumeRole of a `role` key: by the system for a job, or by the key's owner
    /// testing it.
    RecordRoleAssumed(RoleAssumed),

    RequestIngestion {
        ingestion: IngestionId,
        selection: Selection,
        destination: String,
        batch_id: String,
        /// Fetch every selected file, even those the store holds in the same version:
        /// recorded as `IngestionSyncForced` with the request.
        force: bool,
    },
    CancelIngestion {
        ingestion: IngestionId,
    },
    /// Saves a source of the actor's (decision 0031). The selection and destination were
    /// checked at the edge as a job's are.
    SaveSource {
        source: SourceId,
        name: SourceName,
        selection: Selection,
        destination: String,
        schedule: Option<Schedule>,
    },
    PauseSource {
        source: SourceId,
    },
    ResumeSource {
        source: SourceId,
    },
    DeleteSource {
        source: SourceId,
    },
    /// Starts a run of a source as a new job (`IngestionRequested` and `SourceRunStarted` in
    /// one append): by its owner (`scheduled_for` is `None`), or by the vault's scheduler for
    /// the occurrence `scheduled_for` (actor `System`).
    RunSource {
        source: SourceId,
        ingestion: IngestionId,
        batch_id: String,
        scheduled_for: Option<Timestamp>,
    },
    /// The scheduler records that its run of `source` for the occurrence `scheduled_for` was
    /// refused for `reason` (actor `System`): nothing when that occurrence (or a later one)
    /// was already refused or run.
    RecordSourceRefusal {
        source: SourceId,
        scheduled_for: Timestamp,
        reason: String,
    },
    RecordIngestion {
        ingestion: IngestionId,
        progress: IngestionProgress,
    },
    /// A worker (`run_ingestion_jobs`) leases a live job's credential; the vault has checked
    /// that the work queue handed it the job. Replaces any earlier lease of the job.
    LeaseIngestion {
        ingestion: IngestionId,
        lease: String,
        expires_at: crate::time::Timestamp,
    },
    /// A worker reports a job's progress under its lease. Refused once the lease ended (a
    /// failure may still be reported while the lease is the job's current one); a file, a
    /// listing already recorded is skipped (a redelivered job never records one twice).
    ReportIngestion {
        ingestion: IngestionId,
        lease: String,
        progress: IngestionProgress,
    },

    RecordMasterKeyRotation {
        data_keys: u64,
    },

    /// Records an `…Expiring` warning for every active key that came within one of `horizons`
    /// (days) of its expiry and was not yet warned at that horizon or a nearer one.
    WarnExpiring {
        horizons: Vec<u32>,
    },
    /// Revokes an active key that secret scanning found in public (actor `System`).
    RecordLeak {
        key: KeyId,
        url: String,
        source: String,
    },
    /// Creates a key that grants nothing and records every use.
    CreateHoneytoken(NewApiKey),
    /// Records one use of a honeytoken (actor `System`).
    RecordHoneytokenUse {
        key: KeyId,
        source_address: String,
        user_agent: String,
        route: String,
    },
    /// An administrator revokes anyone's internal key, with a reason.
    RevokeApiKey {
        key: KeyId,
        reason: Reason,
    },
    /// An administrator revokes anyone's external key, with a reason; its data key is destroyed.
    RevokeExternalKey {
        key: ExternalKeyId,
        reason: Reason,
    },
    /// Offboarding in one step: the user is deactivated and every key of theirs revoked, in one
    /// append.
    DeactivateUser {
        user: UserId,
        reason: Reason,
    },
    /// The account works again; its revoked keys stay revoked.
    ReactivateUser {
        user: UserId,
    },
}
