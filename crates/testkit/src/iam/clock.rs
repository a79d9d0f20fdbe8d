//! The clock temporary credentials expire by: the real time plus an offset that only grows, so
//! a test makes a credential expire by advancing it instead of sleeping.
//!
//! Only expiry reads this clock. Signature dates are checked against the real time, because
//! clients sign with the real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A clock shared by every clone. Starts at the real time.
#[derive(Clone, Debug, Default)]
pub struct TestClock {
    offset_ms: Arc<AtomicU64>,
}

impl TestClock {
    /// The real time plus everything [`TestClock::advance`] added.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(millis, Ordering::SeqCst);
    }
}
