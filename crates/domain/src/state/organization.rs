//! The fold of the governance events: scoped keys, revocations by an administrator, and the
//! deactivation of a user (decision 0026).

use serde::{Deserialize, Serialize};

use super::State;
use crate::event::Event;
use crate::key_status::KeyStatus;
use crate::permissions::PermissionSet;
use crate::time::Timestamp;
use crate::values::Reason;

/// Why and when a user was deactivated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deactivation {
    pub reason: Reason,
    pub at: Timestamp,
}

/// Why and when a key was revoked (by an administrator, or with its owner's deactivation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub reason: Reason,
    pub at: Timestamp,
}

impl State {
    pub(super) fn apply_organization(&mut self, event: Event) {
        match event {
            Event::ApiKeyScoped {
                key,
                scopes,
                networks,
                ..
            } => {
                if let Some(api_key) = self.api_key_mut(&key) {
                    api_key.scopes =
                        (!scopes.is_empty()).then(|| scopes.into_iter().collect::<PermissionSet>());
                    api_key.networks = networks;
                }
            }
            Event::ApiKeyRevoked {
                key, reason, at, ..
            } => {
                self.set_api_key_status(&key, KeyStatus::Deleted, at);
                if let Some(api_key) = self.api_key_mut(&key) {
                    api_key.revoked = Some(Revocation { reason, at });
                }
            }
            Event::ExternalKeyRevoked {
                key, reason, at, ..
            } => {
                self.set_external_status(&key, KeyStatus::Deleted, at);
                if let Some(external) = self.external_keys.get_mut(&key) {
                    external.revoked = Some(Revocation { reason, at });
                }
            }
            Event::UserDeactivated { user, reason, at } => {
                if let Some(user) = self.users.get_mut(&user) {
                    user.deactivated = Some(Deactivation { reason, at });
                }
            }
            Event::UserReactivated { user, .. } => {
                if let Some(user) = self.users.get_mut(&user) {
                    user.deactivated = None;
                }
            }
            _ => {}
        }
    }

    /// Whether the user exists and is not deactivated.
    pub fn is_active_user(&self, user: &crate::values::UserId) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.deactivated.is_none())
    }
}
