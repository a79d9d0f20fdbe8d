//! Crypto-shredding made checkable: which external keys had their data key destroyed, whether
//! anything is inconsistent, and — with the master key — an attempt to open each shredded secret
//! with every wrapped key the data directory still holds.

use std::collections::{BTreeMap, BTreeSet};

use keyledger_crypto::{Keyring, MasterKey, credential_aad};
use keyledger_domain::{Event, ExternalKeyId, KeyStatus, State, Timestamp};
use keyledger_log::{EventLog, Seq};
use keyledger_vault::{decode_event, is_vault_secret};
use serde::Serialize;

use crate::AuditError;
use crate::table::Table;
use crate::verify::{Problem, ProblemKind, SignerSource, Walk};

/// An external key whose data key no longer exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShreddedKey {
    pub id: String,
    pub owner: String,
    pub provider: String,
    pub label: String,
    pub status: KeyStatus,
    pub deleted_at: Option<Timestamp>,
    /// The seq of the `ExternalKeyDeleted` event.
    pub deleted_seq: Option<Seq>,
}

/// Something that does not add up between the log and the data keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub id: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShreddingReport {
    /// The log was read through this seq.
    pub head: Seq,
    pub shredded: Vec<ShreddedKey>,
    /// External keys whose data key still exists (usable, or expired and not yet deleted).
    pub retained: u64,
    pub anomalies: Vec<Anomaly>,
}

/// One attempt to open a shredded secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryAttempt {
    pub key: String,
    /// Wrapped keys tried (each under its own id and under the shredded key's id).
    pub wrapped_keys_tried: u64,
    pub opened: bool,
}

/// Folds the log (verifying the chain) and compares it with the `data_keys` tree.
pub fn shredding_report(log: &EventLog) -> Result<ShreddingReport, AuditError> {
    let (state, deleted_at_seq, head) = fold(log)?;
    let present: BTreeSet<String> = log
        .data_keys()
        .iter()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut report = ShreddingReport {
        head,
        shredded: Vec::new(),
        retained: 0,
        anomalies: Vec::new(),
    };
    let mut keys: Vec<_> = state.external_keys().collect();
    keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    for key in keys {
        let has_data_key = present.contains(key.id.as_str());
        match (key.status, has_data_key) {
            (KeyStatus::Deleted, false) => report.shredded.push(ShreddedKey {
                id: key.id.to_string(),
                owner: key.owner.to_string(),
                provider: key.provider().to_string(),
                label: key.label.to_string(),
                status: key.status,
                deleted_at: key.status_changed_at,
                deleted_seq: deleted_at_seq.get(&key.id).copied(),
            }),
            (KeyStatus::Deleted, true) => report.anomalies.push(Anomaly {
                id: key.id.to_string(),
                detail: "deleted, but its data key still exists (the vault destroys it when it next starts)"
                    .to_owned(),
            }),
            (_, true) => report.retained += 1,
            (_, false) => report.anomalies.push(Anomaly {
                id: key.id.to_string(),
                detail: format!(
                    "{} but its data key is missing: the credential can no longer be used",
                    key.status.as_str()
                ),
            }),
        }
    }
    for id in &present {
        let known = ExternalKeyId::parse(id)
            .ok()
            .is_some_and(|id| state.external_key(&id).is_some());
        if !known && !is_vault_secret(id) {
            report.anomalies.push(Anomaly {
                id: id.clone(),
                detail: "a data key without a credential in the log (a creation that failed before its event)"
                    .to_owned(),
            });
        }
    }
    Ok(report)
}

/// Tries to open every shredded secret with every wrapped key in `data_keys`, unwrapped by
/// `master`: the evidence that no code path can still decrypt them.
pub fn attempt_recovery(
    log: &EventLog,
    master: &MasterKey,
) -> Result<Vec<RecoveryAttempt>, AuditError> {
    let (state, _, _) = fold(log)?;
    let keyring = Keyring::new(master).map_err(keyledger_vault::VaultError::from)?;
    let wrapped_keys = log.data_keys().iter()?;
    let mut attempts = Vec::new();
    for key in state.external_keys() {
        if key.status != KeyStatus::Deleted
            || wrapped_keys.iter().any(|(id, _)| id == key.id.as_str())
        {
            continue;
        }
        let aad = credential_aad(&key.id, &key.owner, key.provider());
        let mut opened = false;
        for (id, wrapped) in &wrapped_keys {
            opened |= keyring.open(id, wrapped, &key.sealed, &aad).is_ok()
                || keyring
                    .open(key.id.as_str(), wrapped, &key.sealed, &aad)
                    .is_ok();
        }
        attempts.push(RecoveryAttempt {
            key: key.id.to_string(),
            wrapped_keys_tried: wrapped_keys.len() as u64,
            opened,
        });
    }
    attempts.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(attempts)
}

impl ShreddingReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "External keys crypto-shredded as of seq {} ({} shredded, {} still holding a data key)\n",
            self.head,
            self.shredded.len(),
            self.retained
        );
        if self.shredded.is_empty() {
            out.push_str("(none)\n");
        } else {
            let mut table = Table::new(&[
                "id", "owner", "provider", "label", "deleted", "seq", "data key",
            ]);
            for key in &self.shredded {
                table.row(vec![
                    key.id.clone(),
                    key.owner.clone(),
                    key.provider.clone(),
                    key.label.clone(),
                    key.deleted_at
                        .map_or_else(|| "-".to_owned(), |t| t.to_string()),
                    key.deleted_seq
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    "destroyed".to_owned(),
                ]);
            }
            out.push_str(&table.render());
        }
        if !self.anomalies.is_empty() {
            out.push_str("\nAnomalies\n");
            let mut table = Table::new(&["id", "problem"]);
            for anomaly in &self.anomalies {
                table.row(vec![anomaly.id.clone(), anomaly.detail.clone()]);
            }
            out.push_str(&table.render());
        }
        out
    }
}

/// The current state, the seq of each external key's deletion, and the head read.
fn fold(log: &EventLog) -> Result<(State, BTreeMap<ExternalKeyId, Seq>, Seq), AuditError> {
    let mut walk = Walk::new(None, SignerSource::Unknown);
    let mut state = State::default();
    let mut deleted = BTreeMap::new();
    let mut head = 0;
    for envelope in log.read_from(1) {
        let envelope = envelope?;
        walk.check_envelope(&envelope)
            .map_err(AuditError::Damaged)?;
        let event = decode_event(&envelope.body).map_err(|detail| {
            AuditError::Damaged(Problem {
                seq: envelope.seq,
                kind: ProblemKind::Unreadable { detail },
            })
        })?;
        if let Event::ExternalKeyDeleted { key, .. } = &event {
            deleted.insert(key.clone(), envelope.seq);
        }
        state.apply_owned(event);
        head = envelope.seq;
    }
    Ok((state, deleted, head))
}
