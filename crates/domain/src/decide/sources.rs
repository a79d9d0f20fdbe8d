//! Saved sources (decision 0031): save, pause, resume, delete, and start a run as a new job.
//!
//! "A run that is still going is not started twice" holds under concurrency: a run writes the
//! source's stream (`SourceRunStarted`), so two runs decided against the same state conflict
//! on its expected version, and the decision also guards the last run's job stream it read.

use super::ingestion::{JobRequest, requested};
use super::{Reads, not_found, require, require_system};
use crate::command::Action;
use crate::error::DomainError;
use crate::event::{Actor, Event, ingestion_stream, source_stream};
use crate::permissions::Permission;
use crate::state::{Source, State};
use crate::time::Timestamp;
use crate::values::{SourceId, ValidationError};

pub(super) fn judge(
    state: &State,
    actor: Actor,
    action: Action,
    now: Timestamp,
    reads: &mut Reads,
) -> Result<Vec<Event>, DomainError> {
    match action {
        Action::SaveSource {
            source,
            name,
            selection,
            destination,
            schedule,
        } => {
            let owner = require(state, reads, &actor, Permission::ImportOrganizationSamples)?;
            if state.source(&source).is_some() {
                return Err(ValidationError::new("id", "this source id is taken").into());
            }
            // Two saves of one new name each write only their own new stream: the vault orders
            // them with its per-owner name lock (`vault/src/names.rs`), as for key names.
            let taken = state
                .sources()
                .find(|other| other.owner == owner && other.name == name);
            if let Some(other) = taken {
                return Err(DomainError::SourceNameTaken {
                    id: other.id.to_string(),
                });
            }
            let (schedule, timezone) = schedule
                .map(|s| (s.cron().to_owned(), s.timezone().to_owned()))
                .unzip();
            Ok(vec![Event::SourceSaved {
                source,
                owner,
                name,
                selection,
                destination,
                schedule,
                timezone,
                at: now,
            }])
        }
        Action::PauseSource { source } => {
            let found = own_source(state, reads, &actor, &source)?;
            if found.paused {
                return Ok(Vec::new());
            }
            let owner = found.owner.clone();
            Ok(vec![Event::SourcePaused {
                source,
                owner,
                at: now,
            }])
        }
        Action::ResumeSource { source } => {
            let found = own_source(state, reads, &actor, &source)?;
            if !found.paused {
                return Ok(Vec::new());
            }
            let owner = found.owner.clone();
            Ok(vec![Event::SourceResumed {
                source,
                owner,
                at: now,
            }])
        }
        Action::DeleteSource { source } => {
            let owner = own_source(state, reads, &actor, &source)?.owner.clone();
            Ok(vec![Event::SourceDeleted {
                source,
                owner,
                at: now,
            }])
        }
        Action::RunSource {
            source,
            ingestion,
            batch_id,
            scheduled_for,
        } => {
            let found = match (&actor, scheduled_for) {
                (Actor::System, Some(occurrence)) => {
                    scheduled_source(state, reads, &source, occurrence)?
                }
                (Actor::User { .. }, None) => own_source(state, reads, &actor, &source)?,
                _ => {
                    return Err(ValidationError::new(
                        "scheduled_for",
                        "only the scheduler runs a source for an occurrence; a user runs it by hand",
                    )
                    .into());
                }
            };
            if let Some(last) = found.last_run() {
                reads.stream(ingestion_stream(&last.ingestion));
            }
            if let Some(running) = state.source_running(found) {
                return Err(DomainError::SourceRunning {
                    id: source.to_string(),
                    ingestion: running.to_string(),
                });
            }
            let owner = found.owner.clone();
            let request = JobRequest {
                ingestion: ingestion.clone(),
                selection: found.selection.clone(),
                destination: found.destination.clone(),
                batch_id,
            };
            Ok(vec![
                requested(state, reads, owner.clone(), request, now)?,
                Event::SourceRunStarted {
                    source,
                    owner,
                    ingestion,
                    scheduled_for,
                    at: now,
                },
            ])
        }
        Action::RecordSourceRefusal {
            source,
            scheduled_for,
            reason,
        } => {
            require_system(&actor)?;
            reads.stream(source_stream(&source));
            let found = state
                .source(&source)
                .ok_or_else(|| not_found("source", &source))?;
            // Once per occurrence: the scheduler tries again each tick while the occurrence is
            // the latest due, and a refusal already recorded (or a run for it) says enough.
            let known = [
                found.last_refusal.as_ref().map(|r| r.scheduled_for),
                found.last_scheduled_for,
            ];
            if known
                .into_iter()
                .flatten()
                .any(|seen| seen >= scheduled_for)
            {
                return Ok(Vec::new());
            }
            Ok(vec![Event::SourceRunRefused {
                source,
                owner: found.owner.clone(),
                scheduled_for,
                reason,
                at: now,
            }])
        }
        _ => unreachable!("decide hands only source actions to sources::judge"),
    }
}

/// The actor's own live source; another user's is reported exactly like a missing one.
fn own_source<'s>(
    state: &'s State,
    reads: &mut Reads,
    actor: &Actor,
    source: &SourceId,
) -> Result<&'s Source, DomainError> {
    let owner = require(state, reads, actor, Permission::ImportOrganizationSamples)?;
    reads.stream(source_stream(source));
    state
        .source(source)
        .filter(|found| found.owner == owner)
        .ok_or_else(|| not_found("source", source))
}

/// The source the scheduler runs for `occurrence`: active, its owner still allowed to import,
/// and not run for that occurrence (or a later one) yet.
fn scheduled_source<'s>(
    state: &'s State,
    reads: &mut Reads,
    source: &SourceId,
    occurrence: Timestamp,
) -> Result<&'s Source, DomainError> {
    reads.stream(source_stream(source));
    let found = state
        .source(source)
        .ok_or_else(|| not_found("source", source))?;
    let owner = Actor::User {
        user: found.owner.clone(),
        key: None,
    };
    require(state, reads, &owner, Permission::ImportOrganizationSamples)?;
    if found.paused {
        return Err(ValidationError::new("source", "the source is paused").into());
    }
    if found
        .last_scheduled_for
        .is_some_and(|last| last >= occurrence)
    {
        return Err(ValidationError::new(
            "scheduled_for",
            "the source already ran for this occurrence",
        )
        .into());
    }
    Ok(found)
}
