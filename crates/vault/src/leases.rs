//! Which data keys running jobs hold, and the destruction of data keys retired by a rotation.
//!
//! Guarantee: a data key retired by `ExternalKeyRotated` is destroyed (removed from
//! `data_keys`, recorded by `ExternalKeyDataKeyDestroyed`) as soon as no lease on it is live,
//! and never while one is. How it is kept:
//! - A lease counts itself against the data key it opened, under the table's lock, while it
//!   reads which data key is current; a rotation makes the new key current (its event is applied)
//!   before it looks at the count of the old one. So once a rotation sees no lease on the old
//!   key, no new lease can take it, and a lease that counted itself first is seen.
//! - The count is released when the last clone of the lease's [`DataKeyHold`] drops: at a
//!   job's end, cancellation, failure or panic alike. The release that brings a retired key's
//!   count to zero destroys it.
//! - Counts live in memory only: after a restart nothing holds a lease, so `Vault::open`
//!   destroys every data key still retired (and any left behind by a crash in between).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use keyledger_domain::{Action, Actor, DataKeyId, Event, ExternalKeyId};
use parking_lot::Mutex;

use crate::{Inner, Vault, VaultError};

/// Live leases per data key. Only keys with at least one live lease have an entry.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    live: Mutex<HashMap<DataKeyId, usize>>,
}

/// A lease's claim on the data key its credential was opened with. Shared by the clones of a
/// [`crate::Lease`]; the claim ends when the last one drops.
pub struct DataKeyHold {
    vault: Weak<Inner>,
    key: ExternalKeyId,
    data_key: DataKeyId,
}

impl std::fmt::Debug for DataKeyHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyHold")
            .field("key", &self.key)
            .field("data_key", &self.data_key)
            .finish()
    }
}

impl DataKeyHold {
    /// The data key this claim keeps alive.
    pub fn data_key(&self) -> &DataKeyId {
        &self.data_key
    }
}

impl Drop for DataKeyHold {
    fn drop(&mut self) {
        let Some(inner) = self.vault.upgrade() else {
            return;
        };
        let vault = Vault { inner };
        if vault.release_lease(&self.key, &self.data_key) {
            vault.destroy_retired_in_background(self.key.clone(), self.data_key.clone());
        }
    }
}

impl Vault {
    /// Claims the current data key of `key` for a lease, reading it from the state under the
    /// table's lock (see the module's guarantee). `f` reads what else the lease needs from the
    /// same state.
    pub(crate) fn claim_data_key<T, E: Into<VaultError>>(
        &self,
        key: &ExternalKeyId,
        f: impl FnOnce(&keyledger_domain::State) -> Result<T, E>,
    ) -> Result<(Arc<DataKeyHold>, T), VaultError> {
        let mut live = self.inner.leases.live.lock();
        let (data_key, found) = self
            .read(|state| f(state).map(|found| (state.data_key_of(key), found)))
            .map_err(Into::into)?;
        *live.entry(data_key.clone()).or_insert(0) += 1;
        drop(live);
        let hold = Arc::new(DataKeyHold {
            vault: Arc::downgrade(&self.inner),
            key: key.clone(),
            data_key,
        });
        Ok((hold, found))
    }

    /// How many live leases hold `data_key` (for tests and metrics).
    pub fn live_leases(&self, data_key: &DataKeyId) -> usize {
        self.inner
            .leases
            .live
            .lock()
            .get(data_key)
            .copied()
            .unwrap_or(0)
    }

    /// Ends one lease on `data_key`; true when it was the last one and the key is retired.
    fn release_lease(&self, key: &ExternalKeyId, data_key: &DataKeyId) -> bool {
        let mut live = self.inner.leases.live.lock();
        let Some(count) = live.get_mut(data_key) else {
            return false;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        live.remove(data_key);
        self.read(|state| state.is_retired(key, data_key))
    }

    /// Whether nothing holds `data_key` now. Called after the rotation that retired it was
    /// applied: from then on no lease can take it, so "no lease" stays true.
    pub(crate) fn unheld(&self, data_key: &DataKeyId) -> bool {
        !self.inner.leases.live.lock().contains_key(data_key)
    }

    /// Destroys a retired data key: records `ExternalKeyDataKeyDestroyed`, then removes the
    /// wrapped key. Recording nothing (the key is not retired any more: someone else destroyed
    /// it) still removes it; a current data key is never touched.
    pub(crate) async fn destroy_retired_data_key(
        &self,
        key: ExternalKeyId,
        data_key: DataKeyId,
    ) -> Result<(), VaultError> {
        let action = Action::RecordDataKeyDestroyed {
            key: key.clone(),
            data_key: data_key.clone(),
        };
        self.run(Actor::System, action).await?;
        self.remove_unused_data_key(&key, &data_key)
    }

    /// Like [`Vault::destroy_retired_data_key`], for start-up (no async runtime needed).
    fn destroy_retired_data_key_blocking(
        &self,
        key: ExternalKeyId,
        data_key: DataKeyId,
    ) -> Result<(), VaultError> {
        let action = Action::RecordDataKeyDestroyed {
            key: key.clone(),
            data_key: data_key.clone(),
        };
        self.execute_blocking(keyledger_domain::Command::new(Actor::System, action), None)?;
        self.remove_unused_data_key(&key, &data_key)
    }

    fn remove_unused_data_key(
        &self,
        key: &ExternalKeyId,
        data_key: &DataKeyId,
    ) -> Result<(), VaultError> {
        let in_use = self
            .read(|state| state.is_retired(key, data_key) || &state.data_key_of(key) == data_key);
        if !in_use {
            self.inner.log.data_keys().remove(data_key.as_str())?;
        }
        Ok(())
    }

    /// Destroys a retired key from a lease's drop, which cannot wait: on the async runtime if
    /// there is one, else right here. A failure is logged; the next start-up finishes it.
    fn destroy_retired_in_background(&self, key: ExternalKeyId, data_key: DataKeyId) {
        let vault = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = vault.destroy_retired_data_key(key.clone(), data_key).await
                    {
                        tracing::error!(key = %key, error = %error, "could not destroy a retired data key; it will be destroyed at the next start");
                    }
                });
            }
            Err(_) => {
                if let Err(error) = vault.destroy_retired_data_key_blocking(key.clone(), data_key) {
                    tracing::error!(key = %key, error = %error, "could not destroy a retired data key; it will be destroyed at the next start");
                }
            }
        }
    }

    /// At start-up nothing holds a lease: destroys every data key a rotation retired, and
    /// removes rotated data keys the log no longer names (a crash between an event and the
    /// removal, or between storing a new data key and its rotation's event).
    pub(crate) fn destroy_retired_data_keys_at_start(&self) -> Result<usize, VaultError> {
        let retired: Vec<(ExternalKeyId, DataKeyId)> = self.read(|state| {
            state
                .retired_data_keys()
                .map(|(key, data_key)| (key.clone(), data_key.clone()))
                .collect()
        });
        let mut destroyed = 0;
        for (key, data_key) in retired {
            self.destroy_retired_data_key_blocking(key, data_key)?;
            destroyed += 1;
        }
        for (id, _) in self.inner.log.data_keys().iter()? {
            // Only ids of the rotated form: an original data key bears its credential's id and
            // is handled with deletions.
            if !id.contains('/') || crate::is_vault_secret(&id) {
                continue;
            }
            let data_key = <DataKeyId as keyledger_domain::FromTrusted>::from_trusted(id.clone());
            let Ok(key) = data_key.credential() else {
                continue;
            };
            let named = self.read(|state| {
                state.external_key(&key).is_some_and(|external| {
                    external.status != keyledger_domain::KeyStatus::Deleted
                        && state.data_key_of(&key) == data_key
                }) || state.is_retired(&key, &data_key)
            });
            if !named {
                self.inner.log.data_keys().remove(&id)?;
                destroyed += 1;
            }
        }
        if destroyed > 0 {
            tracing::info!(
                destroyed,
                "destroyed data keys retired by rotations (no job holds a lease after a restart)"
            );
        }
        Ok(destroyed)
    }

    /// Destroys the data key `rotated` retired if no lease holds it; otherwise the last
    /// release will.
    pub(crate) async fn destroy_if_unheld(&self, rotated: &Event) -> Result<(), VaultError> {
        let Event::ExternalKeyRotated {
            key,
            previous_data_key,
            ..
        } = rotated
        else {
            return Ok(());
        };
        if self.unheld(previous_data_key) {
            self.destroy_retired_data_key(key.clone(), previous_data_key.clone())
                .await?;
        } else {
            tracing::info!(key = %key, data_key = %previous_data_key, "the replaced secret's data key is held by running jobs; it is destroyed when the last one ends");
        }
        Ok(())
    }
}
