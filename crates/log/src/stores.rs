//! Mutable side trees that live next to the chain but outside it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::{Durability, LogError};

/// One open sled database of the log: its trees and the file `sync_data` is called on.
pub(crate) struct Database {
    pub(crate) db: sled::Db,
    pub(crate) events: sled::Tree,
    pub(crate) meta: sled::Tree,
    /// `<path>/db`, kept open for `sync_data`: sled's own flush uses `sync_file_range` on Linux,
    /// which survives a killed process but not necessarily a power cut.
    pub(crate) file: File,
    pub(crate) durability: Durability,
}

impl Database {
    /// Makes every earlier write to any tree of the database durable.
    pub(crate) fn make_durable(&self) -> Result<(), LogError> {
        self.db.flush()?;
        if self.durability == Durability::Full {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// The database currently in use. After a storage failure sled refuses every later write
/// (it latches the first I/O error until it is reopened), so the writer swaps in a freshly
/// opened database; in between the cell is empty and reads fail with
/// [`LogError::Reopening`].
#[derive(Default)]
pub(crate) struct DatabaseCell {
    current: RwLock<Option<Arc<Database>>>,
}

impl DatabaseCell {
    pub(crate) fn new(database: Database) -> DatabaseCell {
        DatabaseCell {
            current: RwLock::new(Some(Arc::new(database))),
        }
    }

    pub(crate) fn get(&self) -> Result<Arc<Database>, LogError> {
        self.current.read().clone().ok_or(LogError::Reopening)
    }

    /// Empties the cell; the caller drops the database once nobody else holds it.
    pub(crate) fn take(&self) -> Option<Arc<Database>> {
        self.current.write().take()
    }

    pub(crate) fn put(&self, database: Arc<Database>) {
        *self.current.write() = Some(database);
    }
}

/// Wrapped data keys of external credentials. Removing one is crypto-shredding: the ciphertext
/// in the log can no longer be opened.
///
/// They live in their own small file, `data_keys.bin` in the log directory, rewritten whole
/// (temporary file, fsync, rename, fsync of the directory) on every change — not in sled, whose
/// log-structured segments keep removed values on disk until space is reused: a copy of the data
/// directory taken after a deletion must not hold the destroyed key anywhere.
#[derive(Clone)]
pub struct DataKeys {
    inner: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    path: PathBuf,
}

const DATA_KEYS_MAGIC: &[u8; 8] = b"KLDKEYS1";

impl DataKeys {
    /// Loads `data_keys.bin` (absent: no data keys yet).
    pub(crate) fn open(dir: &Path) -> Result<DataKeys, LogError> {
        let path = dir.join("data_keys.bin");
        let entries = match std::fs::read(&path) {
            Ok(bytes) => decode_data_keys(&bytes)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(err.into()),
        };
        let keys = DataKeys {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            path,
        };
        *keys.lock() = entries;
        Ok(keys)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.inner.lock()
    }

    /// Stores (or replaces) a wrapped data key; durable when it returns.
    pub fn put(&self, id: &str, wrapped: &[u8]) -> Result<(), LogError> {
        let mut entries = self.lock();
        let mut next = entries.clone();
        next.insert(id.to_owned(), wrapped.to_vec());
        self.persist(&next)?;
        *entries = next;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.lock().get(id).cloned())
    }

    /// Destroys a wrapped data key; durable when it returns. `false` if there was none.
    pub fn remove(&self, id: &str) -> Result<bool, LogError> {
        let mut entries = self.lock();
        if !entries.contains_key(id) {
            return Ok(false);
        }
        let mut next = entries.clone();
        next.remove(id);
        self.persist(&next)?;
        *entries = next;
        Ok(true)
    }

    /// Every entry, ordered by id.
    pub fn iter(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        Ok(self
            .lock()
            .iter()
            .map(|(id, wrapped)| (id.clone(), wrapped.clone()))
            .collect())
    }

    /// Atomically replaces the whole set (master-key rotation re-wraps every key); durable when
    /// it returns. Ids absent from `entries` are removed.
    pub fn replace_all(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), LogError> {
        let mut current = self.lock();
        let next: BTreeMap<String, Vec<u8>> = entries.into_iter().collect();
        self.persist(&next)?;
        *current = next;
        Ok(())
    }

    /// The file holding the keys, for backups.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn persist(&self, entries: &BTreeMap<String, Vec<u8>>) -> Result<(), LogError> {
        let mut bytes = Vec::with_capacity(16 + entries.len() * 96);
        bytes.extend_from_slice(DATA_KEYS_MAGIC);
        bytes.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (id, wrapped) in entries {
            bytes.extend_from_slice(&(id.len() as u32).to_be_bytes());
            bytes.extend_from_slice(id.as_bytes());
            bytes.extend_from_slice(&(wrapped.len() as u32).to_be_bytes());
            bytes.extend_from_slice(wrapped);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        bytes.extend_from_slice(digest.as_ref());
        let temporary = self.path.with_extension("bin.tmp");
        {
            let mut file = crate::private_files::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

pub(crate) fn decode_data_keys(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, LogError> {
    let corrupt = || LogError::Corrupt {
        what: "data_keys.bin".to_owned(),
    };
    if bytes.len() < 8 + 4 + 32 || &bytes[..8] != DATA_KEYS_MAGIC {
        return Err(corrupt());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if ring::digest::digest(&ring::digest::SHA256, body).as_ref() != digest {
        return Err(corrupt());
    }
    let mut rest = &body[8..];
    let mut take = |n: usize| -> Result<&[u8], LogError> {
        if rest.len() < n {
            return Err(corrupt());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
    let mut entries = BTreeMap::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
        let id = String::from_utf8(take(len)?.to_vec()).map_err(|_| corrupt())?;
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
        entries.insert(id, take(len)?.to_vec());
    }
    Ok(entries)
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeys")
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}

/// Small mutable records outside the chain (tree `meta`): checkpoints, relay positions,
/// snapshot markers.
#[derive(Clone)]
pub struct Meta {
    database: Arc<DatabaseCell>,
}

impl Meta {
    pub(crate) fn new(database: Arc<DatabaseCell>) -> Meta {
        Meta { database }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, LogError> {
        let database = self.database.get()?;
        Ok(database.meta.get(key.as_ref())?.map(|value| value.to_vec()))
    }

    /// Durable when it returns.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), LogError> {
        let database = self.database.get()?;
        database.meta.insert(key.as_ref(), value.as_ref())?;
        database.make_durable()
    }

    /// Durable when it returns. `false` if there was nothing under `key`.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool, LogError> {
        let database = self.database.get()?;
        let existed = database.meta.remove(key.as_ref())?.is_some();
        database.make_durable()?;
        Ok(existed)
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.database.get().map(|database| database.meta.len()).ok();
        f.debug_struct("Meta")
            .field("entries", &entries)
            .finish_non_exhaustive()
    }
}
