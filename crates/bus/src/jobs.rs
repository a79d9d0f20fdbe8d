//! The work queue of ingestion jobs (decision 0025): the vault's dispatcher publishes every
//! requested job to a JetStream stream with WorkQueue retention, and `keyledger worker`
//! processes on any number of machines share one durable pull consumer of it.
//!
//! Guarantees, and how:
//! - **Nothing lost**: `IngestionRequested` is appended to the log first; the [`Dispatcher`]
//!   follows the log from its checkpoint (`jobs/<stream>/dispatched_seq` in the log's `meta`
//!   tree), which advances only past jobs whose PubAck arrived. NATS down delays jobs, never
//!   loses one, and never blocks the vault.
//! - **Nothing run twice by design**: every job message carries `Nats-Msg-Id` = the ingestion
//!   id, so a re-publish inside the duplicate window is dropped by the server; after a longer
//!   outage a job that already has a lease or has finished is not published again. A second
//!   delivery (a worker died, or a late ack) is made harmless by the vault: a new lease ends
//!   the old one, and a file already recorded is never recorded again.
//! - **Who may take a job**: the message carries the job's ticket (an HMAC of its id under a
//!   key only the vault holds); the vault leases a job's credential only against it. Lock the
//!   job subjects down with NATS permissions so only workers read them
//!   (`docs/operations.md`, "Running workers").
//! - Workers acknowledge progress while they work (`+WPI` restarts `ack_wait`), so a dead
//!   worker's job goes to another after `ack_wait`; the delivery that reaches `max_deliver`
//!   is failed by the worker that receives it, with that reason, as an event.

mod dispatcher;

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, Context, stream};
use serde::{Deserialize, Serialize};

use crate::{BusConfig, BusError};

pub use dispatcher::{Dispatcher, DispatcherHandle, DispatcherStatus};

/// The job queue's names and the shared consumer's settings. `Default`: `KEYLEDGER_JOBS`,
/// subjects `keyledger.jobs.<provider>`, consumer `workers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobQueueConfig {
    pub stream: String,
    /// Job subjects are `<subject_prefix>.<provider>` (`keyledger.jobs.aws`).
    pub subject_prefix: String,
    /// The durable pull consumer every worker binds.
    pub consumer: String,
    /// A job not acknowledged (nor progress-acknowledged) for this long goes to another worker.
    pub ack_wait: Duration,
    /// Deliveries of one job at most; the last one is failed by the worker that receives it.
    pub max_deliver: i64,
    /// Jobs delivered and not yet acknowledged across all workers, at most.
    pub max_ack_pending: i64,
}

impl Default for JobQueueConfig {
    fn default() -> Self {
        JobQueueConfig {
            stream: "KEYLEDGER_JOBS".to_owned(),
            subject_prefix: "keyledger.jobs".to_owned(),
            consumer: "workers".to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 256,
        }
    }
}

impl JobQueueConfig {
    /// `keyledger.jobs.aws`.
    pub fn subject(&self, provider: &str) -> String {
        format!("{}.{provider}", self.subject_prefix)
    }

    /// The meta key of the dispatcher's checkpoint.
    pub fn checkpoint_key(&self) -> String {
        format!("jobs/{}/dispatched_seq", self.stream)
    }

    /// Refuses names JetStream would refuse, with the setting to fix.
    pub fn check(&self) -> Result<(), BusError> {
        let name_ok =
            |name: &str| !name.is_empty() && !name.contains(['.', ' ', '*', '>', '/', '\\']);
        if !name_ok(&self.stream) || !name_ok(&self.consumer) {
            return Err(BusError::Config(format!(
                "ingest.queue_stream `{}` and ingest.queue_consumer `{}` must be JetStream names (no dots, spaces, wildcards or slashes)",
                self.stream, self.consumer
            )));
        }
        if self.max_deliver < 2 {
            return Err(BusError::Config(
                "ingest.max_deliveries must be at least 2: the last delivery only records the failure"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// One job on the queue: which ingestion, and the ticket that lets the worker lease its
/// credential. Nothing else: the worker reads the job from the vault.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub ingestion: String,
    /// `aws` or `dnanexus`, as in the subject.
    pub provider: String,
    /// Hex HMAC of the ingestion id; shown to nobody but the worker and the vault.
    pub ticket: String,
}

impl fmt::Debug for JobMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobMessage")
            .field("ingestion", &self.ingestion)
            .field("provider", &self.provider)
            .field("ticket", &"[redacted]")
            .finish()
    }
}

/// A JetStream context with the configured request timeout.
pub fn context(client: async_nats::Client, bus: &BusConfig) -> Context {
    jetstream::context::ContextBuilder::new()
        .timeout(bus.ack_timeout)
        .build(client)
}

/// Gets or creates the WorkQueue stream (`<subject_prefix>.>`, file storage, the configured
/// duplicate window) and the shared durable pull consumer (explicit acks).
pub async fn ensure_job_queue(
    js: &Context,
    bus: &BusConfig,
    queue: &JobQueueConfig,
) -> Result<PullConsumer, BusError> {
    queue.check()?;
    let stream_error = |reason: String| BusError::Stream {
        stream: queue.stream.clone(),
        reason,
    };
    let stream = js
        .get_or_create_stream(stream::Config {
            name: queue.stream.clone(),
            subjects: vec![format!("{}.>", queue.subject_prefix)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: bus.duplicate_window,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|error| stream_error(error.to_string()))?;
    stream
        .get_or_create_consumer(
            &queue.consumer,
            pull::Config {
                durable_name: Some(queue.consumer.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: queue.ack_wait,
                max_deliver: queue.max_deliver,
                max_ack_pending: queue.max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(|error| BusError::Consumer {
            consumer: queue.consumer.clone(),
            reason: error.to_string(),
        })
}

/// The shared consumer as a worker binds it: it only needs `CONSUMER.INFO` and
/// `CONSUMER.MSG.NEXT` on it (the vault creates stream and consumer).
pub async fn bind_job_consumer(
    js: &Context,
    queue: &JobQueueConfig,
) -> Result<PullConsumer, BusError> {
    js.get_consumer_from_stream(&queue.consumer, &queue.stream)
        .await
        .map_err(|error| BusError::Consumer {
            consumer: queue.consumer.clone(),
            reason: format!(
                "{error}; the vault creates the job queue when it starts with `[ingest] workers = \"external\"`"
            ),
        })
}
