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
use async_nats::jetstream::context::{Context, ContextBuilder, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{self, Stream};
use bytes::Bytes;
use keyledger_domain::public::hex;
use keyledger_log::{EventIter, EventLog, Meta, Seq};
use keyledger_vault::{Vault, decode_event};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::wire::Channel;
use crate::{BusConfig, BusError};

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
    pub fn checkpoint(log: &EventLog, config: &BusConfig) -> Result<Seq, BusError> {
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

/// One stream the relay publishes to, and where it stands in it.
struct Target {
    stream: String,
    /// Every event up to this one is in the stream, or was published and awaits its ack.
    position: Seq,
    /// The stream sequence the last of those took: the next publish expects it.
    last_stream_seq: u64,
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

/// The streams the relay publishes to, in the order of [`Prepared::messages`].
fn channels(config: &BusConfig) -> Vec<Channel> {
    if config.replicate {
        vec![Channel::Public, Channel::Replication]
    } else {
        vec![Channel::Public]
    }
}

/// One event, read from the log and encoded for every channel (in channel order).
struct Prepared {
    seq: Seq,
    id: String,
    messages: Vec<(String, Bytes)>,
}

/// Events prepared ahead of publishing, at most this many.
const PREPARED_AHEAD: usize = 512;

/// Reads the log from `from` and prepares every event for publishing; follows new commits, or
/// stops after `until`. The channel closes when it stops (or the log closes).
fn spawn_producer(
    log: EventLog,
    config: BusConfig,
    from: Seq,
    until: Option<Seq>,
) -> (mpsc::Receiver<Result<Prepared, BusError>>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(PREPARED_AHEAD);
    let task = tokio::spawn(async move {
        let channels = channels(&config);
        let mut commits = log.subscribe();
        let mut reader = LogReader::new(log, from);
        loop {
            if until.is_some_and(|until| reader.next_seq > until) {
                return;
            }
            let next = match reader.next() {
                Ok(Some(envelope)) => match decode_event(&envelope.body) {
                    Ok(event) => Ok(Prepared {
                        seq: envelope.seq,
                        id: hex(&envelope.event_id),
                        messages: channels
                            .iter()
                            .map(|channel| {
                                (
                                    channel.subject(&config, &event),
                                    channel.payload(&envelope, &event),
                                )
                            })
                            .collect(),
                    }),
                    Err(reason) => Err(BusError::Decode {
                        seq: envelope.seq,
                        reason,
                    }),
                },
                Ok(None) => {
                    if until.is_some() || commits.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(error) => Err(error),
            };
            let failed = next.is_err();
            if sender.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    (receiver, task)
}

/// Reads committed events in order, re-opening the iterator when it reaches the head it was
/// opened at.
struct LogReader {
    log: EventLog,
    next_seq: Seq,
    events: Option<EventIter>,
}

impl LogReader {
    fn new(log: EventLog, next_seq: Seq) -> LogReader {
        LogReader {
            log,
            next_seq,
            events: None,
        }
    }

    fn next(&mut self) -> Result<Option<keyledger_log::Envelope>, BusError> {
        for _ in 0..2 {
            let events = match &mut self.events {
                Some(events) => events,
                None => {
                    if self.log.head().0 < self.next_seq {
                        return Ok(None);
                    }
                    self.events.insert(self.log.read_from(self.next_seq))
                }
            };
            match events.next() {
                Some(envelope) => {
                    let envelope = envelope?;
                    if envelope.seq != self.next_seq {
                        return Err(BusError::Log(format!(
                            "the log skipped from event {} to {}; run `keyledger audit verify`",
                            self.next_seq, envelope.seq
                        )));
                    }
                    self.next_seq += 1;
                    return Ok(Some(envelope));
                }
                None => self.events = None,
            }
        }
        Ok(None)
    }
}

/// Gets the stream, or creates it: file storage, `<prefix>.>`, the configured duplicate window.
pub(crate) async fn ensure_stream(
    js: &Context,
    config: &BusConfig,
    channel: Channel,
) -> Result<Stream, BusError> {
    let name = channel.stream(config);
    let subjects = format!("{}.>", channel.prefix(config));
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.clone()],
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|error| BusError::Stream {
            stream: name.to_owned(),
            reason: error.to_string(),
        })?;
    if !stream.cached_info().config.subjects.contains(&subjects) {
        return Err(BusError::Stream {
            stream: name.to_owned(),
            reason: format!(
                "it exists with subjects {:?}, not {subjects}; fix nats.subject_prefix or the stream",
                stream.cached_info().config.subjects
            ),
        });
    }
    Ok(stream)
}

/// Where the stream stands: its last message says which event it holds last.
async fn resync(
    channel: Channel,
    stream: &mut Stream,
    log: &EventLog,
    checkpoint: Seq,
) -> Result<Target, BusError> {
    let name = channel_stream_name(stream);
    let stream_error = |reason: String| BusError::Stream {
        stream: name.clone(),
        reason,
    };
    let info = stream
        .get_info()
        .await
        .map_err(|error| stream_error(error.to_string()))?;
    let last_stream_seq = info.state.last_sequence;
    let position = if last_stream_seq == 0 {
        // A stream that never held a message (new or recreated) gets the whole log.
        0
    } else if info.state.messages == 0 {
        // Purged or expired: nothing to compare with, so the checkpoint decides.
        checkpoint
    } else {
        match stream.get_raw_message(last_stream_seq).await {
            Ok(message) => match channel.position_of(&message.payload) {
                Some((seq, id)) => {
                    check_same_log(log, &name, seq, &id)?;
                    seq
                }
                None => {
                    tracing::warn!(stream = %name, "the stream's last message is not a keyledger event; the checkpoint decides");
                    checkpoint
                }
            },
            Err(error) => {
                tracing::warn!(stream = %name, %error, "cannot read the stream's last message; the checkpoint decides");
                checkpoint
            }
        }
    };
    Ok(Target {
        stream: name,
        position,
        last_stream_seq,
    })
}

/// With nothing in flight, every stream must end exactly where the relay's last publish landed;
/// anything else (a server that came back without its unsynced tail, a purge, a foreign
/// publisher) ends the session, and the next one resynchronises from the stream.
async fn check_streams(streams: &mut [Stream], targets: &[Target]) -> Result<(), BusError> {
    for (stream, target) in streams.iter_mut().zip(targets) {
        let info = stream.get_info().await.map_err(|error| BusError::Stream {
            stream: target.stream.clone(),
            reason: error.to_string(),
        })?;
        if info.state.last_sequence != target.last_stream_seq {
            return Err(BusError::StreamMoved {
                stream: target.stream.clone(),
                expected: target.last_stream_seq,
                found: info.state.last_sequence,
            });
        }
    }
    Ok(())
}

fn channel_stream_name(stream: &Stream) -> String {
    stream.cached_info().config.name.clone()
}

/// The stream's last event must be this log's event at that seq, or the stream belongs to
/// another log (another data directory published to the same stream name).
fn check_same_log(log: &EventLog, stream: &str, seq: Seq, id: &str) -> Result<(), BusError> {
    let foreign = |detail: String| BusError::ForeignStream {
        stream: stream.to_owned(),
        detail,
    };
    match log.get(seq)? {
        Some(envelope) if hex(&envelope.event_id) == id => Ok(()),
        Some(_) => Err(foreign(format!(
            "its event {seq} has id {id}, this log's has another"
        ))),
        None => Err(foreign(format!(
            "it holds event {seq} but this log ends at {}",
            log.head().0
        ))),
    }
}

fn read_checkpoint(meta: &Meta, key: &str) -> Result<Seq, BusError> {
    match meta.get(key)? {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(Seq::from_be_bytes)
            .map_err(|_| BusError::Log(format!("the relay checkpoint `{key}` is not 8 bytes"))),
    }
}

/// Records the newest acknowledged position after each batch of acknowledgements, at most every
/// [`CHECKPOINT_INTERVAL`]: each save is one durable `meta` write (an fsync) on a blocking
/// thread, so the relay never waits for the disk. A checkpoint behind the stream costs nothing
/// but a look at the stream's last message on the next start.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

fn spawn_checkpoint_writer(
    meta: Meta,
    key: String,
    mut latest: watch::Receiver<Seq>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut saved = *latest.borrow_and_update();
        loop {
            let open = latest.changed().await.is_ok();
            let seq = *latest.borrow_and_update();
            if seq != saved {
                let (meta, key) = (meta.clone(), key.clone());
                match tokio::task::spawn_blocking(move || meta.put(key, seq.to_be_bytes())).await {
                    Ok(Ok(())) => saved = seq,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, seq, "cannot record the relay checkpoint; will retry")
                    }
                    Err(error) => {
                        tracing::warn!(%error, seq, "cannot record the relay checkpoint; will retry")
                    }
                }
            }
            if !open {
                return;
            }
            tokio::time::sleep(CHECKPOINT_INTERVAL).await;
        }
    })
}

struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
