//! Part 3: the agent's CPU per drain at 1k, 10k and 100k flow entries, in
//! process, and the traffic core's heap per flow.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::atomic::Ordering,
    time::{Duration, Instant, SystemTime},
};

use netmon_agent::{
    ebpf::{IngressHook, Kernel, MapSizes},
    ifaces,
    snapshot::{LISTED_FLOWS, Shared, Snapshot},
    traffic::{MapCounts, Traffic},
};
use netmon_common::PROG_XDP;

use crate::harness::{LIVE_BYTES, clock_time, flood_frame, median, ms};

/// Drains timed per size in part 3 (after one untimed drain).
const DRAINS: usize = 10;
const FLOW_COUNTS: [usize; 3] = [1_000, 10_000, 100_000];
const PART3_FLOW_CAPACITY: u32 = 131_072;

pub struct DrainResult {
    pub flows: usize,
    first_ms: f64,
    pub read_ms: f64,
    update_ms: f64,
    snapshot_ms: f64,
    pub total_ms: f64,
    /// Heap bytes of the agent's traffic core holding these flows (its
    /// flow table sized to them), map-read buffers and snapshot aside.
    table_bytes: usize,
}

impl DrainResult {
    pub fn ns_per_entry(&self) -> f64 {
        self.total_ms * 1e6 / self.flows as f64
    }
}

fn thread_cpu() -> Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// One drain as `netmon_agent::drain_loop` does it, timed in thread CPU
/// time per step: (read, update + delete, snapshot + publish).
pub fn drain(
    kernel: &mut Kernel,
    traffic: &mut Traffic,
    reading: &mut MapCounts,
    shared: &Shared,
) -> (Duration, Duration, Duration) {
    let t0 = thread_cpu();
    kernel.read(reading).expect("reading the maps");
    let t1 = thread_cpu();
    let subnets = ifaces::subnets();
    let expired = traffic.update(Instant::now(), SystemTime::now(), reading, &subnets);
    let (macs, flows) = kernel.delete(&expired);
    traffic.deleted(macs, flows);
    let t2 = thread_cpu();
    // What lib.rs's snapshot() builds (no attachments in-process).
    shared.set(Snapshot {
        updated: Some(SystemTime::now()),
        interval: traffic.interval,
        interfaces: Vec::new(),
        devices: traffic.devices.values().cloned().collect(),
        flows: traffic.listed_flows(LISTED_FLOWS),
        flow_table: traffic.flow_table,
        device_table: traffic.device_table,
        globals: traffic.globals,
        mac_map: traffic.mac_map,
        flow_map: traffic.flow_map,
        flow_cache: traffic.flow_cache,
        names: HashMap::new(),
        ..Snapshot::default()
    });
    let t3 = thread_cpu();
    (t1 - t0, t2 - t1, t3 - t2)
}

pub fn part3() -> Vec<DrainResult> {
    println!("\n## Part 3: agent CPU per drain (in-process, thread CPU time)\n");
    let sizes = MapSizes {
        flow_entries: PART3_FLOW_CAPACITY,
        ..MapSizes::default()
    };
    let mut kernel = Kernel::load(IngressHook::Auto, sizes)
        .unwrap_or_else(|e| panic!("loading the eBPF object: {:#}", anyhow::Error::from(e)));
    let max = FLOW_COUNTS[FLOW_COUNTS.len() - 1];
    // Distinct sources from 10.1.0.0; the sets for smaller counts are
    // prefixes, so the map holds exactly the current count.
    let frames: Vec<Vec<u8>> = (0..max)
        .map(|i| flood_frame(Ipv4Addr::from(0x0a01_0000 + i as u32)))
        .collect();
    let touch = |kernel: &mut Kernel, n: usize| {
        for frame in &frames[..n] {
            kernel
                .test_run(PROG_XDP, frame, 1, 1)
                .unwrap_or_else(|e| panic!("test_run: {e}"));
        }
    };
    let mut results = Vec::new();
    for n in FLOW_COUNTS {
        // One read to size the read buffers for these flows' map entries
        // (it ends a generation of the flow cache), then every flow again:
        // the heap measured below is the traffic core's alone.
        touch(&mut kernel, n);
        let mut reading = MapCounts::default();
        kernel.read(&mut reading).expect("reading the maps");
        touch(&mut kernel, n);
        let shared = Shared::default();
        let heap0 = LIVE_BYTES.load(Ordering::Relaxed);
        // A flow table of exactly n (a full table: the cost per flow at
        // the cap), devices at the minimum (one MAC pair here).
        let mut traffic = Traffic::with_limits(Duration::from_secs(300), n, 16);
        // The first drain creates every flow; later ones update them.
        let (r, u, s) = drain(&mut kernel, &mut traffic, &mut reading, &shared);
        let first = r + u + s;
        // Fewer than `n` when the flows outgrew the flow cache's index
        // (sized by the interval before) and the insert budget: the rest
        // went to the aggregate until the index grew.
        let first_flows = traffic.flows.len();
        let mut samples = Vec::new();
        for _ in 0..DRAINS {
            // Every flow moves between drains, as active flows do.
            touch(&mut kernel, n);
            samples.push(drain(&mut kernel, &mut traffic, &mut reading, &shared));
        }
        let flows = traffic.flows.len();
        shared.set(Snapshot::default());
        let table_bytes = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(heap0);
        let med = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
            median(samples.iter().map(|s| ms(f(s))).collect())
        };
        let result = DrainResult {
            flows,
            first_ms: ms(first),
            read_ms: med(|s| s.0),
            update_ms: med(|s| s.1),
            snapshot_ms: med(|s| s.2),
            total_ms: med(|s| s.0 + s.1 + s.2),
            table_bytes,
        };
        println!(
            "  {n:>7} flows sent, {flows:>7} flows tracked ({first_flows} after the first drain): drain {:.2} ms (first {:.2} ms)",
            result.total_ms, result.first_ms
        );
        results.push(result);
    }
    println!(
        "\n| flow entries | batch read ms | update ms | snapshot ms | drain ms (median of {DRAINS}) | ns/entry | first drain ms | traffic core heap (table = flows) | bytes/flow |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.1} MiB | {:.0} |",
            r.flows,
            r.read_ms,
            r.update_ms,
            r.snapshot_ms,
            r.total_ms,
            r.ns_per_entry(),
            r.first_ms,
            r.table_bytes as f64 / 1048576.0,
            r.table_bytes as f64 / r.flows.max(1) as f64
        );
    }
    println!(
        "\nHeap: live bytes (a counting global allocator) of the traffic core after its \
         last drain, its flow table sized to the flows sent (full), snapshot dropped and \
         map-read buffers sized before; bytes/flow includes the fixed part (MAC-pair \
         baselines, interfaces). Marginal: {:.0} bytes per flow between the smallest and \
         largest size.",
        marginal_bytes_per_flow(&results)
    );
    results
}

/// Heap bytes per additional flow between the smallest and largest part-3
/// sizes: the per-flow cost without the fixed part.
pub fn marginal_bytes_per_flow(results: &[DrainResult]) -> f64 {
    match (results.first(), results.last()) {
        (Some(a), Some(b)) if b.flows > a.flows => {
            (b.table_bytes as f64 - a.table_bytes as f64) / (b.flows - a.flows) as f64
        }
        _ => f64::NAN,
    }
}
