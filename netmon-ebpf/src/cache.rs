//! The flow cache: the fast path for IP frames (see
//! [`netmon_common::CacheSlot`] for the protocol with the agent).
//!
//! Everything here is inlined: the array lookups compile to bounds checks
//! and pointer arithmetic (the verifier inlines array lookups and, on
//! x86-64 and arm64, the CPU number), the hash and the key compare are a
//! handful of 8-byte loads, multiplies and compares. No helper is called,
//! unlike a hash-map update (a call, jhash over the key, a bucket walk and
//! memcmp).

use core::ptr::read_unaligned;

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use netmon_common::{
    CACHE_AGGREGATE_SLOTS, CacheLayout, CacheSlot, FlowKey, INDEX_WAYS, IndexLine,
};

use crate::maps::{
    CACHE_HEADERS, CACHE_INDEX, CONTROL, FLOW_CACHE, FLOW_CACHE_SLOTS, FLOW_INSERT_BUDGET,
};

/// The running CPU's half of the flow cache in the current generation.
pub struct Cache {
    /// Index of the half's first slot in [`FLOW_CACHE`].
    slot_base: u32,
    /// Index of the half's first line in [`CACHE_INDEX`].
    line_base: u32,
    /// Index lines the generation uses (1 to the half's lines).
    lines: u32,
    /// Index of the half's header in [`CACHE_HEADERS`].
    header: u32,
    /// Flow slots in the half; the aggregate slots follow them.
    slots: u32,
}

impl Cache {
    /// The running CPU's current half, or `None` while the cache is off.
    #[inline(always)]
    pub fn current() -> Option<Cache> {
        let generation = *CONTROL.get(0)?;
        if generation == 0 {
            return None;
        }
        let half = generation & 1;
        let slots = FLOW_CACHE_SLOTS.load();
        let capacity = CacheLayout::index_lines(slots);
        let lines = (*CONTROL.get(1 + half)?).clamp(1, capacity);
        // SAFETY: a helper without arguments or side effects (inlined by the
        // verifier).
        let cpu = unsafe { bpf_get_smp_processor_id() };
        let region = cpu * 2 + half;
        Some(Cache {
            slot_base: region * CacheLayout::slots(slots),
            line_base: region * capacity,
            lines,
            header: region * CacheLayout::HEADER,
            slots,
        })
    }

    /// Adds the frame to `key`'s flow slot, claiming the next free one if
    /// it has none. False when the half's flow slots or the key's index
    /// line are full (or the flow's slot cannot count more packets).
    #[inline(always)]
    pub fn add_flow(&self, key: &FlowKey, bytes: u64, packets: u64) -> bool {
        self.add(key, CacheLayout::COUNT, 0, self.slots, bytes, packets)
    }

    /// As [`Cache::add_flow`], for an aggregate key, in the aggregate slots
    /// (which flows never take).
    #[inline(always)]
    pub fn add_aggregate(&self, key: &FlowKey, bytes: u64, packets: u64) -> bool {
        let first = self.slots;
        self.add(
            key,
            CacheLayout::AGGREGATES,
            first,
            CACHE_AGGREGATE_SLOTS,
            bytes,
            packets,
        )
    }

    /// Whether this CPU may still create a flow-map entry in this
    /// generation.
    #[inline(always)]
    pub fn may_insert(&self) -> bool {
        match CACHE_HEADERS.get(self.header + CacheLayout::INSERTS) {
            Some(n) => *n < u64::from(FLOW_INSERT_BUDGET.load()),
            None => false,
        }
    }

    /// Counts `packets` frames that found no flow slot.
    #[inline(always)]
    pub fn missed(&self, packets: u64) {
        if let Some(n) = CACHE_HEADERS.get_ptr_mut(self.header + CacheLayout::MISSES) {
            // SAFETY: this CPU's word of the current half; see `add`.
            unsafe { *n += packets };
        }
    }

    /// Counts a flow-map entry this CPU created.
    #[inline(always)]
    pub fn inserted(&self) {
        if let Some(n) = CACHE_HEADERS.get_ptr_mut(self.header + CacheLayout::INSERTS) {
            // SAFETY: this CPU's word of the current half; see `add`.
            unsafe { *n += 1 };
        }
    }

    /// Adds to `key`'s slot, found through its index line; a new key
    /// claims slot `first + n` where `n` (header word `counter`) counts
    /// the claims so far, if `n < room`.
    #[inline(always)]
    fn add(
        &self,
        key: &FlowKey,
        counter: u32,
        first: u32,
        room: u32,
        bytes: u64,
        packets: u64,
    ) -> bool {
        let k = (key as *const FlowKey).cast::<u8>();
        let h = hash(k);
        // Never 0, which marks an empty entry.
        let tag = h as u32 | 1;
        // The hash's high half scaled to 0..lines (a multiply, not a
        // division: any number of lines).
        let line = ((h >> 32) * u64::from(self.lines)) >> 32;
        let Some(line) = CACHE_INDEX.get_ptr_mut(self.line_base + line as u32) else {
            return false;
        };
        // SAFETY: a line of this CPU's current half: only programs on this
        // CPU write it, and they never nest (see count.rs); the agent
        // touches a half only after every program that could write it has
        // finished.
        let line = unsafe { &mut *line };
        for way in 0..INDEX_WAYS {
            let t = line.tags[way];
            if t == 0 {
                return self.claim(line, way, tag, k, counter, first, room, bytes, packets);
            }
            if t == tag {
                let Some(slot) = FLOW_CACHE.get_ptr_mut(self.slot_base + line.slots[way]) else {
                    return false;
                };
                // SAFETY: as for the line.
                let slot = unsafe { &mut *slot };
                if same(slot, k) {
                    return bump(slot, bytes, packets);
                }
            }
        }
        false
    }

    /// Gives the key the next free slot of its kind and index entry `way`
    /// of `line` (empty).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn claim(
        &self,
        line: &mut IndexLine,
        way: usize,
        tag: u32,
        k: *const u8,
        counter: u32,
        first: u32,
        room: u32,
        bytes: u64,
        packets: u64,
    ) -> bool {
        let Some(count) = CACHE_HEADERS.get_ptr_mut(self.header + counter) else {
            return false;
        };
        // SAFETY: as in `add`.
        let count = unsafe { &mut *count };
        let n = *count;
        if n >= u64::from(room) {
            return false;
        }
        let index = first + n as u32;
        let Some(slot) = FLOW_CACHE.get_ptr_mut(self.slot_base + index) else {
            return false;
        };
        // SAFETY: as in `add`.
        let slot = unsafe { &mut *slot };
        fill(slot, k, bytes, packets);
        *count = n + 1;
        line.tags[way] = tag;
        line.slots[way] = index;
        true
    }
}

/// Adds to the key's slot, unless its 32-bit packet count would overflow
/// (a flow of more than 4 billion packets in one interval on one CPU).
#[inline(always)]
fn bump(slot: &mut CacheSlot, bytes: u64, packets: u64) -> bool {
    let sum = u64::from(slot.packets) + packets;
    if sum > u64::from(u32::MAX) {
        return false;
    }
    slot.packets = sum as u32;
    slot.bytes += bytes;
    true
}

/// Eight key bytes at `off`.
#[inline(always)]
fn word(k: *const u8, off: usize) -> u64 {
    // SAFETY: callers pass offsets within the 52-byte key (the last word
    // read as 4 bytes by `tail`); misaligned loads are allowed on the
    // targets netmon builds for.
    unsafe { read_unaligned(k.add(off).cast::<u64>()) }
}

/// The key's last four bytes (48..52).
#[inline(always)]
fn tail(k: *const u8) -> u32 {
    // SAFETY: as in `word`.
    unsafe { read_unaligned(k.add(48).cast::<u32>()) }
}

/// A multiplicative hash of the 52-byte key: each word times its own odd
/// constant (so swapped source and destination hash apart), folded so the
/// low bits, which pick the slot, depend on every bit.
#[inline(always)]
fn hash(k: *const u8) -> u64 {
    let h = word(k, 0).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ word(k, 8).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ word(k, 16).wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ word(k, 24).wrapping_mul(0x85eb_ca77_c2b2_ae63)
        ^ word(k, 32).wrapping_mul(0x27d4_eb2f_1656_67c5)
        ^ word(k, 40).wrapping_mul(0xff51_afd7_ed55_8ccd)
        ^ u64::from(tail(k)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    let h = h ^ (h >> 32);
    h ^ (h >> 15)
}

/// Whether the slot holds the key (a free slot's interface index, 0, is
/// never a key's).
#[inline(always)]
fn same(slot: &CacheSlot, k: *const u8) -> bool {
    let s = (&slot.key as *const FlowKey).cast::<u8>();
    ((word(s, 0) ^ word(k, 0))
        | (word(s, 8) ^ word(k, 8))
        | (word(s, 16) ^ word(k, 16))
        | (word(s, 24) ^ word(k, 24))
        | (word(s, 32) ^ word(k, 32))
        | (word(s, 40) ^ word(k, 40))
        | u64::from(tail(s) ^ tail(k)))
        == 0
}

/// Makes the free `slot` the key's, holding this frame.
#[inline(always)]
fn fill(slot: &mut CacheSlot, k: *const u8, bytes: u64, packets: u64) {
    let s = (&mut slot.key as *mut FlowKey).cast::<u8>();
    // SAFETY: the slot's key is 52 bytes: six words and a 4-byte tail.
    // Word by word: a struct copy would become a memcpy call.
    unsafe {
        for off in [0, 8, 16, 24, 32, 40] {
            core::ptr::write_unaligned(s.add(off).cast::<u64>(), word(k, off));
        }
        core::ptr::write_unaligned(s.add(48).cast::<u32>(), tail(k));
    }
    // A frame is at most 65535 GSO segments.
    slot.packets = packets as u32;
    slot.bytes = bytes;
}
