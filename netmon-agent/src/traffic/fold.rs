//! Helpers of [`super::Traffic::update`]'s fold of the flow cache's slots
//! and the flow map's entries.

use netmon_common::{Counter, FlowKey};

use super::{Device, Flow};
use crate::lru::{self, Lru};

/// How many entries ahead of the one folded [`order`]'s users prefetch.
pub(super) const AHEAD: usize = 8;

/// The entries of `entries` that `fold` keeps, as (hash in the flow table,
/// index in `entries`), in the order of the flow table's index buckets
/// their lookups start at.
///
/// Looking 100,000 flows up in read order stalls on memory at every step:
/// the index's bucket (hundreds of kilobytes) and the flow's value (about
/// 25 MB in all) are at random places. In bucket order the index is read
/// from one end to the other, which the CPU's own prefetcher follows, and
/// the values are requested [`AHEAD`] entries ahead of their lookup
/// ([`Lru::prefetch`], [`prefetch_entry`]) so that several loads are in
/// flight at once. The order is a radix sort of the bucket numbers: two
/// or three passes over 16 bytes an entry.
pub(super) fn order(
    flows: &Lru<Flow>,
    entries: &[(FlowKey, Counter)],
    fold: impl Fn(&FlowKey) -> bool,
) -> Vec<(u64, u32)> {
    let mask = flows.index_buckets() as u64 - 1;
    let mut out: Vec<(u64, u32)> = entries
        .iter()
        .enumerate()
        .filter(|(_, (key, _))| fold(key))
        .map(|(i, (key, _))| (flows.hash_of(key), i as u32))
        .collect();
    const BITS: u32 = 11;
    let significant = u64::BITS - mask.leading_zeros();
    let mut scratch = vec![(0, 0); out.len()];
    let mut shift = 0;
    while shift < significant {
        let digit = |h: u64| ((h & mask) >> shift) as usize & ((1 << BITS) - 1);
        let mut starts = [0usize; 1 << BITS];
        for &(h, _) in &out {
            starts[digit(h)] += 1;
        }
        let mut at = 0;
        for s in starts.iter_mut() {
            (*s, at) = (at, at + *s);
        }
        for &e in &out {
            let d = digit(e.0);
            scratch[starts[d]] = e;
            starts[d] += 1;
        }
        std::mem::swap(&mut out, &mut scratch);
        shift += BITS;
    }
    out
}

/// Requests the entry at `i` of `entries` and its flow's value, for a
/// lookup [`AHEAD`] steps later.
pub(super) fn prefetch_entry(
    flows: &Lru<Flow>,
    entries: &[(FlowKey, Counter)],
    (hash, i): (u64, u32),
) {
    if let Some(e) = entries.get(i as usize) {
        let p = (e as *const (FlowKey, Counter)).cast::<u8>();
        lru::prefetch(p);
        lru::prefetch(p.wrapping_add(64));
    }
    flows.prefetch(hash);
}

/// The devices and interface side a flow-cache slot counts in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct CachePair {
    pub(super) ifindex: u32,
    pub(super) direction: u8,
    pub(super) src: [u8; 6],
    pub(super) dst: [u8; 6],
}

impl CachePair {
    pub(super) fn of(key: &FlowKey) -> Self {
        CachePair {
            ifindex: key.ifindex,
            direction: key.direction,
            src: key.src_mac,
            dst: key.dst_mac,
        }
    }
}

/// Where the devices of the last flows folded are, one for each side (the
/// source's and the destination's MAC): consecutive flows mostly share a
/// device on at least one side (a host and its gateway). Valid for one
/// fold of flows, which adds and removes no device, so a position found
/// stays right throughout.
#[derive(Default)]
pub(super) struct DeviceMemo {
    last: [Option<(DeviceKey, usize)>; 2],
}

/// A device's interface and MAC.
type DeviceKey = (u32, [u8; 6]);

impl DeviceMemo {
    /// The position of device `key` in `devices`, seen from `side` (0 or 1).
    pub(super) fn find(
        &mut self,
        devices: &Lru<Device>,
        side: usize,
        key: DeviceKey,
    ) -> Option<usize> {
        if let Some((k, pos)) = self.last[side]
            && k == key
        {
            return Some(pos);
        }
        let pos = devices.find(&key)?;
        self.last[side] = Some((key, pos));
        Some(pos)
    }
}
