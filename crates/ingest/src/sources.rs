//! Saved sources (decision 0031): a selection and destination saved under a name, run by hand
//! or on a cron schedule. Every run is an ordinary job, started the way
//! [`Ingestor::start_with`] starts one: recorded (`IngestionRequested` with `SourceRunStarted`,
//! one append), then run on a task of this process or, with external workers, by a worker.
//!
//! The schedule is kept by [`Ingestor::run_due_sources`], which a task calls on an interval
//! with the vault's clock: each active source whose latest occurrence is due starts one run.
//! Missed occurrences (a server that was down) run once, as the latest of them; an occurrence
//! that falls while the previous run's job is still going is skipped (`State::source_due`).

use std::collections::HashSet;
use std::time::Duration;

use keyledger_crypto::random_base62;
use keyledger_domain::{
    Action, Actor, DomainError, FromTrusted, IngestionId, Permission, Schedule, SourceId,
    SourceName, Timestamp, permitted_user,
};
use keyledger_vault::VaultError;

use crate::job::truncate;
use crate::sync::StartOptions;
use crate::{IngestError, IngestRequest, Ingestor, selection};

/// What a user saves: a name, what a job would fetch, and an optional schedule.
#[derive(Debug, Clone)]
pub struct SaveSource {
    pub name: SourceName,
    pub request: IngestRequest,
    pub schedule: Option<Schedule>,
}

/// What one [`Ingestor::run_due_sources`] did.
#[derive(Debug, Default)]
pub struct ScheduledRuns {
    /// Runs started: the source, its job, the occurrence.
    pub started: Vec<(SourceId, IngestionId, Timestamp)>,
    /// Due runs the vault refused (no usable key any more, a concurrent run): tried again at
    /// the next tick while the occurrence is still the latest one due.
    pub refused: Vec<(SourceId, Timestamp, IngestError)>,
    /// The refusals recorded as `SourceRunRefused` at this tick (the first of their
    /// occurrence, for the owner's situation).
    pub recorded: Vec<(SourceId, Timestamp)>,
}

impl Ingestor {
    /// Saves a source of `actor`'s, checked as a job's request is (selection, destination,
    /// permission); the schedule was parsed at the edge.
    pub async fn save_source(
        &self,
        actor: Actor,
        source: SaveSource,
    ) -> Result<SourceId, IngestError> {
        let shared = &self.shared;
        let permission = Permission::ImportOrganizationSamples;
        let owner = shared
            .vault
            .read(|state| permitted_user(state, &actor, permission))?;
        let SaveSource {
            name,
            request,
            schedule,
        } = source;
        selection::validate(&request.selection).map_err(IngestError::InvalidSelection)?;
        let destination = self.checked_destination(&owner, request.destination.as_deref())?;
        let id = SourceId::from_trusted(format!(
            "{}{}",
            SourceId::PREFIX,
            random_base62(&shared.rng, 16).map_err(VaultError::from)?
        ));
        shared
            .vault
            .run_claiming_name(
                &owner,
                actor,
                Action::SaveSource {
                    source: id.clone(),
                    name,
                    selection: request.selection,
                    destination,
                    schedule,
                },
            )
            .await?;
        Ok(id)
    }

    /// Starts a run of `source` as a new job: by its owner (`scheduled_for: None`), or by the
    /// scheduler (actor `System`) for an occurrence. Refused while its previous run's job has
    /// not finished (`source_running`).
    pub async fn run_source(
        &self,
        actor: Actor,
        source: &SourceId,
        scheduled_for: Option<Timestamp>,
    ) -> Result<IngestionId, IngestError> {
        let (id, batch_id) = self.new_job_ids()?;
        let executed = self
            .shared
            .vault
            .run(
                actor,
                Action::RunSource {
                    source: source.clone(),
                    ingestion: id.clone(),
                    batch_id,
                    scheduled_for,
                },
            )
            .await?;
        self.launch(&executed.events, &id, StartOptions::default())?;
        tracing::info!(source = %source, ingestion = %id, scheduled = scheduled_for.is_some(), "source run started");
        Ok(id)
    }

    /// Starts one run of every source due at `now` (see the module's documentation); returns
    /// what it started and what was refused. Call it only where the log is written (the
    /// primary), never from a read replica.
    pub async fn run_due_sources(&self, now: Timestamp) -> ScheduledRuns {
        let due: Vec<(SourceId, Timestamp)> = self.shared.vault.read(|state| {
            state
                .sources()
                .filter_map(|source| Some((source.id.clone(), state.source_due(source, now)?)))
                .collect()
        });
        let mut runs = ScheduledRuns::default();
        for (source, occurrence) in due {
            match self
                .run_source(Actor::System, &source, Some(occurrence))
                .await
            {
                Ok(ingestion) => runs.started.push((source, ingestion, occurrence)),
                Err(error) => {
                    if is_owner_situation(&error)
                        && self.record_refusal(&source, occurrence, &error).await
                    {
                        runs.recorded.push((source.clone(), occurrence));
                    }
                    runs.refused.push((source, occurrence, error));
                }
            }
        }
        runs
    }

    /// Records `SourceRunRefused` for the occurrence unless it already is (the domain decides
    /// that); whether an event was recorded. A failure to record is logged and tried again at
    /// the next tick, as the run itself is.
    async fn record_refusal(
        &self,
        source: &SourceId,
        occurrence: Timestamp,
        error: &IngestError,
    ) -> bool {
        let action = Action::RecordSourceRefusal {
            source: source.clone(),
            scheduled_for: occurrence,
            reason: truncate(error.to_string()),
        };
        match self.shared.vault.run(Actor::System, action).await {
            Ok(executed) => !executed.events.is_empty(),
            Err(error) => {
                tracing::warn!(source = %source, %error, "a refused scheduled run could not be recorded");
                false
            }
        }
    }

    /// Runs [`Ingestor::run_due_sources`] every `interval` with the vault's clock, until the
    /// handle is aborted; `on_started` sees each job it started (the API writes its manifest
    /// when it ends). A refused occurrence is logged once.
    pub fn spawn_scheduler(
        &self,
        interval: Duration,
        on_started: impl Fn(&IngestionId, u64) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let ingestor = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut warned: HashSet<(SourceId, Timestamp)> = HashSet::new();
            loop {
                tick.tick().await;
                let first_seq = ingestor.shared.vault.log().head().0 + 1;
                let now = ingestor.shared.vault.now();
                let runs = ingestor.run_due_sources(now).await;
                for (_, ingestion, _) in &runs.started {
                    on_started(ingestion, first_seq);
                }
                for (source, occurrence, error) in runs.refused {
                    if warned.insert((source.clone(), occurrence)) {
                        tracing::warn!(source = %source, occurrence = %occurrence.to_rfc3339(), %error,
                            "a scheduled source run was refused; retrying at the next tick");
                    }
                }
            }
        })
    }
}

/// Whether a refused scheduled run is about its owner's situation (no usable key for the
/// provider, expired session credentials, the owner may no longer import or is deactivated),
/// which the owner can fix and should see; not a concurrent run, a paused or deleted source, or
/// a transient error of the vault.
fn is_owner_situation(error: &IngestError) -> bool {
    matches!(
        error,
        IngestError::Refused(
            DomainError::NoExternalKey { .. }
                | DomainError::SessionExpired { .. }
                | DomainError::NotActive { .. }
                | DomainError::PermissionDenied { .. }
                | DomainError::OutOfScope { .. }
                | DomainError::UserDeactivated { .. }
        )
    )
}
