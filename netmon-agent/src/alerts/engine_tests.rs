use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::alerts::rules::{Section, defaults};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn engine() -> Engine {
    Engine::new(defaults(), Options::default())
}

fn one(name: &str, labels: &[(&str, &str)], v: f64) -> Values {
    let mut vals = Values::new();
    vals.push(name, labels.iter().copied(), v);
    vals
}

/// Runs `e` every 10 s from `from` to `to` (inclusive) with `vals`; the
/// events.
fn run(e: &mut Engine, vals: &Values, from: u64, to: u64) -> Vec<Event> {
    let mut evs = Vec::new();
    let mut s = from;
    while s <= to {
        evs.extend(e.evaluate(vals, t(s)).events);
        s += 10;
    }
    evs
}

fn states(evs: &[Event]) -> Vec<(&str, State)> {
    evs.iter()
        .map(|e| (e.labels["alertname"].as_str(), e.to))
        .collect()
}

#[test]
fn each_host_rule_fires_on_injected_readings() {
    for (name, labels, value, rule, for_) in [
        ("cpu_percent", &[][..], 81.0, "cpu_high", 120),
        ("memory_percent", &[], 86.0, "memory_high", 120),
        (
            "filesystem_used_percent",
            &[("mountpoint", "/var"), ("device", "sda2")][..],
            95.0,
            "disk_full",
            300,
        ),
        (
            "temperature_celsius",
            &[("sensor", "Package id 0")][..],
            71.0,
            "temperature_high",
            60,
        ),
        ("load_per_core", &[], 2.5, "load_high", 300),
    ] {
        let mut e = engine();
        let vals = one(name, labels, value);
        let evs = run(&mut e, &vals, 0, for_ - 10);
        assert_eq!(
            states(&evs),
            vec![(rule, State::Pending)],
            "{rule} before its `for`"
        );
        let out = e.evaluate(&vals, t(for_));
        assert_eq!(states(&out.events), vec![(rule, State::Firing)], "{rule}");
        assert_eq!(out.notify.len(), 1);
        let n = &out.notify[0];
        assert_eq!(n.labels["alertname"], rule);
        assert_eq!(n.labels["severity"], "warning");
        for (k, v) in labels {
            assert_eq!(n.labels[*k], *v);
        }
        assert_eq!(n.starts_at, t(for_));
        assert!(n.ends_at > t(for_));
        assert!(
            n.annotations["summary"].contains(&crate::alerts::rules::figure(value)),
            "{:?}",
            n.annotations
        );
        // Below the threshold nothing fires.
        let mut e = engine();
        let low = one(name, labels, value / 2.0);
        assert!(run(&mut e, &low, 0, 600).is_empty(), "{rule} at half");
    }
}

#[test]
fn disk_fires_per_filesystem() {
    let mut e = engine();
    let mut vals = Values::new();
    vals.push("filesystem_used_percent", [("mountpoint", "/")], 50.0);
    vals.push("filesystem_used_percent", [("mountpoint", "/srv")], 99.0);
    vals.push("filesystem_used_percent", [("mountpoint", "/tmp")], 91.0);
    let evs = run(&mut e, &vals, 0, 300);
    let firing: Vec<&str> = evs
        .iter()
        .filter(|e| e.to == State::Firing)
        .map(|e| e.labels["mountpoint"].as_str())
        .collect();
    assert_eq!(firing, vec!["/srv", "/tmp"]);
}

#[test]
fn for_needs_the_expression_to_hold_throughout() {
    let mut e = engine();
    let hot = one("cpu_percent", &[], 90.0);
    let cool = one("cpu_percent", &[], 50.0);
    run(&mut e, &hot, 0, 110);
    // Drops below before 2 minutes: back to inactive, the clock restarts.
    let out = e.evaluate(&cool, t(115));
    assert_eq!(out.events[0].from, State::Pending);
    assert_eq!(out.events[0].to, State::Inactive);
    assert_eq!(e.alerts().count(), 0);
    let evs = run(&mut e, &hot, 120, 230);
    assert_eq!(states(&evs), vec![("cpu_high", State::Pending)]);
    let evs = run(&mut e, &hot, 240, 240);
    assert_eq!(states(&evs), vec![("cpu_high", State::Firing)]);
}

#[test]
fn hysteresis_resolves_at_the_resolve_threshold_only() {
    let mut e = engine();
    run(&mut e, &one("cpu_percent", &[], 85.0), 0, 120);
    assert_eq!(e.alerts().next().unwrap().state, State::Firing);
    // Between resolve (75) and threshold (80): still firing.
    assert!(run(&mut e, &one("cpu_percent", &[], 77.0), 130, 400).is_empty());
    let out = e.evaluate(&one("cpu_percent", &[], 75.0), t(410));
    assert_eq!(states(&out.events), vec![("cpu_high", State::Resolved)]);
    assert_eq!(out.notify.len(), 1);
    assert_eq!(out.notify[0].state, State::Resolved);
    assert_eq!(out.notify[0].ends_at, t(410));
    assert_eq!(out.notify[0].starts_at, t(120));
    // Back to 77: below the threshold, nothing starts again.
    assert!(run(&mut e, &one("cpu_percent", &[], 77.0), 420, 500).is_empty());
    // An absent value resolves too (a sensor that disappeared).
    let mut e = engine();
    run(
        &mut e,
        &one("temperature_celsius", &[("sensor", "x")], 80.0),
        0,
        60,
    );
    let out = e.evaluate(&Values::new(), t(70));
    assert_eq!(
        states(&out.events),
        vec![("temperature_high", State::Resolved)]
    );
}

#[test]
fn firing_alerts_are_resent_with_ends_at_ahead() {
    let mut e = engine();
    let hot = one("memory_percent", &[], 99.0);
    let mut sent = Vec::new();
    for s in (0..=400).step_by(10) {
        sent.extend(
            e.evaluate(&hot, t(s))
                .notify
                .into_iter()
                .map(|n| (n.starts_at, n.ends_at)),
        );
    }
    // Fired at 120, re-sent every 60 s, always ahead by 4 minutes.
    let expect: Vec<_> = [120, 180, 240, 300, 360]
        .iter()
        .map(|&s| (t(120), t(s) + Duration::from_secs(240)))
        .collect();
    assert_eq!(sent, expect);
}

#[test]
fn new_device_fires_once_per_never_seen_mac() {
    let mut e = engine();
    let dev = |mac: &'static str| -> [(&'static str, &'static str); 3] {
        [("interface", "br0"), ("mac", mac), ("vendor", "Acme")]
    };
    let mut vals = Values::new();
    vals.push("device", dev("02:00:00:00:00:01"), 1.0);
    // The first evaluation learns what is there.
    assert!(e.evaluate(&vals, t(0)).events.is_empty());
    vals.push("device", dev("02:00:00:00:00:02"), 1.0);
    let out = e.evaluate(&vals, t(10));
    assert_eq!(states(&out.events), vec![("new_device", State::Firing)]);
    assert_eq!(out.events[0].labels["mac"], "02:00:00:00:00:02");
    assert_eq!(out.notify.len(), 1);
    assert_eq!(out.notify[0].labels["severity"], "info");
    assert_eq!(
        out.notify[0].annotations["summary"],
        "new device 02:00:00:00:00:02 (Acme, ) on br0"
    );
    // Seen again, gone and back: no new firing; it stays firing for an hour.
    assert!(run(&mut e, &vals, 20, 1000).is_empty());
    assert!(run(&mut e, &Values::new(), 1010, 1100).is_empty());
    let evs = run(&mut e, &vals, 1110, 3700);
    assert_eq!(states(&evs), vec![("new_device", State::Resolved)]);
    assert!(run(&mut e, &vals, 3710, 9000).is_empty(), "never again");

    // Seeded with the history's MACs: the first evaluation fires for others.
    let mut e = engine();
    e.remember("device", ["02:00:00:00:00:01"]);
    let out = e.evaluate(&vals, t(0));
    assert_eq!(states(&out.events), vec![("new_device", State::Firing)]);
    assert_eq!(out.events[0].labels["mac"], "02:00:00:00:00:02");
}

#[test]
fn known_devices_are_bounded_and_evictions_counted() {
    let mut e = Engine::new(
        defaults(),
        Options {
            max_known: 2,
            ..Options::default()
        },
    );
    let macs = [
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        "02:00:00:00:00:03",
    ];
    for (i, m) in macs.iter().enumerate() {
        e.evaluate(&one("device", &[("mac", m)], 1.0), t(i as u64 * 10));
    }
    assert_eq!(e.counts().known_evicted, 1);
}

#[test]
fn silences_keep_alerts_from_receivers_until_they_end() {
    let mut e = engine();
    e.silence(Target::Rule("cpu_high".into()), t(200)).unwrap();
    let hot = one("cpu_percent", &[], 95.0);
    let mut notify = 0;
    let mut evs = Vec::new();
    for s in (0..=190).step_by(10) {
        let out = e.evaluate(&hot, t(s));
        notify += out.notify.len();
        evs.extend(out.events);
    }
    assert_eq!(notify, 0);
    assert!(evs.iter().any(|e| e.to == State::Firing && e.silenced));
    assert!(e.alerts().next().unwrap().silenced);
    // The silence ends: the firing alert goes out at once.
    let out = e.evaluate(&hot, t(200));
    assert_eq!(out.notify.len(), 1);
    assert!(e.silences().is_empty());

    // A device: every rule about its MAC, and only that MAC.
    let mut e = engine();
    e.silence(Target::Device("02:AA:00:00:00:01".into()), t(10_000))
        .unwrap();
    let mut vals = Values::new();
    vals.push(
        "device_tx_bps",
        [("interface", "br0"), ("mac", "02:aa:00:00:00:01")],
        9e8,
    );
    vals.push(
        "device_tx_bps",
        [("interface", "br0"), ("mac", "02:aa:00:00:00:02")],
        9e8,
    );
    let mut sent = Vec::new();
    for s in (0..=300).step_by(10) {
        sent.extend(e.evaluate(&vals, t(s)).notify);
    }
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].labels["mac"], "02:aa:00:00:00:02");
    assert!(e.unsilence(&Target::Device("02:aa:00:00:00:01".into())));
    assert_eq!(e.evaluate(&vals, t(310)).notify.len(), 1);
}

#[test]
fn rate_rules_use_the_counters_increase() {
    let mut e = engine();
    let mut fired = false;
    // 5 errors every 10 s: 0.5/s > 0.
    for i in 0..10u64 {
        let out = e.evaluate(
            &one(
                "interface_errors_total",
                &[("interface", "eth0")],
                (i * 5) as f64,
            ),
            t(i * 10),
        );
        fired |= out.events.iter().any(|e| e.to == State::Firing);
    }
    assert!(fired);
    let a = e.alerts().next().unwrap();
    assert_eq!(a.value, 0.5);
    // Flat counter: resolves. A reset is not a negative rate.
    let out = e.evaluate(
        &one("interface_errors_total", &[("interface", "eth0")], 45.0),
        t(100),
    );
    assert_eq!(
        states(&out.events),
        vec![("interface_errors", State::Resolved)]
    );
    e.evaluate(
        &one("interface_errors_total", &[("interface", "eth0")], 0.0),
        t(110),
    );
    assert!(e.alerts().all(|a| a.value >= 0.0));
}

#[test]
fn alerts_are_bounded_and_refusals_counted() {
    let text = "[[alerts.rules]]\nname = \"cpu_high\"\nfor = \"0s\"";
    let rules = Section::from_toml(text).unwrap().rules().unwrap();
    let mut e = Engine::new(
        rules,
        Options {
            max_alerts: 2,
            ..Options::default()
        },
    );
    let mut vals = Values::new();
    for m in ["/a", "/b", "/c"] {
        vals.push("filesystem_used_percent", [("mountpoint", m)], 99.0);
    }
    vals.push("cpu_percent", [], 99.0);
    e.evaluate(&vals, t(0));
    assert_eq!(e.alerts().count(), 2);
    assert!(e.counts().alerts_refused >= 1);
    let tally = e.tally();
    assert_eq!(tally.values().sum::<usize>(), 2);
}

#[test]
fn disabled_rules_do_not_evaluate() {
    let mut e = engine();
    assert!(!e.rules().iter().any(|r| r.name == "device_gone"));
    let evs = run(
        &mut e,
        &one("device_gone", &[("mac", "02:00:00:00:00:09")], 1.0),
        0,
        100,
    );
    assert!(evs.is_empty());
}
