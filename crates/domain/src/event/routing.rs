//! Where each event goes: its stream (the aggregate instance whose version a decision
//! expects), its type name and its NATS subject.

use super::Event;
use crate::values::{IngestionId, Provider, RoleName, SourceId, UserId};

impl Event {
    /// The stream (aggregate instance) this event belongs to; expected versions are per stream.
    pub fn stream_id(&self) -> String {
        match self {
            Event::UserCreated { user, .. }
            | Event::RoleGranted { user, .. }
            | Event::RoleRevoked { user, .. } => user_stream(user),
            Event::RoleDefined { role, .. } => role_stream(role),
            Event::ApiKeyCreated { key, .. }
            | Event::ApiKeyRolled { key, .. }
            | Event::ApiKeyDeleted { key, .. }
            | Event::ApiKeyExpired { key, .. }
            | Event::ApiKeyUsed { key, .. }
            | Event::ApiKeyExpiring { key, .. }
            | Event::ApiKeyLeaked { key, .. }
            | Event::HoneytokenCreated { key, .. }
            | Event::HoneytokenUsed { key, .. } => format!("api_key/{key}"),
            Event::ExternalKeyCreated { owner, public, .. }
            | Event::ExternalKeyRotated { owner, public, .. } => {
                external_key_stream(owner, public.provider())
            }
            Event::ExternalKeyDeleted {
                owner, provider, ..
            }
            | Event::ExternalKeyExpired {
                owner, provider, ..
            } => external_key_stream(owner, *provider),
            // Verification and use do not change the one-per-provider invariant, so they live in
            // the key's own stream and never conflict with a create or delete.
            // So does the destruction of a retired data key, which no decision waits for.
            Event::ExternalKeyVerified { key, .. }
            | Event::ExternalKeyUsed { key, .. }
            | Event::ExternalKeyDataKeyDestroyed { key, .. }
            | Event::ExternalKeyExpiring { key, .. }
            | Event::ExternalKeyRoleAssumed { key, .. } => format!("external_key_use/{key}"),
            Event::IngestionRequested { ingestion, .. }
            | Event::IngestionListed { ingestion, .. }
            | Event::IngestionFileFetched { ingestion, .. }
            | Event::IngestionFileFailed { ingestion, .. }
            | Event::IngestionCompleted { ingestion, .. }
            | Event::IngestionFailed { ingestion, .. }
            | Event::IngestionCancelled { ingestion, .. }
            // A lease decides who may report the job's progress: it is part of the job.
            | Event::ExternalKeyLeased { ingestion, .. }
            | Event::IngestionFilesSkipped { ingestion, .. }
            | Event::IngestionSyncForced { ingestion, .. } => ingestion_stream(ingestion),
            Event::MasterKeyRotated { .. } => "system/master_key".to_owned(),
            Event::ApiKeyScoped { key, .. } | Event::ApiKeyRevoked { key, .. } => {
                format!("api_key/{key}")
            }
            Event::ExternalKeyRevoked {
                owner, provider, ..
            } => external_key_stream(owner, *provider),
            Event::UserDeactivated { user, .. } | Event::UserReactivated { user, .. } => {
                user_stream(user)
            }
            Event::SourceSaved { source, .. }
            | Event::SourcePaused { source, .. }
            | Event::SourceResumed { source, .. }
            | Event::SourceDeleted { source, .. }
            | Event::SourceRunStarted { source, .. }
            | Event::SourceRunRefused { source, .. } => source_stream(source),
        }
    }

    /// The event's type name, as in JSON's `type` field: `ApiKeyCreated`.
    pub fn type_name(&self) -> &'static str {
        self.kind().0
    }

    /// The NATS subject suffix: `api_key.created`.
    pub fn subject_suffix(&self) -> &'static str {
        self.kind().1
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Event::UserCreated { .. } => ("UserCreated", "user.created"),
            Event::RoleDefined { .. } => ("RoleDefined", "role.defined"),
            Event::RoleGranted { .. } => ("RoleGranted", "user.role_granted"),
            Event::RoleRevoked { .. } => ("RoleRevoked", "user.role_revoked"),
            Event::ApiKeyCreated { .. } => ("ApiKeyCreated", "api_key.created"),
            Event::ApiKeyRolled { .. } => ("ApiKeyRolled", "api_key.rolled"),
            Event::ApiKeyDeleted { .. } => ("ApiKeyDeleted", "api_key.deleted"),
            Event::ApiKeyExpired { .. } => ("ApiKeyExpired", "api_key.expired"),
            Event::ApiKeyUsed { .. } => ("ApiKeyUsed", "api_key.used"),
            Event::ExternalKeyCreated { .. } => ("ExternalKeyCreated", "external_key.created"),
            Event::ExternalKeyDeleted { .. } => ("ExternalKeyDeleted", "external_key.deleted"),
            Event::ExternalKeyExpired { .. } => ("ExternalKeyExpired", "external_key.expired"),
            Event::ExternalKeyVerified { .. } => ("ExternalKeyVerified", "external_key.verified"),
            Event::ExternalKeyUsed { .. } => ("ExternalKeyUsed", "external_key.used"),
            Event::IngestionRequested { .. } => ("IngestionRequested", "ingestion.requested"),
            Event::IngestionListed { .. } => ("IngestionListed", "ingestion.listed"),
            Event::IngestionFileFetched { .. } => {
                ("IngestionFileFetched", "ingestion.file_fetched")
            }
            Event::IngestionFileFailed { .. } => ("IngestionFileFailed", "ingestion.file_failed"),
            Event::IngestionCompleted { .. } => ("IngestionCompleted", "ingestion.completed"),
            Event::IngestionFailed { .. } => ("IngestionFailed", "ingestion.failed"),
            Event::IngestionCancelled { .. } => ("IngestionCancelled", "ingestion.cancelled"),
            Event::MasterKeyRotated { .. } => ("MasterKeyRotated", "system.master_key_rotated"),
            Event::ExternalKeyRotated { .. } => ("ExternalKeyRotated", "external_key.rotated"),
            Event::ExternalKeyDataKeyDestroyed { .. } => (
                "ExternalKeyDataKeyDestroyed",
                "external_key.data_key_destroyed",
            ),
            Event::ApiKeyExpiring { .. } => ("ApiKeyExpiring", "api_key.expiring"),
            Event::ExternalKeyExpiring { .. } => ("ExternalKeyExpiring", "external_key.expiring"),
            Event::ApiKeyLeaked { .. } => ("ApiKeyLeaked", "api_key.leaked"),
            Event::HoneytokenCreated { .. } => ("HoneytokenCreated", "api_key.honeytoken_created"),
            Event::HoneytokenUsed { .. } => ("HoneytokenUsed", "api_key.honeytoken_used"),
            Event::ExternalKeyLeased { .. } => ("ExternalKeyLeased", "external_key.leased"),
            Event::ExternalKeyRoleAssumed { .. } => {
                ("ExternalKeyRoleAssumed", "external_key.role_assumed")
            }
            Event::ApiKeyScoped { .. } => ("ApiKeyScoped", "api_key.scoped"),
            Event::ApiKeyRevoked { .. } => ("ApiKeyRevoked", "api_key.revoked"),
            Event::ExternalKeyRevoked { .. } => ("ExternalKeyRevoked", "external_key.revoked"),
            Event::UserDeactivated { .. } => ("UserDeactivated", "user.deactivated"),
            Event::UserReactivated { .. } => ("UserReactivated", "user.reactivated"),
            Event::IngestionFilesSkipped { .. } => {
                ("IngestionFilesSkipped", "ingestion.files_skipped")
            }
            Event::SourceSaved { .. } => ("SourceSaved", "source.saved"),
            Event::SourcePaused { .. } => ("SourcePaused", "source.paused"),
            Event::SourceResumed { .. } => ("SourceResumed", "source.resumed"),
            Event::SourceDeleted { .. } => ("SourceDeleted", "source.deleted"),
            Event::SourceRunStarted { .. } => ("SourceRunStarted", "source.run_started"),
            Event::IngestionSyncForced { .. } => ("IngestionSyncForced", "ingestion.sync_forced"),
            Event::SourceRunRefused { .. } => ("SourceRunRefused", "source.run_refused"),
        }
    }
}

/// The stream of a user: their creation and their roles.
pub fn user_stream(user: &UserId) -> String {
    format!("user/{user}")
}

/// The stream of a custom role's definition.
pub fn role_stream(role: &RoleName) -> String {
    format!("role/{role}")
}

/// The stream of one ingestion job.
pub fn ingestion_stream(ingestion: &IngestionId) -> String {
    format!("ingestion/{ingestion}")
}

/// The stream of a saved source: its definition and its runs.
pub fn source_stream(source: &SourceId) -> String {
    format!("source/{source}")
}

pub fn external_key_stream(owner: &UserId, provider: Provider) -> String {
    format!("external_key/{owner}/{provider}")
}
