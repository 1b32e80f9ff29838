//! Every table of the history file, and the schema version.
//!
//! Layout (version [`SCHEMA_VERSION`]):
//! - [`META`]: `"schema_version"` → the layout's version; `"m1_done"` and
//!   `"h1_done"` → the end (ms since the epoch, exclusive) of the last
//!   minute / hour folded into [`M1`] / [`H1`]; `"late/<ms>"` (see
//!   [`late_key`]) → 0 for each interval written below `m1_done` (after the
//!   wall clock went back) and not folded yet; `"clock_*"`: the time as the
//!   steady clock tracks it (see `clock.rs`), saved by each maintenance run.
//! - [`SERIES`] / [`SERIES_NAMES`]: a series' canonical name (see
//!   `series::SeriesKey`) ↔ its compact id. Ids are never reused.
//! - [`RAW_OPEN`]: the raw tier's *open tail*: ms since the epoch → every
//!   sample of that interval, sorted by series id (see `raw_tail.rs`): an
//!   interval's write is one new value.
//! - [`M1`], [`H1`]: the aggregate tiers' open tails: buckets keyed by
//!   `(series id, bucket start)`, values the fixed-width little-endian
//!   encodings of `series.rs`, one row each (written by folding, a batch at
//!   a time).
//! - [`RAW_CHUNKS`], [`M1_CHUNKS`], [`H1_CHUNKS`] with [`RAW_INDEX`],
//!   [`M1_INDEX`], [`H1_INDEX`]: each tier's *sealed* data, one *block*
//!   per time block of the tier ([`super::Tier::block_ms`]): every series'
//!   compressed chunk of the block (see `chunk.rs`) laid end to end, cut
//!   into pieces that each fill a B-tree page, keyed `(block start, piece
//!   number)`; the index (block start → each series' id, length and entry
//!   count, see `block.rs`) says where a series' chunk is. Sealing a block
//!   appends after every key, so pages are full. Maintenance seals the
//!   tail's complete, folded blocks into them (see `stored.rs`); a series'
//!   range is read from both.
//! - [`CHUNK_LAST`]: `(tier, series id)` → the start of the series' newest
//!   chunk in the tier, so whether a series has any chunk left is one
//!   lookup (its newest block against the table's oldest) instead of a
//!   scan of the time-ordered chunks.
//! - [`INTERVALS`]: ms since the epoch → `(interval length in ms, samples
//!   written)`, one row per committed collection interval. The row is written
//!   in the same transaction as the interval's samples, so a row's presence
//!   means all its samples are present.
//!
//! History: version 0 lacked [`INTERVALS`] (the file's intervals could only
//! be found by scanning every series); opening a version-0 file rebuilds it
//! from [`RAW`] (see `migrate_v0`). Version 1 kept every sample as a row
//! forever (about 100 bytes each), raw samples in [`RAW`] keyed `(series
//! id, ms)`; opening a version-1 file creates the chunk tables, moves
//! [`RAW`]'s rows into [`RAW_OPEN`] (then drops [`RAW`]) and seals
//! everything into chunks, in batches with progress logged (see
//! `open.rs`). The aggregate tails are unchanged. Version 2 named a flow
//! series' direction `in`/`out` (`flow/<iface>/in/...`) where the API and
//! `/metrics` say `ingress`/`egress`; opening a version-2 (or older) file
//! renames them in [`SERIES`] and [`SERIES_NAMES`] (see
//! `rename_directions` in `open.rs`), ids and data unchanged. Version 3
//! wrote chunks of format 1 (each column a standalone pco file, no
//! predictions); opening a version-3 (or older) file rewrites them in
//! format 2 at start-up (see `recode.rs`), every point kept. Version 4
//! kept a chunk per row keyed by `(series id, block start)` in tables of
//! their own names ([`V4_RAW_CHUNKS`] ...), so each seal inserted a chunk
//! per series all over the B-tree and left pages part empty (27-39% of
//! each tier; and a value over a page got a power-of-two run of pages);
//! opening a version-4 (or older) file moves them into blocks at start-up
//! (see `rekey.rs`), every chunk kept byte for byte.

use redb::TableDefinition;

/// The layout this build reads and writes.
pub const SCHEMA_VERSION: u64 = 5;

/// Key in [`META`] of the layout version.
pub const VERSION_KEY: &str = "schema_version";
/// Key in [`META`] of the end of the last minute folded into [`M1`].
pub const M1_DONE_KEY: &str = "m1_done";
/// Key in [`META`] of the end of the last hour folded into [`H1`].
pub const H1_DONE_KEY: &str = "h1_done";

/// Keys in [`META`] of the tracked time saved by the last maintenance run
/// (see `clock::Saved`): the boot, the steady clock, the tracked wall time.
pub const CLOCK_BOOT_KEY: &str = "clock_boot";
pub const CLOCK_STEADY_KEY: &str = "clock_steady_ms";
pub const CLOCK_TRACKED_KEY: &str = "clock_tracked_ms";

/// Prefix in [`META`] of the intervals written below `m1_done`.
pub const LATE_PREFIX: &str = "late/";
/// One past the last key starting with [`LATE_PREFIX`].
pub const LATE_END: &str = "late0";

/// Key in [`META`] marking the interval at `at_ms` as written below
/// `m1_done`: zero-padded so the keys sort by time.
pub fn late_key(at_ms: u64) -> String {
    format!("{LATE_PREFIX}{at_ms:020}")
}

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const SERIES: TableDefinition<&str, u32> = TableDefinition::new("series");
pub const SERIES_NAMES: TableDefinition<u32, &str> = TableDefinition::new("series_names");
/// Version 1's raw samples (read only by the migration).
pub const RAW: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("raw");
pub const RAW_OPEN: TableDefinition<u64, &[u8]> = TableDefinition::new("raw_open");
pub const M1: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("agg_1m");
pub const H1: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("agg_1h");
pub const INTERVALS: TableDefinition<u64, (u32, u32)> = TableDefinition::new("intervals");
/// A piece's key: its block's start, then its number in the block.
pub type ChunkKey = (u64, u32);
pub const RAW_CHUNKS: TableDefinition<ChunkKey, &[u8]> = TableDefinition::new("raw_block_pieces");
pub const M1_CHUNKS: TableDefinition<ChunkKey, &[u8]> = TableDefinition::new("agg_1m_block_pieces");
pub const H1_CHUNKS: TableDefinition<ChunkKey, &[u8]> = TableDefinition::new("agg_1h_block_pieces");
pub const RAW_INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("raw_block_index");
pub const M1_INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("agg_1m_block_index");
pub const H1_INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("agg_1h_block_index");
pub const CHUNK_LAST: TableDefinition<(u8, u32), u64> = TableDefinition::new("chunk_last_block");
/// Version 4's chunk tables, keyed series first (read only by the
/// migration, `rekey.rs`).
pub const V4_RAW_CHUNKS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("raw_chunks");
pub const V4_M1_CHUNKS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("agg_1m_chunks");
pub const V4_H1_CHUNKS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("agg_1h_chunks");
