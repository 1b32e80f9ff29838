//! Reading the maps: the flow cache's finished generation, the counting
//! maps (batched where the kernel can), the globals; deleting idle entries.

use std::{io, os::fd::AsFd as _, time::Instant};

use aya::{
    Ebpf,
    maps::{IterableMap as _, MapData, PerCpuArray, PerCpuHashMap},
};
use netmon_common::{
    CONTROL_MAP, Counter, FLOW_MAP, FlowKey, GLOBALS_MAP, Globals, MAC_MAP, MacKey,
};
use tracing::{error, warn};

use super::{Kernel, ReadError, batch, cache::set_control};
use crate::{
    rates::sum,
    traffic::{Expired, MapCounts},
};

/// What [`Kernel::read_maps`] leaves for [`Kernel::read_cache_parts`]: the
/// flow cache's generation it ended, if the cache is on.
#[must_use]
pub struct CacheRead(Option<u32>);

impl Kernel {
    /// Reads the flow cache's last generation, both counting maps and the
    /// globals into `r`, summing per-CPU values. Buffers in `r` are reused.
    pub fn read(&mut self, r: &mut MapCounts) -> Result<(), ReadError> {
        let done = self.read_maps(r)?;
        self.read_cache_parts(done, &mut r.cached, usize::MAX, |_| {})
    }

    /// The first part of [`Kernel::read`]: ends the interval (the flow
    /// cache's flip) and reads both counting maps and the globals into
    /// `r` (its `cached` left empty). Then [`Kernel::read_cache_parts`]
    /// with what this returns reads the flow cache.
    pub fn read_maps(&mut self, r: &mut MapCounts) -> Result<CacheRead, ReadError> {
        r.macs.clear();
        r.flows.clear();
        r.cached.clear();
        // The interval ends here, for the cache (the flip) and the maps (read
        // next) alike; the grace period that lets the cache's finished half
        // be read takes milliseconds, and tens of them on a loaded machine,
        // so it comes after the maps and the clock is read at the flip: a
        // delayed drain then still measures the interval its counts cover.
        let done = self.flip()?;
        r.taken = Some(Instant::now());
        let (ncpus, batch_ok) = (self.ncpus, self.batch_ok);
        let mac = percpu_map::<MacKey>(&self.ebpf, MAC_MAP)?;
        let batched = read_map(
            &mac,
            MAC_MAP,
            ncpus,
            batch_ok,
            &mut self.mac_bufs,
            &mut r.macs,
        )?;
        let flow = percpu_map::<FlowKey>(&self.ebpf, FLOW_MAP)?;
        let batched = batched
            && read_map(
                &flow,
                FLOW_MAP,
                ncpus,
                batched,
                &mut self.flow_bufs,
                &mut r.flows,
            )?;
        if !batched && self.batch_ok {
            warn!("The kernel cannot batch-read these maps; reading entry by entry (slower).");
            self.batch_ok = false;
        }
        // After the maps, so the totals cover at least what they hold.
        r.globals = self.globals()?;
        r.mac_capacity = u64::from(self.sizes.mac_entries);
        r.flow_capacity = u64::from(self.sizes.flow_entries);
        r.cache_capacity = u64::from(self.sizes.flow_cache_slots) * self.ncpus as u64;
        Ok(CacheRead(done))
    }

    /// Reads the flow cache's generation that [`Kernel::read_maps`] ended
    /// into `buf`, passing it to `part` and emptying it each time it holds
    /// `limit` slots (what remains is left in `buf`): with a bounded
    /// `limit`, the caller folds the slots a part at a time and never
    /// holds a whole drain's (72 bytes a slot). Done once per `read_maps`.
    pub fn read_cache_parts(
        &mut self,
        done: CacheRead,
        buf: &mut Vec<(FlowKey, Counter)>,
        limit: usize,
        part: impl FnMut(&[(FlowKey, Counter)]),
    ) -> Result<(), ReadError> {
        match done.0 {
            Some(done) => self.read_cache(done, buf, limit, part),
            None => Ok(()),
        }
    }

    /// Moves the programs to the flow cache's next generation (the other
    /// half of each CPU's slots); returns the generation that ended, if the
    /// cache is on.
    fn flip(&mut self) -> Result<Option<u32>, ReadError> {
        let done = self.generation;
        if done == 0 {
            return Ok(None);
        }
        // Skip 0 (cache off) on wrapping, keeping halves alternating.
        let next = match done.wrapping_add(1) {
            0 => 2,
            n => n,
        };
        set_control(&mut self.ebpf, 0, next).map_err(|e| ReadError::Map(CONTROL_MAP, e))?;
        self.generation = next;
        Ok(Some(done))
    }

    /// Appends what the flow cache's generation `done`, ended by
    /// [`Kernel::flip`], counted to `out`: one (key, counter) per slot and
    /// CPU that the generation claimed (`out` handed to `part` and emptied
    /// whenever it holds `limit`). These are exact counts of the
    /// interval, not running totals.
    ///
    /// The programs were moved to the next generation (the other half of
    /// each CPU's slots); once every program that read the old
    /// generation has returned (an RCU grace period: programs run inside
    /// RCU read-side sections), nothing writes the old half: it is read and
    /// its used slots zeroed through the memory map, ready for the
    /// generation after next. Those zeroes are visible to every program
    /// that uses the half again: a full fence orders them before the later
    /// store of the generation that hands the half out, and a program
    /// reaches its slots through an address computed from the generation
    /// it loaded (message passing with an address dependency, as RCU
    /// readers use).
    fn read_cache(
        &mut self,
        done: u32,
        out: &mut Vec<(FlowKey, Counter)>,
        limit: usize,
        mut part: impl FnMut(&[(FlowKey, Counter)]),
    ) -> Result<(), ReadError> {
        self.grace_period();
        let half = (done & 1) as usize;
        let (mut most, mut missed) = (0, false);
        for cpu in 0..self.ncpus {
            let drained = self.cache.drain(cpu * 2 + half, |s| {
                out.push((
                    s.key,
                    Counter {
                        bytes: s.bytes,
                        packets: u64::from(s.packets),
                    },
                ));
                if out.len() >= limit {
                    part(out);
                    out.clear();
                }
            });
            let claimed = match drained {
                Ok(claimed) => claimed,
                Err(e) => {
                    // The half could not be read or cleared: using it again
                    // would count its frames twice, so the cache goes off
                    // (every frame then goes to the hash maps).
                    error!(
                        error = %e,
                        "Mapping the flow cache failed; turning it off. The frames its last \
                         generation held are lost."
                    );
                    self.generation = 0;
                    set_control(&mut self.ebpf, 0, 0)
                        .map_err(|e| ReadError::Map(CONTROL_MAP, e))?;
                    return Err(ReadError::Cache(e));
                }
            };
            most = most.max(claimed.0);
            missed |= claimed.1 != 0;
        }
        // Size this half's table for its next generation by what it held
        // in this one; the flip after next hands it out.
        let (table, room) = self.cache.next_table(half, most, missed);
        for (entry, value) in [(1, table), (3, room)] {
            set_control(&mut self.ebpf, entry + half as u32, value)
                .map_err(|e| ReadError::Map(CONTROL_MAP, e))?;
        }
        self.cache.table[half] = table;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Waits until every eBPF program running now has returned.
    /// membarrier(MEMBARRIER_CMD_GLOBAL) is `synchronize_rcu()`, which
    /// waits for every RCU read-side section, and XDP and TC programs run
    /// inside one (NAPI and the qdisc layer hold it, with softirqs off).
    /// Where it is unavailable (nohz_full kernels), a pause far longer than
    /// any program run stands in for it.
    fn grace_period(&mut self) {
        /// `MEMBARRIER_CMD_GLOBAL` from linux/membarrier.h.
        const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
        if self.membarrier_ok {
            // SAFETY: membarrier takes two integers and touches no memory.
            let ret = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
            if ret == 0 {
                return;
            }
            warn!(
                error = %io::Error::last_os_error(),
                "membarrier(MEMBARRIER_CMD_GLOBAL) failed; pausing 10 ms per drain instead."
            );
            self.membarrier_ok = false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    /// The global counters, summed over the CPUs.
    fn globals(&self) -> Result<Globals, ReadError> {
        let globals: PerCpuArray<&MapData, Globals> = PerCpuArray::try_from(
            self.ebpf
                .map(GLOBALS_MAP)
                .expect("GLOBALS is in the object"),
        )
        .map_err(|e| ReadError::Map(GLOBALS_MAP, e))?;
        let per_cpu = globals
            .get(&0, 0)
            .map_err(|e| ReadError::Map(GLOBALS_MAP, e))?;
        let mut sum = Globals::default();
        for g in per_cpu.iter() {
            sum.add(g);
        }
        Ok(sum)
    }

    /// Deletes expired entries from the kernel maps; returns how many of
    /// each were deleted (entries already gone are not counted).
    pub fn delete(&mut self, expired: &Expired) -> (u64, u64) {
        let macs = delete_all::<MacKey>(&mut self.ebpf, MAC_MAP, &expired.macs);
        let flows = delete_all::<FlowKey>(&mut self.ebpf, FLOW_MAP, &expired.flows);
        (macs, flows)
    }
}

fn percpu_map<'a, K: aya::Pod>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<PerCpuHashMap<&'a MapData, K, Counter>, ReadError> {
    PerCpuHashMap::try_from(ebpf.map(name).expect("the object has the counting maps"))
        .map_err(|e| ReadError::Map(name, e))
}

/// Reads one map into `out`; returns whether the batch read worked.
fn read_map<K: aya::Pod>(
    map: &PerCpuHashMap<&MapData, K, Counter>,
    name: &'static str,
    ncpus: usize,
    try_batch: bool,
    bufs: &mut batch::Buffers<K, Counter>,
    out: &mut Vec<(K, Counter)>,
) -> Result<bool, ReadError> {
    if try_batch {
        let fd = map.map().fd().as_fd();
        match batch::for_each_percpu::<K, Counter>(fd, ncpus, bufs, |k, v| out.push((*k, sum(v)))) {
            Ok(()) => return Ok(true),
            Err(batch::BatchError::Unsupported) => out.clear(),
            Err(e) => return Err(ReadError::Batch(name, e)),
        }
    }
    for entry in map.iter() {
        match entry {
            Ok((k, v)) => out.push((k, sum(&v))),
            // The entry was deleted or evicted during the walk.
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(ReadError::Map(name, e)),
        }
    }
    Ok(false)
}

fn delete_all<K: aya::Pod>(ebpf: &mut Ebpf, name: &str, keys: &[K]) -> u64 {
    if keys.is_empty() {
        return 0;
    }
    let Ok(mut map) = PerCpuHashMap::<&mut MapData, K, Counter>::try_from(
        ebpf.map_mut(name)
            .expect("the object has the counting maps"),
    ) else {
        return 0;
    };
    keys.iter().filter(|k| map.remove(k).is_ok()).count() as u64
}
