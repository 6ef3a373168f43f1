//! A byte-rate limit shared by threads: each caller reserves time for the
//! bytes it is about to read and sleeps until that time comes, so the
//! long-run rate holds however many threads read at once.
//!
//! The agent's scans use it to keep background verification to a share of
//! the disk, and need two more things from it, both taking effect on
//! readers already waiting:
//!
//! - [`lift`](RateLimit::lift): no limit for a while, when a scan is what
//!   an operator's change is waiting for;
//! - [`pause`](RateLimit::pause): no reading at all for a while, so a full
//!   rehash steps aside for a quick scan or an update.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How far ahead of the clock reservations may run before a reader waits:
/// small reads go through at once, bursts are spread out.
const BURST: Duration = Duration::from_millis(50);

/// At most `bytes_per_second`, averaged over time.
#[derive(Debug)]
pub struct RateLimit {
    state: Mutex<State>,
    /// Signalled when the limit is lifted or a pause ends.
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    bytes_per_second: u64,
    /// When the bytes reserved so far will have been read at the rate.
    next: Instant,
    lifted: bool,
    paused: bool,
}

impl RateLimit {
    /// A limit of `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            state: Mutex::new(State {
                bytes_per_second: bytes_per_second.max(1),
                next: Instant::now(),
                lifted: false,
                paused: false,
            }),
            changed: Condvar::new(),
        }
    }

    pub fn bytes_per_second(&self) -> u64 {
        self.lock().bytes_per_second
    }

    /// Changes the limit, from the next reservation on.
    pub fn set_bytes_per_second(&self, bytes_per_second: u64) {
        self.lock().bytes_per_second = bytes_per_second.max(1);
    }

    /// Blocks until `bytes` more may be read: at once while the limit is
    /// lifted, not before a pause ends.
    pub fn take(&self, bytes: u64) {
        let mut state = self.lock();
        while state.paused {
            state = self.changed.wait(state).expect("rate limit lock");
        }
        if state.lifted {
            return;
        }
        let now = Instant::now();
        let until = now + Self::reserve(&mut state, bytes, now);
        // Lifting the limit (or pausing) while this reader waits takes
        // effect at once.
        loop {
            if state.lifted {
                return;
            }
            if state.paused {
                while state.paused {
                    state = self.changed.wait(state).expect("rate limit lock");
                }
                return;
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .expect("rate limit lock")
                .0;
        }
    }

    /// Blocks while a pause lasts (a walk calls it between jobs, so a
    /// paused scan stops listing directories too, not only reading).
    pub fn wait_while_paused(&self) {
        let mut state = self.lock();
        while state.paused {
            state = self.changed.wait(state).expect("rate limit lock");
        }
    }

    /// Lifts the limit (`true`: readers go through at once, those waiting
    /// included) or puts it back (`false`: from now on, with nothing owed
    /// for what was read meanwhile).
    pub fn lift(&self, lifted: bool) {
        let mut state = self.lock();
        if state.lifted != lifted {
            state.lifted = lifted;
            state.next = Instant::now();
            self.changed.notify_all();
        }
    }

    /// Holds every reader (`true`) until the pause ends (`false`).
    pub fn pause(&self, paused: bool) {
        let mut state = self.lock();
        if state.paused != paused {
            state.paused = paused;
            self.changed.notify_all();
        }
    }

    /// Whether the limit is lifted now.
    pub fn is_lifted(&self) -> bool {
        self.lock().lifted
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("rate limit lock")
    }

    /// Reserves time for `bytes` at `now`; returns how long to wait first.
    fn reserve(state: &mut State, bytes: u64, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / state.bytes_per_second as f64);
        // Time not used in the past is not saved up beyond one burst.
        let start = state.next.max(now.checked_sub(BURST).unwrap_or(now));
        state.next = start + cost;
        start.saturating_duration_since(now + BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn reserve(limit: &RateLimit, bytes: u64, now: Instant) -> Duration {
        RateLimit::reserve(&mut limit.lock(), bytes, now)
    }

    #[test]
    fn a_burst_goes_through_then_readers_wait_their_share() {
        let limit = RateLimit::new(1000);
        let now = Instant::now() + Duration::from_secs(1);
        // Up to one burst (50 ms) behind and one ahead of the clock is free.
        assert_eq!(reserve(&limit, 50, now), MS(0));
        assert_eq!(reserve(&limit, 50, now), MS(0));
        assert_eq!(reserve(&limit, 50, now), MS(0));
        // From here on each 100 bytes costs 100 ms more.
        assert_eq!(reserve(&limit, 100, now), MS(50));
        assert_eq!(reserve(&limit, 100, now), MS(150));
        assert_eq!(reserve(&limit, 100, now + MS(150)), MS(100));
    }

    #[test]
    fn idle_time_is_not_saved_up() {
        let limit = RateLimit::new(1000);
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(reserve(&limit, 100, later), MS(0));
        assert_eq!(reserve(&limit, 1000, later), MS(0));
        assert_eq!(reserve(&limit, 1, later), MS(1000));
    }

    #[test]
    fn lifting_the_limit_releases_a_waiting_reader_at_once() {
        // 10 B/s: the second read of 100 bytes would wait about 10 s.
        let limit = Arc::new(RateLimit::new(10));
        limit.take(100);
        let reader = {
            let limit = limit.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                limit.take(100);
                started.elapsed()
            })
        };
        std::thread::sleep(MS(100));
        limit.lift(true);
        let waited = reader.join().unwrap();
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        assert!(limit.is_lifted());
        let started = Instant::now();
        limit.take(1 << 30);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_limit_put_back_owes_nothing_for_lifted_reads() {
        let limit = RateLimit::new(1000);
        limit.lift(true);
        limit.take(1_000_000);
        limit.lift(false);
        let now = Instant::now();
        assert_eq!(reserve(&limit, 50, now), MS(0));
    }

    #[test]
    fn a_paused_reader_waits_for_the_pause_to_end() {
        let limit = Arc::new(RateLimit::new(u64::MAX));
        limit.pause(true);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let limit = limit.clone();
            std::thread::spawn(move || {
                limit.take(1);
                tx.send(()).unwrap();
            })
        };
        assert!(rx.recv_timeout(MS(200)).is_err(), "read during a pause");
        limit.pause(false);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("read after the pause");
        reader.join().unwrap();
    }
}
