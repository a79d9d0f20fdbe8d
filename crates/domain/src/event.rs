//! The events of the key lifecycle. Every state change is one of these, appended to the log.
//!
//! Changing a variant's fields changes the log's binary format: add new variants at the end and
//! review the snapshot diff (`tests/snapshots`).

use std::fmt;

use serde::{Deserialize, Serialize};

mod routing;
pub use routing::{external_key_stream, ingestion_stream, role_stream, source_stream, user_stream};

use crate::permissions::Permission;
use crate::time::Timestamp;
use crate::values::{
    AccessKeyId, AwsExternalId, AwsRegion, AwsRoleArn, DataKeyId, DisplayName, ExternalKeyId,
    IngestionId, KeyHint, KeyId, KeyName, Label, Network, Provider, Reason, RoleName, SourceId,
    SourceName, UserId,
};

/// HMAC-SHA256 of an internal key under the deployment's pepper. Not a secret, but never shown.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretHash(pub [u8; 32]);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash([redacted])")
    }
}

/// An external secret sealed with its own data key (AES-256-GCM). Only ciphertext lives in the log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.ciphertext.len())
    }
}

/// What may be shown of an external credential.
///
/// Externally tagged (`{"aws": {...}}`): the log's binary format cannot carry internally tagged
/// enums, which need a self-describing format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalKeyPublic {
    Aws {
        access_key_id: AccessKeyId,
        region: AwsRegion,
    },
    Dnanexus {
        token_hint: KeyHint,
    },
    /// Temporary AWS credentials (`ASIA…` + secret + session token). The token cannot be
    /// extended: the key expires with it at the latest (decision 0020).
    #[serde(rename = "aws_session")]
    AwsSession {
        access_key_id: AccessKeyId,
        region: AwsRegion,
        token_expires_at: Timestamp,
    },
    /// An IAM role keyledger assumes for each job with the platform's own credentials and
    /// the external ID it generated for the owner. Nothing secret is stored (decision 0023).
    #[serde(rename = "aws_role")]
    AwsRole {
        role_arn: AwsRoleArn,
        region: AwsRegion,
        external_id: AwsExternalId,
    },
}

impl ExternalKeyPublic {
    pub fn provider(&self) -> Provider {
        match self {
            ExternalKeyPublic::Aws { .. }
            | ExternalKeyPublic::AwsSession { .. }
            | ExternalKeyPublic::AwsRole { .. } => Provider::Aws,
            ExternalKeyPublic::Dnanexus { .. } => Provider::Dnanexus,
        }
    }

    /// The masked identifier shown in listings: `AKIA…WXYZ`, the token's hint, or a role's
    /// ARN (not a secret).
    pub fn hint(&self) -> KeyHint {
        match self {
            ExternalKeyPublic::AwsRole { role_arn, .. } => role_arn.hint(),
            ExternalKeyPublic::Aws { access_key_id, .. }
            | ExternalKeyPublic::AwsSession { access_key_id, .. } => access_key_id.masked(),
            ExternalKeyPublic::Dnanexus { token_hint } => token_hint.clone(),
        }
    }

    /// The AWS region; `None` for DNAnexus.
    pub fn region(&self) -> Option<&AwsRegion> {
        match self {
            ExternalKeyPublic::Aws { region, .. }
            | ExternalKeyPublic::AwsSession { region, .. }
            | ExternalKeyPublic::AwsRole { region, .. } => Some(region),
            ExternalKeyPublic::Dnanexus { .. } => None,
        }
    }

    /// What kind of credential this is: `access_key`, `session`, `role` (AWS) or `token`
    /// (DNAnexus).
    pub fn kind(&self) -> CredentialKind {
        match self {
            ExternalKeyPublic::AwsRole { .. } => CredentialKind::Role,
            ExternalKeyPublic::Aws { .. } => CredentialKind::AccessKey,
            ExternalKeyPublic::AwsSession { .. } => CredentialKind::Session,
            ExternalKeyPublic::Dnanexus { .. } => CredentialKind::Token,
        }
    }

    /// When the session token stops working; `None` for credentials without one.
    pub fn token_expires_at(&self) -> Option<Timestamp> {
        match self {
            ExternalKeyPublic::AwsSession {
                token_expires_at, ..
            } => Some(*token_expires_at),
            _ => None,
        }
    }
}

/// The kinds of external credential, as the API and CLI name them. Not stored: derived from
/// [`ExternalKeyPublic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A long-lived AWS access key: id and secret.
    AccessKey,
    /// Temporary AWS credentials: id, secret, session token and its expiry.
    Session,
    /// A DNAnexus API token.
    Token,
    /// An IAM role assumed per job with an external ID.
    Role,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::AccessKey => "access_key",
            CredentialKind::Session => "session",
            CredentialKind::Token => "token",
            CredentialKind::Role => "role",
        }
    }
}

/// Which remote files an ingestion selects. Externally tagged, as [`ExternalKeyPublic`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    Aws {
        bucket: String,
        prefix: String,
        pattern: String,
    },
    Dnanexus {
        project: String,
        folder: String,
        pattern: String,
    },
}

impl Selection {
    pub fn provider(&self) -> Provider {
        match self {
            Selection::Aws { .. } => Provider::Aws,
            Selection::Dnanexus { .. } => Provider::Dnanexus,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    UserCreated {
        user: UserId,
        display_name: Option<DisplayName>,
        at: Timestamp,
    },
    RoleDefined {
        role: RoleName,
        permissions: Vec<Permission>,
        at: Timestamp,
    },
    RoleGranted {
        user: UserId,
        role: RoleName,
        at: Timestamp,
    },
    RoleRevoked {
        user: UserId,
        role: RoleName,
        at: Timestamp,
    },

    ApiKeyCreated {
        key: KeyId,
        owner: UserId,
        name: KeyName,
        hint: KeyHint,
        secret_hash: SecretHash,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    },
    /// A new secret under the same key id; the previous one keeps working until `previous_valid_until`.
    ApiKeyRolled {
        key: KeyId,
        owner: UserId,
        hint: KeyHint,
        secret_hash: SecretHash,
        previous_valid_until: Timestamp,
        at: Timestamp,
    },
    ApiKeyDeleted {
        key: KeyId,
        owner: UserId,
        at: Timestamp,
    },
    ApiKeyExpired {
        key: KeyId,
        owner: UserId,
        at: Timestamp,
    },
    /// Aggregated use: at most one per key per minute, never one per request.
    ApiKeyUsed {
        key: KeyId,
        owner: UserId,
        last_used_at: Timestamp,
        uses: u64,
    },

    ExternalKeyCreated {
        key: ExternalKeyId,
        owner: UserId,
        label: Label,
        public: ExternalKeyPublic,
        sealed: SealedSecret,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    },
    /// The data key was destroyed with this event: the sealed secret can never be opened again.
    ExternalKeyDeleted {
        key: ExternalKeyId,
        owner: UserId,
        provider: Provider,
        at: Timestamp,
    },
    ExternalKeyExpired {
        key: ExternalKeyId,
        owner: UserId,
        provider: Provider,
        at: Timestamp,
    },
    ExternalKeyVerified {
        key: ExternalKeyId,
        owner: UserId,
        ok: bool,
        detail: String,
        at: Timestamp,
    },
    ExternalKeyUsed {
        key: ExternalKeyId,
        owner: UserId,
        ingestion: IngestionId,
        at: Timestamp,
    },

    IngestionRequested {
        ingestion: IngestionId,
        owner: UserId,
        external_key: ExternalKeyId,
        selection: Selection,
        destination: String,
        batch_id: String,
        at: Timestamp,
    },
    IngestionListed {
        ingestion: IngestionId,
        files: u64,
        bytes: u64,
        at: Timestamp,
    },
    IngestionFileFetched {
        ingestion: IngestionId,
        path: String,
        size: u64,
        sha256: [u8; 32],
        source_etag: String,
        external_key: ExternalKeyId,
        at: Timestamp,
    },
    /// A file could not be fetched, verified or stored.
    IngestionFileFailed {
        ingestion: IngestionId,
        path: String,
        reason: String,
        failure_kind: FailureKind,
        at: Timestamp,
    },
    IngestionCompleted {
        ingestion: IngestionId,
        files: u64,
        bytes: u64,
        failed: u64,
        at: Timestamp,
    },
    /// The job failed as a whole.
    IngestionFailed {
        ingestion: IngestionId,
        reason: String,
        failure_kind: FailureKind,
        at: Timestamp,
    },
    IngestionCancelled {
        ingestion: IngestionId,
        at: Timestamp,
    },

    /// Every data key was re-wrapped under a new master key. No key material is recorded.
    MasterKeyRotated {
        generation: u32,
        data_keys: u64,
        at: Timestamp,
    },

    /// The secret of an external key was replaced in place, sealed by a new data key. The key
    /// keeps its id, label, provider and expiry; `previous_data_key` is retired: destroyed by
    /// `ExternalKeyDataKeyDestroyed` once no running job holds a lease on it.
    ExternalKeyRotated {
        key: ExternalKeyId,
        owner: UserId,
        public: ExternalKeyPublic,
        sealed: SealedSecret,
        previous_data_key: DataKeyId,
        data_key: DataKeyId,
        at: Timestamp,
    },
    /// A data key retired by a rotation was destroyed: the secret it sealed can never be opened
    /// again.
    ExternalKeyDataKeyDestroyed {
        key: ExternalKeyId,
        owner: UserId,
        data_key: DataKeyId,
        at: Timestamp,
    },

    /// An active internal key came within `horizon_days` of its expiry: recorded once per key
    /// and horizon by the primary's sweeper (decision 0027).
    ApiKeyExpiring {
        key: KeyId,
        owner: UserId,
        expires_at: Timestamp,
        horizon_days: u32,
        at: Timestamp,
    },
    /// The same for an external key.
    ExternalKeyExpiring {
        key: ExternalKeyId,
        owner: UserId,
        provider: Provider,
        expires_at: Timestamp,
        horizon_days: u32,
        at: Timestamp,
    },
    /// Secret scanning found the key in public (`url`, `source`): it was revoked with this event
    /// and stops working at once.
    ApiKeyLeaked {
        key: KeyId,
        owner: UserId,
        url: String,
        source: String,
        at: Timestamp,
    },
    /// An internal key created as a honeytoken: it grants nothing, and every use is recorded.
    HoneytokenCreated {
        key: KeyId,
        owner: UserId,
        name: KeyName,
        hint: KeyHint,
        secret_hash: SecretHash,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    },
    /// Someone presented a honeytoken; they were refused as with an unknown key.
    HoneytokenUsed {
        key: KeyId,
        owner: UserId,
        source_address: String,
        user_agent: String,
        route: String,
        at: Timestamp,
    },
    /// A worker process (`worker`, a user holding `run_ingestion_jobs`) was given the job's
    /// credential, decrypted, over its authenticated connection (decision 0025). The lease
    /// `lease` is the job's only one from now on: an earlier lease of the same job ends, and so
    /// does this one when the job ends, the key is deleted, expires or is rotated, or at
    /// `expires_at`.
    ExternalKeyLeased {
        key: ExternalKeyId,
        owner: UserId,
        ingestion: IngestionId,
        worker: UserId,
        lease: String,
        data_key: DataKeyId,
        expires_at: Timestamp,
        at: Timestamp,
    },
    /// keyledger assumed the role of a `role` key (STS AssumeRole): for a job (`ingestion`),
    /// or for a test of the key. No credential is recorded, only the temporary access key id
    /// AWS issued (as CloudTrail shows it) and when that session ends.
    ExternalKeyRoleAssumed {
        key: ExternalKeyId,
        owner: UserId,
        ingestion: Option<IngestionId>,
        role_arn: AwsRoleArn,
        session_name: String,
        access_key_id: AccessKeyId,
        session_expires_at: Timestamp,
        at: Timestamp,
    },
    /// Recorded with `ApiKeyCreated` in the same append when the key is scoped: it may do only
    /// what `scopes` allows of what its owner holds at each request (empty: every permission of
    /// the owner), and only from a client in `networks` (empty: from anywhere).
    ApiKeyScoped {
        key: KeyId,
        owner: UserId,
        scopes: Vec<Permission>,
        networks: Vec<Network>,
        at: Timestamp,
    },
    /// An administrator (the envelope's actor) revoked someone's internal key, or the key went
    /// with its owner's deactivation. It never verifies again.
    ApiKeyRevoked {
        key: KeyId,
        owner: UserId,
        reason: Reason,
        at: Timestamp,
    },
    /// An administrator revoked someone's external key, or it went with its owner's
    /// deactivation. Its data key was destroyed with this event, as for a deletion.
    ExternalKeyRevoked {
        key: ExternalKeyId,
        owner: UserId,
        provider: Provider,
        reason: Reason,
        at: Timestamp,
    },
    /// The user can no longer authenticate; appended with the revocation of every key they
    /// had (offboarding in one step).
    UserDeactivated {
        user: UserId,
        reason: Reason,
        at: Timestamp,
    },
    /// The account works again with its roles; none of its revoked keys comes back.
    UserReactivated { user: UserId, at: Timestamp },
    /// Files the job selected but did not fetch: the store already holds the same version from
    /// the same source (incremental sync). Recorded once, after listing.
    IngestionFilesSkipped {
        ingestion: IngestionId,
        files: u64,
        bytes: u64,
        at: Timestamp,
    },
    /// A user saved a source: a selection and destination to import again, by hand or on a
    /// `schedule` (five cron fields) read in `timezone` (decision 0031).
    SourceSaved {
        source: SourceId,
        owner: UserId,
        name: SourceName,
        selection: Selection,
        destination: String,
        schedule: Option<String>,
        timezone: Option<String>,
        at: Timestamp,
    },
    /// The source's schedule starts nothing until it is resumed.
    SourcePaused {
        source: SourceId,
        owner: UserId,
        at: Timestamp,
    },
    SourceResumed {
        source: SourceId,
        owner: UserId,
        at: Timestamp,
    },
    /// The source is gone; its runs' jobs and files stay.
    SourceDeleted {
        source: SourceId,
        owner: UserId,
        at: Timestamp,
    },
    /// A run of the source began: recorded in the same append as its job's
    /// `IngestionRequested`. `scheduled_for`: the occurrence it runs for; `None`, by hand.
    SourceRunStarted {
        source: SourceId,
        owner: UserId,
        ingestion: IngestionId,
        scheduled_for: Option<Timestamp>,
        at: Timestamp,
    },
    /// The job fetches every selected file, even those the store already holds in the same
    /// version (`force`): recorded with its request, so a worker elsewhere, and a job resumed
    /// after a restart, honour it (decision 0033).
    IngestionSyncForced {
        ingestion: IngestionId,
        at: Timestamp,
    },
    /// The scheduler could not start the source's run for the occurrence `scheduled_for`
    /// because of its owner's situation (no usable key for the provider, the owner may no
    /// longer import): recorded once per occurrence, so the owner sees why the import stopped.
    /// `reason`: the refusal's sentence, clipped, never a secret (decision 0031).
    SourceRunRefused {
        source: SourceId,
        owner: UserId,
        scheduled_for: Timestamp,
        reason: String,
        at: Timestamp,
    },
}

/// What kind of failure ended an ingestion or one of its files: what a program (an exit code,
/// an alert, a retry policy) decides on. The sentence for people is the `reason` beside it.
///
/// Stored in the log by its position: add kinds at the end only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The provider refused the credential or the request (rejected or expired key, signature
    /// mismatch, access denied): fix the key or its permissions.
    ProviderRejected,
    /// The bucket, project, folder or file does not exist (any more).
    NotFound,
    /// The endpoint cannot be reached (its name does not resolve, the connection is refused,
    /// TLS fails): permanent until the configuration changes, so never retried.
    Unreachable,
    /// Timeouts, broken connections, throttling and server errors that outlasted the retries.
    Transient,
    /// The bytes did not match what the provider reported, or the file changed meanwhile.
    Integrity,
    /// The sample store or the event log could not be written.
    Storage,
    /// Anything else: a malformed answer, a bug.
    Internal,
    /// The job was cancelled, or its key deleted or expired while it ran.
    Cancelled,
}

impl FailureKind {
    /// Every kind, in their stored order.
    pub const ALL: [FailureKind; 8] = [
        FailureKind::ProviderRejected,
        FailureKind::NotFound,
        FailureKind::Unreachable,
        FailureKind::Transient,
        FailureKind::Integrity,
        FailureKind::Storage,
        FailureKind::Internal,
        FailureKind::Cancelled,
    ];

    /// The JSON form: `provider_rejected`, `not_found`, …
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ProviderRejected => "provider_rejected",
            FailureKind::NotFound => "not_found",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Transient => "transient",
            FailureKind::Integrity => "integrity",
            FailureKind::Storage => "storage",
            FailureKind::Internal => "internal",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused an event. Recorded in every envelope in its textual form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// A user, authenticated by one of their internal keys (or a session derived from one).
    User { user: UserId, key: Option<KeyId> },
    /// The vault itself: the expiry sweeper, usage aggregation, ingestion progress.
    System,
    /// Someone with local access to the data directory (bootstrap, backups, key rotation).
    Operator,
}

impl Actor {
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Actor::User { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Parses the textual form written by `Display`.
    pub fn parse(raw: &str) -> Option<Actor> {
        use crate::values::FromTrusted;
        match raw {
            "system" => Some(Actor::System),
            "operator" => Some(Actor::Operator),
            _ => {
                let rest = raw.strip_prefix("user:")?;
                let (user, key) = match rest.split_once("/key:") {
                    Some((user, key)) => (user, Some(KeyId::from_trusted(key.to_owned()))),
                    None => (rest, None),
                };
                Some(Actor::User {
                    user: UserId::from_trusted(user.to_owned()),
                    key,
                })
            }
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User {
                user,
                key: Some(key),
            } => write!(f, "user:{user}/key:{key}"),
            Actor::User { user, key: None } => write!(f, "user:{user}"),
            Actor::System => f.write_str("system"),
            Actor::Operator => f.write_str("operator"),
        }
    }
}
