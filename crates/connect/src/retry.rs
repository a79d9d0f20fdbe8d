//! When to try a failed request again: one policy for every connector.
//!
//! Guarantee: a delay is never longer than `max_backoff` and never shorter than what the server
//! asked for with `Retry-After` (within that cap), whatever the header says: a huge or malformed
//! value is capped or ignored, never a panic.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// How many attempts, and how long to wait between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included) before giving up.
    pub max_attempts: u32,
    /// The first delay; doubled after each further failure.
    pub initial_backoff: Duration,
    /// The longest delay, `Retry-After` included.
    pub max_backoff: Duration,
}

/// Doublings beyond this change nothing (the cap has long been reached) and would overflow.
const MAX_DOUBLINGS: u32 = 20;

impl RetryPolicy {
    /// Whether a request that failed `failures` times (from 1) may be tried again.
    pub fn allows_another(&self, failures: u32) -> bool {
        failures < self.max_attempts
    }

    /// The wait after failure `failures` (from 1): exponential from `initial_backoff` with
    /// jitter in [50 %, 100 %] (clients that failed together spread out), but at least the
    /// server's `Retry-After`, grown by a quarter per earlier failure as dxpy does (a server
    /// still busy after the wait it named gets more room); all capped at `max_backoff`.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        let jittered = ceiling.mul_f64(0.5 + fastrand::f64() * 0.5);
        let asked = retry_after.map_or(Duration::ZERO, |asked| {
            let growth = 1.0 + 0.25 * f64::from(doublings);
            // Whatever integer the server sent: scaling must not overflow (`mul_f64` panics).
            Duration::try_from_secs_f64(asked.as_secs_f64() * growth).unwrap_or(Duration::MAX)
        });
        jittered.max(asked).min(self.max_backoff)
    }
}

/// The wait a `Retry-After` header value asks for: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, a wait until then from `now`; a date in the past asks for
/// none). Anything else is ignored.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let at = SystemTime::from(at);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Sleeps for `delay`; `false` when `cancel` fired first.
pub async fn sleep_unless_cancelled(delay: Duration, cancel: Option<&CancellationToken>) -> bool {
    match cancel {
        None => {
            tokio::time::sleep(delay).await;
            true
        }
        Some(cancel) => tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let policy = policy(100, 1000);
        for failures in 1..30 {
            let delay = policy.delay(failures, None);
            let ceiling = (Duration::from_millis(100) * 2u32.pow(failures.min(20) - 1))
                .min(Duration::from_secs(1));
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{failures}: {delay:?}"
            );
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(5))),
            Duration::from_secs(1)
        );
        assert!(policy.delay(1, Some(Duration::from_millis(300))) >= Duration::from_millis(300));
    }

    #[test]
    fn delays_are_capped_and_honour_retry_after() {
        let policy = policy(100, 2000);
        let check = |attempt: u32, retry_after: Option<u64>, low_ms: u64, high_ms: u64| {
            let delay = policy.delay(attempt, retry_after.map(Duration::from_secs));
            assert!(
                delay >= Duration::from_millis(low_ms) && delay <= Duration::from_millis(high_ms),
                "{attempt} {retry_after:?}: {delay:?}"
            );
        };
        check(1, None, 50, 100);
        check(3, None, 200, 400);
        check(30, None, 1000, 2000);
        check(1, Some(1), 1000, 1000);
        check(3, Some(1), 1500, 1500);
        check(1, Some(100), 2000, 2000);
        check(17, Some(u64::MAX), 2000, 2000);
    }

    /// Found by the `dnanexus_responses` fuzz target: `Retry-After: 5125552502130253204` on
    /// the 17th attempt overflowed `Duration::mul_f64`, which panicked.
    #[test]
    fn a_huge_retry_after_is_capped_not_a_panic() {
        let policy = RetryPolicy {
            max_attempts: 20,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        };
        let asked = retry_after("5125552502130253204", SystemTime::UNIX_EPOCH);
        assert_eq!(policy.delay(17, asked), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        // Wed, 21 Oct 2015 07:28:00 GMT.
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let check = |value: &str, now: SystemTime, expect: Option<u64>| {
            assert_eq!(
                retry_after(value, now),
                expect.map(Duration::from_secs),
                "{value}"
            );
        };
        check("120", date, Some(120));
        check(" 7 ", date, Some(7));
        let before = date - Duration::from_secs(90);
        check("Wed, 21 Oct 2015 07:28:00 GMT", before, Some(90));
        check("Wed, 21 Oct 2015 07:28:00 GMT", date, Some(0));
        check(
            "Wed, 21 Oct 2015 07:28:00 GMT",
            date + Duration::from_secs(5),
            Some(0),
        );
        check("-1", date, None);
        check("soon", date, None);
        check("Wed, 21 Oct 2015 07:28:00 PST", date, None);
    }
}
