//! Internal keys: creation (the only moment the secret exists in clear), listing, deletion, roll.

use keyledger_crypto::{SecretString, generate_api_key, random_base62};
use keyledger_domain::{
    Action, Actor, FromTrusted, GracePeriod, KeyDuration, KeyHint, KeyId, KeyName, KeyScope,
    KeyStatus, Network, NewApiKey, PermissionSet, Timestamp, UserId,
};
use serde::Serialize;

use crate::{Executed, Vault, VaultError};

/// A key just created or rolled: the one and only time its secret is returned.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub id: KeyId,
    pub name: KeyName,
    pub secret: SecretString,
    pub hint: KeyHint,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub previous_valid_until: Option<Timestamp>,
}

/// An internal key as listings show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyView {
    pub id: KeyId,
    pub name: KeyName,
    pub hint: KeyHint,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub status: KeyStatus,
    pub rolled_at: Option<Timestamp>,
    pub previous_valid_until: Option<Timestamp>,
    /// The nearest expiry-warning horizon (days) announced for this active key
    /// (`ApiKeyExpiring`); `None` before the first warning.
    pub expiry_warning_days: Option<u32>,
    /// A honeytoken: it grants nothing, and every use is recorded.
    pub honeytoken: bool,
    pub scopes: Option<PermissionSet>,
    pub networks: Vec<Network>,
}

impl Vault {
    pub(crate) fn new_api_key(
        &self,
        name: KeyName,
        duration: KeyDuration,
    ) -> Result<(NewApiKey, SecretString), VaultError> {
        self.new_scoped_api_key(name, duration, KeyScope::default())
    }

    pub(crate) fn new_scoped_api_key(
        &self,
        name: KeyName,
        duration: KeyDuration,
        scope: KeyScope,
    ) -> Result<(NewApiKey, SecretString), VaultError> {
        let keyring = self.keyring();
        let (secret, hint) = generate_api_key(keyring.rng())?;
        let key = KeyId::from_trusted(format!(
            "{}{}",
            KeyId::PREFIX,
            random_base62(keyring.rng(), 16)?
        ));
        let secret_hash = keyring.hash_api_key(secret.expose());
        Ok((
            NewApiKey {
                key,
                name,
                duration,
                hint: KeyHint::from_trusted(hint),
                secret_hash,
                scope,
            },
            secret,
        ))
    }

    /// Creates the first admin and its first key. Refused once any user exists.
    pub async fn bootstrap(&self, admin: UserId) -> Result<CreatedApiKey, VaultError> {
        let name = KeyName::from_trusted("bootstrap".to_owned());
        let (key, secret) = self.new_api_key(name, KeyDuration::Never)?;
        let executed = self
            .run(
                Actor::Operator,
                Action::BootstrapAdmin {
                    admin,
                    key: key.clone(),
                },
            )
            .await?;
        Ok(created(key, secret, &executed))
    }

    pub async fn create_api_key(
        &self,
        actor: Actor,
        name: KeyName,
        duration: KeyDuration,
        request_id: Option<[u8; 16]>,
    ) -> Result<CreatedApiKey, VaultError> {
        self.create_scoped_api_key(actor, name, duration, KeyScope::default(), request_id)
            .await
    }

    /// Creates a key limited to `scope`: some of the owner's permissions, some client networks.
    pub async fn create_scoped_api_key(
        &self,
        actor: Actor,
        name: KeyName,
        duration: KeyDuration,
        scope: KeyScope,
        request_id: Option<[u8; 16]>,
    ) -> Result<CreatedApiKey, VaultError> {
        let (key, secret) = self.new_scoped_api_key(name, duration, scope)?;
        // Never decided and appended across an offboarding (see `governance.rs`), nor beside
        // another creation of a key of the same owner (see `names.rs`).
        let _offboarding = self.inner.offboarding.read().await;
        let _names = self.inner.names.lock_for(&actor).await;
        let command = keyledger_domain::Command::new(actor, Action::CreateApiKey(key.clone()));
        let executed = self.execute(command, request_id).await?;
        Ok(created(key, secret, &executed))
    }

    /// An admin creates a key for another user (their first key, or a service account's).
    pub async fn issue_api_key(
        &self,
        actor: Actor,
        owner: UserId,
        name: KeyName,
        duration: KeyDuration,
        request_id: Option<[u8; 16]>,
    ) -> Result<CreatedApiKey, VaultError> {
        self.issue_scoped_api_key(
            actor,
            owner,
            name,
            duration,
            KeyScope::default(),
            request_id,
        )
        .await
    }

    /// [`Vault::issue_api_key`] for a key limited to `scope` (a subset of the owner's
    /// permissions, some client networks): a service account's narrow key.
    pub async fn issue_scoped_api_key(
        &self,
        actor: Actor,
        owner: UserId,
        name: KeyName,
        duration: KeyDuration,
        scope: KeyScope,
        request_id: Option<[u8; 16]>,
    ) -> Result<CreatedApiKey, VaultError> {
        let (key, secret) = self.new_scoped_api_key(name, duration, scope)?;
        let _offboarding = self.inner.offboarding.read().await;
        let _names = self.inner.names.lock(&owner).await;
        let command = keyledger_domain::Command::new(
            actor,
            Action::IssueApiKey {
                owner,
                key: key.clone(),
            },
        );
        let executed = self.execute(command, request_id).await?;
        Ok(created(key, secret, &executed))
    }

    /// Deletes all the listed keys in one atomic append, or none of them.
    pub async fn delete_api_keys(
        &self,
        actor: Actor,
        keys: Vec<KeyId>,
    ) -> Result<Executed, VaultError> {
        self.run(actor, Action::DeleteApiKeys { keys }).await
    }

    /// A new secret under the same key id; the old one keeps working for `grace`.
    pub async fn roll_api_key(
        &self,
        actor: Actor,
        key: KeyId,
        grace: GracePeriod,
    ) -> Result<CreatedApiKey, VaultError> {
        let keyring = self.keyring();
        let (secret, hint) = generate_api_key(keyring.rng())?;
        let secret_hash = keyring.hash_api_key(secret.expose());
        let hint = KeyHint::from_trusted(hint);
        let action = Action::RollApiKey {
            key: key.clone(),
            grace,
            hint: hint.clone(),
            secret_hash,
        };
        let executed = self.run(actor, action).await?;
        match executed.events.first() {
            Some(keyledger_domain::Event::ApiKeyRolled {
                previous_valid_until,
                ..
            }) => {
                let (name, created_at, expires_at) = self
                    .read(|state| {
                        state
                            .api_key(&key)
                            .map(|k| (k.name.clone(), k.created_at, k.expires_at))
                    })
                    .ok_or(VaultError::Inconsistent {
                        what: "rolled key vanished from the projection",
                    })?;
                Ok(CreatedApiKey {
                    id: key,
                    name,
                    secret,
                    hint,
                    created_at,
                    expires_at,
                    previous_valid_until: Some(*previous_valid_until),
                })
            }
            _ => Err(VaultError::Inconsistent {
                what: "roll recorded no event",
            }),
        }
    }

    /// The user's keys, newest first; deleted keys are left out.
    pub fn list_api_keys(&self, owner: &UserId) -> Vec<ApiKeyView> {
        let now = self.now();
        let pending = self.pending_usage();
        self.read(|state| {
            state
                .api_keys_of(owner)
                .into_iter()
                .map(|key| {
                    let status = key.status_at(now);
                    ApiKeyView {
                        id: key.id.clone(),
                        name: key.name.clone(),
                        hint: key.hint.clone(),
                        created_at: key.created_at,
                        expires_at: key.expires_at,
                        last_used_at: key
                            .last_used_at
                            .max(pending.get(&key.id).map(|(at, _)| *at)),
                        status,
                        rolled_at: key.rolled_at,
                        previous_valid_until: key
                            .previous
                            .as_ref()
                            .map(|p| p.valid_until)
                            .filter(|until| *until > now),
                        expiry_warning_days: state
                            .api_key_warned_at(&key.id)
                            .filter(|_| status == KeyStatus::Active),
                        honeytoken: state.is_honeytoken(&key.id),
                        scopes: key.scopes,
                        networks: key.networks.clone(),
                    }
                })
                .collect()
        })
    }
}

pub(crate) fn created(key: NewApiKey, secret: SecretString, executed: &Executed) -> CreatedApiKey {
    CreatedApiKey {
        id: key.key,
        name: key.name,
        secret,
        hint: key.hint,
        created_at: executed.at,
        expires_at: key.duration.expires_at(executed.at),
        previous_valid_until: None,
    }
}
