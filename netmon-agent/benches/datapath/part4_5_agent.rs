//! Parts 4 and 5: the real agent binary in `b`: its CPU per packet under a
//! paced flood, and its peak RSS holding 100k flows.

use std::{
    fs, io,
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use crate::{
    common::{Agent, Pair},
    harness::{BATCH, RawSocket, clock_time, flood_frame, ms, verdict, vm_kib},
    part3_drain::{DrainResult, marginal_bytes_per_flow},
};

/// Part 4's target (see the module docs of `main.rs`).
const MAX_AGENT_NS_PER_PACKET: f64 = 5.0;
/// Part 4: the production interval and the rate asked for.
const AGENT_INTERVAL: &str = "1s";
const AGENT_RATE: u64 = 200_000;
const AGENT_FLOOD: Duration = Duration::from_secs(5);

/// Parts 4 and 5 measure the traffic core alone: the host telemetry
/// collectors (whose cost part 6 measures) and the history (part 7) are off.
const COLLECTORS: &str = "system,interfaces,discovery,latency";

/// Part 5: distinct flows sent to the agent (with default options).
const RSS_FLOWS: usize = 100_000;
/// Part 5 sends a frame from each source once per this period, as long as
/// [`RSS_SEND_FOR`] at most: 100,000 concurrent flows, each active in
/// every interval, as a busy gateway's are.
const RSS_PERIOD: Duration = Duration::from_millis(500);
/// How long part 5 keeps its flows active at most: until the agent
/// tracks every one of them (the flow cache's tables size up over a few
/// intervals; frames beyond them meanwhile count in MAC-pair aggregates).
const RSS_SEND_FOR: Duration = Duration::from_secs(30);

/// The total CPU time of process `pid`, all threads, from its CPU clock.
pub fn process_cpu(pid: u32) -> Duration {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a live clockid_t for the call.
    let rc = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) };
    assert_eq!(
        rc,
        0,
        "clock_getcpuclockid({pid}): {}",
        io::Error::from_raw_os_error(rc)
    );
    clock_time(clock)
}

/// utime + stime of process `pid` from `/proc/<pid>/stat`.
fn proc_stat_cpu(pid: u32) -> Duration {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Fields after the command's closing parenthesis start at field 3.
    let rest = &text[text.rfind(')').expect("a stat line") + 1..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields[10] + fields[11];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

fn eth0_rx_packets(agent: &Agent) -> u64 {
    let body = agent.get("/api/v1/interfaces");
    body["interfaces"]
        .as_array()
        .and_then(|ifs| ifs.iter().find(|i| i["name"] == Pair::IFNAME))
        .and_then(|i| i["rx"]["packets"].as_u64())
        .unwrap_or_else(|| panic!("no eth0 rx packets in {body}"))
}

pub struct AgentCpu {
    sent: u64,
    rate: f64,
    counted: u64,
    window: Duration,
    cpu: Duration,
    stat_cpu: Duration,
    /// The agent's CPU over a window of the same length with no flood.
    idle_cpu: Duration,
}

impl AgentCpu {
    fn ns_per_packet(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.counted.max(1) as f64
    }
}

pub fn part4() -> AgentCpu {
    println!(
        "\n## Part 4: agent CPU per packet (netmon-agent in b, --interval {AGENT_INTERVAL}, paced flood a -> b)\n"
    );
    let pair = Pair::new();
    let agent = Agent::start(
        pair.b().ns(),
        &[
            "--interval",
            AGENT_INTERVAL,
            "--disable",
            COLLECTORS,
            "--no-history",
            "--log",
            "info",
        ],
    );
    let pid = agent.pid();
    let sock = pair.a().ns().run(|| RawSocket::open(Pair::IFNAME));
    let frame = flood_frame(Pair::IP4_A);
    let interval = Duration::from_secs(1);
    // The window: the flood, then until a drain after it has read its last
    // packets. The API is read only outside it.
    let tail = interval + Duration::from_millis(300);
    // Past start-up, then as long a window with no traffic.
    thread::sleep(interval);
    let idle0 = process_cpu(pid);
    thread::sleep(AGENT_FLOOD + tail);
    let idle_cpu = process_cpu(pid) - idle0;

    let before = eth0_rx_packets(&agent);
    let (t0, cpu0, stat0) = (Instant::now(), process_cpu(pid), proc_stat_cpu(pid));
    let (sent, took) = paced(&sock, &frame, AGENT_RATE, AGENT_FLOOD);
    // A flood slower than asked ends late; the tail always follows it.
    thread::sleep(tail);
    let (t1, cpu1, stat1) = (Instant::now(), process_cpu(pid), proc_stat_cpu(pid));
    let counted = eth0_rx_packets(&agent) - before;
    let r = AgentCpu {
        sent,
        rate: sent as f64 / took.as_secs_f64(),
        counted,
        window: t1 - t0,
        cpu: cpu1 - cpu0,
        stat_cpu: stat1 - stat0,
        idle_cpu,
    };
    println!(
        "| asked pkt/s | achieved pkt/s | netmon counted (eth0 rx) / sent | window s | agent CPU ms | (utime+stime ms) | idle CPU ms over {:.1} s | CPU % of a core | ns/packet | target < {MAX_AGENT_NS_PER_PACKET:.0} |",
        (AGENT_FLOOD + tail).as_secs_f64()
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {AGENT_RATE} | {:.0} | {} / {} | {:.1} | {:.2} | {:.0} | {:.2} | {:.3}% | {:.2} | {} |",
        r.rate,
        r.counted,
        r.sent,
        r.window.as_secs_f64(),
        ms(r.cpu),
        ms(r.stat_cpu),
        ms(r.idle_cpu),
        r.cpu.as_secs_f64() / r.window.as_secs_f64() * 100.0,
        r.ns_per_packet(),
        verdict(r.ns_per_packet() < MAX_AGENT_NS_PER_PACKET)
    );
    println!(
        "\nagent CPU: the process's CPU clock (all threads, ns resolution); utime+stime from \
         /proc/PID/stat is shown for reference (10 ms ticks). The idle window, just before, \
         lasts as long as the flood asked for plus the same tail, with no traffic."
    );
    r
}

pub struct AgentRss {
    start_hwm_kib: u64,
    hwm_kib: u64,
    rss_kib: u64,
    entries: u64,
    sent: u64,
    /// Passes over the sources, and how long they took.
    passes: u32,
    active_for: Duration,
    /// The kernel memory of the agent's BPF maps (not in its RSS).
    maps_kib: u64,
}

/// The memory the kernel charges for the BPF maps process `pid` holds
/// (each map once, however many descriptors): the `memlock` of each map's
/// fdinfo, which counts the map's preallocated values and, for an array,
/// all of its elements.
fn bpf_maps_kib(pid: u32) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    for fd in fds.flatten() {
        let is_map =
            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().contains("bpf-map"));
        if !is_map {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        let Ok(text) = std::fs::read_to_string(info) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:"))
            && seen.insert(id)
        {
            bytes += memlock;
        }
    }
    bytes / 1024
}

pub fn part5() -> AgentRss {
    println!("\n## Part 5: agent peak RSS with {RSS_FLOWS} flows (default options)\n");
    let pair = Pair::new();
    let agent = Agent::start(
        pair.b().ns(),
        &[
            "--interval",
            AGENT_INTERVAL,
            "--disable",
            COLLECTORS,
            "--no-history",
            "--log",
            "info",
        ],
    );
    let pid = agent.pid();
    let start_hwm_kib = vm_kib(pid, "VmHWM");
    let frames: Vec<Vec<u8>> = (0..RSS_FLOWS)
        .map(|i| flood_frame(Ipv4Addr::from(0x0a01_0000 + i as u32)))
        .collect();
    // Flows the agent tracks (in the flow cache's last generation or in
    // the flow map).
    let entries = |agent: &Agent| {
        agent.get("/api/v1/flows?limit=1")["total"]
            .as_u64()
            .unwrap_or(0)
    };
    // Every source once per period, until the agent tracks them all.
    let (started, mut sent, mut passes) = (Instant::now(), 0, 0);
    while started.elapsed() < RSS_SEND_FOR {
        let pass = Instant::now();
        sent += pair.a().ns().run(|| {
            let sock = RawSocket::open(Pair::IFNAME);
            let mut sent = 0;
            for chunk in frames.chunks(BATCH) {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                let mut done = 0;
                while done < refs.len() {
                    done += sock.send_or_skip(&refs[done..]);
                }
                sent += done as u64;
            }
            sent
        });
        passes += 1;
        if entries(&agent) >= RSS_FLOWS as u64 {
            break;
        }
        thread::sleep(RSS_PERIOD.saturating_sub(pass.elapsed()));
    }
    let active_for = started.elapsed();
    // One more drain with every entry present.
    thread::sleep(Duration::from_millis(1200));
    let r = AgentRss {
        start_hwm_kib,
        hwm_kib: vm_kib(pid, "VmHWM"),
        rss_kib: vm_kib(pid, "VmRSS"),
        entries: entries(&agent),
        sent,
        passes,
        active_for,
        maps_kib: bpf_maps_kib(pid),
    };
    println!(
        "| frames sent ({RSS_FLOWS} sources, each every {} ms) | passes (seconds) | flows the agent tracks | VmHWM after start | VmHWM | VmRSS now | kernel BPF maps (memlock, not in the RSS) |",
        RSS_PERIOD.as_millis()
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} ({:.1} s) | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        r.sent,
        r.passes,
        r.active_for.as_secs_f64(),
        r.entries,
        r.start_hwm_kib as f64 / 1024.0,
        r.hwm_kib as f64 / 1024.0,
        r.rss_kib as f64 / 1024.0,
        r.maps_kib as f64 / 1024.0
    );
    r
}

/// Sends `frame` at `rate` frames/s for `duration` in batches every
/// `1 / 1000` s, on an absolute schedule (a late batch is made up at
/// once). Returns the frames sent and the time taken.
pub fn paced(sock: &RawSocket, frame: &[u8], rate: u64, duration: Duration) -> (u64, Duration) {
    const TICKS_PER_SEC: u64 = 1000;
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let frames = vec![frame; BATCH];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = 0u64;
    while sent < total {
        tick += 1;
        let due = start + Duration::from_nanos(tick * 1_000_000_000 / TICKS_PER_SEC);
        let target = (rate * tick / TICKS_PER_SEC).min(total);
        while sent < target {
            let n = ((target - sent) as usize).min(BATCH);
            sent += sock.send_or_skip(&frames[..n]) as u64;
        }
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
    }
    (sent, start.elapsed())
}

/// Part 4's summary row.
pub fn summary_cpu(agent: &AgentCpu) {
    println!(
        "| agent CPU per packet at {:.0} pkt/s (--interval {AGENT_INTERVAL}) | {:.2} ns ({:.2} ms CPU over {:.1} s, {:.2} ms with no traffic; {} packets) | < {MAX_AGENT_NS_PER_PACKET:.0} ns | {} |",
        agent.rate,
        agent.ns_per_packet(),
        ms(agent.cpu),
        agent.window.as_secs_f64(),
        ms(agent.idle_cpu),
        agent.counted,
        verdict(agent.ns_per_packet() < MAX_AGENT_NS_PER_PACKET)
    );
}

/// Parts 3 and 5's summary rows.
pub fn summary_agent(drains: &[DrainResult], rss: &AgentRss) {
    for d in drains {
        println!(
            "| agent CPU per drain, {} flow entries (batch read alone) | {:.2} ms ({:.2} ms), {:.0} ns/entry | - | - |",
            d.flows,
            d.total_ms,
            d.read_ms,
            d.ns_per_entry()
        );
    }
    println!(
        "| agent peak RSS (VmHWM), {} flows tracked | {:.1} MiB ({:.1} MiB after start, {:.0} bytes a flow over it); kernel BPF maps {:.1} MiB beside it | <= 48 MiB | {} |",
        rss.entries,
        rss.hwm_kib as f64 / 1024.0,
        rss.start_hwm_kib as f64 / 1024.0,
        (rss.hwm_kib - rss.start_hwm_kib) as f64 * 1024.0 / rss.entries.max(1) as f64,
        rss.maps_kib as f64 / 1024.0,
        verdict(rss.hwm_kib <= 48 * 1024)
    );
    let per_flow = marginal_bytes_per_flow(drains);
    println!(
        "| agent heap per tracked flow (traffic core, marginal between {} and {} flows) | {per_flow:.0} B | <= 300 B | {} |",
        drains.first().map_or(0, |d| d.flows),
        drains.last().map_or(0, |d| d.flows),
        verdict(per_flow <= 300.0)
    );
}
