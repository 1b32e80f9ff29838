//! From the agent's live state to stored intervals: [`Recorder`].
//!
//! The recorder keeps what turning live state into samples needs between
//! intervals: the previous cumulative totals (stored counters are deltas),
//! which collector readings are already stored, and the intervals not
//! written yet. An interval that cannot be written (disk full, file busy)
//! stays queued, oldest first, up to `--store-queue-intervals` (default
//! [`MAX_PENDING`]) intervals, and is retried with the next one; beyond
//! that the oldest is dropped, counted (`/health`, `/metrics`) and logged
//! (at most once a minute, with the count). While writes fail the history
//! is `degraded`. At shutdown [`Recorder::finish`] writes the last interval
//! and everything queued. The live data the API serves does not depend on
//! any of this.
//!
//! What each interval holds:
//! - traffic (only when the snapshot is newer than the last one recorded):
//!   per device and per watched interface the byte and packet deltas since
//!   then; per flow the same, for the interval's top N flows by bytes
//!   among the flows the snapshot lists (the busiest: see
//!   [`crate::traffic::Traffic::listed_flows`]). At most
//!   `--store-flow-series-per-hour` distinct flow series are written in one
//!   hour of the clock; the deltas of flows beyond that go to one series per
//!   interface and direction, `flow/<iface>/<ingress|egress>/other` (counted in
//!   [`FlowSeriesStats`]), so a flood of new flows never creates series
//!   without bound. Devices, interfaces and flows with nothing new get no
//!   sample. The
//!   first snapshot recorded counts in full: the programs were attached
//!   when this agent started, so its totals are all new traffic.
//! - each collector's reading, when it is newer than the last one stored:
//!   the samples its history contribution makes of it (through the
//!   registry, [`crate::collect::Source::history`]): `system` gauges, one
//!   `temperature/<label>` per sensor, one `latency/<address>` per target,
//!   and per interface (`link/<name>`) the deltas of the kernel's counters
//!   since the previous reading.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use netmon_common::{Counter, FlowKey};
use tracing::{info, warn};

use super::{
    Family, Interval, SeriesKey, Store, StoreError, Values, as_ms, epoch_ms, status::Part,
};
use crate::{
    collect::{SOURCES, Sample, SampleValues, Telemetry},
    errors::error_chain,
    ifaces::format_mac,
    snapshot::{FlowSeries, Snapshot},
    traffic::key_ip,
};

/// Intervals kept in memory while the file cannot be written, by default
/// (an hour at the default 1 s interval).
pub const MAX_PENDING: usize = 3600;

/// Drops are logged at most this often.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Default `--store-flow-series-per-hour`.
pub const DEFAULT_FLOW_SERIES_PER_HOUR: u32 = 3600;

/// The last label of the series that holds the flows beyond the hourly cap.
pub const OTHER_FLOWS: &str = "other";

const HOUR_MS: u64 = 3_600_000;

/// History options of the recorder.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "record-options")]
pub struct Options {
    /// Most distinct flow series the history writes in one hour of the
    /// clock (so at most this many new ones an hour); the flows beyond it
    /// that hour are added to `flow/<iface>/<ingress|egress>/other`.
    #[arg(long, default_value_t = DEFAULT_FLOW_SERIES_PER_HOUR, value_parser = clap::value_parser!(u32).range(0..=1_000_000), env = "NETMON_STORE_FLOW_SERIES_PER_HOUR")]
    pub store_flow_series_per_hour: u32,
}

/// How the hourly cap on flow series is doing, shared with the API.
#[derive(Debug, Default)]
pub struct FlowSeriesStats {
    cap: AtomicU64,
    this_hour: AtomicU64,
    aggregated: AtomicU64,
}

impl FlowSeriesStats {
    pub fn get(&self) -> FlowSeries {
        FlowSeries {
            cap: self.cap.load(Ordering::Relaxed),
            this_hour: self.this_hour.load(Ordering::Relaxed),
            aggregated: self.aggregated.load(Ordering::Relaxed),
        }
    }
}

/// What [`Recorder::write_interval`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Intervals committed by this call (queued ones included).
    pub intervals: usize,
    /// Intervals still queued.
    pub pending: usize,
}

/// Turns snapshots and readings into intervals and writes them.
#[derive(Debug)]
pub struct Recorder {
    flows_per_interval: usize,
    last_snapshot: Option<SystemTime>,
    devices: HashMap<(u32, [u8; 6]), [Counter; 2]>,
    interfaces: HashMap<u32, [Counter; 2]>,
    flows: HashMap<FlowKey, Counter>,
    /// The hour (of the epoch) `series_this_hour` is about.
    hour: u64,
    /// Flow series written this hour (at most `series_per_hour`).
    series_this_hour: HashSet<String>,
    series_per_hour: usize,
    series_stats: Arc<FlowSeriesStats>,
    /// Per registered source (registry order): when its last recorded
    /// reading started, and what its history keeps between readings.
    sources: Vec<SourceState>,
    pending: VecDeque<Interval>,
    capacity: usize,
    /// Intervals dropped since the agent started.
    dropped: u64,
    /// Dropped since the last log line about it, and when that was.
    dropped_unlogged: u64,
    dropped_logged: Option<Instant>,
    /// The write error last logged, so a repeated one is logged once.
    failing: Option<String>,
}

impl Recorder {
    pub fn new(flows_per_interval: usize) -> Recorder {
        Recorder {
            flows_per_interval,
            last_snapshot: None,
            devices: HashMap::new(),
            interfaces: HashMap::new(),
            flows: HashMap::new(),
            hour: 0,
            series_this_hour: HashSet::new(),
            series_per_hour: DEFAULT_FLOW_SERIES_PER_HOUR as usize,
            series_stats: Arc::default(),
            sources: SOURCES
                .iter()
                .map(|s| SourceState {
                    last: None,
                    state: s.history_state(),
                })
                .collect(),
            pending: VecDeque::new(),
            capacity: MAX_PENDING,
            dropped: 0,
            dropped_unlogged: 0,
            dropped_logged: None,
            failing: None,
        }
    }

    /// Keeps at most `capacity` (at least 1) intervals queued.
    pub fn with_capacity(mut self, capacity: usize) -> Recorder {
        self.capacity = capacity.max(1);
        self
    }

    /// At most `per_hour` distinct flow series an hour; the counts go to
    /// `stats`.
    pub fn with_flow_series_cap(mut self, per_hour: usize, stats: Arc<FlowSeriesStats>) -> Self {
        stats.cap.store(per_hour as u64, Ordering::Relaxed);
        self.series_per_hour = per_hour;
        self.series_stats = stats;
        self
    }

    /// Intervals waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Intervals dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// At shutdown: records the interval ending at `now` and writes it and
    /// every queued interval, retrying until `deadline` while the file is
    /// busy (maintenance finishing a transaction) or failing. Returns the
    /// intervals written and those left unwritten (lost).
    pub fn finish(
        &mut self,
        store: &Store,
        snapshot: &Snapshot,
        telemetry: &Telemetry,
        now: SystemTime,
        deadline: Instant,
    ) -> (usize, usize) {
        if let Some(iv) = self.build(snapshot, telemetry, now) {
            self.queue(iv);
        }
        let mut written = 0;
        loop {
            if let Ok(w) = self.flush(store) {
                written += w.intervals;
            }
            if self.pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let lost = self.pending.len();
        if lost == 0 {
            info!(written, "Wrote the history's last intervals.");
        } else {
            warn!(
                written,
                lost, "Could not write every queued interval before stopping; the rest are lost."
            );
        }
        (written, lost)
    }

    /// Records the current state as the interval ending at `now` and writes
    /// every queued interval. Errors are logged here (once until they
    /// change) and returned; the interval stays queued.
    pub fn write_interval(
        &mut self,
        store: &Store,
        snapshot: &Snapshot,
        telemetry: &Telemetry,
        now: SystemTime,
    ) -> Result<Written, StoreError> {
        if let Some(iv) = self.build(snapshot, telemetry, now) {
            self.queue(iv);
        }
        self.flush(store)
    }

    /// Queues an interval built elsewhere (tests, benchmarks). When the
    /// queue is full the oldest interval is dropped, counted and logged (at
    /// most once a minute).
    pub fn queue(&mut self, iv: Interval) {
        while self.pending.len() >= self.capacity {
            self.pending.pop_front();
            self.dropped += 1;
            self.dropped_unlogged += 1;
        }
        self.pending.push_back(iv);
        if self.dropped_unlogged > 0
            && self
                .dropped_logged
                .is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY)
        {
            warn!(
                dropped = self.dropped_unlogged,
                dropped_total = self.dropped,
                capacity = self.capacity,
                "The history's write queue is full: dropped the oldest intervals."
            );
            self.dropped_unlogged = 0;
            self.dropped_logged = Some(Instant::now());
        }
    }

    /// Writes the queued intervals, oldest first, stopping at the first
    /// failure.
    pub fn flush(&mut self, store: &Store) -> Result<Written, StoreError> {
        let r = self.flush_queue(store);
        let status = store.status();
        status.set_queue(self.pending.len(), self.capacity, self.dropped);
        match &r {
            Ok(w) if w.pending == 0 => status.clear(Part::Writer),
            Ok(_) | Err(StoreError::Busy) => {}
            Err(e) => status.set(
                Part::Writer,
                format!(
                    "cannot write the history ({}); {} intervals queued in memory",
                    error_chain(e),
                    self.pending.len()
                ),
            ),
        }
        r
    }

    fn flush_queue(&mut self, store: &Store) -> Result<Written, StoreError> {
        let mut intervals = 0;
        while let Some(iv) = self.pending.front() {
            match store.write(iv) {
                Ok(()) => {
                    self.pending.pop_front();
                    intervals += 1;
                }
                Err(StoreError::Busy) => break,
                Err(e) => {
                    let msg = error_chain(&e);
                    if self.failing.as_deref() != Some(&msg) {
                        warn!(
                            error = %msg,
                            disk_full = e.is_disk_full(),
                            pending = self.pending.len(),
                            "Cannot write the history; keeping the intervals in memory and retrying."
                        );
                        self.failing = Some(msg);
                    }
                    return Err(e);
                }
            }
        }
        if intervals > 0 && self.failing.take().is_some() {
            info!(
                dropped_total = self.dropped,
                "Writing the history works again."
            );
        }
        Ok(Written {
            intervals,
            pending: self.pending.len(),
        })
    }

    /// The interval ending at `now`, or `None` when nothing is new.
    pub fn build(
        &mut self,
        snapshot: &Snapshot,
        telemetry: &Telemetry,
        now: SystemTime,
    ) -> Option<Interval> {
        let mut samples = Vec::new();
        let mut length_ms = 0;
        if let Some(updated) = snapshot.updated
            && self.last_snapshot != Some(updated)
        {
            let since = self
                .last_snapshot
                .and_then(|t| updated.duration_since(t).ok())
                .unwrap_or(snapshot.interval);
            length_ms = u32::try_from(as_ms(since)).unwrap_or(u32::MAX);
            self.traffic(snapshot, length_ms, epoch_ms(now), &mut samples);
            self.last_snapshot = Some(updated);
        }
        self.sources(telemetry, &mut samples);
        if samples.is_empty() && length_ms == 0 {
            return None;
        }
        Some(Interval {
            at_ms: epoch_ms(now),
            length_ms,
            samples,
        })
    }

    fn traffic(
        &mut self,
        s: &Snapshot,
        interval_ms: u32,
        now_ms: u64,
        out: &mut Vec<(SeriesKey, Values)>,
    ) {
        let counter = |deltas: Vec<u64>| Values::Counter {
            interval_ms,
            deltas,
        };
        let mut devices = HashMap::with_capacity(s.devices.len());
        for d in &s.devices {
            let now = [d.tx.total, d.rx.total];
            let prev = self.devices.get(&(d.ifindex, d.mac)).copied();
            devices.insert((d.ifindex, d.mac), now);
            let (tx, rx) = match prev {
                Some(p) => (delta(p[0], now[0]), delta(p[1], now[1])),
                // New since the last snapshot: all of it is new.
                None => (now[0], now[1]),
            };
            if is_zero(tx) && is_zero(rx) {
                continue;
            }
            out.push((
                SeriesKey::new(
                    Family::Device,
                    &[&s.iface_name(d.ifindex), &format_mac(d.mac)],
                ),
                counter(vec![tx.bytes, tx.packets, rx.bytes, rx.packets]),
            ));
        }
        self.devices = devices;

        let mut interfaces = HashMap::with_capacity(s.interfaces.len());
        for i in &s.interfaces {
            let now = [i.totals.rx.total, i.totals.tx.total];
            let prev = self.interfaces.get(&i.ifindex).copied();
            interfaces.insert(i.ifindex, now);
            let p = prev.unwrap_or_default();
            let (rx, tx) = (delta(p[0], now[0]), delta(p[1], now[1]));
            if is_zero(tx) && is_zero(rx) {
                continue;
            }
            out.push((
                SeriesKey::new(Family::Interface, &[&i.name]),
                counter(vec![rx.bytes, rx.packets, tx.bytes, tx.packets]),
            ));
        }
        self.interfaces = interfaces;

        // Flows: deltas, merged by series name (flows that differ only in
        // their MACs share one), then the top N by bytes. The snapshot lists
        // the busiest flows only, so one not listed last time may be old:
        // then only the last interval is known to be new (all of it when
        // the flow appeared since).
        let mut flows = HashMap::with_capacity(s.flows.len());
        let mut by_name: HashMap<String, Counter> = HashMap::new();
        for f in &s.flows {
            let now = f.meter.total;
            let prev = self.flows.get(&f.key).copied();
            flows.insert(f.key, now);
            let d = match prev {
                Some(p) => delta(p, now),
                None if self.last_snapshot.is_none_or(|t| f.first_seen > t) => now,
                None => f.last,
            };
            if is_zero(d) {
                continue;
            }
            let k = &f.key;
            let dir = crate::units::direction_name(k.direction);
            let name = SeriesKey::new(
                Family::Flow,
                &[
                    &s.iface_name(k.ifindex),
                    dir,
                    &k.proto.to_string(),
                    &key_ip(k.src).to_string(),
                    &key_ip(k.dst).to_string(),
                ],
            );
            let e = by_name.entry(name.as_str().to_owned()).or_default();
            e.bytes += d.bytes;
            e.packets += d.packets;
        }
        self.flows = flows;
        let mut top: Vec<(String, Counter)> = by_name.into_iter().collect();
        top.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then_with(|| a.0.cmp(&b.0)));
        top.truncate(self.flows_per_interval);
        let hour = now_ms / HOUR_MS;
        if hour != self.hour {
            self.hour = hour;
            self.series_this_hour.clear();
        }
        let mut other: HashMap<String, Counter> = HashMap::new();
        for (name, d) in top {
            let admitted = self.series_this_hour.contains(&name)
                || (self.series_this_hour.len() < self.series_per_hour
                    && self.series_this_hour.insert(name.clone()));
            if admitted {
                if let Some(key) = SeriesKey::parse(&name) {
                    out.push((key, counter(vec![d.bytes, d.packets])));
                }
                continue;
            }
            // flow/<iface>/<dir>/...: interface names have no '/'.
            let head: Vec<&str> = name.splitn(4, '/').take(3).collect();
            let e = other
                .entry(format!("{}/{OTHER_FLOWS}", head.join("/")))
                .or_default();
            e.bytes += d.bytes;
            e.packets += d.packets;
            self.series_stats.aggregated.fetch_add(1, Ordering::Relaxed);
        }
        self.series_stats
            .this_hour
            .store(self.series_this_hour.len() as u64, Ordering::Relaxed);
        let mut other: Vec<_> = other.into_iter().collect();
        other.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, d) in other {
            if let Some(key) = SeriesKey::parse(&name) {
                out.push((key, counter(vec![d.bytes, d.packets])));
            }
        }
    }

    /// Each source's samples from its reading, when that is newer than the
    /// last one recorded.
    fn sources(&mut self, t: &Telemetry, out: &mut Vec<(SeriesKey, Values)>) {
        let mut samples = Vec::new();
        for ((src, state), mine) in t.states().zip(&mut self.sources) {
            let Some(r) = state.reading() else { continue };
            let started = r.collection().started;
            if mine.last == Some(started) {
                continue;
            }
            let since = mine.last.and_then(|p| started.duration_since(p).ok());
            mine.last = Some(started);
            src.history(mine.state.as_mut(), r, since, &mut samples);
        }
        for Sample {
            family,
            labels,
            values,
        } in samples
        {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            let values = match values {
                SampleValues::Counter {
                    interval_ms,
                    deltas,
                } => Values::Counter {
                    interval_ms,
                    deltas,
                },
                SampleValues::Gauge(v) => Values::Gauge(v),
            };
            out.push((SeriesKey::new(Family::from(family), &labels), values));
        }
    }
}

/// What the recorder keeps for one source.
#[derive(Debug)]
struct SourceState {
    last: Option<SystemTime>,
    state: Box<dyn std::any::Any + Send>,
}

fn delta(prev: Counter, now: Counter) -> Counter {
    crate::rates::delta(prev, now)
}

fn is_zero(c: Counter) -> bool {
    c.bytes == 0 && c.packets == 0
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use netmon_common::{proto, v4_mapped};

    use super::*;
    use crate::{
        ifaces::Subnets,
        traffic::{MapCounts, Traffic},
    };

    fn flow(src: u8) -> FlowKey {
        FlowKey {
            ifindex: 3,
            direction: netmon_common::direction::INGRESS,
            proto: proto::UDP,
            src_mac: [2, 0, 0, 0, 0, src],
            dst_mac: [2, 0, 0, 0, 0, 9],
            src: v4_mapped([10, 0, 0, src]),
            dst: v4_mapped([10, 0, 0, 9]),
            ..FlowKey::default()
        }
    }

    /// The flow series written in `iv`: (name, bytes).
    fn flow_series(iv: &Interval) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = iv
            .samples
            .iter()
            .filter(|(k, _)| k.family() == Family::Flow)
            .map(|(k, v)| match v {
                Values::Counter { deltas, .. } => (k.as_str().to_owned(), deltas[0]),
                Values::Gauge(_) => panic!("a flow is a counter"),
            })
            .collect();
        out.sort();
        out
    }

    /// Five flows an interval and a cap of three series an hour: three get
    /// their series, the other two are summed in the interface's `other`
    /// series, every interval of the hour; the next hour starts afresh.
    #[test]
    fn flow_series_beyond_the_hourly_cap_go_to_other() {
        let stats = Arc::new(FlowSeriesStats::default());
        let mut rec = Recorder::new(100).with_flow_series_cap(3, Arc::clone(&stats));
        let mut t = Traffic::new(Duration::from_secs(300));
        let tel = Telemetry::default();
        let start = Instant::now();
        let hour0 = UNIX_EPOCH + Duration::from_secs(1_700_002_800); // on the hour
        let mut step = |secs: u64, bytes: &[u64]| {
            let reading = MapCounts {
                cached: bytes
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| {
                        (
                            flow(i as u8 + 1),
                            Counter {
                                bytes: b,
                                packets: 1,
                            },
                        )
                    })
                    .collect(),
                ..MapCounts::default()
            };
            let wall = hour0 + Duration::from_secs(secs);
            t.update(
                start + Duration::from_secs(secs),
                wall,
                &reading,
                &Subnets::default(),
            );
            let snap = Snapshot {
                updated: Some(wall),
                interval: Duration::from_secs(1),
                flows: t.flows.values().cloned().collect(),
                names: [(3, "eth0".to_owned())].into(),
                ..Snapshot::default()
            };
            let iv = rec.build(&snap, &tel, wall).expect("an interval");
            flow_series(&iv)
        };
        let name = |src: u8| format!("flow/eth0/ingress/17/10.0.0.{src}/10.0.0.9");
        let other = "flow/eth0/ingress/other".to_owned();
        // By bytes: flows 5, 4, 3 get series; 2 and 1 go to other.
        let want = vec![
            (name(3), 300),
            (name(4), 400),
            (name(5), 500),
            (other.clone(), 300),
        ];
        assert_eq!(step(0, &[100, 200, 300, 400, 500]), want);
        assert_eq!(
            stats.get(),
            FlowSeries {
                cap: 3,
                this_hour: 3,
                aggregated: 2
            }
        );
        // Later that hour flow 1 is the busiest: no new series for it.
        assert_eq!(
            step(10, &[900, 1, 1, 1, 1]),
            vec![
                (name(3), 1),
                (name(4), 1),
                (name(5), 1),
                (other.clone(), 901),
            ]
        );
        assert_eq!(stats.get().aggregated, 4);
        // The next hour: the busiest three again.
        let next = step(3600, &[900, 800, 1, 1, 1]);
        assert_eq!(next.len(), 4, "{next:?}");
        assert!(next.contains(&(name(1), 900)) && next.contains(&(name(2), 800)));
        assert_eq!(stats.get().this_hour, 3);
    }
}
