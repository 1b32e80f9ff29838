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
    CACHE_AGGREGATE_SLOTS, CACHE_PROBES, CacheLayout, CacheSlot, FlowKey, MIN_TABLE_SLOTS,
};

use crate::maps::{
    CACHE_CLAIMS, CACHE_HEADERS, CONTROL, FLOW_CACHE, FLOW_CACHE_SLOTS, FLOW_INSERT_BUDGET,
};

/// The running CPU's half of the flow cache in the current generation.
pub struct Cache {
    /// Index of the half's first slot in [`FLOW_CACHE`] and of its first
    /// entry in [`CACHE_CLAIMS`].
    base: u32,
    /// Slots of the table the generation uses (from the half's first).
    table: u32,
    /// Flow slots the generation may claim, as the agent set it (at most
    /// the table; half the table, or a small table whole, when unset), so
    /// a key's probes soon meet a free slot and a flood of new keys pays a
    /// few probes each.
    room: u32,
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
        let table = (*CONTROL.get(1 + half)?).clamp(1, slots);
        let room = match *CONTROL.get(3 + half)? {
            0 => (table / 2).max(table.min(MIN_TABLE_SLOTS)),
            room => room.min(table),
        };
        // SAFETY: a helper without arguments or side effects (inlined by the
        // verifier).
        let cpu = unsafe { bpf_get_smp_processor_id() };
        let region = cpu * 2 + half;
        Some(Cache {
            base: region * CacheLayout::slots(slots),
            table,
            room,
            header: region * CacheLayout::HEADER,
            slots,
        })
    }

    /// Adds the frame to `key`'s flow slot, claiming a free one if it has
    /// none. False when the slots the key may take are other keys' or
    /// the generation may claim no more (or the flow's slot cannot count
    /// more packets).
    #[inline(always)]
    pub fn add_flow(&self, key: &FlowKey, bytes: u64, packets: u64) -> bool {
        let k = (key as *const FlowKey).cast::<u8>();
        // The hash's high half scaled to 0..table (a multiply, not a
        // division: any size); the probes run on from there, wrapping.
        let first = (((hash(k) >> 32) * u64::from(self.table)) >> 32) as u32;
        self.add::<false>(
            k,
            first,
            self.table,
            0,
            CacheLayout::COUNT,
            self.room,
            bytes,
            packets,
        )
    }

    /// As [`Cache::add_flow`], for the aggregate of `key`'s MAC pair and
    /// protocol, in the aggregate slots (which flows never take): `key`
    /// with `other` set, whose addresses the cache takes as zero (they are
    /// neither hashed nor compared, and the slot gets zeros).
    #[inline(always)]
    pub fn add_aggregate(&self, key: &FlowKey, bytes: u64, packets: u64) -> bool {
        let k = (key as *const FlowKey).cast::<u8>();
        let first = hash_prefix(k) as u32 & (CACHE_AGGREGATE_SLOTS - 1);
        self.add::<true>(
            k,
            first,
            CACHE_AGGREGATE_SLOTS,
            self.slots,
            CacheLayout::AGGREGATES,
            CACHE_AGGREGATE_SLOTS,
            bytes,
            packets,
        )
    }

    /// Adds to the key's slot among the `table` slots from `offset` (in
    /// the half), probing from slot `first` on (wrapping), or claims the
    /// first free one on the way. Slots are freed only by the agent, so a
    /// key is never past a free slot. `counter` is the header word that
    /// counts the claims, `room` the most it may reach. `PREFIX`: the key
    /// is an aggregate's, its addresses taken as zero.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn add<const PREFIX: bool>(
        &self,
        k: *const u8,
        first: u32,
        table: u32,
        offset: u32,
        counter: u32,
        room: u32,
        bytes: u64,
        packets: u64,
    ) -> bool {
        let mut i = first;
        let mut free = None;
        for _ in 0..CACHE_PROBES {
            let Some(slot) = FLOW_CACHE.get_ptr_mut(self.base + offset + i) else {
                return false;
            };
            // SAFETY: a slot of this CPU's current half: only programs on
            // this CPU write it, and they never nest (see count.rs); the
            // agent touches a half only after every program that could
            // write it has finished.
            let slot = unsafe { &mut *slot };
            if slot.key.ifindex == 0 {
                free = Some(i);
                break;
            }
            let found = if PREFIX {
                same_prefix(slot, k)
            } else {
                same(slot, k)
            };
            if found {
                return bump(slot, bytes, packets);
            }
            i += 1;
            if i >= table {
                i = 0;
            }
        }
        match free {
            Some(i) => self.claim::<PREFIX>(offset + i, counter, offset, room, k, bytes, packets),
            None => false,
        }
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

    /// Makes the free slot `index` (of the half) the key's, and records
    /// the claim in the half's claim list: entry `first + n`, where `n`
    /// (header word `counter`) counts the claims of its kind so far, if
    /// `n < room`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn claim<const PREFIX: bool>(
        &self,
        index: u32,
        counter: u32,
        first: u32,
        room: u32,
        k: *const u8,
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
        let Some(slot) = FLOW_CACHE.get_ptr_mut(self.base + index) else {
            return false;
        };
        // SAFETY: as in `add`.
        let slot = unsafe { &mut *slot };
        let Some(entry) = CACHE_CLAIMS.get_ptr_mut(self.base + first + n as u32) else {
            return false;
        };
        // SAFETY: as in `add`.
        unsafe { *entry = index };
        if PREFIX {
            fill_prefix(slot, k, bytes, packets);
        } else {
            fill(slot, k, bytes, packets);
        }
        *count = n + 1;
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
/// low bits depend on every bit.
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

/// The hash of an aggregate key: its first 20 bytes (interface,
/// direction, protocol, `other`, MACs), as [`hash`] does.
#[inline(always)]
fn hash_prefix(k: *const u8) -> u64 {
    let h = word(k, 0).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ word(k, 8).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ u64::from(head(k)).wrapping_mul(0x1656_67b1_9e37_79f9);
    let h = h ^ (h >> 32);
    h ^ (h >> 15)
}

/// Key bytes 16..20 (the end of the destination MAC).
#[inline(always)]
fn head(k: *const u8) -> u32 {
    // SAFETY: as in `word`.
    unsafe { read_unaligned(k.add(16).cast::<u32>()) }
}

/// Whether the aggregate slot holds the aggregate key whose first 20
/// bytes `k` has (aggregate slots hold only aggregate keys, whose
/// addresses are zero).
#[inline(always)]
fn same_prefix(slot: &CacheSlot, k: *const u8) -> bool {
    let s = (&slot.key as *const FlowKey).cast::<u8>();
    ((word(s, 0) ^ word(k, 0)) | (word(s, 8) ^ word(k, 8)) | u64::from(head(s) ^ head(k))) == 0
}

/// Makes the free aggregate `slot` the aggregate key's (the first 20
/// bytes of `k`, zero addresses), holding this frame.
#[inline(always)]
fn fill_prefix(slot: &mut CacheSlot, k: *const u8, bytes: u64, packets: u64) {
    let s = (&mut slot.key as *mut FlowKey).cast::<u8>();
    // SAFETY: as in `fill`. The addresses are written as zeros whatever
    // the slot held.
    unsafe {
        core::ptr::write_unaligned(s.cast::<u64>(), word(k, 0));
        core::ptr::write_unaligned(s.add(8).cast::<u64>(), word(k, 8));
        core::ptr::write_unaligned(s.add(16).cast::<u32>(), head(k));
        core::ptr::write_unaligned(s.add(20).cast::<u32>(), 0);
        for off in [24, 32, 40] {
            core::ptr::write_unaligned(s.add(off).cast::<u64>(), 0);
        }
        core::ptr::write_unaligned(s.add(48).cast::<u32>(), 0);
    }
    slot.packets = packets as u32;
    slot.bytes = bytes;
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
