//! Each tier's data in two tables: the open tail (raw: one value per
//! interval, see `raw_tail.rs`; aggregates: one fixed-width row per bucket,
//! keyed `(series id, time)`) and the sealed chunks (one compressed chunk
//! per series and time block, see `chunk.rs`, keyed `(block start, series
//! id)`).
//!
//! - **Writing** goes to the tail only: an interval's samples, a fold's
//!   buckets. Nothing grows in place, and a crash loses at most the
//!   transaction in flight, as before.
//! - **Sealing** ([`Store::seal`], a maintenance step) moves every tail row
//!   below the tier's horizon into its block's chunk, in one transaction
//!   per batch (raw: whole blocks; aggregates: series of one block): the
//!   chunk is written and the rows deleted together, so a crash leaves
//!   either. Chunks are inserted in key order, block by block and series by
//!   series within it, so a seal appends after every key in the table (redb
//!   then leaves the full leaves packed). The horizon is the start of the
//!   block holding the tier's fold watermark (`m1_done` for raw, `h1_done`
//!   for minutes and hours) and, for raw, the block of the oldest late
//!   interval not folded yet: what is still to be folded stays in the tail,
//!   where folding reads it. A row that lands below the horizon later (the
//!   wall clock went back) is merged into its chunk by the next seal.
//! - **Reading** a series' range looks up its chunk in each block the range
//!   covers (within the table's oldest and newest blocks), then the tail, and merges them by time (a bucket present in both, after
//!   a late fold, is merged as [`Agg::merge`] does).
//! - **Deleting**: expiry deletes a chunk once its whole block is past the
//!   cutoff (retention is rounded up to a block); the size budget deletes
//!   every chunk that starts before its cut: either is a range at the
//!   table's start. Whether a series has a chunk left is [`CHUNK_LAST`]
//!   (its newest block) against the table's oldest block.

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tracing::{debug, info, warn};

use super::{
    Agg, Family, Store, StoreError, Tier, Values,
    block::{self, Read as _},
    bucket, chunk, raw_tail,
    schema::{self, CHUNK_LAST, META, RAW_OPEN, SERIES_NAMES},
    series::DecodeError,
};

/// Tail rows sealed per transaction, at most (a batch ends after the
/// series that crosses it).
const SEAL_ROWS: u64 = 200_000;

/// A sample of the raw tier or a bucket of an aggregate tier.
pub(super) trait Entry: Sized {
    fn row(fam: Family, b: &[u8]) -> Option<Self>;
    fn decode_chunk(fam: Family, start: u64, b: &[u8]) -> Result<Vec<(u64, Self)>, DecodeError>;
    fn encode_chunk(fam: Family, start: u64, entries: &[(u64, Self)]) -> Vec<u8>;
    /// Merges a later entry for the same time; false when both stay.
    fn absorb(&mut self, o: &Self) -> bool;
    fn agg(&self) -> Agg;
}

impl Entry for Values {
    fn row(fam: Family, b: &[u8]) -> Option<Self> {
        Values::decode(fam.kind(), fam.fields().len(), b).ok()
    }
    fn decode_chunk(fam: Family, start: u64, b: &[u8]) -> Result<Vec<(u64, Self)>, DecodeError> {
        chunk::decode_raw(fam.kind(), fam.fields().len(), start, b)
    }
    fn encode_chunk(fam: Family, start: u64, entries: &[(u64, Self)]) -> Vec<u8> {
        chunk::encode_raw(fam.kind(), fam.fields().len(), start, entries)
    }
    fn absorb(&mut self, _: &Self) -> bool {
        false
    }
    fn agg(&self) -> Agg {
        Agg::of(self)
    }
}

impl Entry for Agg {
    fn row(fam: Family, b: &[u8]) -> Option<Self> {
        Agg::decode(fam.kind(), fam.fields().len(), b).ok()
    }
    fn decode_chunk(fam: Family, start: u64, b: &[u8]) -> Result<Vec<(u64, Self)>, DecodeError> {
        chunk::decode_agg(fam.kind(), fam.fields().len(), start, b)
    }
    fn encode_chunk(fam: Family, start: u64, entries: &[(u64, Self)]) -> Vec<u8> {
        chunk::encode_agg(fam.kind(), fam.fields().len(), start, entries)
    }
    fn absorb(&mut self, o: &Self) -> bool {
        self.merge(o)
    }
    fn agg(&self) -> Agg {
        self.clone()
    }
}

/// An aggregate tier's tail table, of a read or a write transaction.
pub(super) trait Rows:
    ReadableTable<(u32, u64), &'static [u8]> + ReadableTableMetadata
{
}
impl<T: ReadableTable<(u32, u64), &'static [u8]> + ReadableTableMetadata> Rows for T {}

/// `b` (newer rows) merged into `a`, by time; equal times absorbed.
fn merge_sorted<E: Entry>(mut a: Vec<(u64, E)>, b: Vec<(u64, E)>) -> Vec<(u64, E)> {
    if a.last().is_none_or(|l| b.first().is_none_or(|f| l.0 < f.0)) {
        a.extend(b);
        return a;
    }
    a.extend(b);
    // Stable: for equal times the chunk's (older) entry comes first.
    a.sort_by_key(|e| e.0);
    let mut out: Vec<(u64, E)> = Vec::with_capacity(a.len());
    for (at, e) in a {
        if let Some((last_at, last)) = out.last_mut()
            && *last_at == at
            && last.absorb(&e)
        {
            continue;
        }
        out.push((at, e));
    }
    out
}

/// Series `id`'s sealed entries of a tier in `[from, to)`, oldest first;
/// chunks that do not decode are counted in `skipped`.
fn chunk_entries<E: Entry>(
    blocks: &impl block::Read,
    block: u64,
    fam: Family,
    id: u32,
    (from, to): (u64, u64),
    skipped: &mut u32,
) -> Result<Vec<(u64, E)>, StoreError> {
    let mut sealed = Vec::new();
    let Some((first, last)) = blocks.span()? else {
        return Ok(sealed);
    };
    // One lookup per block of the range that the table holds.
    let mut start = bucket(from, block).max(first);
    while start < to && start <= last {
        if let Some(b) = blocks.chunk(start, id)? {
            match E::decode_chunk(fam, start, &b) {
                Ok(es) => sealed.extend(es.into_iter().filter(|(at, _)| (from..to).contains(at))),
                Err(_) => *skipped += 1,
            }
        }
        start += block;
    }
    Ok(sealed)
}

/// Series `id`'s stored buckets of an aggregate `tier` in `[from, to)`,
/// oldest first.
pub(super) fn read_agg(
    tail: &impl Rows,
    blocks: &impl block::Read,
    tier: Tier,
    fam: Family,
    id: u32,
    (from, to): (u64, u64),
    skipped: &mut u32,
) -> Result<Vec<(u64, Agg)>, StoreError> {
    let sealed = chunk_entries::<Agg>(blocks, tier.block_ms(), fam, id, (from, to), skipped)?;
    let mut open = Vec::new();
    for row in tail.range((id, from)..(id, to.max(from)))? {
        let (k, v) = row?;
        match Agg::row(fam, v.value()) {
            Some(e) => open.push((k.value().1, e)),
            None => *skipped += 1,
        }
    }
    Ok(merge_sorted(sealed, open))
}

/// Series `id`'s raw samples in `[from, to)` as buckets of one, oldest
/// first: its chunks, then the open intervals.
pub(super) fn read_raw(
    open: &impl ReadableTable<u64, &'static [u8]>,
    blocks: &impl block::Read,
    fam: Family,
    id: u32,
    range: (u64, u64),
    skipped: &mut u32,
) -> Result<Vec<(u64, Agg)>, StoreError> {
    let sealed = chunk_entries::<Values>(blocks, Tier::Raw.block_ms(), fam, id, range, skipped)?;
    let tail = raw_tail::series(open, fam, id, range, skipped)?;
    Ok(merge_sorted(sealed, tail)
        .into_iter()
        .map(|(at, v)| match v {
            // Moved, not copied: a day of raw samples is 86,400 of them.
            Values::Counter {
                interval_ms,
                deltas,
            } => (
                at,
                Agg::Counter {
                    covered_ms: u64::from(interval_ms),
                    samples: 1,
                    sums: deltas,
                },
            ),
            gauge => (at, gauge.agg()),
        })
        .collect())
}

/// Merges `new` entries of series `id` into its chunk among a block's
/// `chunks` (as read from the file).
fn merge_chunk<E: Entry>(
    chunks: &mut block::Chunks,
    fam: Family,
    id: u32,
    start: u64,
    new: Vec<(u64, E)>,
) {
    let old = match chunks.get(&id) {
        Some(b) => E::decode_chunk(fam, start, b).unwrap_or_else(|_| {
            warn!(
                series = id,
                start, "Replacing an undecodable chunk while sealing."
            );
            Vec::new()
        }),
        None => Vec::new(),
    };
    let all = merge_sorted(old, new);
    chunks.insert(id, E::encode_chunk(fam, start, &all));
}

/// Series whose raw samples are gathered at once while sealing (bounds the
/// memory of a block of busy series).
const SEAL_GROUP: usize = 256;

/// Moves the open intervals below `horizon` into the raw chunks, whole
/// blocks at a time, until about [`SEAL_ROWS`] samples; returns the
/// samples moved, the chunks written and whether intervals below
/// `horizon` are left. Each block's chunks are written in series order, a
/// group of series at a time, so every insert lands after the table's
/// keys.
fn seal_raw(
    tx: &WriteTransaction,
    series: &[(u32, Family)],
    horizon: u64,
) -> Result<(u64, u64, bool), StoreError> {
    let block = Tier::Raw.block_ms();
    let mut open = tx.open_table(RAW_OPEN)?;
    // The blocks of the oldest intervals, whole, up to the row budget.
    let mut blocks: Vec<u64> = Vec::new();
    let mut upto = None;
    let mut rows = 0;
    let mut more = false;
    for row in open.range(..horizon)? {
        let (k, v) = row?;
        let b = bucket(k.value(), block);
        if blocks.last() != Some(&b) {
            if rows >= SEAL_ROWS {
                more = true;
                break;
            }
            blocks.push(b);
        }
        rows += raw_tail::View::new(v.value()).map_or(0, |v| v.len() as u64);
        upto = Some(k.value() + 1);
    }
    let Some(upto) = upto else {
        return Ok((0, 0, false));
    };
    let mut ids: Vec<(u32, Family)> = series.to_vec();
    ids.sort_unstable_by_key(|(id, _)| *id);
    let mut w = block::Writer::open(tx, Tier::Raw)?;
    let mut written = 0;
    for start in blocks {
        let range = (start, (start + block).min(upto));
        // What the block holds already (after a late interval), then each
        // group's samples merged in, compressed as they come.
        let mut chunks = w.blocks.read(start)?;
        for group in ids.chunks(SEAL_GROUP) {
            let fams: std::collections::HashMap<u32, Family> = group.iter().copied().collect();
            for (id, new) in raw_tail::all(&open, &fams, range)? {
                merge_chunk(&mut chunks, fams[&id], id, start, new);
                written += 1;
            }
        }
        w.write(start, &chunks)?;
    }
    open.retain_in(..upto, |_, _| false)?;
    Ok((rows, written, more))
}

/// Entries per block start.
type Blocks<E> = BTreeMap<u64, Vec<(u64, E)>>;

/// Series `id`'s tail rows below `horizon`, per block; the rows read.
fn tail_blocks<E: Entry>(
    tail: &redb::Table<'_, (u32, u64), &'static [u8]>,
    block: u64,
    fam: Family,
    id: u32,
    horizon: u64,
) -> Result<(Blocks<E>, u64), StoreError> {
    let mut blocks: Blocks<E> = BTreeMap::new();
    let mut rows = 0;
    for row in tail.range((id, 0)..(id, horizon))? {
        let (k, v) = row?;
        rows += 1;
        let at = k.value().1;
        match E::row(fam, v.value()) {
            Some(e) => blocks.entry(bucket(at, block)).or_default().push((at, e)),
            None => debug!(
                series = id,
                at, "Dropping an undecodable row while sealing."
            ),
        }
    }
    Ok((blocks, rows))
}

/// Moves an aggregate tier's tail rows of its oldest block below
/// `horizon` into that block, every series; returns the rows moved, the
/// chunks written and whether rows below `horizon` are left. A block is
/// written once, after every older one: an append.
fn seal_agg(
    tx: &WriteTransaction,
    tier: Tier,
    series: &[(u32, Family)],
    horizon: u64,
) -> Result<(u64, u64, bool), StoreError> {
    let mut tail = tx.open_table(tier.table())?;
    let block = tier.block_ms();
    // The oldest block with tail rows, one seek per series.
    let mut oldest: Option<u64> = None;
    for (id, _) in series {
        if let Some(row) = tail.range((*id, 0)..(*id, horizon))?.next() {
            let at = row?.0.value().1;
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
    }
    let Some(oldest) = oldest else {
        return Ok((0, 0, false));
    };
    let start = bucket(oldest, block);
    let end = (start + block).min(horizon);
    let mut w = block::Writer::open(tx, tier)?;
    let mut chunks = w.blocks.read(start)?;
    let (mut rows, mut written, mut more) = (0, 0, false);
    for (id, fam) in series {
        let (blocks, r) = tail_blocks::<Agg>(&tail, block, *fam, *id, end)?;
        if r > 0 {
            tail.retain_in((*id, 0)..(*id, end), |_, _| false)?;
            rows += r;
        }
        for (b, es) in blocks {
            // Rows of an older block (none: it was the oldest) stay put.
            if b == start {
                merge_chunk(&mut chunks, *fam, *id, start, es);
                written += 1;
            }
        }
        more = more || tail.range((*id, end)..(*id, horizon))?.next().is_some();
    }
    w.write(start, &chunks)?;
    Ok((rows, written, more))
}

/// The time below which `tier`'s tail is sealed (see the module docs).
fn horizon(tx: &WriteTransaction, tier: Tier) -> Result<u64, StoreError> {
    let meta = tx.open_table(META)?;
    let get = |k| -> Result<u64, StoreError> { Ok(meta.get(k)?.map_or(0, |v| v.value())) };
    let upto = match tier {
        Tier::Raw => {
            let first_late = meta
                .range::<&str>(schema::LATE_PREFIX..schema::LATE_END)?
                .next()
                .transpose()?
                .and_then(|(k, _)| {
                    k.value()
                        .strip_prefix(schema::LATE_PREFIX)
                        .and_then(|t| t.parse::<u64>().ok())
                })
                .unwrap_or(u64::MAX);
            get(schema::M1_DONE_KEY)?.min(first_late)
        }
        Tier::Minute | Tier::Hour => get(schema::H1_DONE_KEY)?,
    };
    Ok(bucket(upto, tier.block_ms()))
}

/// What one [`Store::seal`] did, per tier (raw, 1-minute, 1-hour).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sealed {
    /// Tail rows moved into chunks.
    pub rows: [u64; 3],
    /// Chunks written (new or merged).
    pub chunks: [u64; 3],
}

impl Store {
    /// Seals every tier's tail below its horizon into chunks (see the
    /// module docs), a block per transaction (raw: whole blocks up to about
    /// [`SEAL_ROWS`] samples); `progress` is told the rows sealed so far
    /// after each.
    pub(crate) fn seal(&self, progress: &mut dyn FnMut(&Sealed)) -> Result<Sealed, StoreError> {
        let mut done = Sealed::default();
        for (i, tier) in Tier::ALL.into_iter().enumerate() {
            loop {
                if self.is_stopping() {
                    return Ok(done);
                }
                let _ids = self.lock_ids();
                let step = self.with_db(|db| {
                    let tx = db.begin_write()?;
                    let horizon = horizon(&tx, tier)?;
                    let series = all_series(&tx)?;
                    let (rows, chunks_written, more) = if tier == Tier::Raw {
                        seal_raw(&tx, &series, horizon)?
                    } else {
                        seal_agg(&tx, tier, &series, horizon)?
                    };
                    if rows > 0 {
                        self.maintenance_step("seal");
                        tx.commit()?;
                    }
                    Ok((rows, chunks_written, more && rows > 0))
                })?;
                done.rows[i] += step.0;
                done.chunks[i] += step.1;
                if step.0 > 0 {
                    progress(&done);
                }
                if !step.2 {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// At start-up, after a migration from version 1: seals the whole file,
    /// logging progress.
    pub(super) fn seal_all_logged(&self) -> Result<(), StoreError> {
        let before = self.counts()?;
        let t0 = std::time::Instant::now();
        info!(
            raw = before[0],
            minute = before[1],
            hour = before[2],
            "Compressing the history into chunks."
        );
        let total: u64 = before.iter().sum();
        let done = self.seal(&mut |s| {
            let n: u64 = s.rows.iter().sum();
            info!(
                sealed = n,
                of = total,
                percent = (n * 100).checked_div(total).unwrap_or(100),
                "Compressing the history into chunks."
            );
        })?;
        info!(took = ?t0.elapsed(), rows = ?done.rows, chunks = ?done.chunks, "Compressed the history into chunks.");
        Ok(())
    }
}

/// Deletes `tier`'s data of the given series before `cutoff`: tail rows
/// before it, and chunks (of any series) whose whole block is before it
/// (`whole`) or that start before it. Returns the samples or buckets
/// deleted.
pub(super) fn delete_before(
    tx: &WriteTransaction,
    tier: Tier,
    series: &[(u32, Family)],
    cutoff: u64,
    whole: bool,
) -> Result<u64, StoreError> {
    let block = tier.block_ms();
    let mut n = 0;
    if tier == Tier::Raw {
        n += raw_tail::delete_before(tx, cutoff)?;
    } else {
        let mut tail = tx.open_table(tier.table())?;
        for (id, _) in series {
            for row in tail.extract_from_if((*id, 0)..(*id, cutoff), |_, _| true)? {
                row?;
                n += 1;
            }
        }
    }
    // Blocks are keyed by their start: the ones to go are the table's start.
    let before = if whole {
        cutoff.checked_sub(block).map_or(0, |c| c + 1)
    } else {
        cutoff
    };
    n += block::Writer::open(tx, tier)?.delete_before(before)?;
    Ok(n)
}

/// Whether series `id` has anything in `tier`.
pub(super) fn has_data(tx: &WriteTransaction, tier: Tier, id: u32) -> Result<bool, StoreError> {
    if tier != Tier::Raw
        && tx
            .open_table(tier.table())?
            .range((id, 0)..=(id, u64::MAX))?
            .next()
            .is_some()
    {
        return Ok(true);
    }
    // Its newest chunk is there unless the table's oldest block is newer.
    let Some(newest) = tx
        .open_table(CHUNK_LAST)?
        .get((tier as u8, id))?
        .map(|v| v.value())
    else {
        return Ok(false);
    };
    let first = tx.open_table(tier.index())?.first()?.map(|r| r.0.value());
    Ok(first.is_some_and(|first| first <= newest))
}

/// Forgets series `id`'s newest chunks (the series is forgotten).
pub(super) fn forget(tx: &WriteTransaction, id: u32) -> Result<(), StoreError> {
    let mut last = tx.open_table(CHUNK_LAST)?;
    for tier in Tier::ALL {
        last.remove((tier as u8, id))?;
    }
    Ok(())
}

/// The oldest time with data in `tier` (a chunk counts from its block's
/// start), any series.
pub(super) fn oldest(
    tx: &WriteTransaction,
    tier: Tier,
    series: &[(u32, Family)],
) -> Result<Option<u64>, StoreError> {
    let mut best = tx.open_table(tier.index())?.first()?.map(|r| r.0.value());
    let mut min = |at: u64| best = Some(best.map_or(at, |b: u64| b.min(at)));
    if tier == Tier::Raw {
        if let Some(row) = tx.open_table(RAW_OPEN)?.first()? {
            min(row.0.value());
        }
    } else {
        let t = tx.open_table(tier.table())?;
        for (id, _) in series {
            if let Some(row) = t.range((*id, 0)..=(*id, u64::MAX))?.next() {
                min(row?.0.value().1);
            }
        }
    }
    Ok(best)
}

/// Every series' id and family.
pub(super) fn all_series(tx: &WriteTransaction) -> Result<Vec<(u32, Family)>, StoreError> {
    let names = tx.open_table(SERIES_NAMES)?;
    let mut out = Vec::new();
    for row in names.iter()? {
        let (k, v) = row?;
        if let Some(f) = Family::of(v.value()) {
            out.push((k.value(), f));
        }
    }
    Ok(out)
}
