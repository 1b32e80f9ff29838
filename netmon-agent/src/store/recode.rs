//! Version 3 → 4: every chunk of format 1 (standalone pco columns, no
//! predictions) is rewritten in the current format (see `codec.rs`), at
//! start-up, a batch of chunks per transaction, progress logged.
//!
//! The migration's transaction sets [`RECODE_KEY`] in `meta`; the last
//! batch removes it, so a crash meanwhile resumes at the next start (reads
//! take either format, so the file is valid all along). A chunk that does
//! not decode is left as it is (reads skip and count it).

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable};
use tracing::info;

use super::{
    Agg, Family, Store, StoreError, Tier, Values,
    block::{self, Read as _},
    chunk, codec,
    schema::META,
    stored::{Entry, all_series},
};

/// Key in `meta` while format-1 chunks may be left.
pub const RECODE_KEY: &str = "recode_chunks";

/// Chunks looked at per transaction, about (whole blocks).
const BATCH: usize = 4000;

/// The chunk `b` of series family `fam`, block `start`, in the current
/// format; `None` when it is current already or does not decode.
fn recoded(tier: Tier, fam: Family, start: u64, b: &[u8]) -> Option<Vec<u8>> {
    if chunk::format(b) != Some(codec::FORMAT_1) {
        return None;
    }
    if tier == Tier::Raw {
        let es = Values::decode_chunk(fam, start, b).ok()?;
        Some(Values::encode_chunk(fam, start, &es))
    } else {
        let es = Agg::decode_chunk(fam, start, b).ok()?;
        Some(Agg::encode_chunk(fam, start, &es))
    }
}

impl Store {
    /// Rewrites every format-1 chunk when [`RECODE_KEY`] is set (after a
    /// migration from version 3, or a crash during one), logging progress.
    pub(super) fn recode_logged(&self) -> Result<(), StoreError> {
        let pending = self.with_db(|db| {
            let rtx = db.begin_read()?;
            Ok(rtx.open_table(META)?.get(RECODE_KEY)?.is_some())
        })?;
        if !pending {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let (mut seen, mut rewritten) = (0u64, 0u64);
        info!("Recompressing the history's chunks.");
        for tier in Tier::ALL {
            let mut from = Some(0u64);
            while let Some(at) = from {
                let step = self.with_db(|db| {
                    let tx = db.begin_write()?;
                    let fams: HashMap<u32, Family> = all_series(&tx)?.into_iter().collect();
                    let mut w = block::Writer::open(&tx, tier)?;
                    let starts: Vec<u64> = w
                        .blocks
                        .index
                        .range(at..)?
                        .map(|r| r.map(|(k, _)| k.value()))
                        .collect::<Result<_, _>>()?;
                    let (mut n, mut done, mut next) = (0, 0u64, None);
                    for start in starts {
                        if n >= BATCH {
                            next = Some(start);
                            break;
                        }
                        let mut chunks = w.blocks.read(start)?;
                        n += chunks.len();
                        let mut changed = false;
                        for (id, b) in chunks.iter_mut() {
                            if let Some(fam) = fams.get(id)
                                && let Some(new) = recoded(tier, *fam, start, b)
                            {
                                *b = new;
                                changed = true;
                                done += 1;
                            }
                        }
                        if changed {
                            w.write(start, &chunks)?;
                        }
                    }
                    drop(w);
                    if next.is_none() && tier == Tier::Hour {
                        tx.open_table(META)?.remove(RECODE_KEY)?;
                    }
                    tx.commit()?;
                    Ok((n as u64, done, next))
                })?;
                seen += step.0;
                rewritten += step.1;
                from = step.2;
                if from.is_some() {
                    info!(
                        chunks = seen,
                        rewritten, "Recompressing the history's chunks."
                    );
                }
            }
        }
        info!(took = ?t0.elapsed(), chunks = seen, rewritten, "Recompressed the history's chunks.");
        Ok(())
    }
}
