//! Mutable side trees that live next to the chain but outside it.

use std::fmt;
use std::fs::File;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Durability, LogError};

/// Makes every earlier write to any tree of the database durable.
pub(crate) struct DurableSync {
    pub(crate) db: sled::Db,
    /// `<path>/db`, kept open for `sync_data`: sled's own flush uses `sync_file_range` on Linux,
    /// which survives a killed process but not necessarily a power cut.
    pub(crate) file: File,
    pub(crate) durability: Durability,
}

impl DurableSync {
    pub(crate) fn make_durable(&self) -> Result<(), LogError> {
        self.db.flush()?;
        if self.durability == Durability::Full {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Wrapped data keys of external credentials (tree `data_keys`). Removing one is
/// crypto-shredding: the ciphertext in the log can no longer be opened.
#[derive(Clone)]
pub struct DataKeys {
    tree: sled::Tree,
    sync: Arc<DurableSync>,
    /// Serialises writers so `replace_all` cannot interleave with `put`/`remove`.
    write_lock: Arc<Mutex<()>>,
}

impl DataKeys {
    pub(crate) fn new(tree: sled::Tree, sync: Arc<DurableSync>) -> DataKeys {
        DataKeys {
            tree,
            sync,
            write_lock: Arc::new(Mutex::new(())),
        }
    }

    /// Stores (or replaces) a wrapped data key; durable when it returns.
    pub fn put(&self, id: &str, wrapped: &[u8]) -> Result<(), LogError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.tree.insert(id.as_bytes(), wrapped)?;
        self.sync.make_durable()
    }

    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.tree.get(id.as_bytes())?.map(|value| value.to_vec()))
    }

    /// Destroys a wrapped data key; durable when it returns. `false` if there was none.
    ///
    /// The bytes may linger in sled's log segments until they are reused; they are wrapped by
    /// the master key, so shredding holds against anyone without it.
    pub fn remove(&self, id: &str) -> Result<bool, LogError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let existed = self.tree.remove(id.as_bytes())?.is_some();
        self.sync.make_durable()?;
        Ok(existed)
    }

    /// Every entry, ordered by id.
    pub fn iter(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        self.tree
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let id = String::from_utf8(key.to_vec()).map_err(|_| LogError::Corrupt {
                    what: "data key id".to_owned(),
                })?;
                Ok((id, value.to_vec()))
            })
            .collect()
    }

    /// Atomically replaces the whole set (master-key rotation re-wraps every key); durable when
    /// it returns. Ids absent from `entries` are removed.
    pub fn replace_all(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), LogError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        for key in self.tree.iter().keys() {
            batch.remove(key?);
        }
        // Later writes in a batch win, so re-inserted ids survive the removals above.
        for (id, wrapped) in entries {
            batch.insert(id.as_bytes(), wrapped);
        }
        self.tree.apply_batch(batch)?;
        self.sync.make_durable()
    }
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeys")
            .field("entries", &self.tree.len())
            .finish_non_exhaustive()
    }
}

/// Small mutable records outside the chain (tree `meta`): checkpoints, relay positions,
/// snapshot markers.
#[derive(Clone)]
pub struct Meta {
    tree: sled::Tree,
    sync: Arc<DurableSync>,
}

impl Meta {
    pub(crate) fn new(tree: sled::Tree, sync: Arc<DurableSync>) -> Meta {
        Meta { tree, sync }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.tree.get(key.as_ref())?.map(|value| value.to_vec()))
    }

    /// Durable when it returns.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), LogError> {
        self.tree.insert(key.as_ref(), value.as_ref())?;
        self.sync.make_durable()
    }

    /// Durable when it returns. `false` if there was nothing under `key`.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool, LogError> {
        let existed = self.tree.remove(key.as_ref())?.is_some();
        self.sync.make_durable()?;
        Ok(existed)
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("entries", &self.tree.len())
            .finish_non_exhaustive()
    }
}
