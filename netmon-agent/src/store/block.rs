//! A sealed block of a tier: every series' compressed chunk of one time
//! block, laid end to end in series order and cut into pieces of
//! [`PIECE`] bytes (keyed `(block start, piece number)`), with an index
//! (keyed by block start) of each series' id, chunk length and entry
//! count.
//!
//! Why: redb gives a value over a page a power-of-two run of pages, and a
//! leaf holds only whole values, so chunks stored one per row (schema 4)
//! left 27-39% of each tier's pages empty (a busy series' raw chunk of 4-8
//! kB took 8-16 kB; a 2.5 kB one left 1.5 kB of its leaf). A piece fills
//! one 4 KiB leaf exactly, and a block is written once, in key order,
//! after every other key (an append, which redb packs).
//!
//! Index layout: the count of series (LEB128), then per series, ids
//! ascending: the id's difference from the one before, the chunk's length
//! and its entry count (LEB128 each). A chunk's offset is the sum of the
//! lengths before it. Every length is checked: a damaged index or a
//! missing piece reads as a damaged chunk (skipped and counted), never as
//! other data.

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::{
    StoreError, Tier, chunk,
    codec::{damaged, get_varint, put_varint},
    schema::{CHUNK_LAST, ChunkKey},
    series::DecodeError,
};

/// Bytes of a piece: with its 12-byte key, the value's 4-byte end offset
/// and the leaf's 4-byte header it fills a 4 KiB page (redb's default)
/// but for 8 bytes of margin.
pub const PIECE: usize = 4068;

/// One series' chunk in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    pub off: usize,
    pub len: usize,
    pub count: u64,
}

/// A block's chunks by series id.
pub type Chunks = BTreeMap<u32, Vec<u8>>;

/// The index of `chunks`.
pub fn encode_index(chunks: &Chunks) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 6 * chunks.len());
    put_varint(&mut out, chunks.len() as u64);
    let mut prev = 0;
    for (id, b) in chunks {
        put_varint(&mut out, u64::from(id - prev));
        prev = *id;
        put_varint(&mut out, b.len() as u64);
        put_varint(&mut out, chunk::count(b).unwrap_or(0));
    }
    out
}

/// Reads an index (see the module docs).
pub fn parse_index(b: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    let mut at = 0;
    let n = get_varint(b, &mut at)?;
    // Each entry takes at least 3 bytes.
    if n > b.len() as u64 / 3 + 1 {
        return Err(damaged());
    }
    let mut out = Vec::with_capacity(n as usize);
    let (mut id, mut off) = (0u64, 0usize);
    for i in 0..n {
        let d = get_varint(b, &mut at)?;
        if i > 0 && d == 0 {
            return Err(damaged());
        }
        id = id.checked_add(d).ok_or_else(damaged)?;
        let len = usize::try_from(get_varint(b, &mut at)?).map_err(|_| damaged())?;
        let count = get_varint(b, &mut at)?;
        out.push(Entry {
            id: u32::try_from(id).map_err(|_| damaged())?,
            off,
            len,
            count,
        });
        off = off.checked_add(len).ok_or_else(damaged)?;
    }
    if at != b.len() {
        return Err(damaged());
    }
    Ok(out)
}

/// A tier's sealed blocks: pieces and index, of a read or a write
/// transaction.
pub struct Blocks<P, I> {
    pub pieces: P,
    pub index: I,
}

/// Reading a tier's sealed blocks.
pub trait Read {
    /// The oldest and newest block start.
    fn span(&self) -> Result<Option<(u64, u64)>, StoreError>;
    /// Block `start`'s index; a damaged one as an error.
    fn entries(&self, start: u64) -> Result<Option<Result<Vec<Entry>, DecodeError>>, StoreError>;
    /// `len` bytes at `off` of block `start`; `None` when pieces are
    /// missing or short.
    fn bytes(&self, start: u64, off: usize, len: usize) -> Result<Option<Vec<u8>>, StoreError>;
    /// Series `id`'s chunk of block `start`: `None` when it has none, an
    /// empty chunk (which does not decode) when the block is damaged.
    fn chunk(&self, start: u64, id: u32) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every chunk of block `start` (a damaged block reads as none).
    fn read(&self, start: u64) -> Result<Chunks, StoreError>;
    /// Entries (samples or buckets) in every block, and the chunks.
    fn count(&self) -> Result<(u64, u64), StoreError>;
}

impl<P, I> Read for Blocks<P, I>
where
    P: ReadableTable<ChunkKey, &'static [u8]> + ReadableTableMetadata,
    I: ReadableTable<u64, &'static [u8]> + ReadableTableMetadata,
{
    fn span(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let (Some(first), Some(last)) = (self.index.first()?, self.index.last()?) else {
            return Ok(None);
        };
        Ok(Some((first.0.value(), last.0.value())))
    }

    fn entries(&self, start: u64) -> Result<Option<Result<Vec<Entry>, DecodeError>>, StoreError> {
        Ok(self.index.get(start)?.map(|v| parse_index(v.value())))
    }

    /// `len` bytes at `off` of block `start`; `None` when pieces are
    /// missing or short.
    fn bytes(&self, start: u64, off: usize, len: usize) -> Result<Option<Vec<u8>>, StoreError> {
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let (Ok(first), Ok(last)) = (
            u32::try_from(off / PIECE),
            u32::try_from((off + len - 1) / PIECE),
        ) else {
            return Ok(None);
        };
        let mut buf = Vec::with_capacity(len + PIECE);
        let mut next = first;
        for row in self.pieces.range((start, first)..=(start, last))? {
            let (k, v) = row?;
            if k.value().1 != next {
                return Ok(None);
            }
            next = next.saturating_add(1);
            buf.extend_from_slice(v.value());
        }
        if next != last.saturating_add(1) {
            return Ok(None);
        }
        let skip = off - first as usize * PIECE;
        Ok(buf.get(skip..skip + len).map(<[u8]>::to_vec))
    }

    fn chunk(&self, start: u64, id: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(entries) = self.entries(start)? else {
            return Ok(None);
        };
        let Ok(entries) = entries else {
            return Ok(Some(Vec::new()));
        };
        let Ok(i) = entries.binary_search_by_key(&id, |e| e.id) else {
            return Ok(None);
        };
        let e = entries[i];
        Ok(Some(self.bytes(start, e.off, e.len)?.unwrap_or_default()))
    }

    fn read(&self, start: u64) -> Result<Chunks, StoreError> {
        let mut out = Chunks::new();
        let Some(Ok(entries)) = self.entries(start)? else {
            return Ok(out);
        };
        let total = entries.last().map_or(0, |e| e.off + e.len);
        let Some(blob) = self.bytes(start, 0, total)? else {
            return Ok(out);
        };
        for e in entries {
            out.insert(e.id, blob[e.off..e.off + e.len].to_vec());
        }
        Ok(out)
    }

    fn count(&self) -> Result<(u64, u64), StoreError> {
        let (mut n, mut chunks) = (0, 0);
        for row in self.index.iter()? {
            if let Ok(es) = parse_index(row?.1.value()) {
                chunks += es.len() as u64;
                n += es.iter().map(|e| e.count).sum::<u64>();
            }
        }
        Ok((n, chunks))
    }
}

/// The read-only tables of a tier's blocks.
pub type ReadOnly =
    Blocks<redb::ReadOnlyTable<ChunkKey, &'static [u8]>, redb::ReadOnlyTable<u64, &'static [u8]>>;

/// A tier's blocks in a read transaction.
pub fn open_read(rtx: &redb::ReadTransaction, tier: Tier) -> Result<ReadOnly, StoreError> {
    Ok(Blocks {
        pieces: rtx.open_table(tier.chunks())?,
        index: rtx.open_table(tier.index())?,
    })
}

/// The tables of a tier's blocks in a write transaction.
pub type Writable<'tx> =
    Blocks<Table<'tx, ChunkKey, &'static [u8]>, Table<'tx, u64, &'static [u8]>>;

/// A tier's blocks open for writing, with [`CHUNK_LAST`].
pub struct Writer<'tx> {
    tier: Tier,
    pub blocks: Writable<'tx>,
    last: Table<'tx, (u8, u32), u64>,
}

impl<'tx> Writer<'tx> {
    pub fn open(tx: &'tx WriteTransaction, tier: Tier) -> Result<Self, StoreError> {
        Ok(Writer {
            tier,
            blocks: Blocks {
                pieces: tx.open_table(tier.chunks())?,
                index: tx.open_table(tier.index())?,
            },
            last: tx.open_table(CHUNK_LAST)?,
        })
    }

    /// Stores block `start` as `chunks`, replacing what it held, and notes
    /// each series' newest block.
    pub fn write(&mut self, start: u64, chunks: &Chunks) -> Result<(), StoreError> {
        self.blocks
            .pieces
            .retain_in((start, 0)..=(start, u32::MAX), |_, _| false)?;
        self.blocks.index.remove(start)?;
        if chunks.is_empty() {
            return Ok(());
        }
        let blob: Vec<u8> = chunks.values().flatten().copied().collect();
        for (k, piece) in blob.chunks(PIECE).enumerate() {
            // A block of 2^32 pieces (16 TiB) cannot be.
            self.blocks.pieces.insert((start, k as u32), piece)?;
        }
        self.blocks
            .index
            .insert(start, encode_index(chunks).as_slice())?;
        for id in chunks.keys() {
            let key = (self.tier as u8, *id);
            let newest = self.last.get(key)?.map(|v| v.value());
            if newest.is_none_or(|n| n < start) {
                self.last.insert(key, start)?;
            }
        }
        Ok(())
    }

    /// Deletes every block starting before `before`; returns the entries
    /// they held.
    pub fn delete_before(&mut self, before: u64) -> Result<u64, StoreError> {
        let mut n = 0;
        for row in self.blocks.index.extract_from_if(..before, |_, _| true)? {
            if let Ok(es) = parse_index(row?.1.value()) {
                n += es.iter().map(|e| e.count).sum::<u64>();
            }
        }
        self.blocks.pieces.retain_in(..(before, 0), |_, _| false)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_round_trips_and_damage_is_refused() {
        let mut c = Chunks::new();
        c.insert(3, vec![1; 10]);
        c.insert(9, vec![]);
        c.insert(700_000, vec![2; 5000]);
        let b = encode_index(&c);
        let es = parse_index(&b).unwrap();
        assert_eq!(
            es.iter().map(|e| (e.id, e.off, e.len)).collect::<Vec<_>>(),
            [(3, 0, 10), (9, 10, 0), (700_000, 10, 5000)]
        );
        assert!(parse_index(&b[..b.len() - 1]).is_err());
        assert!(parse_index(&[200, 200, 200, 1]).is_err());
        assert!(parse_index(&[2, 1, 0, 0, 0, 0, 0]).is_err(), "ids repeat");
        assert_eq!(parse_index(&[0]).unwrap(), []);
    }
}
