//! Part 7: the history store (redb), in process: write rate and write
//! amplification, bytes per stored sample of each tier from the file's
//! size with 1,000 devices of mixed traffic, long-range queries, and how
//! many such devices the default size budget holds.
//!
//! The traffic models (deterministic), both measured and printed: of 1,000
//! devices, 50 are busy (a sample every interval), 250 light (bursts of
//! 5-60 s of traffic in about a fifth of the time) and 700 idle (a
//! keepalive of one small packet each way every 30-90 s). A device without
//! traffic in an interval has no sample, as in the agent. Interval times
//! and lengths carry a few ms of jitter, as the agent's drain does.
//! - [`Traffic::Autocorrelated`]: busy devices receive TCP streams whose
//!   rate follows on from the second before (see [`Model::tcp`]), light
//!   ones the same in their bursts at 1-30 kB a second.
//! - [`Traffic::Iid`] (the first model, kept so its figures can be
//!   compared): each busy second's bytes drawn independently, 20 kB-2 MB;
//!   light seconds 1-31 kB; rx and packets exact functions of tx bytes
//!   (which flatters the codec's predictions).

use std::time::{Duration, Instant};

use netmon_agent::store::{Family, Interval, Retention, SeriesKey, Store, Tier, Values};

use crate::harness::median;

/// Device series written per interval in the write-rate measurement.
const STORE_SERIES: usize = 1000;
/// Intervals written in it.
const STORE_INTERVALS: u64 = 600;
/// Devices of the mixed-traffic model.
const DEVICES: usize = 1000;
const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % (7 * 86_400_000);

pub struct HistoryBench {
    samples_per_s: f64,
    intervals_per_s: f64,
    /// Bytes the writes sent to the disk, per sample and per interval.
    written_per_sample: f64,
    written_per_interval: f64,
    /// On disk with each traffic model: the autocorrelated one, then the
    /// i.i.d. one.
    density: Vec<Density>,
    day_raw_ms: f64,
    day_raw_points: usize,
    month_minute_ms: f64,
    month_minute_points: usize,
}

/// Bytes on disk per stored entry with one traffic model.
pub struct Density {
    traffic: Traffic,
    /// Bytes of compacted file per raw sample, 1-minute and 1-hour bucket,
    /// and how many of each the measurement freed.
    tier_bytes: [f64; 3],
    tier_samples: [u64; 3],
    /// Per device and second: raw samples; per device and minute / hour:
    /// buckets (the model's rates).
    rates: [f64; 3],
    /// One device's default retentions, bytes.
    per_device: f64,
    devices_held: f64,
}

fn device_interval(at_ms: u64, length_ms: u32, devices: usize) -> Interval {
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

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Which traffic the model makes (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Traffic {
    /// Each busy second's bytes drawn independently and uniformly from
    /// 20 kB-2 MB, packets an exact function of bytes (the first model).
    Iid,
    /// Rates that follow on from the second before (see [`Model::tcp`]).
    Autocorrelated,
}

/// The mixed traffic of [`DEVICES`] devices, interval after interval.
struct Model {
    traffic: Traffic,
    rng: Rng,
    /// Light devices: seconds of burst left; idle: seconds to the next
    /// keepalive.
    left: Vec<u64>,
    /// Autocorrelated model: each device's log rate now and the level it
    /// drifts to (ln bytes a second), and its mean data segment size.
    rate: Vec<(f64, f64, u64)>,
}

impl Model {
    fn new(traffic: Traffic) -> Model {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let left = (0..DEVICES).map(|_| rng.below(90)).collect();
        // A generator of its own, so the first model's draws are as they were.
        let mut levels = Rng(0x2545_f491_4f6c_dd1d);
        let rate = (0..DEVICES)
            .map(|_| {
                let level = Model::log_uniform(&mut levels, 20_000.0, 2_000_000.0);
                (level, level, 1100 + levels.below(349))
            })
            .collect();
        Model {
            traffic,
            rng,
            left,
            rate,
        }
    }

    fn unit(r: &mut Rng) -> f64 {
        (r.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn log_uniform(r: &mut Rng, lo: f64, hi: f64) -> f64 {
        lo.ln() + Model::unit(r) * (hi.ln() - lo.ln())
    }

    /// About normal, mean 0, standard deviation `sd` (a sum of uniforms).
    fn noise(r: &mut Rng, sd: f64) -> f64 {
        let s: f64 = (0..4).map(|_| Model::unit(r)).sum::<f64>() - 2.0;
        s * sd * 3f64.sqrt()
    }

    fn key(i: usize) -> SeriesKey {
        let mac = format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
        SeriesKey::new(Family::Device, &["eth0", &mac])
    }

    /// One second of a device receiving a TCP stream in the autocorrelated
    /// model: the log rate moves 10% of the way back to its level and by a
    /// noise of 15% (a stream's rate is much the same one second to the
    /// next); packets are the bytes over the device's mean segment size,
    /// give or take a few (a stream's last segment is short); the other
    /// way go the ACKs, one per two segments, give or take, of 66 bytes,
    /// and now and then a request. Returns (tx, tx packets, rx, rx
    /// packets).
    fn tcp(r: &mut Rng, rate: &mut (f64, f64, u64)) -> [u64; 4] {
        rate.0 += 0.1 * (rate.1 - rate.0) + Model::noise(r, 0.15);
        let rx = rate.0.exp().max(60.0) as u64;
        let rx_pk = (rx / rate.2 + r.below(3)).max(1);
        let tx_pk = (rx_pk / 2 + r.below(3)).max(1);
        let request = if r.below(10) == 0 { r.below(600) } else { 0 };
        [tx_pk * 66 + request, tx_pk, rx, rx_pk]
    }

    /// The samples of an interval of `secs` seconds ending at `at_ms`.
    fn interval(&mut self, at_ms: u64, secs: u64) -> Interval {
        let jitter = self.rng.below(7) as u32;
        let length_ms = (secs * 1000) as u32 + jitter;
        // Intervals over a minute: a minute's pattern, scaled.
        let (secs, scale) = (secs.min(60), secs / secs.min(60));
        let mut samples = Vec::new();
        for i in 0..DEVICES {
            let d = if self.traffic == Traffic::Iid {
                self.iid(i, secs, scale)
            } else {
                self.autocorrelated(i, secs).map(|x| x * scale)
            };
            if d == [0; 4] {
                continue;
            }
            samples.push((
                Model::key(i),
                Values::Counter {
                    interval_ms: length_ms,
                    deltas: d.to_vec(),
                },
            ));
        }
        Interval {
            at_ms: at_ms + u64::from(jitter),
            length_ms,
            samples,
        }
    }

    /// Device `i`'s `secs` seconds in the first model, times `scale`.
    fn iid(&mut self, i: usize, secs: u64, scale: u64) -> [u64; 4] {
        let r = &mut self.rng;
        let (tx, rx) = if i < 50 {
            // Busy: every second, in varied amounts.
            let base = 20_000 + r.below(2_000_000);
            (base * secs, (base / 8 + r.below(50_000)) * secs)
        } else if i < 300 {
            // Light: bursts.
            let mut bytes = 0;
            for _ in 0..secs {
                if self.left[i] > 0 {
                    self.left[i] -= 1;
                    bytes += 1000 + r.below(30_000);
                } else if r.below(100) < 4 {
                    self.left[i] = 5 + r.below(55);
                }
            }
            (bytes, bytes / 3)
        } else {
            let [b, _, _, _] = self.keepalive(i, secs);
            (b, b)
        };
        if tx == 0 && rx == 0 {
            return [0; 4];
        }
        let (tx, rx) = (tx * scale, rx * scale);
        let pk = |b: u64| b.div_ceil(1200).max(1);
        [tx, pk(tx), rx, pk(rx)]
    }

    /// Idle device `i`: a keepalive now and then (both models).
    fn keepalive(&mut self, i: usize, secs: u64) -> [u64; 4] {
        let r = &mut self.rng;
        let mut bytes = 0;
        for _ in 0..secs {
            if self.left[i] == 0 {
                self.left[i] = 30 + r.below(60);
                bytes += 60 + r.below(60);
            } else {
                self.left[i] -= 1;
            }
        }
        let pk = u64::from(bytes > 0);
        // The reply: as long as the request in the first model, of its own
        // length (60-120 bytes) in the second.
        let reply = if self.traffic == Traffic::Iid || bytes == 0 {
            bytes
        } else {
            60 * pk * secs.div_ceil(60) + self.rng.below(60)
        };
        [bytes, pk, reply, pk]
    }

    /// Device `i`'s `secs` seconds in the autocorrelated model: busy
    /// devices stream all the time (a new stream at a new level about
    /// every 5 minutes), light ones in bursts of 5-60 s as in the first
    /// model, at levels of 1-30 kB a second.
    fn autocorrelated(&mut self, i: usize, secs: u64) -> [u64; 4] {
        if i >= 300 {
            return self.keepalive(i, secs);
        }
        let mut sum = [0u64; 4];
        for _ in 0..secs {
            let r = &mut self.rng;
            let on = if i < 50 {
                if r.below(300) == 0 {
                    self.rate[i].1 = Model::log_uniform(r, 20_000.0, 2_000_000.0);
                }
                true
            } else if self.left[i] > 0 {
                self.left[i] -= 1;
                true
            } else {
                if r.below(100) < 4 {
                    self.left[i] = 5 + r.below(55);
                    let level = Model::log_uniform(r, 1_000.0, 30_000.0);
                    self.rate[i] = (level, level, self.rate[i].2);
                }
                false
            };
            if on {
                let d = Model::tcp(&mut self.rng, &mut self.rate[i]);
                for (s, x) in sum.iter_mut().zip(d) {
                    *s += x;
                }
            }
        }
        sum
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

/// Bytes this process has caused to be written to storage.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The file's size once compacted (a copy, through redb): pages in use,
/// B-tree overhead included, free pages left out.
fn compacted_size(path: &std::path::Path) -> u64 {
    let copy = path.with_extension("compacted");
    std::fs::copy(path, &copy).expect("copying the file");
    let mut db = redb::Database::create(&copy).expect("opening the copy");
    while db.compact().expect("compacting") {}
    drop(db);
    let n = std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&copy);
    n
}

/// Maintains until nothing is left to fold at `now`.
fn settle(st: &Store, now: u64) {
    for _ in 0..1000 {
        let m = st.maintain(now).expect("maintenance");
        if m.folded == [0, 0] {
            break;
        }
    }
}

/// Writes `n` intervals of `secs` seconds of the model from `start`,
/// maintaining every `maintain_every` intervals; returns the raw samples.
fn write_model(st: &Store, m: &mut Model, start: u64, n: u64, secs: u64, every: u64) -> u64 {
    let mut samples = 0;
    for k in 1..=n {
        let at = start + k * secs * 1000;
        let iv = m.interval(at, secs);
        samples += iv.samples.len() as u64;
        st.write(&iv).expect("writing");
        if k % every == 0 {
            st.maintain(at).expect("maintenance");
        }
    }
    samples
}

/// Bytes per raw sample, per 1-minute and per 1-hour bucket, from the
/// compacted file's size: each tier's data is written at its own
/// resolution, sealed, then deleted by a zero retention, and the file's
/// shrinkage divided by what was deleted. Returns the figures, the counts
/// and the model's rates.
fn tier_bytes(dir: &std::path::Path, traffic: Traffic) -> ([f64; 3], [u64; 3], [f64; 3]) {
    let keep = Retention::default();
    // Retentions that drop the `n` finest tiers.
    let drop_tiers = |n: usize| Retention {
        raw: if n >= 1 { Duration::ZERO } else { keep.raw },
        minute: if n >= 2 { Duration::ZERO } else { keep.minute },
        hour: if n >= 3 { Duration::ZERO } else { keep.hour },
        ..keep
    };
    let mut out = [0.0; 3];
    let mut counts = [0; 3];
    let mut rates = [0.0; 3];
    // Each tier at its resolution, long enough that the open tail (about a
    // block) is a small share as at steady state: 8 h of 1 s intervals; 3
    // days of 1-minute intervals; 26 weeks of 1-hour intervals (each
    // interval becomes one raw sample, then one bucket of the tier).
    for (t, (secs, n)) in [(1u64, 8 * 3600u64), (60, 3 * 1440), (3600, 26 * 7 * 24)]
        .into_iter()
        .enumerate()
    {
        let path = dir.join(format!("tier{t}.redb"));
        let mut m = Model::new(traffic);
        let now = T0 + (n + 1) * secs * 1000;
        {
            let st = Store::open(&path, keep).expect("opening a store");
            let samples = write_model(&st, &mut m, T0, n, secs, 60);
            settle(&st, now);
            if t == 0 {
                rates[0] = samples as f64 / (DEVICES as f64 * (n * secs) as f64);
            }
        }
        // Drop the finer tiers first, then measure the tier itself.
        let st = Store::open(&path, drop_tiers(t)).expect("opening");
        settle(&st, now);
        let before = st.counts().expect("counts");
        let z = st.tier_sizes().expect("tier sizes")[t];
        println!(
            "tier {}: {} entries ({} in the open tail), {} chunks; blocks' pieces and index {} B ({:.2} B an entry), tail's {} B, B-tree bookkeeping {} B, free space in pages {} B, pages {} B",
            ["raw", "1 minute", "1 hour"][t],
            z.samples,
            z.tail_samples,
            z.chunks,
            z.chunk_stored_bytes,
            z.chunk_stored_bytes as f64 / (z.samples - z.tail_samples).max(1) as f64,
            z.tail_stored_bytes,
            z.metadata_bytes,
            z.fragmented_bytes,
            z.page_bytes
        );
        drop(st);
        let size_with = compacted_size(&path);
        let st = Store::open(&path, drop_tiers(t + 1)).expect("opening");
        let rep = st.maintain(now).expect("maintenance");
        let after = st.counts().expect("counts");
        drop(st);
        let size_without = compacted_size(&path);
        let gone = before[t] - after[t];
        counts[t] = gone;
        out[t] = size_with.saturating_sub(size_without) as f64 / gone.max(1) as f64;
        if t > 0 {
            // Buckets per device and bucket of the tier.
            rates[t] = before[t] as f64 / (DEVICES as f64 * n as f64);
        }
        println!(
            "tier {}: {gone} of {:?} stored deleted ({:?} expired), compacted file {size_with} -> {size_without} bytes: {:.2} B each",
            ["raw", "1 minute", "1 hour"][t],
            before,
            rep.expired,
            out[t]
        );
        let _ = std::fs::remove_file(&path);
    }
    (out, counts, rates)
}

pub fn part7() -> HistoryBench {
    println!("\n## Part 7: history store (redb, compressed chunks)\n");
    let retention = Retention::default();
    // Writes on the real disk: one fsync per interval is the cost.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let st = Store::open(&dir.path().join("w.redb"), retention).expect("opening a store");
    let t0 = 1_700_000_000_000u64;
    let w0 = written_bytes();
    let start = Instant::now();
    for i in 0..STORE_INTERVALS {
        st.write(&device_interval(t0 + i * 1000, 1000, STORE_SERIES))
            .expect("writing an interval");
    }
    let wall = start.elapsed().as_secs_f64();
    let written = written_bytes().saturating_sub(w0) as f64;
    let samples_per_s = (STORE_INTERVALS as usize * STORE_SERIES) as f64 / wall;
    let intervals_per_s = STORE_INTERVALS as f64 / wall;
    let written_per_interval = written / STORE_INTERVALS as f64;
    let written_per_sample = written_per_interval / STORE_SERIES as f64;
    println!(
        "writes: {STORE_INTERVALS} intervals of {STORE_SERIES} device samples in {wall:.2} s: {samples_per_s:.0} samples/s ({intervals_per_s:.0} intervals/s, one transaction and fsync each); {written_per_interval:.0} bytes written to the disk per interval, {written_per_sample:.0} per sample (the row is 48)"
    );
    drop(st);

    // Bytes per stored sample of each tier, on tmpfs (the disk's fsyncs
    // would take minutes), with the mixed traffic of 1,000 devices.
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs directory");
    let mut density = Vec::new();
    for traffic in [Traffic::Autocorrelated, Traffic::Iid] {
        println!("traffic model: {traffic:?}");
        let (tier_bytes, tier_samples, rates) = tier_bytes(shm.path(), traffic);
        // One device's share of the default retentions, at the model's rates.
        let per_device = rates[0] * 48.0 * 3600.0 * tier_bytes[0]
            + rates[1] * 30.0 * 1440.0 * tier_bytes[1]
            + rates[2] * 730.0 * 24.0 * tier_bytes[2];
        let devices_held = retention.data_budget() as f64 / per_device;
        println!(
            "model {traffic:?}: {:.3} raw samples per device and second, {:.3} buckets per device and minute, {:.3} per device and hour; one device's default retentions take {:.0} kB; the default budget (1 GiB, pages in use kept within half of it) holds {devices_held:.0} devices",
            rates[0],
            rates[1],
            rates[2],
            per_device / 1000.0
        );
        density.push(Density {
            traffic,
            tier_bytes,
            tier_samples,
            rates,
            per_device,
            devices_held,
        });
    }

    // Long ranges: a day of 1 s raw samples and 30 days of 1-minute
    // aggregates of one device among 10, folded and sealed.
    let path = shm.path().join("h.redb");
    let st = Store::open(&path, retention).expect("opening a store");
    let now = T0 + 31 * 86_400_000;
    let month_start = now - 30 * 86_400_000;
    let day_start = now - 86_400_000;
    let mut at = month_start;
    let mut k = 0u64;
    while at < day_start {
        st.write(&device_interval(at, 60_000, 10)).expect("writing");
        at += 60_000;
        k += 1;
        if k.is_multiple_of(1440) {
            st.maintain(at).expect("maintenance");
        }
    }
    while at < now {
        st.write(&device_interval(at, 1000, 10)).expect("writing");
        at += 1000;
        k += 1;
        if k.is_multiple_of(3600) {
            st.maintain(at).expect("maintenance");
        }
    }
    settle(&st, now);
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
    let sizes = st.tier_sizes().expect("tier sizes");
    println!("\n| tier | samples | of which in the open tail | chunks | B-tree pages |");
    println!("|---|---:|---:|---:|---:|");
    for (name, t) in ["raw", "1 minute", "1 hour"].iter().zip(sizes.iter()) {
        println!(
            "| {name} | {} | {} | {} | {:.1} MiB |",
            t.samples,
            t.tail_samples,
            t.chunks,
            t.page_bytes as f64 / (1 << 20) as f64
        );
    }
    HistoryBench {
        samples_per_s,
        intervals_per_s,
        written_per_sample,
        written_per_interval,
        density,
        day_raw_ms,
        day_raw_points: day.points.len(),
        month_minute_ms,
        month_minute_points: month.points.len(),
    }
}

/// Part 7's summary rows.
pub fn summary(h: &HistoryBench) {
    println!(
        "| history writes ({STORE_SERIES} device samples an interval, one transaction and fsync each, on disk) | {:.0} samples/s ({:.0} intervals/s) | >= 200,000 samples/s | - |",
        h.samples_per_s, h.intervals_per_s
    );
    println!(
        "| history write amplification (bytes sent to the disk) | {:.0} B per sample, {:.0} B per interval | - | - |",
        h.written_per_sample, h.written_per_interval
    );
    for d in &h.density {
        let model = match d.traffic {
            Traffic::Autocorrelated => "autocorrelated rates",
            Traffic::Iid => "the first model's i.i.d. uniform rates",
        };
        for (i, name) in ["raw sample", "1-minute bucket", "1-hour bucket"]
            .iter()
            .enumerate()
        {
            println!(
                "| history on disk per {name}, 1,000 mixed devices, {model} (compacted file size / {} deleted) | {:.2} B | {} | - |",
                d.tier_samples[i],
                d.tier_bytes[i],
                if i == 0 { "<= 4 B" } else { "<= 8 B" }
            );
        }
        println!(
            "| devices the default 1 GiB budget holds for 48 h raw + 30 days of minutes + 730 days of hours, {model} ({:.3} samples/device/s, {:.3} buckets/device/minute, {:.3}/device/hour; {:.0} kB a device) | {:.0} | >= 1,000 | - |",
            d.rates[0],
            d.rates[1],
            d.rates[2],
            d.per_device / 1000.0,
            d.devices_held
        );
    }
    println!(
        "| history query: 24 h of one device, raw ({} points) | {:.1} ms | <= 20 ms | - |",
        h.day_raw_points, h.day_raw_ms
    );
    println!(
        "| history query: 30 days of one device at 1 minute ({} points) | {:.1} ms | <= 20 ms | - |",
        h.month_minute_points, h.month_minute_ms
    );
}
