//! The raw tier's open tail: one row per interval ([`RAW_OPEN`]: ms → every
//! sample of the interval), so an interval's write is one value in one
//! place: a few pages, where a row per sample keyed by series touched a
//! page per series (measured: 2.4 MB written to the disk for an interval
//! of 1,000 samples).
//!
//! Layout of a value: `n: u32`, then the `n` series ids (`u32`, ascending),
//! then `n` end offsets (`u32`) into the payload, then the payload: each
//! sample's fixed-width encoding (`series.rs`) in the ids' order. One
//! series' sample is found by a binary search of the ids. Every length is
//! checked: a damaged value is skipped and counted, never misread.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, WriteTransaction};

use super::{Family, StoreError, Values, schema::RAW_OPEN};

/// Encodes an interval's samples (sorted by id here; of two samples of one
/// series the later wins).
pub fn encode(samples: &mut Vec<(u32, Vec<u8>)>) -> Vec<u8> {
    samples.sort_by_key(|(id, _)| *id);
    // Keep the last of equal ids (sort is stable).
    let mut dedup: Vec<(u32, Vec<u8>)> = Vec::with_capacity(samples.len());
    for (id, v) in samples.drain(..) {
        match dedup.last_mut() {
            Some(last) if last.0 == id => last.1 = v,
            _ => dedup.push((id, v)),
        }
    }
    let n = dedup.len();
    let payload: usize = dedup.iter().map(|(_, v)| v.len()).sum();
    let mut out = Vec::with_capacity(4 + 8 * n + payload);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for (id, _) in &dedup {
        out.extend_from_slice(&id.to_le_bytes());
    }
    let mut end = 0u32;
    for (_, v) in &dedup {
        end += v.len() as u32;
        out.extend_from_slice(&end.to_le_bytes());
    }
    for (_, v) in &dedup {
        out.extend_from_slice(v);
    }
    out
}

/// A decoded view of one interval's value.
pub struct View<'a> {
    n: usize,
    b: &'a [u8],
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

impl<'a> View<'a> {
    /// `None` when the value's lengths do not hold together.
    pub fn new(b: &'a [u8]) -> Option<View<'a>> {
        let n = u32_at(b.get(..4)?, 0) as usize;
        let head = 4usize.checked_add(n.checked_mul(8)?)?;
        if b.len() < head {
            return None;
        }
        let v = View { n, b };
        let last = if n == 0 { 0 } else { v.end(n - 1) };
        (head + last == b.len()).then_some(v)
    }

    pub fn len(&self) -> usize {
        self.n
    }

    fn id(&self, i: usize) -> u32 {
        u32_at(self.b, 4 + 4 * i)
    }

    fn end(&self, i: usize) -> usize {
        u32_at(self.b, 4 + 4 * self.n + 4 * i) as usize
    }

    /// The `i`th sample's id and bytes (`None` if its offsets are bad).
    pub fn get(&self, i: usize) -> Option<(u32, &'a [u8])> {
        let base = 4 + 8 * self.n;
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        let end = self.end(i);
        Some((self.id(i), self.b.get(base + start..base + end)?))
    }

    /// The sample of series `id`, if the interval has one.
    pub fn find(&self, id: u32) -> Option<&'a [u8]> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.id(mid).cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.get(mid).map(|(_, b)| b),
            }
        }
        None
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.n).map(|i| self.id(i))
    }
}

/// Series `id`'s samples in the tail in `[from, to)`, oldest first; values
/// that do not decode are counted in `skipped`.
pub fn series(
    t: &impl ReadableTable<u64, &'static [u8]>,
    fam: Family,
    id: u32,
    (from, to): (u64, u64),
    skipped: &mut u32,
) -> Result<Vec<(u64, Values)>, StoreError> {
    let n = fam.fields().len();
    let mut out = Vec::new();
    for row in t.range(from..to.max(from))? {
        let (k, v) = row?;
        let Some(view) = View::new(v.value()) else {
            *skipped += 1;
            continue;
        };
        if let Some(b) = view.find(id) {
            match Values::decode(fam.kind(), n, b) {
                Ok(vals) => out.push((k.value(), vals)),
                Err(_) => *skipped += 1,
            }
        }
    }
    Ok(out)
}

/// Every sample in the tail in `[from, to)` of the series in `fams`, per
/// series, oldest first (undecodable ones left out).
pub fn all(
    t: &impl ReadableTable<u64, &'static [u8]>,
    fams: &HashMap<u32, Family>,
    (from, to): (u64, u64),
) -> Result<HashMap<u32, Vec<(u64, Values)>>, StoreError> {
    let mut out: HashMap<u32, Vec<(u64, Values)>> = HashMap::new();
    for row in t.range(from..to.max(from))? {
        let (k, v) = row?;
        let Some(view) = View::new(v.value()) else {
            continue;
        };
        for i in 0..view.len() {
            let Some((id, b)) = view.get(i) else { continue };
            let Some(fam) = fams.get(&id) else { continue };
            if let Ok(vals) = Values::decode(fam.kind(), fam.fields().len(), b) {
                out.entry(id).or_default().push((k.value(), vals));
            }
        }
    }
    Ok(out)
}

/// Samples in the tail.
pub fn count(t: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, StoreError> {
    let mut n = 0;
    for row in t.iter()? {
        n += View::new(row?.1.value()).map_or(0, |v| v.len() as u64);
    }
    Ok(n)
}

/// The ids with a sample in the tail.
pub fn ids(tx: &WriteTransaction) -> Result<HashSet<u32>, StoreError> {
    let t = tx.open_table(RAW_OPEN)?;
    let mut out = HashSet::new();
    for row in t.iter()? {
        if let Some(v) = View::new(row?.1.value()) {
            out.extend(v.ids());
        }
    }
    Ok(out)
}

/// Deletes the intervals before `cutoff`; returns their samples.
pub fn delete_before(tx: &WriteTransaction, cutoff: u64) -> Result<u64, StoreError> {
    let mut t = tx.open_table(RAW_OPEN)?;
    let mut n = 0;
    for row in t.extract_from_if(..cutoff, |_, _| true)? {
        n += View::new(row?.1.value()).map_or(0, |v| v.len() as u64);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_round_trips_and_damage_is_refused() {
        let mut s = vec![
            (9, vec![1, 2, 3]),
            (2, vec![4]),
            (5, vec![]),
            (2, vec![7, 7]),
        ];
        let b = encode(&mut s);
        let v = View::new(&b).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v.ids().collect::<Vec<_>>(), [2, 5, 9]);
        assert_eq!(v.find(2), Some(&[7u8, 7][..]), "the later of two wins");
        assert_eq!(v.find(5), Some(&[][..]));
        assert_eq!(v.find(9), Some(&[1u8, 2, 3][..]));
        assert_eq!(v.find(3), None);
        assert!(View::new(&b[..b.len() - 1]).is_none());
        assert!(View::new(&[1, 0]).is_none());
        assert!(View::new(&[255, 255, 255, 255]).is_none());
        let empty = encode(&mut Vec::new());
        assert_eq!(View::new(&empty).unwrap().len(), 0);
    }
}
