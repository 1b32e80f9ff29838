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
pub mod clock;
pub mod labels;
pub mod record;
pub mod recover;
pub mod retention;
pub mod schema;
pub mod series;
pub mod status;
pub mod supervise;

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, TryLockError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Serialize;
use tracing::{info, warn};

use clock::{Clock, Now, SystemClock, Timeline};
use schema::{H1, INTERVALS, M1, META, RAW, SERIES, SERIES_NAMES};
pub use series::{Agg, Family, FieldValue, Kind, Point, SeriesKey, Values};

/// The history file's name in the state directory (`--state-dir`), where
/// it is kept unless `--store-path` says otherwise.
pub const FILE_NAME: &str = "netmon.redb";

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

/// History options.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "store-options")]
pub struct Options {
    /// The history database file (created with its directory if missing).
    /// Default: netmon.redb in the state directory (--state-dir).
    #[arg(long, value_name = "PATH", env = "NETMON_STORE_PATH")]
    pub store_path: Option<PathBuf>,

    /// Run without history: no file is opened, the history endpoints answer
    /// 503.
    #[arg(long, env = "NETMON_NO_HISTORY")]
    pub no_history: bool,

    /// How long raw interval samples are kept.
    #[arg(long, default_value = "48h", value_parser = crate::units::parse_duration, env = "NETMON_STORE_RAW_RETENTION")]
    pub store_raw_retention: Duration,

    /// How long 1-minute aggregates are kept.
    #[arg(long, default_value = "30days", value_parser = crate::units::parse_duration, env = "NETMON_STORE_MINUTE_RETENTION")]
    pub store_minute_retention: Duration,

    /// How long 1-hour aggregates are kept.
    #[arg(long, default_value = "730days", value_parser = crate::units::parse_duration, env = "NETMON_STORE_HOUR_RETENTION")]
    pub store_hour_retention: Duration,

    /// Disk space for the history file (e.g. 512MiB, 1GiB). The oldest data
    /// goes first when the pages in use reach half of it: the file keeps
    /// freed pages for reuse and settles near this size.
    #[arg(long, default_value = "1GiB", value_parser = crate::units::parse_size, env = "NETMON_STORE_SIZE_BUDGET")]
    pub store_size_budget: u64,

    /// Flows stored per interval: the interval's top N by bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000), env = "NETMON_STORE_FLOWS_PER_INTERVAL")]
    pub store_flows_per_interval: u32,

    /// Intervals kept in memory while the history file cannot be written
    /// (disk full, busy); beyond it the oldest are dropped, counted and
    /// logged.
    #[arg(long, default_value_t = record::MAX_PENDING as u32, value_parser = clap::value_parser!(u32).range(1..=86_400), env = "NETMON_STORE_QUEUE_INTERVALS")]
    pub store_queue_intervals: u32,

    /// How often downsampling, expiry and the size budget run.
    #[arg(long, default_value = "1m", value_parser = crate::units::parse_interval, env = "NETMON_STORE_MAINTENANCE_INTERVAL")]
    pub store_maintenance_interval: Duration,
}

impl Options {
    /// The history file: `--store-path`, else [`FILE_NAME`] in `state_dir`.
    pub fn path(&self, state_dir: &Path) -> PathBuf {
        self.store_path
            .clone()
            .unwrap_or_else(|| state_dir.join(FILE_NAME))
    }

    pub fn retention(&self) -> Retention {
        Retention {
            raw: self.store_raw_retention,
            minute: self.store_minute_retention,
            hour: self.store_hour_retention,
            size_budget: self.store_size_budget,
        }
    }
}

/// How long each tier keeps its data, and the size budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
    /// Bytes the file should take on disk. The pages in use are kept within
    /// [`Retention::data_budget`] of it, which leaves room for the free
    /// pages redb keeps (see `retention.rs`); redb's growth steps can take
    /// the file a little past it.
    pub size_budget: u64,
}

impl Retention {
    /// The share of [`Retention::size_budget`] the pages in use may take:
    /// redb grows a file by doubling it and keeps freed pages inside it, so
    /// a file settles at about twice its pages in use (measured: 2.1-2.4
    /// times), which keeps it near the size budget.
    pub const DATA_SHARE: f64 = 0.5;

    /// Bytes of pages in use the file may hold.
    pub fn data_budget(&self) -> u64 {
        (self.size_budget as f64 * Self::DATA_SHARE) as u64
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw: Duration::from_secs(48 * 3600),
            minute: Duration::from_secs(30 * 86_400),
            hour: Duration::from_secs(730 * 86_400),
            size_budget: 1 << 30,
        }
    }
}

/// A resolution of the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// One sample per collection interval.
    Raw,
    /// 1-minute aggregates.
    Minute,
    /// 1-hour aggregates.
    Hour,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Raw, Tier::Minute, Tier::Hour];

    /// Bucket width in ms (`None` for raw).
    pub fn step_ms(self) -> Option<u64> {
        match self {
            Tier::Raw => None,
            Tier::Minute => Some(MINUTE_MS),
            Tier::Hour => Some(HOUR_MS),
        }
    }

    pub fn retention(self, r: &Retention) -> Duration {
        match self {
            Tier::Raw => r.raw,
            Tier::Minute => r.minute,
            Tier::Hour => r.hour,
        }
    }

    fn table(self) -> redb::TableDefinition<'static, (u32, u64), &'static [u8]> {
        match self {
            Tier::Raw => RAW,
            Tier::Minute => M1,
            Tier::Hour => H1,
        }
    }

    /// The finest tier whose retention still covers `from_ms`: a range that
    /// starts within the raw retention is read raw (48 h by default), one
    /// within the minute retention per minute, anything older per hour.
    pub fn for_range(from_ms: u64, now_ms: u64, r: &Retention) -> Tier {
        let age = now_ms.saturating_sub(from_ms);
        if age <= as_ms(r.raw) {
            Tier::Raw
        } else if age <= as_ms(r.minute) {
            Tier::Minute
        } else {
            Tier::Hour
        }
    }
}

/// `d` in ms, saturating.
pub fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `t` in ms since the epoch (0 before it).
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(as_ms).unwrap_or(0)
}

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

/// What a read transaction sees of the schema.
enum Layout {
    Empty,
    Versioned(u64),
    Foreign,
}

impl Store {
    /// Opens (or creates) the history at `path`, migrating an older layout
    /// and refusing a newer one.
    pub fn open(path: &Path, retention: Retention) -> Result<Store, StoreError> {
        Store::open_with_clock(path, retention, Arc::new(SystemClock))
    }

    /// [`Store::open`] with the time read from `clock`.
    pub fn open_with_clock(
        path: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        Store::open_inner(path, retention, clock).map_err(|e| recover::name_permission(e, path))
    }

    fn open_inner(
        path: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        if !path.exists() {
            create_atomically(path, retention, &clock)?;
        }
        Store::open_existing(path, retention, clock)
    }

    fn open_existing(
        path: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let db = open_db(path)?;
        let store = Store {
            path: path.to_owned(),
            db: RwLock::new(Some(db)),
            ids: Mutex::new(HashMap::new()),
            retention,
            clock,
            timeline: Timeline::default(),
            status: status::Status::default(),
            stopping: Default::default(),
            #[cfg(test)]
            maintenance_hook: Mutex::new(None),
        };
        store.prepare()?;
        store.with_db(|db| {
            let rtx = db.begin_read()?;
            let meta = rtx.open_table(META)?;
            let get =
                |k| -> Result<Option<u64>, StoreError> { Ok(meta.get(k)?.map(|v| v.value())) };
            if let (Some(boot), Some(steady_ms), Some(tracked_ms)) = (
                get(schema::CLOCK_BOOT_KEY)?,
                get(schema::CLOCK_STEADY_KEY)?,
                get(schema::CLOCK_TRACKED_KEY)?,
            ) {
                store.timeline.resume(clock::Saved {
                    boot,
                    steady_ms,
                    tracked_ms,
                });
            }
            Ok(())
        })?;
        Ok(store)
    }

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

    /// Checks the layout: initialises a new file, migrates an old one.
    fn prepare(&self) -> Result<(), StoreError> {
        self.with_db(|db| {
            let layout = {
                let rtx = db.begin_read()?;
                match rtx.open_table(META) {
                    Ok(meta) => Layout::Versioned(
                        meta.get(schema::VERSION_KEY)?
                            .map(|v| v.value())
                            .unwrap_or(0),
                    ),
                    Err(redb::TableError::TableDoesNotExist(_)) => {
                        if rtx.list_tables()?.next().is_none() {
                            Layout::Empty
                        } else {
                            Layout::Foreign
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            match layout {
                Layout::Foreign => Err(StoreError::Foreign {
                    path: self.path.clone(),
                }),
                Layout::Versioned(v) if v > schema::SCHEMA_VERSION => Err(StoreError::Newer {
                    path: self.path.clone(),
                    found: v,
                    supported: schema::SCHEMA_VERSION,
                }),
                Layout::Versioned(v) if v == schema::SCHEMA_VERSION => Ok(()),
                Layout::Versioned(v) => {
                    info!(path = %self.path.display(), from = v, to = schema::SCHEMA_VERSION, "Migrating the history file.");
                    migrate(db, v)
                }
                Layout::Empty => {
                    let tx = db.begin_write()?;
                    create_tables(&tx)?;
                    tx.open_table(META)?
                        .insert(schema::VERSION_KEY, schema::SCHEMA_VERSION)?;
                    tx.commit()?;
                    info!(path = %self.path.display(), "Created the history file.");
                    Ok(())
                }
            }
        })
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
            *w = Some(open_db(&self.path)?);
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
                let mut raw = tx.open_table(RAW)?;
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
                    raw.insert((id, at_ms), values.encode().as_slice())?;
                    written += 1;
                }
                intervals.insert(at_ms, (iv.length_ms, written))?;
            }
            tx.commit()?;
            // Only now: ids of an aborted transaction do not exist.
            ids.extend(new_ids);
            Ok(())
        })
    }

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

    /// Samples and space per tier (raw, 1-minute, 1-hour).
    pub fn tier_sizes(&self) -> Result<[TierSize; 3], StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let page = tx.stats()?.page_size() as u64;
            let mut out = [TierSize::default(); 3];
            for (i, t) in Tier::ALL.iter().enumerate() {
                let table = tx.open_table(t.table())?;
                let stats = table.stats()?;
                out[i] = TierSize {
                    samples: table.len()?,
                    page_bytes: (stats.leaf_pages() + stats.branch_pages()) * page,
                    stored_bytes: stats.stored_bytes(),
                };
            }
            tx.abort()?;
            Ok(out)
        })
    }

    /// Samples stored per tier.
    pub fn counts(&self) -> Result<[u64; 3], StoreError> {
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let mut out = [0; 3];
            for (i, t) in Tier::ALL.iter().enumerate() {
                out[i] = rtx.open_table(t.table())?.len()?;
            }
            Ok(out)
        })
    }
}

/// Space one tier's table takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TierSize {
    /// Samples stored.
    pub samples: u64,
    /// Bytes of the table's B-tree pages (leaf and branch).
    pub page_bytes: u64,
    /// Bytes of its keys and values alone.
    pub stored_bytes: u64,
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

/// Creates a new history file beside `path` and renames it into place
/// once its schema is committed: a crash while redb writes a new file's
/// header would otherwise leave a file that cannot be opened (the crash test
/// found it). A leftover from such a crash is never the real file: it is
/// replaced.
fn create_atomically(
    path: &Path,
    retention: Retention,
    clock: &Arc<dyn Clock>,
) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".creating");
    let tmp = PathBuf::from(tmp);
    let io_err = |source| StoreError::Dir {
        path: path.to_owned(),
        source,
    };
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    drop(Store::open_existing(&tmp, retention, Arc::clone(clock))?);
    std::fs::rename(&tmp, path).map_err(io_err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
    }
    Ok(())
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::builder()
        .create(path)
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })
}

fn create_tables(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(META)?;
    tx.open_table(SERIES)?;
    tx.open_table(SERIES_NAMES)?;
    tx.open_table(RAW)?;
    tx.open_table(M1)?;
    tx.open_table(H1)?;
    tx.open_table(INTERVALS)?;
    Ok(())
}

/// Brings a file of layout `from` to the current one, in one transaction: a
/// crash during migration leaves the old layout, migrated again next time.
fn migrate(db: &Database, from: u64) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    if from == 0 {
        migrate_v0(&tx)?;
    }
    tx.open_table(META)?
        .insert(schema::VERSION_KEY, schema::SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Version 0 → 1: builds the interval table from the raw samples. An
/// interval's length is its counter samples' (0 when it had none).
fn migrate_v0(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    create_tables(tx)?;
    let mut rows: std::collections::BTreeMap<u64, (u32, u32)> = Default::default();
    {
        let raw = tx.open_table(RAW)?;
        let names = tx.open_table(SERIES_NAMES)?;
        for row in raw.iter()? {
            let (k, v) = row?;
            let (id, at) = k.value();
            let e = rows.entry(at).or_default();
            e.1 += 1;
            let counter = names
                .get(id)?
                .and_then(|n| Family::of(n.value()))
                .is_some_and(|f| f.kind() == Kind::Counter);
            if counter && v.value().len() >= 4 {
                e.0 = e.0.max(u32::from_le_bytes([
                    v.value()[0],
                    v.value()[1],
                    v.value()[2],
                    v.value()[3],
                ]));
            }
        }
    }
    let mut t = tx.open_table(INTERVALS)?;
    for (at, row) in rows {
        t.insert(at, row)?;
    }
    // Version 0 allocated ids as max + 1; keep allocating above them.
    let next = tx
        .open_table(SERIES_NAMES)?
        .last()?
        .map(|(k, _)| k.value() + 1)
        .unwrap_or(0);
    tx.open_table(META)?.insert(NEXT_ID_KEY, u64::from(next))?;
    Ok(())
}

const NEXT_ID_KEY: &str = "next_series_id";

fn next_series_id(meta: &mut redb::Table<&str, u64>) -> Result<u32, StoreError> {
    let next = meta.get(NEXT_ID_KEY)?.map(|v| v.value()).unwrap_or(0);
    let id = u32::try_from(next)
        .map_err(|_| StoreError::Db(redb::Error::Corrupted("series ids exhausted".into())))?;
    meta.insert(NEXT_ID_KEY, next + 1)?;
    Ok(id)
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

/// Bucket start of `t` for a step.
fn bucket(t: u64, step: u64) -> u64 {
    t - t % step
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
    let n = fam.fields().len();
    let table = rtx.open_table(tier.table())?;
    let Some(step) = tier.step_ms() else {
        let mut out = Vec::new();
        for row in table.range((id, from)..(id, to))? {
            let (k, v) = row?;
            match Values::decode(fam.kind(), n, v.value()) {
                Ok(vals) => out.push((k.value().1, Agg::of(&vals))),
                Err(_) => *skipped += 1,
            }
        }
        return Ok(out);
    };
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
    let mut out = Vec::new();
    for row in table.range((id, start)..(id, to.min(done)))? {
        let (k, v) = row?;
        match Agg::decode(fam.kind(), n, v.value()) {
            Ok(a) => out.push((k.value().1, a)),
            Err(_) => *skipped += 1,
        }
    }
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
fn fold_into(out: &mut Vec<(u64, Agg)>, b: u64, agg: &Agg) {
    match out.last_mut() {
        Some((at, last)) if *at == b => {
            last.merge(agg);
        }
        _ => out.push((b, agg.clone())),
    }
}

#[cfg(test)]
mod tests;
