//! keyledger's append-only, hash-chained event log on sled.
//!
//! Architecture invariants:
//! - Event bodies are opaque bytes; this crate knows nothing about the domain.
//! - One writer thread owns every append. It commits groups: one `apply_batch` (the group's block
//!   of events, idempotency records, the head record and, now and then, the stream index, so
//!   they are atomic), then flush and `sync_data`, then `on_commit`, then the answers. An
//!   acknowledged append is durable.
//! - Readers see only committed (durable) events: reads are capped at the published head.
//! - A storage failure refuses appends until storage works again, without a restart and
//!   without losing an acknowledged event (see `recovery`).
//! - `hash = SHA-256(prev_hash || bincode(every field except hash))`; [`EventLog::verify`] and
//!   [`verify_envelopes`] find the first damaged, missing or reordered event.

mod block;
mod checkpoint;
mod envelope;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod keys;
mod open;
pub mod private_files;
/// Raw access to the stored bytes, for tamper tests and the benchmarks only.
#[cfg(feature = "testing")]
pub mod raw;
mod read;
mod recovery;
mod stores;
mod verify;
mod view;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use ring::rand::SystemRandom;
use tokio::sync::{oneshot, watch};

pub use checkpoint::{BackupSummary, CHECKPOINT_PREFIX, Checkpoint};
pub use envelope::{Envelope, EnvelopeDecodeError, EnvelopeView, compute_hash};
pub use error::{AppendError, LogError};
pub use read::EventIter;
pub use recovery::{StorageHealth, StorageMonitor};
pub use stores::{DataKeys, Meta};
pub use verify::{BadEvent, BadReason, VerifyReport, verify_envelopes};
pub use view::LogView;

use block::stored_envelopes;
use keys::{
    EVENT_PREFIX, IDEMPOTENCY_PREFIX, STREAM_PREFIX, decode_committed, event_key, idempotency_key,
};
pub(crate) use open::{
    ReleaseWait, last_stored, load_head, load_idempotency, load_streams, open_store,
    wait_for_lock_release,
};
pub(crate) use read::{block_holding, damaged_block, decode_stored};
use stores::DatabaseCell;
use writer::{Message, Reply, Request, Writer};

/// Position in the log; the first event is 1, 0 means "nothing".
pub type Seq = u64;
pub type Hash = [u8; 32];
/// The `prev_hash` of event 1.
pub const GENESIS_HASH: Hash = [0; 32];
/// Called by the writer with each durable group's envelopes (see [`EventLog::open`]).
pub type OnCommit = Box<dyn FnMut(&[Envelope]) + Send>;
/// Largest encoded envelope accepted. sled never fsyncs values over ~128 KiB (they go to
/// separate blob files), so events stay far below that.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// Most events committed in one group (a single larger batch still goes through alone).
    pub max_batch_events: usize,
    pub durability: Durability,
}

impl LogConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogConfig {
            path: path.into(),
            max_batch_events: 4096,
            durability: Durability::Full,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// sled flush and `sync_data` of the database file: survives power loss.
    #[default]
    Full,
    /// sled flush only: survives a killed process, maybe not a power cut.
    Flush,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    Any,
    /// The stream has no events yet (`Exact(0)` means the same).
    NoStream,
    /// The stream's last event has this version.
    Exact(u64),
}

#[derive(Clone, Debug)]
pub struct NewEvent {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub body: Vec<u8>,
}

/// A stream that the decision behind a batch read but does not write: the batch is refused
/// with [`AppendError::Conflict`] if the stream moved since. This is how an invariant that spans
/// several streams (the last administrator, a permission held by the actor) is kept atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamGuard {
    pub stream: String,
    pub expected: ExpectedVersion,
}

/// One atomic unit: all its events are committed or none. It may touch several streams; an
/// event's expected version is checked after the batch's earlier events are applied, and its
/// guards before any of them.
#[derive(Clone, Debug)]
pub struct AppendBatch {
    /// Retrying with the same id returns the first result (`duplicate = true`) and writes
    /// nothing; the id alone decides, not the content.
    pub request_id: Option<[u8; 16]>,
    pub actor: String,
    pub time_ms: i64,
    pub events: Vec<NewEvent>,
    /// Streams read but not written (see [`StreamGuard`]); usually empty.
    pub guards: Vec<StreamGuard>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub first_seq: Seq,
    pub last_seq: Seq,
    /// The request id had already been committed; nothing new was written.
    pub duplicate: bool,
}

/// Handle to the log; cheap to clone. The writer stops when the last clone is dropped or on
/// [`EventLog::close`], after answering every append queued before.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

impl EventLog {
    /// Opens or creates the log and starts its writer thread (`keyledger-log-writer`).
    ///
    /// `on_commit` runs on the writer, in seq order, with each durable group's envelopes,
    /// before the appenders are answered. It must not append to this log (that would wait on
    /// itself) nor hold an `EventLog` clone. If it panics, the log stops accepting appends.
    pub fn open(config: LogConfig, on_commit: OnCommit) -> Result<EventLog, LogError> {
        let database = Arc::new(DatabaseCell::new(open_store(&config)?));
        let store = database.get()?;
        let head = load_head(&store.events)?;
        let streams = load_streams(&store.events, head.0, &store)?;
        let idempotency = load_idempotency(&store.events)?;
        drop(store);
        tracing::info!(
            path = %config.path.display(),
            head = head.0,
            streams = streams.len(),
            "event log opened"
        );

        let (commits, _) = watch::channel(head.0);
        let data_keys = DataKeys::open(&config.path)?;
        let shared = Arc::new(Shared {
            config,
            data_keys,
            meta: Meta::new(database.clone()),
            database,
            storage: StorageMonitor::default(),
            head: Mutex::new(head),
            head_seq: AtomicU64::new(head.0),
            streams: RwLock::new(streams),
            commits,
            queue_depth: AtomicI64::new(0),
        });
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            receiver,
            on_commit,
            idempotency,
            random: SystemRandom::new(),
            stopped: None,
            fault: None,
            unindexed_streams: HashMap::new(),
            index_written_at: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("keyledger-log-writer".to_owned())
            .spawn(move || writer.run())?;
        let release = ReleaseWait {
            database: shared.database.clone(),
            path: shared.config.path.clone(),
        };
        Ok(EventLog {
            inner: Arc::new(Inner {
                shared,
                sender,
                writer: Mutex::new(Some(handle)),
                _release: release,
            }),
        })
    }

    /// Appends one atomic batch; resolves once it is durable and `on_commit` has seen it.
    /// Dropping the future does not cancel the append.
    pub async fn append(&self, batch: AppendBatch) -> Result<Committed, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.submit(batch, Reply::Async(reply))?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// [`EventLog::append`] for callers outside async code (blocks the calling thread).
    pub fn append_blocking(&self, batch: AppendBatch) -> Result<Committed, AppendError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(batch, Reply::Blocking(reply))?;
        answer.recv().map_err(|_| AppendError::Closed)?
    }

    /// Last committed seq and its hash; `(0, GENESIS_HASH)` when empty.
    pub fn head(&self) -> (Seq, Hash) {
        *self.inner.shared.head.lock()
    }

    /// Committed events from `from` (inclusive) through the head as of this call, in order.
    pub fn read_from(&self, from: Seq) -> EventIter {
        self.read_range(from, Seq::MAX)
    }

    /// Committed events `from..=to`, capped at the head as of this call.
    pub fn read_range(&self, from: Seq, to: Seq) -> EventIter {
        let end = to.min(self.committed_seq());
        match self.inner.shared.database.get() {
            Ok(database) => EventIter::new(from, end, database),
            Err(error) => EventIter::failed(error),
        }
    }

    pub fn get(&self, seq: Seq) -> Result<Option<Envelope>, LogError> {
        if seq == 0 || seq > self.committed_seq() {
            return Ok(None);
        }
        let database = self.inner.shared.database.get()?;
        let Some(first) = block_holding(&database.events, seq) else {
            return Ok(None);
        };
        let Some(value) = database.events.get(event_key(first))? else {
            return Ok(None);
        };
        let index = (seq - first) as usize;
        match stored_envelopes(&value).nth(index) {
            Some(Ok(stored)) => decode_stored(seq, stored).map(Some),
            Some(Err(())) => Err(damaged_block(seq)),
            None => Ok(None),
        }
    }

    /// The last committed seq; changes after each durable group commit.
    pub fn subscribe(&self) -> watch::Receiver<Seq> {
        self.inner.shared.commits.subscribe()
    }

    /// Version of the stream's last committed event, `None` if it has none.
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        self.inner.shared.streams.read().get(stream).copied()
    }

    /// What an earlier append with this request id committed, if there was one. For callers
    /// whose retried request is refused on other grounds before it reaches [`EventLog::append`]
    /// (a create whose name the first attempt already took): they answer it as the duplicate
    /// it is. Idempotency records are written with their events, so only durable ones are seen.
    pub fn committed_request(&self, request_id: &[u8; 16]) -> Result<Option<Committed>, LogError> {
        let database = self.inner.shared.database.get()?;
        let Some(value) = database.events.get(idempotency_key(request_id))? else {
            return Ok(None);
        };
        match decode_committed(&value) {
            Some(committed) => Ok(Some(Committed {
                duplicate: true,
                ..committed
            })),
            None => Err(LogError::Corrupt {
                what: "idempotency".to_owned(),
            }),
        }
    }

    /// Walks the whole chain from seq 1 to the head.
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        self.verify_range(1, Seq::MAX, GENESIS_HASH)
    }

    /// Walks `from..=to` (capped at the head); event `from` must link to `prev_hash`.
    pub fn verify_range(
        &self,
        from: Seq,
        to: Seq,
        prev_hash: Hash,
    ) -> Result<VerifyReport, LogError> {
        let head = self.committed_seq();
        let database = self.inner.shared.database.get()?;
        verify::verify_stored(&database.events, from, to, prev_hash, head)
    }

    pub fn data_keys(&self) -> DataKeys {
        self.inner.shared.data_keys.clone()
    }

    pub fn meta(&self) -> Meta {
        self.inner.shared.meta.clone()
    }

    pub fn path(&self) -> &Path {
        &self.inner.shared.config.path
    }

    /// Whether the writer can write right now, and how often storage failed.
    pub fn storage_health(&self) -> StorageHealth {
        self.inner.shared.storage.health()
    }

    /// A handle that reports [`EventLog::storage_health`] without keeping the log open (for
    /// readiness and metrics collectors that live as long as the log itself).
    pub fn storage_monitor(&self) -> StorageMonitor {
        self.inner.shared.storage.clone()
    }

    /// Appends waiting for the writer (a gauge for metrics).
    pub fn queue_depth(&self) -> usize {
        let depth = self.inner.shared.queue_depth.load(Ordering::Relaxed);
        usize::try_from(depth).unwrap_or(0)
    }

    /// Stops the writer after it answered every append queued before, and waits for it.
    /// Other clones then get [`AppendError::Closed`]. The database closes when the last clone,
    /// [`DataKeys`], [`Meta`] and [`EventIter`] are gone.
    pub fn close(self) {
        self.inner.stop_writer();
    }

    fn committed_seq(&self) -> Seq {
        self.inner.shared.head_seq.load(Ordering::Acquire)
    }

    fn submit(&self, batch: AppendBatch, reply: Reply) -> Result<(), AppendError> {
        self.inner
            .sender
            .send(Message::Append(Request { batch, reply }))
            .map_err(|_| AppendError::Closed)?;
        // Counted after the send, so a non-zero increase means "in the queue"; the writer may
        // count it out first, hence the signed gauge.
        self.inner
            .shared
            .queue_depth
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl fmt::Debug for EventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.path())
            .field("head", &self.committed_seq())
            .finish_non_exhaustive()
    }
}

/// State shared by the handles and the writer.
struct Shared {
    config: LogConfig,
    data_keys: DataKeys,
    meta: Meta,
    /// The open sled database; swapped by the writer when it recovers from a storage failure.
    database: Arc<DatabaseCell>,
    storage: StorageMonitor,
    /// Last durable seq and hash; only the writer changes it.
    head: Mutex<(Seq, Hash)>,
    /// `head.0`, for lock-free read caps.
    head_seq: AtomicU64,
    /// Stream -> version of its last durable event.
    streams: RwLock<HashMap<String, u64>>,
    commits: watch::Sender<Seq>,
    queue_depth: AtomicI64,
}

struct Inner {
    shared: Arc<Shared>,
    sender: mpsc::Sender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Declared last: fields drop in order, so this runs after `shared` is gone.
    _release: ReleaseWait,
}

impl Inner {
    fn stop_writer(&self) {
        // Fails only if the writer is gone already.
        let _ = self.sender.send(Message::Close);
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            if handle.thread().id() == std::thread::current().id() {
                return;
            }
            if handle.join().is_err() {
                tracing::error!("the event log writer panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

// Record kinds share one tree and are told apart by their first byte only.
const _: () = assert!(EVENT_PREFIX != STREAM_PREFIX && EVENT_PREFIX != IDEMPOTENCY_PREFIX);
