//! Leak response (decision 0027): tokens reported by secret scanning are judged against the
//! keys the vault issued, and an active one is revoked at once (`ApiKeyLeaked`); honeytokens,
//! keys that grant nothing, record every use (`HoneytokenUsed`).

use std::collections::BTreeSet;

use keyledger_crypto::{SecretString, check_api_key_format};
use keyledger_domain::{
    Action, Actor, Command, KeyDuration, KeyId, KeyName, KeyStatus, MAX_RECORDED_TEXT,
};

use crate::keys::created;
use crate::{CreatedApiKey, Executed, Vault, VaultError};

/// One token a secret scanner found, with where it found it.
#[derive(Debug, Clone)]
pub struct LeakReport {
    /// The token as found. It may be a working key: kept in a secret type.
    pub token: SecretString,
    pub url: String,
    pub source: String,
}

/// Whether a reported token is a key the vault issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakLabel {
    /// A key of this vault: it was revoked now, or had already been revoked as leaked, or no
    /// longer worked (expired), or is a honeytoken (which grants nothing and stays).
    TruePositive,
    /// Not a key of this vault (wrong format or checksum, or no such key).
    FalsePositive,
}

impl LeakLabel {
    /// GitHub's spelling: `true_positive`, `false_positive`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakLabel::TruePositive => "true_positive",
            LeakLabel::FalsePositive => "false_positive",
        }
    }
}

/// The verdict on one report, in the order of the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakVerdict {
    pub label: LeakLabel,
    /// The key revoked by this report, if it was active until now.
    pub revoked: Option<KeyId>,
}

impl Vault {
    /// Judges reported tokens and revokes every active key among them in one atomic append.
    pub async fn report_leaks(
        &self,
        reports: &[LeakReport],
    ) -> Result<Vec<LeakVerdict>, VaultError> {
        let now = self.now();
        let mut actions = Vec::new();
        let mut revoking = BTreeSet::new();
        let verdicts = self.read(|state| {
            reports
                .iter()
                .map(|report| {
                    let presented = report.token.expose().trim();
                    if check_api_key_format(presented).is_err() {
                        return LeakVerdict {
                            label: LeakLabel::FalsePositive,
                            revoked: None,
                        };
                    }
                    let hash = self.keyring().hash_api_key(presented);
                    let found = state
                        .api_key_slot_for_secret(&hash)
                        .and_then(|(slot, _)| Some((slot, state.api_key_at(slot)?)));
                    let Some((slot, key)) = found else {
                        let label = match state.leaked_key(&hash) {
                            Some(_) => LeakLabel::TruePositive,
                            None => LeakLabel::FalsePositive,
                        };
                        return LeakVerdict {
                            label,
                            revoked: None,
                        };
                    };
                    let active = key.status_at(now) == KeyStatus::Active;
                    let mut revoked = None;
                    if active && !state.is_honeytoken_slot(slot) {
                        revoked = Some(key.id.clone());
                        if revoking.insert(key.id.clone()) {
                            actions.push(Action::RecordLeak {
                                key: key.id.clone(),
                                url: clip(&report.url),
                                source: clip(&report.source),
                            });
                        }
                    }
                    LeakVerdict {
                        label: LeakLabel::TruePositive,
                        revoked,
                    }
                })
                .collect::<Vec<_>>()
        });
        if !actions.is_empty() {
            let executed = self.run_all(Actor::System, actions).await?;
            tracing::warn!(
                revoked = executed.events.len(),
                "keys found in public by secret scanning were revoked"
            );
        }
        Ok(verdicts)
    }

    /// Creates a honeytoken: shown once like any key, it grants nothing, and every use is
    /// recorded as `HoneytokenUsed`.
    pub async fn create_honeytoken(
        &self,
        actor: Actor,
        name: KeyName,
        duration: KeyDuration,
        request_id: Option<[u8; 16]>,
    ) -> Result<CreatedApiKey, VaultError> {
        let (key, secret) = self.new_api_key(name, duration)?;
        // As for any key: not beside an offboarding, nor another key of the same owner.
        let _offboarding = self.inner.offboarding.read().await;
        let _names = self.inner.names.lock_for(&actor).await;
        let command = Command::new(actor, Action::CreateHoneytoken(key.clone()));
        let executed = self.execute(command, request_id).await?;
        Ok(created(key, secret, &executed))
    }

    /// Records one use of a honeytoken at once (published by the relay like every event).
    pub async fn record_honeytoken_use(
        &self,
        key: KeyId,
        source_address: &str,
        user_agent: &str,
        route: &str,
    ) -> Result<Executed, VaultError> {
        let action = Action::RecordHoneytokenUse {
            key,
            source_address: clip(source_address),
            user_agent: clip(user_agent),
            route: clip(route),
        };
        self.run(Actor::System, action).await
    }
}

/// Reported text is recorded up to the domain's limit, cut on a character boundary.
fn clip(text: &str) -> String {
    text.chars().take(MAX_RECORDED_TEXT).collect()
}
