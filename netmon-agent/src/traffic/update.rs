//! [`Traffic::update`]: folding one read of the maps, in phases, so that
//! the agent can fold the flow cache's slots a chunk at a time as it reads
//! them ([`Traffic::begin`], [`Traffic::fold_cached`], [`Traffic::finish`])
//! instead of holding every slot of a drain at once (72 bytes each: 10 MiB
//! at 100,000 flows).

use std::{
    collections::hash_map::Entry,
    time::{Duration, Instant, SystemTime},
};

use netmon_common::{Counter, FlowKey, MacKey};

use super::{
    CacheStats, Counted, Expired, FastMap, MapCounts, Tracked, Traffic,
    fold::{self, CachePair, DeviceMemo},
    tag,
};
use crate::{ifaces::Subnets, rates::delta};

/// One update in progress: from [`Traffic::begin`] to [`Traffic::finish`].
#[derive(Debug)]
pub struct Fold {
    now: Instant,
    wall: SystemTime,
    previous: Option<Instant>,
    elapsed: Duration,
    /// Flow-cache slots folded so far.
    slots: u64,
}

impl Traffic {
    /// Folds one full read of the maps, taken at `now` (`wall` on the
    /// system clock), into the totals and rates. Returns the entries idle
    /// for the expiry time, which the caller deletes from the kernel.
    pub fn update(
        &mut self,
        now: Instant,
        wall: SystemTime,
        reading: &MapCounts,
        subnets: &Subnets,
    ) -> Expired {
        let mut f = self.begin(now, wall, &reading.macs);
        self.fold_cached(&mut f, &reading.cached, subnets);
        self.finish(f, reading, subnets)
    }

    /// Starts folding a read taken at `now` (`wall`): the MAC-pair map's
    /// entries. Then [`Traffic::fold_cached`] for the flow cache's slots
    /// (in any number of parts) and [`Traffic::finish`].
    pub fn begin(&mut self, now: Instant, wall: SystemTime, macs: &[(MacKey, Counter)]) -> Fold {
        self.generation += 1;
        let generation = self.generation;
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.interval = elapsed;
        let previous = self.last_update.replace(now);

        for &(key, value) in macs {
            let d = match self.macs.entry(key) {
                Entry::Occupied(mut e) => {
                    let t = e.get_mut();
                    let d = delta(t.last, value);
                    t.last = value;
                    t.generation = generation;
                    if d.packets != 0 {
                        t.active_at = now;
                    }
                    d
                }
                Entry::Vacant(e) => {
                    e.insert(Tracked {
                        last: value,
                        generation,
                        active_at: now,
                    });
                    value
                }
            };
            self.count_frames(key.ifindex, key.direction, key.src, key.dst, d, now, wall);
        }
        Fold {
            now,
            wall,
            previous,
            elapsed,
            slots: 0,
        }
    }

    /// Folds flow-cache slots of the read (part or all of them): exact
    /// counts of the interval, no baseline. Splitting the slots into parts
    /// changes no total.
    pub fn fold_cached(&mut self, f: &mut Fold, cached: &[(FlowKey, Counter)], subnets: &Subnets) {
        let (now, wall) = (f.now, f.wall);
        f.slots += cached.len() as u64;
        // First the devices and interfaces, before any flow (so the devices
        // exist for the flows' addresses). Slots of one MAC pair come in
        // runs (a CPU's slots, many flows between the same two hosts or a
        // host and its gateway): a run counts once, with its sum, for two
        // device lookups a run rather than a slot.
        let mut run: Option<(CachePair, Counter)> = None;
        for &(key, d) in cached {
            let pair = CachePair::of(&key);
            match &mut run {
                Some((p, sum)) if *p == pair => {
                    sum.bytes += d.bytes;
                    sum.packets += d.packets;
                }
                _ => {
                    if let Some((p, sum)) = run.replace((pair, d)) {
                        self.count_frames(p.ifindex, p.direction, p.src, p.dst, sum, now, wall);
                    }
                }
            }
        }
        if let Some((p, sum)) = run {
            self.count_frames(p.ifindex, p.direction, p.src, p.dst, sum, now, wall);
        }
        // Then the flows, in the order of the flow table's index (see
        // fold::order). A MAC pair's aggregate of flows the maps could not
        // take counted in its devices and interface above, and is no flow.
        let mut memo = DeviceMemo::default();
        let order = fold::order(&self.flows, cached, |k| k.other == 0);
        for (j, &(hash, i)) in order.iter().enumerate() {
            if let Some(&next) = order.get(j + fold::AHEAD) {
                fold::prefetch_entry(&self.flows, cached, next);
            }
            let (key, d) = cached[i as usize];
            let counted = Counted::Delta(d);
            self.count_flow(key, hash, counted, now, wall, subnets, &mut memo);
        }
    }

    /// Ends the update `f`: folds the flow map's entries of `reading` (its
    /// `macs` and `cached` were folded already), closes the interval's
    /// rates and returns the entries idle for the expiry time.
    pub fn finish(&mut self, f: Fold, reading: &MapCounts, subnets: &Subnets) -> Expired {
        let Fold {
            now,
            wall,
            previous,
            elapsed,
            slots,
        } = f;
        let generation = self.generation;
        let mut memo = DeviceMemo::default();
        let order = fold::order(&self.flows, &reading.flows, |_| true);
        for (j, &(hash, i)) in order.iter().enumerate() {
            if let Some(&next) = order.get(j + fold::AHEAD) {
                fold::prefetch_entry(&self.flows, &reading.flows, next);
            }
            let (key, value) = reading.flows[i as usize];
            let counted = Counted::Total(value);
            self.count_flow(key, hash, counted, now, wall, subnets, &mut memo);
        }
        drop(order);

        let expiry = self.idle_expiry;
        let idle = |active_at: Instant| now.saturating_duration_since(active_at) >= expiry;
        let mut expired = Expired::default();
        // Entries not in this reading were evicted (or deleted) from the
        // kernel: forget them. Idle ones are returned for deletion.
        retain_read(&mut self.macs, generation, &idle, &mut expired.macs);
        // Only flows that counted something in this interval or the one
        // before have a delta, a rate or a last interval to close: those
        // were touched at `now` or `previous` and lead the table's order
        // of activity. The rest closed to zero when they went idle.
        self.flows.newest_while(|f| {
            if previous.is_some_and(|p| f.active_at < p) {
                return false;
            }
            f.last = f.meter.close(elapsed);
            true
        });
        // The table is in order of activity: the idle ones are the oldest.
        while let Some(f) = self.flows.oldest().filter(|f| idle(f.active_at)) {
            // Only entries in this reading are still in the kernel map.
            if f.kernel().is_some_and(|(_, seen)| seen == tag(generation)) {
                expired.flows.push(f.key);
            }
            self.flows.pop_oldest();
        }
        // Baselines of evicted flows whose kernel entries are gone (not in
        // this reading) are dropped; idle ones are deleted like any entry.
        retain_read(&mut self.orphans, generation, &idle, &mut expired.flows);
        for d in self.devices.values_mut() {
            d.tx.close(elapsed);
            d.rx.close(elapsed);
        }
        while self.devices.oldest().is_some_and(|d| idle(d.active_at)) {
            self.devices.pop_oldest();
        }
        for iface in self.interfaces.values_mut() {
            iface.rx.close(elapsed);
            iface.tx.close(elapsed);
        }

        self.globals = reading.globals;
        self.mac_map.capacity = reading.mac_capacity;
        self.flow_map.capacity = reading.flow_capacity;
        self.mac_map
            .update(reading.macs.len() as u64, reading.globals.mac_inserts);
        self.flow_map
            .update(reading.flows.len() as u64, reading.globals.flow_inserts);
        self.flow_cache = CacheStats {
            slots_used: slots,
            capacity: reading.cache_capacity,
            misses: reading.globals.cache_misses,
        };
        self.flow_table.entries = self.flows.len() as u64;
        self.device_table.entries = self.devices.len() as u64;
        expired
    }
}

/// Forgets the entries of `map` that the reading `generation` did not
/// see (evicted or deleted from the kernel), and the idle ones, whose
/// keys go to `expired` for deletion from the kernel.
fn retain_read<K: Copy + Eq + std::hash::Hash>(
    map: &mut FastMap<K, Tracked>,
    generation: u64,
    idle: &impl Fn(Instant) -> bool,
    expired: &mut Vec<K>,
) {
    map.retain(|key, t| {
        if t.generation != generation {
            return false;
        }
        if idle(t.active_at) {
            expired.push(*key);
            return false;
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use netmon_common::{direction, proto, v4_mapped};

    use super::*;

    /// `n` flows over a few MAC pairs (consecutive flows sharing one, as a
    /// CPU's slots do), each with its own counts.
    fn slots(n: u8, round: u64) -> Vec<(FlowKey, Counter)> {
        (0..n)
            .map(|i| {
                let key = FlowKey {
                    ifindex: 2,
                    direction: direction::INGRESS,
                    proto: proto::UDP,
                    src_mac: [2, 0, 0, 0, 0, i / 5],
                    dst_mac: [2, 0, 0, 0, 1, i % 3],
                    src: v4_mapped([10, 0, 0, i]),
                    dst: v4_mapped([10, 0, 1, i % 7]),
                    ..Default::default()
                };
                let c = Counter {
                    bytes: 100 * u64::from(i) + round,
                    packets: u64::from(i % 4) + round,
                };
                (key, c)
            })
            .collect()
    }

    #[test]
    fn folding_the_cache_in_parts_counts_as_folding_it_whole() {
        let t0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let subnets = Subnets::default();
        let mut whole = Traffic::new(Duration::from_secs(300));
        let mut parts = Traffic::new(Duration::from_secs(300));
        for round in 0..3 {
            let (now, wall) = (t0 + Duration::from_secs(round), w0);
            let reading = MapCounts {
                cached: slots(40, round),
                ..Default::default()
            };
            whole.update(now, wall, &reading, &subnets);
            let mut f = parts.begin(now, wall, &reading.macs);
            for p in reading.cached.chunks(7) {
                parts.fold_cached(&mut f, p, &subnets);
            }
            parts.finish(f, &reading, &subnets);
        }
        assert_eq!(parts.flow_cache, whole.flow_cache);
        assert_eq!(parts.flow_cache.slots_used, 40);
        assert_eq!(parts.flows.len(), whole.flows.len());
        for f in whole.flows.values() {
            let p = &parts.flows[&f.key];
            assert_eq!((p.meter.total, p.last), (f.meter.total, f.last));
        }
        assert_eq!(parts.devices.len(), whole.devices.len());
        for d in whole.devices.values() {
            let p = &parts.devices[&(d.ifindex, d.mac)];
            assert_eq!((p.tx.total, p.rx.total), (d.tx.total, d.rx.total));
        }
        assert_eq!(parts.interfaces[&2].rx.total, whole.interfaces[&2].rx.total);
    }
}
