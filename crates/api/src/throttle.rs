//! Throttling of failed authentications per client address: after `limit` failures within a
//! window, every authenticated request from that address is refused with 429 until the window
//! ends. In memory, with a bounded number of tracked addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    capacity: usize,
    windows: Mutex<HashMap<IpAddr, FailureWindow>>,
}

#[derive(Debug, Clone, Copy)]
struct FailureWindow {
    started: Instant,
    failures: u32,
}

impl AuthThrottle {
    /// `limit` = 0 disables throttling.
    pub fn new(limit: u32, window: Duration, capacity: usize) -> AuthThrottle {
        AuthThrottle {
            limit,
            window,
            capacity: capacity.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `client` is over its limit right now.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        self.check_at(client, Instant::now())
    }

    /// Counts one failed authentication from `client`.
    pub fn record_failure(&self, client: IpAddr) {
        self.record_failure_at(client, Instant::now());
    }

    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn check_at(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        if self.limit == 0 {
            return Ok(());
        }
        let client = throttled_network(client);
        let windows = self.lock();
        match windows.get(&client) {
            Some(window)
                if now.duration_since(window.started) < self.window
                    && window.failures >= self.limit =>
            {
                let remaining = self
                    .window
                    .saturating_sub(now.duration_since(window.started));
                Err(remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0))
            }
            _ => Ok(()),
        }
    }

    fn record_failure_at(&self, client: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let client = throttled_network(client);
        let mut windows = self.lock();
        if !windows.contains_key(&client) && windows.len() >= self.capacity {
            windows.retain(|_, window| now.duration_since(window.started) < self.window);
            if windows.len() >= self.capacity {
                // Still full of live windows: forget the oldest one to make room.
                if let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(ip, _)| *ip)
                {
                    windows.remove(&oldest);
                }
            }
        }
        let window = windows.entry(client).or_insert(FailureWindow {
            started: now,
            failures: 0,
        });
        if now.duration_since(window.started) >= self.window {
            *window = FailureWindow {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, FailureWindow>> {
        self.windows.lock()
    }
}

/// The key a client is throttled under: an IPv4 address itself, an IPv6 address's /64.
fn throttled_network(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn throttles_after_the_limit_until_the_window_ends() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(60), 100);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.check_at(ip(1), start), Ok(()));
            throttle.record_failure_at(ip(1), start);
        }
        assert_eq!(
            throttle.check_at(ip(1), start + Duration::from_secs(1)),
            Err(59)
        );
        assert_eq!(
            throttle.check_at(ip(2), start),
            Ok(()),
            "other clients are not affected"
        );
        assert_eq!(
            throttle.check_at(ip(1), start + Duration::from_secs(60)),
            Ok(())
        );
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(60), 4);
        let now = Instant::now();
        for last in 0..50 {
            throttle.record_failure_at(ip(last), now + Duration::from_millis(u64::from(last)));
        }
        assert!(throttle.tracked() <= 4);
    }

    #[test]
    fn ipv6_clients_are_throttled_by_their_64() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(60), 100);
        let now = Instant::now();
        for host in 1..=3u16 {
            let address = IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, host]);
            throttle.record_failure_at(address, now);
        }
        let same_64 = IpAddr::from([0x2001, 0xdb8, 0, 7, 0xffff, 1, 2, 3]);
        assert_eq!(throttle.check_at(same_64, now), Err(60));
        let next_64 = IpAddr::from([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1]);
        assert_eq!(throttle.check_at(next_64, now), Ok(()));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4_and_ipv4_is_not_grouped() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60), 100);
        let now = Instant::now();
        throttle.record_failure_at(ip(1), now);
        throttle.record_failure_at("::ffff:10.0.0.1".parse().unwrap(), now);
        assert_eq!(throttle.check_at(ip(1), now), Err(60));
        assert_eq!(throttle.check_at(ip(2), now), Ok(()));
    }

    #[test]
    fn zero_disables() {
        let throttle = AuthThrottle::new(0, Duration::from_secs(60), 4);
        for _ in 0..100 {
            throttle.record_failure(ip(1));
        }
        assert_eq!(throttle.check(ip(1)), Ok(()));
    }
}
