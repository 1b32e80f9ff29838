//! netmon's benchmark, run as root by `cargo xtask bench`: what the eBPF
//! programs cost the datapath and what the agent costs the host.
//!
//! 1. **Per-packet cost at each hook.** A veth [`Pair`](common::Pair); a
//!    sender thread floods 60-byte UDP frames (64 on the wire with the FCS)
//!    from `a` to a UDP socket on `b` that is never read
//!    ([`SINK_PORT`](harness::SINK_PORT)), through an `AF_PACKET` socket
//!    with `sendmmsg` (no qdisc bypass, so `a`'s TC egress hook runs), from
//!    1, 200, 2,000, 10,000 or 100,000 sources round-robin (as many
//!    concurrent flows), or each frame from a new source (the random-source
//!    flood; [`Load`]). Each phase has exactly one program attached at one
//!    hook: the pass-only floor or netmon's program (loaded by the agent's
//!    [`Kernel`](netmon_agent::ebpf::Kernel), drained every second as the
//!    agent does), at `b`'s XDP (native, veth), `b`'s TC ingress or `a`'s TC
//!    egress. The kernel's run statistics (`BPF_ENABLE_STATS`, on during
//!    parts 1-2 only) give ns/packet = Δrun_time / Δrun_count.
//!    BPF_PROG_TEST_RUN of the same programs on the same frame, without
//!    statistics, shows the programs alone.
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
//!    [`Kernel::read`](netmon_agent::ebpf::Kernel::read),
//!    [`Traffic::update`](netmon_agent::traffic::Traffic::update), the
//!    snapshot and the API's prebuilt answers
//!    ([`Prebuilt::warm`](netmon_agent::api::prebuilt::Prebuilt::warm)), as
//!    the drain loop does them, in thread CPU time; beside them the
//!    history's recorder building its interval from the snapshot (its own
//!    thread in the agent) and the read's wall time.
//! 4. **Agent CPU per packet** at ~200k packets/s: the real agent binary in
//!    `b` with `--interval 1s`, its process CPU time over a paced flood
//!    (and over as long a window with no traffic, for comparison).
//! 5. **Peak RSS** (VmHWM) of the agent after draining 100k flow entries.
//!
//! (Parts 6-10: the collectors, the history, the API, the alert rules,
//! the hub with 100 simulated agents; see their files.)
//!
//! Phases run in alternating rounds and report medians, and netmon/floor
//! ratios are taken within each round before the median: shared machines
//! are noisy. Options, after `cargo xtask bench -- --`: `--seconds S` per
//! phase (default 2), `--rounds N` (default 5), `--senders N` flood threads
//! (default 1: with more, senders and `b`'s NAPI thread share cores),
//! `--flows 1,2000,flood` and `--hooks xdp,tc-in,tc-eg` (parts 1-2's
//! traffic and hooks; default all);
//! `--datapath`, `--drains`, `--collectors`, `--history`, `--store` or
//! `--alerts` run parts 1-2, part 3, part 6, parts 7-8, part 7 or part 9
//! alone, `--api` part 8 alone, `--hub` part 10 (for `--hub-seconds S`,
//! default 60), `--agent` parts 3 and 5 (the agent's
//! drain and memory); `--hostile` runs only the hostile part (a
//! random-source flood, `benches/hostile/mod.rs`) for `--flood-seconds S`
//! (default 300).
//!
//! One file a part, sharing [`harness`] (the counting allocator, the flood
//! frame and its socket, clocks, medians): [`part1_traffic`] (the loads,
//! flood threads and `b`'s receive side), [`part1_phase`] (programs
//! attached and one phase measured) and [`part1_hooks`] (parts 1-2's runs
//! and tables), [`part3_drain`], [`part4_5_agent`], [`part6_collectors`]
//! (the host telemetry collectors and an ARP sweep), [`part7_store`] (the
//! history store), [`part8_api`] (API latency with 1000 devices) and
//! [`part9_alerts`] (the alert rules per interval). This file parses the
//! options, runs the parts and prints the summary.

#[path = "../../tests/common/mod.rs"]
mod common;
mod harness;
#[path = "../hostile/mod.rs"]
mod hostile;
mod part10_hub;
mod part1_hooks;
mod part1_phase;
mod part1_traffic;
mod part3_drain;
mod part4_5_agent;
mod part6_collectors;
mod part7_store;
mod part8_api;
mod part9_alerts;

use std::time::{Duration, Instant};

use common::require_root;
// What `hostile` takes from its parent.
use harness::{BATCH, RawSocket, flood_frame, verdict, vm_kib};
use harness::{cpus, summary_header};
use part1_hooks::Hook;
use part1_traffic::Load;

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
        part6_collectors::part6();
        return;
    }
    if opts.only_store {
        let h = part7_store::part7();
        summary_header();
        part7_store::summary(&h);
        return;
    }
    if opts.only_history {
        part7_store::part7();
        part8_api::part8();
        return;
    }
    if opts.only_api {
        let api = part8_api::part8();
        summary_header();
        part8_api::summary(&api);
        return;
    }
    if opts.only_datapath {
        part1_hooks::part1_and_2(&opts);
        return;
    }
    if opts.only_agent {
        let drains = part3_drain::part3();
        let rss = part4_5_agent::part5();
        summary_header();
        part4_5_agent::summary_agent(&drains, &rss);
        return;
    }
    if opts.only_hostile {
        let h = hostile::run(opts.flood);
        summary_header();
        hostile::summary(&h);
        println!("\nTotal time: {:.0} s", started.elapsed().as_secs_f64());
        return;
    }
    if opts.only_drains {
        part3_drain::part3();
        return;
    }
    if opts.only_hub {
        let hub = part10_hub::part10(opts.hub_seconds);
        summary_header();
        part10_hub::summary(&hub);
        return;
    }
    if opts.only_alerts {
        let alerts = part9_alerts::part9();
        summary_header();
        part9_alerts::summary(&alerts);
        return;
    }
    let hooks = part1_hooks::part1_and_2(&opts);
    let drains = part3_drain::part3();
    let agent = part4_5_agent::part4();
    let rss = part4_5_agent::part5();
    let collectors = part6_collectors::part6();
    let history = part7_store::part7();
    let api = part8_api::part8();
    let alerts = part9_alerts::part9();
    let hub = part10_hub::part10(opts.hub_seconds);

    summary_header();
    part1_hooks::summary(&hooks);
    part4_5_agent::summary_cpu(&agent);
    part4_5_agent::summary_agent(&drains, &rss);
    part6_collectors::summary(&collectors);
    part7_store::summary(&history);
    part8_api::summary(&api);
    part9_alerts::summary(&alerts);
    part10_hub::summary(&hub);
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
    /// Part 7 alone (`--store`).
    only_store: bool,
    /// Part 8 alone (`--api`).
    only_api: bool,
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
    /// Part 9 alone (`--alerts`).
    only_alerts: bool,
    /// Part 10 alone (`--hub`).
    only_hub: bool,
    /// Part 10's window (`--hub-seconds`).
    hub_seconds: Duration,
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
            only_store: false,
            only_api: false,
            only_datapath: false,
            only_hostile: false,
            only_agent: false,
            flood: Duration::from_secs(300),
            only_drains: false,
            only_alerts: false,
            only_hub: false,
            hub_seconds: Duration::from_secs(60),
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
                "--store" => opts.only_store = true,
                "--api" => opts.only_api = true,
                "--datapath" => opts.only_datapath = true,
                "--hostile" => opts.only_hostile = true,
                "--agent" => opts.only_agent = true,
                "--flood-seconds" => opts.flood = Duration::from_secs_f64(value("--flood-seconds")),
                "--drains" => opts.only_drains = true,
                "--alerts" => opts.only_alerts = true,
                "--hub" => opts.only_hub = true,
                "--hub-seconds" => {
                    opts.hub_seconds = Duration::from_secs_f64(value("--hub-seconds"))
                }
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
                    "unknown argument {other:?}; options: --seconds S, --rounds N, --senders N, --flows N,...|flood, --hooks xdp,tc-in,tc-eg, --datapath, --drains, --collectors, --history, --store, --api, --agent, --alerts, --hub, --hub-seconds S, --hostile, --flood-seconds S"
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
