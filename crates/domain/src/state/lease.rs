//! A job's lease: which worker process holds its credential, and whether it still may use it.

use serde::{Deserialize, Serialize};

use super::{Ingestion, State};
use crate::event::Event;
use crate::key_status::KeyStatus;
use crate::time::Timestamp;
use crate::values::{DataKeyId, IngestionId, UserId};

/// The lease of a job's credential by a worker process (`ExternalKeyLeased`). A job has at most
/// one: a new lease (the job redelivered to another worker) replaces the previous one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLease {
    /// `lease_…`, named by the worker in every report.
    pub id: String,
    pub worker: UserId,
    /// The data key the secret was opened with: a rotation makes another one current.
    pub data_key: DataKeyId,
    /// Moves on with the job: each recorded step of it renews the lease for `length_ms`.
    pub expires_at: Timestamp,
    /// The lease's length as granted (`expires_at − at` of `ExternalKeyLeased`).
    pub length_ms: i64,
}

impl State {
    pub(super) fn apply_lease(&mut self, event: Event) {
        let Event::ExternalKeyLeased {
            key,
            ingestion,
            worker,
            lease,
            data_key,
            expires_at,
            at,
            ..
        } = event
        else {
            return;
        };
        // A lease is a use of the key, as `ExternalKeyUsed` is for an embedded job.
        if let Some(external) = self.external_keys.get_mut(&key) {
            external.last_used_at = external.last_used_at.max(Some(at));
        }
        self.job_leases.insert(
            ingestion,
            JobLease {
                id: lease,
                worker,
                data_key,
                expires_at,
                length_ms: expires_at.as_millis().saturating_sub(at.as_millis()),
            },
        );
    }

    /// A recorded step of a leased job (listing, a file, a skip) shows its worker is at work:
    /// the lease is renewed for its length from then, so a job longer than the lease is not
    /// refused (decision 0033). Only the current lease's reports are recorded, so this renews
    /// the current lease.
    pub(super) fn renew_lease(&mut self, ingestion: &IngestionId, at: Timestamp) {
        if let Some(lease) = self.job_leases.get_mut(ingestion) {
            let renewed = at.plus_millis(lease.length_ms);
            if renewed > lease.expires_at {
                lease.expires_at = renewed;
            }
        }
    }

    /// Whether the job fetches every selected file, even those the store already holds in the
    /// same version (`force`; decision 0033).
    pub fn sync_forced(&self, ingestion: &IngestionId) -> bool {
        self.forced_syncs.contains(ingestion)
    }

    /// The current lease of a job, if a worker leased it.
    pub fn job_lease(&self, ingestion: &IngestionId) -> Option<&JobLease> {
        self.job_leases.get(ingestion)
    }

    /// Why the lease `lease` of `job` may not be used at `now`, in a sentence that says what
    /// happened; `None` while it may. A lease ends with its job, when another lease replaces it,
    /// at its expiry, and when the job's external key is deleted, expires or is rotated.
    pub fn lease_ended(&self, job: &Ingestion, lease: &str, now: Timestamp) -> Option<String> {
        if job.state.is_finished() {
            return Some(format!("ingestion `{}` has already finished", job.id));
        }
        let Some(current) = self
            .job_lease(&job.id)
            .filter(|current| current.id == lease)
        else {
            return Some(format!(
                "lease `{lease}` of ingestion `{}` was replaced: the job was handed to another worker",
                job.id
            ));
        };
        if current.expires_at <= now {
            return Some(format!(
                "lease `{lease}` of ingestion `{}` expired at {}",
                job.id, current.expires_at
            ));
        }
        let key = &job.external_key;
        match self.external_key(key).map(|found| found.status_at(now)) {
            Some(KeyStatus::Active) => {}
            Some(status) => {
                return Some(format!(
                    "the external key {key} was {} while the job ran",
                    status.as_str()
                ));
            }
            None => return Some(format!("the external key {key} no longer exists")),
        }
        if self.data_key_of(key) != current.data_key {
            return Some(format!(
                "the external key {key} was rotated while the job ran; the lease of the old secret ended"
            ));
        }
        None
    }
}
