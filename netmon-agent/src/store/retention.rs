//! Downsampling, expiry and the size budget: [`Store::maintain`]; and the
//! one compaction, at start-up: [`Store::compact_oversized`].
//!
//! Rules, in the order one run applies them (at the time it is given: the
//! agent gives [`super::clock::Now`], whose wall time completes buckets and
//! whose expiry time, which a jump of the wall clock never moves forward,
//! ages data):
//! 1. **Fold** every complete minute of raw samples not folded yet into one
//!    1-minute bucket per series, then every complete hour of 1-minute
//!    buckets into 1-hour buckets (counters: sums of deltas and of covered
//!    time; gauges: min / sum+count / max / last per field). The end of what
//!    is folded is recorded in the same transaction as the buckets
//!    (`m1_done`, `h1_done`), so a crash never folds anything twice or skips
//!    it. Work is cut into transactions of at most [`RAW_CHUNK_MS`] /
//!    [`MINUTE_CHUNK_MS`] of data so the interval writer never waits long.
//!    An interval written below `m1_done` (the wall clock went back) is
//!    marked late when written and folded on its own: its samples are
//!    merged into their 1-minute buckets, and into their 1-hour buckets
//!    when those are folded already. So data written at any time is folded
//!    exactly once, wherever the clock put it.
//! 2. **Seal** each tier's complete, folded blocks from its open tail into
//!    compressed chunks (see `stored.rs`).
//! 3. **Expire** each tier's data older than its retention, but never data
//!    that is not folded into the next tier yet (late intervals included);
//!    interval rows go with the raw samples. A chunk goes once its whole
//!    block is past the retention. Series with no data left in any tier are
//!    forgotten.
//! 4. **Size budget**: while the pages in use exceed the data budget
//!    ([`super::Retention::data_budget`], half the size budget), delete in
//!    tier order, so the coarsest tier is the last to lose anything: first
//!    raw samples already folded into minutes, oldest first, then minutes
//!    already folded into hours, then hours; only when all of those are
//!    gone, what is left (the newest raw samples and minutes not folded
//!    yet). Each cut deletes everything of its tier older than `oldest +
//!    max(age / 16, 1 min)` (but not past what is folded; a chunk that
//!    starts before the cut goes whole), then
//!    measures again.
//!
//! Each step runs in ordinary write transactions, so queries (read
//! transactions, which see the last commit) are answered all along. The
//! interval writer gets [`StoreError::Busy`] while a step holds the
//! series-id lock, and its intervals stay queued in the recorder for its
//! next try.
//!
//! **No compaction while the agent runs.** redb's `Database::compact` needs
//! the file to itself: every query would have to fail or wait until it
//! ended. It is not needed to hold the budget: deleting data frees pages and
//! redb reuses free pages before it grows the file, so once the pages in use
//! reach the data budget the file stops growing. It does not shrink either:
//! redb grows a file by doubling it (by 4 GiB beyond 4 GiB) and gives back
//! only free pages at its very end, so the file settles at about twice the
//! pages in use (2.1-2.4 times, measured with 1 and 4 MiB budgets): keeping
//! those within half the size budget keeps the file near the size budget,
//! a little over it when a doubling step lands just past it (1.07 times
//! with a 1 MiB budget, where the steps are coarsest).
//!
//! **At start-up**, before the API or the writer can use the file,
//! [`Store::compact_oversized`] cuts a file longer than [`OVERSIZED_FACTOR`]
//! times its size budget (one written under a larger budget) to the data
//! budget and compacts it.

use std::{
    collections::BTreeMap,
    sync::MutexGuard,
    time::{Duration, Instant},
};

use redb::{ReadableTable, WriteTransaction};
use serde::Serialize;
use tracing::{debug, info, warn};

use super::{
    Agg, Family, HOUR_MS, MINUTE_MS, Store, StoreError, Tier, Usage, Values, as_ms, bucket,
    raw_tail,
    schema::{self, INTERVALS, META, RAW_OPEN, SERIES, SERIES_NAMES},
    status::Part,
    stored,
    supervise::Injector,
};

/// Raw data folded per transaction.
pub const RAW_CHUNK_MS: u64 = 10 * MINUTE_MS;
/// 1-minute data folded per transaction.
pub const MINUTE_CHUNK_MS: u64 = 6 * HOUR_MS;
/// Late intervals folded per transaction.
const LATE_CHUNK: usize = 600;
/// Budget deletions per run, at most (each re-measures).
const BUDGET_STEPS: usize = 64;
/// A file longer than this many times its size budget did not come from
/// running under that budget (which leaves it within the budget): it is
/// compacted at start-up.
pub const OVERSIZED_FACTOR: f64 = 1.25;

/// A test's observer of maintenance steps ([`Store::on_maintenance_step`]).
#[cfg(test)]
pub(crate) type StepHook = Box<dyn FnMut(&'static str) + Send>;

/// What one [`Store::maintain`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Maintenance {
    /// Buckets written into the 1-minute and 1-hour tiers.
    pub folded: [u64; 2],
    /// Samples expired from the raw, 1-minute and 1-hour tiers.
    pub expired: [u64; 3],
    /// Tail rows sealed into chunks, and chunks written, per tier.
    pub sealed: super::stored::Sealed,
    /// Samples deleted (all tiers) to keep within the size budget.
    pub over_budget: u64,
    /// Of which per tier (raw, 1-minute, 1-hour).
    pub over_budget_by_tier: [u64; 3],
    /// Series forgotten because nothing of them was left.
    pub forgotten_series: u64,
    /// Space after the run.
    pub usage: Option<Usage>,
}

impl Store {
    /// One maintenance run at time `now_ms` (see the module docs).
    pub fn maintain(&self, now_ms: u64) -> Result<Maintenance, StoreError> {
        self.maintain_at(super::clock::Now {
            wall_ms: now_ms,
            expiry_ms: now_ms,
        })
    }

    /// One maintenance run at the time of the store's clock.
    pub fn maintain_now(&self) -> Result<Maintenance, StoreError> {
        self.maintain_at(self.now())
    }

    /// One maintenance run: buckets complete at `now.wall_ms` are folded,
    /// data is aged from `now.expiry_ms`.
    pub fn maintain_at(&self, now: super::clock::Now) -> Result<Maintenance, StoreError> {
        let late = self.fold_late()?;
        let mut report = Maintenance {
            folded: [
                late[0] + self.fold(Tier::Raw, now.wall_ms)?,
                late[1] + self.fold(Tier::Minute, now.wall_ms)?,
            ],
            ..Maintenance::default()
        };
        if self.is_stopping() {
            return Ok(report);
        }
        report.sealed = self.seal(&mut |_| {})?;
        self.expire(now.expiry_ms, &mut report)?;
        self.enforce_budget(now.expiry_ms, &mut report)?;
        report.usage = Some(self.usage()?);
        self.maintenance_step("end");
        Ok(report)
    }

    /// Folds the intervals written below the 1-minute watermark (see the
    /// module docs); returns the buckets updated in each tier.
    fn fold_late(&self) -> Result<[u64; 2], StoreError> {
        let mut written = [0, 0];
        loop {
            if self.is_stopping() {
                return Ok(written);
            }
            let _ids = self.lock_ids();
            let more = self.with_db(|db| {
                let tx = db.begin_write()?;
                let (late, h1_done) = {
                    let meta = tx.open_table(META)?;
                    let mut late = Vec::new();
                    for row in meta
                        .range::<&str>(schema::LATE_PREFIX..schema::LATE_END)?
                        .take(LATE_CHUNK)
                    {
                        let (k, _) = row?;
                        late.push(k.value().to_owned());
                    }
                    let h1 = meta.get(schema::H1_DONE_KEY)?.map_or(0, |v| v.value());
                    (late, h1)
                };
                if late.is_empty() {
                    return Ok(false);
                }
                let series = stored::all_series(&tx)?;
                {
                    let raw = tx.open_table(RAW_OPEN)?;
                    let fams: std::collections::HashMap<u32, Family> =
                        series.iter().copied().collect();
                    let mut m1 = tx.open_table(Tier::Minute.table())?;
                    let mut h1 = tx.open_table(Tier::Hour.table())?;
                    // Summed per bucket first: one merge per bucket.
                    let mut minutes: BTreeMap<(u32, u64), (Family, Agg)> = BTreeMap::new();
                    let mut hours: BTreeMap<(u32, u64), (Family, Agg)> = BTreeMap::new();
                    let add = |into: &mut BTreeMap<_, (Family, Agg)>, k, fam, agg: &Agg| {
                        into.entry(k)
                            .and_modify(|(_, a): &mut (Family, Agg)| {
                                a.merge(agg);
                            })
                            .or_insert_with(|| (fam, agg.clone()));
                    };
                    for key in &late {
                        let Some(at) = key
                            .strip_prefix(schema::LATE_PREFIX)
                            .and_then(|t| t.parse::<u64>().ok())
                        else {
                            continue;
                        };
                        let Some(row) = raw.get(at)? else {
                            continue;
                        };
                        let Some(view) = raw_tail::View::new(row.value()) else {
                            debug!(at, "Skipping an undecodable interval.");
                            continue;
                        };
                        for i in 0..view.len() {
                            let Some((id, b)) = view.get(i) else { continue };
                            let Some(fam) = fams.get(&id) else { continue };
                            let Some(agg) = decode(Tier::Raw, *fam, b) else {
                                debug!(series = id, "Skipping an undecodable sample.");
                                continue;
                            };
                            let id = &id;
                            add(&mut minutes, (*id, bucket(at, MINUTE_MS)), *fam, &agg);
                            let hour = bucket(at, HOUR_MS);
                            if hour < h1_done {
                                add(&mut hours, (*id, hour), *fam, &agg);
                            }
                        }
                    }
                    for ((id, at), (fam, agg)) in &minutes {
                        merge_into(&mut m1, Tier::Minute, *fam, *id, *at, agg)?;
                    }
                    for ((id, at), (fam, agg)) in &hours {
                        merge_into(&mut h1, Tier::Hour, *fam, *id, *at, agg)?;
                    }
                    written[0] += minutes.len() as u64;
                    written[1] += hours.len() as u64;
                }
                let mut meta = tx.open_table(META)?;
                for key in &late {
                    meta.remove(key.as_str())?;
                }
                drop(meta);
                self.maintenance_step("fold");
                tx.commit()?;
                Ok(late.len() == LATE_CHUNK)
            })?;
            if !more {
                return Ok(written);
            }
        }
    }

    /// At start-up, while nothing else can use the file (it takes `&mut
    /// self`, so the store is not shared yet): when the file is longer than
    /// [`OVERSIZED_FACTOR`] times its size budget, deletes the oldest data
    /// down to the data budget and compacts the file. True when it compacted.
    pub fn compact_oversized(&mut self, now_ms: u64) -> Result<bool, StoreError> {
        let budget = self.retention.size_budget;
        let before = self.usage()?;
        if (before.file_bytes as f64) <= budget as f64 * OVERSIZED_FACTOR {
            return Ok(false);
        }
        info!(
            file_bytes = before.file_bytes,
            used_bytes = before.used_bytes,
            budget,
            "The history file is far over its size budget: trimming and compacting it before start."
        );
        self.enforce_budget(now_ms, &mut Maintenance::default())?;
        let t0 = Instant::now();
        let db = self.db.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = db.as_mut() {
            while db.compact()? {}
        }
        let after = self.usage()?;
        info!(took = ?t0.elapsed(), file_bytes = after.file_bytes, used_bytes = after.used_bytes, "Compacted the history file.");
        Ok(true)
    }

    /// Tests: runs `hook` at each step of every maintenance run from now
    /// on, on the maintenance thread: inside each write transaction before
    /// its commit (`fold`, `expire`, `budget`, with the series ids locked)
    /// and at the end of the run (`end`).
    #[cfg(test)]
    pub(crate) fn on_maintenance_step(&self, hook: impl FnMut(&'static str) + Send + 'static) {
        *self
            .maintenance_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }

    #[cfg(test)]
    pub(super) fn maintenance_step(&self, step: &'static str) {
        let mut hook = self
            .maintenance_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(hook) = hook.as_mut() {
            hook(step);
        }
    }

    #[cfg(not(test))]
    pub(super) fn maintenance_step(&self, _step: &'static str) {}

    pub(super) fn lock_ids(&self) -> MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds complete buckets of `below` into the tier above it; returns
    /// the buckets written.
    fn fold(&self, below: Tier, now_ms: u64) -> Result<u64, StoreError> {
        let (above, step, chunk, done_key) = match below {
            Tier::Raw => (Tier::Minute, MINUTE_MS, RAW_CHUNK_MS, schema::M1_DONE_KEY),
            _ => (Tier::Hour, HOUR_MS, MINUTE_CHUNK_MS, schema::H1_DONE_KEY),
        };
        let end = bucket(now_ms, step);
        let mut written = 0;
        loop {
            if self.is_stopping() {
                return Ok(written);
            }
            let _ids = self.lock_ids();
            let more = self.with_db(|db| {
                let tx = db.begin_write()?;
                let done = tx.open_table(META)?.get(done_key)?.map(|v| v.value());
                let series = stored::all_series(&tx)?;
                // Skip stretches without data (the agent was off).
                let start = match next_time(&tx, below, &series, done.unwrap_or(0))? {
                    Some(t) => bucket(t, step).max(done.unwrap_or(0)),
                    None => end,
                };
                if start >= end {
                    if done.is_none_or(|d| d < end) {
                        tx.open_table(META)?.insert(done_key, end)?;
                        tx.commit()?;
                    }
                    return Ok(false);
                }
                let stop = end.min(bucket(start + chunk, step));
                let stop = if stop <= start {
                    end.min(start + step)
                } else {
                    stop
                };
                {
                    // The raw intervals of the window, read once.
                    let mut raw = if below == Tier::Raw {
                        let fams = series.iter().copied().collect();
                        raw_tail::all(&tx.open_table(RAW_OPEN)?, &fams, (start, stop))?
                    } else {
                        Default::default()
                    };
                    let src = match below {
                        Tier::Raw => None,
                        _ => Some(tx.open_table(Tier::Minute.table())?),
                    };
                    let mut dst = tx.open_table(above.table())?;
                    for (id, fam) in &series {
                        let mut buckets: Vec<(u64, Agg)> = Vec::new();
                        if let Some(src) = &src {
                            for row in src.range((*id, start)..(*id, stop))? {
                                let (k, v) = row?;
                                match decode(below, *fam, v.value()) {
                                    Some(a) => super::fold_into(
                                        &mut buckets,
                                        bucket(k.value().1, step),
                                        &a,
                                    ),
                                    None => debug!(series = id, "Skipping an undecodable sample."),
                                }
                            }
                        } else {
                            for (at, v) in raw.remove(id).unwrap_or_default() {
                                super::fold_into(&mut buckets, bucket(at, step), &Agg::of(&v));
                            }
                        }
                        for (at, mut agg) in buckets {
                            // A bucket already there (a budget cut, a
                            // migration) is merged, never overwritten.
                            if let Some(old) = dst.get((*id, at))?
                                && let Some(mut prev) = decode(above, *fam, old.value())
                            {
                                prev.merge(&agg);
                                agg = prev;
                            }
                            dst.insert((*id, at), agg.encode().as_slice())?;
                            written += 1;
                        }
                    }
                }
                tx.open_table(META)?.insert(done_key, stop)?;
                self.maintenance_step("fold");
                tx.commit()?;
                Ok(stop < end)
            })?;
            if !more {
                return Ok(written);
            }
        }
    }

    fn expire(&self, now_ms: u64, report: &mut Maintenance) -> Result<(), StoreError> {
        let mut ids = self.lock_ids();
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let (m1_done, h1_done) = {
                let meta = tx.open_table(META)?;
                let get = |k| -> Result<u64, StoreError> {
                    Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0))
                };
                (get(schema::M1_DONE_KEY)?, get(schema::H1_DONE_KEY)?)
            };
            // Late intervals not folded yet keep their raw samples.
            let first_late = tx
                .open_table(META)?
                .range::<&str>(schema::LATE_PREFIX..schema::LATE_END)?
                .next()
                .transpose()?
                .and_then(|(k, _)| {
                    k.value()
                        .strip_prefix(schema::LATE_PREFIX)
                        .and_then(|t| t.parse::<u64>().ok())
                })
                .unwrap_or(u64::MAX);
            let series = stored::all_series(&tx)?;
            for (i, tier) in Tier::ALL.into_iter().enumerate() {
                let cutoff = now_ms.saturating_sub(as_ms(tier.retention(&self.retention)));
                let cutoff = match tier {
                    Tier::Raw => cutoff.min(m1_done).min(first_late),
                    Tier::Minute => cutoff.min(h1_done),
                    Tier::Hour => cutoff,
                };
                report.expired[i] += stored::delete_before(&tx, tier, &series, cutoff, true)?;
                if tier == Tier::Raw {
                    tx.open_table(INTERVALS)?
                        .retain_in(0..cutoff, |_, _| false)?;
                }
            }
            report.forgotten_series += forget_empty(&tx, &series, &mut ids)?;
            if let Some(saved) = self.timeline.saved() {
                let mut meta = tx.open_table(META)?;
                meta.insert(schema::CLOCK_BOOT_KEY, saved.boot)?;
                meta.insert(schema::CLOCK_STEADY_KEY, saved.steady_ms)?;
                meta.insert(schema::CLOCK_TRACKED_KEY, saved.tracked_ms)?;
            }
            self.maintenance_step("expire");
            tx.commit()?;
            Ok(())
        })
    }

    fn enforce_budget(&self, now_ms: u64, report: &mut Maintenance) -> Result<(), StoreError> {
        for _ in 0..BUDGET_STEPS {
            let usage = self.usage()?;
            if usage.used_bytes <= self.retention.data_budget() {
                return Ok(());
            }
            let mut ids = self.lock_ids();
            let cut = self.with_db(|db| {
                let tx = db.begin_write()?;
                let series = stored::all_series(&tx)?;
                let Some((tier, cut)) = budget_cut(&tx, &series, now_ms)? else {
                    return Ok(None);
                };
                let n = stored::delete_before(&tx, tier, &series, cut, false)?;
                if tier == Tier::Raw {
                    tx.open_table(INTERVALS)?.retain_in(0..cut, |_, _| false)?;
                }
                report.over_budget += n;
                report.over_budget_by_tier[tier as usize] += n;
                report.forgotten_series += forget_empty(&tx, &series, &mut ids)?;
                self.maintenance_step("budget");
                tx.commit()?;
                Ok(Some((tier, cut)))
            })?;
            drop(ids);
            match cut {
                Some((tier, cut)) => warn!(
                    used_bytes = usage.used_bytes,
                    budget = self.retention.size_budget,
                    ?tier,
                    before_ms = cut,
                    "History over its size budget: deleted the oldest data of the finest tier left."
                ),
                None => return Ok(()),
            }
        }
        Ok(())
    }
}

/// The earliest time at or after `from` with data in `tier`, any series.
fn next_time(
    tx: &WriteTransaction,
    tier: Tier,
    series: &[(u32, Family)],
    from: u64,
) -> Result<Option<u64>, StoreError> {
    if tier == Tier::Raw {
        let t = tx.open_table(RAW_OPEN)?;
        return Ok(match t.range(from..)?.next() {
            Some(row) => Some(row?.0.value()),
            None => None,
        });
    }
    let t = tx.open_table(tier.table())?;
    let mut best: Option<u64> = None;
    for (id, _) in series {
        if let Some(row) = t.range((*id, from)..=(*id, u64::MAX))?.next() {
            let at = row?.0.value().1;
            best = Some(best.map_or(at, |b| b.min(at)));
        }
    }
    Ok(best)
}

/// The next cut of the size budget: the finest tier with data that is
/// folded into the tier above (raw below `m1_done`, minutes below
/// `h1_done`, any hour), else the finest with any data; and the time before
/// which its data goes: `oldest + max(age / 16, 1 min)`, but not past
/// the folded data in the first case.
fn budget_cut(
    tx: &WriteTransaction,
    series: &[(u32, Family)],
    now_ms: u64,
) -> Result<Option<(Tier, u64)>, StoreError> {
    let (m1_done, h1_done) = {
        let meta = tx.open_table(META)?;
        let get = |k| -> Result<u64, StoreError> { Ok(meta.get(k)?.map_or(0, |v| v.value())) };
        (get(schema::M1_DONE_KEY)?, get(schema::H1_DONE_KEY)?)
    };
    let mut oldest = [None; 3];
    for tier in Tier::ALL {
        oldest[tier as usize] = stored::oldest(tx, tier, series)?;
    }
    // A chunk starting before the cut goes whole, so any step makes progress.
    let step =
        |_: Tier, from: u64| from.saturating_add((now_ms.saturating_sub(from) / 16).max(MINUTE_MS));
    for (tier, limit) in [
        (Tier::Raw, m1_done),
        (Tier::Minute, h1_done),
        (Tier::Hour, u64::MAX),
    ] {
        if let Some(from) = oldest[tier as usize]
            && from < limit
        {
            return Ok(Some((tier, step(tier, from).min(limit))));
        }
    }
    Ok(Tier::ALL
        .into_iter()
        .find_map(|t| oldest[t as usize].map(|from| (t, step(t, from)))))
}

/// Forgets series with no data left in any tier (ids are not reused).
fn forget_empty(
    tx: &WriteTransaction,
    series: &[(u32, Family)],
    ids: &mut std::collections::HashMap<String, u32>,
) -> Result<u64, StoreError> {
    let mut empty = Vec::new();
    let open = raw_tail::ids(tx)?;
    for (id, _) in series {
        let mut any = open.contains(id);
        for tier in Tier::ALL {
            if stored::has_data(tx, tier, *id)? {
                any = true;
                break;
            }
        }
        if !any {
            empty.push(*id);
        }
    }
    let mut names = tx.open_table(SERIES_NAMES)?;
    let mut by_name = tx.open_table(SERIES)?;
    for id in &empty {
        stored::forget(tx, *id)?;
        if let Some(name) = names.remove(*id)? {
            let name = name.value().to_owned();
            by_name.remove(name.as_str())?;
            ids.remove(&name);
        }
    }
    Ok(empty.len() as u64)
}

/// A stored sample of `tier` as a bucket; `None` when it cannot be read.
fn decode(tier: Tier, fam: Family, b: &[u8]) -> Option<Agg> {
    let n = fam.fields().len();
    match tier {
        Tier::Raw => Values::decode(fam.kind(), n, b).ok().map(|v| Agg::of(&v)),
        _ => Agg::decode(fam.kind(), n, b).ok(),
    }
}

/// Merges `agg` into the bucket at `(id, at)` of `table` (a `tier` table).
fn merge_into(
    table: &mut redb::Table<'_, (u32, u64), &'static [u8]>,
    tier: Tier,
    fam: Family,
    id: u32,
    at: u64,
    agg: &Agg,
) -> Result<(), StoreError> {
    let mut agg = agg.clone();
    let prev = table
        .get((id, at))?
        .and_then(|old| decode(tier, fam, old.value()));
    if let Some(mut prev) = prev {
        prev.merge(&agg);
        agg = prev;
    }
    table.insert((id, at), agg.encode().as_slice())?;
    Ok(())
}

/// Runs [`Store::maintain_now`] every `every` until `stop` (the body of the
/// supervised maintenance thread). Failures are logged once until they
/// change, set the history `degraded`, and are retried.
pub fn maintenance_loop(
    store: &Store,
    every: Duration,
    stop: &crate::shutdown::Stop,
    inject: &mut Injector,
) {
    let mut failing: Option<String> = None;
    loop {
        inject.tick();
        match store.maintain_now() {
            Ok(r) => {
                if failing.take().is_some() {
                    info!("History maintenance works again.");
                }
                store.status().clear(Part::Maintenance);
                debug!(folded = ?r.folded, expired = ?r.expired, over_budget = r.over_budget, usage = ?r.usage, "History maintenance.");
            }
            Err(StoreError::Busy) => {}
            Err(e) => {
                let msg = crate::errors::error_chain(&e);
                if failing.as_deref() != Some(&msg) {
                    warn!(error = %msg, "History maintenance failed; retrying next run.");
                    failing = Some(msg.clone());
                }
                store
                    .status()
                    .set(Part::Maintenance, format!("maintenance fails ({msg})"));
            }
        }
        if stop.wait_until(Instant::now() + every) {
            return;
        }
    }
}
