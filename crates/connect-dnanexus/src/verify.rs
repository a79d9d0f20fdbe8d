//! Part MD5s checked in batches: the parts of one file, or of the files one source fetches at
//! once, are read back from the page cache and hashed together, one MD5 stream per SIMD lane
//! (md5-many: 16 lanes with AVX-512, 8 with AVX2). One MD5 stream runs at ≈1 GB/s here, 16 at
//! ≈11 GB/s: MD5 was the largest single cost of a DNAnexus download (decision 0010).
//!
//! A part is submitted once all its bytes are on disk. A batch starts when [`BATCH_MIN`] parts
//! wait, or when a fetch that has all its bytes asks for its own ([`PartVerifier::hurry`]);
//! while a batch runs, more parts queue up for the next one. One batch runs at a time, on a
//! blocking thread.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use md5_many::{Md5Digest, Md5Many, Md5State};
use parking_lot::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Parts waiting before a batch starts unprompted: half of the AVX-512 lanes.
const BATCH_MIN: usize = 8;
/// Most parts hashed together: the AVX-512 lanes.
const BATCH_MAX: usize = 16;
/// Bytes read back per part per round: the buffers of a full batch stay in the core's L2.
const READ_BYTES: usize = 64 << 10;

/// What a check reports: the MD5 of the bytes on disk, or why they could not be read.
pub(crate) type Verdict = Box<dyn FnOnce(io::Result<Md5Digest>) + Send>;

/// Checks part MD5s for every fetch of one source.
pub(crate) struct PartVerifier {
    engine: Md5Many,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Check>,
    /// A batch is running (it takes the next one itself).
    running: bool,
}

/// One part to hash: `len` bytes at `offset` of `data`.
struct Check {
    data: Arc<File>,
    offset: u64,
    len: u64,
    /// Its fetch waits for it: start without waiting for a full batch.
    urgent: bool,
    /// Its fetch was abandoned: drop it unread.
    abandoned: CancellationToken,
    /// Called exactly once: with the digest, or (when dropped unchecked) with an error.
    verdict: Option<Verdict>,
}

impl Drop for Check {
    fn drop(&mut self) {
        if let Some(verdict) = self.verdict.take() {
            verdict(Err(io::Error::other("the part check was abandoned")));
        }
    }
}

impl std::fmt::Debug for PartVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartVerifier")
            .field("lanes", &self.engine.lanes())
            .finish_non_exhaustive()
    }
}

impl PartVerifier {
    pub fn new() -> PartVerifier {
        PartVerifier {
            engine: Md5Many::new(),
            queue: Mutex::new(Queue::default()),
        }
    }

    /// The MD5s of `ranges`, computed on this thread now (batched like queued checks).
    pub fn md5_now(&self, ranges: &[(&File, u64, u64)]) -> Vec<io::Result<Md5Digest>> {
        md5_of_ranges(self.engine, ranges)
    }

    /// Queues the MD5 of `len` bytes at `offset` of `data`; `verdict` gets the result (an error
    /// if `abandoned` is cancelled first).
    pub fn submit(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        data: Arc<File>,
        offset: u64,
        len: u64,
        abandoned: CancellationToken,
        verdict: Verdict,
    ) {
        let mut queue = self.lock();
        queue.waiting.push_back(Check {
            data,
            offset,
            len,
            urgent: false,
            abandoned,
            verdict: Some(verdict),
        });
        self.start_if_due(runtime, queue);
    }

    /// The fetch of `data` waits for its parts: check them without waiting for a full batch.
    pub fn hurry(self: &Arc<Self>, runtime: &tokio::runtime::Handle, data: &Arc<File>) {
        let mut queue = self.lock();
        for check in &mut queue.waiting {
            if Arc::ptr_eq(&check.data, data) {
                check.urgent = true;
            }
        }
        self.start_if_due(runtime, queue);
    }

    fn start_if_due(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        mut queue: MutexGuard<'_, Queue>,
    ) {
        if queue.running || !queue.due() {
            return;
        }
        queue.running = true;
        drop(queue);
        let this = Arc::clone(self);
        runtime.spawn_blocking(move || this.run_batches());
    }

    /// Runs batches while one is due.
    fn run_batches(&self) {
        // If hashing panics, a later submission must still be able to start a runner.
        struct Running<'a>(&'a PartVerifier);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.lock().running = false;
                }
            }
        }
        let _running = Running(self);
        loop {
            let (mut batch, abandoned): (Vec<Check>, VecDeque<Check>) = {
                let mut queue = self.lock();
                let (abandoned, waiting) = std::mem::take(&mut queue.waiting)
                    .into_iter()
                    .partition(|check| check.abandoned.is_cancelled());
                queue.waiting = waiting;
                if !queue.due() {
                    // In the same critical section as the test, so that a check queued after
                    // it finds no runner and starts one.
                    queue.running = false;
                    drop(queue);
                    drop(abandoned);
                    return;
                }
                let take = queue.waiting.len().min(BATCH_MAX);
                (queue.waiting.drain(..take).collect(), abandoned)
            };
            // Dropped unread, outside the lock: each reports itself abandoned.
            drop(abandoned);
            let ranges: Vec<(&File, u64, u64)> = batch
                .iter()
                .map(|check| (check.data.as_ref(), check.offset, check.len))
                .collect();
            let digests = md5_of_ranges(self.engine, &ranges);
            for (check, digest) in batch.iter_mut().zip(digests) {
                if let Some(verdict) = check.verdict.take() {
                    verdict(digest);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock()
    }
}

impl Queue {
    fn due(&self) -> bool {
        self.waiting.len() >= BATCH_MIN || self.waiting.iter().any(|check| check.urgent)
    }
}

/// The MD5 of each `(file, offset, len)` range, read back from disk (the page cache, just after
/// a download), up to [`BATCH_MAX`] ranges hashed together.
fn md5_of_ranges(engine: Md5Many, ranges: &[(&File, u64, u64)]) -> Vec<io::Result<Md5Digest>> {
    let mut digests = Vec::with_capacity(ranges.len());
    for group in ranges.chunks(BATCH_MAX) {
        digests.extend(md5_of_group(engine, group));
    }
    digests
}

fn md5_of_group(engine: Md5Many, ranges: &[(&File, u64, u64)]) -> Vec<io::Result<Md5Digest>> {
    let lanes = ranges.len();
    let mut states = vec![Md5State::new(); lanes];
    let mut buffers = vec![vec![0u8; READ_BYTES]; lanes];
    let mut hashed = vec![0u64; lanes];
    let mut failures: Vec<Option<io::Error>> = (0..lanes).map(|_| None).collect();
    loop {
        let mut lengths = vec![0usize; lanes];
        for (lane, &(file, offset, len)) in ranges.iter().enumerate() {
            if failures[lane].is_some() || hashed[lane] == len {
                continue;
            }
            let want = (len - hashed[lane]).min(READ_BYTES as u64) as usize;
            match file.read_exact_at(&mut buffers[lane][..want], offset + hashed[lane]) {
                Ok(()) => lengths[lane] = want,
                Err(error) => failures[lane] = Some(error),
            }
        }
        if lengths.iter().all(|&length| length == 0) {
            break;
        }
        let inputs: Vec<&[u8]> = buffers
            .iter()
            .zip(&lengths)
            .map(|(buffer, &length)| &buffer[..length])
            .collect();
        engine.update_many(&mut states, &inputs);
        for (total, &length) in hashed.iter_mut().zip(&lengths) {
            *total += length as u64;
        }
    }
    let mut digests = vec![[0u8; 16]; lanes];
    engine.finalize_many(&states, &mut digests);
    digests
        .into_iter()
        .zip(failures)
        .map(|(digest, failure)| match failure {
            Some(error) => Err(error),
            None => Ok(digest),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;

    fn content(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Lanes of every length class (empty, under a block, block edges, several read rounds,
    /// more ranges than lanes) agree with the md-5 crate.
    #[test]
    fn batched_md5s_match_md5_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = content(3 << 20, 7);
        let path = dir.path().join("data");
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let lengths = [
            0usize,
            1,
            55,
            56,
            63,
            64,
            65,
            1000,
            65_535,
            65_536,
            65_537,
            200_000,
            1 << 20,
            (1 << 20) + 3,
            17,
            4096,
            131_072,
            99_999,
            3,
            250_000,
        ];
        let ranges: Vec<(&File, u64, u64)> = lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| (&file, (i * 37_171) as u64, len as u64))
            .collect();
        let found = md5_of_ranges(Md5Many::new(), &ranges);
        assert_eq!(found.len(), ranges.len());
        for ((_, offset, len), digest) in ranges.iter().zip(found) {
            let slice = &bytes[*offset as usize..(*offset + *len) as usize];
            assert_eq!(
                digest.unwrap().to_vec(),
                md5::Md5::digest(slice).to_vec(),
                "{len} bytes at {offset}"
            );
        }
    }

    #[test]
    fn a_range_past_the_end_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, content(1000, 1)).unwrap();
        let file = File::open(&path).unwrap();
        let found = md5_of_ranges(Md5Many::new(), &[(&file, 0, 1000), (&file, 500, 1000)]);
        assert!(found[0].is_ok());
        assert_eq!(
            found[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_parts_get_their_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = content(40 * 1000, 3);
        let path = dir.path().join("data");
        std::fs::write(&path, &bytes).unwrap();
        let data = Arc::new(File::open(&path).unwrap());
        let verifier = Arc::new(PartVerifier::new());
        let runtime = tokio::runtime::Handle::current();
        let mut verdicts = Vec::new();
        // The first batches start on their own; the last parts wait for the hurry.
        for part in 0..40u64 {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            verifier.submit(
                &runtime,
                Arc::clone(&data),
                part * 1000,
                1000,
                CancellationToken::new(),
                Box::new(move |digest| drop(sender.send(digest.map(|d| d.to_vec())))),
            );
            verdicts.push(receiver);
        }
        verifier.hurry(&runtime, &data);
        for (part, receiver) in verdicts.into_iter().enumerate() {
            let expected = md5::Md5::digest(&bytes[part * 1000..(part + 1) * 1000]).to_vec();
            assert_eq!(receiver.await.unwrap().unwrap(), expected, "part {part}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_check_waits_for_its_fetch_and_abandoned_ones_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = content(4096, 5);
        let path = dir.path().join("data");
        std::fs::write(&path, &bytes).unwrap();
        let data = Arc::new(File::open(&path).unwrap());
        let verifier = Arc::new(PartVerifier::new());
        let runtime = tokio::runtime::Handle::current();
        let submit = |abandoned: &CancellationToken| {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            verifier.submit(
                &runtime,
                Arc::clone(&data),
                0,
                4096,
                abandoned.clone(),
                Box::new(move |digest| drop(sender.send(digest.map(|d| d.to_vec())))),
            );
            receiver
        };
        let mut lone = submit(&CancellationToken::new());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(lone.try_recv().is_err(), "one check alone is not a batch");
        verifier.hurry(&runtime, &data);
        assert_eq!(
            lone.await.unwrap().unwrap(),
            md5::Md5::digest(&bytes).to_vec()
        );

        let abandoned = CancellationToken::new();
        let dropped = submit(&abandoned);
        abandoned.cancel();
        verifier.hurry(&runtime, &data);
        let error = dropped.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("abandoned"), "{error}");
    }
}
