//! The hostile part (`cargo xtask bench -- -- --hostile`): a random-source
//! UDP flood into a watched veth, as a gateway's uplink sees one.
//!
//! The real agent runs in `b` with its defaults (collectors and history on,
//! `--interval 1s`); after it has settled, one sender thread in `a` floods
//! `b` through an `AF_PACKET` socket at its full rate for `--flood-seconds`
//! (default 300) with 60-byte UDP frames whose IPv4 source is random in
//! 10.0.0.0/8: nearly every frame is a new flow. Meanwhile the bench
//! samples, once a second, the agent's RSS, its drain thread's CPU time
//! (`/proc/PID/task/TID/schedstat`, ns), the flow table and the API's
//! received packets on `eth0` against the kernel's counter; two client
//! threads time `/health` and `/api/v1/devices` (one request each 50 ms).
//! After the flood, once the link is quiet, the API's totals are compared
//! with the kernel's (bytes corrected for veth's 14-byte shortfall at an
//! XDP receiver; see the traffic tests).

use std::{
    fs,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use super::{BATCH, RawSocket, common, flood_frame, verdict, vm_kib};
use common::{Agent, IfStats, NetNs, Pair};

/// Targets (issue 12).
const MAX_RSS_GROWTH_MIB: f64 = 128.0;
const MAX_API_P99_MS: f64 = 100.0;
/// The API's totals must not trail the kernel's by more than this many
/// intervals.
const MAX_LAG_INTERVALS: usize = 2;
const INTERVAL: Duration = Duration::from_secs(1);
/// Time between two requests of one client thread.
const CLIENT_PAUSE: Duration = Duration::from_millis(50);

pub struct Hostile {
    pub seconds: f64,
    pub sent: u64,
    pub idle_rss_mib: f64,
    pub peak_rss_mib: f64,
    pub max_sampled_rss_mib: f64,
    pub flows_tracked: u64,
    pub flow_capacity: u64,
    pub evictions: u64,
    pub drain_ms_mean: f64,
    pub drain_ms_p99: f64,
    pub drain_ms_max: f64,
    pub health: Latency,
    pub devices: Latency,
    /// Most packets the API trailed the kernel's count of two intervals
    /// before, over the flood's samples (0: never behind).
    pub max_lag_packets: u64,
    pub lag_samples: usize,
    pub api_after: (u64, u64),
    pub kernel_after: (u64, u64),
    /// Flow series in the history file after the flood, and flow samples
    /// the recorder added to `other` series (the hourly cap).
    pub flow_series: usize,
    pub flow_samples_aggregated: u64,
}

#[derive(Clone, Copy, Default)]
pub struct Latency {
    pub requests: usize,
    pub failures: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Hostile {
    pub fn rss_growth_mib(&self) -> f64 {
        self.peak_rss_mib - self.idle_rss_mib
    }

    pub fn totals_equal(&self) -> bool {
        self.api_after == self.kernel_after
    }

    pub fn met(&self) -> bool {
        self.rss_growth_mib() <= MAX_RSS_GROWTH_MIB
            && self.health.p99_ms <= MAX_API_P99_MS
            && self.devices.p99_ms <= MAX_API_P99_MS
            && self.max_lag_packets == 0
            && self.totals_equal()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// CPU time of the agent's drain thread (`netmon-drain`), from its
/// schedstat (ns).
fn drain_cpu(pid: u32) -> Duration {
    let dir = format!("/proc/{pid}/task");
    for task in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = task.expect("a task entry").path();
        let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "netmon-drain" {
            let stat = fs::read_to_string(path.join("schedstat")).unwrap_or_default();
            let ns: u64 = stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no schedstat in {}", path.display()));
            return Duration::from_nanos(ns);
        }
    }
    panic!("no netmon-drain thread in {dir}");
}

/// `eth0`'s received packets and bytes as the API gives them.
fn api_rx(agent: &Agent) -> (u64, u64) {
    let body = agent.get("/api/v1/interfaces");
    let rx = body["interfaces"]
        .as_array()
        .and_then(|ifs| ifs.iter().find(|i| i["name"] == Pair::IFNAME))
        .map(|i| &i["rx"])
        .unwrap_or_else(|| panic!("no eth0 in {body}"));
    (
        rx["packets"].as_u64().expect("rx.packets"),
        rx["bytes"].as_u64().expect("rx.bytes"),
    )
}

/// `eth0`'s received packets and L2 bytes as the kernel counts them: veth
/// counts a frame that reaches an XDP receiver without its 14-byte Ethernet
/// header.
fn kernel_rx(ns: &NetNs) -> (u64, u64) {
    let s: IfStats = ns.if_stats(Pair::IFNAME);
    (s.rx_packets, s.rx_bytes + 14 * s.rx_packets)
}

/// The API's and the kernel's eth0 rx at a moment when the kernel's count
/// stood still for three intervals (so the API has all of it).
fn quiet(agent: &Agent, ns: &NetNs) -> ((u64, u64), (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = kernel_rx(ns);
        thread::sleep(INTERVAL * 3);
        let (api, after) = (api_rx(agent), kernel_rx(ns));
        if before == after || Instant::now() > deadline {
            return (api, after);
        }
    }
}

/// Sends random-source frames as fast as the socket takes them until
/// `stop`; returns the frames the kernel took.
fn random_flood(sock: &RawSocket, stop: &AtomicBool, sent: &AtomicU64) {
    let mut template = flood_frame(Ipv4Addr::new(10, 0, 0, 1));
    // No UDP checksum (valid for IPv4): the source changes every frame.
    template[14 + 20 + 6..14 + 20 + 8].fill(0);
    let mut frames = vec![template; BATCH];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    while !stop.load(Ordering::Relaxed) {
        for f in &mut frames {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let src = 0x0a00_0000 | (x as u32 & 0x00ff_ffff);
            f[14 + 12..14 + 16].copy_from_slice(&src.to_be_bytes());
            f[14 + 10..14 + 12].fill(0);
            let sum = common::internet_checksum(&f[14..14 + 20]);
            f[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        }
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let n = sock.send_or_skip(&refs);
        sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Times `GET path` every [`CLIENT_PAUSE`] until `stop`, from the calling
/// thread's namespace.
fn client(path: &'static str, stop: &AtomicBool) -> (Vec<f64>, usize) {
    let url = format!("http://{}{path}", common::LISTEN);
    let client = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    );
    let (mut lat, mut failures) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let ok = client
            .get(&url)
            .header("X-API-KEY", common::TEST_KEY)
            .call()
            .and_then(|mut r| r.body_mut().read_to_vec())
            .is_ok();
        if ok {
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        } else {
            failures += 1;
        }
        thread::sleep(CLIENT_PAUSE);
    }
    (lat, failures)
}

fn latency((mut lat, failures): (Vec<f64>, usize)) -> Latency {
    lat.sort_by(f64::total_cmp);
    Latency {
        requests: lat.len(),
        failures,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
    }
}

pub fn run(flood: Duration) -> Hostile {
    println!(
        "\n## Hostile: random-source UDP flood for {:.0} s (agent defaults, --interval 1s)\n",
        flood.as_secs_f64()
    );
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let agent = Agent::start(b.ns(), &["--interval", "1s", "--log", "info"]);
    let pid = agent.pid();
    // Settle: the collectors' first cycles, the history's first writes.
    thread::sleep(Duration::from_secs(5));
    let idle_rss = vm_kib(pid, "VmRSS");
    // Both counts at a quiet moment: they count since different moments
    // (the link's creation, the attach), so growths are compared.
    let (api0, kernel0) = quiet(&agent, b.ns());
    let flows = |agent: &Agent| {
        let f = agent.get("/api/v1/flows?limit=1");
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        (n("total"), n("capacity"), n("evictions"))
    };

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        a.ns().run(move || {
            thread::spawn(move || {
                let sock = RawSocket::open(Pair::IFNAME);
                random_flood(&sock, &stop, &sent);
            })
        })
    };
    let clients_stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = ["/health", "/api/v1/devices"]
        .into_iter()
        .map(|path| {
            let stop = Arc::clone(&clients_stop);
            b.ns()
                .run(move || thread::spawn(move || client(path, &stop)))
        })
        .collect();

    let start = Instant::now();
    let mut kernel_samples: Vec<u64> = Vec::new();
    let (mut max_lag, mut lag_samples) = (0u64, 0usize);
    let mut drain_ms = Vec::new();
    let mut max_rss = idle_rss;
    let mut max_flows = 0;
    let mut last_cpu = drain_cpu(pid);
    let mut next = start;
    while start.elapsed() < flood {
        next += INTERVAL;
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let kernel = kernel_rx(b.ns()).0;
        let api = api_rx(&agent).0;
        kernel_samples.push(kernel);
        // The API now must hold at least what the kernel had counted two
        // intervals (two samples) ago.
        if kernel_samples.len() > MAX_LAG_INTERVALS {
            let then = kernel_samples[kernel_samples.len() - 1 - MAX_LAG_INTERVALS];
            max_lag = max_lag.max(then.saturating_sub(api));
            lag_samples += 1;
        }
        let cpu = drain_cpu(pid);
        drain_ms.push((cpu - last_cpu).as_secs_f64() * 1e3);
        last_cpu = cpu;
        max_rss = max_rss.max(vm_kib(pid, "VmRSS"));
        let secs = start.elapsed().as_secs();
        if secs.is_multiple_of(10) {
            let (tracked, _, evictions) = flows(&agent);
            max_flows = max_flows.max(tracked);
            println!(
                "  {secs:>4} s: sent {:>10}, RSS {:>6.1} MiB, flows {tracked:>7}, evictions {evictions:>10}, drain {:>6.1} ms/s, kernel rx {kernel}, API rx {api}",
                sent.load(Ordering::Relaxed),
                mib(vm_kib(pid, "VmRSS")),
                drain_ms.last().copied().unwrap_or_default(),
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("the flood thread");
    let seconds = start.elapsed().as_secs_f64();
    let (tracked, capacity, _) = flows(&agent);
    max_flows = max_flows.max(tracked);
    // The link goes quiet; the API has every frame after two drains.
    let (api1, kernel1) = quiet(&agent, b.ns());
    let since = |x: (u64, u64), y: (u64, u64)| (x.0 - y.0, x.1 - y.1);
    let (api_after, kernel_after) = (since(api1, api0), since(kernel1, kernel0));
    clients_stop.store(true, Ordering::Relaxed);
    let mut lat = clients
        .into_iter()
        .map(|h| latency(h.join().expect("a client thread")));
    let (health, devices) = (lat.next().unwrap(), lat.next().unwrap());
    let (_, _, evictions) = flows(&agent);
    let flow_samples_aggregated = agent.get("/api/v1/flows?limit=1")["history"]["aggregated"]
        .as_u64()
        .unwrap_or(0);
    let flow_series = agent.get("/api/v1/series?family=flow")["series"]
        .as_array()
        .map_or(0, Vec::len);

    let mut sorted = drain_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let r = Hostile {
        seconds,
        sent: sent.load(Ordering::Relaxed),
        idle_rss_mib: mib(idle_rss),
        peak_rss_mib: mib(vm_kib(pid, "VmHWM")),
        max_sampled_rss_mib: mib(max_rss),
        flows_tracked: max_flows,
        flow_capacity: capacity,
        evictions,
        drain_ms_mean: drain_ms.iter().sum::<f64>() / drain_ms.len().max(1) as f64,
        drain_ms_p99: percentile(&sorted, 0.99),
        drain_ms_max: sorted.last().copied().unwrap_or(f64::NAN),
        health,
        devices,
        max_lag_packets: max_lag,
        lag_samples,
        api_after,
        kernel_after,
        flow_series,
        flow_samples_aggregated,
    };
    print_table(&r);
    r
}

fn print_table(r: &Hostile) {
    println!(
        "\n| flood s | frames sent (pkt/s) | idle RSS | peak RSS (VmHWM) | growth | target | flows tracked (cap) | evictions |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|");
    println!(
        "| {:.0} | {} ({:.0}) | {:.1} MiB | {:.1} MiB | {:.1} MiB | <= {MAX_RSS_GROWTH_MIB:.0} MiB: {} | {} ({}) | {} |",
        r.seconds,
        r.sent,
        r.sent as f64 / r.seconds,
        r.idle_rss_mib,
        r.peak_rss_mib,
        r.rss_growth_mib(),
        verdict(r.rss_growth_mib() <= MAX_RSS_GROWTH_MIB),
        r.flows_tracked,
        r.flow_capacity,
        r.evictions
    );
    println!(
        "\n| drain thread CPU per 1 s interval: mean | p99 | max | /health p50 / p99 / max (n, failed) | /api/v1/devices p50 / p99 / max (n, failed) | target p99 |"
    );
    println!("|---:|---:|---:|---|---|---|");
    let l = |l: &Latency| {
        format!(
            "{:.2} / {:.2} / {:.2} ms ({}, {})",
            l.p50_ms, l.p99_ms, l.max_ms, l.requests, l.failures
        )
    };
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | <= {MAX_API_P99_MS:.0} ms: {} |",
        r.drain_ms_mean,
        r.drain_ms_p99,
        r.drain_ms_max,
        l(&r.health),
        l(&r.devices),
        verdict(r.health.p99_ms <= MAX_API_P99_MS && r.devices.p99_ms <= MAX_API_P99_MS)
    );
    println!(
        "\n| API eth0 rx behind the kernel's count {MAX_LAG_INTERVALS} intervals earlier (most, over {} samples) | after the flood: API rx packets / bytes | kernel rx packets / L2 bytes | equal |",
        r.lag_samples
    );
    println!("|---:|---|---|---|");
    println!(
        "| {} packets: {} | {} / {} | {} / {} | {} |",
        r.max_lag_packets,
        verdict(r.max_lag_packets == 0),
        r.api_after.0,
        r.api_after.1,
        r.kernel_after.0,
        r.kernel_after.1,
        verdict(r.totals_equal())
    );
    println!(
        "\nHistory: {} flow series in the file after the flood (at most --store-flow-series-per-hour a clock hour, plus the `other` series); {} flow samples added to `other` series.",
        r.flow_series, r.flow_samples_aggregated
    );
    println!(
        "\nRSS: VmRSS 5 s after start (idle) and VmHWM at the end (peak; the largest \
         VmRSS sampled each second was {:.1} MiB). Drain CPU: the netmon-drain thread's \
         schedstat, sampled each second. Totals: eth0 rx growth \
         from a quiet moment before the flood to one after it, bytes with veth's 14-byte shortfall per frame at an XDP receiver restored.",
        r.max_sampled_rss_mib
    );
}

pub fn summary(r: &Hostile) {
    println!(
        "| hostile: RSS growth over idle, random-source flood {:.0} s at {:.0} pkt/s | {:.1} MiB ({:.1} -> {:.1} MiB; {} flows tracked of {}, {} evicted) | <= {MAX_RSS_GROWTH_MIB:.0} MiB | {} |",
        r.seconds,
        r.sent as f64 / r.seconds,
        r.rss_growth_mib(),
        r.idle_rss_mib,
        r.peak_rss_mib,
        r.flows_tracked,
        r.flow_capacity,
        r.evictions,
        verdict(r.rss_growth_mib() <= MAX_RSS_GROWTH_MIB)
    );
    println!(
        "| hostile: /health and /api/v1/devices p99 during the flood | {:.2} ms, {:.2} ms | <= {MAX_API_P99_MS:.0} ms | {} |",
        r.health.p99_ms,
        r.devices.p99_ms,
        verdict(r.health.p99_ms <= MAX_API_P99_MS && r.devices.p99_ms <= MAX_API_P99_MS)
    );
    println!(
        "| hostile: drain thread CPU per interval during the flood | mean {:.1} ms, p99 {:.1} ms | - | - |",
        r.drain_ms_mean, r.drain_ms_p99
    );
    println!(
        "| hostile: API eth0 rx behind the kernel's count {MAX_LAG_INTERVALS} intervals earlier; totals after | {} packets; {} | 0; equal | {} |",
        r.max_lag_packets,
        if r.totals_equal() { "equal" } else { "differ" },
        verdict(r.max_lag_packets == 0 && r.totals_equal())
    );
    println!(
        "| hostile: flow series in the history after the flood; samples aggregated into `other` | {}; {} | - | - |",
        r.flow_series, r.flow_samples_aggregated
    );
    println!(
        "| hostile: every target above | {} | - | - |",
        verdict(r.met())
    );
}
