//! Hashing a file in order while its bytes land in any order.
//!
//! Guarantees:
//! - The hasher sees every byte of `0..size` exactly once, in order, whatever the order of the
//!   writes reported to it; it finishes only when all of them were reported.
//! - Memory stays bounded: the hasher never holds data. Bytes reported at the frontier are
//!   hashed from the caller's memory (while still in the CPU's cache); bytes that land ahead of
//!   it are only recorded, and whoever later reaches them reads them back from the page cache.
//!
//! How: one thread at a time holds the hasher (the "baton") and advances the frontier; the
//! others only record ranges. [`InOrderHasher::written`] says what the reporting thread must do
//! next ([`Step`]); a [`Step::ReadBack`] hands it the baton, to be passed to
//! [`InOrderHasher::read_back`] on a thread that may block.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Read size when hashing from disk: small enough that the bytes just copied are still in the
/// CPU's cache when the hash reads them.
const READ_BACK_BYTES: usize = 128 << 10;

/// Anything that digests bytes in order (SHA-256, a bundle of checksums).
pub trait Digest: Send {
    fn update(&mut self, bytes: &[u8]);
}

/// The in-order hash of one file; see the module documentation.
#[derive(Debug)]
pub struct InOrderHasher<H> {
    state: Mutex<State<H>>,
}

#[derive(Debug)]
struct State<H> {
    frontier: u64,
    end: u64,
    /// `None` while a thread is hashing, and after the end.
    hasher: Option<H>,
    /// Written but not yet hashed ranges, `start → end`, merged when adjacent.
    pending: BTreeMap<u64, u64>,
    done: bool,
}

/// What the thread that reported a write must do next.
#[derive(Debug)]
pub enum Step<H> {
    Idle,
    /// Every byte is hashed: here is the hasher, to finish.
    Finished(H),
    /// Hash the written ranges at the frontier from disk ([`InOrderHasher::read_back`]); the
    /// caller now holds the hasher.
    ReadBack(H),
}

impl<H: Digest> InOrderHasher<H> {
    /// Hashes `0..size` with `hasher`.
    pub fn new(size: u64, hasher: H) -> Self {
        Self {
            state: Mutex::new(State {
                frontier: 0,
                end: size,
                hasher: Some(hasher),
                pending: BTreeMap::new(),
                done: false,
            }),
        }
    }

    /// Records that `[start, end)` is on disk; `data` holds those bytes if still in memory.
    /// Reporting `[size, size)` finishes an empty file.
    pub fn written(&self, start: u64, end: u64, data: Option<&[Bytes]>) -> Step<H> {
        let mut state = self.state.lock();
        if state.done {
            return Step::Idle;
        }
        if end > start {
            insert_range(&mut state.pending, start, end);
        }
        if state.hasher.is_none()
            || (state.frontier != state.end && !state.pending.contains_key(&state.frontier))
        {
            return Step::Idle;
        }
        let Some(mut hasher) = state.hasher.take() else {
            return Step::Idle;
        };
        if let Some(frames) = data
            && start == state.frontier
            && frames.iter().map(|frame| frame.len() as u64).sum::<u64>() == end - start
        {
            let run_end = state.pending.remove(&start).unwrap_or(end);
            if run_end > end {
                state.pending.insert(end, run_end);
            }
            drop(state);
            for frame in frames {
                hasher.update(frame);
            }
            state = self.state.lock();
            state.frontier = end;
        }
        if state.frontier == state.end {
            state.done = true;
            return Step::Finished(hasher);
        }
        if state.pending.contains_key(&state.frontier) {
            return Step::ReadBack(hasher);
        }
        state.hasher = Some(hasher);
        Step::Idle
    }

    /// Holding the hasher, hashes from `data` every written range at the frontier, then hands
    /// the hasher back (or finishes). Stops, dropping the hasher, once `abort` fires. Blocking.
    pub fn read_back(
        &self,
        mut hasher: H,
        data: &File,
        abort: &CancellationToken,
    ) -> std::io::Result<Step<H>> {
        let mut buffer = vec![0u8; READ_BACK_BYTES];
        loop {
            let (from, to) = {
                let mut state = self.state.lock();
                if state.frontier == state.end {
                    state.done = true;
                    return Ok(Step::Finished(hasher));
                }
                let frontier = state.frontier;
                match state.pending.remove(&frontier) {
                    Some(to) => (frontier, to),
                    None => {
                        state.hasher = Some(hasher);
                        return Ok(Step::Idle);
                    }
                }
            };
            let mut position = from;
            while position < to {
                if abort.is_cancelled() {
                    return Ok(Step::Idle);
                }
                let len = (to - position).min(READ_BACK_BYTES as u64) as usize;
                data.read_exact_at(&mut buffer[..len], position)?;
                hasher.update(&buffer[..len]);
                position += len as u64;
            }
            self.state.lock().frontier = to;
        }
    }
}

fn insert_range(pending: &mut BTreeMap<u64, u64>, mut start: u64, mut end: u64) {
    if let Some((&before_start, &before_end)) = pending.range(..=start).next_back()
        && before_end >= start
    {
        pending.remove(&before_start);
        start = before_start;
        end = end.max(before_end);
    }
    while let Some((&after_start, &after_end)) = pending.range(start..).next() {
        if after_start > end {
            break;
        }
        pending.remove(&after_start);
        end = end.max(after_end);
    }
    pending.insert(start, end);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sha256(ring::digest::Context);

    impl Digest for Sha256 {
        fn update(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }

    #[test]
    fn ranges_merge() {
        let mut pending = BTreeMap::new();
        for (start, end) in [(10, 20), (30, 40), (20, 30), (50, 60), (45, 50)] {
            insert_range(&mut pending, start, end);
        }
        assert_eq!(
            pending.into_iter().collect::<Vec<_>>(),
            [(10, 40), (45, 60)]
        );
    }

    /// `writes`: (start, end, whether the bytes are passed from memory).
    fn check(writes: &[(usize, usize, bool)], size: usize) {
        let bytes: Vec<u8> = (0..size as u32).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("data"))
            .unwrap();
        file.write_all_at(&bytes, 0).unwrap();
        let stream = InOrderHasher::new(
            size as u64,
            Sha256(ring::digest::Context::new(&ring::digest::SHA256)),
        );
        let abort = CancellationToken::new();
        let mut digest = None;
        for &(start, end, in_memory) in writes {
            let frames = vec![
                Bytes::copy_from_slice(&bytes[start..(start + end) / 2]),
                Bytes::copy_from_slice(&bytes[(start + end) / 2..end]),
            ];
            let mut step = stream.written(
                start as u64,
                end as u64,
                in_memory.then_some(frames.as_slice()),
            );
            while let Step::ReadBack(hasher) = step {
                step = stream.read_back(hasher, &file, &abort).unwrap();
            }
            if let Step::Finished(found) = step {
                assert!(digest.is_none(), "finished twice");
                digest = Some(found.0.finish());
            }
        }
        let expected = ring::digest::digest(&ring::digest::SHA256, &bytes);
        assert_eq!(
            digest.map(|d| d.as_ref().to_vec()),
            Some(expected.as_ref().to_vec()),
            "{writes:?}"
        );
    }

    #[test]
    fn out_of_order_writes_hash_like_in_order() {
        check(
            &[
                (4000, 6000, true),
                (0, 1000, true),
                (6000, 10_000, false),
                (1000, 4000, true),
            ],
            10_000,
        );
        // Parts reported from disk only, the first missing until the end (the S3 way).
        check(
            &[
                (10, 20, false),
                (30, 35, false),
                (20, 30, false),
                (0, 10, false),
            ],
            35,
        );
        check(&[(0, 0, false)], 0);
    }

    #[test]
    fn nothing_finishes_before_the_last_byte() {
        let stream = InOrderHasher::new(
            10,
            Sha256(ring::digest::Context::new(&ring::digest::SHA256)),
        );
        assert!(matches!(stream.written(5, 10, None), Step::Idle));
        assert!(matches!(stream.written(10, 10, None), Step::Idle));
    }
}
