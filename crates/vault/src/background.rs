//! Work the vault does on its own: recording aggregated key usage and expiring keys.

use std::collections::HashMap;

use keyledger_domain::{Action, Actor, KeyId, KeyStatus, KeyUsage, Timestamp};

use crate::{Vault, VaultError};

/// Uses noted since the last flush: per key, the latest time and a count.
#[derive(Debug, Default)]
pub(crate) struct UsageAggregate {
    pending: HashMap<KeyId, (Timestamp, u64)>,
}

impl Vault {
    /// Notes one use of a key in memory; `flush_usage` records it (no event per request).
    pub(crate) fn note_use(&self, key: &KeyId) {
        let now = self.now();
        let mut usage = self
            .inner
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match usage.pending.get_mut(key) {
            Some((at, count)) => {
                *at = (*at).max(now);
                *count += 1;
            }
            None => {
                usage.pending.insert(key.clone(), (now, 1));
            }
        }
    }

    pub(crate) fn pending_usage(&self) -> HashMap<KeyId, (Timestamp, u64)> {
        self.inner
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pending
            .clone()
    }

    /// Records the aggregated uses as `ApiKeyUsed` events, one per key.
    pub async fn flush_usage(&self) -> Result<usize, VaultError> {
        let pending = std::mem::take(
            &mut self
                .inner
                .usage
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pending,
        );
        if pending.is_empty() {
            return Ok(0);
        }
        let mut usages: Vec<KeyUsage> = pending
            .into_iter()
            .map(|(key, (last_used_at, uses))| KeyUsage {
                key,
                last_used_at,
                uses,
            })
            .collect();
        usages.sort_by(|a, b| a.key.cmp(&b.key));
        let executed = self
            .run(Actor::System, Action::RecordApiKeyUsage { usages })
            .await?;
        Ok(executed.events.len())
    }

    /// Records an `…Expired` event for every key whose expiry has passed.
    pub async fn sweep_expired(&self) -> Result<usize, VaultError> {
        let now = self.now();
        let due = self.read(|state| {
            state
                .api_keys()
                .any(|k| k.status == KeyStatus::Active && k.expires_at.is_some_and(|e| e <= now))
                || state.external_keys().any(|k| {
                    k.status == KeyStatus::Active && k.expires_at.is_some_and(|e| e <= now)
                })
        });
        if !due {
            return Ok(0);
        }
        let executed = self.run(Actor::System, Action::ExpireDue).await?;
        Ok(executed.events.len())
    }

    /// Runs the sweeper and the usage recorder until the returned handle is aborted.
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let vault = self.clone();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(vault.inner.config.sweep_interval);
            let mut usage = tokio::time::interval(vault.inner.config.usage_flush_interval);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            usage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sweep.tick() => {
                        if let Err(err) = vault.sweep_expired().await {
                            tracing::warn!(error = %err, "expiry sweep failed; retrying next tick");
                        }
                    }
                    _ = usage.tick() => {
                        if let Err(err) = vault.flush_usage().await {
                            tracing::warn!(error = %err, "recording key usage failed; retrying next tick");
                        }
                    }
                }
            }
        })
    }
}
