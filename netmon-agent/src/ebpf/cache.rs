//! The flow cache's memory-mapped arrays and its control entries.

use std::{
    io,
    marker::PhantomData,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    ptr::NonNull,
};

use aya::{Ebpf, maps::MapData};
use netmon_common::{
    CACHE_HEADERS_MAP, CACHE_INDEX_MAP, CONTROL_MAP, CacheLayout, CacheSlot, FLOW_CACHE_MAP,
    IndexLine, MIN_INDEX_LINES,
};

/// Index lines a half starts with (32,768 entries, 256 KiB).
const INITIAL_INDEX_LINES: u32 = 4096;

/// The flow cache's arrays. The headers stay memory-mapped; the slots
/// and the index are mapped only for a drain, and only the ranges the
/// finished half used: mapping a `BPF_F_MMAPABLE` array maps every page
/// of it at once (`remap_vmalloc_range`), so a whole 64 MiB cache mapped
/// for the agent's life would count in its RSS. (Read and written by the
/// agent only in a half no program uses; see [`Kernel::read_cache`].)
pub(super) struct CacheMap {
    slots: Array<CacheSlot>,
    index: Array<IndexLine>,
    headers: Window<u64>,
    /// Flow slots per half.
    pub(super) half: u32,
    /// Index lines each half uses in its current (or next) generation.
    pub(super) lines: [u32; 2],
}

impl CacheMap {
    /// Opens the object's flow cache and index and maps its headers, sized
    /// for `ncpus` CPUs of `half` flow slots per half.
    pub(super) fn map(ebpf: &Ebpf, ncpus: usize, half: u32) -> io::Result<CacheMap> {
        let regions = ncpus * 2;
        let lines = INITIAL_INDEX_LINES.min(CacheLayout::index_lines(half));
        let headers = Array::open(
            ebpf,
            CACHE_HEADERS_MAP,
            regions * CacheLayout::HEADER as usize,
        )?;
        Ok(CacheMap {
            slots: Array::open(
                ebpf,
                FLOW_CACHE_MAP,
                regions * CacheLayout::slots(half) as usize,
            )?,
            index: Array::open(
                ebpf,
                CACHE_INDEX_MAP,
                regions * CacheLayout::index_lines(half) as usize,
            )?,
            headers: headers.window(0, regions * CacheLayout::HEADER as usize)?,
            half,
            lines: [lines; 2],
        })
    }

    /// Calls `f` with each slot that `region` (CPU * 2 + `half`) claimed,
    /// then frees it (zeroes it), the index lines the half used and its
    /// header. Returns the flow slots it had claimed and the frames that
    /// found none. The caller guarantees no program writes the region
    /// meanwhile. On an error (mapping a range failed) nothing was zeroed.
    pub(super) fn drain(
        &mut self,
        region: usize,
        half: usize,
        mut f: impl FnMut(&CacheSlot),
    ) -> io::Result<(u64, u64)> {
        let flow_slots = self.half as usize;
        let first_slot = region * CacheLayout::slots(self.half) as usize;
        let header = region * CacheLayout::HEADER as usize;
        let word = |w: u32| header + w as usize;
        // The programs never claim more than the region holds; the bounds
        // keep damaged headers from reaching past it.
        let flows = (self.headers.read(word(CacheLayout::COUNT)) as usize).min(flow_slots);
        let aggregates = (self.headers.read(word(CacheLayout::AGGREGATES)) as usize)
            .min(CacheLayout::slots(0) as usize);
        let missed = self.headers.read(word(CacheLayout::MISSES));
        // Index entries are written only with a claim: a half that claimed
        // nothing has nothing to read or clear but its header.
        if flows + aggregates != 0 {
            let first_line = region * CacheLayout::index_lines(self.half) as usize;
            // Every range is mapped before anything is zeroed.
            let mut index = self.index.window(first_line, self.lines[half] as usize)?;
            let mut ranges = Vec::with_capacity(2);
            for (first, n) in [(0, flows), (flow_slots, aggregates)] {
                if n != 0 {
                    ranges.push(self.slots.window(first_slot + first, n)?);
                }
            }
            for slots in &mut ranges {
                for i in 0..slots.len {
                    let slot = slots.read(i);
                    if slot.key.ifindex != 0 {
                        f(&slot);
                        slots.write(i, CacheSlot::default());
                    }
                }
            }
            for i in 0..index.len {
                index.write(i, IndexLine::default());
            }
        }
        for w in [
            CacheLayout::COUNT,
            CacheLayout::INSERTS,
            CacheLayout::AGGREGATES,
            CacheLayout::MISSES,
        ] {
            self.headers.write(word(w), 0);
        }
        Ok((flows as u64, missed))
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

/// A `BPF_F_MMAPABLE` array of `len` elements of `T`, through its own
/// file descriptor.
struct Array<T> {
    fd: OwnedFd,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Copy> Array<T> {
    /// The object's array `name` of (at least) `len` elements.
    fn open(ebpf: &Ebpf, name: &str, len: usize) -> io::Result<Array<T>> {
        let map = ebpf
            .map(name)
            .expect("the flow cache's arrays are in the object");
        let aya::maps::Map::Array(data) = map else {
            unreachable!("{name} is an array")
        };
        Ok(Array {
            fd: data.fd().as_fd().try_clone_to_owned()?,
            len,
            _t: PhantomData,
        })
    }

    /// Maps elements `first..first + len` (with the rest of their pages).
    fn window(&self, first: usize, len: usize) -> io::Result<Window<T>> {
        assert!(first + len <= self.len, "{first} + {len} of {}", self.len);
        // SAFETY: sysconf reads a constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let size = size_of::<T>();
        let start = first * size / page * page;
        let end = ((first + len) * size).div_ceil(page) * page;
        let offset = libc::off_t::try_from(start)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: mapping pages of a BPF_F_MMAPABLE array's fd, shared,
        // within its size (the kernel refuses more); the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                end - start,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(p.cast::<u8>()).expect("mmap never maps at 0");
        // SAFETY: `first`'s offset lies inside the mapping (elements never
        // straddle pages: sizes here divide the page size).
        let base = unsafe { NonNull::new_unchecked(p.cast::<u8>().add(first * size - start)) };
        Ok(Window {
            map,
            bytes: end - start,
            base: base.cast(),
            len,
        })
    }
}

/// A mapped run of elements of a `BPF_F_MMAPABLE` array, unmapped when
/// dropped.
struct Window<T> {
    map: NonNull<u8>,
    bytes: usize,
    base: NonNull<T>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; access
// goes through `&mut self` or copies.
unsafe impl<T> Send for Window<T> {}

impl<T: Copy> Window<T> {
    fn read(&self, i: usize) -> T {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: in bounds (asserted) of the mapped elements.
        // Volatile: the kernel's programs write this memory.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(i)) }
    }

    fn write(&mut self, i: usize, value: T) {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_volatile(self.base.as_ptr().add(i), value) }
    }
}

impl<T> Drop for Window<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `Array::window` mapped.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.bytes);
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
    let mut control: aya::maps::Array<&mut MapData, u32> =
        aya::maps::Array::try_from(ebpf.map_mut(CONTROL_MAP).expect("CONTROL is in the object"))?;
    control.set(index, &value, 0)
}
