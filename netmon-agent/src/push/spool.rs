//! A bounded first-in, first-out queue of request bodies on disk: one file
//! per body, named by a sequence number, in one directory per receiver.
//!
//! A body is written to `<seq>.tmp`, synced and renamed to `<seq>.body`,
//! so a crash leaves either the whole body or nothing (stray `.tmp` files
//! are removed when the spool opens). Opening an existing directory
//! resumes its bodies in order, so bodies queued before a restart are
//! still delivered. When a new body would take the spool past its size
//! limit, the oldest bodies are deleted first and counted as dropped.

use std::{
    collections::VecDeque,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

/// One queued body: its sequence number and size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
    next: u64,
}

/// What [`Spool::push`] did to make room.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Older bodies deleted to make room for this one.
    pub dropped: u64,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`, keeping at most
    /// `max_bytes` of bodies; what is already there is queued in order.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut entries = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A body whose write a crash interrupted.
                let _ = fs::remove_file(item.path());
                continue;
            }
            let Some(seq) = name.strip_suffix(".body").and_then(|s| s.parse().ok()) else {
                continue;
            };
            entries.push(Entry {
                seq,
                bytes: item.metadata()?.len(),
            });
        }
        entries.sort_by_key(|e| e.seq);
        let next = entries.last().map_or(0, |e| e.seq + 1);
        let bytes = entries.iter().map(|e| e.bytes).sum();
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            entries: entries.into(),
            bytes,
            next,
        })
    }

    fn path(&self, seq: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}.{ext}"))
    }

    /// Queues `body` at the back, dropping the oldest bodies while it
    /// would not fit. A body larger than the whole spool is refused with
    /// an error (nothing is dropped for it).
    pub fn push(&mut self, body: &[u8]) -> io::Result<Pushed> {
        let size = body.len() as u64;
        if size > self.max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a body of {size} bytes is larger than the whole queue ({} bytes)",
                    self.max_bytes
                ),
            ));
        }
        let mut pushed = Pushed::default();
        while self.bytes + size > self.max_bytes {
            self.pop()?;
            pushed.dropped += 1;
        }
        let seq = self.next;
        let tmp = self.path(seq, "tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(body)?;
        file.sync_data()?;
        drop(file);
        fs::rename(&tmp, self.path(seq, "body"))?;
        self.next += 1;
        self.entries.push_back(Entry { seq, bytes: size });
        self.bytes += size;
        Ok(pushed)
    }

    /// The oldest body, without removing it.
    pub fn front(&self) -> io::Result<Option<(Entry, Vec<u8>)>> {
        match self.entries.front() {
            None => Ok(None),
            Some(e) => Ok(Some((*e, fs::read(self.path(e.seq, "body"))?))),
        }
    }

    /// The oldest body's entry.
    pub fn first(&self) -> Option<Entry> {
        self.entries.front().copied()
    }

    /// Removes the oldest body.
    pub fn pop(&mut self) -> io::Result<()> {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.bytes;
            match fs::remove_file(self.path(e.seq, "body")) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(spool: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((_, body)) = spool.front().unwrap() {
            out.push(body);
            spool.pop().unwrap();
        }
        out
    }

    #[test]
    fn bodies_come_out_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..12u8 {
            assert_eq!(spool.push(&[i; 10]).unwrap(), Pushed::default());
        }
        assert_eq!((spool.len(), spool.bytes()), (12, 120));
        spool.pop().unwrap();
        drop(spool);
        // A crash in the middle of a write leaves a .tmp: ignored, removed.
        fs::write(dir.path().join(format!("{:020}.tmp", 12)), b"half").unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((spool.len(), spool.bytes()), (11, 110));
        spool.push(b"new").unwrap();
        let got = bodies(&mut spool);
        let mut want: Vec<Vec<u8>> = (1..12u8).map(|i| vec![i; 10]).collect();
        want.push(b"new".to_vec());
        assert_eq!(got, want);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 35).unwrap();
        for i in 0..3u8 {
            spool.push(&[i; 10]).unwrap();
        }
        // 30 + 10 > 35: one goes; 20 + 25 > 35: two more go.
        assert_eq!(spool.push(&[3; 10]).unwrap(), Pushed { dropped: 1 });
        assert_eq!(spool.push(&[4; 25]).unwrap(), Pushed { dropped: 2 });
        assert_eq!(spool.bytes(), 35);
        assert!(spool.push(&[5; 36]).is_err());
        assert_eq!(bodies(&mut spool), vec![vec![3; 10], vec![4; 25]]);
    }

    #[test]
    fn a_spool_in_an_unwritable_place_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(Spool::open(&file.join("spool"), 100).is_err());
    }
}
