//! Crypto-shredding made checkable: which external keys had their data key destroyed (deleted
//! keys, and the data keys of secrets replaced by a rotation), whether anything is
//! inconsistent, and — with the master key — an attempt to open each shredded secret with every
//! wrapped key the data directory still holds.

use std::collections::{BTreeMap, BTreeSet};

use keyledger_crypto::{Keyring, MasterKey, credential_aad};
use keyledger_domain::{
    DataKeyId, Event, ExternalKeyId, KeyStatus, SealedSecret, State, Timestamp,
};
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

/// The data key of a secret replaced by a rotation: destroyed once no running job held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplacedDataKey {
    pub key: String,
    pub data_key: String,
    /// The seq of the `ExternalKeyRotated` event that retired it.
    pub rotated_seq: Seq,
    /// When `ExternalKeyDataKeyDestroyed` recorded its destruction; `None` while a running job
    /// still holds it.
    pub destroyed_at: Option<Timestamp>,
    pub destroyed_seq: Option<Seq>,
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
    /// Data keys of secrets replaced by rotations, in log order.
    pub replaced: Vec<ReplacedDataKey>,
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
    let Folded {
        state,
        deleted_seq: deleted_at_seq,
        replaced,
        head,
        ..
    } = fold(log)?;
    let present: BTreeSet<String> = log
        .data_keys()
        .iter()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut report = ShreddingReport {
        head,
        shredded: Vec::new(),
        replaced: Vec::new(),
        retained: 0,
        anomalies: Vec::new(),
    };
    let mut keys: Vec<_> = state.external_keys().collect();
    keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    for key in keys {
        let has_data_key = present.contains(state.data_key_of(&key.id).as_str());
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
    for replaced in replaced {
        let still_present = present.contains(replaced.data_key.as_str());
        match (replaced.destroyed_seq, still_present) {
            (Some(_), true) => report.anomalies.push(Anomaly {
                id: replaced.data_key.clone(),
                detail: "recorded as destroyed, but the data key still exists (the vault destroys it when it next starts)".to_owned(),
            }),
            (None, false) => report.anomalies.push(Anomaly {
                id: replaced.data_key.clone(),
                detail: "retired by a rotation and gone, but its destruction is not recorded (the vault records it when it next starts)".to_owned(),
            }),
            _ => {}
        }
        report.replaced.push(replaced);
    }
    for id in &present {
        let data_key: DataKeyId = keyledger_domain::FromTrusted::from_trusted(id.clone());
        let known = data_key.credential().ok().is_some_and(|key| {
            state.external_key(&key).is_some()
                && (state.data_key_of(&key) == data_key || state.is_retired(&key, &data_key))
        });
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
    let Folded {
        state, sealed_by, ..
    } = fold(log)?;
    let keyring = Keyring::new(master).map_err(keyledger_vault::VaultError::from)?;
    let wrapped_keys = log.data_keys().iter()?;
    let mut attempts = Vec::new();
    // Every secret ever sealed whose data key is gone: deleted keys' and replaced ones'.
    for (data_key, (key_id, sealed)) in &sealed_by {
        let Some(key) = state.external_key(key_id) else {
            continue;
        };
        if wrapped_keys.iter().any(|(id, _)| id == data_key.as_str()) {
            continue;
        }
        let aad = credential_aad(&key.id, &key.owner, key.provider());
        let mut opened = false;
        for (id, wrapped) in &wrapped_keys {
            opened |= keyring.open(id, wrapped, sealed, &aad).is_ok()
                || keyring
                    .open(data_key.as_str(), wrapped, sealed, &aad)
                    .is_ok();
        }
        let label = if data_key.as_str() == key.id.as_str() {
            key.id.to_string()
        } else {
            data_key.to_string()
        };
        attempts.push(RecoveryAttempt {
            key: label,
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
        if !self.replaced.is_empty() {
            out.push_str("\nData keys of secrets replaced by rotations\n");
            let mut table = Table::new(&["key", "data key", "rotated seq", "destroyed", "seq"]);
            for replaced in &self.replaced {
                let (destroyed, seq) = match (replaced.destroyed_at, replaced.destroyed_seq) {
                    (Some(at), Some(seq)) => (format!("destroyed {at}"), seq.to_string()),
                    _ => ("held by a running job".to_owned(), "-".to_owned()),
                };
                table.row(vec![
                    replaced.key.clone(),
                    replaced.data_key.clone(),
                    replaced.rotated_seq.to_string(),
                    destroyed,
                    seq,
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

/// What the audit learns from one pass over the log.
struct Folded {
    state: State,
    /// The seq of each external key's deletion.
    deleted_seq: BTreeMap<ExternalKeyId, Seq>,
    /// Data keys retired by rotations, with their destruction when recorded.
    replaced: Vec<ReplacedDataKey>,
    /// Every sealed secret the log holds, by the data key that sealed it.
    sealed_by: BTreeMap<DataKeyId, (ExternalKeyId, SealedSecret)>,
    head: Seq,
}

fn fold(log: &EventLog) -> Result<Folded, AuditError> {
    let mut walk = Walk::new(None, SignerSource::Unknown);
    let mut folded = Folded {
        state: State::default(),
        deleted_seq: BTreeMap::new(),
        replaced: Vec::new(),
        sealed_by: BTreeMap::new(),
        head: 0,
    };
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
        match &event {
            Event::ExternalKeyDeleted { key, .. } => {
                folded.deleted_seq.insert(key.clone(), envelope.seq);
            }
            Event::ExternalKeyCreated { key, sealed, .. } => {
                folded
                    .sealed_by
                    .insert(DataKeyId::original(key), (key.clone(), sealed.clone()));
            }
            Event::ExternalKeyRotated {
                key,
                sealed,
                previous_data_key,
                data_key,
                ..
            } => {
                folded
                    .sealed_by
                    .insert(data_key.clone(), (key.clone(), sealed.clone()));
                folded.replaced.push(ReplacedDataKey {
                    key: key.to_string(),
                    data_key: previous_data_key.to_string(),
                    rotated_seq: envelope.seq,
                    destroyed_at: None,
                    destroyed_seq: None,
                });
            }
            Event::ExternalKeyDataKeyDestroyed { data_key, at, .. } => {
                if let Some(replaced) = folded
                    .replaced
                    .iter_mut()
                    .find(|replaced| replaced.data_key == data_key.as_str())
                {
                    replaced.destroyed_at = Some(*at);
                    replaced.destroyed_seq = Some(envelope.seq);
                }
            }
            _ => {}
        }
        folded.state.apply_owned(event);
        folded.head = envelope.seq;
    }
    Ok(folded)
}
