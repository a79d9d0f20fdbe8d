//! The record of a `role` key's sessions: every AssumeRole becomes an `ExternalKeyRoleAssumed`
//! event (actor `system`), for a job or for a test of the key. No credential is recorded: the
//! role, the session name, the temporary access key id and when the session ends.

use std::sync::Arc;

use keyledger_connect_s3::{AssumedSession, OnAssumed};
use keyledger_domain::{
    AccessKeyId, Actor, ExternalKeyId, FromTrusted, IngestionId, RoleAssumed, Timestamp,
};
use keyledger_vault::Vault;

/// Records one AssumeRole of `key`'s role. A failure to record is logged, never fatal to the
/// job or test that assumed it (the session exists at AWS either way).
pub async fn record_role_assumed(
    vault: &Vault,
    key: &ExternalKeyId,
    ingestion: Option<IngestionId>,
    session: AssumedSession,
) {
    let millis = session
        .expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    let assumed = RoleAssumed {
        key: key.clone(),
        ingestion,
        session_name: session.session_name,
        // STS issued it; its shape is AWS's, not the user's input.
        access_key_id: AccessKeyId::from_trusted(session.access_key_id),
        session_expires_at: Timestamp::from_millis(millis),
    };
    if let Err(error) = vault.record_role_assumed(Actor::System, assumed).await {
        tracing::warn!(external_key = %key, error = %error, "could not record an AssumeRole");
    }
}

/// The hook that records each AssumeRole of a job's (or test's) sessions.
pub(crate) fn recording_hook(
    vault: Vault,
    key: ExternalKeyId,
    ingestion: Option<IngestionId>,
) -> OnAssumed {
    Arc::new(move |session: AssumedSession| {
        let (vault, key, ingestion) = (vault.clone(), key.clone(), ingestion.clone());
        Box::pin(async move { record_role_assumed(&vault, &key, ingestion, session).await })
    })
}
