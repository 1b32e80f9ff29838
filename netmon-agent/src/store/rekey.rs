//! Version 4 → 5: every chunk moves from version 4's tables, a row each
//! keyed by `(series id, block start)`, into the blocks of `block.rs`,
//! byte for byte, at start-up, whole blocks per transaction (about
//! [`BATCH`] chunks), progress logged.
//!
//! The blocks are written oldest first, so the new tables are filled by
//! appends and their pages stay packed. Each transaction writes its blocks
//! and removes their chunks from the old table, so a crash meanwhile resumes where it stopped at
//! the next start: the migration's transaction sets [`REKEY_KEY`] in
//! `meta`, and the last batch drops the old tables and removes it. Nothing
//! reads the store until this is done (it runs in `Store::open`).

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use tracing::info;

use super::{
    Store, StoreError, Tier,
    block::{self, Read as _},
    schema::{META, V4_H1_CHUNKS, V4_M1_CHUNKS, V4_RAW_CHUNKS},
};

/// Key in `meta` while version 4's chunk tables may hold chunks.
pub const REKEY_KEY: &str = "rekey_chunks";

/// Chunks moved per transaction, about (whole blocks).
const BATCH: usize = 4000;

type V4Table = TableDefinition<'static, (u32, u64), &'static [u8]>;

/// A tier's version-4 chunk table.
fn v4(tier: Tier) -> V4Table {
    match tier {
        Tier::Raw => V4_RAW_CHUNKS,
        Tier::Minute => V4_M1_CHUNKS,
        Tier::Hour => V4_H1_CHUNKS,
    }
}

impl Store {
    /// Moves every chunk of version 4's tables into the current ones when
    /// [`REKEY_KEY`] is set (after a migration from version 4 or older, or
    /// a crash during one), logging progress.
    pub(super) fn rekey_logged(&self) -> Result<(), StoreError> {
        let pending = self.with_db(|db| {
            let rtx = db.begin_read()?;
            Ok(rtx.open_table(META)?.get(REKEY_KEY)?.is_some())
        })?;
        if !pending {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let mut moved = 0u64;
        for tier in Tier::ALL {
            // Every key left, in the new order (a scan of the keys only
            // once per start; the values are moved a batch at a time).
            let keys = self.with_db(|db| {
                let rtx = db.begin_read()?;
                let t = match rtx.open_table(v4(tier)) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                    Err(e) => return Err(e.into()),
                };
                let mut keys = Vec::new();
                for row in t.iter()? {
                    let (id, start) = row?.0.value();
                    keys.push((start, id));
                }
                keys.sort_unstable();
                Ok(keys)
            })?;
            let total = keys.len();
            info!(
                ?tier,
                chunks = total,
                "Reordering the history's chunks by time."
            );
            let mut at = 0;
            while at < total {
                // Whole blocks, up to about BATCH chunks.
                let mut end = at;
                while end < total && (end - at < BATCH || keys[end].0 == keys[end - 1].0) {
                    end += 1;
                }
                let batch = &keys[at..end];
                self.with_db(|db| {
                    let tx = db.begin_write()?;
                    {
                        let mut old = tx.open_table(v4(tier))?;
                        let mut w = block::Writer::open(&tx, tier)?;
                        let mut i = 0;
                        while i < batch.len() {
                            let start = batch[i].0;
                            let mut chunks = w.blocks.read(start)?;
                            while i < batch.len() && batch[i].0 == start {
                                let id = batch[i].1;
                                if let Some(b) = old.remove((id, start))? {
                                    chunks.insert(id, b.value().to_vec());
                                }
                                i += 1;
                            }
                            w.write(start, &chunks)?;
                        }
                    }
                    tx.commit()?;
                    Ok(())
                })?;
                moved += batch.len() as u64;
                at = end;
                info!(
                    ?tier,
                    moved = at,
                    of = total,
                    "Reordering the history's chunks by time."
                );
            }
        }
        self.with_db(|db| {
            let tx = db.begin_write()?;
            for tier in Tier::ALL {
                let name = v4(tier);
                if tx.list_tables()?.any(|t| t.name() == name.name()) {
                    tx.delete_table(name)?;
                }
            }
            tx.open_table(META)?.remove(REKEY_KEY)?;
            tx.commit()?;
            Ok(())
        })?;
        info!(took = ?t0.elapsed(), chunks = moved, "Reordered the history's chunks by time.");
        Ok(())
    }
}
