//! Version 1 → 2: a file in the layout every earlier build of this schema
//! wrote (one fixed-width row per sample and bucket) is opened, its data
//! sealed into chunks, and every point, label and interval survives.
//! Version 3 → 4: its chunks (format 1) are rewritten in format 2, every
//! point kept. Version 4 → 5: chunks move into the time-first tables.

use std::collections::BTreeMap;

use super::block::Read as _;

use redb::{Database, ReadableDatabase};

use super::*;
use crate::store::labels::{LABELS, Label};
use crate::store::schema::{H1, M1, RAW};

const T0: u64 = 1_800_000_000_000; // a whole hour, 2 h into a 6-hour block
const STEP: u64 = 10_000;
const HOURS: u64 = 8;

/// The series of the fixture: two devices and a gauge.
const NAMES: [(u32, &str); 3] = [
    (0, "device/eth0/02:00:00:00:00:0a"),
    (3, "device/eth0/02:00:00:00:00:0b"),
    (5, "temperature/cpu"),
];

fn family(id: u32) -> Family {
    Family::of(NAMES.iter().find(|(i, _)| *i == id).unwrap().1).unwrap()
}

/// The raw sample of series `id` at interval `i`, if it has one (device b
/// is idle most of the time: no sample).
fn sample(id: u32, i: u64) -> Option<Values> {
    match id {
        0 => Some(Values::Counter {
            interval_ms: 10_000 + (i % 3) as u32,
            deltas: vec![i * 7919 % 100_003, i % 17, 64 * (i % 5), i % 2],
        }),
        3 => i.is_multiple_of(30).then(|| Values::Counter {
            interval_ms: 10_000,
            deltas: vec![60, 1, 60, 1],
        }),
        _ => Some(Values::Gauge(vec![if i % 100 == 7 {
            f64::NAN
        } else {
            40.0 + (i % 13) as f64 / 4.0
        }])),
    }
}

/// The version-1 writer, as it was: rows in the tail tables, buckets folded
/// by the old maintenance (computed here with the same `Agg` rules),
/// intervals, labels, watermarks. Returns the expected points per series
/// and tier.
fn write_v1(path: &Path) -> HashMap<(u32, Tier), Vec<(u64, Agg)>> {
    let mut want: HashMap<(u32, Tier), Vec<(u64, Agg)>> = HashMap::new();
    let m1_done = T0 + 7 * HOUR_MS;
    let h1_done = T0 + 6 * HOUR_MS;
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut meta = tx.open_table(META).unwrap();
        meta.insert(schema::VERSION_KEY, 1).unwrap();
        meta.insert(schema::M1_DONE_KEY, m1_done).unwrap();
        meta.insert(schema::H1_DONE_KEY, h1_done).unwrap();
        meta.insert(NEXT_ID_KEY, 6).unwrap();
        let mut series = tx.open_table(SERIES).unwrap();
        let mut names = tx.open_table(SERIES_NAMES).unwrap();
        for (id, name) in NAMES {
            series.insert(name, id).unwrap();
            names.insert(id, name).unwrap();
        }
        let mut raw = tx.open_table(RAW).unwrap();
        let mut intervals = tx.open_table(INTERVALS).unwrap();
        for i in 0..HOURS * HOUR_MS / STEP {
            let at = T0 + i * STEP;
            let mut n = 0;
            for (id, _) in NAMES {
                if let Some(v) = sample(id, i) {
                    raw.insert((id, at), v.encode().as_slice()).unwrap();
                    want.entry((id, Tier::Raw))
                        .or_default()
                        .push((at, Agg::of(&v)));
                    n += 1;
                }
            }
            intervals.insert(at, (STEP as u32, n)).unwrap();
        }
        // Minutes folded up to m1_done, hours up to h1_done; and 10 days of
        // older hours (their raw samples and minutes long expired).
        let mut m1 = tx.open_table(M1).unwrap();
        let mut h1 = tx.open_table(H1).unwrap();
        for (id, _) in NAMES {
            let mut minutes: Vec<(u64, Agg)> = Vec::new();
            for (at, a) in &want[&(id, Tier::Raw)] {
                if *at < m1_done {
                    fold_into(&mut minutes, bucket(*at, MINUTE_MS), a);
                }
            }
            let mut hours: Vec<(u64, Agg)> = (1..=240u64)
                .rev()
                .map(|h| {
                    let at = T0 - h * HOUR_MS;
                    let agg = match family(id).kind() {
                        Kind::Counter => Agg::Counter {
                            covered_ms: HOUR_MS,
                            samples: 360,
                            sums: vec![h * 1000, h, h * 999, h + 1],
                        },
                        Kind::Gauge => Agg::of(&Values::Gauge(vec![h as f64])),
                    };
                    (at, agg)
                })
                .collect();
            for (at, a) in &minutes {
                if *at < h1_done {
                    fold_into(&mut hours, bucket(*at, HOUR_MS), a);
                }
            }
            for (at, a) in &minutes {
                m1.insert((id, *at), a.encode().as_slice()).unwrap();
            }
            for (at, a) in &hours {
                h1.insert((id, *at), a.encode().as_slice()).unwrap();
            }
            want.insert((id, Tier::Minute), minutes);
            want.insert((id, Tier::Hour), hours);
        }
        let mut labels = tx.open_table(LABELS).unwrap();
        for (mac, name) in [
            ("02:00:00:00:00:0a", "printer"),
            ("02:00:00:00:00:0b", "tv"),
        ] {
            let l = Label {
                name: Some(name.into()),
                note: None,
                updated_ms: 1,
            };
            labels
                .insert(mac, serde_json::to_string(&l).unwrap().as_str())
                .unwrap();
        }
    }
    tx.commit().unwrap();
    want
}

/// Every point of `want` is read back as written (aggregates before the
/// hour folded last; after it the fixture's buckets are partial).
fn assert_points(s: &Store, want: &HashMap<(u32, Tier), Vec<(u64, Agg)>>) {
    for (id, name) in NAMES {
        for tier in Tier::ALL {
            let h = s.query(name, 0, u64::MAX, Some(tier), T0).unwrap();
            assert_eq!(h.skipped, 0);
            let expect: Vec<Point> = want[&(id, tier)]
                .iter()
                .map(|(at, a)| Point::new(family(id), *at, a))
                .collect();
            let got: Vec<&Point> = h
                .points
                .iter()
                .filter(|p| tier == Tier::Raw || p.at_ms < T0 + 6 * HOUR_MS)
                .collect();
            let expect: Vec<&Point> = expect
                .iter()
                .filter(|p| tier == Tier::Raw || p.at_ms < T0 + 6 * HOUR_MS)
                .collect();
            assert_eq!(got.len(), expect.len(), "{name} {tier:?}");
            assert!(got == expect, "{name} {tier:?}: points differ");
        }
    }
}

#[test]
fn a_version_1_file_is_sealed_into_chunks_keeping_every_point_and_label() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.redb");
    let want = write_v1(&path);
    let counts = |tier| -> u64 {
        NAMES
            .iter()
            .map(|(id, _)| want[&(*id, tier)].len() as u64)
            .sum()
    };
    let total = [counts(Tier::Raw), counts(Tier::Minute), counts(Tier::Hour)];
    let v1_bytes = std::fs::metadata(&path).unwrap().len();
    for open in 0..2 {
        let s = Store::open(&path, Retention::default()).unwrap();
        assert_eq!(s.counts().unwrap(), total, "open {open}");
        let sizes = s.tier_sizes().unwrap();
        // Sealed up to the blocks of the watermarks: raw up to 7 h (the
        // last hour stays in the tail), minutes up to T0 + 4 h, hours
        // whole weeks before T0 + 6 h.
        for (t, size) in sizes.iter().enumerate() {
            assert!(size.chunks > 0, "tier {t}: nothing sealed: {size:?}");
            assert!(size.tail_samples < size.samples, "tier {t}: {size:?}");
        }
        assert_eq!(sizes[0].tail_samples, counts(Tier::Raw) / 8, "the 8th hour");
        assert_points(&s, &want);
        let labels = s.labels().unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["02:00:00:00:00:0b"].name.as_deref(), Some("tv"));
        assert_eq!(s.latest(usize::MAX).unwrap().len() as u64, HOURS * 360);
        let rtx = s.with_db(|db| Ok(db.begin_read()?)).unwrap();
        let version = rtx
            .open_table(META)
            .unwrap()
            .get(schema::VERSION_KEY)
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(version, schema::SCHEMA_VERSION);
        eprintln!(
            "open {open}: {total:?} samples, {sizes:?}; v1 file {v1_bytes} bytes, now {:?}",
            s.usage().unwrap()
        );
    }
}

/// Version 3 spells a flow series' direction as the API does: opening an
/// older file renames `flow/<iface>/in|out/...` and keeps each id (so its
/// data); other names are untouched.
#[test]
fn an_older_file_s_flow_directions_become_ingress_and_egress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.redb");
    write_v1(&path);
    let old = [
        (20, "flow/eth0/in/17/10.0.0.1/10.0.0.9"),
        (21, "flow/eth0/out/6/10.0.0.9/10.0.0.1"),
        (22, "flow/eth0/in/other"),
    ];
    {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut series = tx.open_table(SERIES).unwrap();
            let mut names = tx.open_table(SERIES_NAMES).unwrap();
            for (id, name) in old {
                series.insert(name, id).unwrap();
                names.insert(id, name).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let s = Store::open(&path, Retention::default()).unwrap();
    let mut flows = s.series(Some(Family::Flow)).unwrap();
    flows.sort();
    assert_eq!(
        flows,
        [
            "flow/eth0/egress/6/10.0.0.9/10.0.0.1",
            "flow/eth0/ingress/17/10.0.0.1/10.0.0.9",
            "flow/eth0/ingress/other",
        ]
    );
    let rtx = s.with_db(|db| Ok(db.begin_read()?)).unwrap();
    let series = rtx.open_table(SERIES).unwrap();
    assert_eq!(
        series
            .get("flow/eth0/ingress/other")
            .unwrap()
            .unwrap()
            .value(),
        22
    );
    assert!(series.get("flow/eth0/in/other").unwrap().is_none());
    assert_eq!(
        series
            .get("device/eth0/02:00:00:00:00:0a")
            .unwrap()
            .unwrap()
            .value(),
        0
    );
}

/// Schema 3's chunk layout (format 1), as its encoder wrote it: the count,
/// then each column a standalone pco file; no predictions.
struct V1(Vec<u8>);

impl V1 {
    fn new(n: usize) -> V1 {
        let mut out = vec![codec::FORMAT_1];
        codec::put_varint(&mut out, n as u64);
        V1(out)
    }
    fn col<T: pco::data_types::Number>(&mut self, nums: &[T]) -> &mut Self {
        let b = pco::standalone::simple_compress(nums, &pco::ChunkConfig::default()).unwrap();
        codec::put_varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(&b);
        self
    }
}

fn v1_raw(fam: Family, start: u64, es: &[(u64, Values)]) -> Vec<u8> {
    let mut w = V1::new(es.len());
    w.col(&es.iter().map(|(at, _)| at - start).collect::<Vec<u64>>());
    let n = fam.fields().len();
    match fam.kind() {
        Kind::Counter => {
            let (mut iv, mut cols) = (Vec::new(), vec![Vec::new(); n]);
            for (_, v) in es {
                let Values::Counter {
                    interval_ms,
                    deltas,
                } = v
                else {
                    panic!()
                };
                iv.push(*interval_ms);
                cols.iter_mut().zip(deltas).for_each(|(c, d)| c.push(*d));
            }
            w.col(&iv);
            cols.iter().for_each(|c| _ = w.col(c));
        }
        Kind::Gauge => {
            let mut cols = vec![Vec::new(); n];
            for (_, v) in es {
                let Values::Gauge(x) = v else { panic!() };
                cols.iter_mut().zip(x).for_each(|(c, x)| c.push(*x));
            }
            cols.iter().for_each(|c| _ = w.col(c));
        }
    }
    w.0
}

fn v1_agg(fam: Family, start: u64, es: &[(u64, Agg)]) -> Vec<u8> {
    let mut w = V1::new(es.len());
    w.col(&es.iter().map(|(at, _)| at - start).collect::<Vec<u64>>());
    let n = fam.fields().len();
    match fam.kind() {
        Kind::Counter => {
            let (mut cov, mut smp, mut cols) = (Vec::new(), Vec::new(), vec![Vec::new(); n]);
            for (_, a) in es {
                let Agg::Counter {
                    covered_ms,
                    samples,
                    sums,
                } = a
                else {
                    panic!()
                };
                cov.push(*covered_ms);
                smp.push(*samples);
                cols.iter_mut().zip(sums).for_each(|(c, d)| c.push(*d));
            }
            w.col(&cov).col(&smp);
            cols.iter().for_each(|c| _ = w.col(c));
        }
        Kind::Gauge => {
            let mut smp = Vec::new();
            let mut per: Vec<(Vec<u32>, [Vec<f64>; 4])> = vec![Default::default(); n];
            for (_, a) in es {
                let Agg::Gauge { samples, fields } = a else {
                    panic!()
                };
                smp.push(*samples);
                for ((c, st), f) in per.iter_mut().map(|(c, st)| (c, st)).zip(fields) {
                    c.push(f.count);
                    for (col, x) in st.iter_mut().zip([f.min, f.sum, f.max, f.last]) {
                        col.push(x);
                    }
                }
            }
            w.col(&smp);
            for (c, st) in &per {
                w.col(c);
                st.iter().for_each(|col| _ = w.col(col));
            }
        }
    }
    w.0
}

/// Every chunk of a tier: `((block start, series id), bytes)`.
fn all_chunks(tx: &redb::WriteTransaction, tier: Tier) -> Vec<((u64, u32), Vec<u8>)> {
    let w = block::Writer::open(tx, tier).unwrap();
    let starts: Vec<u64> = w
        .blocks
        .index
        .iter()
        .unwrap()
        .map(|r| r.unwrap().0.value())
        .collect();
    let mut out = Vec::new();
    for start in starts {
        for (id, b) in w.blocks.read(start).unwrap() {
            out.push(((start, id), b));
        }
    }
    out
}

/// Every chunk's format, per tier.
fn formats(path: &Path) -> Vec<Vec<u8>> {
    let db = Database::open(path).unwrap();
    let tx = db.begin_write().unwrap();
    let out = Tier::ALL
        .iter()
        .map(|t| {
            all_chunks(&tx, *t)
                .iter()
                .map(|(_, b)| chunk::format(b).unwrap())
                .collect()
        })
        .collect();
    tx.abort().unwrap();
    out
}

/// Version 3 → 4: a file as version 3 wrote it (chunks of format 1) is
/// opened, every chunk rewritten in format 2, every point kept; a crash
/// in the middle (the pending mark still set, some chunks rewritten)
/// finishes at the next start.
#[test]
fn a_version_3_file_s_chunks_are_recompressed_keeping_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.redb");
    let want = write_v1(&path);
    // Sealed by the current code, then each chunk written back as version
    // 3 wrote it.
    drop(Store::open(&path, Retention::default()).unwrap());
    for half in [false, true] {
        {
            let db = Database::open(&path).unwrap();
            let tx = db.begin_write().unwrap();
            for tier in Tier::ALL {
                let rows = all_chunks(&tx, tier);
                assert!(!rows.is_empty());
                let mut blocks: BTreeMap<u64, block::Chunks> = BTreeMap::new();
                for (i, ((start, id), b)) in rows.into_iter().enumerate() {
                    if half && i % 2 == 0 {
                        blocks.entry(start).or_default().insert(id, b);
                        continue;
                    }
                    let fam = family(id);
                    let (k, n) = (fam.kind(), fam.fields().len());
                    let old = if tier == Tier::Raw {
                        v1_raw(fam, start, &chunk::decode_raw(k, n, start, &b).unwrap())
                    } else {
                        v1_agg(fam, start, &chunk::decode_agg(k, n, start, &b).unwrap())
                    };
                    blocks.entry(start).or_default().insert(id, old);
                }
                let mut w = block::Writer::open(&tx, tier).unwrap();
                for (start, chunks) in blocks {
                    w.write(start, &chunks).unwrap();
                }
            }
            let mut meta = tx.open_table(META).unwrap();
            if half {
                // A crash after the migration's transaction, before the
                // rewriting finished.
                meta.insert(super::recode::RECODE_KEY, 1).unwrap();
            } else {
                meta.insert(schema::VERSION_KEY, 3).unwrap();
            }
            drop(meta);
            tx.commit().unwrap();
        }
        let before = formats(&path);
        assert!(before.iter().flatten().any(|f| *f == codec::FORMAT_1));
        let s = Store::open(&path, Retention::default()).unwrap();
        assert_points(&s, &want);
        let rtx = s.with_db(|db| Ok(db.begin_read()?)).unwrap();
        let meta = rtx.open_table(META).unwrap();
        assert_eq!(
            meta.get(schema::VERSION_KEY).unwrap().unwrap().value(),
            schema::SCHEMA_VERSION
        );
        assert!(meta.get(super::recode::RECODE_KEY).unwrap().is_none());
        drop((meta, rtx, s));
        let after = formats(&path);
        assert_eq!(
            after.iter().map(Vec::len).collect::<Vec<_>>(),
            before.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(
            after.iter().flatten().all(|f| *f == chunk::FORMAT),
            "{after:?}"
        );
    }
}

/// The file as version 4 laid it out: every chunk of the current tables
/// moved into version 4's, keyed `(series id, block start)`, the
/// time-first tables gone (all chunks when `all`, else every other one,
/// as a crash in the middle of the migration leaves it).
fn to_v4(path: &Path, all: bool) -> usize {
    let db = Database::open(path).unwrap();
    let tx = db.begin_write().unwrap();
    let mut moved = 0;
    for tier in Tier::ALL {
        let old = match tier {
            Tier::Raw => schema::V4_RAW_CHUNKS,
            Tier::Minute => schema::V4_M1_CHUNKS,
            Tier::Hour => schema::V4_H1_CHUNKS,
        };
        let rows = all_chunks(&tx, tier);
        assert!(!rows.is_empty());
        let mut v4 = tx.open_table(old).unwrap();
        let mut left: BTreeMap<u64, block::Chunks> = BTreeMap::new();
        for (i, ((start, id), b)) in rows.into_iter().enumerate() {
            left.entry(start).or_default();
            if !all && i % 2 == 0 {
                left.entry(start).or_default().insert(id, b);
                continue;
            }
            v4.insert((id, start), b.as_slice()).unwrap();
            moved += 1;
        }
        let mut w = block::Writer::open(&tx, tier).unwrap();
        for (start, chunks) in left {
            w.write(start, &chunks).unwrap();
        }
    }
    let mut meta = tx.open_table(META).unwrap();
    if all {
        meta.insert(schema::VERSION_KEY, 4).unwrap();
        drop(meta);
        for tier in Tier::ALL {
            tx.delete_table(tier.chunks()).unwrap();
            tx.delete_table(tier.index()).unwrap();
        }
        tx.delete_table(schema::CHUNK_LAST).unwrap();
    } else {
        meta.insert(super::rekey::REKEY_KEY, 1).unwrap();
        drop(meta);
    }
    tx.commit().unwrap();
    moved
}

/// Version 4 → 5: a file with version 4's series-first chunk tables is
/// opened, every chunk moved into the time-first tables, every point kept,
/// the old tables dropped; a crash in the middle (the mark still set, half
/// the chunks moved) finishes at the next start. Series with chunks left
/// are not forgotten by maintenance afterwards.
#[test]
fn a_version_4_file_s_chunks_are_reordered_by_time_keeping_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.redb");
    let want = write_v1(&path);
    drop(Store::open(&path, Retention::default()).unwrap());
    for all in [true, false] {
        let moved = to_v4(&path, all);
        assert!(moved > 0);
        let s = Store::open(&path, Retention::default()).unwrap();
        assert_points(&s, &want);
        assert_eq!(s.series(None).unwrap().len(), NAMES.len());
        let rtx = s.with_db(|db| Ok(db.begin_read()?)).unwrap();
        let meta = rtx.open_table(META).unwrap();
        assert_eq!(
            meta.get(schema::VERSION_KEY).unwrap().unwrap().value(),
            schema::SCHEMA_VERSION
        );
        assert!(meta.get(super::rekey::REKEY_KEY).unwrap().is_none());
        let names: Vec<String> = rtx
            .list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_owned())
            .collect();
        assert!(!names.iter().any(|n| n == "raw_chunks"), "{names:?}");
        drop((meta, rtx));
        // Maintenance at the fixture's time keeps every series and point.
        s.maintain(T0).unwrap();
        assert_eq!(s.series(None).unwrap().len(), NAMES.len());
        assert_points(&s, &want);
    }
}
