//! External keys: AWS and DNAnexus credentials, sealed with envelope encryption. The wrapped data
//! key lives in the `data_keys` tree, outside the log; deleting it shreds the secret. A rotation
//! seals a new secret under a new data key and retires the old one, which `leases` destroys once
//! no running job holds it.
//!
//! An AWS session's secret and session token are sealed together, as one secret
//! (`secret\ntoken`): neither is ever in the log, the projection or a listing in plain text.

use std::sync::Arc;

use keyledger_crypto::{SecretString, credential_aad, random_base62};
use keyledger_domain::{
    AccessKeyId, Action, Actor, AwsExternalId, AwsRegion, AwsRoleArn, CredentialKind, DataKeyId,
    DomainError, Event, ExternalKeyId, ExternalKeyPublic, ExternalKeyRotation, FromTrusted,
    KeyDuration, KeyHint, KeyStatus, Label, NewExternalKey, Provider, RoleAssumed, Timestamp,
    UserId, ValidationError, check_aws_secret, check_aws_session_token, check_dnanexus_token,
};
use serde::Serialize;

use crate::leases::DataKeyHold;
use crate::{Executed, Vault, VaultError};

/// A credential as a user submits it, validated.
#[derive(Debug, Clone)]
pub enum NewCredential {
    Aws {
        access_key_id: AccessKeyId,
        secret_access_key: SecretString,
        region: AwsRegion,
    },
    Dnanexus {
        token: SecretString,
    },
    /// Temporary credentials: an `ASIA…` id, its secret, its session token and when that expires.
    AwsSession {
        access_key_id: AccessKeyId,
        secret_access_key: SecretString,
        session_token: SecretString,
        token_expires_at: Timestamp,
        region: AwsRegion,
    },
    /// An IAM role to assume per job; the external ID is the owner's, added by the vault.
    AwsRole {
        role_arn: AwsRoleArn,
        region: AwsRegion,
    },
}

/// Separates the secret from the session token in a sealed session; neither contains it.
const SESSION_SEPARATOR: char = '\n';

impl NewCredential {
    pub fn aws(
        access_key_id: &str,
        secret_access_key: SecretString,
        region: &str,
    ) -> Result<NewCredential, ValidationError> {
        let access_key_id = AccessKeyId::parse(access_key_id.trim())?;
        if access_key_id.as_str().starts_with("ASIA") {
            return Err(ValidationError::new(
                "session_token",
                "an ASIA… access key id is a temporary credential and works only with its session \
                 token: store it as kind `session` with its session_token and session_expires_at",
            ));
        }
        check_aws_secret(secret_access_key.expose())?;
        let region = AwsRegion::parse(region.trim())?;
        Ok(NewCredential::Aws {
            access_key_id,
            secret_access_key,
            region,
        })
    }

    /// Temporary AWS credentials (`aws sts get-session-token`, AWS SSO). The token's expiry is
    /// checked against the clock when the key is stored.
    pub fn aws_session(
        access_key_id: &str,
        secret_access_key: SecretString,
        session_token: SecretString,
        token_expires_at: Timestamp,
        region: &str,
    ) -> Result<NewCredential, ValidationError> {
        let access_key_id = AccessKeyId::parse(access_key_id.trim())?;
        if !access_key_id.as_str().starts_with("ASIA") {
            return Err(ValidationError::new(
                "access_key_id",
                "session credentials have an access key id starting with ASIA; an AKIA… key is a \
                 long-lived key: store it as kind `access_key`, without a session token",
            ));
        }
        check_aws_secret(secret_access_key.expose())?;
        check_aws_session_token(session_token.expose())?;
        let region = AwsRegion::parse(region.trim())?;
        Ok(NewCredential::AwsSession {
            access_key_id,
            secret_access_key,
            session_token,
            token_expires_at,
            region,
        })
    }

    /// A role that the owner's trust policy lets keyledger assume with their external ID.
    pub fn aws_role(role_arn: &str, region: &str) -> Result<NewCredential, ValidationError> {
        Ok(NewCredential::AwsRole {
            role_arn: AwsRoleArn::parse(role_arn.trim())?,
            region: AwsRegion::parse(region.trim())?,
        })
    }

    pub fn dnanexus(token: SecretString) -> Result<NewCredential, ValidationError> {
        check_dnanexus_token(token.expose())?;
        Ok(NewCredential::Dnanexus { token })
    }

    pub fn provider(&self) -> Provider {
        match self {
            NewCredential::Aws { .. }
            | NewCredential::AwsSession { .. }
            | NewCredential::AwsRole { .. } => Provider::Aws,
            NewCredential::Dnanexus { .. } => Provider::Dnanexus,
        }
    }

    /// What may be shown, and the secret bytes to seal. A role has no secret: its sealed
    /// secret is empty, so it has a data key like every credential (decision 0023).
    fn split(&self, external_id: &AwsExternalId) -> (ExternalKeyPublic, SecretString) {
        match self {
            NewCredential::AwsRole { role_arn, region } => (
                ExternalKeyPublic::AwsRole {
                    role_arn: role_arn.clone(),
                    region: region.clone(),
                    external_id: external_id.clone(),
                },
                SecretString::new(String::new()),
            ),
            NewCredential::Aws {
                access_key_id,
                secret_access_key,
                region,
            } => (
                ExternalKeyPublic::Aws {
                    access_key_id: access_key_id.clone(),
                    region: region.clone(),
                },
                secret_access_key.clone(),
            ),
            NewCredential::Dnanexus { token } => (
                ExternalKeyPublic::Dnanexus {
                    token_hint: KeyHint::mask(token.expose(), 0, 4),
                },
                token.clone(),
            ),
            NewCredential::AwsSession {
                access_key_id,
                secret_access_key,
                session_token,
                token_expires_at,
                region,
            } => (
                ExternalKeyPublic::AwsSession {
                    access_key_id: access_key_id.clone(),
                    region: region.clone(),
                    token_expires_at: *token_expires_at,
                },
                SecretString::new(format!(
                    "{}{SESSION_SEPARATOR}{}",
                    secret_access_key.expose(),
                    session_token.expose()
                )),
            ),
        }
    }
}

/// A decrypted credential, in memory for the duration of a job.
#[derive(Debug, Clone)]
pub enum ExternalCredential {
    Aws {
        access_key_id: String,
        secret_access_key: SecretString,
        region: String,
        /// Present for temporary credentials (kind `session`).
        session: Option<AwsSessionToken>,
    },
    Dnanexus {
        token: SecretString,
    },
    /// A role to assume with the platform's own credentials (`[ingest] aws_role_*`).
    AwsRole {
        role_arn: String,
        region: String,
        external_id: String,
    },
}

/// The session half of temporary AWS credentials.
#[derive(Debug, Clone)]
pub struct AwsSessionToken {
    pub token: SecretString,
    /// When AWS stops accepting the token.
    pub expires_at: Timestamp,
}

/// A credential handed to a job, with where it came from. While it (or a clone, or the hold
/// from [`Lease::into_hold`]) lives, the data key it was opened with is not destroyed, even if
/// the key is rotated meanwhile.
#[derive(Debug, Clone)]
pub struct Lease {
    pub key: ExternalKeyId,
    pub owner: UserId,
    pub provider: Provider,
    pub credential: ExternalCredential,
    hold: Arc<DataKeyHold>,
}

impl Lease {
    /// The data key this lease was opened with.
    pub fn data_key(&self) -> &DataKeyId {
        self.hold.data_key()
    }

    /// Drops the credential but keeps the claim on its data key: for a job whose connector
    /// keeps its own copy of the secret for as long as the job runs.
    pub fn into_hold(self) -> Arc<DataKeyHold> {
        self.hold
    }
}

/// An external key as listings show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalKeyView {
    pub id: ExternalKeyId,
    pub label: Label,
    pub provider: Provider,
    /// `AKIA…WXYZ` for AWS, `…WXYZ` for a DNAnexus token.
    pub hint: KeyHint,
    /// `access_key`, `session` or `token`.
    pub kind: CredentialKind,
    /// When a session's token expires; `None` for other kinds.
    pub token_expires_at: Option<Timestamp>,
    /// A role's ARN and the external ID its trust policy must require; `None` for other kinds.
    pub role: Option<(AwsRoleArn, AwsExternalId)>,
    pub region: Option<AwsRegion>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub last_verified_at: Option<Timestamp>,
    pub last_verified_ok: Option<bool>,
    pub last_verified_detail: Option<String>,
    pub status: KeyStatus,
    /// The nearest expiry-warning horizon (days) announced for this active key
    /// (`ExternalKeyExpiring`); `None` before the first warning.
    pub expiry_warning_days: Option<u32>,
}

impl Vault {
    /// Seals and stores a credential. One per provider per user: a second one is refused.
    pub async fn create_external_key(
        &self,
        actor: Actor,
        label: Label,
        credential: NewCredential,
        duration: KeyDuration,
        request_id: Option<[u8; 16]>,
    ) -> Result<ExternalKeyView, VaultError> {
        let owner = actor.user().cloned().ok_or(DomainError::permission_denied(
            keyledger_domain::Permission::ManageUserApiKeys,
        ))?;
        let provider = credential.provider();
        let now = self.now();
        // Refuse early, before any key material is generated, when the answer is already known.
        self.read(|state| {
            if !state.has_permission(&owner, keyledger_domain::Permission::ManageUserApiKeys) {
                return Err(state
                    .permission_denied(&owner, keyledger_domain::Permission::ManageUserApiKeys));
            }
            match state.active_external_key(&owner, provider) {
                Some(existing) if existing.status_at(now) == KeyStatus::Active => {
                    Err(DomainError::ExternalKeyExists { provider })
                }
                _ => Ok(()),
            }
        })?;
        let keyring = self.keyring();
        let key = ExternalKeyId::from_trusted(format!(
            "{}{}",
            ExternalKeyId::PREFIX,
            random_base62(keyring.rng(), 16)?
        ));
        let (public, secret) = credential.split(&self.aws_external_id(&owner));
        let (wrapped, sealed) = keyring.seal(
            key.as_str(),
            secret.expose().as_bytes(),
            &credential_aad(&key, &owner, provider),
        )?;
        // The data key is durable before the event that needs it; if the append fails, it goes.
        self.inner.log.data_keys().put(key.as_str(), &wrapped)?;
        let command = keyledger_domain::Command::new(
            actor,
            Action::CreateExternalKey(NewExternalKey {
                key: key.clone(),
                label,
                public,
                sealed,
                duration,
            }),
        );
        let offboarding = self.inner.offboarding.read().await;
        let executed = self.execute(command, request_id).await;
        drop(offboarding);
        if let Err(err) = executed {
            let _ = self.inner.log.data_keys().remove(key.as_str());
            return Err(err);
        }
        self.external_key_view(&key)
            .ok_or(VaultError::Inconsistent {
                what: "created key missing from the projection",
            })
    }

    /// Deletes the listed external keys atomically and destroys their data keys.
    pub async fn delete_external_keys(
        &self,
        actor: Actor,
        keys: Vec<ExternalKeyId>,
    ) -> Result<Executed, VaultError> {
        let executed = self.run(actor, Action::DeleteExternalKeys { keys }).await?;
        self.shred_data_keys_of(&executed.events);
        Ok(executed)
    }

    /// Destroys the data key of every external key `events` deleted or revoked.
    pub(crate) fn shred_data_keys_of(&self, events: &[Event]) {
        for event in events {
            if let Event::ExternalKeyDeleted { key, .. } | Event::ExternalKeyRevoked { key, .. } =
                event
            {
                let data_key = self.read(|state| state.data_key_of(key));
                // If this fails or the process dies first, start-up shreds it (see `open`).
                if let Err(err) = self.inner.log.data_keys().remove(data_key.as_str()) {
                    tracing::error!(key = %key, error = %err, "could not destroy a deleted key's data key; it will be retried at start-up");
                }
            }
        }
    }

    /// Replaces the secret of an active external key in place: a new data key seals it and
    /// the key keeps its id, label, provider and expiry. New leases open the new secret at once;
    /// the previous data key is destroyed now if no running job holds it, else when the last
    /// one ends.
    pub async fn rotate_external_key(
        &self,
        actor: Actor,
        key: ExternalKeyId,
        credential: NewCredential,
    ) -> Result<ExternalKeyView, VaultError> {
        let owner = actor.user().cloned().ok_or(DomainError::permission_denied(
            keyledger_domain::Permission::ManageUserApiKeys,
        ))?;
        // Refuse early, before any key material is generated, when the answer is already known;
        // `decide` judges again against the state the append is based on.
        let provider = self.read(|state| {
            let external = state
                .external_key(&key)
                .filter(|k| k.owner == owner && k.status != KeyStatus::Deleted)
                .ok_or_else(|| DomainError::NotFound {
                    what: "external key",
                    id: key.to_string(),
                })?;
            let status = external.status_at(self.now());
            if status != KeyStatus::Active {
                return Err(DomainError::NotActive {
                    what: "external key",
                    id: key.to_string(),
                    status,
                });
            }
            Ok(external.provider())
        })?;
        let keyring = self.keyring();
        let data_key = DataKeyId::rotated(&key, &random_base62(keyring.rng(), 16)?);
        let (public, secret) = credential.split(&self.aws_external_id(&owner));
        let (wrapped, sealed) = keyring.seal(
            data_key.as_str(),
            secret.expose().as_bytes(),
            &credential_aad(&key, &owner, provider),
        )?;
        // The new data key is durable before the event that names it; if the append fails, it
        // goes (and a crash in between leaves it to start-up, which removes it).
        self.inner
            .log
            .data_keys()
            .put(data_key.as_str(), &wrapped)?;
        let rotation = ExternalKeyRotation {
            key: key.clone(),
            public,
            sealed,
            data_key: data_key.clone(),
        };
        let executed = match self.run(actor, Action::RotateExternalKey(rotation)).await {
            Ok(executed) => executed,
            Err(err) => {
                let _ = self.inner.log.data_keys().remove(data_key.as_str());
                return Err(err);
            }
        };
        for event in &executed.events {
            // The rotation is recorded: failing to destroy now only delays it (the last lease's
            // release or the next start-up does it).
            if let Err(err) = self.destroy_if_unheld(event).await {
                tracing::error!(key = %key, error = %err, "could not destroy the replaced secret's data key yet; it will be retried");
            }
        }
        self.external_key_view(&key)
            .ok_or(VaultError::Inconsistent {
                what: "rotated key missing from the projection",
            })
    }

    /// Records the result of testing a credential against its provider ("save and test").
    pub async fn record_external_key_verification(
        &self,
        actor: Actor,
        key: ExternalKeyId,
        ok: bool,
        detail: String,
    ) -> Result<ExternalKeyView, VaultError> {
        self.run(
            actor,
            Action::RecordExternalKeyVerification {
                key: key.clone(),
                ok,
                detail,
            },
        )
        .await?;
        self.external_key_view(&key)
            .ok_or(VaultError::Inconsistent {
                what: "verified key missing from the projection",
            })
    }

    /// The external ID `owner`'s role trust policy must require: derived from the vault's
    /// pepper, so the same every time it is asked, before any key is stored (decision 0023).
    pub fn aws_external_id(&self, owner: &UserId) -> AwsExternalId {
        AwsExternalId::from_trusted(self.keyring().aws_external_id(owner.as_str()))
    }

    /// Records one AssumeRole of a `role` key (no credential, only what CloudTrail would show).
    pub async fn record_role_assumed(
        &self,
        actor: Actor,
        assumed: RoleAssumed,
    ) -> Result<Executed, VaultError> {
        self.run(actor, Action::RecordRoleAssumed(assumed)).await
    }

    pub fn list_external_keys(&self, owner: &UserId) -> Vec<ExternalKeyView> {
        let now = self.now();
        self.read(|state| {
            state
                .external_keys_of(owner)
                .into_iter()
                .map(|key| view(state, key, now))
                .collect()
        })
    }

    pub fn external_key_view(&self, key: &ExternalKeyId) -> Option<ExternalKeyView> {
        let now = self.now();
        self.read(|state| state.external_key(key).map(|k| view(state, k, now)))
    }

    /// Decrypts an external key for a job. The key must be active and not expired.
    pub fn lease_external_key(&self, key: &ExternalKeyId) -> Result<Lease, VaultError> {
        let now = self.now();
        let (hold, (owner, provider, public, sealed)) = self.claim_data_key(key, |state| {
            let external = state
                .external_key(key)
                .ok_or_else(|| DomainError::NotFound {
                    what: "external key",
                    id: key.to_string(),
                })?;
            let status = external.status_at(now);
            if status != KeyStatus::Active {
                return Err(DomainError::NotActive {
                    what: "external key",
                    id: key.to_string(),
                    status,
                });
            }
            Ok((
                external.owner.clone(),
                external.provider(),
                external.public.clone(),
                external.sealed.clone(),
            ))
        })?;
        let data_key = hold.data_key().as_str();
        let wrapped =
            self.inner
                .log
                .data_keys()
                .get(data_key)?
                .ok_or_else(|| DomainError::NotActive {
                    what: "external key",
                    id: key.to_string(),
                    status: KeyStatus::Deleted,
                })?;
        let secret = self.keyring().open(
            data_key,
            &wrapped,
            &sealed,
            &credential_aad(key, &owner, provider),
        )?;
        let secret = secret
            .into_secret_string()
            .ok_or(keyledger_crypto::CryptoError::Decrypt)?;
        let credential = match public {
            ExternalKeyPublic::Aws {
                access_key_id,
                region,
            } => ExternalCredential::Aws {
                access_key_id: access_key_id.to_string(),
                secret_access_key: secret,
                region: region.to_string(),
                session: None,
            },
            ExternalKeyPublic::AwsSession {
                access_key_id,
                region,
                token_expires_at,
            } => {
                let (secret_access_key, token) = secret
                    .expose()
                    .split_once(SESSION_SEPARATOR)
                    .ok_or(keyledger_crypto::CryptoError::Decrypt)?;
                ExternalCredential::Aws {
                    access_key_id: access_key_id.to_string(),
                    secret_access_key: SecretString::new(secret_access_key.to_owned()),
                    region: region.to_string(),
                    session: Some(AwsSessionToken {
                        token: SecretString::new(token.to_owned()),
                        expires_at: token_expires_at,
                    }),
                }
            }
            ExternalKeyPublic::Dnanexus { .. } => ExternalCredential::Dnanexus { token: secret },
            ExternalKeyPublic::AwsRole {
                role_arn,
                region,
                external_id,
            } => ExternalCredential::AwsRole {
                role_arn: role_arn.to_string(),
                region: region.to_string(),
                external_id: external_id.to_string(),
            },
        };
        Ok(Lease {
            key: key.clone(),
            owner,
            provider,
            credential,
            hold,
        })
    }

    /// The owner's usable key for a provider, decrypted.
    pub fn lease_for(&self, owner: &UserId, provider: Provider) -> Result<Lease, VaultError> {
        let now = self.now();
        let key = self.read(|state| {
            state
                .active_external_key(owner, provider)
                .filter(|k| k.status_at(now) == KeyStatus::Active)
                .map(|k| k.id.clone())
                .ok_or(DomainError::NoExternalKey { provider })
        })?;
        self.lease_external_key(&key)
    }

    /// Destroys data keys whose credential the log says is deleted (a crash between the event
    /// and the removal leaves one behind).
    pub(crate) fn shred_data_keys_of_deleted_credentials(&self) -> Result<usize, VaultError> {
        let deleted: Vec<ExternalKeyId> = self.read(|state| {
            state
                .external_keys()
                .filter(|k| k.status == KeyStatus::Deleted)
                .map(|k| k.id.clone())
                .collect()
        });
        let mut shredded = 0;
        for key in deleted {
            let data_key = self.read(|state| state.data_key_of(&key));
            if self.inner.log.data_keys().remove(data_key.as_str())? {
                shredded += 1;
            }
        }
        if shredded > 0 {
            tracing::warn!(
                shredded,
                "destroyed data keys left behind by deletions interrupted by a crash"
            );
        }
        Ok(shredded)
    }
}

/// Makes sure the master key (in `keyring`) is the one this data directory was sealed with.
pub(crate) fn check_master_key(
    log: &keyledger_log::EventLog,
    keyring: &keyledger_crypto::Keyring,
) -> Result<(), VaultError> {
    const CHECK: &str = "master_key_check";
    match log.meta().get(CHECK)? {
        Some(stored) if stored.len() > keyledger_crypto::DATA_KEY_WRAP_LEN + 12 => {
            let (wrapped, rest) = stored.split_at(keyledger_crypto::DATA_KEY_WRAP_LEN);
            let (nonce, ciphertext) = rest.split_at(12);
            let sealed = keyledger_domain::SealedSecret {
                nonce: nonce.try_into().unwrap_or_default(),
                ciphertext: ciphertext.to_vec(),
            };
            keyring.open(CHECK, wrapped, &sealed, CHECK.as_bytes()).map(|_| ()).map_err(|_| {
                VaultError::Config(format!(
                    "the master key (fingerprint {}) does not open this data directory; pass the key it was created with",
                    keyring.fingerprint()
                ))
            })
        }
        _ => {
            let (wrapped, sealed) = keyring.seal(CHECK, b"keyledger", CHECK.as_bytes())?;
            let mut stored = wrapped;
            stored.extend_from_slice(&sealed.nonce);
            stored.extend_from_slice(&sealed.ciphertext);
            log.meta().put(CHECK, &stored)?;
            Ok(())
        }
    }
}

fn view(
    state: &keyledger_domain::State,
    key: &keyledger_domain::ExternalKey,
    now: Timestamp,
) -> ExternalKeyView {
    let status = key.status_at(now);
    let region = key.public.region().cloned();
    ExternalKeyView {
        id: key.id.clone(),
        label: key.label.clone(),
        provider: key.provider(),
        hint: key.public.hint(),
        kind: key.public.kind(),
        token_expires_at: key.public.token_expires_at(),
        role: match &key.public {
            ExternalKeyPublic::AwsRole {
                role_arn,
                external_id,
                ..
            } => Some((role_arn.clone(), external_id.clone())),
            _ => None,
        },
        region,
        created_at: key.created_at,
        expires_at: key.expires_at,
        last_used_at: key.last_used_at,
        last_verified_at: key.last_verified.as_ref().map(|v| v.at),
        last_verified_ok: key.last_verified.as_ref().map(|v| v.ok),
        last_verified_detail: key.last_verified.as_ref().map(|v| v.detail.clone()),
        status,
        expiry_warning_days: state
            .external_key_warned_at(&key.id)
            .filter(|_| status == KeyStatus::Active),
    }
}
