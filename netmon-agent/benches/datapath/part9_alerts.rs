//! Part 9: what the alert rules cost the agent each interval, in-process:
//! the values of a gateway with N devices (what `alerts/values.rs` makes:
//! `device` with five labels, `device_rx_bps`/`device_tx_bps` with two,
//! and the host's), and one evaluation of the default rules over them
//! (`new(device)`, the device rate rules and the rest), in thread CPU
//! time, median of [`ROUNDS`] after a first evaluation that learns the
//! devices. The rates change every round, as they do.

use netmon_agent::{
    alerts::{
        Values,
        engine::{Engine, Options},
        rules::defaults,
    },
    collect::thread_cpu_time,
};

use crate::harness::median;

const DEVICES: [usize; 3] = [1_000, 10_000, 65_536];
const ROUNDS: usize = 21;

pub struct AlertCost {
    devices: usize,
    values_ms: f64,
    evaluate_ms: f64,
}

/// The values of one interval with `n` devices.
fn values(n: usize, round: usize) -> Values {
    let mut v = Values::new();
    v.push("cpu_percent", [], 12.0 + round as f64);
    v.push("memory_percent", [], 40.0);
    v.push("load_per_core", [], 0.3);
    v.push(
        "filesystem_used_percent",
        [("mountpoint", "/"), ("device", "sda1")],
        50.0,
    );
    v.push("interface_up", [("interface", "br0")], 1.0);
    for i in 0..n {
        let mac = format!(
            "02:10:00:{:02x}:{:02x}:{:02x}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        );
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
        v.push(
            "device",
            [
                ("interface", "br0"),
                ("mac", mac.as_str()),
                ("ip", ip.as_str()),
                ("vendor", ""),
                ("hostname", ""),
            ],
            1.0,
        );
        let rate = ((i * 7919 + round * 104_729) % 1_000_000) as f64;
        v.push(
            "device_rx_bps",
            [("interface", "br0"), ("mac", mac.as_str())],
            rate,
        );
        v.push(
            "device_tx_bps",
            [("interface", "br0"), ("mac", mac.as_str())],
            rate / 2.0,
        );
    }
    v
}

pub fn part9() -> Vec<AlertCost> {
    println!("\n## Part 9: alert rules per interval (default rules, in-process, thread CPU)\n");
    let mut out = Vec::new();
    for n in DEVICES {
        let mut engine = Engine::new(defaults(), Options::default());
        let start = std::time::SystemTime::now();
        engine.evaluate(&values(n, 0), start);
        let (mut fill, mut eval) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            let t0 = thread_cpu_time();
            let v = values(n, round);
            let t1 = thread_cpu_time();
            let now = start + std::time::Duration::from_secs(round as u64);
            let outcome = engine.evaluate(&v, now);
            let t2 = thread_cpu_time();
            assert!(
                outcome.events.is_empty(),
                "{n} devices: no rule should fire"
            );
            fill.push((t1 - t0).as_secs_f64() * 1e3);
            eval.push((t2 - t1).as_secs_f64() * 1e3);
        }
        let c = AlertCost {
            devices: n,
            values_ms: median(fill),
            evaluate_ms: median(eval),
        };
        println!(
            "{:>6} devices: values {:>7.2} ms, evaluation {:>7.2} ms CPU per interval",
            c.devices, c.values_ms, c.evaluate_ms
        );
        out.push(c);
    }
    out
}

pub fn summary(costs: &[AlertCost]) {
    for c in costs {
        println!(
            "| alert rules per interval, {} devices | {:.2} ms CPU ({:.2} ms values, {:.2} ms evaluation; median of {ROUNDS}) | - | - |",
            c.devices,
            c.values_ms + c.evaluate_ms,
            c.values_ms,
            c.evaluate_ms
        );
    }
}
