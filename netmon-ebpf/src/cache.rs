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
use netmon_common::{CacheSlot, FlowKey, Globals};

use crate::maps::{CONTROL, FLOW_CACHE, FLOW_CACHE_SLOTS};

/// Adds `bytes` and `packets` to `key`'s slot in the current generation,
/// claiming a free one of its two slots if it has none. False when the cache
/// is off, or when both slots belong to other flows or the flow's slot
/// cannot count more packets (counted in `Globals::cache_misses`): the
/// caller then counts the frame in the hash maps.
#[inline(always)]
pub fn add(key: &FlowKey, bytes: u64, packets: u64, g: &mut Globals) -> bool {
    let Some(generation) = CONTROL.get(0) else {
        return false;
    };
    let generation = *generation;
    if generation == 0 {
        return false;
    }
    let slots = FLOW_CACHE_SLOTS.load();
    // SAFETY: a helper without arguments or side effects (inlined by the
    // verifier).
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let k = (key as *const FlowKey).cast::<u8>();
    let base = (cpu * 2 + (generation & 1)) * slots;
    let first = hash(k) as u32 & (slots - 1);
    let Some(a) = FLOW_CACHE.get_ptr_mut(base + first) else {
        return false;
    };
    // SAFETY: a slot of this CPU's current half: only programs on this CPU
    // write it, and they never nest (see count.rs); the agent touches a
    // half only after every program that could write it has finished.
    let a = unsafe { &mut *a };
    if same(a, k) {
        return bump(a, bytes, packets, g);
    }
    // The other slot of the pair (slots is a power of two >= 2).
    let Some(b) = FLOW_CACHE.get_ptr_mut(base + (first ^ 1)) else {
        return false;
    };
    // SAFETY: as above.
    let b = unsafe { &mut *b };
    if same(b, k) {
        return bump(b, bytes, packets, g);
    }
    let free = if a.key.ifindex == 0 {
        a
    } else if b.key.ifindex == 0 {
        b
    } else {
        g.cache_misses += packets;
        return false;
    };
    claim(free, k, bytes, packets);
    true
}

/// Adds to the key's slot, unless its 32-bit packet count would overflow
/// (a flow of more than 4 billion packets in one interval on one CPU).
#[inline(always)]
fn bump(slot: &mut CacheSlot, bytes: u64, packets: u64, g: &mut Globals) -> bool {
    let sum = u64::from(slot.packets) + packets;
    if sum > u64::from(u32::MAX) {
        g.cache_misses += packets;
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
