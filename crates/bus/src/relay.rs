//! The outbox relay: reads the log from its checkpoint and publishes every event to JetStream.
//!
//! Guarantees, and how:
//! - **Nothing lost**: the checkpoint (`relay/<stream>/published_seq` in the log's `meta` tree)
//!   only advances past events whose PubAck arrived, acknowledgements being awaited in order.
//! - **Nothing duplicated, nothing reordered**: every publish carries `Nats-Msg-Id` = event id
//!   (the server drops a re-publish inside the duplicate window) *and*
//!   `Nats-Expected-Last-Sequence` = the stream sequence of the event before it, so a publish
//!   that would land after a gap (a message lost on a dropped connection while later ones got
//!   through) is refused instead of stored out of order. After any failure the relay
//!   resynchronises: it reads the stream's last message, whose JSON `seq` (or envelope) says
//!   which event it is, and continues after it. That also covers a relay killed between the
//!   PubAck and the checkpoint, and a server that lost acknowledged messages in a crash (a
//!   PubAck is not an fsync; nats-server 2.9 syncs its store only every 60 s): the missing
//!   events are published again, at the stream sequences they had, even when the relay's
//!   checkpoint is ahead of the stream. A lost tail is noticed by the next publish (its
//!   expected last sequence no longer matches) or, while idle, by comparing every stream's last
//!   sequence with what was published every `stream_check_interval`.
//! - **The vault never waits for NATS**: the relay is its own task, reading committed events;
//!   appends never depend on it. While NATS is unreachable it retries with capped exponential
//!   backoff and reports through the vault's telemetry (component `relay`, gauges
//!   `keyledger_relay_lag_events` and `keyledger_relay_published_seq`, counters
//!   `keyledger_relay_published_events_total`, `keyledger_relay_lost_events_total` and
//!   `keyledger_relay_errors_total`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::connection::State as ConnectionState;
use async_nats::jetstream::context::{ContextBuilder, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use keyledger_log::{LogView, Seq};
use keyledger_vault::Vault;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::wire::Channel;
use crate::{BusConfig, BusError};

mod checkpoint;
pub(crate) mod producer;
mod streams;

use checkpoint::{read_checkpoint, spawn_checkpoint_writer};
use producer::{Prepared, channels, spawn_producer};
pub use streams::ensure_stream;
use streams::{check_streams, resync};

/// Starts the relay as a background task ([`Relay::spawn`]) or runs it once until it has
/// published everything ([`Relay::run_until_caught_up`]).
#[derive(Debug)]
pub struct Relay {
    vault: Vault,
    config: BusConfig,
    crash_after: Option<Seq>,
}

/// What the relay is doing, as last reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStatus {
    /// Connected to NATS and publishing (or idle and caught up).
    pub ready: bool,
    /// Every event up to this one is acknowledged by each stream.
    pub published_seq: Seq,
    /// The log's last committed event when last looked at.
    pub head_seq: Seq,
    pub lag_events: u64,
    pub published_events_total: u64,
    /// Acknowledged events that a stream no longer held when the relay looked again (the
    /// server lost its unsynced tail, or the stream was recreated), and that it published again.
    pub lost_events_total: u64,
    pub errors_total: u64,
    pub last_error: Option<String>,
    /// The task has ended (shut down, or the log was closed).
    pub stopped: bool,
}

/// The running relay. Dropping the handle leaves the task running; use
/// [`RelayHandle::shutdown`].
#[derive(Debug)]
pub struct RelayHandle {
    status: watch::Receiver<RelayStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The result of [`Relay::run_until_caught_up`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaughtUp {
    /// Every event up to this one is acknowledged (the head when the run started, or later).
    pub published_seq: Seq,
    /// Events this run published (0 when everything was already there).
    pub published_events: u64,
    pub elapsed: Duration,
}

impl Relay {
    pub fn new(vault: Vault, config: BusConfig) -> Relay {
        Relay {
            vault,
            config,
            crash_after: None,
        }
    }

    /// Starts the relay as a tokio task: publishes from the checkpoint, then follows the log.
    pub fn spawn(vault: Vault, config: BusConfig) -> RelayHandle {
        Relay::new(vault, config).start()
    }

    /// A fault for tests: the relay stops dead, as if killed, as soon as the events up to `seq`
    /// are acknowledged by NATS and before it records them in its checkpoint. Events after
    /// `seq` may have been sent too.
    #[cfg(feature = "testing")]
    pub fn crash_after_publishing(mut self, seq: Seq) -> Relay {
        self.crash_after = Some(seq);
        self
    }

    /// [`Relay::spawn`] for a configured relay.
    pub fn start(self) -> RelayHandle {
        let (status_sender, status) = watch::channel(RelayStatus::default());
        let (stop, stop_receiver) = watch::channel(false);
        let worker = Worker::new(self, status_sender, stop_receiver);
        let task = tokio::spawn(worker.follow());
        RelayHandle { status, stop, task }
    }

    /// Publishes every event up to the log's head (as of the call) and returns; errors are
    /// returned, not retried. For tests, benchmarks and one-shot catch-up.
    pub async fn run_until_caught_up(self) -> Result<CaughtUp, BusError> {
        let started = Instant::now();
        let (status_sender, _status) = watch::channel(RelayStatus::default());
        let (_stop, stop_receiver) = watch::channel(false);
        let mut worker = Worker::new(self, status_sender, stop_receiver);
        let target = worker.vault.log().head().0;
        let client = worker.config.connect("keyledger-relay").await?;
        let outcome = worker.session(&client, Some(target)).await;
        worker.save_checkpoint().await;
        outcome?;
        Ok(CaughtUp {
            published_seq: worker.published,
            published_events: worker.published_total,
            elapsed: started.elapsed(),
        })
    }

    /// The meta key of the relay's checkpoint: `relay/<stream>/published_seq`.
    pub fn checkpoint_key(config: &BusConfig) -> String {
        format!("relay/{}/published_seq", config.stream)
    }

    /// The last checkpoint the relay recorded in this log (0 when none).
    pub fn checkpoint(log: &LogView, config: &BusConfig) -> Result<Seq, BusError> {
        read_checkpoint(&log.meta(), &Relay::checkpoint_key(config))
    }
}

impl RelayHandle {
    pub fn status(&self) -> RelayStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<RelayStatus> {
        self.status.clone()
    }

    /// Waits until every event up to `seq` is acknowledged (wrap it in a timeout), or the relay
    /// stopped; returns the status then.
    pub async fn published_through(&self, seq: Seq) -> RelayStatus {
        let mut status = self.status.clone();
        let reached = status
            .wait_for(|s| s.published_seq >= seq || s.stopped)
            .await;
        match reached {
            Ok(status) => status.clone(),
            Err(_) => self.status(),
        }
    }

    /// Stops the relay, records its checkpoint and waits for the task to end. Events published
    /// but not yet acknowledged are sorted out by the next start (see the module docs).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await
            && error.is_panic()
        {
            tracing::error!("the relay task panicked");
        }
    }

    /// Whether the task has ended (after a shutdown, a closed log, or a test crash).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Kills the relay task where it stands, without recording anything (as a crash would).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

struct PendingAck {
    target: usize,
    planned_stream_seq: u64,
    ack: Pin<
        Box<
            dyn Future<Output = Result<PublishAck, async_nats::jetstream::context::PublishError>>
                + Send,
        >,
    >,
}

struct InFlight {
    seq: Seq,
    acks: Vec<PendingAck>,
}

enum SessionEnd {
    Stopped,
    CaughtUp,
    Crashed,
}

struct Worker {
    vault: Vault,
    config: BusConfig,
    crash_after: Option<Seq>,
    checkpoint_key: String,
    status: watch::Sender<RelayStatus>,
    stop: watch::Receiver<bool>,
    /// Every event up to this one is acknowledged by every stream.
    published: Seq,
    published_total: u64,
    lost_total: u64,
    errors_total: u64,
    /// Published events not yet added to the telemetry counter.
    unreported: u64,
    progressed: bool,
    last_error: Option<String>,
    checkpoint: watch::Sender<Seq>,
}

/// How many acknowledgements between two status and telemetry updates while busy.
const REPORT_EVERY: u64 = 128;

impl Worker {
    fn new(
        relay: Relay,
        status: watch::Sender<RelayStatus>,
        stop: watch::Receiver<bool>,
    ) -> Worker {
        let checkpoint_key = Relay::checkpoint_key(&relay.config);
        let published = match read_checkpoint(&relay.vault.log().meta(), &checkpoint_key) {
            Ok(seq) => seq,
            Err(error) => {
                tracing::warn!(%error, "cannot read the relay checkpoint; the streams' last messages decide");
                0
            }
        };
        let (checkpoint, _) = watch::channel(published);
        Worker {
            vault: relay.vault,
            config: relay.config,
            crash_after: relay.crash_after,
            checkpoint_key,
            status,
            stop,
            published,
            published_total: 0,
            lost_total: 0,
            errors_total: 0,
            unreported: 0,
            progressed: false,
            last_error: None,
            checkpoint,
        }
    }

    /// The spawned task: sessions until told to stop, with backoff between failures.
    async fn follow(mut self) {
        let mut writer = AbortOnDrop(Some(spawn_checkpoint_writer(
            self.vault.log().meta(),
            self.checkpoint_key.clone(),
            self.checkpoint.subscribe(),
        )));
        let mut backoff = self.config.backoff_min;
        let mut client: Option<Client> = None;
        let mut crashed = false;
        if let Err(error) = self.config.check() {
            self.fail(&error, None);
            let _ = self.stop.wait_for(|stop| *stop).await;
        }
        while !*self.stop.borrow() {
            let connected = match &client {
                Some(client) => Ok(client.clone()),
                None => self.config.connect("keyledger-relay").await,
            };
            let outcome = match connected {
                Ok(connection) => {
                    client = Some(connection.clone());
                    self.progressed = false;
                    self.session(&connection, None).await
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(SessionEnd::Stopped | SessionEnd::CaughtUp) => break,
                Ok(SessionEnd::Crashed) => {
                    crashed = true;
                    break;
                }
                Err(error) => {
                    if self.progressed {
                        backoff = self.config.backoff_min;
                    }
                    self.fail(&error, Some(backoff));
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|stop| *stop) => {}
                    }
                    backoff = (backoff * 2).min(self.config.backoff_max);
                }
            }
        }
        if crashed {
            return;
        }
        // Closing the channel makes the writer record the last position and end.
        self.checkpoint.send_replace(self.published);
        drop(std::mem::replace(
            &mut self.checkpoint,
            watch::channel(self.published).0,
        ));
        if let Some(task) = writer.0.take() {
            let _ = task.await;
        }
        self.flush_counters();
        self.vault
            .telemetry()
            .set_component("relay", false, "stopped");
        self.status.send_modify(|status| {
            status.ready = false;
            status.stopped = true;
        });
    }

    /// One connection's worth of work. `until` stops the session once that event is published.
    async fn session(
        &mut self,
        client: &Client,
        until: Option<Seq>,
    ) -> Result<SessionEnd, BusError> {
        self.config.check()?;
        let log = self.vault.log().clone();
        let js = ContextBuilder::new()
            .timeout(self.config.ack_timeout)
            .max_ack_inflight(self.config.max_in_flight * 2 + 16)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let channels = channels(&self.config);
        let mut targets = Vec::with_capacity(channels.len());
        let mut streams = Vec::with_capacity(channels.len());
        for channel in channels {
            let mut stream = ensure_stream(&js, &self.config, channel).await?;
            targets.push(resync(channel, &mut stream, &log, self.published).await?);
            streams.push(stream);
            if channel == Channel::Replication {
                crate::pepper::publish(&js, &self.config, &log).await?;
            }
        }
        let mut stream_check = tokio::time::interval(self.config.stream_check_interval);
        stream_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let resumed = targets
            .iter()
            .map(|t| t.position)
            .min()
            .unwrap_or(self.published);
        if resumed < self.published {
            let lost = self.published - resumed;
            tracing::warn!(
                checkpoint = self.published,
                resumed,
                lost,
                "a stream is missing acknowledged events (the server lost them, or the stream was recreated); publishing them again"
            );
            self.lost_total += lost;
            self.vault.telemetry().add_counter(
                "keyledger_relay_lost_events_total",
                "",
                "Acknowledged events a stream no longer held (lost by the server); each was published again.",
                lost as f64,
            );
        }
        self.published = resumed;
        self.checkpoint.send_replace(resumed);
        self.report(client, true, None);

        let mut stop = self.stop.clone();
        // One stop signal for the whole session, polled next to every wait.
        let mut stopped = std::pin::pin!(stop.wait_for(|stop| *stop));
        // Reading and encoding run in their own task, overlapping with the waits for acks.
        let (mut prepared, producer) =
            spawn_producer(log.clone(), self.config.clone(), resumed + 1, until);
        let _producer = AbortOnDrop(Some(producer));
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(self.config.max_in_flight);
        let mut since_report = 0;
        let mut exhausted = false;
        let mut peeked: Option<Prepared> = None;
        loop {
            while in_flight.len() < self.config.max_in_flight {
                let next = match peeked
                    .take()
                    .map(|next| Ok(Ok(next)))
                    .unwrap_or_else(|| prepared.try_recv())
                {
                    Ok(next) => next?,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        exhausted = true;
                        break;
                    }
                };
                let mut acks = Vec::with_capacity(targets.len());
                for ((index, target), (subject, payload)) in
                    targets.iter_mut().enumerate().zip(next.messages)
                {
                    if next.seq <= target.position {
                        continue;
                    }
                    let message = PublishMessage::build()
                        .payload(payload)
                        .message_id(&next.id)
                        .expected_last_sequence(target.last_stream_seq);
                    let ack: PublishAckFuture =
                        js.send_publish(subject, message).await.map_err(|error| {
                            BusError::Publish {
                                stream: target.stream.clone(),
                                seq: next.seq,
                                reason: error.to_string(),
                            }
                        })?;
                    target.position = next.seq;
                    target.last_stream_seq += 1;
                    acks.push(PendingAck {
                        target: index,
                        planned_stream_seq: target.last_stream_seq,
                        ack: ack.into_future(),
                    });
                }
                in_flight.push_back(InFlight {
                    seq: next.seq,
                    acks,
                });
            }

            let Some(front) = in_flight.pop_front() else {
                if exhausted {
                    // The producer ends only at `until`, or when the log closes.
                    self.checkpoint.send_replace(self.published);
                    self.report(client, true, None);
                    return Ok(if until.is_some() {
                        SessionEnd::CaughtUp
                    } else {
                        SessionEnd::Stopped
                    });
                }
                if prepared.is_empty() {
                    self.checkpoint.send_replace(self.published);
                    self.report(client, true, None);
                    since_report = 0;
                }
                let check_due = tokio::select! {
                    next = prepared.recv() => {
                        match next {
                            Some(next) => peeked = Some(next?),
                            None => exhausted = true,
                        }
                        false
                    }
                    _ = stream_check.tick() => true,
                    _ = &mut stopped => return Ok(SessionEnd::Stopped),
                };
                if check_due {
                    check_streams(&mut streams, &targets).await?;
                }
                continue;
            };

            for pending in front.acks {
                let target = &targets[pending.target];
                let acked = tokio::select! {
                    biased;
                    acked = pending.ack => acked,
                    _ = &mut stopped => return Ok(SessionEnd::Stopped),
                };
                let ack = acked.map_err(|error| BusError::Publish {
                    stream: target.stream.clone(),
                    seq: front.seq,
                    reason: error.to_string(),
                })?;
                if ack.sequence != pending.planned_stream_seq {
                    return Err(BusError::OutOfOrder {
                        stream: target.stream.clone(),
                        seq: front.seq,
                        expected: pending.planned_stream_seq,
                        got: ack.sequence,
                    });
                }
            }
            self.published = front.seq;
            self.published_total += 1;
            self.unreported += 1;
            self.progressed = true;
            if self
                .crash_after
                .is_some_and(|crash| self.published >= crash)
            {
                return Ok(SessionEnd::Crashed);
            }
            since_report += 1;
            if since_report >= REPORT_EVERY {
                since_report = 0;
                self.checkpoint.send_replace(self.published);
                self.report(client, true, None);
            }
        }
    }

    async fn save_checkpoint(&self) {
        let meta = self.vault.log().meta();
        let key = self.checkpoint_key.clone();
        let seq = self.published;
        let saved = tokio::task::spawn_blocking(move || meta.put(key, seq.to_be_bytes())).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, seq, "cannot record the relay checkpoint"),
            Err(error) => tracing::warn!(%error, seq, "cannot record the relay checkpoint"),
        }
    }

    fn fail(&mut self, error: &BusError, retry_in: Option<Duration>) {
        self.errors_total += 1;
        self.vault.telemetry().add_counter(
            "keyledger_relay_errors_total",
            "",
            "Relay failures (NATS unreachable, publish refused or timed out); each is retried.",
            1.0,
        );
        let detail = match retry_in {
            Some(delay) => format!("{error}; retrying in {} ms", delay.as_millis()),
            None => error.to_string(),
        };
        tracing::warn!(error = %error, retry_in_ms = retry_in.map(|d| d.as_millis() as u64), "relay failed");
        self.last_error = Some(error.to_string());
        self.publish_status(false, detail);
    }

    fn report(&mut self, client: &Client, healthy: bool, detail: Option<String>) {
        let connected = client.connection_state() == ConnectionState::Connected;
        let ready = healthy && connected;
        let head = self.vault.log().head().0;
        let lag = head.saturating_sub(self.published);
        let detail = detail.unwrap_or_else(|| {
            if connected {
                format!(
                    "publishing to {} at {}; {lag} events behind",
                    self.config.stream,
                    self.config.display_url()
                )
            } else {
                format!(
                    "NATS at {} is unreachable; {lag} events waiting",
                    self.config.display_url()
                )
            }
        });
        if ready {
            self.last_error = None;
        }
        self.publish_status(ready, detail);
    }

    fn publish_status(&mut self, ready: bool, detail: String) {
        let head = self.vault.log().head().0;
        let lag = head.saturating_sub(self.published);
        self.flush_counters();
        let telemetry = self.vault.telemetry();
        telemetry.set_gauge(
            "keyledger_relay_lag_events",
            "",
            "Events in the log not yet acknowledged by NATS (head seq minus published seq).",
            lag as f64,
        );
        telemetry.set_gauge(
            "keyledger_relay_published_seq",
            "",
            "Every event up to this seq is acknowledged by NATS.",
            self.published as f64,
        );
        telemetry.set_component("relay", ready, detail);
        let status = RelayStatus {
            ready,
            published_seq: self.published,
            head_seq: head,
            lag_events: lag,
            published_events_total: self.published_total,
            lost_events_total: self.lost_total,
            errors_total: self.errors_total,
            last_error: self.last_error.clone(),
            stopped: false,
        };
        self.status.send_replace(status);
    }

    fn flush_counters(&mut self) {
        if self.unreported > 0 {
            self.vault.telemetry().add_counter(
                "keyledger_relay_published_events_total",
                "",
                "Events the relay published and NATS acknowledged.",
                self.unreported as f64,
            );
            self.unreported = 0;
        }
    }
}

struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
