//! Unit tests of the store on real redb files in temp dirs, driven by an
//! explicit clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netmon_common::{Counter, FlowKey, MacKey, direction};
use redb::{Database, ReadableDatabase};

use super::record::{self, Recorder};
use super::*;
use crate::store::schema::RAW;
use crate::{collect::Telemetry, snapshot::Snapshot, traffic};

const T0: u64 = 1_800_000_000_000; // a whole hour, ms since the epoch

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("h.redb"), Retention::default()).unwrap()
}

fn dev(name: &str, tx: u64) -> (SeriesKey, Values) {
    (
        SeriesKey::new(Family::Device, &["eth0", name]),
        Values::Counter {
            interval_ms: 1000,
            deltas: vec![tx, 1, 2 * tx, 2],
        },
    )
}

fn temp(c: f64) -> (SeriesKey, Values) {
    (
        SeriesKey::new(Family::Temperature, &["cpu"]),
        Values::Gauge(vec![c]),
    )
}

fn iv(at_ms: u64, samples: Vec<(SeriesKey, Values)>) -> Interval {
    Interval {
        at_ms,
        length_ms: 1000,
        samples,
    }
}

fn sum(p: &Point, field: &str) -> u64 {
    match p.values[field] {
        FieldValue::Sum(s) => s,
        ref other => panic!("{field}: not a sum: {other:?}"),
    }
}

fn stats(p: &Point, field: &str) -> (f64, f64, f64, f64) {
    match p.values[field] {
        FieldValue::Stats {
            min,
            avg,
            max,
            last,
        } => (min, avg, max, last),
        ref other => panic!("{field}: not stats: {other:?}"),
    }
}

#[test]
fn written_intervals_read_back_raw() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..10u64 {
        s.write(&iv(
            T0 + i * 1000,
            vec![dev("a", 100 + i), temp(40.0 + i as f64)],
        ))
        .unwrap();
    }
    let h = s
        .query("device/eth0/a", T0, T0 + 10_000, None, T0 + 10_000)
        .unwrap();
    assert_eq!(h.tier, Tier::Raw);
    assert_eq!(h.points.len(), 10);
    assert_eq!(h.points[3].at_ms, T0 + 3000);
    assert_eq!(sum(&h.points[3], "tx_bytes"), 103);
    assert_eq!(sum(&h.points[3], "rx_bytes"), 206);
    assert_eq!(h.points[3].covered_seconds, Some(1.0));
    // A sub-range is one range scan: [from, to).
    let h = s
        .query("temperature/cpu", T0 + 2000, T0 + 4000, None, T0 + 10_000)
        .unwrap();
    assert_eq!(
        h.points.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
        [T0 + 2000, T0 + 3000]
    );
    assert_eq!(stats(&h.points[1], "celsius"), (43.0, 43.0, 43.0, 43.0));
    // Reopening keeps everything.
    drop(s);
    let s = open(&dir);
    assert_eq!(s.counts().unwrap(), [20, 0, 0]);
    assert!(matches!(
        s.query("device/eth0/zz", 0, u64::MAX, None, T0),
        Err(StoreError::UnknownSeries(_))
    ));
    assert!(matches!(
        s.query("nonsense", 0, u64::MAX, None, T0),
        Err(StoreError::UnknownSeries(_))
    ));
}

#[test]
fn the_range_chooses_the_tier() {
    let r = Retention::default();
    let now = T0 + 100 * 86_400_000;
    let h = 3_600_000;
    assert_eq!(Tier::for_range(now - 24 * h, now, &r), Tier::Raw);
    assert_eq!(Tier::for_range(now - 48 * h, now, &r), Tier::Raw);
    assert_eq!(Tier::for_range(now - 48 * h - 1, now, &r), Tier::Minute);
    assert_eq!(Tier::for_range(now - 30 * 24 * h, now, &r), Tier::Minute);
    assert_eq!(Tier::for_range(now - 31 * 24 * h, now, &r), Tier::Hour);
}

#[test]
fn downsampling_folds_complete_minutes_and_hours() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    // Two samples a minute for 70 minutes; temperatures 10, 20, 10, 20, ...
    for m in 0..70u64 {
        for k in 0..2u64 {
            let at = T0 + m * 60_000 + k * 30_000;
            s.write(&iv(
                at,
                vec![dev("a", 10 * (k + 1)), temp(10.0 + 10.0 * k as f64)],
            ))
            .unwrap();
        }
    }
    // At T0 + 70m 10s: minutes 0..70 are complete, hour 0 is.
    let now = T0 + 70 * 60_000 + 10_000;
    let r = s.maintain(now).unwrap();
    assert_eq!(r.folded, [140, 2], "{r:?}");
    // Folding is idempotent.
    assert_eq!(s.maintain(now).unwrap().folded, [0, 0]);
    let m = s
        .query(
            "device/eth0/a",
            T0,
            T0 + 3 * 60_000,
            Some(Tier::Minute),
            now,
        )
        .unwrap();
    assert_eq!(m.points.len(), 3);
    assert_eq!(m.points[0].at_ms, T0);
    assert_eq!(m.points[0].samples, 2);
    assert_eq!(m.points[0].covered_seconds, Some(2.0));
    assert_eq!(sum(&m.points[0], "tx_bytes"), 30);
    assert_eq!(sum(&m.points[0], "rx_packets"), 4);
    let t = s
        .query("temperature/cpu", T0, T0 + 60_000, Some(Tier::Minute), now)
        .unwrap();
    assert_eq!(stats(&t.points[0], "celsius"), (10.0, 15.0, 20.0, 20.0));
    let h = s
        .query("device/eth0/a", T0, T0 + 3_600_000, Some(Tier::Hour), now)
        .unwrap();
    assert_eq!(h.points.len(), 1);
    assert_eq!(h.points[0].samples, 120);
    assert_eq!(sum(&h.points[0], "tx_bytes"), 60 * 30);
    assert_eq!(h.points[0].covered_seconds, Some(120.0));
    let t = s
        .query("temperature/cpu", T0, T0 + 3_600_000, Some(Tier::Hour), now)
        .unwrap();
    assert_eq!(stats(&t.points[0], "celsius"), (10.0, 15.0, 20.0, 20.0));
    // The hour tier's newest hour is not folded yet: it comes from the
    // minutes (and raw) below, so a query sees it all.
    let h = s
        .query("device/eth0/a", T0, now, Some(Tier::Hour), now)
        .unwrap();
    assert_eq!(h.points.len(), 2);
    assert_eq!(h.points[1].at_ms, T0 + 3_600_000);
    assert_eq!(h.points[1].samples, 20);
    assert_eq!(sum(&h.points[1], "tx_bytes"), 10 * 30);
}

#[test]
fn expiry_respects_each_tiers_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let r = Retention {
        raw: Duration::from_secs(120),
        minute: Duration::from_secs(3600),
        hour: Duration::from_secs(3 * 3600),
        size_budget: 1 << 30,
    };
    let s = Store::open(&dir.path().join("h.redb"), r).unwrap();
    for m in 0..5u64 {
        s.write(&iv(T0 + m * 60_000, vec![dev("a", 1)])).unwrap();
    }
    // Now T0 + 5m: raw older than T0 + 3m goes (two samples), the rest stays.
    let rep = s.maintain(T0 + 5 * 60_000).unwrap();
    assert_eq!(rep.expired, [3, 0, 0], "{rep:?}");
    let raw = s
        .query("device/eth0/a", 0, u64::MAX, Some(Tier::Raw), T0)
        .unwrap();
    assert_eq!(
        raw.points.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
        [T0 + 3 * 60_000, T0 + 4 * 60_000]
    );
    assert_eq!(s.latest(10).unwrap().len(), 2);
    // The minutes are still there.
    let m = s
        .query("device/eth0/a", T0, T0 + 5 * 60_000, Some(Tier::Minute), T0)
        .unwrap();
    assert_eq!(m.points.len(), 5);
    // Two hours later the minutes of the first hour have expired, folded
    // into their hour; the hour itself (keyed by its start) expires once
    // its start is older than 3 h.
    let rep = s.maintain(T0 + 2 * 3_600_000 + 1).unwrap();
    assert_eq!(rep.expired, [2, 5, 0], "{rep:?}");
    let h = s
        .query("device/eth0/a", 0, u64::MAX, Some(Tier::Hour), T0)
        .unwrap();
    assert_eq!(h.points.len(), 1);
    assert_eq!(sum(&h.points[0], "tx_bytes"), 5);
    let rep = s.maintain(T0 + 3 * 3_600_000 + 1).unwrap();
    assert_eq!(rep.expired, [0, 0, 1], "{rep:?}");
    assert_eq!(rep.forgotten_series, 1);
    assert!(s.series(None).unwrap().is_empty());
}

#[test]
fn the_size_budget_deletes_raw_first_then_minutes_then_hours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    // 100 series, one interval every 10 s over 3 hours, with varied
    // deltas (so that each tier takes pages), folded and sealed.
    let n = 3 * 360;
    let now = T0 + n * 10_000;
    {
        let s = Store::open(&path, Retention::default()).unwrap();
        for i in 0..n {
            let samples = (0..100)
                .map(|d| dev(&format!("{d:03}"), (i * 7919 + d * 104_729) % 100_003))
                .collect();
            s.write(&iv(T0 + i * 10_000, samples)).unwrap();
        }
        s.maintain(now).unwrap();
    }
    let full = {
        let s = Store::open(&path, Retention::default()).unwrap();
        s.counts().unwrap()
    };
    assert!(full.iter().all(|&c| c > 0), "{full:?}");
    let used = Store::open(&path, Retention::default())
        .unwrap()
        .usage()
        .unwrap()
        .used_bytes;
    let (mut raw_first, mut minutes_next) = (false, false);
    for share in [0.98, 0.95, 0.9, 0.8, 0.5, 0.01] {
        let r = Retention {
            size_budget: (2.0 * used as f64 * share) as u64,
            ..Retention::default()
        };
        let s = Store::open(&path, r).unwrap();
        let rep = s.maintain(now).unwrap();
        let c = s.counts().unwrap();
        let by = rep.over_budget_by_tier;
        eprintln!("share {share}: {c:?} deleted {by:?}");
        assert!(rep.usage.unwrap().used_bytes <= r.data_budget() || c == [0, 0, 0]);
        // A tier loses data only once every finer tier is empty (all of it
        // was folded: `now` is on a whole hour).
        if c[1] < full[1] {
            assert_eq!(c[0], 0, "minutes deleted while raw samples are left");
        }
        if c[2] < full[2] {
            assert_eq!(c[..2], [0, 0], "hours deleted while finer data is left");
        }
        raw_first |= c[0] < full[0] && c[1] == full[1] && c[2] == full[2];
        minutes_next |= c[0] == 0 && c[1] < full[1] && c[2] == full[2];
        // What is left of the raw tier is its newest, contiguous.
        let raw = s.query("device/eth0/000", 0, u64::MAX, Some(Tier::Raw), now);
        if let Ok(raw) = raw
            && let (Some(first), Some(last)) = (raw.points.first(), raw.points.last())
        {
            assert_eq!(last.at_ms, now - 10_000);
            assert_eq!(raw.points.len() as u64, (now - first.at_ms) / 10_000);
        }
    }
    assert!(raw_first, "no budget cut only raw samples");
    assert!(
        minutes_next,
        "no budget cut minutes while keeping every hour"
    );
    let s = Store::open(&path, Retention::default()).unwrap();
    assert!(
        s.counts().unwrap()[2] < full[2],
        "the smallest budget cut hours"
    );
}

/// `n` device series, one sample each, for the `i`th of intervals 10 s apart
/// from `T0`.
fn devices_interval(i: u64, n: usize) -> Interval {
    Interval {
        at_ms: T0 + i * 10_000,
        length_ms: 10_000,
        samples: (0..n).map(|d| dev(&format!("{d:03}"), i + 1)).collect(),
    }
}

#[test]
fn maintenance_never_compacts_and_the_file_settles_near_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 1 << 20;
    let r = Retention {
        size_budget: budget,
        ..Retention::default()
    };
    let s = Store::open(&dir.path().join("h.redb"), r).unwrap();
    // An hour of 100 series every 10 s, with maintenance every minute as the
    // agent runs it: about 3.5 times the budget is written.
    let (minutes, per_minute) = (60, 6);
    let mut files = Vec::new();
    let mut reached = None;
    for m in 0..minutes {
        for i in m * per_minute..(m + 1) * per_minute {
            s.write(&devices_interval(i, 100)).unwrap();
        }
        let now = T0 + (m + 1) * per_minute * 10_000;
        let rep = s.maintain(now).unwrap();
        let usage = rep.usage.unwrap();
        if rep.over_budget > 0 {
            reached.get_or_insert(m);
        }
        if reached.is_some() {
            assert!(usage.used_bytes <= r.data_budget(), "minute {m}: {rep:?}");
        }
        files.push(usage.file_bytes);
    }
    let reached = reached.expect("the budget was never reached") as usize;
    assert!(
        reached < minutes as usize / 3,
        "budget reached at minute {reached}"
    );
    // Freed pages are reused: a few minutes over budget the file stops
    // growing, and it stays within what start-up would compact.
    let settled = files[reached + 10];
    assert!(
        files[reached + 10..].iter().all(|f| *f <= settled),
        "the file kept growing: {files:?}"
    );
    let max = *files.iter().max().unwrap();
    // Near the budget: redb's doubling steps may land a little past it.
    assert!(
        max <= budget + budget / 10,
        "file up to {max} bytes for a budget of {budget}: {files:?}"
    );
    // The newest data is all there.
    let last = minutes * per_minute - 1;
    let h = s
        .query(
            "device/eth0/042",
            T0,
            u64::MAX,
            Some(Tier::Raw),
            T0 + (last + 1) * 10_000,
        )
        .unwrap();
    assert_eq!(h.points.last().unwrap().at_ms, T0 + last * 10_000);
    assert_eq!(sum(h.points.last().unwrap(), "tx_bytes"), last + 1);
    eprintln!("budget {budget}: reached at minute {reached}; file lengths {files:?}");
}

#[test]
fn an_oversized_file_is_cut_to_its_budget_and_compacted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    // Written under the default 1 GiB budget...
    let s = Store::open(&path, Retention::default()).unwrap();
    let n = 300;
    for i in 0..n {
        s.write(&devices_interval(i, 100)).unwrap();
    }
    let now = T0 + n * 10_000;
    let mut s = s;
    assert!(!s.compact_oversized(now).unwrap(), "within its budget");
    let before = s.usage().unwrap();
    drop(s);
    // ... and opened with one of 1 MiB.
    let budget = 1 << 20;
    let r = Retention {
        size_budget: budget,
        ..Retention::default()
    };
    let mut s = Store::open(&path, r).unwrap();
    assert!(
        before.file_bytes as f64 > budget as f64 * retention::OVERSIZED_FACTOR,
        "{before:?}"
    );
    assert!(s.compact_oversized(now).unwrap());
    let after = s.usage().unwrap();
    assert!(after.used_bytes <= r.data_budget(), "{after:?}");
    assert!(
        after.file_bytes <= budget + budget / 10,
        "{before:?} -> {after:?}"
    );
    // The newest data is intact, the oldest gone.
    let h = s
        .query("device/eth0/007", T0, u64::MAX, Some(Tier::Raw), now)
        .unwrap();
    let first = h.points.first().unwrap().at_ms;
    assert!(first > T0, "nothing was deleted");
    for p in &h.points {
        let i = (p.at_ms - T0) / 10_000;
        assert_eq!(sum(p, "tx_bytes"), i + 1, "{p:?}");
    }
    assert_eq!(h.points.last().unwrap().at_ms, T0 + (n - 1) * 10_000);
    assert_eq!(h.points.len() as u64, n - (first - T0) / 10_000);
    // Once is enough; and the file opens again as it is.
    assert!(!s.compact_oversized(now).unwrap());
    drop(s);
    let s = Store::open(&path, r).unwrap();
    assert!(s.usage().unwrap().file_bytes <= budget + budget / 10);
    eprintln!("budget {budget}: {before:?} -> {after:?}");
}

#[test]
fn top_ranks_a_family_over_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..10u64 {
        // b sends most in the first half, c in the second.
        let (b, c) = if i < 5 { (100, 1) } else { (1, 300) };
        s.write(&iv(
            T0 + i * 1000,
            vec![dev("a", 10), dev("b", b), dev("c", c), temp(1.0)],
        ))
        .unwrap();
    }
    let now = T0 + 10_000;
    let top = s.top(Family::Device, "tx_bytes", T0, now, 2, now).unwrap();
    let names: Vec<_> = top.iter().map(|r| r.series.as_str()).collect();
    assert_eq!(names, ["device/eth0/c", "device/eth0/b"]);
    assert_eq!(top[0].value, 5.0 + 1500.0);
    let first_half = s
        .top(Family::Device, "tx_bytes", T0, T0 + 5000, 1, now)
        .unwrap();
    assert_eq!(first_half[0].series, "device/eth0/b");
    assert_eq!(sum(&first_half[0].total, "tx_bytes"), 500);
    assert!(
        s.top(Family::Device, "nope", T0, now, 2, now)
            .unwrap()
            .is_empty()
    );
    assert!(
        s.top(Family::Flow, "bytes", T0, now, 2, now)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn latest_lists_the_newest_intervals_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..5u64 {
        let samples = (0..i).map(|d| dev(&d.to_string(), 1)).collect();
        s.write(&iv(T0 + i * 1000, samples)).unwrap();
    }
    let l = s.latest(3).unwrap();
    assert_eq!(
        l,
        [
            IntervalRow {
                at_ms: T0 + 4000,
                length_ms: 1000,
                samples: 4
            },
            IntervalRow {
                at_ms: T0 + 3000,
                length_ms: 1000,
                samples: 3
            },
            IntervalRow {
                at_ms: T0 + 2000,
                length_ms: 1000,
                samples: 2
            },
        ]
    );
    assert_eq!(s.latest(100).unwrap().len(), 5);
}

#[test]
fn samples_of_the_wrong_shape_are_dropped_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let bad = (
        SeriesKey::new(Family::Device, &["eth0", "x"]),
        Values::Gauge(vec![1.0]),
    );
    s.write(&iv(T0, vec![bad, dev("a", 1)])).unwrap();
    assert_eq!(s.latest(1).unwrap()[0].samples, 1);
    assert_eq!(s.series(None).unwrap(), ["device/eth0/a"]);
}

/// Writes a version-0 file by hand: the old layout had no interval table.
fn write_v0(path: &Path) {
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut meta = tx.open_table(META).unwrap();
        meta.insert(schema::VERSION_KEY, 0).unwrap();
        let mut series = tx.open_table(SERIES).unwrap();
        let mut names = tx.open_table(SERIES_NAMES).unwrap();
        let mut raw = tx.open_table(RAW).unwrap();
        for (id, name) in [(0u32, "device/eth0/a"), (7, "temperature/cpu")] {
            series.insert(name, id).unwrap();
            names.insert(id, name).unwrap();
        }
        for i in 0..3u64 {
            let c = Values::Counter {
                interval_ms: 2000,
                deltas: vec![i, 1, 1, 1],
            };
            raw.insert((0, T0 + i * 2000), c.encode().as_slice())
                .unwrap();
            raw.insert(
                (7, T0 + i * 2000),
                Values::Gauge(vec![50.0]).encode().as_slice(),
            )
            .unwrap();
        }
        // A gauge-only interval.
        raw.insert(
            (7, T0 + 9000),
            Values::Gauge(vec![51.0]).encode().as_slice(),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn a_version_0_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    write_v0(&path);
    let s = Store::open(&path, Retention::default()).unwrap();
    let l = s.latest(10).unwrap();
    assert_eq!(
        l.iter()
            .map(|r| (r.at_ms, r.length_ms, r.samples))
            .collect::<Vec<_>>(),
        [
            (T0 + 9000, 0, 1),
            (T0 + 4000, 2000, 2),
            (T0 + 2000, 2000, 2),
            (T0, 2000, 2)
        ]
    );
    // New series get ids above the old ones.
    s.write(&iv(T0 + 10_000, vec![dev("new", 1), dev("a", 5)]))
        .unwrap();
    let h = s
        .query("device/eth0/a", T0, T0 + 20_000, None, T0 + 20_000)
        .unwrap();
    assert_eq!(h.points.len(), 4);
    assert_eq!(sum(&h.points[3], "tx_bytes"), 5);
    assert_eq!(s.series(None).unwrap().len(), 3);
    drop(s);
    let db = Database::open(&path).unwrap();
    let rtx = db.begin_read().unwrap();
    let meta = rtx.open_table(META).unwrap();
    assert_eq!(
        meta.get(schema::VERSION_KEY).unwrap().unwrap().value(),
        schema::SCHEMA_VERSION
    );
    assert_eq!(meta.get(NEXT_ID_KEY).unwrap().unwrap().value(), 9);
}

#[test]
fn a_newer_or_foreign_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.redb");
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert(schema::VERSION_KEY, 99)
            .unwrap();
        tx.commit().unwrap();
    }
    let err = Store::open(&path, Retention::default()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Newer { found: 99, .. }), "{msg}");
    assert!(
        msg.contains("version 99") && msg.contains(&format!("version {}", schema::SCHEMA_VERSION)),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    let other = dir.path().join("other.redb");
    {
        let db = Database::create(&other).unwrap();
        let tx = db.begin_write().unwrap();
        let t: redb::TableDefinition<u8, u8> = redb::TableDefinition::new("theirs");
        tx.open_table(t).unwrap().insert(1, 2).unwrap();
        tx.commit().unwrap();
    }
    let err = Store::open(&other, Retention::default()).err().unwrap();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 10_000]).unwrap();
    let err = Store::open(&garbage, Retention::default()).err().unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x5a; 10_000]);
}

fn mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

fn mac_key(src: u8, dst: u8) -> MacKey {
    MacKey {
        ifindex: 3,
        direction: direction::INGRESS,
        _pad0: 0,
        src: mac(src),
        dst: mac(dst),
        _pad1: [0; 2],
    }
}

fn flow_key(src: u8) -> FlowKey {
    let mut k = FlowKey {
        ifindex: 3,
        direction: direction::INGRESS,
        proto: 17,
        other: 0,
        _pad: 0,
        src_mac: mac(src),
        dst_mac: mac(9),
        src: [0; 16],
        dst: [0; 16],
    };
    k.src[10..12].copy_from_slice(&[0xff, 0xff]);
    k.src[12..].copy_from_slice(&[10, 0, 0, src]);
    k.dst[10..12].copy_from_slice(&[0xff, 0xff]);
    k.dst[12..].copy_from_slice(&[10, 0, 0, 9]);
    k
}

fn snapshot(t: &traffic::Traffic, at: SystemTime) -> Snapshot {
    Snapshot {
        updated: Some(at),
        interval: Duration::from_secs(1),
        devices: t.devices.values().cloned().collect(),
        flows: t.flows.values().cloned().collect(),
        names: [(3, "eth0".to_owned())].into(),
        ..Snapshot::default()
    }
}

#[test]
fn the_recorder_stores_traffic_deltas_and_the_top_flows() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut t = traffic::Traffic::new(Duration::from_secs(300));
    let mut rec = Recorder::new(2);
    let tel = Telemetry::default();
    let subnets = crate::ifaces::Subnets::default();
    let start = Instant::now();
    let c = |bytes, packets| Counter { bytes, packets };
    let reading =
        |macs: Vec<(MacKey, Counter)>, flows: Vec<(FlowKey, Counter)>| traffic::MapCounts {
            macs,
            flows,
            ..traffic::MapCounts::default()
        };
    // Interval 0 (the first: everything counted is new): 1 → 9 has sent
    // 1000 bytes.
    let wall0 = UNIX_EPOCH + Duration::from_millis(T0);
    t.update(
        start,
        wall0,
        &reading(
            vec![(mac_key(1, 9), c(1000, 10))],
            vec![(flow_key(1), c(1000, 10))],
        ),
        &subnets,
    );
    rec.write_interval(&s, &snapshot(&t, wall0), &tel, wall0)
        .unwrap();
    // Interval 1: 1 → 9 adds 500; 2 → 9 and 3 → 9 appear.
    let wall1 = wall0 + Duration::from_secs(1);
    t.update(
        start + Duration::from_secs(1),
        wall1,
        &reading(
            vec![
                (mac_key(1, 9), c(1500, 15)),
                (mac_key(2, 9), c(70, 1)),
                (mac_key(3, 9), c(9000, 6)),
            ],
            vec![
                (flow_key(1), c(1500, 15)),
                (flow_key(2), c(70, 1)),
                (flow_key(3), c(9000, 6)),
            ],
        ),
        &subnets,
    );
    let w = rec
        .write_interval(&s, &snapshot(&t, wall1), &tel, wall1)
        .unwrap();
    assert_eq!(
        w,
        record::Written {
            intervals: 1,
            pending: 0
        }
    );
    // The same snapshot again adds nothing.
    assert_eq!(
        rec.write_interval(
            &s,
            &snapshot(&t, wall1),
            &tel,
            wall1 + Duration::from_millis(10)
        )
        .unwrap()
        .intervals,
        0
    );
    let now = T0 + 10_000;
    let q = |name: &str| s.query(name, T0, now, None, now).unwrap().points;
    let a = q("device/eth0/02:00:00:00:00:01");
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0].at_ms, T0);
    assert_eq!(
        sum(&a[0], "tx_bytes"),
        1000,
        "the first interval counts in full"
    );
    assert_eq!(a[1].at_ms, T0 + 1000);
    assert_eq!(sum(&a[1], "tx_bytes"), 500);
    assert_eq!(sum(&a[1], "tx_packets"), 5);
    assert_eq!(sum(&a[1], "rx_bytes"), 0);
    let nine = q("device/eth0/02:00:00:00:00:09");
    assert_eq!(sum(&nine[0], "rx_bytes"), 1000);
    assert_eq!(sum(&nine[1], "rx_bytes"), 500 + 70 + 9000);
    // Only the top 2 flows by bytes: 3 (9000) and 1 (500).
    let flows = s.series(Some(Family::Flow)).unwrap();
    assert_eq!(
        flows,
        [
            "flow/eth0/ingress/17/10.0.0.1/10.0.0.9",
            "flow/eth0/ingress/17/10.0.0.3/10.0.0.9"
        ]
    );
    assert_eq!(sum(&q(&flows[1])[0], "bytes"), 9000);
    assert_eq!(s.latest(5).unwrap().len(), 2);
}

const YEAR_MS: u64 = 365 * 86_400_000;
const HOUR: u64 = 3_600_000;

fn clocked(dir: &tempfile::TempDir) -> (Store, Arc<clock::ManualClock>) {
    let c = Arc::new(clock::ManualClock::new(T0));
    let s = Store::open_with_clock(&dir.path().join("h.redb"), Retention::default(), c.clone())
        .unwrap();
    (s, c)
}

/// One interval a second for `secs` seconds, stamped by the store's clock
/// (as the agent's writer does), device `a` sending `tx` bytes each.
fn write_for(s: &Store, c: &clock::ManualClock, secs: u64, tx: u64) {
    for _ in 0..secs {
        s.write(&iv(s.now().wall_ms, vec![dev("a", tx)])).unwrap();
        c.advance(1000);
    }
}

/// Sum of `tx_bytes` and the number of points of device `a` over
/// `[from, to)` in `tier`.
fn tx_in(s: &Store, tier: Tier, from: u64, to: u64) -> (u64, usize) {
    let h = s
        .query("device/eth0/a", from, to, Some(tier), s.now().wall_ms)
        .unwrap();
    (
        h.points.iter().map(|p| sum(p, "tx_bytes")).sum(),
        h.points.len(),
    )
}

#[test]
fn a_clock_jump_forward_deletes_nothing_and_folding_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (s, c) = clocked(&dir);
    write_for(&s, &c, 600, 1);
    let r = s.maintain_now().unwrap();
    assert_eq!(r.folded[0], 10, "{r:?}");
    // The wall clock jumps 3 years ahead, past every tier's retention.
    c.jump(3 * YEAR_MS as i64);
    let jumped = s.now().wall_ms;
    assert_eq!(s.clock_jumps(), 1, "the jump is noticed (and logged)");
    write_for(&s, &c, 180, 2);
    let r = s.maintain_now().unwrap();
    assert_eq!(r.expired, [0, 0, 0], "a jump expires nothing: {r:?}");
    assert_eq!(r.over_budget, 0);
    assert_eq!(s.counts().unwrap()[0], 780, "every raw sample is kept");
    // Folding went on: the minutes before the jump and after it, and the
    // hour before it (complete by the wall clock now).
    assert_eq!(tx_in(&s, Tier::Raw, T0, T0 + HOUR), (600, 600));
    assert_eq!(tx_in(&s, Tier::Minute, T0, T0 + HOUR), (600, 10));
    assert_eq!(tx_in(&s, Tier::Minute, jumped, jumped + HOUR), (360, 3));
    assert_eq!(tx_in(&s, Tier::Hour, T0, T0 + HOUR), (600, 1));
    // Expiry counts the time that really passes: 49 hours on, the raw
    // samples from before the jump go (folded, they stay as minutes).
    // Those written after it are stamped 3 years ahead of the time that
    // passed: they stay until that time reaches them (or the size budget
    // needs their room).
    c.advance(49 * HOUR);
    let r = s.maintain_now().unwrap();
    assert_eq!(r.expired, [600, 0, 0], "{r:?}");
    assert_eq!(s.counts().unwrap()[0], 180);
    assert_eq!(tx_in(&s, Tier::Minute, T0, T0 + HOUR), (600, 10));
    assert_eq!(tx_in(&s, Tier::Raw, jumped, jumped + HOUR), (360, 180));
}

#[test]
fn a_restart_after_a_jump_forward_still_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (s, c) = clocked(&dir);
    write_for(&s, &c, 600, 1);
    s.maintain_now().unwrap();
    c.jump(3 * YEAR_MS as i64);
    write_for(&s, &c, 60, 2);
    s.maintain_now().unwrap();
    // The agent restarts (same boot): expiry goes on from the time saved.
    drop(s);
    c.advance(10_000);
    let s = Store::open_with_clock(&dir.path().join("h.redb"), Retention::default(), c.clone())
        .unwrap();
    let r = s.maintain_now().unwrap();
    assert_eq!(r.expired, [0, 0, 0], "{r:?}");
    assert_eq!(s.counts().unwrap()[0], 660);
}

#[test]
fn a_clock_jump_backward_loses_nothing_and_what_is_written_after_it_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let (s, c) = clocked(&dir);
    write_for(&s, &c, 600, 1);
    s.maintain_now().unwrap();
    // The wall clock jumps 3 years back: new samples land far below what
    // is folded already.
    c.jump(-(3 * YEAR_MS as i64));
    let back = s.now().wall_ms;
    assert_eq!(s.clock_jumps(), 1);
    write_for(&s, &c, 180, 2);
    let r = s.maintain_now().unwrap();
    assert_eq!(r.folded, [3, 1], "one merge per bucket: {r:?}");
    assert_eq!(r.expired, [0, 0, 0], "{r:?}");
    assert_eq!(s.counts().unwrap()[0], 780);
    // Folded where they are: 3 minutes, and their hour (which lies below
    // the hour watermark, so it is merged at once).
    assert_eq!(tx_in(&s, Tier::Minute, back, back + HOUR), (360, 3));
    assert_eq!(
        tx_in(
            &s,
            Tier::Hour,
            bucket(back, HOUR),
            bucket(back, HOUR) + HOUR
        ),
        (360, 1)
    );
    // And only once: another run changes nothing.
    assert_eq!(s.maintain_now().unwrap().folded, [0, 0]);
    assert_eq!(tx_in(&s, Tier::Minute, back, back + HOUR), (360, 3));
    // What was written before the jump is untouched.
    assert_eq!(tx_in(&s, Tier::Raw, T0, T0 + HOUR), (600, 600));
    assert_eq!(tx_in(&s, Tier::Minute, T0, T0 + HOUR), (600, 10));
    // 49 hours on, the raw samples written after the jump expire (they
    // are folded); those from before it lie in the future and stay.
    c.advance(49 * HOUR);
    let r = s.maintain_now().unwrap();
    assert_eq!(r.expired, [180, 0, 0], "{r:?}");
    assert_eq!(tx_in(&s, Tier::Minute, back, back + HOUR), (360, 3));
    assert_eq!(tx_in(&s, Tier::Raw, T0, T0 + HOUR), (600, 600));
}

#[test]
fn a_small_step_back_never_overwrites_an_interval_and_folds_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let (s, c) = clocked(&dir);
    write_for(&s, &c, 120, 1);
    s.maintain_now().unwrap();
    // 60 s back (beyond the tolerance): the next minute's intervals land
    // on the very milliseconds of ones already stored and folded.
    c.jump(-60_000);
    write_for(&s, &c, 60, 2);
    assert_eq!(s.latest(usize::MAX).unwrap().len(), 180, "none overwritten");
    s.maintain_now().unwrap();
    assert_eq!(tx_in(&s, Tier::Raw, T0, T0 + HOUR), (240, 180));
    assert_eq!(tx_in(&s, Tier::Minute, T0, T0 + 60_000), (60, 1));
    assert_eq!(
        tx_in(&s, Tier::Minute, T0 + 60_000, T0 + 120_000),
        (60 + 120, 1),
        "the late intervals are merged into their folded minute, once"
    );
    assert_eq!(s.maintain_now().unwrap().folded, [0, 0]);
    assert_eq!(tx_in(&s, Tier::Minute, T0, T0 + HOUR), (240, 2));
}

#[test]
fn finish_writes_every_queued_interval_even_while_maintenance_holds_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut rec = Recorder::new(0);
    for i in 0..5u64 {
        rec.queue(iv(T0 + i * 1000, vec![dev("a", 1)]));
    }
    std::thread::scope(|sc| {
        let (tx, rx) = std::sync::mpsc::channel();
        let s = &s;
        // Maintenance holds the series ids for a moment (writes are Busy).
        sc.spawn(move || {
            let held = s.ids.lock().unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        rx.recv().unwrap();
        let wall = UNIX_EPOCH + Duration::from_millis(T0 + 10_000);
        let deadline = Instant::now() + Duration::from_secs(10);
        let done = rec.finish(
            s,
            &Snapshot::default(),
            &Telemetry::default(),
            wall,
            deadline,
        );
        assert_eq!(done, (5, 0));
    });
    assert_eq!(s.latest(10).unwrap().len(), 5);
    assert_eq!(s.status().report().queued, 0);
}

#[test]
fn a_full_queue_drops_the_oldest_intervals_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut rec = Recorder::new(0).with_capacity(3);
    for i in 0..5u64 {
        rec.queue(iv(T0 + i * 1000, vec![dev("a", 1)]));
    }
    assert_eq!((rec.pending(), rec.dropped()), (3, 2));
    assert_eq!(rec.flush(&s).unwrap().intervals, 3);
    let kept: Vec<u64> = s.latest(10).unwrap().iter().map(|r| r.at_ms).collect();
    assert_eq!(kept, [T0 + 4000, T0 + 3000, T0 + 2000], "the oldest went");
    let r = s.status().report();
    assert_eq!((r.dropped, r.queue_capacity, r.queued), (2, 3, 0));
}

#[test]
fn sealing_into_chunks_keeps_every_point_and_merges_a_late_interval() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    // 40 minutes at 10 s: a device with traffic in two of three intervals,
    // a gauge with a gap.
    let n = 240u64;
    for i in 0..n {
        let mut samples = vec![temp(if i % 50 == 3 {
            f64::NAN
        } else {
            40.0 + (i % 7) as f64
        })];
        if i % 3 != 0 {
            samples.push(dev("a", i * 1_000 + i % 11));
        }
        s.write(&iv(T0 + i * 10_000, samples)).unwrap();
    }
    let now = T0 + n * 10_000;
    let read = |s: &Store| -> Vec<History> {
        let mut out = Vec::new();
        for name in ["device/eth0/a", "temperature/cpu"] {
            for tier in [Tier::Raw, Tier::Minute] {
                out.push(s.query(name, 0, u64::MAX, Some(tier), now).unwrap());
            }
        }
        out
    };
    let before = read(&s);
    let rep = s.maintain(now).unwrap();
    // Raw blocks of 30 minutes below the folded 40th minute: one sealed,
    // a chunk for each of the two series.
    assert_eq!(rep.sealed.chunks[0], 2, "{rep:?}");
    assert_eq!(rep.sealed.rows[0], 180 + 120, "{rep:?}");
    let sizes = s.tier_sizes().unwrap();
    assert_eq!(sizes[0].chunks, 2);
    assert_eq!(sizes[0].tail_samples, 60 + 40, "the last 10 minutes");
    // Same points, sealed or not (compare through JSON: NaN-free).
    let json = |h: &[History]| serde_json::to_string(h).unwrap();
    assert_eq!(json(&read(&s)), json(&before));
    // The wall clock went back: an interval lands in a sealed block. It is
    // folded into its minute and merged into the block's chunk.
    let late = T0 + 5 * 60_000 + 5_000;
    s.write(&iv(late, vec![dev("a", 7)])).unwrap();
    let rep = s.maintain(now + 1).unwrap();
    assert_eq!(rep.folded[0], 1, "{rep:?}");
    assert_eq!(rep.sealed.rows[0], 1, "{rep:?}");
    let raw = s
        .query("device/eth0/a", late, late + 1, Some(Tier::Raw), now)
        .unwrap();
    assert_eq!(raw.points.len(), 1);
    assert_eq!(sum(&raw.points[0], "tx_bytes"), 7);
    let m = s
        .query(
            "device/eth0/a",
            T0 + 5 * 60_000,
            T0 + 6 * 60_000,
            Some(Tier::Minute),
            now,
        )
        .unwrap();
    let want: u64 = (30..36u64)
        .filter(|i| i % 3 != 0)
        .map(|i| i * 1_000 + i % 11)
        .sum();
    assert_eq!(sum(&m.points[0], "tx_bytes"), want + 7);
    assert_eq!(
        s.counts().unwrap()[0],
        before[0].points.len() as u64 + n + 1
    );
}
