//! Part 3: the agent's CPU per drain at 1k, 10k and 100k flow entries, in
//! process, and the traffic core's heap per flow.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use netmon_agent::{
    api::{AppState, prebuilt::Prebuilt},
    ebpf::{IngressHook, Kernel, MapSizes},
    ifaces,
    snapshot::{LISTED_FLOWS, Shared, Snapshot},
    store::record::Recorder,
    traffic::{Flow, MapCounts, Traffic},
};
use netmon_common::{Counter, FlowKey, PROG_XDP};

use crate::harness::{LIVE_BYTES, clock_time, flood_frame, median, ms};

/// Drains timed per size in part 3 (after one untimed drain).
const DRAINS: usize = 10;
/// Untimed reads before part 3 measures a size: the flow cache's tables of
/// both halves grow to hold the flows (a half grows after a generation
/// with misses), and the buffers with them.
const WARM_READS: usize = 3;
const FLOW_COUNTS: [usize; 3] = [1_000, 10_000, 100_000];
const PART3_FLOW_CAPACITY: u32 = 131_072;
/// `--store-flows-per-interval`'s default.
const STORE_FLOWS_PER_INTERVAL: usize = 100;

pub struct DrainResult {
    pub flows: usize,
    first_ms: f64,
    pub read_ms: f64,
    update_ms: f64,
    snapshot_ms: f64,
    prebuilt_ms: f64,
    /// The drain thread's whole cost: read, update, snapshot and the
    /// prebuilt answers.
    pub total_ms: f64,
    /// The history's recorder building its interval from the snapshot (on
    /// its own thread in the agent).
    recorder_ms: f64,
    /// Wall time of the read (the flow cache's flip and RCU grace period
    /// wait without CPU), median and maximum.
    read_wall_ms: (f64, f64),
    /// Heap bytes of the agent's traffic core holding these flows (its
    /// flow table sized to them), map-read buffers and snapshot aside.
    table_bytes: usize,
    /// Heap bytes of the reading's buffers after the last drain (kept
    /// between drains: the flow cache's slots, the maps' entries).
    read_bytes: usize,
}

impl DrainResult {
    pub fn ns_per_entry(&self) -> f64 {
        self.total_ms * 1e6 / self.flows as f64
    }
}

fn thread_cpu() -> Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Thread CPU time of each step of one drain.
#[derive(Clone, Copy, Default)]
pub struct Steps {
    read: Duration,
    update: Duration,
    snapshot: Duration,
    prebuilt: Duration,
    recorder: Duration,
    read_wall: Duration,
}

impl Steps {
    /// What the drain thread spends.
    fn drain(&self) -> Duration {
        self.read + self.update + self.snapshot + self.prebuilt
    }
}

/// The API's state as the agent makes it with default options, the
/// collectors not started and no history: what [`Prebuilt::warm`] reads.
fn api_state() -> AppState {
    AppState {
        snapshot: Shared::default(),
        telemetry: Default::default(),
        server_id: None,
        metrics: netmon_agent::metrics::Settings {
            needs_key: false,
            limits: (&netmon_agent::metrics::Options::default()).into(),
        },
        store: Err("off in the benchmark".into()),
        config: Default::default(),
        http: Default::default(),
        push: None,
        remote_write: None,
        alerts: Default::default(),
        prebuilt: Default::default(),
        snapshot_flows: netmon_agent::push::DEFAULT_PUSH_FLOWS as usize,
        started: std::time::SystemTime::now(),
    }
}

/// One drain as `netmon_agent::drain_loop` does it, timed in thread CPU
/// time per step (read, update + delete, snapshot, the API's prebuilt
/// answers), then the history's recorder on the published snapshot.
pub fn drain(
    kernel: &mut Kernel,
    traffic: &mut Traffic,
    reading: &mut MapCounts,
    state: &AppState,
    recorder: &mut Recorder,
) -> Steps {
    let (w0, t0) = (Instant::now(), thread_cpu());
    // As the drain loop: the interval ends at the flow cache's flip.
    let (now, wall) = (Instant::now(), SystemTime::now());
    kernel.read(reading).expect("reading the maps");
    let (w1, t1) = (Instant::now(), thread_cpu());
    let subnets = ifaces::subnets();
    let expired = traffic.update(now, wall, reading, &subnets);
    let (macs, flows) = kernel.delete(&expired);
    traffic.deleted(macs, flows);
    let t2 = thread_cpu();
    // What the drain loop's snapshot() builds (no attachments in-process).
    let snap = Arc::new(Snapshot {
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
    Prebuilt::warm(state, &snap);
    state.snapshot.publish(Arc::clone(&snap));
    let t4 = thread_cpu();
    let interval = recorder.build(&snap, &state.telemetry, SystemTime::now());
    let t5 = thread_cpu();
    drop(interval);
    Steps {
        read: t1 - t0,
        update: t2 - t1,
        snapshot: t3 - t2,
        prebuilt: t4 - t3,
        recorder: t5 - t4,
        read_wall: w1 - w0,
    }
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
        // Reads to size the read buffers for these flows (each ends a
        // generation of the flow cache, and the tables of both halves grow
        // to hold every flow), then every flow again: the heap measured
        // below is the traffic core's alone.
        let mut reading = MapCounts::default();
        for _ in 0..WARM_READS {
            touch(&mut kernel, n);
            kernel.read(&mut reading).expect("reading the maps");
        }
        touch(&mut kernel, n);
        let read_bytes0 = read_buffer_bytes(&reading);
        let heap0 = LIVE_BYTES.load(Ordering::Relaxed);
        // A flow table of exactly n (a full table: the cost per flow at
        // the cap), devices at the minimum (one MAC pair here).
        let mut traffic = Traffic::with_limits(Duration::from_secs(300), n, 16);
        let state = api_state();
        let mut recorder = Recorder::new(STORE_FLOWS_PER_INTERVAL);
        // The first drain creates every flow; later ones update them.
        let first = drain(
            &mut kernel,
            &mut traffic,
            &mut reading,
            &state,
            &mut recorder,
        );
        // Fewer than `n` when the flows outgrew the flow cache's table
        // (sized by the generations before) and the insert budget: the
        // rest went to MAC-pair aggregates until the table grew.
        let first_flows = traffic.flows.len();
        let mut samples = Vec::new();
        for _ in 0..DRAINS {
            // Every flow moves between drains, as active flows do.
            touch(&mut kernel, n);
            samples.push(drain(
                &mut kernel,
                &mut traffic,
                &mut reading,
                &state,
                &mut recorder,
            ));
        }
        let flows = traffic.flows.len();
        // The API's answers and the recorder's baselines are not the
        // traffic core's.
        drop((state, recorder));
        // The reading's buffers, sized before, may still grow (more slots
        // than in the warm-up): theirs is not the traffic core's heap.
        let read_bytes = read_buffer_bytes(&reading);
        let table_bytes = LIVE_BYTES
            .load(Ordering::Relaxed)
            .saturating_sub(heap0 + read_bytes.saturating_sub(read_bytes0));
        let med = |f: fn(&Steps) -> Duration| median(samples.iter().map(|s| ms(f(s))).collect());
        let max_wall = samples.iter().map(|s| ms(s.read_wall)).fold(0.0, f64::max);
        let result = DrainResult {
            flows,
            first_ms: ms(first.drain()),
            read_ms: med(|s| s.read),
            update_ms: med(|s| s.update),
            snapshot_ms: med(|s| s.snapshot),
            prebuilt_ms: med(|s| s.prebuilt),
            total_ms: med(|s| s.drain()),
            recorder_ms: med(|s| s.recorder),
            read_wall_ms: (med(|s| s.read_wall), max_wall),
            table_bytes,
            read_bytes,
        };
        println!(
            "  {n:>7} flows sent, {flows:>7} flows tracked ({first_flows} after the first drain): drain {:.2} ms (first {:.2} ms)",
            result.total_ms, result.first_ms
        );
        results.push(result);
    }
    println!(
        "\n| flow entries | batch read ms (wall: median, max) | update ms | snapshot ms | prebuilt answers ms | drain ms (median of {DRAINS}) | ns/entry | first drain ms | recorder ms (history thread) | traffic core heap (table = flows) | bytes/flow | read buffers (bytes/flow) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.2} ({:.1}, {:.1}) | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.1} MiB | {:.0} | {:.1} MiB ({:.0}) |",
            r.flows,
            r.read_ms,
            r.read_wall_ms.0,
            r.read_wall_ms.1,
            r.update_ms,
            r.snapshot_ms,
            r.prebuilt_ms,
            r.total_ms,
            r.ns_per_entry(),
            r.first_ms,
            r.recorder_ms,
            r.table_bytes as f64 / 1048576.0,
            r.table_bytes as f64 / r.flows.max(1) as f64,
            r.read_bytes as f64 / 1048576.0,
            r.read_bytes as f64 / r.flows.max(1) as f64
        );
    }
    println!(
        "\nHeap: live bytes (a counting global allocator) of the traffic core after its \
         last drain, its flow table sized to the flows sent (full), snapshot dropped and \
         map-read buffers sized before; bytes/flow includes the fixed part (MAC-pair \
         baselines, interfaces). Marginal: {:.0} bytes per flow between the smallest and \
         largest size. Of it, the flow table's values: {} bytes a flow ({} of them the \
         key), 8 bytes of recency links and about 5 bytes an index bucket (one or two a \
         flow). Read buffers: the reading's vectors (the flow cache's slots of the \
         interval and the flow map's entries, {} bytes each), kept between drains: in the \
         RSS, not in the traffic core.",
        marginal_bytes_per_flow(&results),
        size_of::<Flow>(),
        size_of::<FlowKey>(),
        size_of::<(FlowKey, Counter)>()
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

/// Heap bytes of a reading's buffers (their capacity).
fn read_buffer_bytes(r: &MapCounts) -> usize {
    r.cached.capacity() * size_of::<(FlowKey, Counter)>()
        + r.flows.capacity() * size_of::<(FlowKey, Counter)>()
        + r.macs.capacity() * size_of::<(netmon_common::MacKey, Counter)>()
}
