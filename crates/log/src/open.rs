//! Opening the log: sled's lock (a held lock is the typed `Locked`), the head, and the stream
//! and idempotency indexes rebuilt from what is stored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::block::numbered;
use crate::keys::{
    HEAD_KEY, IDEMPOTENCY_PREFIX, STREAM_PREFIX, STREAMS_THROUGH_KEY, decode_committed,
    decode_head, decode_version, event_key, seq_of_event_key,
};
use crate::read::{EventIter, damaged_block};
use crate::stores::{Database, DatabaseCell};
use crate::{Committed, GENESIS_HASH, Hash, LogConfig, LogError, Seq, private_files};

/// sled releases its lock on `<path>/db` a moment after the last handle is dropped (background
/// I/O threads hold the file briefly). When the last handle of this log goes, wait for that, so
/// that closing and reopening in one process works.
pub(crate) struct ReleaseWait {
    pub(crate) database: Arc<DatabaseCell>,
    pub(crate) path: PathBuf,
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
pub(crate) fn wait_for_lock_release(path: &Path) {
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
pub(crate) fn open_store(config: &LogConfig) -> Result<Database, LogError> {
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

/// The last stored envelope: its seq and its hash (the last 32 bytes of its encoding).
pub(crate) fn last_stored(events: &sled::Tree) -> Result<Option<(Seq, Hash)>, LogError> {
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
pub(crate) fn load_head(events: &sled::Tree) -> Result<(Seq, Hash), LogError> {
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
pub(crate) fn load_streams(
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
        // Never written yet: every version comes from the events.
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

pub(crate) fn load_idempotency(
    events: &sled::Tree,
) -> Result<HashMap<[u8; 16], Committed>, LogError> {
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
pub(crate) fn sync_directory(path: &Path) -> Result<(), LogError> {
    if cfg!(unix) {
        File::open(path)?.sync_all()?;
    }
    Ok(())
}
