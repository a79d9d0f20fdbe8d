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
pub mod private_files;
/// Raw access to the stored bytes, for tamper tests and the benchmarks only.
#[cfg(feature = "testing")]
pub mod raw;
mod recovery;
mod stores;
mod verify;
mod view;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use tokio::sync::{oneshot, watch};

pub use checkpoint::{BackupSummary, CHECKPOINT_PREFIX, Checkpoint};
pub use envelope::{Envelope, EnvelopeDecodeError, EnvelopeView, compute_hash};
pub use error::{AppendError, LogError};
pub use recovery::{StorageHealth, StorageMonitor};
pub use stores::{DataKeys, Meta};
pub use verify::{BadEvent, BadReason, VerifyReport, verify_envelopes};
pub use view::LogView;

use block::{StoredEnvelopes, numbered, stored_envelopes};
use keys::{
    EVENT_PREFIX, HEAD_KEY, IDEMPOTENCY_PREFIX, STREAM_PREFIX, STREAMS_THROUGH_KEY,
    decode_committed, decode_head, decode_version, event_key, idempotency_key, seq_of_event_key,
};
use stores::{Database, DatabaseCell};
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
        let data_keys = store.db.open_tree("data_keys")?;
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
        let data_keys = DataKeys::open(&config.path, &data_keys)?;
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
        *self
            .inner
            .shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        self.inner
            .shared
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .copied()
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

/// Iterator over committed envelopes; holds the database open while it lives.
pub struct EventIter {
    blocks: Option<sled::Iter>,
    current: Option<CurrentBlock>,
    from: Seq,
    end: Seq,
    /// Reported once, instead of any event (the database could not be read).
    failure: Option<LogError>,
    /// Keeps the database it reads open (also across a reopen after a storage failure).
    _database: Option<Arc<Database>>,
}

impl EventIter {
    /// The stored events `from..=end` (`end` is not capped here).
    fn new(from: Seq, end: Seq, database: Arc<Database>) -> EventIter {
        let from = from.max(1);
        let blocks = (from <= end).then(|| {
            // The block holding `from` may start before it.
            let start = block_holding(&database.events, from).unwrap_or(from);
            database.events.range(event_key(start)..=event_key(end))
        });
        EventIter {
            blocks,
            current: None,
            from,
            end,
            failure: None,
            _database: Some(database),
        }
    }

    /// An iterator that yields `error` and ends.
    fn failed(error: LogError) -> EventIter {
        EventIter {
            blocks: None,
            current: None,
            from: 1,
            end: 0,
            failure: Some(error),
            _database: None,
        }
    }

    /// The next stored envelope in range, as its seq and raw bytes.
    fn next_stored(&mut self) -> Option<Result<(Seq, &[u8]), LogError>> {
        if let Some(error) = self.failure.take() {
            return Some(Err(error));
        }
        loop {
            if let Some(block) = &mut self.current {
                let mut envelopes = StoredEnvelopes::resume(&block.value, block.offset);
                let seq = block.next_seq;
                match envelopes.next_range() {
                    None => self.current = None,
                    Some(Err(())) => {
                        self.stop();
                        return Some(Err(damaged_block(seq)));
                    }
                    Some(Ok(_)) if seq > self.end => {
                        self.stop();
                        return None;
                    }
                    Some(Ok(range)) => {
                        block.offset = envelopes.offset();
                        block.next_seq += 1;
                        if seq >= self.from {
                            let block = self.current.as_ref()?;
                            return Some(Ok((seq, &block.value[range])));
                        }
                    }
                }
                continue;
            }
            match self.blocks.as_mut()?.next()? {
                Ok((key, value)) => {
                    self.current = Some(CurrentBlock {
                        next_seq: seq_of_event_key(&key).unwrap_or(0),
                        value,
                        offset: 0,
                    });
                }
                Err(error) => {
                    self.stop();
                    return Some(Err(error.into()));
                }
            }
        }
    }

    /// The next envelope, decoded in place (nothing allocated): for readers of the whole log.
    pub fn next_view(&mut self) -> Option<Result<EnvelopeView<'_>, LogError>> {
        Some(self.next_stored()?.and_then(|(seq, stored)| {
            EnvelopeView::from_bytes(stored).map_err(|error| LogError::Decode {
                seq,
                reason: error.reason,
            })
        }))
    }

    fn stop(&mut self) {
        self.blocks = None;
        self.current = None;
    }
}

/// The block an [`EventIter`] is reading.
struct CurrentBlock {
    /// The seq of the next envelope in it.
    next_seq: Seq,
    value: sled::IVec,
    /// Where the next envelope's framing starts.
    offset: usize,
}

impl Iterator for EventIter {
    type Item = Result<Envelope, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.next_stored()?
                .and_then(|(seq, stored)| decode_stored(seq, stored)),
        )
    }
}

impl fmt::Debug for EventIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventIter").finish_non_exhaustive()
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
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
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

/// sled releases its lock on `<path>/db` a moment after the last handle is dropped (background
/// I/O threads hold the file briefly). When the last handle of this log goes, wait for that, so
/// that closing and reopening in one process works.
struct ReleaseWait {
    database: Arc<DatabaseCell>,
    path: PathBuf,
}

impl Drop for ReleaseWait {
    fn drop(&mut self) {
        if Arc::strong_count(&self.database) > 1 {
            return; // A Meta still holds the database open.
        }
        let Some(database) = self.database.take() else {
            return;
        };
        if Arc::strong_count(&database) > 1 {
            return; // An EventIter still holds the database open.
        }
        drop(database);
        wait_for_lock_release(&self.path);
    }
}

/// Waits (at most [`LOCK_RELEASE_WAIT`]) until no sled instance holds `<path>/db`'s lock.
fn wait_for_lock_release(path: &Path) {
    let Ok(file) = File::open(path.join("db")) else {
        return;
    };
    let deadline = Instant::now() + LOCK_RELEASE_WAIT;
    while file.try_lock().is_err() {
        if Instant::now() >= deadline {
            tracing::debug!(path = %path.display(), "sled still holds the database lock");
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Dropping `file` releases the probe's lock.
}

const LOCK_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Opens the log's sled database and the trees the log uses, in a private (0700) directory.
fn open_store(config: &LogConfig) -> Result<Database, LogError> {
    private_files::create_dir_all(&config.path)?;
    let db = open_database(&config.path)?;
    let events = db.open_tree("events")?;
    let meta = db.open_tree("meta")?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(config.path.join("db"))?;
    // sled creates its files with the process umask; the directory is 0700 anyway.
    private_files::restrict_tree(&config.path)?;
    sync_directory(&config.path)?;
    Ok(Database {
        db,
        events,
        meta,
        file,
        durability: config.durability,
    })
}

/// Opens sled, waiting briefly if a handle of this process is still releasing the lock. A lock
/// still held after [`LOCK_RELEASE_WAIT`] is [`LogError::Locked`]: sled reports it only as text,
/// so the lock is recognised by probing `<path>/db` ourselves, never by reading sled's message.
fn open_database(path: &Path) -> Result<sled::Db, LogError> {
    let deadline = Instant::now() + LOCK_RELEASE_WAIT;
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(error)) if database_lock_is_held(path) => {
                if Instant::now() >= deadline {
                    tracing::debug!(path = %path.display(), %error, "the database lock is held");
                    return Err(LogError::Locked {
                        dir: path.to_path_buf(),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return Ok(result?),
        }
    }
}

/// Whether another open file (another process, or a sled instance of this one) holds the lock
/// sled takes on `<path>/db`. The probe's own lock, if it got one, is released on return.
fn database_lock_is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path.join("db")) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

fn decode_stored(seq: Seq, value: &[u8]) -> Result<Envelope, LogError> {
    Envelope::from_bytes(value).map_err(|error| LogError::Decode {
        seq,
        reason: error.reason,
    })
}

/// The first seq of the block that holds `seq` (the last block starting at or before it).
fn block_holding(events: &sled::Tree, seq: Seq) -> Option<Seq> {
    events
        .range(event_key(0)..=event_key(seq))
        .keys()
        .next_back()
        .and_then(Result::ok)
        .and_then(|key| seq_of_event_key(&key))
}

fn damaged_block(seq: Seq) -> LogError {
    LogError::Decode {
        seq,
        reason: "the stored block's framing is damaged".to_owned(),
    }
}

/// The last stored envelope: its seq and its hash (the last 32 bytes of its encoding).
fn last_stored(events: &sled::Tree) -> Result<Option<(Seq, Hash)>, LogError> {
    let Some((key, value)) = events
        .range(event_key(0)..=event_key(Seq::MAX))
        .next_back()
        .transpose()?
    else {
        return Ok(None);
    };
    let mut last = None;
    for (seq, stored) in numbered(seq_of_event_key(&key).unwrap_or(0), &value) {
        let stored = stored.map_err(|()| damaged_block(seq))?;
        let hash = stored
            .len()
            .checked_sub(32)
            .and_then(|start| Hash::try_from(&stored[start..]).ok())
            .ok_or(LogError::Decode {
                seq,
                reason: "shorter than a hash".to_owned(),
            })?;
        last = Some((seq, hash));
    }
    Ok(last)
}

/// The head record written with every group; falls back to the last stored event.
fn load_head(events: &sled::Tree) -> Result<(Seq, Hash), LogError> {
    let last = last_stored(events)?;
    if let Some(record) = events.get(HEAD_KEY)? {
        let head = decode_head(&record).ok_or_else(|| LogError::Corrupt {
            what: "head".to_owned(),
        })?;
        let last_seq = last.map(|(seq, _)| seq);
        if last_seq != Some(head.0) {
            tracing::warn!(
                recorded = head.0,
                last_stored = last_seq,
                "the last stored event is not the recorded head; run verify"
            );
        }
        return Ok(head);
    }
    match last {
        None => Ok((0, GENESIS_HASH)),
        Some(last) => {
            tracing::warn!(seq = last.0, "no head record; using the last stored event");
            Ok(last)
        }
    }
}

/// The stream index, brought up to `head` with the versions of the events committed after it
/// was last written.
fn load_streams(
    events: &sled::Tree,
    head: Seq,
    database: &Arc<Database>,
) -> Result<HashMap<String, u64>, LogError> {
    let mut streams = HashMap::new();
    for item in events.scan_prefix([STREAM_PREFIX]) {
        let (key, value) = item?;
        let stream = std::str::from_utf8(&key[1..]).ok();
        let version = decode_version(&value);
        let (Some(stream), Some(version)) = (stream, version) else {
            return Err(LogError::Corrupt {
                what: "stream version".to_owned(),
            });
        };
        streams.insert(stream.to_owned(), version);
    }
    let indexed_through = match events.get(STREAMS_THROUGH_KEY)? {
        Some(value) => decode_version(&value).ok_or_else(|| LogError::Corrupt {
            what: "stream index position".to_owned(),
        })?,
        // Logs written before the index was lazy wrote every version with its group.
        None if !streams.is_empty() => head,
        None => 0,
    };
    let mut later = EventIter::new(indexed_through + 1, head, database.clone());
    while let Some(envelope) = later.next_view() {
        // A damaged event cannot say its stream; verify reports it.
        if let Ok(envelope) = envelope {
            streams.insert(envelope.stream.to_owned(), envelope.version);
        }
    }
    Ok(streams)
}

fn load_idempotency(events: &sled::Tree) -> Result<HashMap<[u8; 16], Committed>, LogError> {
    let mut records = HashMap::new();
    for item in events.scan_prefix([IDEMPOTENCY_PREFIX]) {
        let (key, value) = item?;
        let request_id = <[u8; 16]>::try_from(&key[1..]).ok();
        let committed = decode_committed(&value);
        let (Some(request_id), Some(committed)) = (request_id, committed) else {
            return Err(LogError::Corrupt {
                what: "idempotency".to_owned(),
            });
        };
        records.insert(request_id, committed);
    }
    Ok(records)
}

/// Makes a freshly created database directory entry durable too.
fn sync_directory(path: &Path) -> Result<(), LogError> {
    if cfg!(unix) {
        File::open(path)?.sync_all()?;
    }
    Ok(())
}

// Record kinds share one tree and are told apart by their first byte only.
const _: () = assert!(EVENT_PREFIX != STREAM_PREFIX && EVENT_PREFIX != IDEMPOTENCY_PREFIX);
