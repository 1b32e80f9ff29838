//! A chunk's columns: how each column of numbers is written and read (see
//! `chunk.rs` for which columns a chunk has).
//!
//! Format 2 (written): after the chunk's format byte and entry count, pco's
//! short file header once, then each column as a tag, the tag's
//! parameters, its byte length (LEB128) and one pco chunk (metadata and a
//! single page, pco's "wrapped" format). An integer column is stored as
//! one of:
//! - [`TAG_PLAIN`]: its values;
//! - [`TAG_SCALED`] `base`, `q`: the residuals (zigzag) from `q / 2^20`
//!   times an earlier integer column `base`, `q` fitted to the chunk (its
//!   sums' ratio): packets predicted from bytes, one direction's bytes from
//!   the other's, covered time from sample counts;
//! - [`TAG_GAPS`]: the residuals from the gaps between successive times
//!   (interval lengths).
//!
//! An integer column's body (its values or residuals) is a pco chunk, or,
//! flagged in the tag, one LEB128 value when every entry has it
//! ([`BODY_CONST`]: an idle counter's zeros, regular interval lengths) or
//! each entry as LEB128 ([`BODY_VARINTS`]: a few entries, where pco's
//! metadata, 10-20 bytes a column, would cost more than the values).
//!
//! The writer tries each candidate the chunk layer names and keeps the
//! smallest, so a prediction that does not hold costs nothing. Floats are
//! stored plain, in pco.
//!
//! Format 1 (read only, schema 3's chunks): no shared header, no tags,
//! every column a pco standalone file (its own magic and header, about 14
//! bytes a column more).

use pco::{
    ChunkConfig, PagingSpec,
    data_types::Number,
    standalone,
    wrapped::{FileCompressor, FileDecompressor},
};

use super::series::DecodeError;

/// Schema 3's chunk layout (standalone pco files).
pub const FORMAT_1: u8 = 1;
/// The layout written (wrapped pco columns with predictions).
pub const FORMAT_2: u8 = 2;

const TAG_PLAIN: u8 = 0;
const TAG_SCALED: u8 = 1;
const TAG_GAPS: u8 = 2;
/// Flag on an integer column's tag: the body is one LEB128 value, every
/// entry's.
const BODY_CONST: u8 = 0x40;
/// Flag on an integer column's tag: the body is each entry as LEB128.
const BODY_VARINTS: u8 = 0x20;
/// Entries of a chunk, at most.
const MAX_ENTRIES: usize = 1 << 24;
/// Fixed-point bits of a [`TAG_SCALED`] ratio.
const SCALE_BITS: u32 = 20;

/// A damaged chunk (any length or count that does not fit).
pub fn damaged() -> DecodeError {
    DecodeError {
        got: 0,
        expected: 1,
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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

pub fn get_varint(b: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
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

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// `base` scaled by `q / 2^SCALE_BITS`, rounded, saturated.
fn scaled(base: &[u64], q: u64) -> impl Iterator<Item = u64> + '_ {
    base.iter().map(move |&b| {
        let p = (u128::from(b) * u128::from(q) + (1 << (SCALE_BITS - 1))) >> SCALE_BITS;
        u64::try_from(p).unwrap_or(u64::MAX)
    })
}

/// The gaps between successive `times` (the first: 0).
fn gaps(times: &[u64]) -> impl Iterator<Item = u64> + '_ {
    std::iter::once(0).chain(times.windows(2).map(|w| w[1].wrapping_sub(w[0])))
}

/// Residuals of `v` from `pred`, or `None` when one does not fit an i64.
fn residuals(v: &[u64], pred: impl Iterator<Item = u64>) -> Option<Vec<u64>> {
    v.iter()
        .zip(pred)
        .map(|(&x, p)| {
            let d = i128::from(x) - i128::from(p);
            i64::try_from(d).ok().map(zigzag)
        })
        .collect()
}

/// Writes a format-2 chunk's columns.
pub struct Writer {
    out: Vec<u8>,
    n: usize,
    config: ChunkConfig,
    /// The integer columns written so far (predictions' bases).
    ints: Vec<Vec<u64>>,
}

impl Writer {
    /// A chunk of `n` entries.
    pub fn new(n: usize) -> Writer {
        let mut out = vec![FORMAT_2];
        put_varint(&mut out, n as u64);
        // pco fails only on an invalid configuration or a failing writer.
        let _ = FileCompressor::default().write_header(&mut out);
        let mut config = ChunkConfig::default();
        config.paging_spec = PagingSpec::Exact(vec![n]);
        Writer {
            out,
            n,
            config,
            ints: Vec::new(),
        }
    }

    /// One pco chunk of `nums` (empty when the chunk has no entries).
    fn pco<T: Number>(&self, nums: &[T]) -> Vec<u8> {
        let mut dst = Vec::new();
        if self.n == 0 {
            return dst;
        }
        let fc = FileCompressor::default();
        let ok = fc.chunk_compressor(nums, &self.config).and_then(|mut cc| {
            cc.write_meta(&mut dst)?;
            cc.write_page(0, &mut dst)?;
            Ok(())
        });
        if ok.is_err() {
            dst.clear();
        }
        dst
    }

    /// An integer column's body, whichever is smallest: pco, one value when
    /// every entry has it, or LEB128 values (a few entries cost less than
    /// pco's metadata). Returns the tag's flag and the body.
    fn int_body(&self, nums: &[u64]) -> (u8, Vec<u8>) {
        if nums.is_empty() {
            return (0, Vec::new());
        }
        if let Some(&first) = nums.first()
            && nums.iter().all(|&x| x == first)
        {
            let mut b = Vec::new();
            put_varint(&mut b, first);
            return (BODY_CONST, b);
        }
        let body = self.pco(nums);
        let mut b = Vec::new();
        for &x in nums {
            put_varint(&mut b, x);
            if b.len() >= body.len() {
                return (0, body);
            }
        }
        (BODY_VARINTS, b)
    }

    fn put(&mut self, head: &[u8], body: &[u8]) {
        self.out.extend_from_slice(head);
        put_varint(&mut self.out, body.len() as u64);
        self.out.extend_from_slice(body);
    }

    /// A float column, plain.
    pub fn floats(&mut self, nums: &[f64]) {
        let body = self.pco(nums);
        self.put(&[TAG_PLAIN], &body);
    }

    /// An integer column: plain, or predicted from each earlier integer
    /// column in `bases` (by the chunk's ratio), or from the gaps between
    /// the times (the first integer column) when `by_gaps`, whichever is
    /// smallest. Returns the column's index for later `bases`.
    pub fn ints(&mut self, nums: Vec<u64>, bases: &[usize], by_gaps: bool) -> usize {
        let (flag, body) = self.int_body(&nums);
        let mut best = (vec![TAG_PLAIN | flag], body);
        let sum = |v: &[u64]| v.iter().map(|&x| u128::from(x)).sum::<u128>();
        let total = sum(&nums);
        for &b in bases {
            let Some(base) = self.ints.get(b) else {
                continue;
            };
            let base_total = sum(base);
            if base_total == 0 || total == 0 {
                continue;
            }
            let Ok(q) = u64::try_from(((total << SCALE_BITS) + base_total / 2) / base_total) else {
                continue;
            };
            if let Some(r) = residuals(&nums, scaled(base, q)) {
                let (flag, body) = self.int_body(&r);
                let mut head = vec![TAG_SCALED | flag, b as u8];
                put_varint(&mut head, q);
                if head.len() + body.len() < best.0.len() + best.1.len() {
                    best = (head, body);
                }
            }
        }
        if by_gaps
            && let Some(times) = self.ints.first()
            && let Some(r) = residuals(&nums, gaps(times))
        {
            let (flag, body) = self.int_body(&r);
            if 1 + body.len() < best.0.len() + best.1.len() {
                best = (vec![TAG_GAPS | flag], body);
            }
        }
        self.put(&best.0, &best.1);
        self.ints.push(nums);
        self.ints.len() - 1
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads a chunk's columns, of either format.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    pub n: usize,
    format: u8,
    pco: Option<FileDecompressor>,
    /// The integer columns read so far (format 2).
    pub ints: Vec<Vec<u64>>,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        let format = *b.first().ok_or_else(damaged)?;
        if format != FORMAT_1 && format != FORMAT_2 {
            return Err(damaged());
        }
        let mut at = 1;
        let n = usize::try_from(get_varint(b, &mut at)?).map_err(|_| damaged())?;
        // A block holds at most an entry a millisecond (30 minutes of raw
        // samples: 1.8 million); a damaged count must not allocate more.
        if n > MAX_ENTRIES {
            return Err(damaged());
        }
        let mut r = Reader {
            b,
            at,
            n,
            format,
            pco: None,
            ints: Vec::new(),
        };
        if format == FORMAT_2 {
            let rest = b.get(r.at..).ok_or_else(damaged)?;
            let (fd, left) = FileDecompressor::new(rest).map_err(|_| damaged())?;
            r.at = b.len() - left.len();
            r.pco = Some(fd);
        }
        Ok(r)
    }

    pub fn format(&self) -> u8 {
        self.format
    }

    fn body(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(get_varint(self.b, &mut self.at)?).map_err(|_| damaged())?;
        let end = self.at.checked_add(len).ok_or_else(damaged)?;
        let bytes = self.b.get(self.at..end).ok_or_else(damaged)?;
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let v = *self.b.get(self.at).ok_or_else(damaged)?;
        self.at += 1;
        Ok(v)
    }

    /// A format-1 column (a standalone pco file).
    pub fn legacy<T: Number>(&mut self) -> Result<Vec<T>, DecodeError> {
        let bytes = self.body()?;
        let v: Vec<T> = standalone::simple_decompress(bytes).map_err(|_| damaged())?;
        if v.len() != self.n {
            return Err(damaged());
        }
        Ok(v)
    }

    /// One format-2 pco chunk of `n` numbers.
    fn pco<T: Number>(&self, bytes: &[u8]) -> Result<Vec<T>, DecodeError> {
        if self.n == 0 {
            return if bytes.is_empty() {
                Ok(Vec::new())
            } else {
                Err(damaged())
            };
        }
        let fd = self.pco.as_ref().ok_or_else(damaged)?;
        let (mut cd, rest) = fd
            .chunk_decompressor::<T, _>(bytes)
            .map_err(|_| damaged())?;
        let mut pd = cd.page_decompressor(rest, self.n).map_err(|_| damaged())?;
        let mut out = vec![T::default(); self.n];
        let progress = pd.read(&mut out).map_err(|_| damaged())?;
        if progress.n_processed != self.n || !progress.finished {
            return Err(damaged());
        }
        Ok(out)
    }

    /// A format-2 float column.
    pub fn floats(&mut self) -> Result<Vec<f64>, DecodeError> {
        if self.byte()? != TAG_PLAIN {
            return Err(damaged());
        }
        let body = self.body()?;
        self.pco(body)
    }

    /// A format-2 integer column, appended to [`Reader::ints`]; returns its
    /// index there.
    pub fn ints(&mut self) -> Result<usize, DecodeError> {
        let tagged = self.byte()?;
        let flag = tagged & (BODY_CONST | BODY_VARINTS);
        let tag = tagged & !flag;
        if self.format != FORMAT_2 || flag == BODY_CONST | BODY_VARINTS {
            return Err(damaged());
        }
        let pred: Option<Vec<u64>> = match tag {
            TAG_PLAIN => None,
            TAG_SCALED => {
                let base = usize::from(self.byte()?);
                let q = get_varint(self.b, &mut self.at)?;
                let base = self.ints.get(base).ok_or_else(damaged)?;
                Some(scaled(base, q).collect())
            }
            TAG_GAPS => Some(gaps(self.ints.first().ok_or_else(damaged)?).collect()),
            _ => return Err(damaged()),
        };
        let body = self.body()?;
        let mut v: Vec<u64> = match flag {
            BODY_CONST => {
                let mut at = 0;
                let x = get_varint(body, &mut at)?;
                if at != body.len() {
                    return Err(damaged());
                }
                vec![x; self.n]
            }
            BODY_VARINTS => {
                let mut at = 0;
                let mut v = Vec::with_capacity(self.n.min(body.len()));
                for _ in 0..self.n {
                    v.push(get_varint(body, &mut at)?);
                }
                if at != body.len() {
                    return Err(damaged());
                }
                v
            }
            _ => self.pco(body)?,
        };
        if let Some(pred) = pred {
            for (x, p) in v.iter_mut().zip(pred) {
                let back = i128::from(p) + i128::from(unzigzag(*x));
                *x = u64::try_from(back).map_err(|_| damaged())?;
            }
        }
        self.ints.push(v);
        Ok(self.ints.len() - 1)
    }

    /// Integer column `i` as u32s.
    pub fn narrow(&self, i: usize) -> Result<Vec<u32>, DecodeError> {
        self.ints[i]
            .iter()
            .map(|&x| u32::try_from(x).map_err(|_| damaged()))
            .collect()
    }

    pub fn done(&self) -> Result<(), DecodeError> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(damaged())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_round_trip_and_pick_the_smallest() {
        let n = 1800;
        let times: Vec<u64> = (0..n as u64).map(|i| i * 1000 + i * 7 % 5).collect();
        let bytes: Vec<u64> = (0..n as u64)
            .map(|i| 20_000 + i * 7919 % 1_000_000)
            .collect();
        let packets: Vec<u64> = bytes.iter().map(|b| b / 1400 + b % 3).collect();
        let lengths: Vec<u64> = gaps(&times).map(|g| g + 1).collect();
        let extreme = vec![u64::MAX, 0, u64::MAX / 2];
        let mut w = Writer::new(n);
        let t = w.ints(times.clone(), &[], false);
        w.ints(lengths.clone(), &[], true);
        let b = w.ints(bytes.clone(), &[], false);
        w.ints(packets.clone(), &[b, t], false);
        let plain = {
            let mut w = Writer::new(n);
            w.ints(packets.clone(), &[], false);
            w.finish().len()
        };
        let out = w.finish();
        let mut r = Reader::new(&out).unwrap();
        for _ in 0..4 {
            r.ints().unwrap();
        }
        r.done().unwrap();
        assert_eq!(r.ints, vec![times, lengths, bytes, packets]);
        // The packets' column was stored relative to the bytes: smaller.
        assert!(out.len() < plain * 4, "{} {plain}", out.len());
        // Values far apart (residuals beyond an i64) fall back to plain.
        let mut w = Writer::new(3);
        let a = w.ints(vec![0, u64::MAX, 1], &[], false);
        w.ints(extreme.clone(), &[a], true);
        let out = w.finish();
        let mut r = Reader::new(&out).unwrap();
        r.ints().unwrap();
        r.ints().unwrap();
        assert_eq!(r.ints[1], extreme);
        // A count no block holds is refused before anything is allocated.
        let mut big = vec![FORMAT_2];
        put_varint(&mut big, 1 << 40);
        assert!(Reader::new(&big).is_err());
        // Damage: every truncation is an error, never a panic.
        for k in 0..out.len() {
            let mut r = match Reader::new(&out[..k]) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let ok = r.ints().and_then(|_| r.ints()).and_then(|_| r.done());
            assert!(ok.is_err(), "truncated at {k}");
        }
    }

    #[test]
    fn a_constant_or_short_column_is_stored_without_pco_metadata() {
        let cols = [vec![1000u64; 1800], vec![5, 70_000, 3], vec![7]];
        for c in cols {
            let mut w = Writer::new(c.len());
            w.ints(c.clone(), &[], false);
            let out = w.finish();
            // The same chunk with a pco body: header, tag, length, body.
            let pco_only = {
                let w = Writer::new(c.len());
                w.pco(&c).len() + 2 + Writer::new(c.len()).finish().len()
            };
            assert!(out.len() < pco_only, "{} {pco_only}", out.len());
            let mut r = Reader::new(&out).unwrap();
            r.ints().unwrap();
            r.done().unwrap();
            assert_eq!(r.ints[0], c);
            for k in 0..out.len() {
                if let Ok(mut r) = Reader::new(&out[..k]) {
                    assert!(r.ints().and_then(|_| r.done()).is_err(), "truncated at {k}");
                }
            }
        }
        // Both flags at once is no layout.
        let mut w = Writer::new(1);
        w.ints(vec![7], &[], false);
        let mut out = w.finish();
        let tag = out.len() - 3;
        out[tag] |= BODY_CONST | BODY_VARINTS;
        assert!(Reader::new(&out).unwrap().ints().is_err());
    }
}
