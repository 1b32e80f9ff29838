//! Counter arithmetic: cumulative kernel counters to deltas, totals and rates.
//!
//! Pure functions and plain data; no I/O. The invariants:
//! - a delta is never negative: a counter that went backwards belongs to a
//!   map entry that was evicted or deleted and created again, so everything
//!   it holds is new since the last read;
//! - a delta is never larger than what the entry holds now, so a reset cannot
//!   produce a huge spike;
//! - rates divide one interval's deltas by the measured interval.

use std::{ops::AddAssign, time::Duration};

use netmon_common::Counter;
use serde::Serialize;

/// Bytes and packets added since a previous reading of the same cumulative
/// counter.
pub fn delta(prev: Counter, now: Counter) -> Counter {
    if now.bytes < prev.bytes || now.packets < prev.packets {
        // The entry was recreated since `prev`: all of `now` is new.
        now
    } else {
        Counter {
            bytes: now.bytes - prev.bytes,
            packets: now.packets - prev.packets,
        }
    }
}

/// Sums per-CPU values.
pub fn sum(per_cpu: &[Counter]) -> Counter {
    let mut total = Counter::default();
    for c in per_cpu {
        total.bytes += c.bytes;
        total.packets += c.packets;
    }
    total
}

/// A bytes-and-packets rate over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rate {
    pub bits_per_second: f64,
    pub packets_per_second: f64,
}

impl Rate {
    /// The rate of `d` over `elapsed`; zero for an empty interval.
    pub fn of(d: Counter, elapsed: Duration) -> Rate {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return Rate::default();
        }
        Rate {
            bits_per_second: d.bytes as f64 * 8.0 / secs,
            packets_per_second: d.packets as f64 / secs,
        }
    }
}

/// Running total and last-interval rate of one counted thing (a device's
/// sent frames, an interface's received frames, a flow).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Meter {
    pub total: Counter,
    pub rate: Rate,
    /// Deltas added during the interval being drained.
    pending: Counter,
}

impl Meter {
    /// Adds a delta to the interval being drained.
    pub fn add(&mut self, d: Counter) {
        self.pending.bytes += d.bytes;
        self.pending.packets += d.packets;
    }

    /// Ends the interval: folds its deltas into the total and sets the rate.
    /// Returns what the interval added.
    pub fn close(&mut self, elapsed: Duration) -> Counter {
        let added = self.pending;
        self.total.bytes += added.bytes;
        self.total.packets += added.packets;
        self.rate = Rate::of(added, elapsed);
        self.pending = Counter::default();
        added
    }

    /// The total with what the interval being drained added so far.
    pub fn total_with_pending(&self) -> Counter {
        Counter {
            bytes: self.total.bytes + self.pending.bytes,
            packets: self.total.packets + self.pending.packets,
        }
    }
}

impl AddAssign<Counter> for Meter {
    fn add_assign(&mut self, d: Counter) {
        self.add(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(bytes: u64, packets: u64) -> Counter {
        Counter { bytes, packets }
    }

    #[test]
    fn delta_of_growing_counter_is_the_difference() {
        assert_eq!(delta(c(100, 2), c(350, 5)), c(250, 3));
        assert_eq!(delta(c(100, 2), c(100, 2)), c(0, 0));
    }

    #[test]
    fn delta_after_reset_is_the_new_value_never_negative_or_huge() {
        // Entry evicted and recreated: counters went backwards.
        assert_eq!(delta(c(1_000_000, 900), c(64, 1)), c(64, 1));
        // Bytes backwards but packets forward still means a new entry.
        assert_eq!(delta(c(5000, 3), c(100, 7)), c(100, 7));
        // A fresh entry seen for the first time: prev is zero.
        assert_eq!(delta(Counter::default(), c(42, 1)), c(42, 1));
    }

    #[test]
    fn sum_adds_every_cpu() {
        assert_eq!(sum(&[c(1, 1), c(10, 2), c(0, 0)]), c(11, 3));
        assert_eq!(sum(&[]), c(0, 0));
    }

    #[test]
    fn rate_uses_the_measured_interval() {
        let r = Rate::of(c(1_250_000, 1000), Duration::from_millis(500));
        assert_eq!(r.bits_per_second, 20_000_000.0);
        assert_eq!(r.packets_per_second, 2000.0);
        assert_eq!(Rate::of(c(10, 1), Duration::ZERO), Rate::default());
    }

    #[test]
    fn meter_accumulates_totals_and_resets_rate_each_interval() {
        let mut m = Meter::default();
        m += c(100, 1);
        m += c(200, 2);
        assert_eq!(m.total_with_pending(), c(300, 3));
        assert_eq!(m.close(Duration::from_secs(1)), c(300, 3));
        assert_eq!(m.total, c(300, 3));
        assert_eq!(m.rate.bits_per_second, 2400.0);
        assert_eq!(m.close(Duration::from_secs(1)), c(0, 0));
        assert_eq!(m.total, c(300, 3));
        assert_eq!(m.rate, Rate::default());
    }
}
