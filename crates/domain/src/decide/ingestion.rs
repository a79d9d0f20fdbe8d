//! The ingestion commands: request, cancel, record progress (the vault's own job runner), and
//! the worker side of decision 0025 — lease a job's credential, report its progress.

use super::{Reads, no_usable_key, not_found, require, require_system};
use crate::command::{Action, IngestionProgress};
use crate::error::DomainError;
use crate::event::{Actor, Event, Selection, external_key_stream, ingestion_stream};
use crate::key_status::KeyStatus;
use crate::permissions::Permission;
use crate::state::{Ingestion, State};
use crate::time::Timestamp;
use crate::values::{IngestionId, UserId};

pub(super) fn judge(
    state: &State,
    actor: Actor,
    action: Action,
    now: Timestamp,
    reads: &mut Reads,
) -> Result<Vec<Event>, DomainError> {
    match action {
        Action::RequestIngestion {
            ingestion,
            selection,
            destination,
            batch_id,
            force,
        } => {
            let owner = require(state, reads, &actor, Permission::ImportOrganizationSamples)?;
            let request = JobRequest {
                ingestion: ingestion.clone(),
                selection,
                destination,
                batch_id,
            };
            let mut events = vec![requested(state, reads, owner, request, now)?];
            // Recorded with the request, so a worker elsewhere and a resumed job honour it.
            if force {
                events.push(Event::IngestionSyncForced { ingestion, at: now });
            }
            Ok(events)
        }
        Action::CancelIngestion { ingestion } => {
            let job = state
                .ingestion(&ingestion)
                .ok_or_else(|| not_found("ingestion", &ingestion))?;
            if actor != Actor::System {
                let caller = require(state, reads, &actor, Permission::ImportOrganizationSamples)?;
                if caller != job.owner {
                    return Err(not_found("ingestion", &ingestion));
                }
            }
            if job.state.is_finished() {
                return Err(DomainError::IngestionFinished {
                    id: ingestion.to_string(),
                });
            }
            Ok(vec![Event::IngestionCancelled { ingestion, at: now }])
        }
        Action::RecordIngestion {
            ingestion,
            progress,
        } => {
            require_system(&actor)?;
            let job = live_job(state, reads, &ingestion)?;
            Ok(progress_event(job, ingestion, progress, now)
                .into_iter()
                .collect())
        }
        Action::LeaseIngestion {
            ingestion,
            lease,
            expires_at,
        } => {
            let worker = require(state, reads, &actor, Permission::RunIngestionJobs)?;
            let job = live_job(state, reads, &ingestion)?;
            let key = &job.external_key;
            let external = state
                .external_key(key)
                .ok_or_else(|| not_found("external key", key))?;
            reads.stream(external_key_stream(&external.owner, external.provider()));
            let status = external.status_at(now);
            if status != KeyStatus::Active {
                return Err(DomainError::LeaseEnded {
                    reason: format!(
                        "the external key {key} of ingestion `{ingestion}` is {}",
                        status.as_str()
                    ),
                });
            }
            Ok(vec![Event::ExternalKeyLeased {
                key: key.clone(),
                owner: job.owner.clone(),
                ingestion,
                worker,
                lease,
                data_key: state.data_key_of(key),
                expires_at,
                at: now,
            }])
        }
        Action::ReportIngestion {
            ingestion,
            lease,
            progress,
        } => {
            require(state, reads, &actor, Permission::RunIngestionJobs)?;
            let job = live_job(state, reads, &ingestion)?;
            let key = &job.external_key;
            if let Some(external) = state.external_key(key) {
                reads.stream(external_key_stream(&external.owner, external.provider()));
            }
            let holds = state
                .job_lease(&ingestion)
                .is_some_and(|current| current.id == lease);
            // A failure is what a worker reports when its lease ended: accepted from the
            // job's current lease holder whatever the key's state.
            let failing = matches!(progress, IngestionProgress::Failed { .. });
            if !(failing && holds)
                && let Some(reason) = state.lease_ended(job, &lease, now)
            {
                return Err(DomainError::LeaseEnded { reason });
            }
            Ok(progress_event(job, ingestion, progress, now)
                .into_iter()
                .collect())
        }
        _ => unreachable!("decide hands only ingestion actions to ingestion::judge"),
    }
}

/// A new job's identity and what it fetches.
pub(super) struct JobRequest {
    pub ingestion: IngestionId,
    pub selection: Selection,
    pub destination: String,
    pub batch_id: String,
}

/// The `IngestionRequested` of a job of `owner`'s, over their usable key for the provider.
pub(super) fn requested(
    state: &State,
    reads: &mut Reads,
    owner: UserId,
    request: JobRequest,
    now: Timestamp,
) -> Result<Event, DomainError> {
    let provider = request.selection.provider();
    reads.stream(external_key_stream(&owner, provider));
    let Some(external) = state
        .active_external_key(&owner, provider)
        .filter(|k| k.status_at(now) == KeyStatus::Active)
    else {
        return Err(no_usable_key(state, &owner, provider, now));
    };
    Ok(Event::IngestionRequested {
        ingestion: request.ingestion,
        owner,
        external_key: external.id.clone(),
        selection: request.selection,
        destination: request.destination,
        batch_id: request.batch_id,
        at: now,
    })
}

/// The job, noting its stream, while it is not finished.
fn live_job<'s>(
    state: &'s State,
    reads: &mut Reads,
    ingestion: &IngestionId,
) -> Result<&'s Ingestion, DomainError> {
    reads.stream(ingestion_stream(ingestion));
    let job = state
        .ingestion(ingestion)
        .ok_or_else(|| not_found("ingestion", ingestion))?;
    if job.state.is_finished() {
        return Err(DomainError::IngestionFinished {
            id: ingestion.to_string(),
        });
    }
    Ok(job)
}

/// The event that records `progress`, or `None` for what is already recorded: a listing, or a
/// file (by path) that already has its outcome. So a job handed to a second worker never
/// records a file twice.
fn progress_event(
    job: &Ingestion,
    ingestion: IngestionId,
    progress: IngestionProgress,
    now: Timestamp,
) -> Option<Event> {
    let recorded = |path: &str| job.files.iter().any(|file| file.path == path);
    Some(match progress {
        IngestionProgress::KeyUsed => Event::ExternalKeyUsed {
            key: job.external_key.clone(),
            owner: job.owner.clone(),
            ingestion,
            at: now,
        },
        IngestionProgress::Listed { .. } if job.files_selected.is_some() => return None,
        // Recorded once per job: a resumed job's second answer is the same skip.
        IngestionProgress::Skipped { .. } if job.files_skipped > 0 => return None,
        IngestionProgress::Listed { files, bytes } => Event::IngestionListed {
            ingestion,
            files,
            bytes,
            at: now,
        },
        IngestionProgress::FileFetched { path, .. }
        | IngestionProgress::FileFailed { path, .. }
            if recorded(&path) =>
        {
            return None;
        }
        IngestionProgress::FileFetched {
            path,
            size,
            sha256,
            source_etag,
        } => Event::IngestionFileFetched {
            ingestion,
            path,
            size,
            sha256,
            source_etag,
            external_key: job.external_key.clone(),
            at: now,
        },
        IngestionProgress::FileFailed {
            path,
            reason,
            failure_kind,
        } => Event::IngestionFileFailed {
            ingestion,
            path,
            reason,
            failure_kind,
            at: now,
        },
        IngestionProgress::Completed => {
            let fetched = job.files.iter().filter(|f| f.failure.is_none());
            let (files, bytes) = fetched.fold((0, 0), |(n, b), f| (n + 1, b + f.size));
            let failed = job.files.iter().filter(|f| f.failure.is_some()).count() as u64;
            Event::IngestionCompleted {
                ingestion,
                files,
                bytes,
                failed,
                at: now,
            }
        }
        IngestionProgress::Failed {
            reason,
            failure_kind,
        } => Event::IngestionFailed {
            ingestion,
            reason,
            failure_kind,
            at: now,
        },
        IngestionProgress::Cancelled => Event::IngestionCancelled { ingestion, at: now },
        IngestionProgress::Skipped { files, bytes } => Event::IngestionFilesSkipped {
            ingestion,
            files,
            bytes,
            at: now,
        },
    })
}
