//! The entry point: starts, cancels, shows and recovers jobs.

use std::collections::HashSet;
use std::sync::Arc;

use keyledger_crypto::random_base62;
use keyledger_domain::{
    Action, Actor, DomainError, Event, ExternalKeyId, FailureKind, FromTrusted, IngestionId,
    IngestionProgress, KeyStatus, Permission, Provider, UserId, permitted_user,
};
use keyledger_vault::{ExternalKeyView, Vault, VaultError};
use parking_lot::Mutex;

use crate::job::{Job, Tally};
use crate::live::{LiveJob, Stop};
use crate::recorder::Recorder;
use crate::s3::S3SampleSource;
use crate::shared::{Gauge, GaugeGuard, Shared, blocking};
use crate::source::source_for;
use crate::store::{destination_belongs_to, validate_destination};
use crate::sync::StartOptions;
use crate::view::{IngestionView, build};
use crate::{INTERRUPTED_REASON, IngestConfig, IngestError, IngestRequest, Workers, selection};

/// Runs ingestion jobs in this process. Cheap to clone: every clone is the same ingestor.
#[derive(Clone, Debug)]
pub struct Ingestor {
    pub(crate) shared: Arc<Shared>,
}

/// What [`Ingestor::recover`] repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Jobs left running by a crash, now recorded as failed.
    pub jobs_failed: u64,
    /// Partial areas (`<store_root>/.partial/<job>`) removed.
    pub partial_areas_removed: u64,
    /// Files renamed into place whose event a crash prevented, removed.
    pub unrecorded_files_removed: u64,
}

impl Ingestor {
    pub fn new(vault: Vault, config: IngestConfig) -> Ingestor {
        Ingestor {
            shared: Arc::new(Shared::new(vault, config)),
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.shared.config
    }

    /// Checks and records a new ingestion for `actor`, then runs it on a tokio task.
    ///
    /// Refused before anything is recorded: no `import_organization_samples` permission, a
    /// malformed selection or destination, no active external key for the provider.
    pub async fn start(
        &self,
        actor: Actor,
        request: IngestRequest,
    ) -> Result<IngestionId, IngestError> {
        self.start_with(actor, request, StartOptions::default())
            .await
    }

    /// [`Ingestor::start`] with options: by default a job skips the files the store already
    /// holds in the same version (see `sync`); `force` fetches them again.
    pub async fn start_with(
        &self,
        actor: Actor,
        request: IngestRequest,
        options: StartOptions,
    ) -> Result<IngestionId, IngestError> {
        let shared = &self.shared;
        let permission = Permission::ImportOrganizationSamples;
        let owner = shared
            .vault
            .read(|state| permitted_user(state, &actor, permission))?;
        selection::validate(&request.selection).map_err(IngestError::InvalidSelection)?;
        let destination = self.checked_destination(&owner, request.destination.as_deref())?;
        let (id, batch_id) = self.new_job_ids()?;
        let executed = shared
            .vault
            .run(
                actor,
                Action::RequestIngestion {
                    ingestion: id.clone(),
                    selection: request.selection.clone(),
                    destination: destination.clone(),
                    batch_id: batch_id.clone(),
                    force: options.force,
                },
            )
            .await?;
        self.launch(&executed.events, &id, options)?;
        Ok(id)
    }

    /// The destination a job of `owner`'s stores into: `raw` (or the owner's own folder),
    /// checked to be a safe relative path inside the owner's area.
    pub(crate) fn checked_destination(
        &self,
        owner: &UserId,
        raw: Option<&str>,
    ) -> Result<String, IngestError> {
        let destination = validate_destination(raw.unwrap_or(owner.as_str()))
            .map_err(IngestError::InvalidDestination)?;
        if !destination_belongs_to(&destination, owner) {
            return Err(IngestError::ForeignDestination {
                owner: owner.clone(),
            });
        }
        Ok(destination)
    }

    /// A new job's id and batch id.
    pub(crate) fn new_job_ids(&self) -> Result<(IngestionId, String), IngestError> {
        let shared = &self.shared;
        let id = IngestionId::from_trusted(format!(
            "{}{}",
            IngestionId::PREFIX,
            random_base62(&shared.rng, 16).map_err(VaultError::from)?
        ));
        let date: String = shared.vault.now().to_rfc3339()[..10]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let batch_id = format!(
            "batch-{date}-{}",
            random_base62(&shared.rng, 6).map_err(VaultError::from)?
        );
        Ok((id, batch_id))
    }

    /// Runs the job `id` that `events` (just appended) requested: on a task of this process,
    /// or, with external workers, nowhere here (the dispatcher hands it to a worker).
    pub(crate) fn launch(
        &self,
        events: &[Event],
        id: &IngestionId,
        options: StartOptions,
    ) -> Result<(), IngestError> {
        let shared = &self.shared;
        let requested = events.iter().find_map(|event| match event {
            Event::IngestionRequested {
                ingestion,
                owner,
                external_key,
                selection,
                destination,
                batch_id,
                ..
            } if ingestion == id => Some((owner, external_key, selection, destination, batch_id)),
            _ => None,
        });
        let Some((owner, key, selection, destination, batch_id)) = requested else {
            return Err(IngestError::Vault(VaultError::Inconsistent {
                what: "the ingestion request recorded no IngestionRequested event",
            }));
        };
        if shared.config.workers == Workers::External {
            // The dispatcher publishes the job to the work queue; a worker runs it.
            tracing::info!(id = %id, owner = %owner, batch = %batch_id, "ingestion requested for the workers");
            return Ok(());
        }
        let live = Arc::new(LiveJob::new());
        shared.lock_jobs().insert(id.clone(), Arc::clone(&live));
        let job = Arc::new(Job {
            shared: Arc::clone(shared),
            id: id.clone(),
            key: key.clone(),
            selection: selection.clone(),
            batch_dir: shared.store.batch_dir(destination, batch_id),
            live,
            recorder: Recorder::new(id.clone()),
            tally: Mutex::new(Tally::default()),
            options,
        });
        tracing::info!(id = %id, owner = %owner, batch = %batch_id, "ingestion requested");
        // Counted as queued from now until it gets a slot.
        supervise(job, Gauge::enter(shared, Gauge::Queued));
        Ok(())
    }

    /// Cancels a job of `actor`'s (records `IngestionCancelled`) and stops its transfers; the
    /// job then removes its partial files. Finished jobs cannot be cancelled.
    pub async fn cancel(
        &self,
        actor: Actor,
        id: &IngestionId,
    ) -> Result<IngestionView, IngestError> {
        self.shared
            .vault
            .run(
                actor,
                Action::CancelIngestion {
                    ingestion: id.clone(),
                },
            )
            .await?;
        if let Some(live) = self.shared.live(id) {
            live.request_stop(Stop::Cancelled);
        }
        self.status(id).ok_or_else(|| {
            IngestError::Refused(DomainError::NotFound {
                what: "ingestion",
                id: id.to_string(),
            })
        })
    }

    /// A job with every finished file and the progress of running ones. No ownership check:
    /// callers compare [`IngestionView::owner`].
    pub fn status(&self, id: &IngestionId) -> Option<IngestionView> {
        let live = self.shared.live(id);
        self.shared.vault.read(|state| {
            state
                .ingestion(id)
                .map(|job| build(job, live.as_deref(), true))
        })
    }

    /// The owner's jobs, newest first, without their file lists.
    pub fn list(&self, owner: &UserId) -> Vec<IngestionView> {
        let live = self.shared.lock_jobs().clone();
        let mut views: Vec<IngestionView> = self.shared.vault.read(|state| {
            state
                .ingestions()
                .filter(|job| &job.owner == owner)
                .map(|job| build(job, live.get(&job.id).map(Arc::as_ref), false))
                .collect()
        });
        views.sort_by(|a, b| {
            b.requested_at
                .cmp(&a.requested_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        views
    }

    /// Waits until the job's task in this process has ended (returns at once for a job not
    /// running here), then shows it.
    pub async fn wait(&self, id: &IngestionId) -> Option<IngestionView> {
        if let Some(live) = self.shared.live(id) {
            live.done.cancelled().await;
        }
        self.status(id)
    }

    /// Jobs running (or queued) in this process.
    pub fn running(&self) -> Vec<IngestionId> {
        self.shared.lock_jobs().keys().cloned().collect()
    }

    /// "Save and test": checks `actor`'s external key against its provider and records the
    /// result (`ExternalKeyVerified`, shown as "last verified"). With `bucket`, an AWS key is
    /// tested by listing that bucket, for keys that may not list all buckets. A provider's
    /// refusal is a recorded result (`last_verified_ok: false`), not an error.
    pub async fn verify_external_key(
        &self,
        actor: Actor,
        key: &ExternalKeyId,
        bucket: Option<&str>,
    ) -> Result<ExternalKeyView, IngestError> {
        let shared = &self.shared;
        let permission = Permission::ManageUserApiKeys;
        let owner = shared
            .vault
            .read(|state| permitted_user(state, &actor, permission))?;
        let owns = shared.vault.read(|state| {
            state
                .external_key(key)
                .is_some_and(|found| found.owner == owner && found.status != KeyStatus::Deleted)
        });
        if !owns {
            return Err(DomainError::NotFound {
                what: "external key",
                id: key.to_string(),
            }
            .into());
        }
        let lease = shared.vault.lease_external_key(key)?;
        let checked = async {
            match (lease.provider, bucket) {
                (Provider::Aws, Some(bucket)) => {
                    let role_use = crate::source::RoleUse {
                        purpose: key.to_string(),
                        scope: Some((bucket.to_owned(), String::new())),
                        on_assumed: None,
                    };
                    S3SampleSource::from_lease(&lease, &shared.config, role_use)?
                        .check_bucket(bucket)
                        .await
                }
                _ => source_for(&lease, &shared.config)?.check().await,
            }
        }
        .await;
        drop(lease);
        let (ok, detail) = match checked {
            Ok(detail) => (true, detail),
            Err(error) => (false, error.message),
        };
        Ok(shared
            .vault
            .record_external_key_verification(actor, key.clone(), ok, detail)
            .await?)
    }

    /// Start-up repair: creates the store, records every job a crash left unfinished as failed
    /// ("interrupted by a restart"), removes their partial files and any file renamed into place
    /// without its event, and any partial area no running job owns.
    ///
    /// Call it once, before serving, in the process that owns the sample store. With external
    /// workers it only prepares the store: unfinished jobs wait on the work queue, and a worker
    /// that resumes one repairs its batch folder.
    pub async fn recover(&self) -> Result<RecoveryReport, IngestError> {
        let shared = Arc::clone(&self.shared);
        {
            let shared = Arc::clone(&shared);
            blocking(move || shared.store.prepare())
                .await
                .map_err(|source| IngestError::Store {
                    path: self.shared.store.root().to_path_buf(),
                    source,
                })?;
        }
        if shared.config.workers == Workers::External {
            return Ok(RecoveryReport::default());
        }
        let running: HashSet<IngestionId> = shared.lock_jobs().keys().cloned().collect();
        let interrupted: Vec<(IngestionId, String, String, HashSet<String>)> =
            shared.vault.read(|state| {
                state
                    .ingestions()
                    .filter(|job| !job.state.is_finished() && !running.contains(&job.id))
                    .map(|job| {
                        let kept = job
                            .files
                            .iter()
                            .filter(|file| file.sha256.is_some())
                            .map(|file| file.path.clone())
                            .collect();
                        (
                            job.id.clone(),
                            job.destination.clone(),
                            job.batch_id.clone(),
                            kept,
                        )
                    })
                    .collect()
            });
        let mut report = RecoveryReport::default();
        for (id, destination, batch_id, kept) in interrupted {
            let recorded = shared
                .vault
                .run(
                    Actor::System,
                    Action::RecordIngestion {
                        ingestion: id.clone(),
                        progress: IngestionProgress::Failed {
                            reason: INTERRUPTED_REASON.to_owned(),
                            // Starting the ingestion again succeeds.
                            failure_kind: FailureKind::Transient,
                        },
                    },
                )
                .await;
            match recorded {
                Ok(_) => report.jobs_failed += 1,
                Err(VaultError::Domain(DomainError::IngestionFinished { .. })) => {}
                Err(error) => return Err(error.into()),
            }
            // Only paths this crate itself would have built are touched.
            let safe = validate_destination(&destination).is_ok_and(|d| d == destination)
                && !batch_id.is_empty()
                && !batch_id.starts_with('.')
                && !batch_id.contains(['/', '\\']);
            if safe {
                let batch_dir = shared.store.batch_dir(&destination, &batch_id);
                let store = Arc::clone(&shared);
                let removed = blocking(move || store.store.remove_unrecorded(&batch_dir, &kept))
                    .await
                    .map_err(|source| IngestError::Store {
                        path: shared.store.root().to_path_buf(),
                        source,
                    })?;
                report.unrecorded_files_removed += removed;
            }
            tracing::warn!(id = %id, "ingestion interrupted by a restart recorded as failed");
        }
        let running: HashSet<String> = shared.lock_jobs().keys().map(|id| id.to_string()).collect();
        let store = Arc::clone(&shared);
        let removed = blocking(move || {
            let mut removed = 0;
            for area in store.store.partial_jobs()? {
                if !running.contains(&area) {
                    store.store.remove_partial_area(&area)?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|source| IngestError::Store {
            path: shared.store.root().to_path_buf(),
            source,
        })?;
        report.partial_areas_removed = removed;
        shared.vault.telemetry().set_component(
            "ingest",
            true,
            format!("sample store at {}", shared.store.root().display()),
        );
        Ok(report)
    }
}

/// Runs a job on its own task; if that task dies (a panic), the job is recorded as failed.
fn supervise(job: Arc<Job>, queued: GaugeGuard) {
    let runner = Arc::clone(&job);
    tokio::spawn(async move {
        let handle = tokio::spawn(runner.run(queued));
        if let Err(error) = handle.await {
            tracing::error!(id = %job.id, %error, "an ingestion job's task died");
            job.live.cancel.cancel();
            job.abandon(format!(
                "the job stopped unexpectedly ({}); start it again",
                if error.is_panic() {
                    "internal error"
                } else {
                    "aborted"
                }
            ))
            .await;
        }
    });
}
