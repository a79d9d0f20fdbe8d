//! The public form of events, as published on NATS and exported to auditors:
//! `{id, seq, type, time, subject, actor, data}`. It never carries a secret, a key hash or
//! ciphertext; subscribers deserialize into these same types.

mod from_event;

use serde::{Deserialize, Serialize};

use crate::event::{FailureKind, Selection};
use crate::permissions::Permission;
use crate::time::Timestamp;
use crate::values::{
    AccessKeyId, AwsRegion, AwsRoleArn, DataKeyId, DisplayName, ExternalKeyId, IngestionId,
    KeyHint, KeyId, KeyName, Label, Provider, Reason, RoleName, SourceId, SourceName, UserId,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicEnvelope {
    /// The event id (also the NATS `Nats-Msg-Id`), 32 hex digits.
    pub id: String,
    pub seq: u64,
    pub time: Timestamp,
    /// The stream the event belongs to, e.g. `api_key/key_…`.
    pub subject: String,
    /// `user:<id>[/key:<key id>]`, `system` or `operator`.
    pub actor: String,
    #[serde(flatten)]
    pub event: PublicEvent,
}

/// Every event type of the public stream. The documentation of each variant and field is the
/// published documentation (`docs/events.md`, `docs/events.schema.json`): the bus derives its
/// catalogue from this type's schema (`utoipa::ToSchema`), so keep each doc comment one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum PublicEvent {
    /// A user was created (the first admin by `admin bootstrap`, others by an admin).
    UserCreated {
        /// The user's handle.
        #[schema(value_type = String)]
        user: UserId,
        /// The name shown in the console.
        #[schema(value_type = Option<String>)]
        display_name: Option<DisplayName>,
    },
    /// A custom role was defined or redefined with these permissions.
    RoleDefined {
        /// The role's name.
        #[schema(value_type = String)]
        role: RoleName,
        /// Permission names, e.g. `verify_api_keys`.
        #[schema(value_type = Vec<String>)]
        permissions: Vec<Permission>,
    },
    /// A user received a role; its permissions apply to the user's keys at once.
    RoleGranted {
        /// The user's handle.
        #[schema(value_type = String)]
        user: UserId,
        /// The role's name.
        #[schema(value_type = String)]
        role: RoleName,
    },
    /// A user lost a role; its permissions stop applying to the user's keys at once.
    RoleRevoked {
        /// The user's handle.
        #[schema(value_type = String)]
        user: UserId,
        /// The role's name.
        #[schema(value_type = String)]
        role: RoleName,
    },
    /// An internal key was created. The key itself was shown once to its creator and is never published.
    ApiKeyCreated {
        /// The internal key's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The name the owner gave the key.
        #[schema(value_type = String)]
        name: KeyName,
        /// The masked key, `kl_AbCd…wXyZ`.
        #[schema(value_type = String)]
        hint: KeyHint,
        /// When the key was created.
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        /// When the key expires; `null` for never.
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Timestamp>,
    },
    /// The key got a new secret; the previous one keeps working until `previous_valid_until`.
    ApiKeyRolled {
        /// The internal key's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The masked new secret.
        #[schema(value_type = String)]
        hint: KeyHint,
        /// The end of the previous secret's grace period.
        #[schema(value_type = String, format = DateTime)]
        previous_valid_until: Timestamp,
    },
    /// The key was deleted and no longer verifies. A bulk delete publishes one event per key.
    ApiKeyDeleted {
        /// The internal key's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
    },
    /// The key reached its expiry (recorded by the sweeper; it stopped verifying at `expires_at`).
    ApiKeyExpired {
        /// The internal key's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
    },
    /// Aggregated use of a key: at most one event per key per minute, never one per request.
    ApiKeyUsed {
        /// The internal key's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The last use in the aggregation period.
        #[schema(value_type = String, format = DateTime)]
        last_used_at: Timestamp,
        /// Uses in the aggregation period.
        uses: u64,
    },
    /// An external credential (AWS or DNAnexus) was stored. The secret is never published, not even encrypted.
    ExternalKeyCreated {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The owner's label for the credential.
        #[schema(value_type = String)]
        label: Label,
        /// `aws` or `dnanexus`.
        #[schema(value_type = String)]
        provider: Provider,
        /// The masked credential: `AKIA…WXYZ` / `ASIA…WXYZ` (AWS access key id) or `…WXYZ` (DNAnexus token).
        #[schema(value_type = String)]
        hint: KeyHint,
        /// The AWS region, e.g. `eu-west-2`; `null` for DNAnexus.
        #[schema(value_type = Option<String>)]
        region: Option<AwsRegion>,
        /// When the credential was stored.
        #[schema(value_type = String, format = DateTime)]
        created_at: Timestamp,
        /// When it expires; `null` for never. Temporary AWS credentials (`ASIA…`) expire with
        /// their session token at the latest.
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Timestamp>,
    },
    /// The credential was deleted and its data key destroyed (crypto-shredding): it can never be decrypted again.
    ExternalKeyDeleted {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// `aws` or `dnanexus`.
        #[schema(value_type = String)]
        provider: Provider,
    },
    /// The credential reached its expiry.
    ExternalKeyExpired {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// `aws` or `dnanexus`.
        #[schema(value_type = String)]
        provider: Provider,
    },
    /// The credential was tested against its provider ("save and test").
    ExternalKeyVerified {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// Whether the provider accepted it.
        ok: bool,
        /// What the provider said, without any secret.
        detail: String,
    },
    /// The credential was leased for an ingestion job (credential lineage).
    ExternalKeyUsed {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The job that used it.
        #[schema(value_type = String)]
        ingestion: IngestionId,
    },
    /// An ingestion of sample files was requested.
    IngestionRequested {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The credential the job uses.
        #[schema(value_type = String)]
        external_key: ExternalKeyId,
        /// What to fetch: `{provider: "aws", bucket, prefix, pattern}` or `{provider: "dnanexus", project, folder, pattern}`; `pattern` is a regular expression.
        #[schema(value_type = Object)]
        selection: Selection,
        /// Where verified files are stored.
        destination: String,
        /// The caller's batch id.
        batch_id: String,
    },
    /// The job listed the files it selected.
    IngestionListed {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// Files selected.
        files: u64,
        /// Their total size.
        bytes: u64,
    },
    /// A file was fetched, verified and stored.
    IngestionFileFetched {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// The file's path in the selection.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The SHA-256 of the stored file, lowercase hex.
        sha256: String,
        /// The provider's ETag or checksum of the source.
        source_etag: String,
        /// The credential it was fetched with.
        #[schema(value_type = String)]
        external_key: ExternalKeyId,
    },
    /// A file could not be fetched or failed verification.
    IngestionFileFailed {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// The file's path in the selection.
        path: String,
        /// Why, as a sentence for people.
        reason: String,
        /// What kind of failure, for programs: `provider_rejected`, `not_found`, `unreachable`, `transient`, `integrity`, `storage`, `internal` or `cancelled`. `null` in events recorded before kinds existed.
        #[schema(value_type = Option<String>)]
        #[serde(default)]
        failure_kind: Option<FailureKind>,
    },
    /// The job finished.
    IngestionCompleted {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// Files stored.
        files: u64,
        /// Bytes stored.
        bytes: u64,
        /// Files that failed.
        failed: u64,
    },
    /// The job failed as a whole.
    IngestionFailed {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// Why, as a sentence for people.
        reason: String,
        /// What kind of failure, for programs: `provider_rejected`, `not_found`, `unreachable`, `transient`, `integrity`, `storage`, `internal` or `cancelled`. `null` in events recorded before kinds existed.
        #[schema(value_type = Option<String>)]
        #[serde(default)]
        failure_kind: Option<FailureKind>,
    },
    /// The job was cancelled; no partial file was left behind.
    IngestionCancelled {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
    },
    /// Every data key was re-wrapped under a new master key. No key material is recorded.
    MasterKeyRotated {
        /// The new master key's generation.
        generation: u32,
        /// Data keys re-wrapped.
        data_keys: u64,
    },
    /// The secret of an external key was replaced in place under a new data key; the key keeps its id, label, provider and expiry.
    ExternalKeyRotated {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// `aws` or `dnanexus`.
        #[schema(value_type = String)]
        provider: Provider,
        /// The new masked credential: `AKIA…WXYZ` (AWS access key id) or `…WXYZ` (DNAnexus token).
        #[schema(value_type = String)]
        hint: KeyHint,
        /// The AWS region, e.g. `eu-west-2`; `null` for DNAnexus.
        #[schema(value_type = Option<String>)]
        region: Option<AwsRegion>,
        /// The data key of the replaced secret, retired: destroyed once no running job holds it.
        #[schema(value_type = String)]
        previous_data_key: DataKeyId,
        /// The data key that seals the new secret.
        #[schema(value_type = String)]
        data_key: DataKeyId,
    },
    /// A data key retired by a rotation was destroyed (crypto-shredding): the replaced secret can never be decrypted again.
    ExternalKeyDataKeyDestroyed {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The destroyed data key's id.
        #[schema(value_type = String)]
        data_key: DataKeyId,
    },
    /// An active internal key is within `horizon_days` of its expiry (once per key and horizon).
    ApiKeyExpiring {
        /// The internal key's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// When the key stops working.
        #[schema(value_type = String, format = DateTime)]
        expires_at: Timestamp,
        /// The warning horizon crossed, in days (by default 30, 7 or 1).
        horizon_days: u32,
    },
    /// An active external key is within `horizon_days` of its expiry (once per key and horizon).
    ExternalKeyExpiring {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// `aws` or `dnanexus`.
        #[schema(value_type = String)]
        provider: Provider,
        /// When the key stops working.
        #[schema(value_type = String, format = DateTime)]
        expires_at: Timestamp,
        /// The warning horizon crossed, in days (by default 30, 7 or 1).
        horizon_days: u32,
    },
    /// Secret scanning found the internal key in public; it was revoked at once.
    ApiKeyLeaked {
        /// The internal key's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// Where the key was found, as the scanner reported it (e.g. a GitHub blob URL).
        url: String,
        /// What kind of place it was found in, as the scanner reported it (e.g. `content`).
        source: String,
    },
    /// A honeytoken was created: a key that grants nothing and whose every use is recorded.
    HoneytokenCreated {
        /// The honeytoken's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The name the owner gave the key.
        #[schema(value_type = String)]
        name: KeyName,
        /// The masked key, `kl_AbCd…wXyZ`.
        #[schema(value_type = String)]
        hint: KeyHint,
        /// When the key stops being recognised; `null` for never.
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Timestamp>,
    },
    /// Someone presented a honeytoken; the request was refused as with an unknown key.
    HoneytokenUsed {
        /// The honeytoken's id (`key_…`), never the key itself.
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The client's address as the server saw it (or as the trusted proxy reported it).
        source_address: String,
        /// The request's `User-Agent`, empty when none was sent.
        user_agent: String,
        /// The method and path the honeytoken was presented to, e.g. `GET /v1/me`.
        route: String,
    },
    /// A worker process was given the credential of an ingestion job it took from the work queue (the secret went over its authenticated connection, never into an event); earlier leases of the job ended.
    ExternalKeyLeased {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// The handle of the worker's user (a holder of `run_ingestion_jobs`).
        #[schema(value_type = String)]
        worker: UserId,
        /// The lease's id (`lease_…`): the worker names it in every report.
        lease: String,
        /// The data key the secret was opened with.
        #[schema(value_type = String)]
        data_key: DataKeyId,
        /// When the lease ends at the latest.
        #[schema(value_type = String, format = DateTime)]
        expires_at: Timestamp,
    },
    /// keyledger assumed the IAM role of a `role` key (STS AssumeRole) with the external ID it generated for the owner: once per job and again before the session ends, or for a test of the key. No credential is published.
    ExternalKeyRoleAssumed {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The job the session is for; `null` for a test of the key.
        #[schema(value_type = Option<String>)]
        ingestion: Option<IngestionId>,
        /// The role's ARN.
        #[schema(value_type = String)]
        role_arn: AwsRoleArn,
        /// The role session name, which names the job (as CloudTrail shows it).
        session_name: String,
        /// The temporary access key id AWS issued (`ASIA…`; not a secret, as in CloudTrail).
        #[schema(value_type = String)]
        access_key_id: AccessKeyId,
        /// When the session's credentials stop working.
        #[schema(value_type = String, format = DateTime)]
        session_expires_at: Timestamp,
    },
    /// A new internal key is scoped: it may do only its scopes of its owner's permissions, only from its networks.
    ApiKeyScoped {
        /// The key's id (`key_…`).
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// Permission names the key is limited to; empty: all of its owner's.
        #[schema(value_type = Vec<String>)]
        scopes: Vec<Permission>,
        /// Client networks (CIDR) the key is allowed from; empty: anywhere.
        networks: Vec<String>,
    },
    /// An administrator revoked an internal key (or it went with its owner's deactivation); the actor is who.
    ApiKeyRevoked {
        /// The key's id (`key_…`).
        #[schema(value_type = String)]
        key: KeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// Why, as the administrator wrote it.
        #[schema(value_type = String)]
        reason: Reason,
    },
    /// An administrator revoked an external key (or it went with its owner's deactivation); its data key is destroyed.
    ExternalKeyRevoked {
        /// The external key's id (`ext_…`).
        #[schema(value_type = String)]
        key: ExternalKeyId,
        /// The handle of the key's owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// `aws` or `dnanexus`.
        #[schema(value_type = String)]
        provider: Provider,
        /// Why, as the administrator wrote it.
        #[schema(value_type = String)]
        reason: Reason,
    },
    /// A user was deactivated: no key of theirs works; every one was revoked in the same append.
    UserDeactivated {
        /// The user's handle.
        #[schema(value_type = String)]
        user: UserId,
        /// Why, as the administrator wrote it.
        #[schema(value_type = String)]
        reason: Reason,
    },
    /// A deactivated user was reactivated; their revoked keys stay revoked.
    UserReactivated {
        /// The user's handle.
        #[schema(value_type = String)]
        user: UserId,
    },
    /// Files the job selected but did not fetch again: the store already holds the same version
    /// (same size and S3 ETag or unchanged object, or the same DNAnexus file id) from the same
    /// source (incremental sync).
    IngestionFilesSkipped {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// Files skipped.
        files: u64,
        /// Their total size.
        bytes: u64,
    },
    /// A user saved a source to import again, by hand or on a schedule.
    SourceSaved {
        /// The source's id (`src_…`).
        #[schema(value_type = String)]
        source: SourceId,
        /// The handle of its owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// Its name, unique among the owner's sources.
        #[schema(value_type = String)]
        name: SourceName,
        /// What each run fetches: as `IngestionRequested`'s `selection`.
        #[schema(value_type = Object)]
        selection: Selection,
        /// Where each run stores verified files.
        destination: String,
        /// Five cron fields (minute hour day-of-month month day-of-week); `null`: by hand only.
        schedule: Option<String>,
        /// The IANA time zone the schedule is read in, e.g. `Europe/Zurich`.
        timezone: Option<String>,
    },
    /// The source's schedule starts nothing until it is resumed.
    SourcePaused {
        /// The source's id (`src_…`).
        #[schema(value_type = String)]
        source: SourceId,
        /// The handle of its owner.
        #[schema(value_type = String)]
        owner: UserId,
    },
    /// The source's schedule runs again (occurrences while paused are not caught up).
    SourceResumed {
        /// The source's id (`src_…`).
        #[schema(value_type = String)]
        source: SourceId,
        /// The handle of its owner.
        #[schema(value_type = String)]
        owner: UserId,
    },
    /// The source was deleted; its runs' jobs and files stay.
    SourceDeleted {
        /// The source's id (`src_…`).
        #[schema(value_type = String)]
        source: SourceId,
        /// The handle of its owner.
        #[schema(value_type = String)]
        owner: UserId,
    },
    /// A run of the source began as the job `ingestion` (its `IngestionRequested` is in the same append).
    SourceRunStarted {
        /// The source's id (`src_…`).
        #[schema(value_type = String)]
        source: SourceId,
        /// The handle of its owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The job of this run (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
        /// The schedule's occurrence this run is for; `null` for a run by hand.
        #[schema(value_type = Option<String>)]
        scheduled_for: Option<Timestamp>,
    },
    /// The job fetches every selected file, even those the store already holds in the same
    /// version (`force`).
    IngestionSyncForced {
        /// The ingestion job's id (`ing_…`).
        #[schema(value_type = String)]
        ingestion: IngestionId,
    },
    /// The scheduler could not start the source's run for an occurrence because of its
    /// owner's situation (no usable key, may no longer import); recorded once per occurrence.
    SourceRunRefused {
        /// The source's id (`src_…`).
        #[schema(value_type = String)]
        source: SourceId,
        /// The handle of its owner.
        #[schema(value_type = String)]
        owner: UserId,
        /// The schedule's occurrence that did not run.
        #[schema(value_type = String)]
        scheduled_for: Timestamp,
        /// Why, as a sentence for people (no secret).
        reason: String,
    },
}

impl PublicEvent {
    pub fn type_name(&self) -> &'static str {
        // The serde tag is the variant name; keep this in step with `Event::type_name`.
        match self {
            PublicEvent::UserCreated { .. } => "UserCreated",
            PublicEvent::RoleDefined { .. } => "RoleDefined",
            PublicEvent::RoleGranted { .. } => "RoleGranted",
            PublicEvent::RoleRevoked { .. } => "RoleRevoked",
            PublicEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
            PublicEvent::ApiKeyRolled { .. } => "ApiKeyRolled",
            PublicEvent::ApiKeyDeleted { .. } => "ApiKeyDeleted",
            PublicEvent::ApiKeyExpired { .. } => "ApiKeyExpired",
            PublicEvent::ApiKeyUsed { .. } => "ApiKeyUsed",
            PublicEvent::ExternalKeyCreated { .. } => "ExternalKeyCreated",
            PublicEvent::ExternalKeyDeleted { .. } => "ExternalKeyDeleted",
            PublicEvent::ExternalKeyExpired { .. } => "ExternalKeyExpired",
            PublicEvent::ExternalKeyVerified { .. } => "ExternalKeyVerified",
            PublicEvent::ExternalKeyUsed { .. } => "ExternalKeyUsed",
            PublicEvent::IngestionRequested { .. } => "IngestionRequested",
            PublicEvent::IngestionListed { .. } => "IngestionListed",
            PublicEvent::IngestionFileFetched { .. } => "IngestionFileFetched",
            PublicEvent::IngestionFileFailed { .. } => "IngestionFileFailed",
            PublicEvent::IngestionCompleted { .. } => "IngestionCompleted",
            PublicEvent::IngestionFailed { .. } => "IngestionFailed",
            PublicEvent::IngestionCancelled { .. } => "IngestionCancelled",
            PublicEvent::MasterKeyRotated { .. } => "MasterKeyRotated",
            PublicEvent::ExternalKeyRotated { .. } => "ExternalKeyRotated",
            PublicEvent::ExternalKeyDataKeyDestroyed { .. } => "ExternalKeyDataKeyDestroyed",
            PublicEvent::ApiKeyExpiring { .. } => "ApiKeyExpiring",
            PublicEvent::ExternalKeyExpiring { .. } => "ExternalKeyExpiring",
            PublicEvent::ApiKeyLeaked { .. } => "ApiKeyLeaked",
            PublicEvent::HoneytokenCreated { .. } => "HoneytokenCreated",
            PublicEvent::HoneytokenUsed { .. } => "HoneytokenUsed",
            PublicEvent::ExternalKeyLeased { .. } => "ExternalKeyLeased",
            PublicEvent::ExternalKeyRoleAssumed { .. } => "ExternalKeyRoleAssumed",
            PublicEvent::ApiKeyScoped { .. } => "ApiKeyScoped",
            PublicEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            PublicEvent::ExternalKeyRevoked { .. } => "ExternalKeyRevoked",
            PublicEvent::UserDeactivated { .. } => "UserDeactivated",
            PublicEvent::UserReactivated { .. } => "UserReactivated",
            PublicEvent::IngestionFilesSkipped { .. } => "IngestionFilesSkipped",
            PublicEvent::SourceSaved { .. } => "SourceSaved",
            PublicEvent::SourcePaused { .. } => "SourcePaused",
            PublicEvent::SourceResumed { .. } => "SourceResumed",
            PublicEvent::SourceDeleted { .. } => "SourceDeleted",
            PublicEvent::SourceRunStarted { .. } => "SourceRunStarted",
            PublicEvent::IngestionSyncForced { .. } => "IngestionSyncForced",
            PublicEvent::SourceRunRefused { .. } => "SourceRunRefused",
        }
    }
}

/// Lowercase hexadecimal, for hashes and ids in public formats.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}
