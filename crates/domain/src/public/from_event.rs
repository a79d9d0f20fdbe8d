//! The one mapping from a stored event to its public form: what each event shows, and what
//! (hashes, ciphertext, the time inside the envelope) it leaves out.

use super::{PublicEvent, hex};
use crate::event::Event;

impl From<&Event> for PublicEvent {
    fn from(event: &Event) -> PublicEvent {
        match event.clone() {
            Event::UserCreated {
                user, display_name, ..
            } => PublicEvent::UserCreated { user, display_name },
            Event::RoleDefined {
                role, permissions, ..
            } => PublicEvent::RoleDefined { role, permissions },
            Event::RoleGranted { user, role, .. } => PublicEvent::RoleGranted { user, role },
            Event::RoleRevoked { user, role, .. } => PublicEvent::RoleRevoked { user, role },
            Event::ApiKeyCreated {
                key,
                owner,
                name,
                hint,
                created_at,
                expires_at,
                secret_hash: _,
            } => PublicEvent::ApiKeyCreated {
                key,
                owner,
                name,
                hint,
                created_at,
                expires_at,
            },
            Event::ApiKeyRolled {
                key,
                owner,
                hint,
                previous_valid_until,
                secret_hash: _,
                at: _,
            } => PublicEvent::ApiKeyRolled {
                key,
                owner,
                hint,
                previous_valid_until,
            },
            Event::ApiKeyDeleted { key, owner, .. } => PublicEvent::ApiKeyDeleted { key, owner },
            Event::ApiKeyExpired { key, owner, .. } => PublicEvent::ApiKeyExpired { key, owner },
            Event::ApiKeyUsed {
                key,
                owner,
                last_used_at,
                uses,
            } => PublicEvent::ApiKeyUsed {
                key,
                owner,
                last_used_at,
                uses,
            },
            Event::ExternalKeyCreated {
                key,
                owner,
                label,
                public,
                created_at,
                expires_at,
                sealed: _,
            } => PublicEvent::ExternalKeyCreated {
                key,
                owner,
                label,
                provider: public.provider(),
                hint: public.hint(),
                region: public.region().cloned(),
                created_at,
                expires_at,
            },
            Event::ExternalKeyDeleted {
                key,
                owner,
                provider,
                ..
            } => PublicEvent::ExternalKeyDeleted {
                key,
                owner,
                provider,
            },
            Event::ExternalKeyExpired {
                key,
                owner,
                provider,
                ..
            } => PublicEvent::ExternalKeyExpired {
                key,
                owner,
                provider,
            },
            Event::ExternalKeyVerified {
                key,
                owner,
                ok,
                detail,
                ..
            } => PublicEvent::ExternalKeyVerified {
                key,
                owner,
                ok,
                detail,
            },
            Event::ExternalKeyUsed {
                key,
                owner,
                ingestion,
                ..
            } => PublicEvent::ExternalKeyUsed {
                key,
                owner,
                ingestion,
            },
            Event::IngestionRequested {
                ingestion,
                owner,
                external_key,
                selection,
                destination,
                batch_id,
                ..
            } => PublicEvent::IngestionRequested {
                ingestion,
                owner,
                external_key,
                selection,
                destination,
                batch_id,
            },
            Event::IngestionListed {
                ingestion,
                files,
                bytes,
                ..
            } => PublicEvent::IngestionListed {
                ingestion,
                files,
                bytes,
            },
            Event::IngestionFileFetched {
                ingestion,
                path,
                size,
                sha256,
                source_etag,
                external_key,
                ..
            } => PublicEvent::IngestionFileFetched {
                ingestion,
                path,
                size,
                sha256: hex(&sha256),
                source_etag,
                external_key,
            },
            Event::IngestionFileFailed {
                ingestion,
                path,
                reason,
                failure_kind,
                ..
            } => PublicEvent::IngestionFileFailed {
                ingestion,
                path,
                reason,
                failure_kind: Some(failure_kind),
            },
            Event::IngestionCompleted {
                ingestion,
                files,
                bytes,
                failed,
                ..
            } => PublicEvent::IngestionCompleted {
                ingestion,
                files,
                bytes,
                failed,
            },
            Event::IngestionFailed {
                ingestion,
                reason,
                failure_kind,
                ..
            } => PublicEvent::IngestionFailed {
                ingestion,
                reason,
                failure_kind: Some(failure_kind),
            },
            Event::IngestionCancelled { ingestion, .. } => {
                PublicEvent::IngestionCancelled { ingestion }
            }
            Event::MasterKeyRotated {
                generation,
                data_keys,
                ..
            } => PublicEvent::MasterKeyRotated {
                generation,
                data_keys,
            },
            Event::ExternalKeyRotated {
                key,
                owner,
                public,
                previous_data_key,
                data_key,
                sealed: _,
                at: _,
            } => PublicEvent::ExternalKeyRotated {
                key,
                owner,
                provider: public.provider(),
                hint: public.hint(),
                region: public.region().cloned(),
                previous_data_key,
                data_key,
            },
            Event::ExternalKeyDataKeyDestroyed {
                key,
                owner,
                data_key,
                ..
            } => PublicEvent::ExternalKeyDataKeyDestroyed {
                key,
                owner,
                data_key,
            },
            Event::ApiKeyExpiring {
                key,
                owner,
                expires_at,
                horizon_days,
                ..
            } => PublicEvent::ApiKeyExpiring {
                key,
                owner,
                expires_at,
                horizon_days,
            },
            Event::ExternalKeyExpiring {
                key,
                owner,
                provider,
                expires_at,
                horizon_days,
                ..
            } => PublicEvent::ExternalKeyExpiring {
                key,
                owner,
                provider,
                expires_at,
                horizon_days,
            },
            Event::ApiKeyLeaked {
                key,
                owner,
                url,
                source,
                ..
            } => PublicEvent::ApiKeyLeaked {
                key,
                owner,
                url,
                source,
            },
            Event::HoneytokenCreated {
                key,
                owner,
                name,
                hint,
                expires_at,
                ..
            } => PublicEvent::HoneytokenCreated {
                key,
                owner,
                name,
                hint,
                expires_at,
            },
            Event::HoneytokenUsed {
                key,
                owner,
                source_address,
                user_agent,
                route,
                ..
            } => PublicEvent::HoneytokenUsed {
                key,
                owner,
                source_address,
                user_agent,
                route,
            },
            Event::ExternalKeyLeased {
                key,
                owner,
                ingestion,
                worker,
                lease,
                data_key,
                expires_at,
                at: _,
            } => PublicEvent::ExternalKeyLeased {
                key,
                owner,
                ingestion,
                worker,
                lease,
                data_key,
                expires_at,
            },
            Event::ExternalKeyRoleAssumed {
                key,
                owner,
                ingestion,
                role_arn,
                session_name,
                access_key_id,
                session_expires_at,
                at: _,
            } => PublicEvent::ExternalKeyRoleAssumed {
                key,
                owner,
                ingestion,
                role_arn,
                session_name,
                access_key_id,
                session_expires_at,
            },
            Event::ApiKeyScoped {
                key,
                owner,
                scopes,
                networks,
                ..
            } => PublicEvent::ApiKeyScoped {
                key,
                owner,
                scopes,
                networks: networks.iter().map(ToString::to_string).collect(),
            },
            Event::ApiKeyRevoked {
                key, owner, reason, ..
            } => PublicEvent::ApiKeyRevoked { key, owner, reason },
            Event::ExternalKeyRevoked {
                key,
                owner,
                provider,
                reason,
                ..
            } => PublicEvent::ExternalKeyRevoked {
                key,
                owner,
                provider,
                reason,
            },
            Event::UserDeactivated { user, reason, .. } => {
                PublicEvent::UserDeactivated { user, reason }
            }
            Event::UserReactivated { user, .. } => PublicEvent::UserReactivated { user },
            Event::IngestionFilesSkipped {
                ingestion,
                files,
                bytes,
                ..
            } => PublicEvent::IngestionFilesSkipped {
                ingestion,
                files,
                bytes,
            },
            Event::SourceSaved {
                source,
                owner,
                name,
                selection,
                destination,
                schedule,
                timezone,
                ..
            } => PublicEvent::SourceSaved {
                source,
                owner,
                name,
                selection,
                destination,
                schedule,
                timezone,
            },
            Event::SourcePaused { source, owner, .. } => {
                PublicEvent::SourcePaused { source, owner }
            }
            Event::SourceResumed { source, owner, .. } => {
                PublicEvent::SourceResumed { source, owner }
            }
            Event::SourceDeleted { source, owner, .. } => {
                PublicEvent::SourceDeleted { source, owner }
            }
            Event::SourceRunStarted {
                source,
                owner,
                ingestion,
                scheduled_for,
                ..
            } => PublicEvent::SourceRunStarted {
                source,
                owner,
                ingestion,
                scheduled_for,
            },
            Event::IngestionSyncForced { ingestion, .. } => {
                PublicEvent::IngestionSyncForced { ingestion }
            }
            Event::SourceRunRefused {
                source,
                owner,
                scheduled_for,
                reason,
                ..
            } => PublicEvent::SourceRunRefused {
                source,
                owner,
                scheduled_for,
                reason,
            },
        }
    }
}
