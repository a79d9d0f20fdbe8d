//! Hashing a multi-part fetch's content in order while its parts complete in any order.
//!
//! Two [`InOrderHasher`]s follow the same file: one computes the SHA-256 (and SHA-1), the other
//! the MD5, the CRCs and the per-part checksums ([`ContentHasher::split`]), so neither hash
//! waits for the other. Each reads completed parts back from the page cache on a blocking
//! thread as soon as they join the in-order prefix, so hashing overlaps the transfer instead
//! of following it.
//!
//! Guarantee: [`OrderedHashing::finish`] returns the digests of bytes `0..size` exactly; an
//! abandoned fetch stops its hashing threads (the abort token fires on drop).

use std::fs::File;
use std::sync::Arc;

use keyledger_connect::{InOrderHasher, Step};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::S3Error;
use crate::fetch::content_hash::ContentHasher;
use crate::fetch::digest::Digests;

pub(crate) struct OrderedHashing {
    halves: [Arc<Half>; 2],
    abort: CancellationToken,
}

/// One of the two hashers, with the blocking threads that advance it.
struct Half {
    stream: InOrderHasher<ContentHasher>,
    finished: Mutex<Option<ContentHasher>>,
    read_backs: Mutex<Vec<JoinHandle<std::io::Result<()>>>>,
    file: Arc<File>,
}

impl OrderedHashing {
    pub fn start(file: Arc<File>, size: u64, hasher: ContentHasher) -> OrderedHashing {
        let (first, second) = hasher.split();
        let half = |hasher| {
            Arc::new(Half {
                stream: InOrderHasher::new(size, hasher),
                finished: Mutex::new(None),
                read_backs: Mutex::new(Vec::new()),
                file: Arc::clone(&file),
            })
        };
        OrderedHashing {
            halves: [half(first), half(second)],
            abort: CancellationToken::new(),
        }
    }

    /// Bytes `start..end` are on disk.
    pub fn written(&self, start: u64, end: u64) {
        for half in &self.halves {
            let step = half.stream.written(start, end, None);
            half.follow(step, &self.abort);
        }
    }

    /// Waits for the hash of bytes `0..size` (every byte must have been reported).
    pub async fn finish(self, size: u64) -> Result<Digests, S3Error> {
        // An empty object has no part to report.
        self.written(size, size);
        let mut merged: Option<ContentHasher> = None;
        for half in &self.halves {
            loop {
                let handles = std::mem::take(&mut *half.read_backs.lock());
                if handles.is_empty() {
                    break;
                }
                for handle in handles {
                    match handle.await {
                        Ok(result) => result?,
                        Err(join_error) => {
                            return Err(S3Error::Io(std::io::Error::other(join_error)));
                        }
                    }
                }
            }
            let Some(hasher) = half.finished.lock().take() else {
                return Err(S3Error::Internal(format!(
                    "the hash did not cover the {size} bytes"
                )));
            };
            merged = Some(match merged {
                Some(first) => first.merge(hasher),
                None => hasher,
            });
        }
        let Some(hasher) = merged else {
            return Err(S3Error::Internal("the hashing threads are gone".to_owned()));
        };
        Ok(hasher.finish())
    }
}

impl Drop for OrderedHashing {
    fn drop(&mut self) {
        // An abandoned fetch must not leave a thread reading a large file.
        self.abort.cancel();
    }
}

impl Half {
    fn follow(self: &Arc<Self>, step: Step<ContentHasher>, abort: &CancellationToken) {
        match step {
            Step::Idle => {}
            Step::Finished(hasher) => *self.finished.lock() = Some(hasher),
            Step::ReadBack(hasher) => {
                let (this, abort) = (Arc::clone(self), abort.clone());
                let handle = tokio::task::spawn_blocking(move || {
                    if let Step::Finished(hasher) =
                        this.stream.read_back(hasher, &this.file, &abort)?
                    {
                        *this.finished.lock() = Some(hasher);
                    }
                    Ok(())
                });
                self.read_backs.lock().push(handle);
            }
        }
    }
}
