//! The record of a `role` key's sessions: every AssumeRole becomes an `ExternalKeyRoleAssumed`
//! event (actor `system`), for a job or for a test of the key. No credential is recorded: the
//! role, the session name, the temporary access key id and when the session ends.

use std::sync::Arc;

use keyledger_connect_s3::{AssumedSession, OnAssumed};
use keyledger_domain::{
    AccessKeyId, Actor, ExternalKeyId, FromTrusted, IngestionId, RoleAssumed, Timestamp,
};
use keyledger_vault::{AwsSessionToken, ExternalCredential, Vault};

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

/// For a worker's job on a `role` key (decision 0030): the vault assumes the role for the job —
/// session named after it, narrowed by the read-only session policy to its bucket and prefix —
/// records `ExternalKeyRoleAssumed` with the job, and returns the session as the credential to
/// lease. Any other credential is returned as it is. Called at the lease and at each renewal.
pub async fn session_for_job(
    vault: &Vault,
    config: &crate::IngestConfig,
    job: &keyledger_domain::Ingestion,
    credential: &ExternalCredential,
) -> Result<ExternalCredential, crate::SourceError> {
    let ExternalCredential::AwsRole {
        role_arn,
        region,
        external_id,
    } = credential
    else {
        return Ok(credential.clone());
    };
    let role_use = crate::RoleUse {
        purpose: job.id.to_string(),
        scope: match &job.selection {
            keyledger_domain::Selection::Aws { bucket, prefix, .. } => {
                Some((bucket.clone(), prefix.clone()))
            }
            keyledger_domain::Selection::Dnanexus { .. } => None,
        },
        on_assumed: None,
    };
    let settings = crate::s3::role_settings(role_arn, region, external_id, config, &role_use)?;
    let (issued, session) = keyledger_connect_s3::assume_role_once(settings, &config.s3)
        .await
        .map_err(|failure| {
            crate::SourceError::new(
                crate::probe::refusal_kind(failure.refusal),
                format!("the role could not be assumed: {}", failure.detail),
            )
        })?;
    record_role_assumed(vault, &job.external_key, Some(job.id.clone()), session).await;
    let expires_at = issued
        .expires_at
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    Ok(ExternalCredential::Aws {
        access_key_id: issued.access_key_id.clone(),
        secret_access_key: keyledger_crypto::SecretString::new(issued.secret_access_key.clone()),
        region: issued.region.clone(),
        session: issued.session_token.as_ref().map(|token| AwsSessionToken {
            token: keyledger_crypto::SecretString::new(token.clone()),
            expires_at: Timestamp::from_millis(expires_at),
        }),
    })
}
