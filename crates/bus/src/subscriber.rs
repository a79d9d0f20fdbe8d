//! The subscriber library: typed events from the public stream, through a durable pull consumer
//! with explicit acks ([`Subscriber::subscribe_durable`]) or an ephemeral ordered replay
//! ([`Subscriber::replay`]), starting at the beginning, a log sequence, a time, or new events.
//!
//! Log sequence vs stream sequence: they are equal only while the stream was never purged,
//! never lost messages and never held foreign ones. So [`StartAt::Seq`] is resolved by a
//! binary search over the stream's messages on their JSON `seq` (the relay keeps the stream in
//! log order), then started with `DeliverPolicy::ByStartSequence`; deliveries below the
//! requested seq are skipped (and acked) as a safety net.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream as JsStream};
use async_nats::jetstream::{self, Context};
use futures::{Stream, StreamExt};
use keyledger_domain::Timestamp;
use keyledger_domain::public::PublicEnvelope;
use keyledger_log::Seq;

use crate::wire::{Channel, decode_public};
use crate::{BusConfig, BusError};

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The first event still in the stream.
    Beginning,
    /// The event with this log sequence number (or the first after it still in the stream).
    Seq(Seq),
    /// The first event appended at or after this time.
    Time(Timestamp),
    /// Only events published after the consumer is created.
    New,
}

/// Options of a durable consumer. The name identifies it on the server: a consumer that exists
/// already resumes where it was acked, and `from` is ignored.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    pub name: String,
    pub from: StartAt,
    /// A public subject or suffix (`api_key.*`); all events when `None`.
    pub filter_subject: Option<String>,
    /// How long an unacknowledged delivery waits before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries outstanding (not yet acked) at most.
    pub max_ack_pending: i64,
    /// Events up to this log seq are acknowledged and skipped, never delivered: the last
    /// event you handled, if you record it yourself (0: none). It makes redeliveries after a
    /// nats-server restart, which may forget recent acks, invisible across your restarts too.
    pub handled_through: Seq,
}

impl DurableOptions {
    pub fn new(name: impl Into<String>, from: StartAt) -> DurableOptions {
        DurableOptions {
            name: name.into(),
            from,
            filter_subject: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            handled_through: 0,
        }
    }
}

/// A connection to NATS for reading keyledger's public events.
#[derive(Clone, Debug)]
pub struct Subscriber {
    client: Client,
    js: Context,
    config: BusConfig,
}

/// One event from a durable consumer. Ack it once handled: the next delivery is the next
/// event. An event not acked (or nak'ed) is delivered again.
pub struct Delivery {
    pub envelope: PublicEnvelope,
    /// The NATS subject it was published on: `keyledger.events.api_key.created`.
    pub nats_subject: String,
    /// Position in the JetStream stream (not the log: see `envelope.seq`).
    pub stream_seq: u64,
    /// 1 on the first delivery, more on redeliveries.
    pub delivered: i64,
    acker: Acker,
    shared: Arc<DurableShared>,
}

/// What deliveries report back to their subscription.
#[derive(Debug, Default)]
struct DurableShared {
    /// Set by an ack that failed or a nak: rewind before the next delivery.
    rewind: AtomicBool,
    /// The highest log seq whose ack the server confirmed.
    handled_through: AtomicU64,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("nats_subject", &self.nats_subject)
            .field("stream_seq", &self.stream_seq)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Acknowledges the delivery and waits for the server to confirm it, so an acked event is
    /// never delivered again. If this fails, the subscription goes back to this event before
    /// its next delivery.
    pub async fn ack(&self) -> Result<(), BusError> {
        match self.acker.double_ack().await {
            Ok(()) => {
                self.shared
                    .handled_through
                    .fetch_max(self.envelope.seq, Ordering::SeqCst);
                Ok(())
            }
            Err(error) => {
                self.shared.rewind.store(true, Ordering::SeqCst);
                Err(BusError::Ack {
                    stream_seq: self.stream_seq,
                    reason: error.to_string(),
                })
            }
        }
    }

    /// Gives the event back: the subscription goes back to it, so it is the next delivery.
    pub async fn nak(&self) -> Result<(), BusError> {
        self.shared.rewind.store(true, Ordering::SeqCst);
        self.acker
            .ack_with(jetstream::AckKind::Nak(None))
            .await
            .map_err(|error| BusError::Ack {
                stream_seq: self.stream_seq,
                reason: error.to_string(),
            })
    }
}

/// One event from an ordered replay (no acks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub envelope: PublicEnvelope,
    pub nats_subject: String,
    pub stream_seq: u64,
    /// Events after this one in the stream (matching the filter) when it was delivered: 0
    /// means caught up.
    pub pending: u64,
}

/// The deliveries of a durable consumer, in stream order, each once as long as every delivery
/// is acked before the next is handled. The stream never ends: connection failures come as
/// errors and the subscription recovers by itself on the next poll.
///
/// An undecodable message (an event type newer than this library) comes as
/// [`BusError::Undecodable`] and is left unacknowledged, so the subscription stops there until
/// the subscriber is upgraded; nothing is skipped.
pub struct Deliveries {
    inner: Pin<Box<dyn Stream<Item = Result<Delivery, BusError>> + Send>>,
}

/// The events of an ordered replay.
pub struct Replay {
    inner: Pin<Box<dyn Stream<Item = Result<Received, BusError>> + Send>>,
    /// Events matching the filter when the replay started.
    pub pending_at_start: u64,
}

impl Subscriber {
    pub async fn connect(config: &BusConfig) -> Result<Subscriber, BusError> {
        config.check()?;
        let client = config.connect("keyledger-subscriber").await?;
        Ok(Subscriber::with_client(client, config.clone()))
    }

    /// Uses an existing connection.
    pub fn with_client(client: Client, config: BusConfig) -> Subscriber {
        let js = jetstream::context::ContextBuilder::new()
            .timeout(config.ack_timeout)
            .build(client.clone());
        Subscriber { client, js, config }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// A durable pull consumer over every public event, with explicit acks.
    pub async fn subscribe_durable(
        &self,
        name: &str,
        from: StartAt,
    ) -> Result<Deliveries, BusError> {
        self.subscribe_durable_with(DurableOptions::new(name, from))
            .await
    }

    /// A durable pull consumer with explicit acks. One process at a time should use a given
    /// name: the subscription keeps order by rewinding the consumer to its ack floor whenever a
    /// delivery was lost (a broken connection) or given back.
    pub async fn subscribe_durable_with(
        &self,
        options: DurableOptions,
    ) -> Result<Deliveries, BusError> {
        let stream = self.public_stream().await?;
        let exists = match stream.consumer_info(&options.name).await {
            Ok(_) => true,
            Err(error) if matches!(error.kind(), ConsumerInfoErrorKind::NotFound) => false,
            Err(error) => {
                return Err(BusError::Consumer {
                    consumer: options.name.clone(),
                    reason: error.to_string(),
                });
            }
        };
        // A consumer that exists resumes where it was acked; `from` only shapes a new one.
        let start = if exists {
            Start::everything()
        } else {
            start_point(&stream, Channel::Public, options.from).await?
        };
        let handled_through = options.handled_through;
        let filter_subject = options
            .filter_subject
            .as_deref()
            .map(|filter| self.config.public_filter(filter))
            .unwrap_or_default();
        let mut durable = Durable {
            client: self.client.clone(),
            stream,
            options,
            filter_subject,
            start,
            messages: None,
            last_consumer_seq: 0,
            last_stream_seq: 0,
            shared: Arc::new(DurableShared {
                rewind: AtomicBool::new(false),
                handled_through: AtomicU64::new(handled_through),
            }),
            failures: 0,
        };
        durable.open().await?;
        let inner = futures::stream::unfold(durable, |mut durable| async move {
            let item = durable.next().await;
            Some((item, durable))
        });
        Ok(Deliveries {
            inner: Box::pin(inner),
        })
    }

    /// Deletes a durable consumer (its position is forgotten).
    pub async fn delete_durable(&self, name: &str) -> Result<(), BusError> {
        let stream = self.public_stream().await?;
        stream
            .delete_consumer(name)
            .await
            .map(|_| ())
            .map_err(|error| BusError::Consumer {
                consumer: name.to_owned(),
                reason: error.to_string(),
            })
    }

    /// An ephemeral, ordered replay of the public events (no acks; the client re-creates the
    /// consumer on gaps), optionally filtered by subject.
    pub async fn replay(
        &self,
        from: StartAt,
        filter_subject: Option<&str>,
    ) -> Result<Replay, BusError> {
        let stream = self.public_stream().await?;
        let filter = filter_subject
            .map(|filter| self.config.public_filter(filter))
            .unwrap_or_default();
        let (messages, start, pending_at_start) =
            ordered(&stream, Channel::Public, from, filter).await?;
        let inner = messages.filter_map(move |message| {
            let start = start;
            async move {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => return Some(Err(error)),
                };
                let envelope = match decode_public(&message.payload) {
                    Ok(envelope) => envelope,
                    Err(reason) => {
                        return Some(Err(BusError::Undecodable {
                            stream_seq: message.stream_seq,
                            subject: message.subject,
                            reason,
                        }));
                    }
                };
                if start.skips(&envelope) {
                    return None;
                }
                Some(Ok(Received {
                    envelope,
                    nats_subject: message.subject,
                    stream_seq: message.stream_seq,
                    pending: message.pending,
                }))
            }
        });
        Ok(Replay {
            inner: Box::pin(inner),
            pending_at_start,
        })
    }

    /// The stream sequence at which the event with log sequence `seq` (or the first one after
    /// it) is stored; one past the last message if there is none yet.
    pub async fn stream_seq_of(&self, seq: Seq) -> Result<u64, BusError> {
        let stream = self.public_stream().await?;
        stream_seq_at_or_after(&stream, Channel::Public, seq).await
    }

    async fn public_stream(&self) -> Result<JsStream, BusError> {
        get_stream(&self.js, &self.config.stream).await
    }
}

impl Stream for Deliveries {
    type Item = Result<Delivery, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Stream for Replay {
    type Item = Result<Received, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("pending_at_start", &self.pending_at_start)
            .finish_non_exhaustive()
    }
}

/// The state behind [`Deliveries`].
struct Durable {
    client: Client,
    stream: JsStream,
    options: DurableOptions,
    filter_subject: String,
    start: Start,
    messages: Option<consumer::pull::Stream>,
    /// Consumer sequences go up by one per delivery: a jump means one was lost in transit.
    last_consumer_seq: u64,
    /// The stream position of the last delivery handed out since the consumer was (re)bound.
    last_stream_seq: u64,
    shared: Arc<DurableShared>,
    failures: u32,
}

impl Durable {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            if self.messages.is_none() || self.shared.rewind.swap(false, Ordering::SeqCst) {
                if self.failures > 0 {
                    let delay = Duration::from_millis(100 << self.failures.min(5));
                    tokio::time::sleep(delay).await;
                }
                if let Err(error) = self.open().await {
                    self.failures += 1;
                    self.messages = None;
                    return Err(error);
                }
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    self.messages = None;
                    self.failures += 1;
                    return Err(self.error(error.to_string()));
                }
                None => {
                    self.messages = None;
                    continue;
                }
            };
            let Ok(info) = message.info() else {
                return Err(self.error("a delivery without JetStream metadata".to_owned()));
            };
            let (stream_seq, consumer_seq, delivered) =
                (info.stream_sequence, info.consumer_sequence, info.delivered);
            if consumer_seq != self.last_consumer_seq + 1 || stream_seq <= self.last_stream_seq {
                // Deliveries between were lost, or this is a redelivery behind newer ones (its
                // ack wait ran out): go back to the ack floor so order holds.
                self.shared.rewind.store(true, Ordering::SeqCst);
                continue;
            }
            self.last_consumer_seq = consumer_seq;
            self.last_stream_seq = stream_seq;
            self.failures = 0;
            let nats_subject = message.subject.to_string();
            let envelope = match decode_public(&message.payload) {
                Ok(envelope) => envelope,
                Err(reason) => {
                    // Not acked: it stays the next event until a subscriber can read it.
                    self.shared.rewind.store(true, Ordering::SeqCst);
                    self.failures += 1;
                    return Err(BusError::Undecodable {
                        stream_seq,
                        subject: nats_subject,
                        reason,
                    });
                }
            };
            let (_, acker) = message.split();
            let delivery = Delivery {
                envelope,
                nats_subject,
                stream_seq,
                delivered,
                acker,
                shared: self.shared.clone(),
            };
            let handled =
                delivery.envelope.seq <= self.shared.handled_through.load(Ordering::SeqCst);
            if handled || self.start.skips(&delivery.envelope) {
                // Handled already (the server forgot the ack), or before the requested start:
                // acked so the consumer moves past it.
                delivery.ack().await?;
                continue;
            }
            return Ok(delivery);
        }
    }

    /// (Re)binds to the consumer, creating it if needed. If deliveries are outstanding (lost or
    /// given back), the consumer is re-created at its ack floor so they come next, in order.
    async fn open(&mut self) -> Result<(), BusError> {
        self.messages = None;
        // Acks are confirmed, but a flush costs nothing and settles any fire-and-forget one.
        let _ = self.client.flush().await;
        let name = self.options.name.clone();
        let info = match self.stream.consumer_info(&name).await {
            Ok(info) => Some(info),
            Err(error) if matches!(error.kind(), ConsumerInfoErrorKind::NotFound) => None,
            Err(error) => return Err(self.error(error.to_string())),
        };
        let policy = match &info {
            None => Some(self.start.policy),
            Some(info) if info.num_ack_pending > 0 => {
                self.stream
                    .delete_consumer(&name)
                    .await
                    .map_err(|error| self.error(error.to_string()))?;
                let floor = info.ack_floor.stream_sequence;
                Some(if floor == 0 {
                    self.start.policy
                } else {
                    DeliverPolicy::ByStartSequence {
                        start_sequence: floor + 1,
                    }
                })
            }
            Some(_) => None,
        };
        let consumer = match policy {
            Some(deliver_policy) => {
                let config = consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.filter_subject.clone(),
                    deliver_policy,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.options.ack_wait,
                    max_ack_pending: self.options.max_ack_pending,
                    ..Default::default()
                };
                self.stream
                    .create_consumer(config)
                    .await
                    .map_err(|error| self.error(error.to_string()))?
            }
            None => self
                .stream
                .get_consumer::<consumer::pull::Config>(&name)
                .await
                .map_err(|error| self.error(error.to_string()))?,
        };
        self.last_consumer_seq = consumer.cached_info().delivered.consumer_sequence;
        self.last_stream_seq = 0;
        self.messages = Some(
            consumer
                .messages()
                .await
                .map_err(|error| self.error(error.to_string()))?,
        );
        Ok(())
    }

    fn error(&self, reason: String) -> BusError {
        BusError::Consumer {
            consumer: self.options.name.clone(),
            reason,
        }
    }
}

/// A raw message of an ordered consumer, before decoding.
pub(crate) struct RawMessage {
    pub(crate) subject: String,
    pub(crate) payload: bytes::Bytes,
    pub(crate) stream_seq: u64,
    pub(crate) pending: u64,
}

pub(crate) type RawMessages = Pin<Box<dyn Stream<Item = Result<RawMessage, BusError>> + Send>>;

/// An ordered consumer on `stream` from `from`; also returns how to skip what precedes `from`
/// and how many messages match at the start.
pub(crate) async fn ordered(
    stream: &JsStream,
    channel: Channel,
    from: StartAt,
    filter_subject: String,
) -> Result<(RawMessages, Start, u64), BusError> {
    let name = stream.cached_info().config.name.clone();
    let consumer_error = |reason: String| BusError::Consumer {
        consumer: format!("ordered consumer on {name}"),
        reason,
    };
    let start = start_point(stream, channel, from).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject,
            deliver_policy: start.policy,
            ..Default::default()
        })
        .await
        .map_err(|error| consumer_error(error.to_string()))?;
    let pending_at_start = consumer.cached_info().num_pending;
    let messages = consumer
        .messages()
        .await
        .map_err(|error| consumer_error(error.to_string()))?;
    let consumer_name = format!("ordered consumer on {name}");
    let raw = messages.map(move |message| {
        let message = message.map_err(|error| BusError::Consumer {
            consumer: consumer_name.clone(),
            reason: error.to_string(),
        })?;
        let (stream_seq, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(_) => (0, 0),
        };
        Ok(RawMessage {
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            stream_seq,
            pending,
        })
    });
    Ok((Box::pin(raw), start, pending_at_start))
}

/// A consumer's deliver policy and what to skip client-side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Start {
    pub(crate) policy: DeliverPolicy,
    pub(crate) min_seq: Seq,
    pub(crate) min_time: Option<Timestamp>,
}

impl Start {
    fn everything() -> Start {
        Start {
            policy: DeliverPolicy::All,
            min_seq: 0,
            min_time: None,
        }
    }

    fn skips(&self, envelope: &PublicEnvelope) -> bool {
        envelope.seq < self.min_seq || self.min_time.is_some_and(|min| envelope.time < min)
    }

    pub(crate) fn skips_seq(&self, seq: Seq) -> bool {
        seq < self.min_seq
    }
}

/// How far before a requested time the server starts, so events appended just before the
/// server's clock reached that time (clock skew, relay lag) are not missed; the client drops
/// the extra ones by their `time`.
const START_TIME_MARGIN_MS: i64 = 60_000;

pub(crate) async fn start_point(
    stream: &JsStream,
    channel: Channel,
    from: StartAt,
) -> Result<Start, BusError> {
    Ok(match from {
        StartAt::Beginning => Start::everything(),
        StartAt::New => Start {
            policy: DeliverPolicy::New,
            ..Start::everything()
        },
        StartAt::Seq(seq) => Start {
            policy: DeliverPolicy::ByStartSequence {
                start_sequence: stream_seq_at_or_after(stream, channel, seq).await?,
            },
            min_seq: seq,
            min_time: None,
        },
        StartAt::Time(time) => {
            let millis = time.as_millis().saturating_sub(START_TIME_MARGIN_MS);
            let start_time =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
                    .map_err(|error| {
                        BusError::Config(format!("start time {time} is out of range: {error}"))
                    })?;
            Start {
                policy: DeliverPolicy::ByStartTime { start_time },
                min_seq: 0,
                min_time: Some(time),
            }
        }
    })
}

/// Binary search over the stream for the first message whose log seq is at least `seq`. The
/// relay stores events in log order, so log seqs increase with stream seqs; messages that are
/// missing or not ours are stepped over.
pub(crate) async fn stream_seq_at_or_after(
    stream: &JsStream,
    channel: Channel,
    seq: Seq,
) -> Result<u64, BusError> {
    let name = stream.cached_info().config.name.clone();
    let info = stream.get_info().await.map_err(|error| BusError::Stream {
        stream: name.clone(),
        reason: error.to_string(),
    })?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    if info.state.messages == 0 {
        return Ok(last + 1);
    }
    let (mut low, mut high) = (first.max(1), last + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        match probe(stream, channel, middle, last).await? {
            Some((stream_seq, log_seq)) if log_seq < seq => low = stream_seq + 1,
            _ => high = middle,
        }
    }
    Ok(low)
}

/// The first of our messages at or after stream sequence `from` (up to `last`): its stream
/// sequence and log sequence.
async fn probe(
    stream: &JsStream,
    channel: Channel,
    from: u64,
    last: u64,
) -> Result<Option<(u64, Seq)>, BusError> {
    for stream_seq in from..=last {
        match stream.get_raw_message(stream_seq).await {
            Ok(message) => {
                if let Some((log_seq, _)) = channel.position_of(&message.payload) {
                    return Ok(Some((stream_seq, log_seq)));
                }
            }
            Err(error) if matches!(error.kind(), LastRawMessageErrorKind::NoMessageFound) => {}
            Err(error) => {
                return Err(BusError::Stream {
                    stream: stream.cached_info().config.name.clone(),
                    reason: format!("reading message {stream_seq}: {error}"),
                });
            }
        }
    }
    Ok(None)
}

pub(crate) async fn get_stream(js: &Context, name: &str) -> Result<JsStream, BusError> {
    js.get_stream(name).await.map_err(|error| BusError::Stream {
        stream: name.to_owned(),
        reason: format!("{error} (is the relay running against this NATS?)"),
    })
}
