//! The single writer: group commit, validation, chaining, durability, answers.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::oneshot;

use crate::block::encode_block;
use crate::envelope::{Envelope, seal};
use crate::keys::{
    STREAMS_THROUGH_KEY, encode_committed, encode_head, event_key, idempotency_key, stream_key,
};
use crate::{
    AppendBatch, AppendError, Committed, ExpectedVersion, Hash, LogError, MAX_ENVELOPE_BYTES,
    OnCommit, Seq, Shared,
};

pub(crate) type AppendResult = Result<Committed, AppendError>;

pub(crate) enum Message {
    Append(Request),
    Close,
}

pub(crate) struct Request {
    pub(crate) batch: AppendBatch,
    pub(crate) reply: Reply,
}

pub(crate) enum Reply {
    Async(oneshot::Sender<AppendResult>),
    Blocking(mpsc::SyncSender<AppendResult>),
}

impl Reply {
    fn send(self, result: AppendResult) {
        // A waiter that went away (cancelled future) simply does not hear the answer.
        match self {
            Reply::Async(sender) => {
                let _ = sender.send(result);
            }
            Reply::Blocking(sender) => {
                let _ = sender.send(result);
            }
        }
    }
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) receiver: mpsc::Receiver<Message>,
    pub(crate) on_commit: OnCommit,
    pub(crate) idempotency: HashMap<[u8; 16], Committed>,
    pub(crate) random: SystemRandom,
    /// Set when the log can no longer be trusted to append; every later request gets it.
    pub(crate) stopped: Option<String>,
    /// Set while storage fails: appends are refused until a recovery succeeds.
    pub(crate) fault: Option<Fault>,
    /// Stream versions committed since the stream index was last written.
    pub(crate) unindexed_streams: HashMap<String, u64>,
    pub(crate) index_written_at: Instant,
}

/// The stream index is written with a group once this many streams changed, or this long
/// after it was last written: stream versions cost one sled insert each, so writing them with
/// every group would double the cost of an append. Open reads back the versions of the
/// events committed after the index (at most this much of the log).
const INDEX_EVERY_STREAMS: usize = 1024;
const INDEX_EVERY: Duration = Duration::from_secs(1);
/// Longest a group waits for the appenders of the previous group to come back (a sync takes
/// ≈0.3–0.5 ms here, so waiting a fraction of that for a fuller group pays).
const GATHER_WINDOW: Duration = Duration::from_micros(200);

/// What a request gets once the group's fate is known.
enum Outcome {
    Decided(AppendResult),
    /// Accepted into the group: `Ok` if the group becomes durable.
    IfDurable(Committed),
}

/// The accepted part of a group, ready to write.
struct Group {
    first_seq: Seq,
    envelopes: Vec<Envelope>,
    values: Vec<Vec<u8>>,
    /// Stream -> version after this group.
    streams: HashMap<String, u64>,
    /// Request id -> result, for requests accepted in this group.
    request_ids: HashMap<[u8; 16], Committed>,
    head: (Seq, Hash),
}

impl Writer {
    pub(crate) fn run(mut self) {
        let max_events = self.shared.config.max_batch_events.max(1);
        let mut closing = false;
        let mut last_group_requests = 0;
        while !closing {
            // While storage fails, wake up to retry even when nobody appends, so readiness
            // turns true again as soon as storage works.
            let received = match self.fault.as_ref().map(Fault::retry_in) {
                None => self
                    .receiver
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(wait) => self.receiver.recv_timeout(wait),
            };
            let first = match received {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.retry_recovery_if_due();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut requests = Vec::new();
            let mut events = 0;
            match first {
                Message::Append(request) => {
                    events += request.batch.events.len();
                    requests.push(request);
                }
                Message::Close => closing = true,
            }
            // Appenders answered by the last group come back one by one as they are scheduled:
            // wait (briefly) for as many as that group had, or the groups would alternate
            // between a few requests and the rest, each paying a whole sync.
            let gather_until = Instant::now() + GATHER_WINDOW;
            while !closing && events < max_events {
                let next = match self.receiver.try_recv() {
                    Ok(message) => Ok(message),
                    Err(mpsc::TryRecvError::Empty) if requests.len() < last_group_requests => {
                        let left = gather_until.saturating_duration_since(Instant::now());
                        self.receiver.recv_timeout(left).map_err(|_| ())
                    }
                    Err(_) => Err(()),
                };
                match next {
                    Ok(Message::Append(request)) => {
                        events += request.batch.events.len();
                        requests.push(request);
                    }
                    Ok(Message::Close) => closing = true,
                    Err(()) => break,
                }
            }
            last_group_requests = requests.len();
            self.shared
                .queue_depth
                .fetch_sub(requests.len() as i64, Ordering::Relaxed);
            if !requests.is_empty() {
                self.commit_group(requests);
            }
        }
        let flushed = self
            .shared
            .database
            .get()
            .and_then(|database| database.make_durable());
        if let Err(error) = flushed {
            tracing::warn!(%error, "final flush of the event log failed");
        }
        tracing::debug!("event log writer stopped");
    }

    fn commit_group(&mut self, requests: Vec<Request>) {
        if self.fault.is_some() {
            self.retry_recovery_if_due();
        }
        if let Some(reason) = &self.stopped {
            for request in requests {
                request
                    .reply
                    .send(Err(AppendError::Storage(LogError::WriterStopped {
                        reason: reason.clone(),
                    })));
            }
            return;
        }
        if let Some(fault) = &self.fault {
            for request in requests {
                request
                    .reply
                    .send(Err(AppendError::Storage(fault.refusal())));
            }
            return;
        }
        let total_events = requests.iter().map(|r| r.batch.events.len()).sum::<usize>();
        let mut event_ids = vec![0u8; total_events * 16];
        if self.random.fill(&mut event_ids).is_err() {
            for request in requests {
                request
                    .reply
                    .send(Err(AppendError::Storage(LogError::Random)));
            }
            return;
        }

        let (mut group, answers) = self.validate_and_seal(requests, &event_ids);
        if group.envelopes.is_empty() {
            for (reply, outcome) in answers {
                if let Outcome::Decided(result) = outcome {
                    reply.send(result);
                }
            }
            return;
        }

        let _span = tracing::debug_span!(
            "group_commit",
            first_seq = group.first_seq,
            events = group.envelopes.len(),
            requests = answers.len()
        )
        .entered();
        let index_written = match self.write_durably(&group) {
            Ok(index_written) => index_written,
            Err(error) => {
                tracing::error!(%error, first_seq = group.first_seq, "group commit failed");
                // Definitely not committed only once whatever reached sled is undone durably;
                // until then the answer must not claim that it failed for good.
                let failure = if self.roll_back(&error) {
                    error
                } else {
                    LogError::NotConfirmed {
                        reason: error.to_string(),
                    }
                };
                for (reply, outcome) in answers {
                    reply.send(match outcome {
                        Outcome::Decided(result) => result,
                        Outcome::IfDurable(_) => Err(AppendError::Storage(failure.duplicate())),
                    });
                }
                return;
            }
        };
        if index_written {
            self.unindexed_streams.clear();
            self.index_written_at = Instant::now();
        }

        self.publish(&mut group);
        let callback_panicked = catch_unwind(AssertUnwindSafe(|| {
            (self.on_commit)(&group.envelopes);
        }))
        .is_err();
        if callback_panicked {
            // The events are durable, but whatever the callback maintains is now suspect:
            // stop rather than let it drift further from the log.
            tracing::error!("on_commit panicked; the log stops accepting appends");
            self.stop("the on_commit callback panicked".to_owned());
        }
        self.shared.commits.send_replace(group.head.0);
        for (reply, outcome) in answers {
            reply.send(match outcome {
                Outcome::Decided(result) => result,
                Outcome::IfDurable(committed) => Ok(committed),
            });
        }
    }

    /// Checks each request in order against the committed state plus the requests accepted
    /// before it in this group, and chains the accepted events.
    fn validate_and_seal(
        &self,
        requests: Vec<Request>,
        event_ids: &[u8],
    ) -> (Group, Vec<(Reply, Outcome)>) {
        let head = *self.shared.head.lock();
        let committed_streams = self.shared.streams.read();
        let mut group = Group {
            first_seq: head.0 + 1,
            envelopes: Vec::new(),
            values: Vec::new(),
            streams: HashMap::new(),
            request_ids: HashMap::new(),
            head,
        };
        let mut answers = Vec::with_capacity(requests.len());
        let mut ids = event_ids.chunks_exact(16);

        for Request { batch, reply } in requests {
            let request_ids = ids.by_ref().take(batch.events.len());
            let outcome = self.accept(batch, request_ids, &committed_streams, &mut group);
            answers.push((reply, outcome));
        }
        (group, answers)
    }

    fn accept<'a>(
        &self,
        batch: AppendBatch,
        mut event_ids: impl Iterator<Item = &'a [u8]>,
        committed_streams: &HashMap<String, u64>,
        group: &mut Group,
    ) -> Outcome {
        if batch.events.is_empty() {
            return Outcome::Decided(Err(AppendError::Empty));
        }
        if let Some(request_id) = &batch.request_id {
            if let Some(first) = self.idempotency.get(request_id) {
                return Outcome::Decided(Ok(Committed {
                    duplicate: true,
                    ..*first
                }));
            }
            if let Some(first) = group.request_ids.get(request_id) {
                return Outcome::IfDurable(Committed {
                    duplicate: true,
                    ..*first
                });
            }
        }

        for guard in &batch.guards {
            let current = group
                .streams
                .get(&guard.stream)
                .or_else(|| committed_streams.get(&guard.stream))
                .copied();
            if !expected_matches(guard.expected, current) {
                return Outcome::Decided(Err(AppendError::Conflict {
                    stream: guard.stream.clone(),
                    expected: guard.expected,
                    actual: current,
                }));
            }
        }

        // Versions this request moves to, on top of the group's and the committed ones.
        let mut versions: HashMap<&str, u64> = HashMap::new();
        let mut assigned = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            let current = versions
                .get(event.stream.as_str())
                .or_else(|| group.streams.get(&event.stream))
                .or_else(|| committed_streams.get(&event.stream))
                .copied();
            if !expected_matches(event.expected, current) {
                return Outcome::Decided(Err(AppendError::Conflict {
                    stream: event.stream.clone(),
                    expected: event.expected,
                    actual: current,
                }));
            }
            let next = current.unwrap_or(0) + 1;
            versions.insert(&event.stream, next);
            assigned.push(next);
        }
        let versions: Vec<(String, u64)> = versions
            .into_iter()
            .map(|(stream, version)| (stream.to_owned(), version))
            .collect();

        let first_seq = group.head.0 + 1;
        let mut seq = first_seq;
        let mut prev_hash = group.head.1;
        let mut sealed = Vec::with_capacity(batch.events.len());
        for (event, version) in batch.events.into_iter().zip(assigned) {
            let mut event_id = [0u8; 16];
            if let Some(id) = event_ids.next() {
                event_id.copy_from_slice(id);
            }
            let mut env = Envelope {
                seq,
                event_id,
                stream: event.stream,
                version,
                time_ms: batch.time_ms,
                actor: batch.actor.clone(),
                request_id: batch.request_id,
                body: event.body,
                prev_hash,
                hash: [0; 32],
            };
            let value = seal(&mut env);
            if value.len() > MAX_ENVELOPE_BYTES {
                return Outcome::Decided(Err(AppendError::TooLarge { bytes: value.len() }));
            }
            prev_hash = env.hash;
            seq += 1;
            sealed.push((env, value));
        }

        let committed = Committed {
            first_seq,
            last_seq: seq - 1,
            duplicate: false,
        };
        for (env, value) in sealed {
            group.envelopes.push(env);
            group.values.push(value);
        }
        group.streams.extend(versions);
        if let Some(request_id) = batch.request_id {
            group.request_ids.insert(request_id, committed);
        }
        group.head = (committed.last_seq, prev_hash);
        Outcome::IfDurable(committed)
    }

    fn write_durably(&self, group: &Group) -> Result<bool, LogError> {
        let database = self.shared.database.get()?;
        let mut batch = sled::Batch::default();
        let block = encode_block(group.values.iter().map(Vec::as_slice));
        batch.insert(&event_key(group.first_seq), block);
        // The index covers the groups before this one: committed, so it stays true even if
        // this group fails and is rolled back.
        let write_index = self.unindexed_streams.len() >= INDEX_EVERY_STREAMS
            || (!self.unindexed_streams.is_empty()
                && self.index_written_at.elapsed() >= INDEX_EVERY);
        if write_index {
            for (stream, version) in &self.unindexed_streams {
                batch.insert(stream_key(stream), &version.to_be_bytes());
            }
            batch.insert(
                STREAMS_THROUGH_KEY,
                &(group.first_seq - 1).to_be_bytes()[..],
            );
        }
        for (request_id, committed) in &group.request_ids {
            batch.insert(&idempotency_key(request_id), &encode_committed(committed));
        }
        batch.insert(
            crate::keys::HEAD_KEY,
            &encode_head(group.head.0, &group.head.1)[..],
        );
        database.events.apply_batch(batch)?;
        database.make_durable()?;
        Ok(write_index)
    }

    /// Undoes whatever part of a failed group reached sled, so the stored state matches the
    /// acknowledged (in-memory) state again: sled is reopened (it refuses every write after an
    /// I/O error) and its stored tail cut back to the acknowledged head. `false` if that could
    /// not be done now: the writer is then faulted and retries before the next group.
    fn roll_back(&mut self, error: &LogError) -> bool {
        self.storage_failed(error);
        self.retry_recovery_if_due();
        self.fault.is_none() && self.stopped.is_none()
    }

    /// Advances the in-memory state once the group is durable; the group's stream versions
    /// move on to wait for the next write of the stream index.
    fn publish(&mut self, group: &mut Group) {
        {
            let mut streams = self.shared.streams.write();
            for (stream, version) in &group.streams {
                match streams.get_mut(stream) {
                    Some(current) => *current = *version,
                    None => {
                        streams.insert(stream.clone(), *version);
                    }
                }
            }
        }
        self.unindexed_streams
            .extend(std::mem::take(&mut group.streams));
        self.idempotency
            .extend(group.request_ids.iter().map(|(id, c)| (*id, *c)));
        // Reads are capped at `head_seq`: raise it first, so that whoever sees the new head
        // can also read up to it.
        self.shared.head_seq.store(group.head.0, Ordering::Release);
        *self.shared.head.lock() = group.head;
    }
}

/// `Exact(0)` means the same as `NoStream`: a stream's first event has version 1.
fn expected_matches(expected: ExpectedVersion, current: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => current.is_none(),
        ExpectedVersion::Exact(version) => current == Some(version),
    }
}

/// The writer's state while storage fails.
pub(crate) struct Fault {
    /// The storage error that started it, as appenders and readiness see it.
    pub(crate) reason: String,
    pub(crate) since: Instant,
    pub(crate) next_attempt: Instant,
    pub(crate) backoff: Duration,
    /// What the last recovery attempt ran into, logged when it changes.
    pub(crate) last_attempt: Option<String>,
}

impl Fault {
    /// Time left until the next recovery attempt is due.
    pub(crate) fn retry_in(&self) -> Duration {
        self.next_attempt.saturating_duration_since(Instant::now())
    }

    /// The answer to an append while storage fails.
    pub(crate) fn refusal(&self) -> LogError {
        LogError::StorageUnavailable {
            reason: self.reason.clone(),
        }
    }
}
