//! The flow cache: the fast path for IP frames (see
//! [`netmon_common::CacheSlot`] for the protocol with the agent).
//!
//! Everything here is inlined: the array lookups compile to bounds checks
//! and pointer arithmetic (the verifier inlines per-CPU array lookups), the
//! hash and the key compare are a handful of 8-byte loads, multiplies and
//! compares. No helper is called, unlike a hash-map update (a call, jhash
//! over the key, a bucket walk and memcmp).

use core::ptr::read_unaligned;

use netmon_common::{CacheSlot, FlowKey, Globals};

use crate::maps::{CONTROL, FLOW_CACHE, FLOW_CACHE_SLOTS};

/// Adds `bytes` and `packets` to `key`'s slot in the current generation,
/// claiming a free one of its two slots if it has none. False when the cache
/// is off, or when both slots belong to other flows (counted in
/// `Globals::cache_misses`): the caller then counts the frame in the hash
/// maps.
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
    let k = (key as *const FlowKey).cast::<u8>();
    let base = (generation & 1) * slots;
    let first = hash(k) as u32 & (slots - 1);
    let Some(a) = FLOW_CACHE.get_ptr_mut(base + first) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array; the programs never nest on
    // a CPU (see count.rs), and the agent reads a half only after every
    // program that could write it has finished.
    let a = unsafe { &mut *a };
    if a.generation == generation && same(a, k) {
        a.counter.bytes += bytes;
        a.counter.packets += packets;
        return true;
    }
    // The other slot of the pair (slots is a power of two >= 2).
    let Some(b) = FLOW_CACHE.get_ptr_mut(base + (first ^ 1)) else {
        return false;
    };
    // SAFETY: as above.
    let b = unsafe { &mut *b };
    if b.generation == generation && same(b, k) {
        b.counter.bytes += bytes;
        b.counter.packets += packets;
        return true;
    }
    let free = if a.generation != generation {
        a
    } else if b.generation != generation {
        b
    } else {
        g.cache_misses += packets;
        return false;
    };
    claim(free, k, generation, bytes, packets);
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

/// Whether the slot holds the key.
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

/// Makes `slot` the key's for this generation, holding this frame.
#[inline(always)]
fn claim(slot: &mut CacheSlot, k: *const u8, generation: u32, bytes: u64, packets: u64) {
    let s = (&mut slot.key as *mut FlowKey).cast::<u8>();
    // SAFETY: the slot's key is 52 bytes: six words and a 4-byte tail.
    // Word by word: a struct copy would become a memcpy call.
    unsafe {
        for off in [0, 8, 16, 24, 32, 40] {
            core::ptr::write_unaligned(s.add(off).cast::<u64>(), word(k, off));
        }
        core::ptr::write_unaligned(s.add(48).cast::<u32>(), tail(k));
    }
    slot.counter.bytes = bytes;
    slot.counter.packets = packets;
    slot.generation = generation;
}
