//! The dispatcher: follows the log and publishes each requested job to the work queue, exactly
//! as the relay publishes events (its own checkpoint, `Nats-Msg-Id`, retries with backoff).

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use keyledger_domain::{Event, IngestionId};
use keyledger_log::Seq;
use keyledger_vault::{Vault, decode_event};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{JobMessage, JobQueueConfig, context, ensure_job_queue};
use crate::relay::producer::LogReader;
use crate::{BusConfig, BusError};

/// Publishes requested jobs to the work queue in the background ([`Dispatcher::spawn`]).
#[derive(Debug)]
pub struct Dispatcher;

/// What the dispatcher has done, as last reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStatus {
    /// Connected to NATS, and the queue exists.
    pub ready: bool,
    /// Every job requested up to this event is on the queue (or needed no publishing).
    pub dispatched_seq: Seq,
    pub jobs_published_total: u64,
    pub errors_total: u64,
    pub last_error: Option<String>,
}

/// The running dispatcher; [`DispatcherHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct DispatcherHandle {
    status: watch::Receiver<DispatcherStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DispatcherHandle {
    pub fn status(&self) -> DispatcherStatus {
        self.status.borrow().clone()
    }

    /// Stops publishing and waits for the task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Dispatcher {
    /// Starts publishing every `IngestionRequested` after the checkpoint, then follows the log.
    pub fn spawn(vault: Vault, bus: BusConfig, queue: JobQueueConfig) -> DispatcherHandle {
        let (status_sender, status) = watch::channel(DispatcherStatus::default());
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut state = Run {
                vault,
                bus,
                queue,
                status: status_sender,
                backoff: Duration::ZERO,
            };
            loop {
                let outcome = tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    outcome = state.session() => outcome,
                };
                let Err(error) = outcome else { return };
                state.failed(&error);
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(state.backoff) => {}
                }
            }
        });
        DispatcherHandle { status, stop, task }
    }
}

struct Run {
    vault: Vault,
    bus: BusConfig,
    queue: JobQueueConfig,
    status: watch::Sender<DispatcherStatus>,
    backoff: Duration,
}

impl Run {
    /// One connection: publishes from the checkpoint and follows the log until an error (or the
    /// log closes: `Ok`).
    async fn session(&mut self) -> Result<(), BusError> {
        let client = self.bus.connect("keyledger-dispatcher").await?;
        let js = context(client, &self.bus);
        ensure_job_queue(&js, &self.bus, &self.queue).await?;
        let log = self.vault.log().clone();
        let meta = log.meta();
        let key = self.queue.checkpoint_key();
        let mut dispatched = read_seq(meta.get(&key)?);
        self.status.send_modify(|status| {
            status.ready = true;
            status.dispatched_seq = dispatched;
            status.last_error = None;
        });
        self.vault.telemetry().set_component(
            "dispatcher",
            true,
            "publishing jobs to the work queue",
        );
        self.backoff = Duration::ZERO;
        let mut commits = log.subscribe();
        let mut reader = LogReader::new(log, dispatched + 1);
        let mut saved = dispatched;
        loop {
            let Some(envelope) = reader.next()? else {
                // Caught up: record how far (one durable write per quiet moment, not per event).
                if saved != dispatched {
                    save(&meta, &key, dispatched).await?;
                    saved = dispatched;
                    self.status
                        .send_modify(|status| status.dispatched_seq = dispatched);
                }
                if commits.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            };
            let seq = envelope.seq;
            let event =
                decode_event(&envelope.body).map_err(|reason| BusError::Decode { seq, reason })?;
            dispatched = seq;
            let Event::IngestionRequested {
                ingestion,
                selection,
                ..
            } = &event
            else {
                continue;
            };
            if !self.still_waiting(ingestion) {
                continue;
            }
            let provider = selection.provider().to_string();
            let message = JobMessage {
                ingestion: ingestion.to_string(),
                provider: provider.clone(),
                ticket: self.vault.job_ticket(ingestion),
            };
            let payload = serde_json::to_vec(&message)
                .map_err(|error| BusError::Config(error.to_string()))?;
            let publish_error = |reason: String| BusError::Publish {
                stream: self.queue.stream.clone(),
                seq,
                reason,
            };
            let ack = js
                .send_publish(
                    self.queue.subject(&provider),
                    PublishMessage::build()
                        .payload(payload.into())
                        .message_id(ingestion.as_str()),
                )
                .await
                .map_err(|error| publish_error(error.to_string()))?;
            ack.await
                .map_err(|error| publish_error(error.to_string()))?;
            tracing::info!(ingestion = %ingestion, "job published to the work queue");
            // Recorded at once: a job is rare next to other events, and a restart must not
            // publish it again after the duplicate window.
            save(&meta, &key, seq).await?;
            saved = seq;
            self.status.send_modify(|status| {
                status.jobs_published_total += 1;
                status.dispatched_seq = seq;
            });
            self.vault.telemetry().add_counter(
                "keyledger_jobs_dispatched_total",
                "",
                "Ingestion jobs published to the work queue.",
                1.0,
            );
        }
    }

    /// Whether a job still needs a worker: not finished, and never leased (after an outage
    /// longer than the duplicate window, a job a worker already took is not published again).
    /// A job the state does not know yet is waiting: the log lets readers see a group before
    /// the vault's state has applied it, and skipping it then would lose the job for good.
    fn still_waiting(&self, ingestion: &IngestionId) -> bool {
        self.vault.read(|state| match state.ingestion(ingestion) {
            None => true,
            Some(job) => !job.state.is_finished() && state.job_lease(ingestion).is_none(),
        })
    }

    fn failed(&mut self, error: &BusError) {
        tracing::warn!(%error, "the job dispatcher failed; it retries");
        self.status.send_modify(|status| {
            status.ready = false;
            status.errors_total += 1;
            status.last_error = Some(error.to_string());
        });
        self.vault
            .telemetry()
            .set_component("dispatcher", false, error.to_string());
        self.backoff = (self.backoff * 2).clamp(self.bus.backoff_min, self.bus.backoff_max);
    }
}

/// Records the checkpoint durably, off the async threads.
async fn save(meta: &keyledger_log::Meta, key: &str, seq: Seq) -> Result<(), BusError> {
    let (meta, key) = (meta.clone(), key.to_owned());
    tokio::task::spawn_blocking(move || meta.put(key, seq.to_be_bytes()))
        .await
        .map_err(|error| BusError::Log(error.to_string()))?
        .map_err(BusError::from)
}

fn read_seq(bytes: Option<Vec<u8>>) -> Seq {
    bytes
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map_or(0, Seq::from_be_bytes)
}
