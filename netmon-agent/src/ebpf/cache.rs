//! The flow cache's memory-mapped arrays and its control entries.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use netmon_common::{
    CACHE_HEADERS_MAP, CACHE_INDEX_MAP, CONTROL_MAP, CacheLayout, CacheSlot, FLOW_CACHE_MAP,
    IndexLine, MIN_INDEX_LINES,
};

/// Index lines a half starts with (32,768 entries, 256 KiB).
const INITIAL_INDEX_LINES: u32 = 4096;

/// The flow cache's arrays, memory-mapped (read and written by the agent
/// only in a half no program uses; see [`Kernel::read_cache`]).
pub(super) struct CacheMap {
    slots: Mapped<CacheSlot>,
    index: Mapped<IndexLine>,
    headers: Mapped<u64>,
    /// Flow slots per half.
    pub(super) half: u32,
    /// Index lines each half uses in its current (or next) generation.
    pub(super) lines: [u32; 2],
}

impl CacheMap {
    /// Maps the object's flow cache, index and headers, sized for `ncpus`
    /// CPUs of `half` flow slots per half.
    pub(super) fn map(ebpf: &Ebpf, ncpus: usize, half: u32) -> io::Result<CacheMap> {
        let regions = ncpus * 2;
        let lines = INITIAL_INDEX_LINES.min(CacheLayout::index_lines(half));
        Ok(CacheMap {
            slots: Mapped::map(
                ebpf,
                FLOW_CACHE_MAP,
                regions * CacheLayout::slots(half) as usize,
            )?,
            index: Mapped::map(
                ebpf,
                CACHE_INDEX_MAP,
                regions * CacheLayout::index_lines(half) as usize,
            )?,
            headers: Mapped::map(
                ebpf,
                CACHE_HEADERS_MAP,
                regions * CacheLayout::HEADER as usize,
            )?,
            half,
            lines: [lines; 2],
        })
    }

    /// Calls `f` with each slot that `region` (CPU * 2 + `half`) claimed,
    /// then frees it (zeroes it), the index lines the half used and its
    /// header. Returns the flow slots it had claimed and the frames that
    /// found none. The caller guarantees no program writes the region
    /// meanwhile.
    pub(super) fn drain(
        &mut self,
        region: usize,
        half: usize,
        mut f: impl FnMut(&CacheSlot),
    ) -> (u64, u64) {
        let flow_slots = self.half as usize;
        let first_slot = region * CacheLayout::slots(self.half) as usize;
        let header = region * CacheLayout::HEADER as usize;
        let word = |w: u32| header + w as usize;
        // The programs never claim more than the region holds; the bounds
        // keep damaged headers from reaching past it.
        let flows = (self.headers.read(word(CacheLayout::COUNT)) as usize).min(flow_slots);
        let aggregates = (self.headers.read(word(CacheLayout::AGGREGATES)) as usize)
            .min(CacheLayout::slots(0) as usize);
        for i in (0..flows).chain(flow_slots..flow_slots + aggregates) {
            let slot = self.slots.read(first_slot + i);
            if slot.key.ifindex != 0 {
                f(&slot);
                self.slots.write(first_slot + i, CacheSlot::default());
            }
        }
        let first_line = region * CacheLayout::index_lines(self.half) as usize;
        for i in 0..self.lines[half] as usize {
            self.index.write(first_line + i, IndexLine::default());
        }
        let missed = self.headers.read(word(CacheLayout::MISSES));
        for w in [
            CacheLayout::COUNT,
            CacheLayout::INSERTS,
            CacheLayout::AGGREGATES,
            CacheLayout::MISSES,
        ] {
            self.headers.write(word(w), 0);
        }
        (flows as u64, missed)
    }

    /// The index lines for a half's next generation, given the most flow
    /// slots a CPU claimed in it and whether frames found none: four
    /// entries a flow, so the index is a quarter full and an eight-entry
    /// line rarely fills; sixteen times as many lines after misses (a
    /// burst of flows is indexed within a few intervals); shrinking by half
    /// at most per generation. A small index keeps what a frame touches in
    /// few pages.
    pub(super) fn next_lines(&self, half: usize, claimed: u64, missed: bool) -> u32 {
        next_index_lines(
            self.lines[half],
            claimed,
            missed,
            CacheLayout::index_lines(self.half),
        )
    }
}

/// [`CacheMap::next_lines`] for a half that used `lines` of at most `most`.
pub(super) fn next_index_lines(lines: u32, claimed: u64, missed: bool, most: u32) -> u32 {
    let lines = u64::from(lines);
    let fit = (claimed / 2).max(lines / 2);
    let want = if missed { fit.max(lines * 16) } else { fit };
    let most = u64::from(most);
    want.clamp(u64::from(MIN_INDEX_LINES).min(most), most) as u32
}

/// A memory-mapped `BPF_F_MMAPABLE` array of `T`.
struct Mapped<T> {
    base: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; access
// goes through `&mut self` or copies.
unsafe impl<T> Send for Mapped<T> {}

impl<T: Copy> Mapped<T> {
    /// Maps the first `len` elements of the object's array `name`.
    fn map(ebpf: &Ebpf, name: &str, len: usize) -> io::Result<Mapped<T>> {
        let map = ebpf
            .map(name)
            .expect("the flow cache's arrays are in the object");
        let aya::maps::Map::Array(data) = map else {
            unreachable!("{name} is an array")
        };
        let bytes = len * std::mem::size_of::<T>();
        // SAFETY: mapping a BPF_F_MMAPABLE array's fd, shared, for at most
        // its size (the kernel refuses more); the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(p.cast::<T>()).expect("mmap never maps at 0");
        Ok(Mapped { base, len })
    }

    fn read(&self, i: usize) -> T {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: in bounds (asserted) of a page-aligned mapping of `T`s.
        // Volatile: the kernel's programs write this memory.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(i)) }
    }

    fn write(&mut self, i: usize, value: T) {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_volatile(self.base.as_ptr().add(i), value) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe {
            libc::munmap(
                self.base.as_ptr().cast(),
                self.len * std::mem::size_of::<T>(),
            );
        }
    }
}

/// Sets entry `index` of the flow cache's control array: 0 the generation
/// (0 turns the cache off), 1 + h the index lines half h uses.
pub(super) fn set_control(
    ebpf: &mut Ebpf,
    index: u32,
    value: u32,
) -> Result<(), aya::maps::MapError> {
    let mut control: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(CONTROL_MAP).expect("CONTROL is in the object"))?;
    control.set(index, &value, 0)
}
