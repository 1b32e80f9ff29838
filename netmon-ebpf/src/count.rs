//! Adds one observed frame to the maps. Shared by every program.
//!
//! An IP frame goes to its flow's slot in the flow cache (`cache.rs`), or,
//! when the cache cannot hold it, to the MAC-pair and flow hash maps; but
//! once this CPU has created its budget of flow-map entries for the
//! interval, to its MAC pair's aggregate slot instead (the MAC-pair map
//! when even that has no room), so a flood of new flows costs a cache
//! lookup per frame rather than a hash-map insert. Any other frame goes to
//! the MAC-pair map. Each frame is counted in exactly one of those places,
//! and always in the globals.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::LruPerCpuHashMap};
use netmon_common::{Counter, Globals};

use crate::{
    cache::Cache,
    maps::{FLOW_COUNTERS, GLOBALS, MAC_COUNTERS},
    parse::{ARP, EXT_LIMIT, Frame, HAS_IP, MALFORMED, NON_IP, VLAN},
};

const EEXIST: i64 = 17;

/// Counts `packets` frames totalling `bytes` seen on `ifindex` in `direction`.
/// `frame` is `None` for a frame too short to carry an Ethernet header.
#[inline(always)]
pub fn count(ifindex: u32, direction: u8, frame: Option<&mut Frame>, bytes: u64, packets: u64) {
    let Some(g) = GLOBALS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the pointer is this CPU's slot of a per-CPU array; programs
    // run with migration disabled and with softirqs off (TC egress) or in
    // softirq (XDP, TC ingress), so nothing else writes it concurrently.
    let g = unsafe { &mut *g };
    g.packets += packets;
    g.bytes += bytes;
    let Some(f) = frame else {
        g.malformed += packets;
        return;
    };
    let flags = f.flags;
    // One test for the common frame, which has none of these.
    if flags & (MALFORMED | VLAN | NON_IP | ARP | EXT_LIMIT) != 0 {
        if flags & MALFORMED != 0 {
            g.malformed += packets;
        }
        if flags & VLAN != 0 {
            g.vlan += packets;
        }
        if flags & NON_IP != 0 {
            g.non_ip += packets;
        }
        if flags & ARP != 0 {
            g.arp += packets;
        }
        if flags & EXT_LIMIT != 0 {
            g.ipv6_ext_limit += packets;
        }
    }
    let mut to_flow_map = flags & HAS_IP != 0;
    let cache = if to_flow_map {
        f.flow.ifindex = ifindex;
        f.flow.direction = direction;
        f.flow.other = 0;
        Cache::current()
    } else {
        None
    };
    if let Some(c) = &cache {
        if c.add_flow(&f.flow, bytes, packets) {
            return;
        }
        g.cache_misses += packets;
        c.missed(packets);
        if !c.may_insert() {
            g.flows_aggregated += packets;
            // The MAC pair's aggregate key: the cache takes its addresses
            // as zero (zeroing them here took stores the verifier could
            // not follow).
            f.flow.other = 1;
            if c.add_aggregate(&f.flow, bytes, packets) {
                return;
            }
            // The aggregate slots are full too: the MAC pair alone.
            to_flow_map = false;
        }
    }
    f.mac.ifindex = ifindex;
    f.mac.direction = direction;
    // Plain array assignments: 6-byte copies, no memcpy call.
    f.mac.src = f.flow.src_mac;
    f.mac.dst = f.flow.dst_mac;
    add(&MAC_COUNTERS, &f.mac, bytes, packets, g, |g| {
        g.mac_inserts += 1
    });
    if to_flow_map {
        add(&FLOW_COUNTERS, &f.flow, bytes, packets, g, |g| {
            g.flow_inserts += 1;
            if let Some(c) = &cache {
                c.inserted();
            }
        });
    }
}

/// Adds to this CPU's value for `key`, creating the entry when absent.
#[inline(always)]
fn add<K>(
    map: &LruPerCpuHashMap<K, Counter>,
    key: &K,
    bytes: u64,
    packets: u64,
    g: &mut Globals,
    inserted: impl FnOnce(&mut Globals),
) {
    if let Some(v) = map.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU value; see `count`.
        let v = unsafe { &mut *v };
        v.bytes += bytes;
        v.packets += packets;
        return;
    }
    let first = Counter { bytes, packets };
    match map.insert(key, &first, u64::from(BPF_NOEXIST)) {
        Ok(()) => inserted(g),
        // Another CPU created the entry since the lookup: add to our slot.
        Err(e) if i64::from(e) == -EEXIST => match map.get_ptr_mut(key) {
            Some(v) => {
                // SAFETY: as above.
                let v = unsafe { &mut *v };
                v.bytes += bytes;
                v.packets += packets;
            }
            None => g.map_update_failed += 1,
        },
        Err(_) => g.map_update_failed += 1,
    }
}
