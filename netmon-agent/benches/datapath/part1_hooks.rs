//! Parts 1 and 2: netmon's programs against their pass-only twins at each
//! hook: the cost per packet (kernel run statistics) and the host's packet
//! rate, their tables and summary rows.

use std::collections::HashMap;

use aya::sys::{Stats, enable_stats};
use netmon_common::{
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_TC_PASS, PROG_XDP, PROG_XDP_PASS, direction,
};

use crate::{
    Options,
    common::Pair,
    harness::{median, percent, verdict},
    part1_phase::{Counted, DRAIN_INTERVAL, Datapath, TEST_RUN_REPEAT},
    part1_traffic::Load,
};

/// Targets (see the module docs).
const MIN_RATE_RATIO: f64 = 0.95;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Xdp, Hook::TcIngress, Hook::TcEgress];

    pub fn parse(text: &str) -> Option<Hook> {
        match text {
            "xdp" => Some(Hook::Xdp),
            "tc-in" => Some(Hook::TcIngress),
            "tc-eg" => Some(Hook::TcEgress),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
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
    pub fn counted_at(self) -> (u32, u8) {
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
pub struct PhaseRun {
    /// Δrun_time / Δrun_count over the window.
    pub ns_per_packet: f64,
    /// Δrun_count over the window.
    pub program_runs: u64,
    /// Datagrams `b`'s UDP layer processed per second, over the window.
    pub received_pps: f64,
    /// Frames the senders handed to the kernel per second, over the window.
    pub offered_pps: f64,
    /// CPU time of b's receive path (its NAPI thread) per datagram b
    /// processed, over the window.
    pub rx_cpu_ns: f64,
    /// CPU time of a's send path (the sender threads, TC egress included)
    /// per frame that went down it (sent or dropped by veth), over the
    /// window.
    pub tx_cpu_ns: f64,
    /// Whole phase (quiescent before and after): frames sent by `a`...
    pub sent: u64,
    /// ...frames a's veth dropped after TC egress (ring to b full)...
    pub dropped: u64,
    /// ...datagrams `b`'s UDP layer counted...
    pub udp_counted: u64,
    /// ...and netmon's count of the traffic (netmon phases only).
    pub netmon: Option<Counted>,
}

/// Medians over the rounds, per traffic and hook.
pub struct HookResult {
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

pub fn part1_and_2(opts: &Options) -> Vec<HookResult> {
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
         cache sizes its table for it) to the end. runs/phase: Δrun_count. \
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

/// Parts 1-2's summary rows.
pub fn summary(hooks: &[HookResult]) {
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
}
