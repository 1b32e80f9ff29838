//! History in redb: one file, one transaction per collection interval,
//! three retention tiers, a size budget.
//!
//! - [`Store::open`] creates the file or opens it, migrating an older
//!   layout and refusing a newer one ([`StoreError::Newer`]).
//! - [`record::Recorder::write_interval`] turns the traffic snapshot and the
//!   collectors' latest readings into one [`Interval`] and writes it with
//!   [`Store::write`]: every sample of the interval and its row in the
//!   interval table commit together (`Durability::Immediate`), so a crash
//!   (SIGKILL, power loss) loses at most the interval in flight and never
//!   leaves a partial one. An interval that cannot be written (disk full,
//!   maintenance holding the series ids) stays queued in the recorder and is
//!   retried.
//! - [`Store::query`] reads one series over a time range from the tier the
//!   range calls for ([`Tier::for_range`]); [`Store::top`] ranks a family's
//!   series over a window; [`Store::latest`] lists the newest intervals.
//! - [`Store::maintain`] (run it on its own thread, see
//!   [`retention::maintenance_loop`]) folds complete minutes and hours into
//!   the aggregate tiers, expires each tier and enforces the size budget, in
//!   ordinary write transactions: queries are answered meanwhile. It never
//!   compacts; [`Store::compact_oversized`] does, once, at start-up, for a
//!   file far over its budget. See `retention.rs` for the rules.
//!
//! Every function that depends on the time takes it as an argument (ms since
//! the epoch), so tests drive the clock; the agent's threads read it from
//! the store's [`clock::Clock`] ([`Store::now`]), which notices jumps of the
//! wall clock (see `clock.rs`). [`Store::open_or_recover`] moves a damaged
//! file aside and starts a fresh one (see `recover.rs`); [`status::Status`]
//! says how the history is doing, and [`supervise`] restarts the store's
//! threads after a panic.

pub mod alert_log;
mod block;
pub mod chunk;
pub mod clock;
mod codec;
pub mod labels;
mod open;
mod options;
mod query;
mod raw_tail;
mod recode;
pub mod record;
pub mod recover;
mod rekey;
pub mod retention;
pub mod schema;
pub mod series;
pub mod status;
mod stored;
pub mod supervise;

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, TryLockError},
};

use redb::{Database, ReadableTable};
use serde::Serialize;
use tracing::{info, warn};

use clock::{Clock, Now, Timeline};
pub use options::{FILE_NAME, Options, Retention, Tier, as_ms, epoch_ms};
use options::{HOUR_MS, MINUTE_MS};
use query::fold_into;
pub use query::{TierSize, Usage};
use schema::{INTERVALS, META, RAW_OPEN, SERIES, SERIES_NAMES};
pub use series::{Agg, Family, FieldValue, Kind, Point, SeriesKey, Values};

/// One collection interval: every sample written together.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    /// When the interval ended, ms since the epoch; its key.
    pub at_ms: u64,
    /// Its length.
    pub length_ms: u32,
    pub samples: Vec<(SeriesKey, Values)>,
}

/// A stored interval, as [`Store::latest`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IntervalRow {
    pub at_ms: u64,
    pub length_ms: u32,
    /// Samples written in it.
    pub samples: u32,
}

/// One series over a time range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct History {
    pub series: String,
    pub family: Family,
    pub kind: Kind,
    pub tier: Tier,
    /// Bucket width in seconds; absent for raw samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<f64>,
    /// Oldest first.
    pub points: Vec<Point>,
    /// Stored values that could not be decoded (a damaged file), skipped.
    pub skipped: u32,
}

/// One series of a [`Store::top`] answer.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Ranked {
    pub series: String,
    /// The ranked field over the window: a counter's sum, a gauge's average.
    pub value: f64,
    /// Every field over the window.
    pub total: Point,
}

/// Why the store could not do something. Write errors leave the caller's
/// state intact: retry later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file was written by a newer netmon.
    #[error(
        "history file {}: schema version {found} was written by a newer netmon; this build reads version {supported} and older. Upgrade netmon or use another --store-path.",
        path.display()
    )]
    Newer {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// A redb file with tables but no schema version: not ours.
    #[error("{} is a redb file but not a netmon history file (it has no schema version); refusing to touch it", path.display())]
    Foreign { path: PathBuf },
    /// The process may not use the file or its directory (the message names
    /// the owner and mode of each, and who the process runs as).
    #[error("no permission to use the history file {}: {access}", path.display())]
    Permission {
        path: PathBuf,
        access: String,
        #[source]
        source: io::Error,
    },
    /// The file's directory, or a new file in it, could not be created.
    #[error("cannot create the history file or its directory {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file could not be opened (not a redb file, unreadable, or open in
    /// another process).
    #[error("cannot open the history file {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// A database operation failed; I/O errors (disk full) land here.
    #[error("history database error")]
    Db(#[source] redb::Error),
    /// A re-open (after an I/O error) holds the file, or another write is
    /// running: nothing was done, try again.
    #[error("the history file is busy (re-opening or writing); try again")]
    Busy,
    /// No such series in the history.
    #[error("no series named `{0}` in the history")]
    UnknownSeries(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

impl StoreError {
    /// The filesystem is full (or over quota).
    pub fn is_disk_full(&self) -> bool {
        self.io_error().is_some_and(|e| {
            matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
                || e.kind() == io::ErrorKind::StorageFull
        })
    }

    fn io_error(&self) -> Option<&io::Error> {
        match self {
            StoreError::Db(redb::Error::Io(e)) => Some(e),
            _ => None,
        }
    }

    /// redb refuses further work after an I/O error until the file is
    /// re-opened.
    fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }
}

/// The history file.
pub struct Store {
    path: PathBuf,
    /// `None` after a failed re-open; write-locked only to re-open, so
    /// everything else runs side by side.
    db: RwLock<Option<Database>>,
    /// Held across every write transaction (intervals, maintenance), so the
    /// id cache always agrees with the committed series table.
    ids: Mutex<HashMap<String, u32>>,
    retention: Retention,
    /// Where "now" comes from, and the jumps seen in it.
    clock: Arc<dyn Clock>,
    timeline: Timeline,
    /// How the history is doing (`/health`, `/metrics`).
    status: status::Status,
    /// Set at shutdown: a maintenance run stops between transactions, so
    /// the writer's last intervals need not wait for it.
    stopping: std::sync::atomic::AtomicBool,
    /// Tests: called at each step of a maintenance run (see
    /// `retention::Store::maintenance_step`).
    #[cfg(test)]
    maintenance_hook: Mutex<Option<retention::StepHook>>,
}

impl Store {
    /// The time now, from the store's clock; a jump of the wall clock since
    /// the last reading is logged (see `clock.rs`).
    pub fn now(&self) -> Now {
        self.timeline.now(self.clock.as_ref())
    }

    /// Jumps of the wall clock seen so far.
    pub fn clock_jumps(&self) -> u64 {
        self.timeline.jumps()
    }

    /// How the history is doing.
    pub fn status(&self) -> &status::Status {
        &self.status
    }

    /// The agent is stopping: a maintenance run in progress ends after its
    /// current transaction.
    pub fn begin_shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Runs `f` on the open database. A database closed by an I/O error is
    /// re-opened first (redb refuses all work after one); an I/O error from
    /// `f` closes it for the next call to re-open.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let read = || match self.db.try_read() {
            Ok(g) => Ok(g),
            Err(TryLockError::WouldBlock) => Err(StoreError::Busy),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        };
        let mut guard = read()?;
        if guard.is_none() {
            drop(guard);
            self.reopen()?;
            guard = read()?;
        }
        let r = match &*guard {
            Some(db) => f(db),
            None => Err(StoreError::Busy),
        };
        drop(guard);
        if let Err(e) = &r
            && e.needs_reopen()
        {
            let mut w = self.db.write().unwrap_or_else(|e| e.into_inner());
            *w = None;
        }
        r
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut w = match self.db.try_write() {
            Ok(w) => w,
            Err(TryLockError::WouldBlock) => return Err(StoreError::Busy),
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if w.is_none() {
            // The id cache holds only committed ids of this same file: it
            // stays valid.
            *w = Some(open::open_db(&self.path)?);
            info!(path = %self.path.display(), "Re-opened the history file.");
        }
        Ok(())
    }

    /// Writes one interval in one transaction. Samples whose width does not
    /// match their family are dropped (and logged): the rest is written.
    pub fn write(&self, iv: &Interval) -> Result<(), StoreError> {
        let mut ids = match self.ids.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Err(StoreError::Busy),
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(redb::Durability::Immediate)
                .map_err(|e| StoreError::Db(redb::Error::Corrupted(e.to_string())))?;
            let mut new_ids = Vec::new();
            let mut written = 0u32;
            {
                let mut series = tx.open_table(SERIES)?;
                let mut names = tx.open_table(SERIES_NAMES)?;
                let mut meta = tx.open_table(META)?;
                let mut raw = tx.open_table(RAW_OPEN)?;
                let mut rows = Vec::with_capacity(iv.samples.len());
                let mut intervals = tx.open_table(INTERVALS)?;
                // After the wall clock went back, an interval may land on
                // one already stored: it takes the next free millisecond
                // rather than overwrite it.
                let mut at_ms = iv.at_ms;
                while intervals.get(at_ms)?.is_some() {
                    at_ms += 1;
                }
                // Below the folded watermark (the clock went back): folded
                // on its own by the next maintenance run.
                let m1_done = meta.get(schema::M1_DONE_KEY)?.map(|v| v.value());
                if m1_done.is_some_and(|d| at_ms < d) {
                    meta.insert(schema::late_key(at_ms).as_str(), 0)?;
                }
                for (key, values) in &iv.samples {
                    let fam = key.family();
                    if values.kind() != fam.kind() || values.len() != fam.fields().len() {
                        warn!(series = %key, "Dropping a sample of the wrong shape.");
                        continue;
                    }
                    let id = match ids.get(key.as_str()) {
                        Some(&id) => id,
                        None => {
                            let found = series.get(key.as_str())?.map(|v| v.value());
                            let id = match found {
                                Some(id) => id,
                                None => {
                                    let id = next_series_id(&mut meta)?;
                                    series.insert(key.as_str(), id)?;
                                    names.insert(id, key.as_str())?;
                                    id
                                }
                            };
                            new_ids.push((key.as_str().to_owned(), id));
                            id
                        }
                    };
                    rows.push((id, values.encode()));
                    written += 1;
                }
                raw.insert(at_ms, raw_tail::encode(&mut rows).as_slice())?;
                intervals.insert(at_ms, (iv.length_ms, written))?;
            }
            tx.commit()?;
            // Only now: ids of an aborted transaction do not exist.
            ids.extend(new_ids);
            Ok(())
        })
    }
}

pub(crate) const NEXT_ID_KEY: &str = "next_series_id";

fn next_series_id(meta: &mut redb::Table<&str, u64>) -> Result<u32, StoreError> {
    let next = meta.get(NEXT_ID_KEY)?.map(|v| v.value()).unwrap_or(0);
    let id = u32::try_from(next)
        .map_err(|_| StoreError::Db(redb::Error::Corrupted("series ids exhausted".into())))?;
    meta.insert(NEXT_ID_KEY, next + 1)?;
    Ok(id)
}

/// Bucket start of `t` for a step.
fn bucket(t: u64, step: u64) -> u64 {
    t - t % step
}

#[cfg(test)]
mod migrate_tests;
#[cfg(test)]
mod tests;
