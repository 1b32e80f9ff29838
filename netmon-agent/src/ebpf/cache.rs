//! The flow cache's memory-mapped arrays and its control entries.

use std::{
    io,
    marker::PhantomData,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    ptr::NonNull,
};

use aya::{Ebpf, maps::MapData};
use netmon_common::{
    CACHE_CLAIMS_MAP, CACHE_HEADERS_MAP, CONTROL_MAP, CacheLayout, CacheSlot, FLOW_CACHE_MAP,
    FlowKey, MIN_TABLE_SLOTS,
};

/// Table slots a half starts with (16,384 flows at a quarter full, 32,768
/// at the claim limit, as the index before it held; 4 MiB, of which a few
/// flows touch a few pages).
const INITIAL_TABLE_SLOTS: u32 = 65_536;
/// Slots the agent maps at a time while it reads a half (1 MiB).
const WINDOW_SLOTS: usize = 16_384;
/// Table slots per flow a half held: the table is half full, so most
/// frames find their flow's slot in the first line they touch (1.5 lines
/// on average) while the flows' lines and pages are half as many as at a
/// quarter full.
const SLOTS_PER_FLOW: u64 = 2;
/// The table of a half whose claims were mostly keys seen once (a
/// random-source flood): 64 KiB, whose lines stay in the CPU's caches, so
/// a flood's new key probes hot lines to a free slot or the claim limit
/// and goes to its MAC pair's aggregate, instead of probing lines of a
/// table grown to the whole budget.
const FLOOD_TABLE_SLOTS: u64 = 1024;
/// Bits of each generation's key fingerprints (256 KiB).
const SEEN_BITS: usize = 1 << 21;

/// The flow cache's arrays. The headers stay memory-mapped; the slots
/// and the claim lists are mapped only for a drain, and only the ranges
/// the finished half claimed, a megabyte of slots at a time: mapping a
/// `BPF_F_MMAPABLE` array maps every page of it at once
/// (`remap_vmalloc_range`), so a whole 64 MiB cache mapped for the
/// agent's life would count in its RSS. (Read and written by the agent
/// only in a half no program uses; see [`Kernel::read_cache`].)
pub(super) struct CacheMap {
    slots: Array<CacheSlot>,
    /// `u32` entries, each in 8 bytes (a BPF array's elements are 8-byte
    /// aligned; the upper half is padding, zero).
    claims: Array<u64>,
    headers: Window<u64>,
    /// Flow slots per half.
    pub(super) half: u32,
    /// Table slots each half uses in its current (or next) generation.
    pub(super) table: [u32; 2],
    /// The slots the region being read claimed, as listed, then in
    /// order, and a bit per slot of the region for the sort (buffers kept
    /// between drains).
    claimed: Vec<u32>,
    grouped: Vec<u32>,
    bits: Vec<u64>,
    /// What the halves read since the last sizing held, for the next.
    tally: Tally,
    /// The keys of the generation read before the current one and of the
    /// current one (fingerprints), to tell flows that repeat from keys
    /// seen once.
    seen: [Vec<u64>; 2],
    /// Whether frames found no slot in the generation read last: the
    /// halves of the one being read note their keys then, and those
    /// whose own frames found none (a table may have to grow), so a
    /// steady drain pays nothing for them.
    missed_before: bool,
    /// Whether `seen[0]` holds keys of the generation before (of the
    /// halves that noted theirs).
    noted: bool,
    /// Whether some half read since the last sizing noted its keys.
    noted_any: bool,
}

/// What one generation's halves held, for the sizing of their tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Some CPU's half claimed as many slots as it could.
    pub full: bool,
    /// The most slots a CPU's half claimed for flows that repeat: more
    /// than one frame in the generation, or a key the generation before
    /// held too.
    pub repeating: u64,
    /// Whether the generation before noted its keys (otherwise
    /// `repeating` counts only slots of more than one frame).
    pub known: bool,
}

impl CacheMap {
    /// Opens the object's flow cache and claim lists and maps its headers, sized
    /// for `ncpus` CPUs of `half` flow slots per half.
    pub(super) fn map(ebpf: &Ebpf, ncpus: usize, half: u32) -> io::Result<CacheMap> {
        let regions = ncpus * 2;
        let table = INITIAL_TABLE_SLOTS.min(half);
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
            claims: Array::open(
                ebpf,
                CACHE_CLAIMS_MAP,
                regions * CacheLayout::slots(half) as usize,
            )?,
            headers: headers.window(0, regions * CacheLayout::HEADER as usize)?,
            half,
            table: [table; 2],
            claimed: Vec::new(),
            grouped: Vec::new(),
            bits: Vec::new(),
            tally: Tally::default(),
            seen: [vec![0; SEEN_BITS / 64], vec![0; SEEN_BITS / 64]],
            missed_before: true,
            noted: false,
            noted_any: false,
        })
    }

    /// Calls `f` with each slot that `region` (CPU * 2 + a half) claimed,
    /// then frees it (zeroes it) and the half's header. Returns the flow
    /// slots it had claimed and the frames that found none. The caller
    /// guarantees no program writes the region meanwhile. On an error
    /// (mapping a range failed) the region is left as it is, part read.
    pub(super) fn drain(
        &mut self,
        region: usize,
        mut f: impl FnMut(&CacheSlot),
    ) -> io::Result<(u64, u64)> {
        let flow_slots = self.half as usize;
        let region_slots = CacheLayout::slots(self.half) as usize;
        let first_slot = region * region_slots;
        let header = region * CacheLayout::HEADER as usize;
        let word = |w: u32| header + w as usize;
        // The programs never claim more than the region holds; the bounds
        // keep damaged headers from reaching past it.
        let flows = (self.headers.read(word(CacheLayout::COUNT)) as usize).min(flow_slots);
        let aggregates = (self.headers.read(word(CacheLayout::AGGREGATES)) as usize)
            .min(CacheLayout::slots(0) as usize);
        let missed = self.headers.read(word(CacheLayout::MISSES));
        let noting = self.missed_before || missed != 0;
        self.noted_any |= noting;
        self.claimed.clear();
        for (first, n) in [(0, flows), (flow_slots, aggregates)] {
            if n == 0 {
                continue;
            }
            let claims = self.claims.window(first_slot + first, n)?;
            for i in 0..n {
                let slot = claims.read(i) as u32 as usize;
                // A damaged entry cannot reach past the region.
                if slot < region_slots {
                    self.claimed.push(slot as u32);
                }
            }
        }
        sort_slots(
            &mut self.claimed,
            &mut self.bits,
            region_slots,
            &mut self.grouped,
        );
        let mut repeating = 0;
        let seen = &mut self.seen;
        let mut each = |slot: &CacheSlot| {
            repeating += u64::from(if noting {
                note_seen(seen, slot)
            } else {
                slot.packets > 1
            });
            f(slot);
        };
        let mut rest = &self.grouped[..];
        while let Some(&first) = rest.first() {
            let start = first as usize / WINDOW_SLOTS * WINDOW_SLOTS;
            let end = (start + WINDOW_SLOTS).min(region_slots);
            let n = rest.partition_point(|&i| (i as usize) < end);
            let (group, after) = rest.split_at(n);
            rest = after;
            let mut slots = self.slots.window(first_slot + start, end - start)?;
            read_window(&mut slots, start, group, &mut each);
        }
        for w in [
            CacheLayout::COUNT,
            CacheLayout::INSERTS,
            CacheLayout::AGGREGATES,
            CacheLayout::MISSES,
        ] {
            self.headers.write(word(w), 0);
        }
        let room = room(self.table[region & 1]) as usize;
        self.tally.full |= flows >= room;
        self.tally.repeating = self.tally.repeating.max(repeating);
        Ok((flows as u64, missed))
    }

    /// The table slots and the claim limit for a half's next generation,
    /// given the most flow slots a CPU claimed in it and whether frames
    /// found none (see [`next_table_slots`]). Starts the next tally.
    pub(super) fn next_table(&mut self, half: usize, claimed: u64, missed: bool) -> (u32, u32) {
        let mut tally = std::mem::take(&mut self.tally);
        tally.known = self.noted;
        self.noted = self.noted_any;
        if self.noted_any {
            let [before, now] = &mut self.seen;
            std::mem::swap(before, now);
            now.fill(0);
        }
        self.noted_any = false;
        self.missed_before = missed;
        let table = next_table_slots(self.table[half], claimed, missed, tally, self.half);
        (table, room(table))
    }
}

/// The flow slots a generation may claim in a table of `table` slots:
/// three quarters (a small table whole), so the flows it was sized for
/// (half the table) may grow by half before their claims run out, and a
/// new key's probes (linear, up to 16) rarely meet 16 taken slots.
pub(super) fn room(table: u32) -> u32 {
    if table <= MIN_TABLE_SLOTS {
        table
    } else {
        table - table / 4
    }
}

/// Puts the distinct slot indexes of `claimed` (each below `slots`) in
/// `sorted`, in increasing order: a bit per slot of the region, set for
/// each claim, then read from one end to the other (a few thousand words
/// for a full region), which costs less than a comparison sort of 100,000
/// indexes. A slot listed twice (which the programs never do) is read once.
/// `bits` is left all zero for the next call.
fn sort_slots(claimed: &mut Vec<u32>, bits: &mut Vec<u64>, slots: usize, sorted: &mut Vec<u32>) {
    bits.resize(slots.div_ceil(64), 0);
    for &i in claimed.iter() {
        bits[i as usize / 64] |= 1 << (i % 64);
    }
    sorted.clear();
    for (w, word) in bits.iter_mut().enumerate() {
        let mut b = std::mem::take(word);
        while b != 0 {
            sorted.push((w * 64) as u32 + b.trailing_zeros());
            b &= b - 1;
        }
    }
    claimed.clear();
}

/// How many slots ahead of the one read [`read_window`] asks the CPU to
/// load: a drain's claimed slots are spread over megabytes, and each read
/// waits on memory unless several loads are in flight at once.
const AHEAD: usize = 8;

/// Calls `f` with each slot of `group` (increasing indexes within the
/// window mapped at slot `start`) that holds a key, and zeroes it.
fn read_window(
    slots: &mut Window<CacheSlot>,
    start: usize,
    group: &[u32],
    f: &mut impl FnMut(&CacheSlot),
) {
    for (j, &i) in group.iter().enumerate() {
        if let Some(&next) = group.get(j + AHEAD) {
            slots.prefetch(next as usize - start);
        }
        let slot = slots.read(i as usize - start);
        if slot.key.ifindex != 0 {
            f(&slot);
            slots.write(i as usize - start, CacheSlot::default());
        }
    }
}

/// [`CacheMap::next_table`] for a half that used `table` slots of at most
/// `most`: two slots per flow it held ([`SLOTS_PER_FLOW`]), shrinking by
/// half at most per generation, not shrinking after frames found no slot.
/// When the claims ran out (`tally.full`) and at least half the claimed
/// slots held flows that repeat, sixteen times as many slots (a burst of
/// flows is held within a few intervals, and few of them go to the flow
/// map meanwhile); when fewer did, eight slots per flow that repeated,
/// never more for keys seen once: a random-source flood keeps a small
/// table ([`FLOOD_TABLE_SLOTS`]) and its frames go to their MAC pair's
/// aggregate (a half whose generation before did not note its keys
/// grows: the next generations tell). A small table keeps what the
/// frames touch in few pages.
pub(super) fn next_table_slots(
    table: u32,
    claimed: u64,
    missed: bool,
    tally: Tally,
    most: u32,
) -> u32 {
    let table = u64::from(table);
    let fit = claimed * SLOTS_PER_FLOW;
    let want = if missed && tally.full {
        // Where the generation before did not note its keys, which keys
        // repeat is unknown: grow, and the next generations will tell.
        if tally.repeating * 2 >= claimed || !tally.known {
            fit.max(table * 16)
        } else {
            (tally.repeating * 4 * SLOTS_PER_FLOW).max(FLOOD_TABLE_SLOTS)
        }
    } else if missed {
        fit.max(table)
    } else {
        fit.max(table / 2)
    };
    let most = u64::from(most);
    want.clamp(u64::from(MIN_TABLE_SLOTS).min(most), most) as u32
}

/// Notes the slot's key as seen in this generation (`seen[1]`); whether
/// it repeats: more than one frame, or seen in the generation before
/// (`seen[0]`; a fingerprint, so a key seen once may pass for one that
/// repeats: about one in ten when 200,000 keys were seen).
fn note_seen(seen: &mut [Vec<u64>; 2], slot: &CacheSlot) -> bool {
    let bit = fingerprint(&slot.key) as usize % SEEN_BITS;
    let (word, mask) = (bit / 64, 1u64 << (bit % 64));
    seen[1][word] |= mask;
    slot.packets > 1 || seen[0][word] & mask != 0
}

/// A fingerprint of a flow key: its addresses' last eight bytes (all of
/// an IPv4 address), interface, direction, protocol and MACs, mixed.
fn fingerprint(key: &FlowKey) -> u64 {
    let word = |b: &[u8]| {
        let mut w = [0; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let h = word(&key.src[8..]).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ word(&key.dst[8..]).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ word(&key.src_mac).wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ word(&key.dst_mac).wrapping_mul(0x85eb_ca77_c2b2_ae63)
        ^ (u64::from(key.ifindex) | u64::from(key.direction) << 32 | u64::from(key.proto) << 40)
            .wrapping_mul(0x27d4_eb2f_1656_67c5);
    h ^ (h >> 29) ^ (h >> 43)
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

    /// Asks the CPU to load element `i`'s cache line (it is to be read
    /// and written soon).
    fn prefetch(&self, i: usize) {
        if i < self.len {
            crate::lru::prefetch(self.base.as_ptr().wrapping_add(i).cast());
        }
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
/// (0 turns the cache off), 1 + h the table slots half h uses.
pub(super) fn set_control(
    ebpf: &mut Ebpf,
    index: u32,
    value: u32,
) -> Result<(), aya::maps::MapError> {
    let mut control: aya::maps::Array<&mut MapData, u32> =
        aya::maps::Array::try_from(ebpf.map_mut(CONTROL_MAP).expect("CONTROL is in the object"))?;
    control.set(index, &value, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_slots_come_out_sorted_once_each_and_the_bits_cleared() {
        let (mut claimed, mut bits, mut sorted) =
            (vec![700, 3, 64, 63, 0, 129, 3], Vec::new(), Vec::new());
        sort_slots(&mut claimed, &mut bits, 701, &mut sorted);
        assert_eq!(sorted, [0, 3, 63, 64, 129, 700]);
        assert!(claimed.is_empty());
        assert_eq!(bits.len(), 11);
        assert!(bits.iter().all(|&w| w == 0));
        // Buffers reused: nothing of the last call remains.
        claimed.extend([5, 1]);
        sort_slots(&mut claimed, &mut bits, 701, &mut sorted);
        assert_eq!(sorted, [1, 5]);
    }

    const MOST: u32 = 233_000;

    fn tally(full: bool, repeating: u64) -> Tally {
        Tally {
            full,
            repeating,
            known: true,
        }
    }

    #[test]
    fn a_table_holds_two_slots_per_flow_and_shrinks_by_half_at_most() {
        assert_eq!(
            next_table_slots(65_536, 10_000, false, tally(false, 0), MOST),
            32_768
        );
        assert_eq!(
            next_table_slots(32_768, 10_000, false, tally(false, 0), MOST),
            20_000
        );
        assert_eq!(
            next_table_slots(20_000, 10_000, false, tally(false, 0), MOST),
            20_000
        );
        // A few keys past their sixteenth slot: the table keeps its size.
        assert_eq!(
            next_table_slots(20_000, 9_000, true, tally(false, 0), MOST),
            20_000
        );
        assert_eq!(
            next_table_slots(20_000, 11_000, true, tally(false, 0), MOST),
            22_000
        );
        assert_eq!(next_table_slots(128, 0, false, tally(false, 0), MOST), 64);
        assert_eq!(next_table_slots(64, 0, false, tally(false, 0), 32), 32);
    }

    #[test]
    fn repeating_flows_that_ran_out_of_claims_grow_the_table() {
        // 49,152 claims (the limit of 65,536), all of flows that repeat.
        let t = next_table_slots(65_536, 49_152, true, tally(true, 49_152), MOST);
        assert_eq!(t, MOST);
        let t = next_table_slots(2_000, 1_500, true, tally(true, 1_500), MOST);
        assert_eq!(t, 32_000);
        // Half of them repeat: still a burst of flows.
        let t = next_table_slots(2_000, 1_500, true, tally(true, 750), MOST);
        assert_eq!(t, 32_000);
    }

    #[test]
    fn a_flood_of_keys_seen_once_keeps_a_small_table() {
        let t = next_table_slots(MOST, 174_750, true, tally(true, 0), MOST);
        assert_eq!(u64::from(t), FLOOD_TABLE_SLOTS);
        // A few hundred flows that repeat beside it keep room.
        let t = next_table_slots(1024, 768, true, tally(true, 300), MOST);
        assert_eq!(t, 2_400);
        let t = next_table_slots(2_400, 1_800, true, tally(true, 300), MOST);
        assert_eq!(t, 2_400);
        // Keys of one frame after a steady generation, which noted none:
        // the table grows until the next generations tell.
        let unknown = Tally {
            known: false,
            ..tally(true, 0)
        };
        assert_eq!(next_table_slots(2_000, 1_500, true, unknown, MOST), 32_000);
    }

    #[test]
    fn the_claim_limit_is_three_quarters_of_a_table_or_a_small_table_whole() {
        assert_eq!(room(20_000), 15_000);
        assert_eq!(room(64), 64);
        assert_eq!(room(32), 32);
        assert_eq!(room(1024), 768);
    }

    #[test]
    fn fingerprints_tell_keys_apart() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            let mut key = FlowKey {
                ifindex: 2,
                proto: 17,
                ..FlowKey::default()
            };
            key.src = netmon_common::v4_mapped((0x0a40_0000 + i).to_be_bytes());
            key.dst = netmon_common::v4_mapped([10, 0, 0, 2]);
            seen.insert(fingerprint(&key) as usize % SEEN_BITS);
        }
        // Distinct bits for nearly every key (a uniform hash leaves about
        // 2.3% in shared bits at this load).
        assert!(seen.len() > 96_000, "{}", seen.len());
    }
}
