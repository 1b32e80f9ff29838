//! The compressed chunk: one series' entries (raw samples or buckets) of one
//! time block, as columns compressed by [`pco`].
//!
//! Layout: a format byte ([`FORMAT`]), the entry count (LEB128), then one
//! column after another, each its byte length (LEB128) and a pco standalone
//! file. Columns, in order:
//! - times: ms after the block's start (the chunk's key), `u64`;
//! - raw counter: `interval_ms: u32`, then each field's delta (`u64`);
//! - raw gauge: each field's value (`f64`, NaN where unavailable);
//! - aggregate counter: `covered_ms: u64`, `samples: u32`, each field's sum;
//! - aggregate gauge: `samples: u32`, then per field `count: u32`, `min`,
//!   `sum`, `max`, `last` (`f64`).
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

use pco::{ChunkConfig, data_types::Number, standalone};

use super::{
    Agg, Kind, Values,
    series::{DecodeError, GaugeField},
};

/// The chunk layout's version byte.
pub const FORMAT: u8 = 1;

/// One series' entries of a block, as stored.
pub type Entries<T> = Vec<(u64, T)>;

/// A damaged chunk (any length or count that does not fit).
fn damaged() -> DecodeError {
    DecodeError {
        got: 0,
        expected: 1,
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn get_varint(b: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or_else(damaged)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(damaged())
}

/// Writes the chunk's columns.
struct Writer {
    out: Vec<u8>,
    config: ChunkConfig,
}

impl Writer {
    fn new(n: usize) -> Writer {
        let mut out = vec![FORMAT];
        put_varint(&mut out, n as u64);
        Writer {
            out,
            config: ChunkConfig::default(),
        }
    }

    fn column<T: Number>(&mut self, nums: &[T]) {
        // pco fails only on an invalid configuration; the default is valid.
        let bytes = standalone::simple_compress(nums, &self.config).unwrap_or_default();
        put_varint(&mut self.out, bytes.len() as u64);
        self.out.extend_from_slice(&bytes);
    }
}

/// Reads the chunk's columns.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    n: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        if b.first() != Some(&FORMAT) {
            return Err(damaged());
        }
        let mut at = 1;
        let n = usize::try_from(get_varint(b, &mut at)?).map_err(|_| damaged())?;
        Ok(Reader { b, at, n })
    }

    fn column<T: Number>(&mut self) -> Result<Vec<T>, DecodeError> {
        let len = usize::try_from(get_varint(self.b, &mut self.at)?).map_err(|_| damaged())?;
        let end = self.at.checked_add(len).ok_or_else(damaged)?;
        let bytes = self.b.get(self.at..end).ok_or_else(damaged)?;
        self.at = end;
        let v: Vec<T> = standalone::simple_decompress(bytes).map_err(|_| damaged())?;
        if v.len() != self.n {
            return Err(damaged());
        }
        Ok(v)
    }

    fn done(&self) -> Result<(), DecodeError> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(damaged())
        }
    }
}

/// The entry count of a chunk, read from its header alone.
pub fn count(b: &[u8]) -> Option<u64> {
    Reader::new(b).ok().map(|r| r.n as u64)
}

fn times<T>(start: u64, entries: &[(u64, T)]) -> Vec<u64> {
    entries.iter().map(|(at, _)| at - start).collect()
}

/// Encodes raw samples of a series of `n` fields, in time order, of the
/// block starting at `start` (every time ≥ `start`).
pub fn encode_raw(kind: Kind, n: usize, start: u64, entries: &[(u64, Values)]) -> Vec<u8> {
    let mut w = Writer::new(entries.len());
    w.column(&times(start, entries));
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
                    intervals.push(*interval_ms);
                    for (c, d) in cols.iter_mut().zip(deltas) {
                        c.push(*d);
                    }
                }
            }
            w.column(&intervals);
            for c in &cols {
                w.column(c);
            }
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
                w.column(c);
            }
        }
    }
    w.out
}

/// Decodes what [`encode_raw`] wrote.
pub fn decode_raw(
    kind: Kind,
    n: usize,
    start: u64,
    b: &[u8],
) -> Result<Entries<Values>, DecodeError> {
    let mut r = Reader::new(b)?;
    let at: Vec<u64> = r.column()?;
    let out = match kind {
        Kind::Counter => {
            let intervals: Vec<u32> = r.column()?;
            let cols: Vec<Vec<u64>> = (0..n).map(|_| r.column()).collect::<Result<_, _>>()?;
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
            let cols: Vec<Vec<f64>> = (0..n).map(|_| r.column()).collect::<Result<_, _>>()?;
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
    w.column(&entries.iter().map(|(at, _)| at - start).collect::<Vec<_>>());
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
                    samples.push(*s);
                    for (c, x) in cols.iter_mut().zip(sums) {
                        c.push(*x);
                    }
                }
            }
            w.column(&covered);
            w.column(&samples);
            for c in &cols {
                w.column(c);
            }
        }
        Kind::Gauge => {
            let mut samples = Vec::with_capacity(entries.len());
            let mut counts = vec![Vec::with_capacity(entries.len()); n];
            let mut stats = vec![[const { Vec::new() }; 4]; n];
            for (_, a) in &entries {
                if let Agg::Gauge { samples: s, fields } = a {
                    samples.push(*s);
                    for (i, f) in fields.iter().enumerate() {
                        counts[i].push(f.count);
                        for (col, x) in stats[i].iter_mut().zip([f.min, f.sum, f.max, f.last]) {
                            col.push(x);
                        }
                    }
                }
            }
            w.column(&samples);
            for i in 0..n {
                w.column(&counts[i]);
                for col in &stats[i] {
                    w.column(col);
                }
            }
        }
    }
    w.out
}

/// Decodes what [`encode_agg`] wrote.
pub fn decode_agg(kind: Kind, n: usize, start: u64, b: &[u8]) -> Result<Entries<Agg>, DecodeError> {
    let mut r = Reader::new(b)?;
    let at: Vec<u64> = r.column()?;
    let out = match kind {
        Kind::Counter => {
            let covered: Vec<u64> = r.column()?;
            let samples: Vec<u32> = r.column()?;
            let cols: Vec<Vec<u64>> = (0..n).map(|_| r.column()).collect::<Result<_, _>>()?;
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
            let samples: Vec<u32> = r.column()?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                let count: Vec<u32> = r.column()?;
                let min: Vec<f64> = r.column()?;
                let sum: Vec<f64> = r.column()?;
                let max: Vec<f64> = r.column()?;
                let last: Vec<f64> = r.column()?;
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
        assert!(decode_raw(Kind::Counter, 2, start, &[]).is_err());
    }
}
