//! Parts 1-2's machinery: the veth pair with netmon's programs and their
//! pass-only twins, attaching one program at a hook, and one measured
//! phase under the flood.

use std::{
    collections::HashMap,
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode, tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use netmon_agent::{
    ebpf::{IngressHook, Kernel, MapSizes, OBJECT},
    traffic::{Expired, MapCounts},
};
use netmon_common::{PROG_TC_PASS, PROG_XDP_PASS};

use crate::{
    common::Pair,
    harness::{RawSocket, clock_time, flood_frame, median},
    part1_hooks::{Hook, PhaseRun},
    part1_traffic::{
        Flooded, Frames, Load, NapiThread, UdpRx, flood, full_sink, own_cpu_clock, udp_rx,
    },
};

/// Flood time before a phase's measurement window opens.
const WARMUP: Duration = Duration::from_millis(300);
/// Wait after a flood for the receiver to finish what is in flight.
const SETTLE: Duration = Duration::from_millis(200);
/// Runs per BPF_PROG_TEST_RUN call.
pub const TEST_RUN_REPEAT: u32 = 1_000_000;

/// The pair, netmon's programs (loaded by the agent's own [`Kernel`], maps
/// sized as the agent sizes them by default), the pass-only programs in a
/// second copy of the object, and one flood socket per sender in `a`.
pub struct Datapath {
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
/// cache sizes each half's table for the phase's flows.
const NETMON_WARMUP: Duration = Duration::from_millis(4_020);
/// How often the agent drains by default (`--interval`); netmon phases
/// drain as often, so the flow cache turns over as it does in the agent.
pub const DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// What netmon counted of one phase's traffic.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counted {
    /// Frames of the phase's traffic, in every counter netmon has for them.
    pub packets: u64,
    /// IP frames that missed the flow cache (`globals.cache_misses`).
    pub misses: u64,
    /// The same two from the last drain before the window on (the table
    /// sized for the phase's flows).
    pub window_packets: u64,
    pub window_misses: u64,
}

enum Link {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

impl Datapath {
    pub fn new(senders: usize, loads: &[Load]) -> Datapath {
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
                reading: MapCounts::default(),
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
    pub fn test_run_ns(&mut self, name: &str) -> f64 {
        let frame = flood_frame(Pair::IP4_A);
        let samples = (0..3)
            .map(|_| {
                let run = if is_floor(name) {
                    Kernel::test_run_on(&self.floor, name, &frame, 1, TEST_RUN_REPEAT)
                } else {
                    self.netmon
                        .kernel
                        .test_run(name, &frame, 1, TEST_RUN_REPEAT)
                };
                let (_, d) = run.unwrap_or_else(|e| panic!("test_run of {name}: {e}"));
                d.as_nanos() as f64
            })
            .collect();
        median(samples)
    }

    pub fn run_phase(
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
            // each half's table by its last generation.
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
    reading: MapCounts,
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
