//! What the people who run the platform do to everyone's keys (decision 0026): revoke any key
//! with a reason, and offboard a user in one step.
//!
//! Guarantee: a deactivation is one append (the user deactivated, every key of theirs revoked,
//! every external key's data key destroyed right after). A request made with one of the user's
//! keys either lands before that append or is refused after it: authentication and `decide`
//! both refuse a deactivated user, and a key creation never interleaves with a deactivation (the
//! `offboarding` lock), so no key of theirs is left working or created beside it.

use keyledger_domain::{Action, Actor, ExternalKeyId, KeyId, Reason, UserId};

use crate::{Executed, Vault, VaultError};

impl Vault {
    /// Revokes anyone's internal key, recording why.
    pub async fn revoke_api_key(
        &self,
        actor: Actor,
        key: KeyId,
        reason: Reason,
    ) -> Result<Executed, VaultError> {
        self.run(actor, Action::RevokeApiKey { key, reason }).await
    }

    /// Revokes anyone's external key, recording why, and destroys its data key.
    pub async fn revoke_external_key(
        &self,
        actor: Actor,
        key: ExternalKeyId,
        reason: Reason,
    ) -> Result<Executed, VaultError> {
        let executed = self
            .run(actor, Action::RevokeExternalKey { key, reason })
            .await?;
        self.shred_data_keys_of(&executed.events);
        Ok(executed)
    }

    /// Offboarding in one step: see the module's guarantee.
    pub async fn deactivate_user(
        &self,
        actor: Actor,
        user: UserId,
        reason: Reason,
    ) -> Result<Executed, VaultError> {
        let offboarding = self.inner.offboarding.write().await;
        let executed = self
            .run(actor, Action::DeactivateUser { user, reason })
            .await;
        drop(offboarding);
        let executed = executed?;
        self.shred_data_keys_of(&executed.events);
        Ok(executed)
    }

    /// The account works again; no revoked key comes back.
    pub async fn reactivate_user(
        &self,
        actor: Actor,
        user: UserId,
    ) -> Result<Executed, VaultError> {
        let offboarding = self.inner.offboarding.write().await;
        let executed = self.run(actor, Action::ReactivateUser { user }).await;
        drop(offboarding);
        let executed = executed?;
        self.shred_data_keys_of(&executed.events);
        Ok(executed)
    }
}
