//! The compressed chunk: one series' entries (raw samples or buckets) of one
//! time block, as columns compressed by [`pco`] (see `codec.rs` for how a
//! column is stored).
//!
//! Layout: a format byte ([`FORMAT`]), the entry count (LEB128), then the
//! columns. Columns, in order:
//! - times: ms after the block's start (the chunk's key);
//! - raw counter: `interval_ms` (or its residual from the gaps between the
//!   times), then each field's delta (or its residual from the previous or
//!   the one before: packets from bytes, rx from tx);
//! - raw gauge: each field's value (`f64`, NaN where unavailable);
//! - aggregate counter: `samples`, `covered_ms` (or its residual from the
//!   samples), each field's sum (as the raw deltas);
//! - aggregate gauge: `samples`, then per field `count`, `min`, `sum`,
//!   `max`, `last` (`f64`).
//!
//! Format 1 (schema 3) had no predictions and its own column order
//! (interval, then fields; covered, samples, sums); it is still read.
//!
//! Why pco: it is a column codec for numbers that picks per column what
//! Gorilla-style encoders hard-wire, and more: delta orders (so regular
//! timestamps cost near nothing, the delta-of-delta case), a common
//! multiple (bucket starts, interval lengths), and entropy-coded bins for
//! the values, losslessly for integers and floats (NaN included). The
//! counters here are deltas already: small, often zero, often repeated,
//! which its binning codes in a few bits. It is pure Rust, maintained, with
//! a stable format since 1.0; hand-rolling a bit packer would be more code
//! to get right and compress worse.
//!
//! Decoding checks the format byte, each column's length and entry count,
//! so a damaged chunk is reported ([`DecodeError`]), never misread.

use super::{
    Agg, Kind, Values,
    codec::{FORMAT_1, Reader, Writer},
    series::{DecodeError, GaugeField},
};

/// The chunk layout's version byte, as written.
pub const FORMAT: u8 = super::codec::FORMAT_2;

/// One series' entries of a block, as stored.
pub type Entries<T> = Vec<(u64, T)>;

/// The entry count of a chunk, read from its header alone.
pub fn count(b: &[u8]) -> Option<u64> {
    Reader::new(b).ok().map(|r| r.n as u64)
}

/// The layout version of a chunk.
pub fn format(b: &[u8]) -> Option<u8> {
    Reader::new(b).ok().map(|r| r.format())
}

fn times<T>(start: u64, entries: &[(u64, T)]) -> Vec<u64> {
    entries.iter().map(|(at, _)| at - start).collect()
}

/// Field columns of a counter: each predicted from the one or two before
/// it (`first` is the first field's column index).
fn counter_fields(w: &mut Writer, cols: Vec<Vec<u64>>) {
    let mut idx: Vec<usize> = Vec::new();
    for c in cols {
        let bases: Vec<usize> = idx.iter().rev().take(2).copied().collect();
        idx.push(w.ints(c, &bases, false));
    }
}

/// Encodes raw samples of a series of `n` fields, in time order, of the
/// block starting at `start` (every time ≥ `start`).
pub fn encode_raw(kind: Kind, n: usize, start: u64, entries: &[(u64, Values)]) -> Vec<u8> {
    let mut w = Writer::new(entries.len());
    w.ints(times(start, entries), &[], false);
    match kind {
        Kind::Counter => {
            let mut intervals = Vec::with_capacity(entries.len());
            let mut cols = vec![Vec::with_capacity(entries.len()); n];
            for (_, v) in entries {
                if let Values::Counter {
                    interval_ms,
                    deltas,
                } = v
                {
                    intervals.push(u64::from(*interval_ms));
                    for (c, d) in cols.iter_mut().zip(deltas) {
                        c.push(*d);
                    }
                }
            }
            w.ints(intervals, &[], true);
            counter_fields(&mut w, cols);
        }
        Kind::Gauge => {
            let mut cols = vec![Vec::with_capacity(entries.len()); n];
            for (_, v) in entries {
                if let Values::Gauge(vals) = v {
                    for (c, x) in cols.iter_mut().zip(vals) {
                        c.push(*x);
                    }
                }
            }
            for c in &cols {
                w.floats(c);
            }
        }
    }
    w.finish()
}

/// Decodes what [`encode_raw`] wrote (either format).
pub fn decode_raw(
    kind: Kind,
    n: usize,
    start: u64,
    b: &[u8],
) -> Result<Entries<Values>, DecodeError> {
    let mut r = Reader::new(b)?;
    let (v1, at) = chunk_times(&mut r)?;
    let out = match kind {
        Kind::Counter => {
            let (intervals, cols): (Vec<u32>, Vec<Vec<u64>>) = if v1 {
                let i = r.legacy()?;
                (i, (0..n).map(|_| r.legacy()).collect::<Result<_, _>>()?)
            } else {
                let i = r.ints()?;
                for _ in 0..n {
                    r.ints()?;
                }
                (r.narrow(i)?, r.ints.split_off(2))
            };
            (0..r.n)
                .map(|i| {
                    (
                        start + at[i],
                        Values::Counter {
                            interval_ms: intervals[i],
                            deltas: cols.iter().map(|c| c[i]).collect(),
                        },
                    )
                })
                .collect()
        }
        Kind::Gauge => {
            let cols: Vec<Vec<f64>> = (0..n)
                .map(|_| if v1 { r.legacy() } else { r.floats() })
                .collect::<Result<_, _>>()?;
            (0..r.n)
                .map(|i| {
                    (
                        start + at[i],
                        Values::Gauge(cols.iter().map(|c| c[i]).collect()),
                    )
                })
                .collect()
        }
    };
    r.done()?;
    Ok(out)
}

/// Encodes buckets of a series of `n` fields, in time order, of the block
/// starting at `start`. Buckets of the other kind or width are left out.
pub fn encode_agg(kind: Kind, n: usize, start: u64, entries: &[(u64, Agg)]) -> Vec<u8> {
    let fits = |a: &Agg| match (kind, a) {
        (Kind::Counter, Agg::Counter { sums, .. }) => sums.len() == n,
        (Kind::Gauge, Agg::Gauge { fields, .. }) => fields.len() == n,
        _ => false,
    };
    let entries: Vec<&(u64, Agg)> = entries.iter().filter(|(_, a)| fits(a)).collect();
    let mut w = Writer::new(entries.len());
    w.ints(
        entries.iter().map(|(at, _)| at - start).collect(),
        &[],
        false,
    );
    match kind {
        Kind::Counter => {
            let mut covered = Vec::with_capacity(entries.len());
            let mut samples = Vec::with_capacity(entries.len());
            let mut cols = vec![Vec::with_capacity(entries.len()); n];
            for (_, a) in &entries {
                if let Agg::Counter {
                    covered_ms,
                    samples: s,
                    sums,
                } = a
                {
                    covered.push(*covered_ms);
                    samples.push(u64::from(*s));
                    for (c, x) in cols.iter_mut().zip(sums) {
                        c.push(*x);
                    }
                }
            }
            let s = w.ints(samples, &[], false);
            w.ints(covered, &[s], false);
            counter_fields(&mut w, cols);
        }
        Kind::Gauge => {
            let mut samples = Vec::with_capacity(entries.len());
            let mut counts = vec![Vec::with_capacity(entries.len()); n];
            let mut stats = vec![[const { Vec::new() }; 4]; n];
            for (_, a) in &entries {
                if let Agg::Gauge { samples: s, fields } = a {
                    samples.push(u64::from(*s));
                    for (i, f) in fields.iter().enumerate() {
                        counts[i].push(u64::from(f.count));
                        for (col, x) in stats[i].iter_mut().zip([f.min, f.sum, f.max, f.last]) {
                            col.push(x);
                        }
                    }
                }
            }
            let s = w.ints(samples, &[], false);
            for (count, stats) in counts.into_iter().zip(&stats) {
                w.ints(count, &[s], false);
                for col in stats {
                    w.floats(col);
                }
            }
        }
    }
    w.finish()
}

/// Whether the chunk in `r` is format 1, and its times (its first
/// column; format 2 decodes the integer columns with them).
fn chunk_times(r: &mut Reader<'_>) -> Result<(bool, Vec<u64>), DecodeError> {
    if r.format() == FORMAT_1 {
        return Ok((true, r.legacy()?));
    }
    r.ints()?;
    Ok((false, std::mem::take(&mut r.ints[0])))
}

/// Decodes what [`encode_agg`] wrote (either format).
pub fn decode_agg(kind: Kind, n: usize, start: u64, b: &[u8]) -> Result<Entries<Agg>, DecodeError> {
    let mut r = Reader::new(b)?;
    let (v1, at) = chunk_times(&mut r)?;
    let out = match kind {
        Kind::Counter => {
            let (covered, samples, cols): (Vec<u64>, Vec<u32>, Vec<Vec<u64>>) = if v1 {
                let c = r.legacy()?;
                let s = r.legacy()?;
                (c, s, (0..n).map(|_| r.legacy()).collect::<Result<_, _>>()?)
            } else {
                let s = r.ints()?;
                r.ints()?;
                for _ in 0..n {
                    r.ints()?;
                }
                let s = r.narrow(s)?;
                let mut rest = r.ints.split_off(2);
                let sums = rest.split_off(1);
                (rest.pop().unwrap_or_default(), s, sums)
            };
            (0..r.n)
                .map(|i| {
                    (
                        start + at[i],
                        Agg::Counter {
                            covered_ms: covered[i],
                            samples: samples[i],
                            sums: cols.iter().map(|c| c[i]).collect(),
                        },
                    )
                })
                .collect()
        }
        Kind::Gauge => {
            let samples: Vec<u32> = if v1 {
                r.legacy()?
            } else {
                let s = r.ints()?;
                r.narrow(s)?
            };
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                let (count, min, sum, max, last): (Vec<u32>, _, _, _, _) = if v1 {
                    (
                        r.legacy()?,
                        r.legacy()?,
                        r.legacy()?,
                        r.legacy()?,
                        r.legacy()?,
                    )
                } else {
                    let c = r.ints()?;
                    (
                        r.narrow(c)?,
                        r.floats()?,
                        r.floats()?,
                        r.floats()?,
                        r.floats()?,
                    )
                };
                fields.push((count, min, sum, max, last));
            }
            (0..r.n)
                .map(|i| {
                    (
                        start + at[i],
                        Agg::Gauge {
                            samples: samples[i],
                            fields: fields
                                .iter()
                                .map(|(count, min, sum, max, last)| GaugeField {
                                    count: count[i],
                                    min: min[i],
                                    sum: sum[i],
                                    max: max[i],
                                    last: last[i],
                                })
                                .collect(),
                        },
                    )
                })
                .collect()
        }
    };
    r.done()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_counters_and_gauges_round_trip_nan_included() {
        let start = 1_800_000_000_000;
        let c: Vec<(u64, Values)> = (0..600u64)
            .map(|i| {
                (
                    start + i * 1000 + i % 3,
                    Values::Counter {
                        interval_ms: 1000 + (i % 2) as u32,
                        deltas: vec![i * 1500 % 7919, i % 5, 0, u64::MAX - i],
                    },
                )
            })
            .collect();
        let b = encode_raw(Kind::Counter, 4, start, &c);
        assert_eq!(count(&b), Some(600));
        assert_eq!(decode_raw(Kind::Counter, 4, start, &b).unwrap(), c);
        let g: Vec<(u64, Values)> = (0..50u64)
            .map(|i| {
                let x = if i % 7 == 0 { f64::NAN } else { i as f64 / 3.0 };
                (start + i * 5000, Values::Gauge(vec![x, -0.0, 1e300]))
            })
            .collect();
        let b = encode_raw(Kind::Gauge, 3, start, &g);
        let back = decode_raw(Kind::Gauge, 3, start, &b).unwrap();
        // Bit for bit (NaN != NaN as a float).
        let bits = |v: &[(u64, Values)]| -> Vec<(u64, Vec<u64>)> {
            v.iter()
                .map(|(at, v)| match v {
                    Values::Gauge(x) => (*at, x.iter().map(|f| f.to_bits()).collect()),
                    Values::Counter { .. } => (*at, vec![]),
                })
                .collect()
        };
        assert_eq!(bits(&back), bits(&g));
    }

    #[test]
    fn buckets_round_trip_and_damage_is_reported() {
        let start = 1_800_000_000_000;
        let c: Vec<(u64, Agg)> = (0..360u64)
            .map(|i| {
                (
                    start + i * 60_000,
                    Agg::Counter {
                        covered_ms: 60_000,
                        samples: 60,
                        sums: vec![i, 2 * i],
                    },
                )
            })
            .collect();
        let b = encode_agg(Kind::Counter, 2, start, &c);
        assert_eq!(decode_agg(Kind::Counter, 2, start, &b).unwrap(), c);
        let g: Vec<(u64, Agg)> = (0..24u64)
            .map(|i| {
                let f = GaugeField {
                    count: 60,
                    min: 1.0,
                    sum: 60.0 + i as f64,
                    max: 3.0,
                    last: 2.0,
                };
                (
                    start + i * 3_600_000,
                    Agg::Gauge {
                        samples: 60,
                        fields: vec![f, f],
                    },
                )
            })
            .collect();
        let b = encode_agg(Kind::Gauge, 2, start, &g);
        assert_eq!(decode_agg(Kind::Gauge, 2, start, &b).unwrap(), g);
        // Truncated, wrong width, wrong format: errors, no panic.
        assert!(decode_agg(Kind::Gauge, 2, start, &b[..b.len() - 1]).is_err());
        assert!(decode_agg(Kind::Gauge, 3, start, &b).is_err());
        assert!(decode_agg(Kind::Counter, 2, start, &b).is_err());
        assert!(decode_raw(Kind::Counter, 2, start, &[9, 1]).is_err());
        // Any byte changed: an error or other values, never a panic.
        let c: Vec<(u64, Values)> = (0..300u64)
            .map(|i| {
                let d = vec![i * 7919 % 100_003, i % 17, i * 31 % 4099, i % 3];
                (
                    start + i * 1000 + i % 5,
                    Values::Counter {
                        interval_ms: 1000,
                        deltas: d,
                    },
                )
            })
            .collect();
        let b = encode_raw(Kind::Counter, 4, start, &c);
        for i in 0..b.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut d = b.clone();
                d[i] ^= x;
                let _ = decode_raw(Kind::Counter, 4, start, &d);
            }
        }
        assert!(decode_raw(Kind::Counter, 2, start, &[]).is_err());
    }
}
