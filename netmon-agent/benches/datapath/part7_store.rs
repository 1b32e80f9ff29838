//! Part 7: the history store (redb), in process: write rate, bytes per
//! sample, and long-range queries.

use std::time::{Duration, Instant};

use crate::harness::median;

/// Device series written per interval in the write-rate measurement.
const STORE_SERIES: usize = 1000;
/// Intervals written in it.
const STORE_INTERVALS: u64 = 60;

pub struct HistoryBench {
    samples_per_s: f64,
    intervals_per_s: f64,
    /// Allocated bytes per stored sample, all tiers together.
    bytes_per_sample: f64,
    /// Samples in the raw, 1-minute and 1-hour tiers.
    tier_samples: [u64; 3],
    /// Per tier: bytes of its B-tree pages and of its keys and values, per
    /// sample.
    tier_bytes: [(f64, f64); 3],
    day_raw_ms: f64,
    day_raw_points: usize,
    month_minute_ms: f64,
    month_minute_points: usize,
}

fn device_interval(at_ms: u64, length_ms: u32, devices: usize) -> netmon_agent::store::Interval {
    use netmon_agent::store::{Family, Interval, SeriesKey, Values};
    Interval {
        at_ms,
        length_ms,
        samples: (0..devices)
            .map(|i| {
                let mac = format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
                (
                    SeriesKey::new(Family::Device, &["eth0", &mac]),
                    Values::Counter {
                        interval_ms: length_ms,
                        deltas: vec![1500 + i as u64, 10, 64, 1],
                    },
                )
            })
            .collect(),
    }
}

/// Median wall time of `runs` calls of `f`, in ms, and its last result.
pub fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(times), last.expect("runs > 0"))
}

pub fn part7() -> HistoryBench {
    use netmon_agent::store::{Retention, Store, Tier};
    println!("\n## Part 7: history store (redb)\n");
    let retention = Retention {
        raw: Duration::from_secs(48 * 3600),
        minute: Duration::from_secs(30 * 86400),
        hour: Duration::from_secs(730 * 86400),
        size_budget: 1 << 30,
    };
    // Writes on the real disk: one fsync per interval is the cost.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let st = Store::open(&dir.path().join("w.redb"), retention).expect("opening a store");
    let t0 = 1_700_000_000_000u64;
    let start = Instant::now();
    for i in 0..STORE_INTERVALS {
        st.write(&device_interval(t0 + i * 1000, 1000, STORE_SERIES))
            .expect("writing an interval");
    }
    let wall = start.elapsed().as_secs_f64();
    let samples_per_s = (STORE_INTERVALS as usize * STORE_SERIES) as f64 / wall;
    let intervals_per_s = STORE_INTERVALS as f64 / wall;
    println!(
        "writes: {STORE_INTERVALS} intervals of {STORE_SERIES} device samples in {wall:.2} s: {samples_per_s:.0} samples/s ({intervals_per_s:.0} intervals/s, one transaction and fsync each)"
    );

    // Long ranges, built on tmpfs (the disk's fsyncs would take minutes):
    // a day of 1 s raw samples and 30 days of 1-minute aggregates of one
    // device among 10.
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs directory");
    let path = shm.path().join("h.redb");
    let st = Store::open(&path, retention).expect("opening a store");
    let now = 1_700_000_000_000u64 + 31 * 86_400_000;
    let month_start = now - 30 * 86_400_000;
    let day_start = now - 86_400_000;
    let mut at = month_start;
    while at < day_start {
        st.write(&device_interval(at, 60_000, 10)).expect("writing");
        at += 60_000;
    }
    while at < now {
        st.write(&device_interval(at, 1000, 10)).expect("writing");
        at += 1000;
    }
    // Fold minutes and hours (several passes: it works in chunks).
    for _ in 0..200 {
        let m = st.maintain(now).expect("maintenance");
        if m.folded == [0, 0] {
            break;
        }
    }
    let series = "device/eth0/02:00:00:00:00:00";
    let (day_raw_ms, day) = timed(5, || {
        st.query(series, day_start, now, Some(Tier::Raw), now)
            .expect("a day of raw samples")
    });
    let (month_minute_ms, month) = timed(5, || {
        st.query(series, month_start, now, Some(Tier::Minute), now)
            .expect("30 days at 1 minute")
    });
    println!(
        "query: 24 h of one device at raw resolution ({} points): {day_raw_ms:.1} ms; 30 days at 1 minute ({} points): {month_minute_ms:.1} ms (medians of 5)",
        day.points.len(),
        month.points.len()
    );
    let usage = st.usage().expect("usage");
    let counts = st.counts().expect("counts");
    let stored: u64 = counts.iter().sum();
    // Allocated bytes shared out by each tier's share of the samples.
    let per_sample = usage.used_bytes as f64 / stored.max(1) as f64;
    println!(
        "size: {} samples (raw {}, 1 m {}, 1 h {}) in {:.1} MiB allocated: {per_sample:.0} bytes per stored sample",
        stored,
        counts[0],
        counts[1],
        counts[2],
        usage.used_bytes as f64 / (1 << 20) as f64
    );
    let tiers = st.tier_sizes().expect("tier sizes");
    let tier_bytes = tiers.map(|t| {
        let n = t.samples.max(1) as f64;
        (t.page_bytes as f64 / n, t.stored_bytes as f64 / n)
    });
    println!(
        "\n| tier | samples | B-tree pages | bytes per sample (pages) | bytes per sample (keys and values) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, (t, (pages, stored))) in ["raw", "1 minute", "1 hour"]
        .iter()
        .zip(tiers.iter().zip(tier_bytes))
    {
        println!(
            "| {name} | {} | {:.1} MiB | {pages:.0} | {stored:.0} |",
            t.samples,
            t.page_bytes as f64 / (1 << 20) as f64
        );
    }
    HistoryBench {
        samples_per_s,
        intervals_per_s,
        bytes_per_sample: per_sample,
        tier_samples: counts,
        tier_bytes,
        day_raw_ms,
        day_raw_points: day.points.len(),
        month_minute_ms,
        month_minute_points: month.points.len(),
    }
}

/// Part 7's summary rows.
pub fn summary(h: &HistoryBench) {
    println!(
        "| history writes ({STORE_SERIES} device samples an interval, one transaction each) | {:.0} samples/s ({:.0} intervals/s) | - | - |",
        h.samples_per_s, h.intervals_per_s
    );
    println!(
        "| history bytes per stored sample (allocated pages / samples; raw {}, 1 m {}, 1 h {}) | {:.0} B | - | - |",
        h.tier_samples[0], h.tier_samples[1], h.tier_samples[2], h.bytes_per_sample
    );
    for (name, (pages, stored)) in ["raw", "1-minute", "1-hour"].iter().zip(h.tier_bytes) {
        println!(
            "| history bytes per stored sample, {name} tier (B-tree pages; keys and values) | {pages:.0} B; {stored:.0} B | - | - |"
        );
    }
    println!(
        "| history query: 24 h of one device, raw ({} points) | {:.1} ms | - | - |",
        h.day_raw_points, h.day_raw_ms
    );
    println!(
        "| history query: 30 days of one device at 1 minute ({} points) | {:.1} ms | - | - |",
        h.month_minute_points, h.month_minute_ms
    );
}
