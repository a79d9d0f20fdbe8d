//! Work the vault does on its own: recording aggregated key usage, expiring keys and
//! announcing coming expiries.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use keyledger_domain::{Action, Actor, KeyId, KeyStatus, KeyUsage, Timestamp};

use crate::{PerThread, Vault, VaultError};

/// Uses noted since the last flush: per key, the latest time and a count. Per thread: a
/// service verifies keys with the same caller key on every request.
#[derive(Debug, Default)]
pub(crate) struct UsageAggregate {
    parts: PerThread<PendingUses>,
}

/// Key slot (see `State::api_key_at`) -> latest use, count. FxHash: touched on every
/// authenticated request; slots are ours, not attacker-chosen.
type PendingUses = HashMap<usize, (Timestamp, u64), FxBuildHasher>;

fn add_uses(pending: &mut PendingUses, slot: usize, at: Timestamp, uses: u64) {
    let entry = pending.entry(slot).or_insert((at, 0));
    entry.0 = entry.0.max(at);
    entry.1 += uses;
}

impl UsageAggregate {
    fn note(&self, slot: usize, at: Timestamp, uses: u64) {
        add_uses(&mut self.parts.mine(), slot, at, uses);
    }

    /// Every part merged; `take` empties them.
    fn merged(&self, take: bool) -> PendingUses {
        let mut merged = PendingUses::default();
        for mut part in self.parts.each() {
            let part = if take {
                std::mem::take(&mut *part)
            } else {
                part.clone()
            };
            for (slot, (at, uses)) in part {
                add_uses(&mut merged, slot, at, uses);
            }
        }
        merged
    }
}

impl Vault {
    /// Notes one use of a key in memory; `flush_usage` records it (no event per request).
    pub(crate) fn note_use(&self, slot: usize, now: Timestamp) {
        self.inner.usage.note(slot, now, 1);
    }

    /// The uses not yet recorded, by key id.
    pub(crate) fn pending_usage(&self) -> HashMap<KeyId, (Timestamp, u64)> {
        let pending = self.inner.usage.merged(false);
        self.read(|state| {
            pending
                .into_iter()
                .filter_map(|(slot, uses)| Some((state.api_key_at(slot)?.id.clone(), uses)))
                .collect()
        })
    }

    /// Records the aggregated uses as `ApiKeyUsed` events, one per key.
    pub async fn flush_usage(&self) -> Result<usize, VaultError> {
        let pending = self.inner.usage.merged(true);
        if pending.is_empty() {
            return Ok(0);
        }
        let mut usages: Vec<(usize, KeyUsage)> = self.read(|state| {
            pending
                .into_iter()
                .filter_map(|(slot, (last_used_at, uses))| {
                    let key = state.api_key_at(slot)?.id.clone();
                    Some((
                        slot,
                        KeyUsage {
                            key,
                            last_used_at,
                            uses,
                        },
                    ))
                })
                .collect()
        });
        usages.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        let action = Action::RecordApiKeyUsage {
            usages: usages.iter().map(|(_, usage)| usage.clone()).collect(),
        };
        match self.run(Actor::System, action).await {
            Ok(executed) => Ok(executed.events.len()),
            Err(err) => {
                // Put the counts back, merged with uses noted meanwhile, for the next attempt.
                for (slot, usage) in usages {
                    self.inner.usage.note(slot, usage.last_used_at, usage.uses);
                }
                Err(err)
            }
        }
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

    /// Records an `…Expiring` warning for every active key that came within a configured
    /// horizon of its expiry and was not announced at it yet. The decision is derived from the
    /// log's state (the horizons already announced), so a restart never repeats a warning.
    pub async fn sweep_expiring(&self) -> Result<usize, VaultError> {
        let horizons = self.inner.config.expiry_warning_days.clone();
        if horizons.is_empty() {
            return Ok(0);
        }
        let executed = self
            .run(Actor::System, Action::WarnExpiring { horizons })
            .await?;
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
                        if let Err(err) = vault.sweep_expiring().await {
                            tracing::warn!(error = %err, "expiry warnings failed; retrying next tick");
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
