//! [`LogView`]: the log as its readers get it — read, verify, follow — without a way to append.
//!
//! The vault owns the only appending handle and hands out views (`Vault::log()`), so every
//! event that enters the chain went through `decide`. A view is a cheap clone of the handle; it
//! keeps the log open as long as it lives, as an [`EventLog`] clone does.

use std::path::Path;

use tokio::sync::watch;

use crate::{
    Checkpoint, Committed, Envelope, EventIter, EventLog, Hash, LogError, Meta, Seq, StorageHealth,
    VerifyReport,
};

/// A read-only handle on an [`EventLog`]: no append, no data-key or checkpoint writes.
#[derive(Clone)]
pub struct LogView {
    log: EventLog,
}

impl std::fmt::Debug for LogView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogView")
            .field("path", &self.path())
            .field("head", &self.head().0)
            .finish()
    }
}

impl EventLog {
    /// A read-only view of this log.
    pub fn view(&self) -> LogView {
        LogView { log: self.clone() }
    }
}

impl LogView {
    /// See [`EventLog::head`].
    pub fn head(&self) -> (Seq, Hash) {
        self.log.head()
    }

    /// See [`EventLog::read_from`].
    pub fn read_from(&self, from: Seq) -> EventIter {
        self.log.read_from(from)
    }

    /// See [`EventLog::read_range`].
    pub fn read_range(&self, from: Seq, to: Seq) -> EventIter {
        self.log.read_range(from, to)
    }

    /// See [`EventLog::get`].
    pub fn get(&self, seq: Seq) -> Result<Option<Envelope>, LogError> {
        self.log.get(seq)
    }

    /// See [`EventLog::subscribe`].
    pub fn subscribe(&self) -> watch::Receiver<Seq> {
        self.log.subscribe()
    }

    /// See [`EventLog::stream_version`].
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        self.log.stream_version(stream)
    }

    /// See [`EventLog::committed_request`].
    pub fn committed_request(&self, request_id: &[u8; 16]) -> Result<Option<Committed>, LogError> {
        self.log.committed_request(request_id)
    }

    /// See [`EventLog::verify`].
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        self.log.verify()
    }

    /// See [`EventLog::verify_range`].
    pub fn verify_range(
        &self,
        from: Seq,
        to: Seq,
        prev_hash: Hash,
    ) -> Result<VerifyReport, LogError> {
        self.log.verify_range(from, to, prev_hash)
    }

    /// See [`EventLog::checkpoints`].
    pub fn checkpoints(&self, from: Seq, to: Seq) -> Result<Vec<Checkpoint>, LogError> {
        self.log.checkpoints(from, to)
    }

    /// See [`EventLog::last_checkpoint`].
    pub fn last_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        self.log.last_checkpoint()
    }

    /// The wrapped data key stored under `id`, if any (read only: destroying one is the
    /// vault's business).
    pub fn data_key(&self, id: &str) -> Result<Option<Vec<u8>>, LogError> {
        self.log.data_keys().get(id)
    }

    /// The ids of every stored data key (not the keys).
    pub fn data_key_ids(&self) -> Result<Vec<String>, LogError> {
        Ok(self
            .log
            .data_keys()
            .iter()?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// The side store beside the chain, where readers keep their own positions (the relay's
    /// checkpoints). Nothing written there enters the hash chain.
    pub fn meta(&self) -> Meta {
        self.log.meta()
    }

    /// See [`EventLog::path`].
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// See [`EventLog::storage_health`].
    pub fn storage_health(&self) -> StorageHealth {
        self.log.storage_health()
    }

    /// See [`EventLog::queue_depth`].
    pub fn queue_depth(&self) -> usize {
        self.log.queue_depth()
    }
}
