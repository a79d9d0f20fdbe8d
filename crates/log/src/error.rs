use std::path::PathBuf;

use crate::{ExpectedVersion, Seq};

/// Why an append was refused. Only `Storage` and `Closed` leave the outcome of the log itself in
/// doubt; every other variant means "nothing was written, fix the request".
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(
        "stream {stream:?} is at version {actual:?} but the append expected {expected:?}; reload the stream and retry"
    )]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    #[error("an append batch must contain at least one event")]
    Empty,
    #[error("an encoded event is {bytes} bytes, over the 64 KiB limit; store large data elsewhere")]
    TooLarge { bytes: usize },
    #[error("the log could not store the batch: {0}")]
    Storage(#[from] LogError),
    #[error("the log is closed")]
    Closed,
}

/// Storage-level failures.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("sled storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O error on the log files: {0}")]
    Io(#[from] std::io::Error),
    #[error("event {seq} cannot be decoded ({reason}); run verify to locate the damage")]
    Decode { seq: Seq, reason: String },
    #[error("corrupt {what} record in the log; run verify and restore from a backup")]
    Corrupt { what: String },
    #[error("the system random number generator failed")]
    Random,
    #[error("the log writer stopped ({reason}); reopen the log")]
    WriterStopped { reason: String },
    /// Appends are refused until storage works again; the writer retries by itself.
    #[error(
        "the log's storage is failing ({reason}); appends are refused until it recovers (free disk space or fix the device; no restart needed)"
    )]
    StorageUnavailable { reason: String },
    /// The batch could not be made durable, and what may have reached the disk could not be
    /// undone yet: it is not committed, and never will be unless the process stops before
    /// storage recovers (see `docs/operations.md`).
    #[error(
        "the batch was not committed: storage failed ({reason}); if the service restarts before storage recovers it may still appear, so retry with the same request id"
    )]
    NotConfirmed { reason: String },
    #[error("the log's storage is being reopened after a storage failure; retry shortly")]
    Reopening,
    /// Another process (or another open log of this one) holds the database's lock.
    #[error("the log directory {} is in use by another process; stop it first", dir.display())]
    Locked { dir: PathBuf },
}

impl LogError {
    /// A copy for answering several waiters with the same failure (`io::Error` is not `Clone`).
    pub(crate) fn duplicate(&self) -> LogError {
        match self {
            LogError::Sled(error) => LogError::Sled(error.clone()),
            LogError::Io(error) => {
                LogError::Io(std::io::Error::new(error.kind(), error.to_string()))
            }
            LogError::Decode { seq, reason } => LogError::Decode {
                seq: *seq,
                reason: reason.clone(),
            },
            LogError::Corrupt { what } => LogError::Corrupt { what: what.clone() },
            LogError::Random => LogError::Random,
            LogError::WriterStopped { reason } => LogError::WriterStopped {
                reason: reason.clone(),
            },
            LogError::StorageUnavailable { reason } => LogError::StorageUnavailable {
                reason: reason.clone(),
            },
            LogError::NotConfirmed { reason } => LogError::NotConfirmed {
                reason: reason.clone(),
            },
            LogError::Reopening => LogError::Reopening,
            LogError::Locked { dir } => LogError::Locked { dir: dir.clone() },
        }
    }
}
