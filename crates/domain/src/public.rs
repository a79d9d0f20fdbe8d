//! The public form of events, as published on NATS and exported to auditors:
//! `{id, seq, type, time, subject, actor, data}`. It never carries a secret, a key hash or
//! ciphertext; subscribers deserialize into these same types.

use serde::{Deserialize, Serialize};

use crate::event::{Event, ExternalKeyPublic, FailureKind, Selection};
use crate::permissions::Permission;
use crate::time::Timestamp;
use crate::values::{
    AwsRegion, DisplayName, ExternalKeyId, IngestionId, KeyHint, KeyId, KeyName, Label, Provider,
    RoleName, UserId,
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PublicEvent {
    UserCreated {
        user: UserId,
        display_name: Option<DisplayName>,
    },
    RoleDefined {
        role: RoleName,
        permissions: Vec<Permission>,
    },
    RoleGranted {
        user: UserId,
        role: RoleName,
    },
    RoleRevoked {
        user: UserId,
        role: RoleName,
    },
    ApiKeyCreated {
        key: KeyId,
        owner: UserId,
        name: KeyName,
        hint: KeyHint,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    },
    ApiKeyRolled {
        key: KeyId,
        owner: UserId,
        hint: KeyHint,
        previous_valid_until: Timestamp,
    },
    ApiKeyDeleted {
        key: KeyId,
        owner: UserId,
    },
    ApiKeyExpired {
        key: KeyId,
        owner: UserId,
    },
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
        provider: Provider,
        /// `AKIA…WXYZ` for AWS, `…WXYZ` for a DNAnexus token.
        hint: KeyHint,
        region: Option<AwsRegion>,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    },
    ExternalKeyDeleted {
        key: ExternalKeyId,
        owner: UserId,
        provider: Provider,
    },
    ExternalKeyExpired {
        key: ExternalKeyId,
        owner: UserId,
        provider: Provider,
    },
    ExternalKeyVerified {
        key: ExternalKeyId,
        owner: UserId,
        ok: bool,
        detail: String,
    },
    ExternalKeyUsed {
        key: ExternalKeyId,
        owner: UserId,
        ingestion: IngestionId,
    },
    IngestionRequested {
        ingestion: IngestionId,
        owner: UserId,
        external_key: ExternalKeyId,
        selection: Selection,
        destination: String,
        batch_id: String,
    },
    IngestionListed {
        ingestion: IngestionId,
        files: u64,
        bytes: u64,
    },
    IngestionFileFetched {
        ingestion: IngestionId,
        path: String,
        size: u64,
        sha256: String,
        source_etag: String,
        external_key: ExternalKeyId,
    },
    IngestionFileFailed {
        ingestion: IngestionId,
        path: String,
        reason: String,
        /// `null` for failures recorded before kinds existed.
        #[serde(default)]
        failure_kind: Option<FailureKind>,
    },
    IngestionCompleted {
        ingestion: IngestionId,
        files: u64,
        bytes: u64,
        failed: u64,
    },
    IngestionFailed {
        ingestion: IngestionId,
        reason: String,
        /// `null` for failures recorded before kinds existed.
        #[serde(default)]
        failure_kind: Option<FailureKind>,
    },
    IngestionCancelled {
        ingestion: IngestionId,
    },
    MasterKeyRotated {
        generation: u32,
        data_keys: u64,
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
        }
    }
}

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
                region: match public {
                    ExternalKeyPublic::Aws { region, .. } => Some(region),
                    ExternalKeyPublic::Dnanexus { .. } => None,
                },
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
