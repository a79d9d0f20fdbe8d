//! State that every request updates, split by thread: one lock would be contended by every
//! request thread; readers (a flush, `/metrics`) visit the parts one at a time.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

const PARTS: usize = 8;

pub struct PerThread<T> {
    parts: [Mutex<T>; PARTS],
}

impl<T> PerThread<T> {
    /// The calling thread's part (threads are spread over the parts as they first ask).
    pub fn mine(&self) -> MutexGuard<'_, T> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static PART: usize = NEXT.fetch_add(1, Ordering::Relaxed) % PARTS;
        }
        self.parts[PART.with(|part| *part)].lock()
    }

    /// Every part, locked one at a time.
    pub fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.parts.iter().map(Mutex::lock)
    }
}

impl<T: Default> Default for PerThread<T> {
    fn default() -> Self {
        PerThread {
            parts: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl<T> std::fmt::Debug for PerThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerThread").finish_non_exhaustive()
    }
}
