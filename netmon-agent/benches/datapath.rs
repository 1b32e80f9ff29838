//! netmon's benchmark, run as root by `cargo xtask bench`: what the eBPF
//! programs cost the datapath and what the agent costs the host.
//!
//! 1. **Per-packet cost at each hook.** A veth [`Pair`]; a sender thread
//!    floods 60-byte UDP frames (64 on the wire with the FCS) from `a` to a
//!    UDP socket on `b` that is never read ([`SINK_PORT`]), through an
//!    `AF_PACKET` socket with `sendmmsg` (no qdisc bypass, so `a`'s TC
//!    egress hook runs), from 1, 200, 2,000, 10,000 or 100,000 sources
//!    round-robin (as many concurrent flows), or each frame from a new
//!    source (the random-source flood; [`Load`]). Each phase has exactly
//!    one program attached at one hook: the pass-only floor or netmon's
//!    program (loaded by the agent's [`Kernel`], drained every second as
//!    the agent does), at `b`'s XDP (native, veth), `b`'s TC ingress or
//!    `a`'s TC egress. The kernel's run
//!    statistics (`BPF_ENABLE_STATS`, on during parts 1-2 only) give
//!    ns/packet = Δrun_time / Δrun_count. BPF_PROG_TEST_RUN of the same
//!    programs on the same frame, without statistics, shows the programs
//!    alone.
//! 2. **Host packet rate** in the same phases. `b`'s veth runs NAPI as a
//!    NIC driver does (GRO on at `b`, TSO off at `a`) in its own thread
//!    (threaded NAPI), so `b`'s whole receive path (XDP, skb, GRO, TC
//!    ingress, IP, UDP, the full socket that drops the datagram) is one
//!    kernel thread's CPU time, on its own core while the sender has the
//!    other. The host's maximum rate on a CPU-bound path is one core's
//!    worth: 1e9 / (CPU ns per packet), per datagram `b`'s UDP layer
//!    finished (`Udp: InDatagrams + NoPorts + InErrors`). For TC egress the
//!    path is `a`'s send path, the sender thread's CPU per frame. CPU time
//!    does not depend on what else the machine runs; the wall-clock rates,
//!    also printed, do. Also netmon's own count of the flood against the
//!    kernel's.
//! 3. **Agent CPU per drain** at 1k, 10k, 100k flow entries, in-process:
//!    [`Kernel::read`], [`Traffic::update`] and the snapshot, as the drain
//!    loop does them, in thread CPU time.
//! 4. **Agent CPU per packet** at ~200k packets/s: the real agent binary in
//!    `b` with `--interval 1s`, its process CPU time over a paced flood
//!    (and over as long a window with no traffic, for comparison).
//! 5. **Peak RSS** (VmHWM) of the agent after draining 100k flow entries.
//!
//! Phases run in alternating rounds and report medians, and netmon/floor
//! ratios are taken within each round before the median: shared machines
//! are noisy. Options, after `cargo xtask bench -- --`: `--seconds S` per
//! phase (default 2), `--rounds N` (default 5), `--senders N` flood threads
//! (default 1: with more, senders and `b`'s NAPI thread share cores),
//! `--flows 1,2000,flood` and `--hooks xdp,tc-in,tc-eg` (parts 1-2's
//! traffic and hooks; default all);
//! `--datapath`, `--drains`, `--collectors` or `--history` run parts 1-2,
//! part 3, part 6 or parts 7-8 alone, `--agent` parts 3 and 5 (the agent's
//! drain and memory); `--hostile` runs only the hostile part (a
//! random-source flood, `hostile/mod.rs`) for `--flood-seconds S` (default
//! 300).

#[path = "../tests/common/mod.rs"]
mod common;
mod hostile;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    fs, io, mem,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, Xdp, XdpMode,
        tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
    sys::{Stats, enable_stats},
};
use common::{
    Agent, ETHERTYPE_IPV4, Lan, NetNs, Pair, eth, internet_checksum, ipv4_udp, require_root,
};
use netmon_agent::{
    ebpf::{IngressHook, Kernel, MapSizes, OBJECT},
    ifaces,
    snapshot::{LISTED_FLOWS, Shared, Snapshot},
    traffic::{Expired, Reading, Traffic},
};
use netmon_common::{
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_TC_PASS, PROG_XDP, PROG_XDP_PASS, direction,
};

/// Counts live heap bytes, so part 3 can weigh the flow table (one atomic
/// add per allocation: no measurable cost to the other parts).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counter
// only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Targets (see the module docs).
const MIN_RATE_RATIO: f64 = 0.95;
const MAX_AGENT_NS_PER_PACKET: f64 = 5.0;

/// Frames a `sendmmsg` call sends in a flood.
const BATCH: usize = 64;
/// Flood time before a phase's measurement window opens.
const WARMUP: Duration = Duration::from_millis(300);
/// Wait after a flood for the receiver to finish what is in flight.
const SETTLE: Duration = Duration::from_millis(200);
/// The UDP port the flood goes to. A socket in `b` is bound there and never
/// read, with the smallest receive buffer: each datagram goes through `b`'s
/// whole receive path, socket lookup included, and is dropped at the socket
/// (`Udp: RcvbufErrors`, part of `InErrors`). A closed port would make `b`
/// look up a route for an ICMP error for every datagram (only the sending
/// is rate-limited), a cost no real receiver has.
const SINK_PORT: u16 = 9;
/// UDP payload that makes the frame 60 bytes: 14 + 20 + 8 + 18.
const FLOOD_PAYLOAD: usize = 18;

/// Runs per BPF_PROG_TEST_RUN call.
const TEST_RUN_REPEAT: u32 = 1_000_000;

/// Drains timed per size in part 3 (after one untimed drain).
const DRAINS: usize = 10;
const FLOW_COUNTS: [usize; 3] = [1_000, 10_000, 100_000];
const PART3_FLOW_CAPACITY: u32 = 131_072;

/// Part 4: the production interval and the rate asked for.
const AGENT_INTERVAL: &str = "1s";
const AGENT_RATE: u64 = 200_000;
const AGENT_FLOOD: Duration = Duration::from_secs(5);

/// Parts 4 and 5 measure the traffic core alone: the host telemetry
/// collectors (whose cost part 6 measures) and the history (part 7) are off.
const COLLECTORS: &str = "system,interfaces,discovery,latency";

/// Part 5: distinct flows sent to the agent, and its flow map size.
const RSS_FLOWS: usize = 100_000;
const RSS_FLOW_CAPACITY: &str = "131072";

fn main() {
    let opts = Options::parse();
    require_root();
    let started = Instant::now();
    println!(
        "netmon datapath benchmark: {} CPUs, {} flood sender(s), {} s per phase, {} round(s)",
        cpus(),
        opts.senders,
        opts.seconds.as_secs_f64(),
        opts.rounds
    );

    if opts.only_collectors {
        part6();
        return;
    }
    if opts.only_history {
        part7();
        part8();
        return;
    }
    if opts.only_datapath {
        part1_and_2(&opts);
        return;
    }
    if opts.only_agent {
        let drains = part3();
        let rss = part5();
        println!("\n## Summary (markdown)\n");
        println!("| measure | result | target | verdict |");
        println!("|---|---|---|---|");
        summary_agent(&drains, &rss);
        return;
    }
    if opts.only_hostile {
        let h = hostile::run(opts.flood);
        println!("\n## Summary (markdown)\n");
        println!("| measure | result | target | verdict |");
        println!("|---|---|---|---|");
        hostile::summary(&h);
        println!("\nTotal time: {:.0} s", started.elapsed().as_secs_f64());
        return;
    }
    if opts.only_drains {
        part3();
        return;
    }
    let hooks = part1_and_2(&opts);
    let drains = part3();
    let agent = part4();
    let rss = part5();
    let collectors = part6();
    let history = part7();
    let api = part8();

    summary(&hooks, &drains, &agent, &rss, &collectors);
    summary_history(&history, &api);
    println!("\nTotal time: {:.0} s", started.elapsed().as_secs_f64());
}

struct Options {
    seconds: Duration,
    rounds: usize,
    senders: usize,
    /// Part 6 alone (`--collectors`).
    only_collectors: bool,
    /// Parts 7 and 8 alone (`--history`).
    only_history: bool,
    /// Parts 1 and 2 alone (`--datapath`).
    only_datapath: bool,
    /// The hostile part alone (`--hostile`).
    only_hostile: bool,
    /// Parts 3 and 5 alone (`--agent`).
    only_agent: bool,
    /// Its flood's length (`--flood-seconds`).
    flood: Duration,
    /// Part 3 alone (`--drains`).
    only_drains: bool,
    /// Parts 1-2's traffic (`--flows 1,2000,flood`; default all of
    /// [`Load::ALL`]).
    loads: Vec<Load>,
    /// Parts 1-2's hooks (`--hooks xdp,tc-in,tc-eg`; default all).
    hooks: Vec<Hook>,
}

impl Options {
    /// Parses the arguments after the program name. `cargo bench` adds
    /// `--bench`, which is ignored.
    fn parse() -> Options {
        let mut opts = Options {
            seconds: Duration::from_secs(2),
            rounds: 5,
            senders: 1,
            only_collectors: false,
            only_history: false,
            only_datapath: false,
            only_hostile: false,
            only_agent: false,
            flood: Duration::from_secs(300),
            only_drains: false,
            loads: Load::ALL.to_vec(),
            hooks: Hook::ALL.to_vec(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut text = |name: &str| -> String {
                args.next()
                    .unwrap_or_else(|| panic!("{name} needs a value"))
            };
            let mut value = |name: &str| -> f64 {
                let text = text(name);
                text.parse()
                    .unwrap_or_else(|e| panic!("{name} {text:?}: {e}"))
            };
            match arg.as_str() {
                "--bench" => {}
                "--seconds" => opts.seconds = Duration::from_secs_f64(value("--seconds")),
                "--rounds" => opts.rounds = value("--rounds") as usize,
                "--senders" => opts.senders = value("--senders") as usize,
                "--collectors" => opts.only_collectors = true,
                "--history" => opts.only_history = true,
                "--datapath" => opts.only_datapath = true,
                "--hostile" => opts.only_hostile = true,
                "--agent" => opts.only_agent = true,
                "--flood-seconds" => opts.flood = Duration::from_secs_f64(value("--flood-seconds")),
                "--drains" => opts.only_drains = true,
                "--flows" => {
                    opts.loads = text("--flows")
                        .split(',')
                        .map(|t| {
                            Load::parse(t).unwrap_or_else(|| {
                                panic!("--flows: {t:?} is neither a flow count nor \"flood\"")
                            })
                        })
                        .collect();
                }
                "--hooks" => {
                    opts.hooks = text("--hooks")
                        .split(',')
                        .map(|t| {
                            Hook::parse(t).unwrap_or_else(|| {
                                panic!("--hooks: {t:?} is not xdp, tc-in or tc-eg")
                            })
                        })
                        .collect();
                }
                other => panic!(
                    "unknown argument {other:?}; options: --seconds S, --rounds N, --senders N, --flows N,...|flood, --hooks xdp,tc-in,tc-eg, --datapath, --drains, --collectors, --history, --agent, --hostile, --flood-seconds S"
                ),
            }
        }
        assert!(
            opts.rounds > 0 && opts.senders > 0,
            "--rounds and --senders must be > 0"
        );
        assert!(
            !opts.loads.is_empty() && !opts.hooks.is_empty(),
            "--flows and --hooks need at least one value"
        );
        opts
    }
}

fn cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

// ---------------------------------------------------------------------------
// Parts 1 and 2: the programs at each hook.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    const ALL: [Hook; 3] = [Hook::Xdp, Hook::TcIngress, Hook::TcEgress];

    fn parse(text: &str) -> Option<Hook> {
        match text {
            "xdp" => Some(Hook::Xdp),
            "tc-in" => Some(Hook::TcIngress),
            "tc-eg" => Some(Hook::TcEgress),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Hook::Xdp => "XDP (b, native veth)",
            Hook::TcIngress => "TC ingress (b)",
            Hook::TcEgress => "TC egress (a)",
        }
    }

    /// CPU ns per packet of the path this hook's program runs on: b's
    /// receive path for the ingress hooks, a's send path for egress.
    fn path_cpu_ns(self, run: &PhaseRun) -> f64 {
        match self {
            Hook::Xdp | Hook::TcIngress => run.rx_cpu_ns,
            Hook::TcEgress => run.tx_cpu_ns,
        }
    }

    /// The interface and direction netmon counts the traffic at.
    fn counted_at(self) -> (u32, u8) {
        match self {
            Hook::Xdp | Hook::TcIngress => (Pair::IFINDEX_B, direction::INGRESS),
            Hook::TcEgress => (Pair::IFINDEX_A, direction::EGRESS),
        }
    }

    fn path_label(self) -> &'static str {
        match self {
            Hook::Xdp | Hook::TcIngress => "b's receive (NAPI thread)",
            Hook::TcEgress => "a's send (sender threads)",
        }
    }

    /// The pass-only floor and netmon's program at this hook.
    fn programs(self) -> [&'static str; 2] {
        match self {
            Hook::Xdp => [PROG_XDP_PASS, PROG_XDP],
            Hook::TcIngress => [PROG_TC_PASS, PROG_TC_INGRESS],
            Hook::TcEgress => [PROG_TC_PASS, PROG_TC_EGRESS],
        }
    }
}

/// One measured phase: one program at one hook under the flood.
#[derive(Clone, Copy, Debug, Default)]
struct PhaseRun {
    /// Δrun_time / Δrun_count over the window.
    ns_per_packet: f64,
    /// Δrun_count over the window.
    program_runs: u64,
    /// Datagrams `b`'s UDP layer processed per second, over the window.
    received_pps: f64,
    /// Frames the senders handed to the kernel per second, over the window.
    offered_pps: f64,
    /// CPU time of b's receive path (its NAPI thread) per datagram b
    /// processed, over the window.
    rx_cpu_ns: f64,
    /// CPU time of a's send path (the sender threads, TC egress included)
    /// per frame that went down it (sent or dropped by veth), over the
    /// window.
    tx_cpu_ns: f64,
    /// Whole phase (quiescent before and after): frames sent by `a`...
    sent: u64,
    /// ...frames a's veth dropped after TC egress (ring to b full)...
    dropped: u64,
    /// ...datagrams `b`'s UDP layer counted...
    udp_counted: u64,
    /// ...and netmon's count of the traffic (netmon phases only).
    netmon: Option<Counted>,
}

/// Medians over the rounds, per traffic and hook.
struct HookResult {
    load: Load,
    hook: Hook,
    floor: PhaseRun,
    netmon: PhaseRun,
    /// Sums over the rounds of the netmon phases' whole-phase counts.
    sent: u64,
    dropped: u64,
    udp_counted: u64,
    netmon_counted: u64,
    /// Flow-cache misses of the netmon phases' windows, and the frames
    /// netmon counted in them, summed.
    misses: u64,
    window_packets: u64,
    /// Medians over the rounds of netmon / floor within each round, for
    /// ns/packet and the receiver's rate: adjacent phases share the
    /// machine's load of the moment, so their ratio is steadier than the
    /// ratio of the medians.
    ratios: (f64, f64),
    /// The per-round ratios themselves, to show the spread.
    round_ratios: (Vec<f64>, Vec<f64>),
    /// BPF_PROG_TEST_RUN mean ns per run of the floor and netmon's program
    /// on the flood frame, without run statistics: the programs alone.
    test_run: [f64; 2],
}

impl HookResult {
    /// The kernel's count netmon's must equal, and what it is. At b's
    /// ingress hooks netmon sees what reaches b's stack (veth drops before
    /// them); at a's egress, every frame that goes down a's transmit path,
    /// also those veth then drops.
    fn reference(&self) -> (u64, &'static str) {
        match self.hook {
            Hook::TcEgress => (self.sent + self.dropped, "sent + dropped"),
            Hook::Xdp | Hook::TcIngress => (self.udp_counted, "b's UDP"),
        }
    }

    fn cost_ratio(&self) -> f64 {
        self.ratios.0
    }

    fn rate_ratio(&self) -> f64 {
        self.ratios.1
    }

    /// The rate ratio implied by the programs' own cost: the floor's path
    /// plus what netmon's program adds over the floor's program. Steadier
    /// than the measured ratio (run statistics vary far less than a whole
    /// path's CPU time), but blind to indirect costs such as cache misses
    /// netmon causes later on the path.
    fn implied_rate_ratio(&self) -> f64 {
        let path = self.hook.path_cpu_ns(&self.floor);
        path / (path + self.netmon.ns_per_packet - self.floor.ns_per_packet)
    }

    /// The rate verdict: both estimates must meet the target.
    fn rate_verdict(&self) -> &'static str {
        match (
            self.rate_ratio() >= MIN_RATE_RATIO,
            self.implied_rate_ratio() >= MIN_RATE_RATIO,
        ) {
            (true, true) => "met",
            (false, false) => "MISSED",
            (true, false) => "unclear: measured met, implied MISSED",
            (false, true) => "unclear: measured MISSED, implied met",
        }
    }
}

enum Link {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

/// The traffic of a phase: 60-byte UDP frames from `a` to `b`'s sink, their
/// sources chosen so that each frame belongs to one of a known number of
/// flows (netmon's flow key has no ports: a source address is a flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Load {
    /// From `n` sources (10.64.0.0 onwards) sent round-robin: `n`
    /// concurrent flows, each sending every `n`-th frame.
    Flows(usize),
    /// Every frame from a source not seen before in the phase: 10.128.0.0/9
    /// walked in a scrambled order (the random-source flood).
    Flood,
}

impl Load {
    const ALL: [Load; 6] = [
        Load::Flows(1),
        Load::Flows(200),
        Load::Flows(2_000),
        Load::Flows(10_000),
        Load::Flows(100_000),
        Load::Flood,
    ];

    fn label(self) -> String {
        match self {
            Load::Flows(1) => "1 flow".to_owned(),
            Load::Flows(n) => format!("{n} flows"),
            Load::Flood => "random-source flood".to_owned(),
        }
    }

    /// The cost target: netmon / pass-only floor at most this.
    fn max_cost_ratio(self) -> f64 {
        match self {
            Load::Flows(n) if n <= 10_000 => 2.0,
            Load::Flows(_) => 3.0,
            Load::Flood => 4.0,
        }
    }

    fn parse(text: &str) -> Option<Load> {
        match text {
            "flood" => Some(Load::Flood),
            n => n.parse().ok().filter(|&n| n > 0).map(Load::Flows),
        }
    }
}

/// The first source of [`Load::Flows`]: 10.64.0.0.
const FLOWS_FIRST_SOURCE: u32 = 0x0a40_0000;
/// [`Load::Flood`]'s sources: 10.128.0.0/9.
const FLOOD_NET: u32 = 0x0a80_0000;
const FLOOD_BITS: u32 = 23;

/// The `i`-th source of the flood: a bijection of the low [`FLOOD_BITS`]
/// bits (odd multiplies and a xorshift), so no source repeats within 2^23
/// frames and consecutive ones land far apart.
fn flood_source(i: u64) -> Ipv4Addr {
    const MASK: u32 = (1 << FLOOD_BITS) - 1;
    let mut x = (i as u32) & MASK;
    x = x.wrapping_mul(0x0054_5f4d) & MASK;
    x ^= x >> 12;
    x = x.wrapping_mul(0x0036_9dea | 1) & MASK;
    Ipv4Addr::from(FLOOD_NET | x)
}

/// Frames of [`FLOOD_FRAME_LEN`] bytes, back to back, that senders cycle
/// through; for [`Load::Flood`] a template whose source each sender
/// rewrites in its own copy.
struct Frames {
    bytes: Vec<u8>,
    load: Load,
}

/// 14 + 20 + 8 + [`FLOOD_PAYLOAD`].
const FLOOD_FRAME_LEN: usize = 60;
/// Offsets in a frame: the IPv4 header, its checksum and source.
const IP_OFF: usize = 14;

impl Frames {
    fn new(load: Load) -> Frames {
        let sources: Vec<Ipv4Addr> = match load {
            Load::Flows(n) => (0..n as u32)
                .map(|i| Ipv4Addr::from(FLOWS_FIRST_SOURCE + i))
                .collect(),
            Load::Flood => vec![flood_source(0)],
        };
        let mut bytes = Vec::with_capacity(sources.len() * FLOOD_FRAME_LEN);
        for src in sources {
            bytes.extend_from_slice(&flood_frame(src));
        }
        Frames { bytes, load }
    }

    fn count(&self) -> usize {
        self.bytes.len() / FLOOD_FRAME_LEN
    }

    fn get(&self, i: usize) -> &[u8] {
        let at = (i % self.count()) * FLOOD_FRAME_LEN;
        &self.bytes[at..at + FLOOD_FRAME_LEN]
    }
}

/// Sets `frame`'s IPv4 source and header checksum, and its UDP checksum
/// to 0 (none, as IPv4 allows).
fn set_source(frame: &mut [u8], src: Ipv4Addr) {
    // UDP checksum: none.
    frame[IP_OFF + 26..IP_OFF + 28].copy_from_slice(&[0, 0]);
    let ip = &mut frame[IP_OFF..IP_OFF + 20];
    ip[12..16].copy_from_slice(&src.octets());
    ip[10..12].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The pair, netmon's programs (loaded by the agent's own [`Kernel`], maps
/// sized as the agent sizes them by default), the pass-only programs in a
/// second copy of the object, and one flood socket per sender in `a`.
struct Datapath {
    pair: Pair,
    netmon: Netmon,
    floor: Ebpf,
    senders: Vec<RawSocket>,
    /// Traffic by load, built once.
    frames: HashMap<Load, Frames>,
    /// The flood's next source, shared by the senders.
    flood_next: AtomicU64,
    /// Bound in `b` for the lifetime of the benchmark (see [`SINK_PORT`]).
    _sink: UdpSocket,
    /// b's NAPI thread, which runs all of b's receive processing.
    napi: NapiThread,
}

/// Traffic before a netmon phase's window: four drains, in which the flow
/// cache sizes each half's index for the phase's flows.
const NETMON_WARMUP: Duration = Duration::from_millis(4_020);
/// How often the agent drains by default (`--interval`); netmon phases
/// drain as often, so the flow cache turns over as it does in the agent.
const DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// What netmon counted of one phase's traffic.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    /// Frames of the phase's traffic, in every counter netmon has for them.
    packets: u64,
    /// IP frames that missed the flow cache (`globals.cache_misses`).
    misses: u64,
    /// The same two from the last drain before the window on (the index
    /// sized for the phase's flows).
    window_packets: u64,
    window_misses: u64,
}

impl Datapath {
    fn new(senders: usize, loads: &[Load]) -> Datapath {
        let pair = Pair::new();
        let kernel = Kernel::load(IngressHook::Auto, MapSizes::default())
            .unwrap_or_else(|e| panic!("loading the eBPF object: {:#}", anyhow::Error::from(e)));
        // Load the netmon programs' pass-only twins; the maps of this copy
        // stay unused.
        let mut floor = EbpfLoader::new()
            .load(OBJECT)
            .unwrap_or_else(|e| panic!("loading the eBPF object: {e}"));
        xdp(&mut floor, PROG_XDP_PASS)
            .load()
            .unwrap_or_else(|e| panic!("loading {PROG_XDP_PASS}: {e}"));
        classifier(&mut floor, PROG_TC_PASS)
            .load()
            .unwrap_or_else(|e| panic!("loading {PROG_TC_PASS}: {e}"));
        let senders = pair.a().ns().run(|| {
            (0..senders)
                .map(|_| RawSocket::open(Pair::IFNAME))
                .collect()
        });
        let frames = loads.iter().map(|&l| (l, Frames::new(l))).collect();
        let sink = pair.b().ns().run(full_sink);
        let napi = NapiThread::enable(&pair);
        Datapath {
            pair,
            netmon: Netmon {
                kernel,
                reading: Reading::default(),
            },
            floor,
            senders,
            frames,
            flood_next: AtomicU64::new(0),
            _sink: sink,
            napi,
        }
    }

    fn object_mut(&mut self, name: &str) -> &mut Ebpf {
        if is_floor(name) {
            &mut self.floor
        } else {
            self.netmon.kernel.object_mut()
        }
    }

    fn attach(&mut self, hook: Hook, name: &str) -> Link {
        let fail = |e: aya::programs::ProgramError| -> ! {
            panic!("attaching {name} at {}: {e}", hook.label())
        };
        let Datapath {
            pair,
            netmon,
            floor,
            ..
        } = self;
        let object = if is_floor(name) {
            floor
        } else {
            netmon.kernel.object_mut()
        };
        // The ifindex is looked up in the calling thread's namespace.
        match hook {
            Hook::Xdp => {
                let program = xdp(object, name);
                let id = pair
                    .b()
                    .ns()
                    .run(|| program.attach(Pair::IFINDEX_B, XdpMode::Driver));
                Link::Xdp(id.unwrap_or_else(|e| fail(e)))
            }
            Hook::TcIngress | Hook::TcEgress => {
                let (host, ifindex, side) = if hook == Hook::TcIngress {
                    (pair.b(), Pair::IFINDEX_B, TcAttachType::Ingress)
                } else {
                    (pair.a(), Pair::IFINDEX_A, TcAttachType::Egress)
                };
                let program = classifier(object, name);
                let id = host.ns().run(|| program.attach(ifindex, side));
                Link::Tc(id.unwrap_or_else(|e| fail(e)))
            }
        }
    }

    fn detach(&mut self, name: &str, link: Link) {
        let result = match link {
            Link::Xdp(id) => xdp(self.object_mut(name), name).detach(id),
            Link::Tc(id) => classifier(self.object_mut(name), name).detach(id),
        };
        result.unwrap_or_else(|e| panic!("detaching {name}: {e}"));
    }

    /// Mean ns per run of `name` on a frame of the flood with
    /// BPF_PROG_TEST_RUN (median of 3 runs of [`TEST_RUN_REPEAT`]).
    fn test_run_ns(&mut self, name: &str) -> f64 {
        let frame = flood_frame(Pair::IP4_A);
        let samples = (0..3)
            .map(|_| {
                if !is_floor(name) {
                    let (_, d) = self
                        .netmon
                        .kernel
                        .test_run(name, &frame, 1, TEST_RUN_REPEAT)
                        .unwrap_or_else(|e| panic!("test_run of {name}: {e}"));
                    return d.as_nanos() as f64;
                }
                let mut opts = TestRunOptions::new();
                opts.data_in = Some(&frame);
                opts.repeat = TEST_RUN_REPEAT;
                let program = self
                    .floor
                    .program(name)
                    .expect("the object has the program");
                let result = match program {
                    aya::programs::Program::Xdp(p) => p.test_run(opts),
                    aya::programs::Program::SchedClassifier(p) => p.test_run(opts),
                    _ => unreachable!("{name} is an XDP or TC program"),
                };
                let result = result.unwrap_or_else(|e| panic!("test_run of {name}: {e}"));
                result.duration.as_nanos() as f64
            })
            .collect();
        median(samples)
    }

    fn run_phase(
        &mut self,
        load: Load,
        hook: Hook,
        name: &'static str,
        seconds: Duration,
    ) -> PhaseRun {
        let floor_phase = is_floor(name);
        let misses_before = (!floor_phase).then(|| self.netmon.reset());
        let link = self.attach(hook, name);
        let Datapath {
            pair,
            netmon,
            floor,
            senders,
            frames,
            flood_next,
            napi,
            ..
        } = self;
        let b = pair.b().ns();
        let udp_before = udp_rx(b);

        let stop = AtomicBool::new(false);
        let offered = AtomicU64::new(0);
        let mut counted = 0u64;
        let frames = &frames[&load];
        let flood_next = &*flood_next;
        let (mut run, sent, window_start) = thread::scope(|scope| {
            let (clocks_tx, clocks) = mpsc::channel();
            let floods: Vec<_> = senders
                .iter()
                .map(|sock| {
                    let clocks_tx = clocks_tx.clone();
                    let (stop, offered) = (&stop, &offered);
                    scope.spawn(move || {
                        let _ = clocks_tx.send(own_cpu_clock());
                        flood(sock, frames, flood_next, stop, offered)
                    })
                })
                .collect();
            let clocks: Vec<libc::clockid_t> = clocks.iter().take(floods.len()).collect();
            let started = Instant::now();
            let sample = |netmon: &Netmon| {
                let object = if floor_phase {
                    &*floor
                } else {
                    netmon.kernel.object()
                };
                Sample {
                    at: Instant::now(),
                    offered: offered.load(Ordering::Relaxed),
                    program: program_stats(object, name),
                    udp: udp_rx(b),
                    rx_cpu: napi.cpu(),
                    tx_cpu: clocks.iter().map(|&c| clock_time(c)).sum(),
                }
            };
            // netmon phases drain every DRAIN_INTERVAL on this thread, as
            // the agent does on its own; the samples read the counters
            // between drains.
            let mut next_drain = started + DRAIN_INTERVAL;
            let mut wait = |netmon: &mut Netmon, until: Instant| -> u64 {
                let mut n = 0;
                loop {
                    let now = Instant::now();
                    if now >= until {
                        return n;
                    }
                    if !floor_phase && now >= next_drain {
                        n += netmon.drain(hook, false);
                        next_drain += DRAIN_INTERVAL;
                        continue;
                    }
                    let next = if floor_phase {
                        until
                    } else {
                        next_drain.min(until)
                    };
                    thread::sleep(next - now);
                }
            };
            // netmon phases run a few intervals first: the flow cache sizes
            // each half's index by its last generation.
            let warmup = if floor_phase { WARMUP } else { NETMON_WARMUP };
            counted += wait(netmon, started + warmup);
            // The window's misses and count start at the last drain, just
            // before it.
            let window_start = (counted, netmon.reading.globals.cache_misses);
            let s0 = sample(netmon);
            counted += wait(netmon, s0.at + seconds);
            let s1 = sample(netmon);
            stop.store(true, Ordering::Relaxed);
            let sent = floods
                .into_iter()
                .map(|f| f.join().expect("a flood thread panicked"))
                .fold(Flooded::default(), |a, b| Flooded {
                    sent: a.sent + b.sent,
                    dropped: a.dropped + b.dropped,
                });
            let secs = (s1.at - s0.at).as_secs_f64();
            let runs = s1.program.1 - s0.program.1;
            let received = s1.udp.total() - s0.udp.total();
            let offered = s1.offered - s0.offered;
            let run = PhaseRun {
                ns_per_packet: (s1.program.0 - s0.program.0).as_nanos() as f64 / runs.max(1) as f64,
                program_runs: runs,
                received_pps: received as f64 / secs,
                offered_pps: offered as f64 / secs,
                rx_cpu_ns: (s1.rx_cpu - s0.rx_cpu).as_nanos() as f64 / received.max(1) as f64,
                tx_cpu_ns: (s1.tx_cpu - s0.tx_cpu).as_nanos() as f64 / offered.max(1) as f64,
                ..PhaseRun::default()
            };
            (run, sent, window_start)
        });
        thread::sleep(SETTLE);
        run.sent = sent.sent;
        run.dropped = sent.dropped;
        run.udp_counted = udp_rx(b).total() - udp_before.total();
        self.detach(name, link);
        if let Some(before) = misses_before {
            counted += self.netmon.drain(hook, true);
            let misses = self.netmon.reading.globals.cache_misses;
            run.netmon = Some(Counted {
                packets: counted,
                misses: misses - before,
                window_packets: counted - window_start.0,
                window_misses: misses - window_start.1,
            });
        }
        run
    }
}

/// netmon's programs and the reading its drains reuse.
struct Netmon {
    kernel: Kernel,
    reading: Reading,
}

impl Netmon {
    /// Empties netmon's counters before a phase: two drains (both halves of
    /// the flow cache), then every hash-map entry deleted, so each phase
    /// starts as a fresh agent would. Returns the globals' miss count.
    fn reset(&mut self) -> u64 {
        for _ in 0..2 {
            self.kernel
                .read(&mut self.reading)
                .expect("reading the maps");
        }
        let expired = Expired {
            macs: self.reading.macs.iter().map(|(k, _)| *k).collect(),
            flows: self.reading.flows.iter().map(|(k, _)| *k).collect(),
        };
        self.kernel.delete(&expired);
        self.reading.globals.cache_misses
    }

    /// One drain, as the agent's; returns the phase's frames in the flow
    /// cache's finished generation. With `last`, adds what the MAC-pair
    /// map holds (running totals since [`Netmon::reset`]). The MAC pair is
    /// what device and interface totals are made of; a frame in the flow
    /// map is in the MAC-pair map too, and flow-map entries may be evicted.
    fn drain(&mut self, hook: Hook, last: bool) -> u64 {
        self.kernel
            .read(&mut self.reading)
            .expect("reading the maps");
        let r = &self.reading;
        let (ifindex, dir) = hook.counted_at();
        let cached: u64 = r
            .cached
            .iter()
            .filter(|(k, _)| {
                k.ifindex == ifindex
                    && k.direction == dir
                    && (k.src_mac, k.dst_mac) == (Pair::MAC_A, Pair::MAC_B)
            })
            .map(|(_, c)| c.packets)
            .sum();
        let mapped: u64 = r
            .macs
            .iter()
            .filter(|(k, _)| {
                k.ifindex == ifindex
                    && k.direction == dir
                    && (k.src, k.dst) == (Pair::MAC_A, Pair::MAC_B)
            })
            .map(|(_, c)| c.packets)
            .sum();
        cached + if last { mapped } else { 0 }
    }
}

fn is_floor(name: &str) -> bool {
    name == PROG_XDP_PASS || name == PROG_TC_PASS
}

fn program_stats(object: &Ebpf, name: &str) -> (Duration, u64) {
    let info = object
        .program(name)
        .expect("the object has the program")
        .info()
        .unwrap_or_else(|e| panic!("info of {name}: {e}"));
    (info.run_time(), info.run_count())
}

/// Counters read at each end of a phase's measurement window.
struct Sample {
    at: Instant,
    offered: u64,
    /// Run time and run count of the attached program.
    program: (Duration, u64),
    udp: UdpRx,
    rx_cpu: Duration,
    tx_cpu: Duration,
}

/// The kernel thread that runs an interface's NAPI polling once NAPI is
/// threaded. On veth it does all of the receiver's work: XDP, building the
/// skb, GRO, TC ingress, IP and UDP; so its CPU time per packet is the
/// receive path's cost, whatever else the machine is doing.
struct NapiThread {
    pid: u32,
    comm: String,
}

impl NapiThread {
    /// Makes the veth pair deliver to b through NAPI as a NIC driver does,
    /// with or without XDP, and threads b's NAPI; returns its thread. veth
    /// uses NAPI without XDP when the receiver has GRO on and the sender no
    /// TSO (`veth_skb_is_eligible_for_gro`).
    fn enable(pair: &Pair) -> NapiThread {
        let (ns, ifname) = (pair.b().ns(), Pair::IFNAME);
        let before = napi_threads(ifname);
        pair.a()
            .ns()
            .run(|| set_offload(ifname, ETHTOOL_STSO, false));
        ns.run(|| set_offload(ifname, ETHTOOL_SGRO, true));
        ns.exec(&[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{ifname}/threaded"),
        ]);
        let new: Vec<(u32, String)> = napi_threads(ifname)
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        let [(pid, comm)] = &new[..] else {
            panic!(
                "expected one new NAPI thread for {ifname} in {}, found {new:?}",
                ns.name()
            );
        };
        NapiThread {
            pid: *pid,
            comm: comm.clone(),
        }
    }

    /// The thread's CPU time so far (`/proc/PID/schedstat`, ns). Panics if
    /// the thread is gone (NAPI re-created), which would void the window.
    fn cpu(&self) -> Duration {
        let comm = fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
        assert_eq!(
            comm.trim(),
            self.comm,
            "NAPI thread {} went away",
            self.comm
        );
        let path = format!("/proc/{}/schedstat", self.pid);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let ns = text.split_whitespace().next().and_then(|f| f.parse().ok());
        Duration::from_nanos(ns.unwrap_or_else(|| panic!("{path}: {text:?}")))
    }
}

/// The `napi/IFNAME-ID` kernel threads on the machine, as (pid, name).
fn napi_threads(ifname: &str) -> Vec<(u32, String)> {
    let prefix = format!("napi/{ifname}-");
    fs::read_dir("/proc")
        .expect("listing /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            comm.starts_with(&prefix).then(|| (pid, comm.to_owned()))
        })
        .collect()
}

/// `ethtool -K IFNAME tso off`.
const ETHTOOL_STSO: u32 = 0x1f;
/// `ethtool -K IFNAME gro on`.
const ETHTOOL_SGRO: u32 = 0x2c;

/// Sets one offload of `ifname` in the calling thread's namespace with a
/// legacy ethtool ioctl (`cmd`: [`ETHTOOL_STSO`], [`ETHTOOL_SGRO`]).
fn set_offload(ifname: &str, cmd: u32, on: bool) {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd,
        data: u32::from(on),
    };
    // SAFETY: ifreq is plain old data; all zeroes is valid.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifr` names the interface and points at `value`, both live
    // for the call, as SIOCETHTOOL expects.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL, &raw mut ifr) };
    assert_eq!(
        rc,
        0,
        "ethtool command {cmd:#x} on {ifname}: {}",
        io::Error::last_os_error()
    );
}

/// The calling thread's CPU clock, which other threads can read.
fn own_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a live clockid_t for the call.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    assert_eq!(
        rc,
        0,
        "pthread_getcpuclockid: {}",
        io::Error::from_raw_os_error(rc)
    );
    clock
}

fn clock_time(clock: libc::clockid_t) -> Duration {
    // SAFETY: timespec is plain old data; all zeroes is valid.
    let mut ts: libc::timespec = unsafe { mem::zeroed() };
    // SAFETY: `ts` is a live timespec for the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A UDP socket on b's [`SINK_PORT`] with the smallest receive buffer, in
/// the calling thread's namespace; never read, so it fills at once.
fn full_sink() -> UdpSocket {
    let sock = UdpSocket::bind(SocketAddrV4::new(Pair::IP4_B, SINK_PORT))
        .unwrap_or_else(|e| panic!("binding the UDP sink: {e}"));
    let size: libc::c_int = 0;
    // SAFETY: the value pointer and length describe a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
    sock
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("{name} is an XDP program of the object"))
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("{name} is a TC program of the object"))
}

/// A 60-byte frame (64 on the wire) from `src` to b's closed UDP port.
fn flood_frame(src: Ipv4Addr) -> Vec<u8> {
    let ip = ipv4_udp(
        SocketAddrV4::new(src, 4000),
        SocketAddrV4::new(Pair::IP4_B, SINK_PORT),
        &[0x5a; FLOOD_PAYLOAD],
    );
    eth(Pair::MAC_B, Pair::MAC_A, ETHERTYPE_IPV4, &ip)
}

fn part1_and_2(opts: &Options) -> Vec<HookResult> {
    println!(
        "\n## Parts 1-2: the programs at each hook (veth pair, 60-byte UDP frames a -> b, as fast as a sends)\n"
    );
    let mut dp = Datapath::new(opts.senders, &opts.loads);
    // Before the run statistics are on: with them, every run also pays for
    // two clock reads.
    let test_runs: HashMap<(Hook, &str), f64> = opts
        .hooks
        .iter()
        .flat_map(|&hook| hook.programs().map(|name| (hook, name)))
        .map(|(hook, name)| ((hook, name), dp.test_run_ns(name)))
        .collect();
    // Run statistics are on while this fd is open; closing it (also when the
    // process dies) restores the kernel's setting.
    let stats =
        enable_stats(Stats::RunTime).unwrap_or_else(|e| panic!("BPF_ENABLE_STATS(RUN_TIME): {e}"));
    let mut runs: HashMap<(Load, Hook, &str), Vec<PhaseRun>> = HashMap::new();
    for round in 0..opts.rounds {
        for &load in &opts.loads {
            for &hook in &opts.hooks {
                let mut programs = hook.programs();
                // Alternate which program goes first, so drift favours neither.
                if round % 2 == 1 {
                    programs.reverse();
                }
                for name in programs {
                    let run = dp.run_phase(load, hook, name, opts.seconds);
                    println!(
                        "  round {}/{} {:<20} {:<20} {:<14} prog {:>6.1} ns/pkt{} | CPU/pkt: b rx {:>5.0} ns, a tx {:>5.0} ns | b processed {:>7.0} pkt/s of {:>7.0} sent",
                        round + 1,
                        opts.rounds,
                        load.label(),
                        hook.label(),
                        name,
                        run.ns_per_packet,
                        run.netmon.map_or(String::new(), |c| format!(
                            " ({:.1}% missed the cache; {:.1}% in the window)",
                            percent(c.misses, c.packets),
                            percent(c.window_misses, c.window_packets)
                        )),
                        run.rx_cpu_ns,
                        run.tx_cpu_ns,
                        run.received_pps,
                        run.offered_pps,
                    );
                    runs.entry((load, hook, name)).or_default().push(run);
                }
            }
        }
    }
    let results: Vec<HookResult> = opts
        .loads
        .iter()
        .flat_map(|&load| opts.hooks.iter().map(move |&hook| (load, hook)))
        .map(|(load, hook)| {
            let [floor, netmon] = hook.programs().map(|name| &runs[&(load, hook, name)]);
            let per_round = |f: &dyn Fn(&PhaseRun, &PhaseRun) -> f64| -> Vec<f64> {
                netmon.iter().zip(floor).map(|(n, fl)| f(n, fl)).collect()
            };
            let cost = per_round(&|n, f| n.ns_per_packet / f.ns_per_packet);
            let rate = per_round(&|n, f| hook.path_cpu_ns(f) / hook.path_cpu_ns(n));
            let counted = |f: fn(&Counted) -> u64| {
                netmon.iter().filter_map(|r| r.netmon.as_ref()).map(f).sum()
            };
            HookResult {
                load,
                hook,
                floor: median_run(floor),
                netmon: median_run(netmon),
                sent: netmon.iter().map(|r| r.sent).sum(),
                dropped: netmon.iter().map(|r| r.dropped).sum(),
                udp_counted: netmon.iter().map(|r| r.udp_counted).sum(),
                netmon_counted: counted(|c| c.packets),
                misses: counted(|c| c.window_misses),
                window_packets: counted(|c| c.window_packets),
                test_run: hook.programs().map(|name| test_runs[&(hook, name)]),
                ratios: (median(cost.clone()), median(rate.clone())),
                round_ratios: (cost, rate),
            }
        })
        .collect();
    drop(stats);
    drop(dp);

    println!(
        "\n### Part 1: per-packet cost (kernel run statistics; medians of {} rounds, ratio = median of per-round ratios)\n",
        opts.rounds
    );
    println!(
        "| traffic | hook | floor ns/pkt | netmon ns/pkt | netmon - floor | ratio | target | flow-cache misses | per-round ratios | runs/phase floor / netmon | test_run ns floor / netmon |"
    );
    println!("|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2}x | <= {:.0}x: {} | {:.1}% | {} | {} / {} | {:.0} / {:.0} |",
            r.load.label(),
            r.hook.label(),
            r.floor.ns_per_packet,
            r.netmon.ns_per_packet,
            r.netmon.ns_per_packet - r.floor.ns_per_packet,
            r.cost_ratio(),
            r.load.max_cost_ratio(),
            verdict(r.cost_ratio() <= r.load.max_cost_ratio()),
            percent(r.misses, r.window_packets),
            list(&r.round_ratios.0, 1.0, "x"),
            r.floor.program_runs,
            r.netmon.program_runs,
            r.test_run[0],
            r.test_run[1],
        );
    }
    println!(
        "\nTraffic: 60-byte UDP frames from a to b's sink, from N sources (10.64.0.0 onwards) sent \
         round-robin, so N flows are active at once and each sends every N-th frame; or, in the \
         flood, every frame from a source not seen before (10.128.0.0/9 in a scrambled order). \
         netmon phases drain every {} s as the agent does by default (the flow cache's \
         generation flips, so each flow claims its slot again every interval); each starts from \
         empty maps. ns/pkt: Δrun_time / Δrun_count at the hook over the window; it includes \
         the two clock reads the run statistics add to every run. Flow-cache misses: IP frames \
         that found no slot, as a share of the frames netmon counted, from the last drain \
         before the window (after 4 s of the phase's traffic, in which each half of the \
         cache sizes its index for it) to the end. runs/phase: Δrun_count. \
         test_run: BPF_PROG_TEST_RUN on one flow's frame, {TEST_RUN_REPEAT} repeats, median of \
         3, statistics off: the program alone.",
        DRAIN_INTERVAL.as_secs()
    );

    println!(
        "\n### Part 2: host packet rate (medians of {} rounds, ratio = median of per-round ratios)\n",
        opts.rounds
    );
    println!(
        "| traffic | hook | path measured | pass-only CPU ns/pkt | netmon CPU ns/pkt | pass-only max pkt/s per core | netmon max pkt/s per core | ratio | per-round ratios | implied by program cost | target >= {:.0}% | wall clock: b processed pkt/s, pass-only / netmon |",
        MIN_RATE_RATIO * 100.0
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|");
    for r in &results {
        let (f, n) = (r.hook.path_cpu_ns(&r.floor), r.hook.path_cpu_ns(&r.netmon));
        println!(
            "| {} | {} | {} | {f:.0} | {n:.0} | {:.0} | {:.0} | {:.1}% | {} | {:.1}% | {} | {:.0} / {:.0} |",
            r.load.label(),
            r.hook.label(),
            r.hook.path_label(),
            1e9 / f,
            1e9 / n,
            r.rate_ratio() * 100.0,
            list(&r.round_ratios.1, 100.0, "%"),
            r.implied_rate_ratio() * 100.0,
            r.rate_verdict(),
            r.floor.received_pps,
            r.netmon.received_pps,
        );
    }
    println!(
        "\nThe rate a host sustains when the path is CPU-bound is one core's worth of it: \
         1e9 / (CPU ns per packet). b's receive path is its NAPI thread (threaded NAPI, GRO on, \
         so veth runs NAPI like a NIC driver): XDP, skb, GRO, TC ingress, IP, UDP, up to the \
         full socket that drops the datagram; per datagram b's UDP layer processed \
         (Udp: InDatagrams + NoPorts + InErrors). a's send path is the sender threads' CPU per \
         frame that went down a's transmit path (sendmmsg, AF_PACKET, TC egress, veth), sent or \
         dropped by veth (the flood's senders also write each frame's source). CPU time depends \
         far less on the rest of the machine's load than the wall-clock rates (b's UDP counters \
         per second) do, but not at all only on a quiet machine. Implied: the pass-only path's \
         CPU ns plus netmon's added ns/pkt from part 1, as a ratio; the verdict needs both."
    );
    println!(
        "Offered by a (frames down its transmit path per second, median, pass-only / netmon): {}",
        results
            .iter()
            .map(|r| format!(
                "{} at {}: {:.0} / {:.0}",
                r.load.label(),
                r.hook.label(),
                r.floor.offered_pps,
                r.netmon.offered_pps
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );

    println!("\nnetmon's count of the traffic vs the kernel's, netmon phases, all rounds:\n");
    println!(
        "| traffic | hook | sent by a | dropped by a's veth (ENOBUFS) | b's UDP counted | netmon counted | netmon - reference |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for r in &results {
        let (reference, what) = r.reference();
        let diff = r.netmon_counted as i64 - reference as i64;
        println!(
            "| {} | {} | {} | {} | {} | {} | {diff:+} vs {what}{} |",
            r.load.label(),
            r.hook.label(),
            r.sent,
            r.dropped,
            r.udp_counted,
            r.netmon_counted,
            if diff == 0 { " (equal)" } else { "" }
        );
    }
    results
}

/// `part` as a percentage of `whole` (0 for an empty whole).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn median_run(runs: &[PhaseRun]) -> PhaseRun {
    let m = |f: fn(&PhaseRun) -> f64| median(runs.iter().map(f).collect());
    PhaseRun {
        ns_per_packet: m(|r| r.ns_per_packet),
        program_runs: m(|r| r.program_runs as f64) as u64,
        received_pps: m(|r| r.received_pps),
        offered_pps: m(|r| r.offered_pps),
        rx_cpu_ns: m(|r| r.rx_cpu_ns),
        tx_cpu_ns: m(|r| r.tx_cpu_ns),
        ..PhaseRun::default()
    }
}

/// `values` scaled and suffixed, space-separated: `0.91x 1.02x`.
fn list(values: &[f64], scale: f64, unit: &str) -> String {
    let precision = if unit == "%" { 0 } else { 2 };
    values
        .iter()
        .map(|v| format!("{:.*}{unit}", precision, v * scale))
        .collect::<Vec<_>>()
        .join(" ")
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// `b`'s UDP receive counters from `/proc/net/snmp`.
#[derive(Clone, Copy, Debug, Default)]
struct UdpRx {
    in_datagrams: u64,
    no_ports: u64,
    in_errors: u64,
}

impl UdpRx {
    /// Every datagram the UDP layer finished with (InErrors includes
    /// RcvbufErrors and InCsumErrors).
    fn total(&self) -> u64 {
        self.in_datagrams + self.no_ports + self.in_errors
    }

    /// Parses the two `Udp:` lines (names, then values).
    fn parse(snmp: &str) -> Option<UdpRx> {
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let names = lines.next()?.split_whitespace().skip(1);
        let values = lines.next()?.split_whitespace().skip(1);
        let fields: HashMap<&str, u64> = names
            .zip(values)
            .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
            .collect();
        Some(UdpRx {
            in_datagrams: *fields.get("InDatagrams")?,
            no_ports: *fields.get("NoPorts")?,
            in_errors: *fields.get("InErrors")?,
        })
    }
}

fn udp_rx(ns: &NetNs) -> UdpRx {
    // /proc/thread-self/net follows the thread's namespace.
    let text = ns.run(|| fs::read_to_string("/proc/thread-self/net/snmp"));
    let text = text.unwrap_or_else(|e| panic!("reading /proc/net/snmp in {}: {e}", ns.name()));
    UdpRx::parse(&text).unwrap_or_else(|| panic!("no Udp lines in /proc/net/snmp:\n{text}"))
}

// ---------------------------------------------------------------------------
// Sending frames fast.

/// An `AF_PACKET` socket that sends whole Ethernet frames out of one
/// interface, `sendmmsg` batches at a time. Without PACKET_QDISC_BYPASS, so
/// frames take the normal transmit path (TC egress included).
struct RawSocket {
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
}

impl RawSocket {
    /// Opens the socket in the calling thread's namespace.
    fn open(ifname: &str) -> RawSocket {
        let name = std::ffi::CString::new(ifname).expect("an interface name");
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(
            ifindex != 0,
            "no interface {ifname}: {}",
            io::Error::last_os_error()
        );
        // Protocol 0: send only, never receive.
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_ifindex = ifindex as libc::c_int;
        addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&Pair::MAC_B);
        RawSocket { fd, addr }
    }

    /// Sends `frames` with one `sendmmsg`; returns how many the kernel took.
    fn send(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr().cast_mut().cast(),
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain old data; all zeroes is valid.
                let mut m: libc::mmsghdr = unsafe { mem::zeroed() };
                m.msg_hdr.msg_name = (&raw const self.addr).cast_mut().cast();
                m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: every pointer in `msgs` (address, iovec, frame) is live for
        // the call and the kernel only reads through them.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }

    /// [`RawSocket::send`] that treats a full queue (ENOBUFS, EAGAIN) as
    /// zero frames sent and panics on anything else.
    fn send_or_skip(&self, frames: &[&[u8]]) -> usize {
        match self.send(frames) {
            Ok(n) => n,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => 0,
            Err(e) => panic!("sendmmsg: {e}"),
        }
    }
}

/// What a flood thread did: frames the kernel took, and frames it dropped
/// in the transmit path after TC egress (veth's ring to b was full: the
/// send fails with ENOBUFS, and `sendmmsg` stops at that frame).
#[derive(Clone, Copy, Default)]
struct Flooded {
    sent: u64,
    dropped: u64,
}

/// Sends `frames` as fast as possible until `stop`, round-robin from a
/// place of its own (for a flood: each batch with fresh sources, numbered
/// from `flood_next`); adds every frame that went down the transmit path
/// (sent or dropped) to `offered` as it goes.
fn flood(
    sock: &RawSocket,
    frames: &Frames,
    flood_next: &AtomicU64,
    stop: &AtomicBool,
    offered: &AtomicU64,
) -> Flooded {
    let mut own: Vec<u8> = (0..BATCH).flat_map(|_| frames.get(0).to_vec()).collect();
    let mut next = 0usize;
    let mut done = Flooded::default();
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<&[u8]> = if frames.load == Load::Flood {
            let first = flood_next.fetch_add(BATCH as u64, Ordering::Relaxed);
            for (i, frame) in own
                .as_chunks_mut::<FLOOD_FRAME_LEN>()
                .0
                .iter_mut()
                .enumerate()
            {
                set_source(frame, flood_source(first + i as u64));
            }
            own.as_chunks::<FLOOD_FRAME_LEN>()
                .0
                .iter()
                .map(|f| &f[..])
                .collect()
        } else {
            (next..next + BATCH).map(|i| frames.get(i)).collect()
        };
        let (sent, dropped) = match sock.send(&batch) {
            Ok(n) if n < batch.len() => (n as u64, 1),
            Ok(n) => (n as u64, 0),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => (0, 1),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => (0, 0),
            Err(e) => panic!("sendmmsg: {e}"),
        };
        // Frames not taken are sent next time, so the round-robin order
        // holds.
        next = (next + (sent + dropped) as usize) % frames.count();
        done.sent += sent;
        done.dropped += dropped;
        offered.fetch_add(sent + dropped, Ordering::Relaxed);
    }
    done
}

/// Sends `frame` at `rate` frames/s for `duration` in batches every
/// `1 / 1000` s, on an absolute schedule (a late batch is made up at
/// once). Returns the frames sent and the time taken.
fn paced(sock: &RawSocket, frame: &[u8], rate: u64, duration: Duration) -> (u64, Duration) {
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

// ---------------------------------------------------------------------------
// Part 3: the drain, in-process.

struct DrainResult {
    flows: usize,
    first_ms: f64,
    read_ms: f64,
    update_ms: f64,
    snapshot_ms: f64,
    total_ms: f64,
    /// Heap bytes of the agent's traffic core holding these flows (its
    /// flow table sized to them), map-read buffers and snapshot aside.
    table_bytes: usize,
}

impl DrainResult {
    fn ns_per_entry(&self) -> f64 {
        self.total_ms * 1e6 / self.flows as f64
    }
}

fn thread_cpu() -> Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One drain as `netmon_agent::drain_loop` does it, timed in thread CPU
/// time per step: (read, update + delete, snapshot + publish).
fn drain(
    kernel: &mut Kernel,
    traffic: &mut Traffic,
    reading: &mut Reading,
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

fn part3() -> Vec<DrainResult> {
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
        let mut reading = Reading::default();
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
fn marginal_bytes_per_flow(results: &[DrainResult]) -> f64 {
    match (results.first(), results.last()) {
        (Some(a), Some(b)) if b.flows > a.flows => {
            (b.table_bytes as f64 - a.table_bytes as f64) / (b.flows - a.flows) as f64
        }
        _ => f64::NAN,
    }
}

// ---------------------------------------------------------------------------
// Parts 4 and 5: the real agent.

/// The total CPU time of process `pid`, all threads, from its CPU clock.
fn process_cpu(pid: u32) -> Duration {
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

/// A `VmXxx:` line of `/proc/<pid>/status`, in KiB.
fn vm_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

fn eth0_rx_packets(agent: &Agent) -> u64 {
    let body = agent.get("/api/v1/interfaces");
    body["interfaces"]
        .as_array()
        .and_then(|ifs| ifs.iter().find(|i| i["name"] == Pair::IFNAME))
        .and_then(|i| i["rx"]["packets"].as_u64())
        .unwrap_or_else(|| panic!("no eth0 rx packets in {body}"))
}

struct AgentCpu {
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

fn part4() -> AgentCpu {
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

struct AgentRss {
    start_hwm_kib: u64,
    hwm_kib: u64,
    rss_kib: u64,
    entries: u64,
    sent: u64,
}

fn part5() -> AgentRss {
    println!(
        "\n## Part 5: agent peak RSS with {RSS_FLOWS} flows (--flow-entries {RSS_FLOW_CAPACITY})\n"
    );
    let pair = Pair::new();
    let agent = Agent::start(
        pair.b().ns(),
        &[
            "--interval",
            AGENT_INTERVAL,
            "--flow-entries",
            RSS_FLOW_CAPACITY,
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
    let sent = pair.a().ns().run(|| {
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
    // Flows the agent tracks (in the flow cache's last generation or in
    // the flow map).
    let entries = |agent: &Agent| {
        agent.get("/api/v1/flows?limit=1")["total"]
            .as_u64()
            .unwrap_or(0)
    };
    // Until the agent has drained them all, or the count stops growing.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut since) = (entries(&agent), Instant::now());
    while last < RSS_FLOWS as u64 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
        let now = entries(&agent);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    // One more drain with every entry present.
    thread::sleep(Duration::from_millis(1200));
    let r = AgentRss {
        start_hwm_kib,
        hwm_kib: vm_kib(pid, "VmHWM"),
        rss_kib: vm_kib(pid, "VmRSS"),
        entries: entries(&agent),
        sent,
    };
    println!(
        "| frames sent (distinct sources) | flows the agent tracks | VmHWM after start | VmHWM | VmRSS now |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        r.sent,
        r.entries,
        r.start_hwm_kib as f64 / 1024.0,
        r.hwm_kib as f64 / 1024.0,
        r.rss_kib as f64 / 1024.0
    );
    r
}

// ---------------------------------------------------------------------------

fn summary(
    hooks: &[HookResult],
    drains: &[DrainResult],
    agent: &AgentCpu,
    rss: &AgentRss,
    collectors: &Collectors,
) {
    println!("\n## Summary (markdown)\n");
    println!("| measure | result | target | verdict |");
    println!("|---|---|---|---|");
    for r in hooks {
        println!(
            "| {} cost per packet, {}: netmon vs pass-only (ratio: median per round; flow-cache misses) | {:.1} vs {:.1} ns ({:.2}x; {:.1}% missed) | <= {:.0}x | {} |",
            r.hook.label(),
            r.load.label(),
            r.netmon.ns_per_packet,
            r.floor.ns_per_packet,
            r.cost_ratio(),
            percent(r.misses, r.window_packets),
            r.load.max_cost_ratio(),
            verdict(r.cost_ratio() <= r.load.max_cost_ratio())
        );
    }
    // The host's packet rate and the count's exactness: one flow, the
    // traffic part 2's target is set for.
    for r in hooks.iter().filter(|r| r.load == Load::Flows(1)) {
        println!(
            "| {} max packet rate per core of {}: netmon vs pass-only (ratio: median per round; implied by program cost) | {:.0} vs {:.0} pkt/s ({:.1}%; implied {:.1}%) | >= {:.0}% | {} |",
            r.hook.label(),
            r.hook.path_label(),
            1e9 / r.hook.path_cpu_ns(&r.netmon),
            1e9 / r.hook.path_cpu_ns(&r.floor),
            r.rate_ratio() * 100.0,
            r.implied_rate_ratio() * 100.0,
            MIN_RATE_RATIO * 100.0,
            r.rate_verdict()
        );
    }
    for r in hooks {
        let (reference, what) = r.reference();
        println!(
            "| {}, {}: packets counted by netmon vs the kernel ({what}) | {} vs {} | equal | {} |",
            r.hook.label(),
            r.load.label(),
            r.netmon_counted,
            reference,
            verdict(r.netmon_counted == reference)
        );
    }
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
    summary_agent(drains, rss);
    for c in &collectors.cycles {
        println!(
            "| {} collector CPU per cycle ({}) | {:.2} ms (mean of {} cycles) | - | - |",
            c.name, c.what, c.cpu_ms, c.cycles
        );
    }
    let w = &collectors.sweep;
    println!(
        "| ARP sweep of a /24 with {} live devices (--discovery-sweep-rate {SWEEP_RATE}) | {:.2} s, {} requests sent, {} replies | all found | {} |",
        w.live,
        w.wall_s,
        w.requests,
        w.replies,
        verdict(w.replies == w.live as u64)
    );
}

/// Parts 3 and 5's summary rows.
fn summary_agent(drains: &[DrainResult], rss: &AgentRss) {
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
        "| agent peak RSS (VmHWM), {} flows tracked | {:.1} MiB ({:.0} bytes a flow over the VmHWM after start) | - | - |",
        rss.entries,
        rss.hwm_kib as f64 / 1024.0,
        (rss.hwm_kib - rss.start_hwm_kib) as f64 * 1024.0 / rss.entries.max(1) as f64
    );
    let per_flow = marginal_bytes_per_flow(drains);
    println!(
        "| agent heap per tracked flow (traffic core, marginal between {} and {} flows) | {per_flow:.0} B | <= 300 B | {} |",
        drains.first().map_or(0, |d| d.flows),
        drains.last().map_or(0, |d| d.flows),
        verdict(per_flow <= 300.0)
    );
}

// ---------------------------------------------------------------------------
// Part 6: the host telemetry collectors, in the real agent.

/// Part 6: live devices on the swept /24, and the sweep's request rate.
const SWEEP_HOSTS: usize = 50;
const SWEEP_RATE: &str = "500";
/// How long the collectors run before their cycles are read.
const COLLECT_FOR: Duration = Duration::from_secs(12);

struct CollectorCycle {
    name: &'static str,
    what: String,
    cycles: u64,
    cpu_ms: f64,
}

struct Sweep {
    live: usize,
    wall_s: f64,
    requests: u64,
    replies: u64,
}

struct Collectors {
    cycles: Vec<CollectorCycle>,
    sweep: Sweep,
}

fn part6() -> Collectors {
    println!(
        "\n## Part 6: host telemetry collectors (netmon-agent on a bridge with {SWEEP_HOSTS} hosts, every collector at 1 s)\n"
    );
    let lan = Lan::new(SWEEP_HOSTS);
    let targets: Vec<String> = (1..=5)
        .map(|i| format!("--probe-target={}", lan.host(i).ip4()))
        .collect();
    let mut args = vec![
        "--iface=br0",
        "--log=info",
        "--system-interval=1s",
        "--interfaces-interval=1s",
        "--discovery-interval=1s",
        "--latency-interval=1s",
        "--probe-count=3",
        "--probe-spacing=100ms",
        "--discovery-sweep-interval=1h",
        "--discovery-sweep-wait=1s",
    ];
    let rate = format!("--discovery-sweep-rate={SWEEP_RATE}");
    args.push(&rate);
    args.extend(targets.iter().map(String::as_str));
    let agent = Agent::start(lan.gw(), &args);
    thread::sleep(COLLECT_FOR);

    let mut cycles = Vec::new();
    let mut cycle =
        |name: &'static str,
         path: &str,
         what: String,
         reading: &dyn Fn(&serde_json::Value) -> &serde_json::Value| {
            let body = agent.get(path);
            let c = &reading(&body)["collection"];
            let n = c["cycles"].as_u64().unwrap_or(0);
            let cpu = c["cpu_seconds_total"].as_f64().unwrap_or(0.0);
            assert!(n > 0, "{name}: no cycle in {COLLECT_FOR:?}: {body}");
            println!(
                "{name:<10} {n:>3} cycles, {:>7.2} ms CPU per cycle ({what})",
                cpu * 1e3 / n as f64
            );
            cycles.push(CollectorCycle {
                name,
                what,
                cycles: n,
                cpu_ms: cpu * 1e3 / n as f64,
            });
        };
    cycle(
        "system",
        "/api/v1/system",
        "CPU, memory, filesystems, sensors, host".into(),
        &|b| b,
    );
    let ifs = agent.get("/api/v1/interfaces")["stats"]["interfaces"]
        .as_array()
        .map_or(0, Vec::len);
    cycle(
        "interfaces",
        "/api/v1/interfaces",
        format!("{ifs} interfaces"),
        &|b| &b["stats"],
    );
    cycle(
        "latency",
        "/api/v1/latency",
        "5 targets x 3 probes".into(),
        &|b| b,
    );
    let devices = agent.get("/api/v1/devices");
    let found = devices["devices"].as_array().map_or(0, Vec::len);
    cycle(
        "discovery",
        "/api/v1/devices",
        format!("{found} devices; the first cycle includes the sweep"),
        &|b| &b["discovery"],
    );
    let s = &devices["discovery"]["sweep"]["subnets"][0];
    assert!(
        s.is_object(),
        "no sweep statistics: {:#}",
        devices["discovery"]
    );
    let sweep = Sweep {
        live: SWEEP_HOSTS,
        wall_s: s["wall_seconds"].as_f64().unwrap_or(f64::NAN),
        requests: s["requests"].as_u64().unwrap_or(0),
        replies: s["replies"].as_u64().unwrap_or(0),
    };
    println!(
        "\nARP sweep of {}: {} requests, {} replies from {SWEEP_HOSTS} live hosts, {:.2} s (at {SWEEP_RATE}/s, then a 1 s reply window)",
        s["subnet"], sweep.requests, sweep.replies, sweep.wall_s
    );
    Collectors { cycles, sweep }
}

// ---------------------------------------------------------------------------
// Part 7: the history store, in-process.

/// Device series written per interval in the write-rate measurement.
const STORE_SERIES: usize = 1000;
/// Intervals written in it.
const STORE_INTERVALS: u64 = 60;

struct HistoryBench {
    samples_per_s: f64,
    intervals_per_s: f64,
    /// Allocated bytes per stored sample, all tiers together.
    bytes_per_sample: f64,
    /// Samples in the raw, 1-minute and 1-hour tiers.
    tier_samples: [u64; 3],
    /// Per tier: bytes of its B-tree pages and of its keys and values, per
    /// sample.
    tier_bytes: [(f64, f64); 3],
    day_raw_ms: f64,
    day_raw_points: usize,
    month_minute_ms: f64,
    month_minute_points: usize,
}

fn device_interval(at_ms: u64, length_ms: u32, devices: usize) -> netmon_agent::store::Interval {
    use netmon_agent::store::{Family, Interval, SeriesKey, Values};
    Interval {
        at_ms,
        length_ms,
        samples: (0..devices)
            .map(|i| {
                let mac = format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
                (
                    SeriesKey::new(Family::Device, &["eth0", &mac]),
                    Values::Counter {
                        interval_ms: length_ms,
                        deltas: vec![1500 + i as u64, 10, 64, 1],
                    },
                )
            })
            .collect(),
    }
}

/// Median wall time of `runs` calls of `f`, in ms, and its last result.
fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(times), last.expect("runs > 0"))
}

fn part7() -> HistoryBench {
    use netmon_agent::store::{Retention, Store, Tier};
    println!("\n## Part 7: history store (redb)\n");
    let retention = Retention {
        raw: Duration::from_secs(48 * 3600),
        minute: Duration::from_secs(30 * 86400),
        hour: Duration::from_secs(730 * 86400),
        size_budget: 1 << 30,
    };
    // Writes on the real disk: one fsync per interval is the cost.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let st = Store::open(&dir.path().join("w.redb"), retention).expect("opening a store");
    let t0 = 1_700_000_000_000u64;
    let start = Instant::now();
    for i in 0..STORE_INTERVALS {
        st.write(&device_interval(t0 + i * 1000, 1000, STORE_SERIES))
            .expect("writing an interval");
    }
    let wall = start.elapsed().as_secs_f64();
    let samples_per_s = (STORE_INTERVALS as usize * STORE_SERIES) as f64 / wall;
    let intervals_per_s = STORE_INTERVALS as f64 / wall;
    println!(
        "writes: {STORE_INTERVALS} intervals of {STORE_SERIES} device samples in {wall:.2} s: {samples_per_s:.0} samples/s ({intervals_per_s:.0} intervals/s, one transaction and fsync each)"
    );

    // Long ranges, built on tmpfs (the disk's fsyncs would take minutes):
    // a day of 1 s raw samples and 30 days of 1-minute aggregates of one
    // device among 10.
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs directory");
    let path = shm.path().join("h.redb");
    let st = Store::open(&path, retention).expect("opening a store");
    let now = 1_700_000_000_000u64 + 31 * 86_400_000;
    let month_start = now - 30 * 86_400_000;
    let day_start = now - 86_400_000;
    let mut at = month_start;
    while at < day_start {
        st.write(&device_interval(at, 60_000, 10)).expect("writing");
        at += 60_000;
    }
    while at < now {
        st.write(&device_interval(at, 1000, 10)).expect("writing");
        at += 1000;
    }
    // Fold minutes and hours (several passes: it works in chunks).
    for _ in 0..200 {
        let m = st.maintain(now).expect("maintenance");
        if m.folded == [0, 0] {
            break;
        }
    }
    let series = "device/eth0/02:00:00:00:00:00";
    let (day_raw_ms, day) = timed(5, || {
        st.query(series, day_start, now, Some(Tier::Raw), now)
            .expect("a day of raw samples")
    });
    let (month_minute_ms, month) = timed(5, || {
        st.query(series, month_start, now, Some(Tier::Minute), now)
            .expect("30 days at 1 minute")
    });
    println!(
        "query: 24 h of one device at raw resolution ({} points): {day_raw_ms:.1} ms; 30 days at 1 minute ({} points): {month_minute_ms:.1} ms (medians of 5)",
        day.points.len(),
        month.points.len()
    );
    let usage = st.usage().expect("usage");
    let counts = st.counts().expect("counts");
    let stored: u64 = counts.iter().sum();
    // Allocated bytes shared out by each tier's share of the samples.
    let per_sample = usage.used_bytes as f64 / stored.max(1) as f64;
    println!(
        "size: {} samples (raw {}, 1 m {}, 1 h {}) in {:.1} MiB allocated: {per_sample:.0} bytes per stored sample",
        stored,
        counts[0],
        counts[1],
        counts[2],
        usage.used_bytes as f64 / (1 << 20) as f64
    );
    let tiers = st.tier_sizes().expect("tier sizes");
    let tier_bytes = tiers.map(|t| {
        let n = t.samples.max(1) as f64;
        (t.page_bytes as f64 / n, t.stored_bytes as f64 / n)
    });
    println!(
        "\n| tier | samples | B-tree pages | bytes per sample (pages) | bytes per sample (keys and values) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, (t, (pages, stored))) in ["raw", "1 minute", "1 hour"]
        .iter()
        .zip(tiers.iter().zip(tier_bytes))
    {
        println!(
            "| {name} | {} | {:.1} MiB | {pages:.0} | {stored:.0} |",
            t.samples,
            t.page_bytes as f64 / (1 << 20) as f64
        );
    }
    HistoryBench {
        samples_per_s,
        intervals_per_s,
        bytes_per_sample: per_sample,
        tier_samples: counts,
        tier_bytes,
        day_raw_ms,
        day_raw_points: day.points.len(),
        month_minute_ms,
        month_minute_points: month.points.len(),
    }
}

// ---------------------------------------------------------------------------
// Part 8: API latency under load, 1000 devices.

const API_DEVICES: usize = 1000;
const API_CLIENTS: usize = 4;
const API_SECONDS: u64 = 5;

struct ApiLatency {
    path: &'static str,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
}

fn part8() -> Vec<ApiLatency> {
    println!(
        "\n## Part 8: API latency with {API_DEVICES} devices ({API_CLIENTS} client threads, {API_SECONDS} s an endpoint)\n"
    );
    let pair = Pair::new();
    let agent = Agent::start(
        pair.b().ns(),
        &[
            "--iface=eth0",
            "--interval=1s",
            "--log=info",
            "--disable=discovery,latency",
        ],
    );
    // One frame from each of 1000 MACs.
    let frames: Vec<Vec<u8>> = (0..API_DEVICES)
        .map(|i| {
            let src = [0x02, 0x10, 0, 0, (i / 256) as u8, (i % 256) as u8];
            let ip = ipv4_udp(
                SocketAddrV4::new(Pair::IP4_A, 4000),
                SocketAddrV4::new(Pair::IP4_B, SINK_PORT),
                &[0x5a; FLOOD_PAYLOAD],
            );
            eth(Pair::MAC_B, src, ETHERTYPE_IPV4, &ip)
        })
        .collect();
    pair.a().ns().run(|| {
        let sock = RawSocket::open(Pair::IFNAME);
        for chunk in frames.chunks(BATCH) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let mut done = 0;
            while done < refs.len() {
                done += sock.send_or_skip(&refs[done..]);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.get("/api/v1/devices")["devices"]
        .as_array()
        .map_or(0, Vec::len)
        < API_DEVICES
    {
        assert!(
            Instant::now() < deadline,
            "the agent never listed {API_DEVICES} devices"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let mut out = Vec::new();
    for path in ["/metrics", "/api/v1/devices"] {
        let url = format!("http://{}{path}", common::LISTEN);
        let latencies: Vec<f64> = pair.b().ns().run(|| {
            let stop_at = Instant::now() + Duration::from_secs(API_SECONDS);
            let handles: Vec<_> = (0..API_CLIENTS)
                .map(|_| {
                    let url = url.clone();
                    thread::spawn(move || {
                        let client = ureq::Agent::new_with_config(
                            ureq::Agent::config_builder()
                                .timeout_global(Some(Duration::from_secs(10)))
                                .build(),
                        );
                        let mut lat = Vec::new();
                        while Instant::now() < stop_at {
                            let t = Instant::now();
                            let mut r = client
                                .get(&url)
                                .header("X-API-KEY", common::TEST_KEY)
                                .call()
                                .expect("an API answer");
                            let _ = r.body_mut().read_to_vec().expect("a body");
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        lat
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a client thread"))
                .collect()
        });
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
        let r = ApiLatency {
            path,
            requests: sorted.len(),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        };
        println!(
            "{path:<16} {} requests: p50 {:.2} ms, p99 {:.2} ms",
            r.requests, r.p50_ms, r.p99_ms
        );
        out.push(r);
    }
    out
}

fn summary_history(h: &HistoryBench, api: &[ApiLatency]) {
    println!(
        "| history writes ({STORE_SERIES} device samples an interval, one transaction each) | {:.0} samples/s ({:.0} intervals/s) | - | - |",
        h.samples_per_s, h.intervals_per_s
    );
    println!(
        "| history bytes per stored sample (allocated pages / samples; raw {}, 1 m {}, 1 h {}) | {:.0} B | - | - |",
        h.tier_samples[0], h.tier_samples[1], h.tier_samples[2], h.bytes_per_sample
    );
    for (name, (pages, stored)) in ["raw", "1-minute", "1-hour"].iter().zip(h.tier_bytes) {
        println!(
            "| history bytes per stored sample, {name} tier (B-tree pages; keys and values) | {pages:.0} B; {stored:.0} B | - | - |"
        );
    }
    println!(
        "| history query: 24 h of one device, raw ({} points) | {:.1} ms | - | - |",
        h.day_raw_points, h.day_raw_ms
    );
    println!(
        "| history query: 30 days of one device at 1 minute ({} points) | {:.1} ms | - | - |",
        h.month_minute_points, h.month_minute_ms
    );
    for a in api {
        println!(
            "| {} latency with {API_DEVICES} devices, {API_CLIENTS} clients | p50 {:.2} ms, p99 {:.2} ms ({} requests in {API_SECONDS} s) | - | - |",
            a.path, a.p50_ms, a.p99_ms, a.requests
        );
    }
}
