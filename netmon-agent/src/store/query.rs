//! Reading the history: one series over a range, rankings, the newest
//! intervals, the series list, and the space each tier takes.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use super::{
    Agg, Family, History, IntervalRow, Point, Ranked, SeriesKey, Store, StoreError, Tier,
    block::{self, Read as _},
    bucket, raw_tail,
    schema::{self, INTERVALS, META, RAW_OPEN, SERIES},
    stored,
};

impl Store {
    /// Reads `series` over `[from_ms, to_ms)`, oldest first, from `tier`
    /// (default: [`Tier::for_range`]). The aggregate tiers include the
    /// newest buckets not folded yet, computed from the tier below.
    pub fn query(
        &self,
        series: &str,
        from_ms: u64,
        to_ms: u64,
        tier: Option<Tier>,
        now_ms: u64,
    ) -> Result<History, StoreError> {
        let key =
            SeriesKey::parse(series).ok_or_else(|| StoreError::UnknownSeries(series.into()))?;
        let tier = tier.unwrap_or_else(|| Tier::for_range(from_ms, now_ms, &self.retention));
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let id = rtx
                .open_table(SERIES)?
                .get(key.as_str())?
                .map(|v| v.value())
                .ok_or_else(|| StoreError::UnknownSeries(series.into()))?;
            let mut skipped = 0;
            let points = read_tier(&rtx, tier, &key, id, from_ms, to_ms, &mut skipped)?
                .into_iter()
                .map(|(at, agg)| Point::new(key.family(), at, &agg))
                .collect();
            Ok(History {
                series: key.as_str().to_owned(),
                family: key.family(),
                kind: key.family().kind(),
                tier,
                step_seconds: tier.step_ms().map(|s| s as f64 / 1000.0),
                points,
                skipped,
            })
        })
    }

    /// The `n` series of `family` with the largest `field` over `[from_ms,
    /// to_ms)` (a counter's sum, a gauge's average), largest first. Series
    /// without a value in the window are left out.
    pub fn top(
        &self,
        family: Family,
        field: &str,
        from_ms: u64,
        to_ms: u64,
        n: usize,
        now_ms: u64,
    ) -> Result<Vec<Ranked>, StoreError> {
        let Some(fi) = family.fields().iter().position(|f| *f == field) else {
            return Ok(Vec::new());
        };
        let tier = Tier::for_range(from_ms, now_ms, &self.retention);
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let series = rtx.open_table(SERIES)?;
            let mut ranked = Vec::new();
            let mut skipped = 0;
            for entry in series_of(&series, family)? {
                let (name, id) = entry;
                let Some(key) = SeriesKey::parse(&name) else {
                    continue;
                };
                let mut total: Option<Agg> = None;
                for (_, agg) in read_tier(&rtx, tier, &key, id, from_ms, to_ms, &mut skipped)? {
                    match &mut total {
                        None => total = Some(agg),
                        Some(t) => {
                            t.merge(&agg);
                        }
                    }
                }
                if let Some(t) = total
                    && let Some(value) = t.score(fi)
                {
                    ranked.push(Ranked {
                        series: name,
                        value,
                        total: Point::new(family, from_ms, &t),
                    });
                }
            }
            ranked.sort_by(|a, b| b.value.total_cmp(&a.value));
            ranked.truncate(n);
            Ok(ranked)
        })
    }

    /// The newest `limit` intervals, newest first.
    pub fn latest(&self, limit: usize) -> Result<Vec<IntervalRow>, StoreError> {
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let t = rtx.open_table(INTERVALS)?;
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in t.iter()?.rev().take(limit) {
                let (k, v) = row?;
                let (length_ms, samples) = v.value();
                out.push(IntervalRow {
                    at_ms: k.value(),
                    length_ms,
                    samples,
                });
            }
            Ok(out)
        })
    }

    /// The stored series' names, of one family or all, sorted.
    pub fn series(&self, family: Option<Family>) -> Result<Vec<String>, StoreError> {
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let t = rtx.open_table(SERIES)?;
            let mut out = Vec::new();
            match family {
                Some(f) => out.extend(series_of(&t, f)?.into_iter().map(|(n, _)| n)),
                None => {
                    for row in t.iter()? {
                        out.push(row?.0.value().to_owned());
                    }
                }
            }
            Ok(out)
        })
    }

    /// Bytes in the file's pages in use, and the file's length.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let s = tx.stats()?;
            tx.abort()?;
            let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
            Ok(Usage {
                used_bytes: s.allocated_pages() * s.page_size() as u64,
                stored_bytes: s.stored_bytes(),
                file_bytes,
            })
        })
    }

    /// Samples and space per tier (raw, 1-minute, 1-hour): open tail and
    /// sealed chunks together.
    pub fn tier_sizes(&self) -> Result<[TierSize; 3], StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let page = tx.stats()?.page_size() as u64;
            let mut out = [TierSize::default(); 3];
            for (i, t) in Tier::ALL.iter().enumerate() {
                let blocks = block::Blocks {
                    pieces: tx.open_table(t.chunks())?,
                    index: tx.open_table(t.index())?,
                };
                let (sealed, chunks) = blocks.count()?;
                let (tail_samples, a) = if *t == Tier::Raw {
                    let open = tx.open_table(RAW_OPEN)?;
                    (raw_tail::count(&open)?, open.stats()?)
                } else {
                    let tail = tx.open_table(t.table())?;
                    (tail.len()?, tail.stats()?)
                };
                let (b, c) = (blocks.pieces.stats()?, blocks.index.stats()?);
                out[i] = TierSize {
                    samples: tail_samples + sealed,
                    tail_samples,
                    chunks,
                    page_bytes: [&a, &b, &c]
                        .iter()
                        .map(|s| s.leaf_pages() + s.branch_pages())
                        .sum::<u64>()
                        * page,
                    stored_bytes: a.stored_bytes() + b.stored_bytes() + c.stored_bytes(),
                    tail_stored_bytes: a.stored_bytes(),
                    chunk_stored_bytes: b.stored_bytes() + c.stored_bytes(),
                    metadata_bytes: a.metadata_bytes() + b.metadata_bytes() + c.metadata_bytes(),
                    fragmented_bytes: a.fragmented_bytes()
                        + b.fragmented_bytes()
                        + c.fragmented_bytes(),
                };
            }
            tx.abort()?;
            Ok(out)
        })
    }

    /// Samples stored per tier (open tail and chunks).
    pub fn counts(&self) -> Result<[u64; 3], StoreError> {
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let mut out = [0; 3];
            for (i, t) in Tier::ALL.iter().enumerate() {
                let tail = if *t == Tier::Raw {
                    raw_tail::count(&rtx.open_table(RAW_OPEN)?)?
                } else {
                    rtx.open_table(t.table())?.len()?
                };
                out[i] = tail + block::open_read(&rtx, *t)?.count()?.0;
            }
            Ok(out)
        })
    }
}

/// Space one tier's table takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TierSize {
    /// Samples (or buckets) stored.
    pub samples: u64,
    /// Of which in the open tail, one row each.
    pub tail_samples: u64,
    /// Sealed chunks.
    pub chunks: u64,
    /// Bytes of the table's B-tree pages (leaf and branch).
    pub page_bytes: u64,
    /// Bytes of its keys and values alone.
    pub stored_bytes: u64,
    /// Of which the open tail's and the chunks'.
    pub tail_stored_bytes: u64,
    pub chunk_stored_bytes: u64,
    /// Bytes of the B-trees' own bookkeeping (branch keys, entry offsets).
    pub metadata_bytes: u64,
    /// Bytes of allocated pages holding nothing (partly filled pages).
    pub fragmented_bytes: u64,
}

/// Space used by the history file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Bytes of allocated pages: what the size budget limits.
    pub used_bytes: u64,
    /// Bytes of keys and values (no indexing overhead).
    pub stored_bytes: u64,
    /// The file's length (includes free pages until compaction).
    pub file_bytes: u64,
}

/// The `(name, id)` of every series of `family`.
fn series_of(
    t: &impl ReadableTable<&'static str, u32>,
    family: Family,
) -> Result<Vec<(String, u32)>, StoreError> {
    let name = family.as_str();
    // Names are `family` or `family/...`: '/' + 1 is '0'.
    let hi = format!("{name}0");
    let mut out = Vec::new();
    for row in t.range::<&str>(name..hi.as_str())? {
        let (k, v) = row?;
        if Family::of(k.value()) == Some(family) {
            out.push((k.value().to_owned(), v.value()));
        }
    }
    Ok(out)
}

/// Points of series `id` in `[from, to)` at `tier`: the tier's stored
/// buckets up to its folded watermark, then buckets folded on the fly from
/// the tier below (which does the same, down to raw).
fn read_tier(
    rtx: &redb::ReadTransaction,
    tier: Tier,
    key: &SeriesKey,
    id: u32,
    from: u64,
    to: u64,
    skipped: &mut u32,
) -> Result<Vec<(u64, Agg)>, StoreError> {
    let fam = key.family();
    let chunks = block::open_read(rtx, tier)?;
    let Some(step) = tier.step_ms() else {
        let open = rtx.open_table(RAW_OPEN)?;
        return stored::read_raw(&open, &chunks, fam, id, (from, to), skipped);
    };
    let tail = rtx.open_table(tier.table())?;
    let (below, done_key) = match tier {
        Tier::Minute => (Tier::Raw, schema::M1_DONE_KEY),
        _ => (Tier::Minute, schema::H1_DONE_KEY),
    };
    let done = rtx
        .open_table(META)?
        .get(done_key)?
        .map(|v| v.value())
        .unwrap_or(0);
    let start = bucket(from, step);
    let mut out = stored::read_agg(
        &tail,
        &chunks,
        tier,
        fam,
        id,
        (start, to.min(done)),
        skipped,
    )?;
    let tail_from = start.max(done);
    if tail_from < to {
        for (at, agg) in read_tier(rtx, below, key, id, tail_from, to, skipped)? {
            fold_into(&mut out, bucket(at, step), &agg);
        }
    }
    Ok(out)
}

/// Adds `agg` to the bucket at `b`, appending it when it is newer than the
/// last (inputs come in time order).
pub(super) fn fold_into(out: &mut Vec<(u64, Agg)>, b: u64, agg: &Agg) {
    match out.last_mut() {
        Some((at, last)) if *at == b => {
            last.merge(agg);
        }
        _ => out.push((b, agg.clone())),
    }
}
