//! The queue loop: pull one job whenever a slot is free, run it, acknowledge it; and one job,
//! from its message to its acknowledgement.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt as _;
use keyledger_bus::jobs::{JobMessage, bind_job_consumer, context};
use keyledger_domain::{FailureKind, IngestionId};
use keyledger_ingest::s3::S3SampleSource;
use keyledger_ingest::wire::ReportItem;
use keyledger_ingest::{
    JobHost, RemoteJob, RemoteOutcome, RoleUse, SampleSource, Store, source_for_credential,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::client::{LeaseRefused, VaultClient};
use crate::health::{Metrics, serve};
use crate::{WorkerConfig, WorkerError};

/// How long one pull request waits for a job.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Pause before a job the vault could not take is offered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// What every job of one worker shares.
struct Worker {
    config: WorkerConfig,
    vault: VaultClient,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    /// Set when the vault refuses this worker's key: it stops taking jobs and exits with it.
    refused: std::sync::Mutex<Option<String>>,
    stop_taking: CancellationToken,
}

/// Runs the worker until `shutdown`, then drains: no new jobs, running ones get
/// `drain_timeout` to finish, then are stopped and handed back. Calls `bound` with the health
/// port's address once it listens.
pub async fn run(
    mut config: WorkerConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    bound: impl FnOnce(std::net::SocketAddr),
) -> Result<(), WorkerError> {
    if config.concurrency == 0 {
        return Err(WorkerError::Config(
            "the worker's concurrency must be at least 1".to_owned(),
        ));
    }
    config.queue.check()?;
    let health_stop = CancellationToken::new();
    let _stop_health = health_stop.clone().drop_guard();
    bound(serve(config.listen, Arc::clone(&metrics), health_stop).await?);
    let vault = VaultClient::new(&config.vault_url, config.api_key.clone())?;
    let Some(mut consumer) = bind(&config, &shutdown).await? else {
        return Ok(());
    };
    // The vault set the consumer up: its ack wait paces the progress acks, its max_deliver
    // says which delivery is the last.
    if let Ok(info) = consumer.info().await {
        config.queue.ack_wait = info.config.ack_wait;
        config.queue.max_deliver = info.config.max_deliver;
    }
    let stop_taking = shutdown.child_token();
    let worker = Arc::new(Worker {
        vault,
        store: Arc::new(match &config.ingest.object_store {
            Some(object) => {
                Store::with_object(config.ingest.store_root.clone(), Arc::clone(object))
            }
            None => Store::new(config.ingest.store_root.clone()),
        }),
        metrics: Arc::clone(&metrics),
        config,
        refused: std::sync::Mutex::new(None),
        stop_taking: stop_taking.clone(),
    });
    let shutdown = stop_taking;
    tracing::info!(
        queue = %worker.config.queue.stream,
        concurrency = worker.config.concurrency,
        "worker taking jobs"
    );
    metrics.ready.store(true, Ordering::Relaxed);
    let slots = Arc::new(Semaphore::new(worker.config.concurrency));
    let stop_jobs = CancellationToken::new();
    let mut jobs = JoinSet::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        while jobs.try_join_next().is_some() {}
        let pulled = consumer
            .batch()
            .max_messages(1)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match pulled {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "cannot pull from the job queue; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(HAND_BACK_DELAY) => continue,
                }
            }
        };
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = batch.next() => next,
        };
        match next {
            Some(Ok(message)) => {
                let (worker, stop) = (Arc::clone(&worker), stop_jobs.clone());
                jobs.spawn(async move {
                    worker.handle(message, stop).await;
                    drop(slot);
                });
            }
            Some(Err(error)) => tracing::warn!(%error, "pulling a job failed"),
            None => {}
        }
    }
    metrics.ready.store(false, Ordering::Relaxed);
    tracing::info!(running = jobs.len(), "draining");
    let drained = tokio::time::timeout(worker.config.drain_timeout, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Each stops at its next file boundary or inside its transfer, and is handed back.
        stop_jobs.cancel();
        while jobs.join_next().await.is_some() {}
    }
    let refused = worker
        .refused
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(reason) = refused {
        return Err(WorkerError::Config(format!(
            "the vault refuses this worker's key ({reason}); give the worker a key of a user with the `worker` role"
        )));
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Binds the shared consumer, retrying until the vault has created it; `None` on shutdown.
async fn bind(
    config: &WorkerConfig,
    shutdown: &CancellationToken,
) -> Result<Option<PullConsumer>, WorkerError> {
    let mut delay = config.bus.backoff_min;
    loop {
        let attempt = async {
            let client = config.bus.connect("keyledger-worker").await?;
            let js = context(client, &config.bus);
            bind_job_consumer(&js, &config.queue).await
        };
        let error = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            bound = attempt => match bound {
                Ok(consumer) => return Ok(Some(consumer)),
                Err(error) => error,
            },
        };
        tracing::warn!(%error, "cannot bind the job queue yet; trying again");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(config.bus.backoff_max);
    }
}

impl Worker {
    /// One job, from its message to its acknowledgement.
    async fn handle(
        self: Arc<Self>,
        message: async_nats::jetstream::Message,
        stop: CancellationToken,
    ) {
        let delivered = message.info().map_or(1, |info| info.delivered);
        let job: JobMessage = match serde_json::from_slice(&message.payload) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, "a message on the job queue is not a job; terminated");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        let span = tracing::info_span!("job", ingestion = %job.ingestion, delivery = delivered);
        let message = Arc::new(message);
        // Progress acks keep the job ours while it runs.
        let keep_alive = CancellationToken::new();
        {
            let (message, until) = (Arc::clone(&message), keep_alive.clone());
            let every = (self.config.queue.ack_wait / 3).max(Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = until.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Err(error) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(%error, "progress ack failed");
                    }
                }
            });
        }
        self.metrics.jobs_running.fetch_add(1, Ordering::Relaxed);
        let ack = self
            .run_job(&job, delivered, &stop)
            .instrument(span.clone())
            .await;
        keep_alive.cancel();
        self.metrics.jobs_running.fetch_sub(1, Ordering::Relaxed);
        let acked = match ack {
            Ack::Done => message.double_ack().await,
            Ack::Terminate => message.ack_with(AckKind::Term).await,
            Ack::HandBack => {
                self.metrics
                    .jobs_handed_back
                    .fetch_add(1, Ordering::Relaxed);
                message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await
            }
            // The job was handed to another worker: its message is theirs now.
            Ack::Leave => Ok(()),
        };
        if let Err(error) = acked {
            span.in_scope(|| tracing::warn!(%error, "acknowledging the job failed"));
        }
    }

    async fn run_job(&self, job: &JobMessage, delivered: i64, stop: &CancellationToken) -> Ack {
        let grant = match self.vault.lease(job).await {
            Ok(grant) => grant,
            Err(LeaseRefused::Over(reason)) => {
                tracing::info!(reason = %reason, "the job is over; terminated");
                return Ack::Terminate;
            }
            Err(LeaseRefused::Later(reason)) => {
                tracing::warn!(reason = %reason, "cannot lease the job's credential; handed back");
                return Ack::HandBack;
            }
            Err(LeaseRefused::Refused(reason)) => {
                tracing::error!(reason = %reason, "the vault refuses this worker's key; handing the job back and stopping");
                self.refused
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_or_insert(reason);
                self.stop_taking.cancel();
                return Ack::HandBack;
            }
        };
        let host = self.vault.host(&job.ingestion, &grant.lease);
        let Ok(id) = IngestionId::parse(&grant.ingestion) else {
            return Ack::Terminate;
        };
        let remote = RemoteJob {
            id,
            selection: grant.selection.clone(),
            destination: grant.destination.clone(),
            batch_id: grant.batch_id.clone(),
            listed: grant.listed,
            recorded: grant.recorded.iter().cloned().collect::<HashSet<_>>(),
        };
        if delivered >= self.config.queue.max_deliver {
            let reason = format!(
                "the job was delivered {delivered} times and no worker finished it (workers died or handed it back); start the ingestion again"
            );
            tracing::warn!(reason = %reason, "last delivery: failing the job");
            let item = ReportItem::Failed {
                reason,
                failure_kind: FailureKind::Transient,
            };
            return match host.report(vec![item]).await {
                Ok(()) => {
                    self.metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
                    // What the workers before left: unrecorded files and partial ones.
                    if let Err(error) = remote.abandon(&self.store).await {
                        tracing::warn!(%error, "could not remove what earlier deliveries left");
                    }
                    Ack::Terminate
                }
                Err(_) => Ack::HandBack,
            };
        }
        let source = match grant.credential.to_credential().map_err(|reason| {
            keyledger_ingest::SourceError::new(keyledger_ingest::SourceErrorKind::Invalid, reason)
        }) {
            Ok(credential) if grant.renewable => {
                // A `role` key: the vault assumed the role for this job; it issues the next
                // session too (decision 0030).
                let issue = self.vault.session_issuer(&grant.ingestion, &grant.lease);
                S3SampleSource::with_issued_sessions(
                    &grant.external_key,
                    &credential,
                    &self.config.ingest,
                    issue,
                )
                .map(SampleSource::S3)
            }
            Ok(credential) => source_for_credential(
                &grant.external_key,
                &credential,
                &self.config.ingest,
                RoleUse::default(),
            ),
            Err(error) => Err(error),
        };
        let source = match source {
            Ok(source) => source,
            Err(error) => {
                let item = ReportItem::Failed {
                    reason: error.message.clone(),
                    failure_kind: error.failure_kind(),
                };
                return match host.report(vec![item]).await {
                    Ok(()) => Ack::Done,
                    Err(_) => Ack::HandBack,
                };
            }
        };
        tracing::info!(lease = %grant.lease, resumed = !grant.recorded.is_empty(), "job leased");
        let (outcome, tally) = remote
            .run(&host, &source, &self.store, &self.config.ingest, stop)
            .await;
        drop(source);
        let metrics = &self.metrics;
        metrics
            .files_fetched
            .fetch_add(tally.files, Ordering::Relaxed);
        metrics
            .bytes_fetched
            .fetch_add(tally.bytes, Ordering::Relaxed);
        metrics
            .files_failed
            .fetch_add(tally.failed, Ordering::Relaxed);
        match outcome {
            RemoteOutcome::Finished { failed } => {
                let counter = if failed {
                    &metrics.jobs_failed
                } else {
                    &metrics.jobs_completed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    files = tally.files,
                    bytes = tally.bytes,
                    failed,
                    "job finished"
                );
                Ack::Done
            }
            RemoteOutcome::Ended(reason) => {
                metrics.jobs_stopped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(reason = %reason, "job stopped: its lease ended");
                Ack::Leave
            }
            RemoteOutcome::Stopped => {
                tracing::info!("job stopped by the drain; handed back");
                Ack::HandBack
            }
            RemoteOutcome::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "the vault did not take a report; handed back");
                Ack::HandBack
            }
        }
    }
}

/// What to tell the queue about a job.
enum Ack {
    /// Its end is recorded.
    Done,
    /// It is over for the queue (finished, its key gone, not a job of this queue).
    Terminate,
    /// Give it to a worker again.
    HandBack,
    /// Say nothing: another worker has it.
    Leave,
}
