//! The agent's view of the traffic: per-device, per-flow and per-interface
//! totals and rates, built from successive reads of the kernel maps.
//!
//! [`Traffic::update`] takes one full read (the flow cache's finished
//! generation, both hash maps and the globals) and returns the hash-map
//! entries that have been idle long enough to delete from the kernel. The
//! cache's counts are the interval's own; the maps' values are running
//! totals, turned into deltas here. Device and interface totals come from
//! the cache and the MAC-pair map, never from the flow map, so they stay
//! exact when the (much larger) flow map evicts entries. Deleting an idle
//! entry loses nothing: its bytes are already in the totals, and if the
//! conversation resumes the new kernel entry is counted from zero.
//!
//! The agent's own tables are bounded whatever arrives: at most
//! `--max-flows` flows and `--max-devices` devices ([`Lru`]). When one is
//! full, a new entry evicts the least recently active one (counted in
//! [`TableStats::evictions`]). An evicted flow's totals move to its
//! interface's [`OtherFlows`], so the listed flows plus "other" still hold
//! every frame counted in a flow; device and interface totals never depend
//! on the flow table. A flow evicted while it has a kernel flow-map entry
//! leaves that entry's last value behind (an orphan baseline), so when the
//! entry grows again only the growth is counted: no frame twice.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv6Addr},
    time::{Duration, Instant, SystemTime},
};

use netmon_common::{Counter, FlowKey, Globals, MacKey, direction};

/// A hash map with foldhash: several times faster than std's SipHash on the
/// 52-byte flow keys, and still seeded per process (from address-space
/// randomisation, time and allocator addresses; not cryptographic). That
/// matters: remote senders choose the addresses in these keys, and with an
/// unseeded hash (Fx) they could craft collisions that stall the drain.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use self::fold::DeviceMemo;
pub use self::update::Fold;
use crate::{
    ifaces::Subnets,
    lru::{Keyed, Lru},
    rates::{Meter, delta},
};

mod fold;
mod update;

/// How many addresses a device remembers, most recently seen first.
pub const MAX_IPS_PER_DEVICE: usize = 16;

/// Default `--max-flows`: twice the flow map's default size (65,536). A
/// bound on the agent's memory (about 33 MiB of flow entries), not on what
/// the kernel can count in one interval: the flow cache
/// (`--flow-cache-memory`) may hold more flows than this, and the least
/// recently active of them then go to their interface's "other" flows.
pub const DEFAULT_MAX_FLOWS: u32 = 131_072;
/// Default `--max-devices`: the MAC-pair map's default size.
pub const DEFAULT_MAX_DEVICES: u32 = netmon_common::DEFAULT_MAC_ENTRIES;

/// A cumulative kernel entry and what the agent knows of it.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    /// The entry's cumulative value at the last read.
    last: Counter,
    /// The read that last saw the entry.
    generation: u64,
    /// When its value last changed.
    active_at: Instant,
}

/// One MAC address on one interface.
#[derive(Clone, Debug)]
pub struct Device {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// Frames with this MAC as source.
    pub tx: Meter,
    /// Frames with this MAC as destination.
    pub rx: Meter,
    /// Addresses seen with this MAC, most recent first.
    pub ips: VecDeque<IpAddr>,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    active_at: Instant,
}

impl Keyed for Device {
    type Key = (u32, [u8; 6]);
    fn key(&self) -> Self::Key {
        (self.ifindex, self.mac)
    }
}

/// One IP conversation on one interface and direction. No heap data: the
/// flow table holds these in one preallocated vector.
#[derive(Clone, Debug)]
pub struct Flow {
    pub key: FlowKey,
    pub meter: Meter,
    /// What the last interval added (what the rate is computed from).
    pub last: Counter,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    /// When it last carried traffic.
    active_at: Instant,
    /// Its entry in the kernel's flow map, if it has one (frames the flow
    /// cache could not hold): the cumulative value at the last read, and
    /// the read that saw it ([`tag`]; 0: none). Two fields rather than an
    /// `Option<(Counter, u64)>`: 20 bytes a flow instead of 32.
    kernel_last: Counter,
    kernel_seen: u32,
}

impl Flow {
    /// Its kernel flow-map entry's last value and the read that saw it.
    fn kernel(&self) -> Option<(Counter, u32)> {
        (self.kernel_seen != 0).then_some((self.kernel_last, self.kernel_seen))
    }

    fn set_kernel(&mut self, kernel: Option<(Counter, u32)>) {
        (self.kernel_last, self.kernel_seen) = kernel.unwrap_or_default();
    }
}

/// A read's number in 32 bits, never 0: consecutive reads have consecutive
/// tags (modulo 2^32 - 1), so "this read or the one before" stays exact
/// when the count wraps.
fn tag(generation: u64) -> u32 {
    (generation % u64::from(u32::MAX)) as u32 + 1
}

/// Whether a read tagged `seen` is read `generation` or the one before.
fn recent(seen: u32, generation: u64) -> bool {
    seen == tag(generation) || seen == tag(generation.wrapping_sub(1))
}

impl Keyed for Flow {
    type Key = FlowKey;
    fn key(&self) -> FlowKey {
        self.key
    }
}

/// The kernel value of `kernel` to count from, if that entry was in the
/// previous read (or this one): an entry missing from a read was evicted
/// or deleted, and a new one counts from zero.
fn baseline(kernel: Option<(Counter, u32)>, generation: u64) -> Option<Counter> {
    kernel
        .filter(|&(_, seen)| recent(seen, generation))
        .map(|(last, _)| last)
}

/// Flow traffic of one interface that no listed flow holds: the totals of
/// the flows evicted from the agent's flow table (`--max-flows`), and what
/// the datapath counted per interface without a flow ([`Traffic::add_other`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtherFlows {
    /// Received (ingress hook).
    pub rx: Counter,
    /// Sent (egress hook).
    pub tx: Counter,
    /// Flows evicted from the agent's table whose totals are in `rx`/`tx`.
    pub evicted_flows: u64,
}

/// Totals of one watched interface, from the frames the programs saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterfaceTotals {
    /// Frames received (ingress hook).
    pub rx: Meter,
    /// Frames sent (egress hook).
    pub tx: Meter,
    /// Flow traffic on it that no listed flow holds.
    pub other: OtherFlows,
}

/// Fill level and churn of one of the agent's own tables (flows, devices).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Entries now.
    pub entries: u64,
    /// Most entries it holds (`--max-flows`, `--max-devices`).
    pub capacity: u64,
    /// Entries evicted, least recently active first, to make room for new
    /// ones, since start.
    pub evictions: u64,
}

/// Fill level and churn of one kernel map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    /// Entries in the map at the last read.
    pub entries: u64,
    /// The map's `max_entries`.
    pub capacity: u64,
    /// Entries the programs created, since load.
    pub inserts: u64,
    /// Entries the agent deleted because they were idle, since load.
    pub deleted: u64,
    /// Entries the kernel evicted to make room (LRU), since load: inserts
    /// that are neither in the map nor deleted by the agent.
    pub evictions: u64,
}

impl MapStats {
    fn update(&mut self, entries: u64, inserts: u64) {
        self.entries = entries;
        self.inserts = inserts;
        self.evictions = inserts.saturating_sub(entries + self.deleted);
    }
}

/// Use of the flow cache in the last interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Slots (per flow and CPU) the last generation claimed.
    pub slots_used: u64,
    /// Slots per generation, all CPUs (0: the cache is off).
    pub capacity: u64,
    /// IP frames that found no slot and were counted in the hash maps or
    /// their MAC pair's aggregate instead, since load.
    pub misses: u64,
}

/// Converts a key's 16-byte address (IPv4 stored IPv4-mapped) to an IpAddr.
pub fn key_ip(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// One full read of the kernel maps.
#[derive(Debug, Default)]
pub struct MapCounts {
    /// Every MAC-pair entry, per-CPU values summed.
    pub macs: Vec<(MacKey, Counter)>,
    /// Every flow entry, per-CPU values summed.
    pub flows: Vec<(FlowKey, Counter)>,
    /// What the flow cache counted since the last read: per flow, CPU and
    /// slot, exact counts of the interval (not running totals).
    pub cached: Vec<(FlowKey, Counter)>,
    /// The per-CPU globals, summed.
    pub globals: Globals,
    pub mac_capacity: u64,
    pub flow_capacity: u64,
    /// Flow-cache slots per generation, all CPUs (0: the cache is off).
    pub cache_capacity: u64,
    /// When the reading's interval ended: the flow cache's flip, just
    /// before the maps were read (None: not read from a kernel).
    pub taken: Option<Instant>,
}

impl MapCounts {
    /// This reading with the flow cache's counts merged into `macs` and
    /// `flows` (a cached frame counts in its MAC pair and in its flow), and
    /// `cached` empty. For tests and the benchmark, which read a fresh
    /// object once; the agent folds the parts separately, since only the
    /// maps' values are running totals.
    pub fn merged(&self) -> MapCounts {
        let mut macs: HashMap<MacKey, Counter> = self.macs.iter().copied().collect();
        let mut flows: HashMap<FlowKey, Counter> = self.flows.iter().copied().collect();
        for &(key, c) in &self.cached {
            let pair = MacKey {
                ifindex: key.ifindex,
                direction: key.direction,
                src: key.src_mac,
                dst: key.dst_mac,
                ..MacKey::default()
            };
            let mac = macs.entry(pair).or_default();
            mac.bytes += c.bytes;
            mac.packets += c.packets;
            // An aggregate key is its MAC pair's alone.
            if key.other == 0 {
                let flow = flows.entry(key).or_default();
                flow.bytes += c.bytes;
                flow.packets += c.packets;
            }
        }
        MapCounts {
            macs: macs.into_iter().collect(),
            flows: flows.into_iter().collect(),
            cached: Vec::new(),
            ..*self
        }
    }
}

/// Entries idle for the expiry time: delete them from the kernel maps and
/// report them with [`Traffic::deleted`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub macs: Vec<MacKey>,
    pub flows: Vec<FlowKey>,
}

/// What one read says of a flow.
#[derive(Clone, Copy)]
enum Counted {
    /// The flow cache's count of the interval.
    Delta(Counter),
    /// The flow map entry's running total.
    Total(Counter),
}

/// Everything the agent derives from the maps.
#[derive(Debug)]
pub struct Traffic {
    idle_expiry: Duration,
    generation: u64,
    last_update: Option<Instant>,
    macs: FastMap<MacKey, Tracked>,
    pub devices: Lru<Device>,
    pub flows: Lru<Flow>,
    /// Kernel flow-map baselines of flows evicted from `flows` while their
    /// kernel entry existed; at most one per kernel entry, dropped when the
    /// entry is gone from a read.
    orphans: FastMap<FlowKey, Tracked>,
    pub interfaces: FastMap<u32, InterfaceTotals>,
    pub globals: Globals,
    pub mac_map: MapStats,
    pub flow_map: MapStats,
    pub flow_cache: CacheStats,
    /// The agent's flow table.
    pub flow_table: TableStats,
    /// The agent's device table.
    pub device_table: TableStats,
    /// Length of the last interval, used for the rates.
    pub interval: Duration,
}

impl Traffic {
    /// Devices, flows and map entries idle for `idle_expiry` are forgotten;
    /// the tables hold at most [`DEFAULT_MAX_FLOWS`] flows and
    /// [`DEFAULT_MAX_DEVICES`] devices.
    pub fn new(idle_expiry: Duration) -> Self {
        Traffic::with_limits(
            idle_expiry,
            DEFAULT_MAX_FLOWS as usize,
            DEFAULT_MAX_DEVICES as usize,
        )
    }

    /// As [`Traffic::new`], with at most `max_flows` flows and
    /// `max_devices` devices (each at least 2).
    pub fn with_limits(idle_expiry: Duration, max_flows: usize, max_devices: usize) -> Self {
        // A frame touches two devices: both must fit.
        let (max_flows, max_devices) = (max_flows.max(2), max_devices.max(2));
        Traffic {
            idle_expiry,
            generation: 0,
            last_update: None,
            macs: FastMap::default(),
            devices: Lru::new(max_devices),
            flows: Lru::new(max_flows),
            orphans: FastMap::default(),
            interfaces: FastMap::default(),
            globals: Globals::default(),
            mac_map: MapStats::default(),
            flow_map: MapStats::default(),
            flow_cache: CacheStats::default(),
            flow_table: TableStats {
                capacity: max_flows as u64,
                ..TableStats::default()
            },
            device_table: TableStats {
                capacity: max_devices as u64,
                ..TableStats::default()
            },
            interval: Duration::ZERO,
        }
    }

    /// Adds `c` to interface `ifindex`'s [`OtherFlows`] in `dir`: frames
    /// counted on the interface but in no flow.
    pub fn add_other(&mut self, ifindex: u32, dir: u8, c: Counter) {
        let other = &mut self.interfaces.entry(ifindex).or_default().other;
        let side = if dir == direction::EGRESS {
            &mut other.tx
        } else {
            &mut other.rx
        };
        side.bytes += c.bytes;
        side.packets += c.packets;
    }

    /// The flows a snapshot lists: every flow when there are at most `n`,
    /// else the union of the top `n` by each order the API sorts by (the
    /// last interval's bytes, total bytes, total packets; each tie broken
    /// by the other count), in no particular order. O(flows) per order.
    pub fn listed_flows(&self, n: usize) -> Vec<Flow> {
        let len = self.flows.len();
        if len <= n {
            return self.flows.values().cloned().collect();
        }
        let mut keep = vec![false; len];
        if n > 0 {
            // One pass over the table (its values are hundreds of bytes
            // each, spread over megabytes) for the three counts the orders
            // use; each order then ranks this compact copy.
            let counts: Vec<[u64; 3]> = self
                .flows
                .values()
                .map(|f| [f.last.bytes, f.meter.total.bytes, f.meter.total.packets])
                .collect();
            // Positions in `counts`, 4 bytes a flow (not a copy of the
            // counts: megabytes at 100,000 flows, at the drain's peak).
            let mut ranked: Vec<u32> = Vec::with_capacity(len);
            for (a, b) in [(0, 1), (1, 2), (2, 1)] {
                ranked.clear();
                ranked.extend(0..len as u32);
                let by = |i: &u32| {
                    let c = &counts[*i as usize];
                    (c[a], c[b])
                };
                ranked.select_nth_unstable_by(n - 1, |x, y| by(y).cmp(&by(x)));
                for &r in &ranked[..n] {
                    keep[r as usize] = true;
                }
            }
        }
        self.flows
            .values()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// Records that the caller deleted these many expired entries (which
    /// leaves the eviction count unchanged).
    pub fn deleted(&mut self, macs: u64, flows: u64) {
        for (m, n) in [(&mut self.mac_map, macs), (&mut self.flow_map, flows)] {
            m.entries = m.entries.saturating_sub(n);
            m.deleted += n;
        }
    }

    /// Adds `d`, frames from `src` to `dst` on `ifindex` in `dir`, to both
    /// devices and to the interface.
    #[allow(clippy::too_many_arguments)]
    fn count_frames(
        &mut self,
        ifindex: u32,
        dir: u8,
        src: [u8; 6],
        dst: [u8; 6],
        d: Counter,
        now: Instant,
        wall: SystemTime,
    ) {
        if d.packets == 0 && d.bytes == 0 {
            return;
        }
        self.device(ifindex, src, now, wall).tx += d;
        self.device(ifindex, dst, now, wall).rx += d;
        let iface = self.interfaces.entry(ifindex).or_default();
        if dir == direction::EGRESS {
            iface.tx += d;
        } else {
            iface.rx += d;
        }
    }

    /// Adds what `counted` says to the flow `key` (creating it) and ties
    /// the flow's on-link IPs to its devices. One lookup of the flow.
    #[allow(clippy::too_many_arguments)]
    fn count_flow(
        &mut self,
        key: FlowKey,
        hash: u64,
        counted: Counted,
        now: Instant,
        wall: SystemTime,
        subnets: &Subnets,
        memo: &mut DeviceMemo,
    ) {
        let generation = self.generation;
        let pos = match self.flows.find_hashed(hash, &key) {
            Some(pos) => pos,
            None => {
                // A flow evicted earlier keeps its kernel entry's baseline.
                let orphan = self.orphans.remove(&key);
                let kernel = orphan.map(|t| (t.last, tag(t.generation)));
                if let (Counted::Total(value), Some(last)) = (counted, baseline(kernel, generation))
                    && delta(last, value).packets == 0
                {
                    // Nothing new: stay out of the table (an insert would
                    // evict an active flow for an idle one).
                    let t = orphan.expect("a baseline comes from an orphan");
                    self.orphans.insert(
                        key,
                        Tracked {
                            last: value,
                            generation,
                            ..t
                        },
                    );
                    return;
                }
                let found = self.flows.insert_or_find(key, || {
                    let mut flow = Flow {
                        key,
                        meter: Meter::default(),
                        last: Counter::default(),
                        first_seen: wall,
                        last_seen: wall,
                        active_at: now,
                        kernel_last: Counter::default(),
                        kernel_seen: 0,
                    };
                    flow.set_kernel(kernel);
                    flow
                });
                if let Some(gone) = found.evicted {
                    self.evicted(gone);
                }
                found.pos
            }
        };
        let flow = self.flows.at_mut(pos);
        let d = match counted {
            Counted::Delta(d) => d,
            Counted::Total(value) => {
                let d = match baseline(flow.kernel(), generation) {
                    Some(last) => delta(last, value),
                    None => value,
                };
                flow.set_kernel(Some((value, tag(generation))));
                d
            }
        };
        flow.meter += d;
        if d.packets == 0 && d.bytes == 0 {
            return;
        }
        flow.active_at = now;
        flow.last_seen = wall;
        self.flows.touch(pos);
        for (side, (mac, ip)) in [(key.src_mac, key.src), (key.dst_mac, key.dst)]
            .into_iter()
            .enumerate()
        {
            let ip = key_ip(ip);
            if ip.is_multicast() {
                continue;
            }
            // The device's most recent address is the usual case, and
            // cheaper to see than whether the address is on-link.
            let Some(pos) = memo.find(&self.devices, side, (key.ifindex, mac)) else {
                continue;
            };
            let dev = self.devices.at_mut(pos);
            if dev.ips.front() != Some(&ip) && subnets.is_local(key.ifindex, ip) {
                remember_ip(&mut dev.ips, ip);
            }
        }
    }

    /// Folds a flow evicted from the table into its interface's "other"
    /// totals, and keeps its kernel entry's baseline while that entry may
    /// still be read.
    fn evicted(&mut self, gone: Flow) {
        self.flow_table.evictions += 1;
        let k = gone.key;
        self.add_other(k.ifindex, k.direction, gone.meter.total_with_pending());
        self.interfaces
            .entry(k.ifindex)
            .or_default()
            .other
            .evicted_flows += 1;
        if let Some((last, seen)) = gone.kernel()
            && recent(seen, self.generation)
        {
            // The read that saw it, in full.
            let generation = if seen == tag(self.generation) {
                self.generation
            } else {
                self.generation - 1
            };
            self.orphans.insert(
                k,
                Tracked {
                    last,
                    generation,
                    active_at: gone.active_at,
                },
            );
        }
    }

    /// Forgets an interface's totals (it was removed from the system).
    pub fn forget_interface(&mut self, ifindex: u32) {
        self.interfaces.remove(&ifindex);
    }

    fn device(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        now: Instant,
        wall: SystemTime,
    ) -> &mut Device {
        let found = self.devices.insert_or_find((ifindex, mac), || Device {
            ifindex,
            mac,
            tx: Meter::default(),
            rx: Meter::default(),
            ips: VecDeque::new(),
            first_seen: wall,
            last_seen: wall,
            active_at: now,
        });
        if found.evicted.is_some() {
            self.device_table.evictions += 1;
        }
        self.devices.touch(found.pos);
        let dev = self.devices.at_mut(found.pos);
        dev.last_seen = wall;
        dev.active_at = now;
        dev
    }
}

fn remember_ip(ips: &mut VecDeque<IpAddr>, ip: IpAddr) {
    if ips.front() == Some(&ip) {
        return;
    }
    if let Some(pos) = ips.iter().position(|&x| x == ip) {
        ips.remove(pos);
    }
    ips.push_front(ip);
    ips.truncate(MAX_IPS_PER_DEVICE);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use netmon_common::{proto, v4_mapped};

    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn mac(dir: u8, src: [u8; 6], dst: [u8; 6]) -> MacKey {
        MacKey {
            ifindex: 2,
            direction: dir,
            src,
            dst,
            ..Default::default()
        }
    }

    fn flow(src: [u8; 4], dst: [u8; 4]) -> FlowKey {
        FlowKey {
            ifindex: 2,
            direction: direction::INGRESS,
            proto: proto::UDP,
            src_mac: A,
            dst_mac: B,
            src: v4_mapped(src),
            dst: v4_mapped(dst),
            ..Default::default()
        }
    }

    fn c(bytes: u64, packets: u64) -> Counter {
        Counter { bytes, packets }
    }

    fn reading(macs: &[(MacKey, Counter)], flows: &[(FlowKey, Counter)]) -> MapCounts {
        MapCounts {
            macs: macs.to_vec(),
            flows: flows.to_vec(),
            ..Default::default()
        }
    }

    struct Clock {
        t0: Instant,
        w0: SystemTime,
    }

    impl Clock {
        fn at(&self, secs: u64) -> (Instant, SystemTime) {
            let d = Duration::from_secs(secs);
            (self.t0 + d, self.w0 + d)
        }
    }

    fn clock() -> Clock {
        Clock {
            t0: Instant::now(),
            w0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn device_tx_and_rx_come_from_the_mac_pair_map() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(300));
        let subnets = Subnets::default();
        let k = mac(direction::INGRESS, A, B);
        let (now, wall) = clk.at(0);
        t.update(now, wall, &reading(&[(k, c(1000, 10))], &[]), &subnets);
        let (now, wall) = clk.at(1);
        t.update(now, wall, &reading(&[(k, c(3000, 30))], &[]), &subnets);
        let a = &t.devices[&(2, A)];
        let b = &t.devices[&(2, B)];
        assert_eq!(a.tx.total, c(3000, 30));
        assert_eq!(a.rx.total, c(0, 0));
        assert_eq!(b.rx.total, c(3000, 30));
        assert_eq!(a.tx.rate.bits_per_second, 16_000.0);
        assert_eq!(a.tx.rate.packets_per_second, 20.0);
        assert_eq!(t.interfaces[&2].rx.total, c(3000, 30));
        assert_eq!(t.interfaces[&2].tx.total, c(0, 0));
    }

    #[test]
    fn device_totals_survive_flow_evictions() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(300));
        let s = Subnets::default();
        let k = mac(direction::INGRESS, A, B);
        let f1 = flow([10, 0, 0, 1], [10, 0, 0, 2]);
        let f2 = flow([10, 0, 0, 1], [10, 0, 0, 3]);
        let (now, wall) = clk.at(0);
        t.update(
            now,
            wall,
            &reading(&[(k, c(100, 1))], &[(f1, c(100, 1))]),
            &s,
        );
        // f1 was evicted by the kernel to make room for f2.
        let (now, wall) = clk.at(1);
        t.update(
            now,
            wall,
            &reading(&[(k, c(300, 2))], &[(f2, c(200, 1))]),
            &s,
        );
        assert_eq!(t.devices[&(2, A)].tx.total, c(300, 2));
        // The evicted flow keeps what it counted until it has been idle
        // for the expiry time; it has no kernel entry left to delete.
        assert_eq!(t.flows[&f1].meter.total, c(100, 1));
        assert_eq!(t.flows[&f2].meter.total, c(200, 1));
        let (now, wall) = clk.at(301);
        let expired = t.update(
            now,
            wall,
            &reading(&[(k, c(300, 2))], &[(f2, c(200, 1))]),
            &s,
        );
        assert!(!t.flows.contains_key(&f1) && !t.flows.contains_key(&f2));
        assert_eq!(
            expired.flows,
            vec![f2],
            "only f2 is still in the kernel map"
        );
    }

    #[test]
    fn recreated_entry_never_gives_a_negative_or_huge_delta() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(300));
        let s = Subnets::default();
        let k = mac(direction::EGRESS, A, B);
        let (now, wall) = clk.at(0);
        t.update(now, wall, &reading(&[(k, c(1_000_000, 1000))], &[]), &s);
        let (now, wall) = clk.at(1);
        t.update(now, wall, &reading(&[(k, c(60, 1))], &[]), &s);
        assert_eq!(t.devices[&(2, A)].tx.total, c(1_000_060, 1001));
        assert_eq!(t.interfaces[&2].tx.total, c(1_000_060, 1001));
    }

    #[test]
    fn idle_entries_expire_and_resume_from_zero_without_loss() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(10));
        let s = Subnets::default();
        let k = mac(direction::INGRESS, A, B);
        let f = flow([10, 0, 0, 1], [10, 0, 0, 2]);
        let (now, wall) = clk.at(0);
        t.update(
            now,
            wall,
            &reading(&[(k, c(100, 1))], &[(f, c(100, 1))]),
            &s,
        );
        let (now, wall) = clk.at(5);
        let exp = t.update(
            now,
            wall,
            &reading(&[(k, c(100, 1))], &[(f, c(100, 1))]),
            &s,
        );
        assert_eq!(exp, Expired::default());
        let (now, wall) = clk.at(10);
        let exp = t.update(
            now,
            wall,
            &reading(&[(k, c(100, 1))], &[(f, c(100, 1))]),
            &s,
        );
        assert_eq!(exp.macs, vec![k]);
        assert_eq!(exp.flows, vec![f]);
        assert!(t.devices.is_empty(), "idle devices are forgotten");
        t.deleted(1, 1);
        // The conversation resumes: a new kernel entry counts from zero.
        let (now, wall) = clk.at(11);
        t.update(now, wall, &reading(&[(k, c(50, 1))], &[(f, c(50, 1))]), &s);
        assert_eq!(t.devices[&(2, A)].tx.total, c(50, 1));
        assert_eq!(
            t.interfaces[&2].rx.total,
            c(150, 2),
            "interface totals never expire"
        );
    }

    #[test]
    fn map_stats_count_evictions() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(300));
        let s = Subnets::default();
        // Five flows created in a map of four: one is in the map, four were
        // evicted.
        let mut r = reading(&[], &[(flow([10, 0, 0, 1], [10, 0, 0, 2]), c(1, 1))]);
        r.globals.flow_inserts = 5;
        r.flow_capacity = 4;
        let (now, wall) = clk.at(0);
        t.update(now, wall, &r, &s);
        let stats = |entries, deleted, evictions| MapStats {
            entries,
            capacity: 4,
            inserts: 5,
            deleted,
            evictions,
        };
        assert_eq!(t.flow_map, stats(1, 0, 4));
        // The agent deletes the idle one: not an eviction.
        t.deleted(0, 1);
        assert_eq!(t.flow_map, stats(0, 1, 4));
        r.flows.clear();
        let (now, wall) = clk.at(1);
        t.update(now, wall, &r, &s);
        assert_eq!(t.flow_map, stats(0, 1, 4));
    }

    #[test]
    fn ips_are_tied_to_the_mac_that_used_them_when_on_link() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(300));
        let mut s = Subnets::default();
        s.add(2, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 24);
        let k = mac(direction::INGRESS, A, B);
        let local = flow([10, 0, 0, 1], [10, 0, 0, 2]);
        let remote = flow([10, 0, 0, 1], [10, 9, 9, 9]);
        let (now, wall) = clk.at(0);
        t.update(
            now,
            wall,
            &reading(
                &[(k, c(200, 2))],
                &[(local, c(100, 1)), (remote, c(100, 1))],
            ),
            &s,
        );
        let a: Vec<_> = t.devices[&(2, A)].ips.iter().copied().collect();
        let b: Vec<_> = t.devices[&(2, B)].ips.iter().copied().collect();
        assert_eq!(a, vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]);
        assert_eq!(b, vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))]);
    }

    fn cached(flows: &[(FlowKey, Counter)]) -> MapCounts {
        MapCounts {
            cached: flows.to_vec(),
            ..Default::default()
        }
    }

    /// Listed flows plus "other", per interface and direction: every frame
    /// counted in a flow.
    fn flow_sum(t: &Traffic) -> Counter {
        let mut sum = t.interfaces[&2].other.rx;
        for f in t.flows.values() {
            sum.bytes += f.meter.total.bytes;
            sum.packets += f.meter.total.packets;
        }
        sum
    }

    #[test]
    fn a_full_flow_table_evicts_the_least_recently_active_into_other() {
        let clk = clock();
        let mut t = Traffic::with_limits(Duration::from_secs(300), 2, 16);
        let s = Subnets::default();
        let f1 = flow([10, 0, 0, 1], [10, 0, 0, 9]);
        let f2 = flow([10, 0, 0, 2], [10, 0, 0, 9]);
        let f3 = flow([10, 0, 0, 3], [10, 0, 0, 9]);
        let (now, wall) = clk.at(0);
        t.update(now, wall, &cached(&[(f1, c(100, 1)), (f2, c(200, 2))]), &s);
        let (now, wall) = clk.at(1);
        t.update(now, wall, &cached(&[(f1, c(10, 1))]), &s);
        // f2 is the least recently active: f3 takes its place.
        let (now, wall) = clk.at(2);
        t.update(now, wall, &cached(&[(f3, c(30, 1))]), &s);
        assert!(t.flows.contains_key(&f1) && t.flows.contains_key(&f3));
        assert!(!t.flows.contains_key(&f2));
        assert_eq!(t.flows.len(), 2);
        assert_eq!(t.flow_table.evictions, 1);
        assert_eq!(t.flow_table.entries, 2);
        let other = t.interfaces[&2].other;
        assert_eq!(other.rx, c(200, 2), "f2's totals");
        assert_eq!(other.evicted_flows, 1);
        assert_eq!(flow_sum(&t), c(340, 5));
        // Interface and device totals come from the same frames, evicted
        // or not.
        assert_eq!(t.interfaces[&2].rx.total, c(340, 5));
        assert_eq!(t.devices[&(2, A)].tx.total, c(340, 5));
        // f2 comes back: a new flow, counted from what is new.
        let (now, wall) = clk.at(3);
        t.update(now, wall, &cached(&[(f2, c(20, 1))]), &s);
        assert_eq!(t.flows[&f2].meter.total, c(20, 1));
        assert!(!t.flows.contains_key(&f1), "f1 was the oldest then");
        assert_eq!(flow_sum(&t), c(360, 6));
        assert_eq!(t.interfaces[&2].rx.total, c(360, 6));
    }

    /// A flow evicted while its kernel flow-map entry lives on: re-reading
    /// that entry never counts what was already counted.
    #[test]
    fn read_tags_are_never_zero_and_consecutive_across_the_wrap() {
        let wrap = u64::from(u32::MAX);
        assert_ne!(tag(0), 0);
        for g in [
            2,
            3,
            wrap - 1,
            wrap,
            wrap + 1,
            wrap + 2,
            2 * wrap,
            2 * wrap + 1,
        ] {
            assert_ne!(tag(g), 0);
            assert!(recent(tag(g), g) && recent(tag(g - 1), g));
            assert!(!recent(tag(g - 2), g), "{g}");
        }
        assert!(size_of::<Flow>() <= 184, "{}", size_of::<Flow>());
    }

    #[test]
    fn an_evicted_flow_with_a_kernel_entry_is_never_counted_twice() {
        let clk = clock();
        let mut t = Traffic::with_limits(Duration::from_secs(10), 2, 16);
        let s = Subnets::default();
        let f1 = flow([10, 0, 0, 1], [10, 0, 0, 9]);
        let f2 = flow([10, 0, 0, 2], [10, 0, 0, 9]);
        let f3 = flow([10, 0, 0, 3], [10, 0, 0, 9]);
        let (now, wall) = clk.at(0);
        t.update(now, wall, &reading(&[], &[(f1, c(100, 1))]), &s);
        // Two cached flows push f1 out; its kernel entry is in the same
        // read, unchanged.
        let mut r = reading(&[], &[(f1, c(100, 1))]);
        r.cached = vec![(f2, c(20, 1)), (f3, c(30, 1))];
        let (now, wall) = clk.at(1);
        t.update(now, wall, &r, &s);
        assert!(!t.flows.contains_key(&f1));
        assert_eq!(t.interfaces[&2].other.rx, c(100, 1));
        // Read again, unchanged: nothing new, and it stays out of the table.
        for secs in 2..5 {
            let (now, wall) = clk.at(secs);
            t.update(now, wall, &reading(&[], &[(f1, c(100, 1))]), &s);
            assert_eq!(flow_sum(&t), c(150, 3), "after {secs} s");
        }
        assert!(t.flows.contains_key(&f2) && t.flows.contains_key(&f3));
        // It grows: only the growth is new.
        let (now, wall) = clk.at(5);
        t.update(now, wall, &reading(&[], &[(f1, c(160, 2))]), &s);
        assert_eq!(t.flows[&f1].meter.total, c(60, 1));
        assert_eq!(flow_sum(&t), c(210, 4));
        assert_eq!(t.flow_table.evictions, 2, "f2 made room for f1");
        // Evicted again by two cached flows, then idle for the expiry
        // time: its kernel entry is deleted like any idle entry.
        let f4 = flow([10, 0, 0, 4], [10, 0, 0, 9]);
        let mut r = reading(&[], &[(f1, c(160, 2))]);
        r.cached = vec![(f3, c(1, 1)), (f4, c(1, 1))];
        let (now, wall) = clk.at(6);
        t.update(now, wall, &r, &s);
        assert!(!t.flows.contains_key(&f1));
        let (now, wall) = clk.at(15);
        let expired = t.update(now, wall, &reading(&[], &[(f1, c(160, 2))]), &s);
        assert_eq!(expired.flows, vec![f1]);
        assert_eq!(flow_sum(&t), c(212, 6));
    }

    #[test]
    fn a_full_device_table_evicts_the_least_recently_active() {
        let clk = clock();
        let mut t = Traffic::with_limits(Duration::from_secs(300), 16, 3);
        let s = Subnets::default();
        let m = |i: u8| [2, 0, 0, 0, 1, i];
        let (now, wall) = clk.at(0);
        t.update(
            now,
            wall,
            &reading(&[(mac(direction::INGRESS, m(1), m(2)), c(10, 1))], &[]),
            &s,
        );
        let (now, wall) = clk.at(1);
        t.update(
            now,
            wall,
            &reading(
                &[
                    (mac(direction::INGRESS, m(1), m(2)), c(10, 1)),
                    (mac(direction::INGRESS, m(3), m(4)), c(10, 1)),
                ],
                &[],
            ),
            &s,
        );
        assert_eq!(t.devices.len(), 3);
        assert_eq!(t.device_table.evictions, 1);
        assert!(!t.devices.contains_key(&(2, m(1))), "the oldest goes");
        assert_eq!(t.interfaces[&2].rx.total, c(20, 2), "interface exact");
    }

    #[test]
    fn listed_flows_are_the_top_by_each_order() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(300));
        let s = Subnets::default();
        // 20 flows: 0..20 bytes, packets the other way round.
        let flows: Vec<(FlowKey, Counter)> = (0..20u8)
            .map(|i| {
                (
                    flow([10, 0, 1, i], [10, 0, 0, 9]),
                    c(1000 + u64::from(i), 40 - u64::from(i)),
                )
            })
            .collect();
        let (now, wall) = clk.at(0);
        t.update(now, wall, &cached(&flows), &s);
        // In the next interval only flow 5 is active.
        let (now, wall) = clk.at(1);
        t.update(now, wall, &cached(&[(flows[5].0, c(1, 1))]), &s);
        assert_eq!(t.listed_flows(20).len(), 20);
        let mut listed: Vec<u8> = t.listed_flows(2).iter().map(|f| f.key.src[15]).collect();
        listed.sort();
        // Last interval: 5 and (tie on 0 bytes, most bytes) 19; bytes: 19,
        // 18; packets: 0, 1.
        assert_eq!(listed, [0, 1, 5, 18, 19]);
    }

    /// Only flows active in the interval or the one before are closed
    /// each drain; every other flow's rate and last interval must still
    /// read zero, and totals stay exact.
    #[test]
    fn idle_flows_read_zero_rates_while_only_active_ones_are_closed() {
        let clk = clock();
        let mut t = Traffic::new(Duration::from_secs(300));
        let s = Subnets::default();
        let f: Vec<FlowKey> = (0..4u8)
            .map(|i| flow([10, 0, 1, i], [10, 0, 0, 9]))
            .collect();
        // Which flows send 100 bytes in each interval.
        let active: [&[usize]; 6] = [&[0, 1, 2, 3], &[1], &[], &[2], &[0, 2], &[]];
        let mut sent = [0u64; 4];
        for (secs, now_active) in active.iter().enumerate() {
            let counts: Vec<_> = now_active.iter().map(|&i| (f[i], c(100, 1))).collect();
            let (now, wall) = clk.at(secs as u64);
            t.update(now, wall, &cached(&counts), &s);
            for &i in *now_active {
                sent[i] += 100;
            }
            for (i, key) in f.iter().enumerate() {
                let flow = &t.flows[key];
                let was = now_active.contains(&i);
                assert_eq!(flow.meter.total.bytes, sent[i], "flow {i} at {secs} s");
                assert_eq!(
                    flow.last.bytes,
                    if was { 100 } else { 0 },
                    "flow {i} at {secs} s"
                );
                let bps = if was && secs > 0 { 800.0 } else { 0.0 };
                assert_eq!(flow.meter.rate.bits_per_second, bps, "flow {i} at {secs} s");
            }
        }
    }

    #[test]
    fn key_ip_unmaps_ipv4() {
        assert_eq!(
            key_ip(v4_mapped([10, 1, 2, 3])),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
        );
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(key_ip(v6.octets()), IpAddr::V6(v6));
    }

    #[test]
    fn a_device_remembers_at_most_sixteen_ips_most_recent_first() {
        let mut ips = VecDeque::new();
        for i in 0..20u8 {
            remember_ip(&mut ips, IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)));
        }
        remember_ip(&mut ips, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)));
        assert_eq!(ips.len(), MAX_IPS_PER_DEVICE);
        assert_eq!(ips[0], IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)));
        assert_eq!(ips[1], IpAddr::V4(Ipv4Addr::new(10, 0, 0, 19)));
    }
}
