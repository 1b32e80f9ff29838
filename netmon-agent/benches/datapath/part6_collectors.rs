//! Part 6: the host telemetry collectors in the real agent: CPU per cycle
//! of each, and an ARP sweep of a /24.

use std::{thread, time::Duration};

use crate::{
    common::{Agent, Lan},
    harness::verdict,
};

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

pub struct Collectors {
    cycles: Vec<CollectorCycle>,
    sweep: Sweep,
}

pub fn part6() -> Collectors {
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

/// Part 6's summary rows.
pub fn summary(collectors: &Collectors) {
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
