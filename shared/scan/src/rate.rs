//! A byte-rate limit shared by threads: each caller reserves time for the
//! bytes it is about to read and sleeps until that time comes, so the
//! long-run rate holds however many threads read at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far ahead of the clock reservations may run before a reader waits:
/// small reads go through at once, bursts are spread out.
const BURST: Duration = Duration::from_millis(50);

/// At most `bytes_per_second`, averaged over time.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    next: Mutex<Instant>,
}

impl RateLimit {
    /// A limit of `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Blocks until `bytes` more may be read.
    pub fn take(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Reserves time for `bytes` at `now`; returns how long to wait first.
    fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let mut next = self.next.lock().expect("rate limit lock");
        // Time not used in the past is not saved up beyond one burst.
        let start = (*next).max(now.checked_sub(BURST).unwrap_or(now));
        *next = start + cost;
        start.saturating_duration_since(now + BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_burst_goes_through_then_readers_wait_their_share() {
        let limit = RateLimit::new(1000);
        let now = Instant::now() + Duration::from_secs(1);
        // Up to one burst (50 ms) behind and one ahead of the clock is free.
        assert_eq!(limit.reserve(50, now), MS(0));
        assert_eq!(limit.reserve(50, now), MS(0));
        assert_eq!(limit.reserve(50, now), MS(0));
        // From here on each 100 bytes costs 100 ms more.
        assert_eq!(limit.reserve(100, now), MS(50));
        assert_eq!(limit.reserve(100, now), MS(150));
        assert_eq!(limit.reserve(100, now + MS(150)), MS(100));
    }

    #[test]
    fn idle_time_is_not_saved_up() {
        let limit = RateLimit::new(1000);
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(limit.reserve(100, later), MS(0));
        assert_eq!(limit.reserve(1000, later), MS(0));
        assert_eq!(limit.reserve(1, later), MS(1000));
    }
}
