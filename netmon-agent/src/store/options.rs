//! The history's options, retentions and tiers.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::{
    record,
    schema::{
        ChunkKey, H1, H1_CHUNKS, H1_INDEX, M1, M1_CHUNKS, M1_INDEX, RAW, RAW_CHUNKS, RAW_INDEX,
    },
};

/// The history file's name in the state directory (`--state-dir`), where
/// it is kept unless `--store-path` says otherwise.
pub const FILE_NAME: &str = "netmon.redb";

pub(crate) const MINUTE_MS: u64 = 60_000;
pub(crate) const HOUR_MS: u64 = 3_600_000;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
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

    pub(crate) fn table(self) -> redb::TableDefinition<'static, (u32, u64), &'static [u8]> {
        match self {
            Tier::Raw => RAW,
            Tier::Minute => M1,
            Tier::Hour => H1,
        }
    }

    /// The tier's sealed chunks (see `stored.rs`).
    pub(crate) fn chunks(self) -> redb::TableDefinition<'static, ChunkKey, &'static [u8]> {
        match self {
            Tier::Raw => RAW_CHUNKS,
            Tier::Minute => M1_CHUNKS,
            Tier::Hour => H1_CHUNKS,
        }
    }

    /// The index of the tier's sealed blocks (see `block.rs`).
    pub(crate) fn index(self) -> redb::TableDefinition<'static, u64, &'static [u8]> {
        match self {
            Tier::Raw => RAW_INDEX,
            Tier::Minute => M1_INDEX,
            Tier::Hour => H1_INDEX,
        }
    }

    /// The time block one chunk holds: 30 minutes of raw samples (1,800 at
    /// 1 s), 6 hours of minutes (360), 7 days of hours (168). A block is
    /// sealed once it is complete and folded into the tier above, so the
    /// open tail holds at most about one block of each tier.
    pub fn block_ms(self) -> u64 {
        match self {
            Tier::Raw => 30 * MINUTE_MS,
            Tier::Minute => 6 * HOUR_MS,
            Tier::Hour => 7 * 24 * HOUR_MS,
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
