//! What the state remembers for expiry warnings, leak response and honeytokens (decision 0027):
//! which horizon each key was last warned at, the secrets revoked as leaked, and which keys are
//! honeytokens. Folded from the log like the rest of the state, so a restart (or a replica)
//! knows exactly what the log says was already done.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use super::State;
use crate::event::{Event, SecretHash};
use crate::key_status::KeyStatus;
use crate::values::{ExternalKeyId, KeyId};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Governance {
    /// The nearest horizon (days) each internal key was warned at.
    api_warned: HashMap<KeyId, u32>,
    /// The same for external keys.
    external_warned: HashMap<ExternalKeyId, u32>,
    /// Secrets revoked because they were found in public, so a repeated report is still
    /// recognised as a real (and already revoked) key.
    leaked: HashMap<SecretHash, KeyId>,
    /// The slots of honeytoken keys: looked up on every authentication, so by slot (FxHash,
    /// our own numbers) and skipped entirely while there are none.
    honeytoken_slots: HashMap<usize, (), FxBuildHasher>,
}

impl State {
    /// The nearest horizon (days) at which an internal key's expiry was announced.
    pub fn api_key_warned_at(&self, key: &KeyId) -> Option<u32> {
        self.governance.api_warned.get(key).copied()
    }

    /// The nearest horizon (days) at which an external key's expiry was announced.
    pub fn external_key_warned_at(&self, key: &ExternalKeyId) -> Option<u32> {
        self.governance.external_warned.get(key).copied()
    }

    /// The key a secret belonged to, if it was revoked as leaked.
    pub fn leaked_key(&self, hash: &SecretHash) -> Option<&KeyId> {
        self.governance.leaked.get(hash)
    }

    /// Whether the key in `slot` is a honeytoken.
    pub fn is_honeytoken_slot(&self, slot: usize) -> bool {
        !self.governance.honeytoken_slots.is_empty()
            && self.governance.honeytoken_slots.contains_key(&slot)
    }

    /// Whether the key is a honeytoken.
    pub fn is_honeytoken(&self, key: &KeyId) -> bool {
        self.api_key_slot(key)
            .is_some_and(|slot| self.is_honeytoken_slot(slot))
    }

    /// Applies the events of this module; any other event is ignored here.
    pub(super) fn apply_governance(&mut self, event: Event) {
        match event {
            Event::ApiKeyExpiring {
                key, horizon_days, ..
            } => {
                let warned = self.governance.api_warned.entry(key).or_insert(u32::MAX);
                *warned = (*warned).min(horizon_days);
            }
            Event::ExternalKeyExpiring {
                key, horizon_days, ..
            } => {
                let warned = self
                    .governance
                    .external_warned
                    .entry(key)
                    .or_insert(u32::MAX);
                *warned = (*warned).min(horizon_days);
            }
            Event::ApiKeyLeaked { key, at, .. } => {
                if let Some(api_key) = self.api_key(&key) {
                    let mut hashes = vec![api_key.secret_hash];
                    hashes.extend(api_key.previous.as_ref().map(|p| p.secret_hash));
                    for hash in hashes {
                        self.governance.leaked.insert(hash, key.clone());
                    }
                }
                self.set_api_key_status(&key, KeyStatus::Deleted, at);
            }
            Event::HoneytokenCreated {
                key,
                owner,
                name,
                hint,
                secret_hash,
                created_at,
                expires_at,
            } => {
                self.apply_owned(Event::ApiKeyCreated {
                    key: key.clone(),
                    owner,
                    name,
                    hint,
                    secret_hash,
                    created_at,
                    expires_at,
                });
                if let Some(slot) = self.api_key_slot(&key) {
                    self.governance.honeytoken_slots.insert(slot, ());
                }
            }
            // A use changes nothing but the log.
            Event::HoneytokenUsed { .. } => {}
            _ => {}
        }
    }
}
