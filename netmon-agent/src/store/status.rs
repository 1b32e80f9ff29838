//! How the history is doing, for `/health` and `/metrics`: [`Status`].
//!
//! The history is `ok`, `degraded` (it runs, but something is wrong: the
//! file was found damaged and replaced at start, a write keeps failing and
//! intervals are queued in memory, a thread panicked and waits to be
//! restarted) or `off` (no file: `--no-history`, or it could not be opened;
//! see [`crate::api::StoreSlot`]). Each part of the store sets or clears its
//! own condition; the history is degraded while any is set, and the reason
//! names every one.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::Serialize;

/// What can degrade the history, each with its own condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The file: found damaged at start and replaced.
    File,
    /// The interval writer.
    Writer,
    /// Downsampling, expiry and the size budget.
    Maintenance,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::File => "file",
            Part::Writer => "writer",
            Part::Maintenance => "maintenance",
        }
    }
}

/// The history's state, as `/health` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = HistoryState)]
pub enum State {
    Ok,
    Degraded,
    Off,
}

/// Conditions and counters of one open history file. Shared by the store's
/// threads and the API; every method is cheap.
#[derive(Debug, Default)]
pub struct Status {
    conditions: Mutex<BTreeMap<Part, String>>,
    queued: AtomicU64,
    queue_capacity: AtomicU64,
    dropped: AtomicU64,
    writer_restarts: AtomicU64,
    maintenance_restarts: AtomicU64,
}

/// A copy of [`Status`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub state: State,
    /// Every condition, `; `-separated; `None` when `ok`.
    pub reason: Option<String>,
    /// Intervals waiting in memory to be written.
    pub queued: u64,
    /// How many may wait (`--store-queue-intervals`).
    pub queue_capacity: u64,
    /// Intervals dropped (oldest first) because the queue was full.
    pub dropped: u64,
    /// Restarts of the writer and of the maintenance thread after a panic.
    pub restarts: [u64; 2],
}

impl Status {
    /// Sets `part`'s condition (replacing an earlier one).
    pub fn set(&self, part: Part, reason: impl Into<String>) {
        self.lock().insert(part, reason.into());
    }

    /// Clears `part`'s condition.
    pub fn clear(&self, part: Part) {
        let mut c = self.lock();
        if !c.is_empty() {
            c.remove(&part);
        }
    }

    /// `part`'s condition, if set.
    pub fn condition(&self, part: Part) -> Option<String> {
        self.lock().get(&part).cloned()
    }

    pub fn set_queue(&self, queued: usize, capacity: usize, dropped: u64) {
        self.queued.store(queued as u64, Ordering::Relaxed);
        self.queue_capacity
            .store(capacity as u64, Ordering::Relaxed);
        self.dropped.store(dropped, Ordering::Relaxed);
    }

    /// Counts a restart of `part`'s thread.
    pub fn restarted(&self, part: Part) {
        let c = match part {
            Part::Maintenance => &self.maintenance_restarts,
            _ => &self.writer_restarts,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report(&self) -> Report {
        let c = self.lock();
        let reason = (!c.is_empty()).then(|| {
            c.iter()
                .map(|(part, why)| format!("{}: {why}", part.name()))
                .collect::<Vec<_>>()
                .join("; ")
        });
        Report {
            state: if c.is_empty() {
                State::Ok
            } else {
                State::Degraded
            },
            reason,
            queued: self.queued.load(Ordering::Relaxed),
            queue_capacity: self.queue_capacity.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            restarts: [
                self.writer_restarts.load(Ordering::Relaxed),
                self.maintenance_restarts.load(Ordering::Relaxed),
            ],
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Part, String>> {
        self.conditions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Report {
    /// The report of a history that is off, and why.
    pub fn off(why: &str) -> Report {
        Report {
            state: State::Off,
            reason: Some(why.to_owned()),
            queued: 0,
            queue_capacity: 0,
            dropped: 0,
            restarts: [0, 0],
        }
    }

    /// The history's series in Prometheus text format.
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let state = |s: State| u64::from(self.state == s);
        family(
            "netmon_history_state",
            "gauge",
            "Whether the history is ok, degraded or off (1 for the current state).",
            &[
                ("{state=\"ok\"}", state(State::Ok)),
                ("{state=\"degraded\"}", state(State::Degraded)),
                ("{state=\"off\"}", state(State::Off)),
            ],
        );
        family(
            "netmon_history_queued_intervals",
            "gauge",
            "Intervals waiting in memory to be written to the history.",
            &[("", self.queued)],
        );
        family(
            "netmon_history_dropped_intervals_total",
            "counter",
            "Intervals dropped, oldest first, because the history's write queue was full.",
            &[("", self.dropped)],
        );
        family(
            "netmon_history_thread_restarts_total",
            "counter",
            "Restarts of the history's threads after a panic.",
            &[
                ("{thread=\"writer\"}", self.restarts[0]),
                ("{thread=\"maintenance\"}", self.restarts[1]),
            ],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_while_any_condition_is_set_and_the_reason_names_each() {
        let s = Status::default();
        assert_eq!(s.report().state, State::Ok);
        assert_eq!(s.report().reason, None);
        s.set(Part::Writer, "disk full");
        s.set(Part::File, "moved aside");
        let r = s.report();
        assert_eq!(r.state, State::Degraded);
        assert_eq!(
            r.reason.as_deref(),
            Some("file: moved aside; writer: disk full")
        );
        s.clear(Part::Writer);
        assert_eq!(s.report().reason.as_deref(), Some("file: moved aside"));
        s.clear(Part::File);
        assert_eq!(s.report().state, State::Ok);
    }

    #[test]
    fn metrics_carry_the_state_and_the_counters() {
        let s = Status::default();
        s.set_queue(3, 3600, 7);
        s.restarted(Part::Maintenance);
        let text = s.report().encode_metrics();
        assert!(
            text.contains("netmon_history_state{state=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("netmon_history_state{state=\"off\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("netmon_history_queued_intervals 3\n"),
            "{text}"
        );
        assert!(
            text.contains("netmon_history_dropped_intervals_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("netmon_history_thread_restarts_total{thread=\"maintenance\"} 1\n"),
            "{text}"
        );
        let off = Report::off("turned off").encode_metrics();
        assert!(
            off.contains("netmon_history_state{state=\"off\"} 1\n"),
            "{off}"
        );
    }
}
