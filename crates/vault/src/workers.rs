//! The vault's side of ingestion workers on other machines (decision 0025): the ticket that
//! proves the work queue handed a worker a job, the lease of a job's credential, and the
//! worker's reports of the job's progress.
//!
//! Guarantees, and how:
//! - A worker leases only a job it was handed: the job's message on the queue carries its
//!   ticket, HMAC-SHA256 of the job id under a key derived from the master key for tickets,
//!   checked in constant time. Other callers never see tickets (they are not in any event).
//! - A lease is recorded (`ExternalKeyLeased`) before the secret is opened, and is the job's only
//!   one: a redelivered job's new lease ends the old one. Reports under an ended lease (the
//!   job finished or handed on, the lease expired, the key deleted, expired or rotated) are
//!   refused with the reason, so the worker stops at its next report — within one file.
//! - Reports are decided by the domain (`ReportIngestion`): a file or listing already recorded
//!   is skipped, so a redelivered job records each file once.

use std::time::Duration;

use keyledger_crypto::random_base62;
use keyledger_domain::public::hex;
use keyledger_domain::{
    Action, Actor, DomainError, FailureKind, Ingestion, IngestionId, IngestionProgress, Provider,
    Timestamp,
};

use crate::external::ExternalCredential;
use crate::{Vault, VaultError};

/// What a worker gets for a job: the job, its lease and the credential, decrypted. The secret
/// lives only in memory (its types redact and zeroize).
#[derive(Debug)]
pub struct JobGrant {
    /// `lease_…`: named in every report.
    pub lease: String,
    pub expires_at: Timestamp,
    pub job: Ingestion,
    pub provider: Provider,
    pub credential: ExternalCredential,
}

impl Vault {
    /// The ticket of `ingestion` that the job's message on the work queue carries (hex).
    pub fn job_ticket(&self, ingestion: &IngestionId) -> String {
        hex(&self.keyring().sign_job_ticket(ingestion.as_str()))
    }

    /// Leases the credential of a live job to the worker `actor`, for at most `ttl`. Refused:
    /// a wrong ticket (`NotHandedOut`), a finished job, a key that is no longer active.
    pub async fn lease_job(
        &self,
        actor: Actor,
        ingestion: &IngestionId,
        ticket: &str,
        ttl: Duration,
    ) -> Result<JobGrant, VaultError> {
        if self.read(|state| state.ingestion(ingestion).is_none()) {
            return Err(DomainError::NotFound {
                what: "ingestion",
                id: ingestion.to_string(),
            }
            .into());
        }
        let genuine = unhex(ticket).is_some_and(|ticket| {
            self.keyring()
                .verify_job_ticket(ingestion.as_str(), &ticket)
        });
        if !genuine {
            return Err(DomainError::NotHandedOut {
                id: ingestion.to_string(),
            }
            .into());
        }
        let lease = format!("lease_{}", random_base62(self.keyring().rng(), 16)?);
        let expires_at = self
            .now()
            .plus_millis(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
        let leased = self
            .run(
                actor,
                Action::LeaseIngestion {
                    ingestion: ingestion.clone(),
                    lease: lease.clone(),
                    expires_at,
                },
            )
            .await;
        if let Err(VaultError::Domain(DomainError::LeaseEnded { reason })) = &leased {
            // The key went before any worker took the job: nobody else will record its end.
            self.fail_job(ingestion, reason.clone()).await?;
        }
        leased?;
        let job = self
            .read(|state| state.ingestion(ingestion).cloned())
            .ok_or_else(|| DomainError::NotFound {
                what: "ingestion",
                id: ingestion.to_string(),
            })?;
        let ended = |reason: String| VaultError::Domain(DomainError::LeaseEnded { reason });
        let opened = self.open_job_key(&job)?;
        // A rotation between the recorded lease and the opening: the lease names the old key.
        if let Some(reason) = self.read(|state| {
            state
                .ingestion(ingestion)
                .and_then(|current| state.lease_ended(current, &lease, self.now()))
        }) {
            return Err(ended(reason));
        }
        Ok(JobGrant {
            lease,
            expires_at,
            provider: opened.provider,
            credential: opened.credential.clone(),
            job,
        })
    }

    /// The job and its key's credential again, for the worker that holds `lease` and needs a
    /// new session of a `role` key (decision 0030): refused, with the reason, once the lease
    /// ended. Records nothing: the caller records the AssumeRole; the lease stays the same.
    /// Only the worker user the lease was granted to gets one (`NotHandedOut` otherwise).
    pub fn job_credential(
        &self,
        actor: &Actor,
        ingestion: &IngestionId,
        lease: &str,
    ) -> Result<(Ingestion, ExternalCredential), VaultError> {
        let job = self.leased_job(actor, ingestion, lease)?;
        let opened = self.open_job_key(&job)?;
        Ok((job, opened.credential.clone()))
    }

    /// The job's external key, opened for a worker: a key no longer active ends the lease, with
    /// the key's status as the reason.
    fn open_job_key(&self, job: &Ingestion) -> Result<crate::Lease, VaultError> {
        self.lease_external_key(&job.external_key)
            .map_err(|error| match error {
                VaultError::Domain(DomainError::NotActive { status, .. }) => {
                    VaultError::Domain(DomainError::LeaseEnded {
                        reason: format!(
                            "the external key {} is {}",
                            job.external_key,
                            status.as_str()
                        ),
                    })
                }
                other => other,
            })
    }

    /// The job whose lease `lease` the caller holds: refused, with the reason, once the lease
    /// ended (`LeaseEnded`), and for any worker user but the lease's (`NotHandedOut`).
    pub fn leased_job(
        &self,
        actor: &Actor,
        ingestion: &IngestionId,
        lease: &str,
    ) -> Result<Ingestion, VaultError> {
        let ended = |reason: String| VaultError::Domain(DomainError::LeaseEnded { reason });
        let job = self
            .read(|state| state.ingestion(ingestion).cloned())
            .ok_or_else(|| DomainError::NotFound {
                what: "ingestion",
                id: ingestion.to_string(),
            })?;
        if let Some(reason) = self.read(|state| state.lease_ended(&job, lease, self.now())) {
            return Err(ended(reason));
        }
        let holder = self.read(|state| state.job_lease(ingestion).map(|held| held.worker.clone()));
        let caller = match actor {
            Actor::User { user, .. } => Some(user),
            Actor::System | Actor::Operator => None,
        };
        if holder.as_ref() != caller {
            return Err(DomainError::NotHandedOut {
                id: ingestion.to_string(),
            }
            .into());
        }
        Ok(job)
    }

    /// Records a worker's report of `ingestion`'s progress under `lease`, in one atomic append
    /// (all items or none). Returns how many events were recorded: items already recorded are
    /// skipped.
    pub async fn report_job(
        &self,
        actor: Actor,
        ingestion: &IngestionId,
        lease: &str,
        items: Vec<IngestionProgress>,
    ) -> Result<usize, VaultError> {
        if items.is_empty() {
            return Ok(0);
        }
        let actions = items
            .into_iter()
            .map(|progress| Action::ReportIngestion {
                ingestion: ingestion.clone(),
                lease: lease.to_owned(),
                progress,
            })
            .collect();
        Ok(self.run_all(actor, actions).await?.events.len())
    }
}

impl Vault {
    /// Records a job as failed by the vault itself (`Cancelled`: its key went away); a job
    /// that has already finished stays as it is.
    async fn fail_job(&self, ingestion: &IngestionId, reason: String) -> Result<(), VaultError> {
        let failed = self
            .run(
                Actor::System,
                Action::RecordIngestion {
                    ingestion: ingestion.clone(),
                    progress: IngestionProgress::Failed {
                        reason: format!("{reason}; store a new key and start the ingestion again"),
                        failure_kind: FailureKind::Cancelled,
                    },
                },
            )
            .await;
        match failed {
            Ok(_) | Err(VaultError::Domain(DomainError::IngestionFinished { .. })) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Lowercase or uppercase hexadecimal to bytes; `None` for anything else.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}
