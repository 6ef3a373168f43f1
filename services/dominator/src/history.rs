//! The last hour of the fleet's summary, for the status page's chart:
//! how many machines were compliant, updating and in error (and how many
//! there were, for the scale), sampled at a fixed interval.
//!
//! Samples are taken on a timer ([`crate::live`] takes one every
//! [`DEFAULT_EVERY`]), not after each round: an idle fleet runs no rounds
//! but should still draw a flat line, evenly spaced points need no
//! carrying forward, and a burst of rounds costs no more points than a
//! quiet spell. What changes between two samples reaches the page at
//! once anyway, with the summary of every `changes` event, which the
//! chart draws as its right edge.
//!
//! The ring is bounded by count (the window over the interval: 360
//! points, about 15 KiB) and by age, so it stays small whatever the
//! clock does. A standby decides as the active dominator does, so it
//! samples the same summaries; until the replay is over there is no
//! summary and no sample, and the chart shows a gap there. Nothing is
//! kept across restarts: a freshly started dominator draws a short line.

use std::collections::VecDeque;
use std::time::Duration;

use dom_model::policy::FleetSummary;
use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How often a sample is taken.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);
/// How far back the chart looks.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// The fleet's counts at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When, Unix milliseconds; RFC 3339 in JSON.
    #[serde(rename = "at", serialize_with = "at_rfc3339")]
    pub at_ms: i64,
    /// Machines in the MDB.
    pub all: usize,
    pub compliant: usize,
    pub updating: usize,
    pub error: usize,
}

impl Sample {
    /// The counts of `summary`, at `at_ms`.
    pub fn of(summary: &FleetSummary, at_ms: i64) -> Self {
        Self {
            at_ms,
            all: summary.machines,
            compliant: summary.compliant,
            updating: summary.updating,
            error: summary.errors,
        }
    }
}

fn at_rfc3339<S: Serializer>(at_ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339_ms(*at_ms))
}

/// Unix milliseconds as RFC 3339 in UTC, with the milliseconds when
/// there are any.
pub fn rfc3339_ms(at_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The samples of the last [`WINDOW`], oldest first.
#[derive(Clone, Debug, Serialize)]
pub struct History {
    /// The interval between samples, seconds (fractions in tests).
    every_s: f64,
    /// How far back samples are kept, seconds.
    window_s: u64,
    samples: VecDeque<Sample>,
    #[serde(skip)]
    capacity: usize,
    #[serde(skip)]
    window_ms: i64,
}

impl History {
    /// An empty history for a sample every `every` over `window`.
    pub fn new(every: Duration, window: Duration) -> Self {
        let every = every.max(Duration::from_millis(1));
        let capacity = (window.as_nanos().div_ceil(every.as_nanos())).max(1) as usize;
        Self {
            every_s: every.as_secs_f64(),
            window_s: window.as_secs(),
            samples: VecDeque::with_capacity(capacity),
            capacity,
            window_ms: window.as_millis() as i64,
        }
    }

    /// Adds `sample`, the newest: forgets the oldest past the capacity
    /// and those older than the window before it. A clock set back makes
    /// the samples "after" it wrong: they are dropped, so the samples
    /// stay in time order.
    pub fn record(&mut self, sample: Sample) {
        while self
            .samples
            .back()
            .is_some_and(|last| last.at_ms > sample.at_ms)
        {
            self.samples.pop_back();
        }
        while self
            .samples
            .front()
            .is_some_and(|first| first.at_ms <= sample.at_ms - self.window_ms)
            || self.samples.len() >= self.capacity
        {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Most samples kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new(DEFAULT_EVERY, WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1000;

    fn at(s: i64, compliant: usize) -> Sample {
        Sample {
            at_ms: s * SECOND,
            all: 10,
            compliant,
            updating: 10 - compliant,
            error: 0,
        }
    }

    fn times(history: &History) -> Vec<i64> {
        history.samples().map(|s| s.at_ms / SECOND).collect()
    }

    #[test]
    fn an_hour_every_ten_seconds_is_360_samples() {
        assert_eq!(History::default().capacity(), 360);
        assert_eq!(
            History::new(Duration::from_secs(7), WINDOW).capacity(),
            515,
            "rounded up, so the window is covered"
        );
        assert_eq!(History::new(Duration::ZERO, Duration::ZERO).capacity(), 1);
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_oldest_first() {
        let mut history = History::new(Duration::from_secs(10), Duration::from_secs(40));
        assert_eq!(history.samples().len(), 0);
        for (i, s) in (0..100).step_by(10).enumerate() {
            history.record(at(s, i));
            assert!(history.samples().len() <= 4);
        }
        assert_eq!(times(&history), [60, 70, 80, 90]);
        let compliant: Vec<usize> = history.samples().map(|s| s.compliant).collect();
        assert_eq!(compliant, [6, 7, 8, 9]);
    }

    #[test]
    fn samples_older_than_the_window_are_forgotten_after_a_gap() {
        let mut history = History::new(Duration::from_secs(10), Duration::from_secs(60));
        for s in [0, 10, 20, 30] {
            history.record(at(s, 1));
        }
        // Nothing sampled for 45 s (catching up after a reconnect).
        history.record(at(75, 2));
        assert_eq!(times(&history), [20, 30, 75]);
        history.record(at(140, 3));
        assert_eq!(times(&history), [140]);
    }

    #[test]
    fn a_clock_set_back_drops_the_samples_after_it() {
        let mut history = History::new(Duration::from_secs(10), Duration::from_secs(3600));
        for s in [100, 110, 120, 130] {
            history.record(at(s, 1));
        }
        history.record(at(115, 2));
        assert_eq!(times(&history), [100, 110, 115]);
        // The same instant twice is kept, in the order taken.
        history.record(at(115, 3));
        assert_eq!(times(&history), [100, 110, 115, 115]);
    }

    #[test]
    fn samples_serialise_with_rfc3339_times() {
        let mut history = History::new(Duration::from_secs(10), Duration::from_secs(3600));
        history.record(Sample {
            at_ms: 1_796_601_600_000,
            all: 16,
            compliant: 15,
            updating: 0,
            error: 1,
        });
        history.record(Sample {
            at_ms: 1_796_601_610_250,
            all: 0,
            compliant: 0,
            updating: 0,
            error: 0,
        });
        let json = serde_json::to_value(&history).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "every_s": 10.0,
                "window_s": 3600,
                "samples": [
                    {"at": "2026-12-07T00:00:00Z", "all": 16, "compliant": 15, "updating": 0, "error": 1},
                    {"at": "2026-12-07T00:00:10.25Z", "all": 0, "compliant": 0, "updating": 0, "error": 0},
                ],
            })
        );
    }
}
