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
use netmon_common::{CACHE_AGGREGATE_SLOTS, CACHE_WAYS, CacheSlot, FlowKey, UsedList};

use crate::maps::{CACHE_USED, CONTROL, FLOW_CACHE, FLOW_CACHE_SLOTS, FLOW_INSERT_BUDGET};

/// The running CPU's half of the flow cache in the current generation.
pub struct Cache {
    /// Index of the half's first slot in [`FLOW_CACHE`].
    base: u32,
    /// Index of the half's used list in [`CACHE_USED`].
    used: u32,
    /// Flow slots in the half (a multiple of [`CACHE_WAYS`]); the aggregate
    /// slots follow them.
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
        let slots = FLOW_CACHE_SLOTS.load();
        // SAFETY: a helper without arguments or side effects (inlined by the
        // verifier).
        let cpu = unsafe { bpf_get_smp_processor_id() };
        let region = cpu * 2 + (generation & 1);
        Some(Cache {
            base: region * UsedList::slots(slots),
            used: region * UsedList::stride(slots),
            slots,
        })
    }

    /// Adds the frame to `key`'s slot among the flow slots, claiming a free
    /// one of its bucket if it has none. False when the bucket is full of
    /// other flows (or the flow's slot cannot count more packets).
    #[inline(always)]
    pub fn add_flow(&self, key: &FlowKey, bytes: u64, packets: u64) -> bool {
        self.add_in(0, self.slots / CACHE_WAYS, key, bytes, packets)
    }

    /// As [`Cache::add_flow`], for an aggregate key, among the aggregate
    /// slots (which flows never take).
    #[inline(always)]
    pub fn add_aggregate(&self, key: &FlowKey, bytes: u64, packets: u64) -> bool {
        self.add_in(
            self.slots,
            CACHE_AGGREGATE_SLOTS / CACHE_WAYS,
            key,
            bytes,
            packets,
        )
    }

    /// Whether this CPU may still create a flow-map entry in this
    /// generation.
    #[inline(always)]
    pub fn may_insert(&self) -> bool {
        match CACHE_USED.get(self.used + UsedList::INSERTS) {
            Some(n) => *n < u64::from(FLOW_INSERT_BUDGET.load()),
            None => false,
        }
    }

    /// Counts a flow-map entry this CPU created.
    #[inline(always)]
    pub fn inserted(&self) {
        if let Some(n) = CACHE_USED.get_ptr_mut(self.used + UsedList::INSERTS) {
            // SAFETY: this CPU's word of the current half; see `add_in`.
            unsafe { *n += 1 };
        }
    }

    /// Adds to `key`'s slot in its bucket among the `buckets` buckets from
    /// slot `first` of the half.
    #[inline(always)]
    fn add_in(&self, first: u32, buckets: u32, key: &FlowKey, bytes: u64, packets: u64) -> bool {
        let k = (key as *const FlowKey).cast::<u8>();
        // The hash's 32 bits scaled to 0..buckets (a multiply, not a
        // division: any number of buckets).
        let b = (u64::from(hash(k) as u32) * u64::from(buckets)) >> 32;
        let bucket = first + b as u32 * CACHE_WAYS;
        for way in 0..CACHE_WAYS {
            let index = bucket + way;
            let Some(slot) = FLOW_CACHE.get_ptr_mut(self.base + index) else {
                return false;
            };
            // SAFETY: a slot of this CPU's current half: only programs on
            // this CPU write it, and they never nest (see count.rs); the
            // agent touches a half only after every program that could
            // write it has finished.
            let slot = unsafe { &mut *slot };
            if same(slot, k) {
                return bump(slot, bytes, packets);
            }
            if slot.key.ifindex == 0 {
                // Free, and so is the rest of the bucket.
                claim(slot, k, bytes, packets);
                self.record(index);
                return true;
            }
        }
        false
    }

    /// Appends a claimed slot to the half's used list.
    #[inline(always)]
    fn record(&self, index: u32) {
        let Some(count) = CACHE_USED.get_ptr_mut(self.used + UsedList::COUNT) else {
            return;
        };
        // SAFETY: as in `add_in`.
        let count = unsafe { &mut *count };
        let n = *count;
        // Never more claims than slots (each takes a free one); checked so
        // a list can never run into the next one.
        if n >= u64::from(UsedList::slots(self.slots)) {
            return;
        }
        if let Some(entry) = CACHE_USED.get_ptr_mut(self.used + UsedList::HEADER + n as u32) {
            // SAFETY: as in `add_in`.
            unsafe { *entry = u64::from(index) };
            *count = n + 1;
        }
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
fn claim(slot: &mut CacheSlot, k: *const u8, bytes: u64, packets: u64) {
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
