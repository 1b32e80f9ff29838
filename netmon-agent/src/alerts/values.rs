//! The one adapter between the agent and the engine: fills [`Values`] (the
//! names of [`super::NAMES`]) from what the agent has each interval, the
//! traffic core's [`Snapshot`], the collectors' latest readings and the
//! history's health.
//!
//! What each name reads:
//! - host: the system collector (CPU, memory as total - available, each
//!   filesystem, the hottest CPU sensor, the 1-minute load per core);
//! - `device`: discovery's devices that are not gone (MAC, first IP,
//!   interface, vendor, hostname), or the traffic core's devices when
//!   discovery is off; `device_gone`: every discovery device, 1 when gone;
//! - `device_rx_bps`/`device_tx_bps`: the traffic core's per-device rates;
//! - interfaces: the interfaces collector, watched interfaces only (a down
//!   interface the agent does not watch is no one's concern); operstate
//!   `up` or `unknown` (a driver that does not track the link) is up;
//! - latency: each probe target's average round trip and loss;
//! - `map_fill_percent`/`map_evictions_total`: the eBPF maps, the flow
//!   cache, the agent's flow and device tables, discovery's inventory;
//! - `history_degraded`, `collector_up`: the agent's own health;
//! - `security_finding`: the security collector's findings, one sample
//!   each, with their kind, severity and subject (an address on its
//!   interface, a process), not their evidence (whose times change).
//!
//! A figure the machine cannot give has no sample (see [`Values::push`]).

use std::time::{Duration, SystemTime};

use super::Values;
use crate::{
    collect::{
        CollectorName, State, Telemetry,
        discovery::{self, Discovery, inventory::Status},
        interfaces as netstats,
        interfaces::Interfaces,
        latency::Latency,
        security::{self, Security},
        system::{self, System},
        vendor,
    },
    ifaces::format_mac,
    snapshot::Snapshot,
};

/// The agent's own health, as the runner knows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Health {
    /// `None` when the history is off by choice (`--no-history`).
    pub history_degraded: Option<bool>,
}

/// Each collector's interval: a reading older than three of them (and of
/// its own cycle) means the collector is failing. From the registry
/// (`Source::interval`); a collector not listed counts as 1 s.
#[derive(Clone, Debug, Default)]
pub struct Intervals(pub Vec<(CollectorName, Duration)>);

impl Intervals {
    fn of(&self, name: CollectorName) -> Duration {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Duration::from_secs(1), |(_, d)| *d)
    }
}

/// Fills the values of one interval.
pub fn fill(
    s: &Snapshot,
    t: &Telemetry,
    intervals: &Intervals,
    health: Health,
    now: SystemTime,
) -> Values {
    let mut v = Values::new();
    host(&mut v, t);
    devices(&mut v, s, t);
    interfaces(&mut v, t);
    latency(&mut v, t);
    tables(&mut v, s, t);
    if let Some(r) = t.get::<Security>() {
        security_values(&mut v, &r.report);
    }
    if let Some(d) = health.history_degraded {
        v.push("history_degraded", [], f64::from(u8::from(d)));
    }
    collectors(&mut v, t, intervals, now);
    v
}

fn host(v: &mut Values, t: &Telemetry) {
    if let Some(r) = t.get::<System>() {
        host_values(v, &r.report);
    }
}

fn host_values(v: &mut Values, r: &system::Report) {
    if let Some(c) = r.cpu.value() {
        v.push("cpu_percent", [], c.usage_percent);
        if let (Some(l), cores) = (r.load_average.value(), c.cores.len())
            && cores > 0
        {
            v.push("load_per_core", [], l.one / cores as f64);
        }
    }
    if let Some(m) = r.memory.value()
        && m.total_bytes > 0
    {
        let used = m.total_bytes.saturating_sub(m.available_bytes) as f64;
        v.push("memory_percent", [], used * 100.0 / m.total_bytes as f64);
    }
    for fs in r.filesystems.value().into_iter().flatten() {
        if let Some(p) = fs.used_percent.value() {
            v.push(
                "filesystem_used_percent",
                [
                    ("mountpoint", fs.mount_point.as_str()),
                    ("device", fs.device.as_str()),
                ],
                *p,
            );
        }
    }
    if let Some(temps) = r.temperatures.value() {
        let hottest = temps
            .sensors
            .iter()
            .filter(|s| s.cpu)
            .filter_map(|s| Some((s.label.as_str(), *s.celsius.value()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match (hottest, temps.hottest_cpu_celsius.value()) {
            (Some((label, c)), _) => {
                v.push("temperature_celsius", [("sensor", label)], c);
            }
            (None, Some(c)) => {
                v.push("temperature_celsius", [("sensor", "cpu")], *c);
            }
            (None, None) => {}
        }
    }
}

fn devices(v: &mut Values, s: &Snapshot, t: &Telemetry) {
    let reading = t.get::<Discovery>();
    match &reading {
        Some(r) => {
            for d in &r.report.devices {
                discovered(v, d);
            }
        }
        // Discovery off or not ready: the traffic core's devices are the
        // ones known (no hostname, the newest IP).
        None if matches!(t.slot(CollectorName::Discovery).state(), State::Disabled) => {
            for d in &s.devices {
                let mac = format_mac(d.mac);
                let iface = s.iface_name(d.ifindex);
                let ip = d.ips.front().map(ToString::to_string).unwrap_or_default();
                v.push(
                    "device",
                    [
                        ("interface", iface.as_str()),
                        ("mac", mac.as_str()),
                        ("ip", ip.as_str()),
                        ("vendor", vendor::vendor(d.mac).unwrap_or("unknown")),
                        ("hostname", ""),
                    ],
                    1.0,
                );
            }
        }
        None => {}
    }
    for d in &s.devices {
        let mac = format_mac(d.mac);
        let iface = s.iface_name(d.ifindex);
        let labels = [("interface", iface.as_str()), ("mac", mac.as_str())];
        v.push("device_rx_bps", labels, d.rx.rate.bits_per_second);
        v.push("device_tx_bps", labels, d.tx.rate.bits_per_second);
    }
}

fn discovered(v: &mut Values, d: &discovery::DeviceReport) {
    let labels = [("interface", d.interface.as_str()), ("mac", d.mac.as_str())];
    let gone = d.status == Status::Gone;
    v.push("device_gone", labels, f64::from(u8::from(gone)));
    if gone {
        return;
    }
    let ip = d
        .addresses
        .first()
        .map(|a| a.ip.to_string())
        .unwrap_or_default();
    v.push(
        "device",
        [
            ("interface", d.interface.as_str()),
            ("mac", d.mac.as_str()),
            ("ip", ip.as_str()),
            ("vendor", d.vendor.unwrap_or("unknown")),
            ("hostname", d.hostname.as_deref().unwrap_or("")),
        ],
        1.0,
    );
}

fn interfaces(v: &mut Values, t: &Telemetry) {
    if let Some(r) = t.get::<Interfaces>() {
        interface_values(v, &r.report);
    }
}

fn interface_values(v: &mut Values, r: &netstats::Report) {
    for i in r.interfaces.value().into_iter().flatten() {
        if !i.watched {
            continue;
        }
        let l = [("interface", i.name.as_str())];
        // `unknown`: the driver does not track the link (dummy, some
        // virtual devices); not a link that went down.
        let up = matches!(i.oper_state.as_str(), "up" | "unknown");
        v.push("interface_up", l, f64::from(u8::from(up)));
        if let Some(u) = i.utilization.value() {
            v.push(
                "interface_utilization_percent",
                l,
                u.rx_percent.max(u.tx_percent),
            );
        }
        if let Some(c) = i.counters.value() {
            let errors = c.rx_errors.saturating_add(c.tx_errors);
            let drops = c.rx_dropped.saturating_add(c.tx_dropped);
            v.push("interface_errors_total", l, errors as f64);
            v.push("interface_drops_total", l, drops as f64);
        }
    }
}

fn latency(v: &mut Values, t: &Telemetry) {
    let Some(r) = t.get::<Latency>() else { return };
    for target in &r.report.targets {
        let name = target.address.to_string();
        let l = [("target", name.as_str())];
        if let Some(rtt) = target.rtt.value() {
            v.push("latency_rtt_ms", l, rtt.avg_seconds * 1000.0);
        }
        if let Some(loss) = target.loss_percent.value() {
            v.push("latency_loss_percent", l, *loss);
        }
    }
}

fn percent(used: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        f64::NAN
    } else {
        used as f64 * 100.0 / capacity as f64
    }
}

fn tables(v: &mut Values, s: &Snapshot, t: &Telemetry) {
    if s.updated.is_some() {
        for (name, used, cap, evictions) in [
            (
                "mac_map",
                s.mac_map.entries,
                s.mac_map.capacity,
                Some(s.mac_map.evictions),
            ),
            (
                "flow_map",
                s.flow_map.entries,
                s.flow_map.capacity,
                Some(s.flow_map.evictions),
            ),
            (
                "flow_cache",
                s.flow_cache.slots_used,
                s.flow_cache.capacity,
                None,
            ),
            (
                "flow_table",
                s.flow_table.entries,
                s.flow_table.capacity,
                Some(s.flow_table.evictions),
            ),
            (
                "device_table",
                s.device_table.entries,
                s.device_table.capacity,
                Some(s.device_table.evictions),
            ),
        ] {
            v.push("map_fill_percent", [("map", name)], percent(used, cap));
            if let Some(e) = evictions {
                v.push("map_evictions_total", [("map", name)], e as f64);
            }
        }
    }
    if let Some(r) = t.get::<Discovery>() {
        let inv = &r.report.inventory;
        let l = [("map", "discovery_inventory")];
        v.push(
            "map_fill_percent",
            l,
            percent(inv.devices as u64, inv.max_devices as u64),
        );
        v.push("map_evictions_total", l, inv.evicted_total as f64);
    }
}

fn security_values(v: &mut Values, r: &security::Report) {
    for f in &r.findings {
        let d = &f.detail;
        let subject = match (&d.ip, &d.iface, d.pid) {
            (Some(ip), Some(iface), _) => format!("{ip} on {iface}"),
            (Some(ip), None, _) => ip.clone(),
            // A listener: its socket (and its process when known).
            _ if d.port.is_some() => {
                let addr = d.address.map(|a| a.to_string()).unwrap_or_default();
                let proto = d.protocol.unwrap_or("");
                format!("{proto} {addr} port {}", d.port.unwrap_or(0))
            }
            (None, _, Some(pid)) => match &d.process {
                Some(p) => format!("pid {pid} ({p})"),
                None => format!("pid {pid}"),
            },
            // SSH brute force: the source.
            (None, _, None) => d.source.map(|s| s.to_string()).unwrap_or_default(),
        };
        let severity = match f.severity {
            security::Severity::Critical => "critical",
            security::Severity::Warning => "warning",
        };
        v.push(
            "security_finding",
            [
                ("kind", f.kind.as_str()),
                ("severity", severity),
                ("subject", subject.as_str()),
            ],
            1.0,
        );
    }
}

/// 1 when a collector's reading is fresh: finished within three of its
/// intervals and three of its own cycles' length (a collector that panics
/// publishes nothing, so its reading ages); 0 while the first cycle runs.
fn collectors(v: &mut Values, t: &Telemetry, i: &Intervals, now: SystemTime) {
    for (source, state) in t.states() {
        let name = source.name();
        let every = i.of(name);
        let ok = match state {
            State::Disabled => continue,
            State::Pending => false,
            State::Ready(r) => {
                let c = r.collection();
                let age = now.duration_since(c.finished).unwrap_or_default();
                age <= 3 * every + 3 * c.wall + Duration::from_secs(1)
            }
        };
        v.push(
            "collector_up",
            [("collector", name.as_str())],
            f64::from(u8::from(ok)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{NAMES, rules::labels_of};

    /// Every sample the adapter makes uses a name of NAMES with exactly its
    /// labels.
    fn check_names(v: &Values) {
        for (name, labels, _) in NAMES {
            for s in v.get(name) {
                let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
                let mut want: Vec<&str> = labels.to_vec();
                want.sort_unstable();
                assert_eq!(keys, want, "{name}");
                assert_eq!(labels_of(name), *labels);
            }
        }
    }

    use crate::{
        alerts::{
            engine::{Engine, Options, State},
            rules::defaults,
        },
        collect::{
            Avail,
            interfaces::{Counters, InterfaceStats, Utilization},
            system::{Core, Cpu, Filesystem, Host, LoadAverage, Memory, Sensor, Temperatures},
        },
    };

    fn sensor(label: &str, cpu: bool, c: f64) -> Sensor {
        Sensor {
            label: label.into(),
            cpu,
            celsius: Avail::Value(c),
            critical_celsius: None,
        }
    }

    fn na<T>() -> Avail<T> {
        Avail::unavailable("test")
    }

    /// A host over every default threshold: CPU 81 %, memory 90 %
    /// (total - available), /var 95 %, the hottest CPU sensor 72 °C (a
    /// hotter non-CPU sensor does not count), load 10 on 4 cores.
    fn hot_host() -> system::Report {
        system::Report {
            cpu: Avail::Value(Cpu {
                usage_percent: 81.0,
                cores: (0..4)
                    .map(|i| Core {
                        name: format!("cpu{i}"),
                        usage_percent: 81.0,
                    })
                    .collect(),
            }),
            load_average: Avail::Value(LoadAverage {
                one: 10.0,
                five: 1.0,
                fifteen: 1.0,
            }),
            memory: Avail::Value(Memory {
                total_bytes: 1000,
                used_bytes: 500,
                available_bytes: 100,
                free_bytes: 50,
                cached_bytes: na(),
                used_percent: 50.0,
            }),
            swap: na(),
            filesystems: Avail::Value(vec![
                Filesystem {
                    mount_point: "/var".into(),
                    device: "sda2".into(),
                    fs_type: "ext4".into(),
                    total_bytes: 100,
                    used_bytes: 95,
                    free_bytes: 5,
                    used_percent: Avail::Value(95.0),
                    read_only: false,
                },
                Filesystem {
                    mount_point: "/proc-like".into(),
                    device: "none".into(),
                    fs_type: "tmpfs".into(),
                    total_bytes: 0,
                    used_bytes: 0,
                    free_bytes: 0,
                    used_percent: na(),
                    read_only: false,
                },
            ]),
            temperatures: Avail::Value(Temperatures {
                sensors: vec![
                    sensor("nvme Composite", false, 80.0),
                    sensor("coretemp Core 0", true, 65.0),
                    sensor("coretemp Package id 0", true, 72.0),
                ],
                hottest_cpu_celsius: Avail::Value(72.0),
            }),
            uptime_seconds: na(),
            host: Host {
                hostname: na(),
                os_name: na(),
                os_version: na(),
                os_long_version: na(),
                kernel: na(),
                boot_time: na(),
                primary_addresses: na(),
            },
        }
    }

    #[test]
    fn host_readings_become_the_host_values_and_fire_their_rules() {
        let mut v = Values::new();
        host_values(&mut v, &hot_host());
        check_names(&v);
        let one = |n: &str| {
            let s = v.get(n);
            assert_eq!(s.len(), 1, "{n}: {s:?}");
            (s[0].value, s[0].labels.clone())
        };
        assert_eq!(one("cpu_percent").0, 81.0);
        assert_eq!(one("memory_percent").0, 90.0);
        assert_eq!(one("load_per_core").0, 2.5);
        let (c, l) = one("temperature_celsius");
        assert_eq!((c, l["sensor"].as_str()), (72.0, "coretemp Package id 0"));
        let (p, l) = one("filesystem_used_percent");
        assert_eq!(
            (p, l["mountpoint"].as_str(), l["device"].as_str()),
            (95.0, "/var", "sda2")
        );
        // Each host default goes pending at once (each has a `for`).
        let mut e = Engine::new(defaults(), Options::default());
        let out = e.evaluate(
            &v,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let mut pending: Vec<&str> = out
            .events
            .iter()
            .filter(|e| e.to == State::Pending)
            .map(|e| e.labels["alertname"].as_str())
            .collect();
        pending.sort_unstable();
        assert_eq!(
            pending,
            [
                "cpu_high",
                "disk_full",
                "load_high",
                "memory_high",
                "temperature_high"
            ]
        );
    }

    fn link(name: &str, watched: bool, state: &str, util: Option<(f64, f64)>) -> InterfaceStats {
        InterfaceStats {
            name: name.into(),
            ifindex: 2,
            watched,
            mac: na(),
            addresses: na(),
            oper_state: state.into(),
            mtu: na(),
            speed_mbps: na(),
            counters: Avail::Value(Counters {
                rx_bytes: 0,
                rx_packets: 0,
                rx_errors: 2,
                rx_dropped: 5,
                tx_bytes: 0,
                tx_packets: 0,
                tx_errors: 1,
                tx_dropped: 0,
            }),
            rates: na(),
            utilization: util.map_or(na(), |(rx_percent, tx_percent)| {
                Avail::Value(Utilization {
                    rx_percent,
                    tx_percent,
                })
            }),
        }
    }

    #[test]
    fn watched_interfaces_only_with_state_utilization_and_counters() {
        let r = crate::collect::interfaces::Report {
            interfaces: Avail::Value(vec![
                link("wan0", true, "down", None),
                link("lan0", true, "up", Some((12.0, 93.0))),
                link("docker0", false, "down", None),
                link("dummy0", true, "unknown", None),
            ]),
        };
        let mut v = Values::new();
        interface_values(&mut v, &r);
        check_names(&v);
        let by_iface = |n: &str| -> Vec<(String, f64)> {
            v.get(n)
                .iter()
                .map(|s| (s.labels["interface"].clone(), s.value))
                .collect()
        };
        assert_eq!(
            by_iface("interface_up"),
            [
                ("wan0".into(), 0.0),
                ("lan0".into(), 1.0),
                ("dummy0".into(), 1.0)
            ]
        );
        assert_eq!(
            by_iface("interface_utilization_percent"),
            [("lan0".into(), 93.0)]
        );
        assert_eq!(by_iface("interface_errors_total")[0].1, 3.0);
        assert_eq!(by_iface("interface_drops_total")[0].1, 5.0);
    }

    #[test]
    fn an_arp_spoofing_finding_fires_the_security_rule_at_once() {
        use crate::collect::security::{Detail, Finding, Kind, Report, Severity};
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let finding = |kind: Kind, severity, detail| Finding {
            kind,
            severity,
            evidence: "two MACs".into(),
            first_seen: at,
            last_seen: at,
            detail,
        };
        let r = Report {
            findings: vec![
                finding(
                    Kind::ArpSpoofing,
                    Severity::Critical,
                    Detail {
                        ip: Some("10.0.0.2".into()),
                        macs: Some(vec!["02:00:00:00:01:02".into(), "02:00:00:00:01:03".into()]),
                        iface: Some("br0".into()),
                        ..Detail::default()
                    },
                ),
                finding(
                    Kind::DeletedExecutable,
                    Severity::Warning,
                    Detail {
                        pid: Some(42),
                        process: Some("sshd".into()),
                        ..Detail::default()
                    },
                ),
                finding(
                    Kind::NewListener,
                    Severity::Warning,
                    Detail {
                        protocol: Some("tcp"),
                        address: Some("0.0.0.0".parse().unwrap()),
                        port: Some(4444),
                        pid: Some(7),
                        ..Detail::default()
                    },
                ),
                finding(
                    Kind::SshBruteForce,
                    Severity::Critical,
                    Detail {
                        source: Some("192.0.2.7".parse().unwrap()),
                        ..Detail::default()
                    },
                ),
            ],
            findings_omitted: 0,
            processes: 2,
            unreadable: 0,
            listeners: 1,
            listeners_untracked: 0,
            listeners_malformed: 0,
            listeners_error: None,
            ssh_read: None,
            ssh_error: None,
            ssh_sources: 1,
            ssh_sources_evicted: 0,
            ssh_odd_lines: 0,
            arp: Avail::unavailable("test"),
        };
        let mut v = Values::new();
        security_values(&mut v, &r);
        check_names(&v);
        let subjects: Vec<(&str, &str, &str)> = v
            .get("security_finding")
            .iter()
            .map(|s| {
                (
                    s.labels["kind"].as_str(),
                    s.labels["severity"].as_str(),
                    s.labels["subject"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            subjects,
            [
                ("arp_spoofing", "critical", "10.0.0.2 on br0"),
                ("deleted_executable", "warning", "pid 42 (sshd)"),
                ("new_listener", "warning", "tcp 0.0.0.0 port 4444"),
                ("ssh_brute_force", "critical", "192.0.2.7"),
            ]
        );
        let mut e = Engine::new(defaults(), Options::default());
        let out = e.evaluate(&v, at);
        let mut firing: Vec<(&str, &str, &str)> = out
            .events
            .iter()
            .filter(|e| e.to == State::Firing)
            .map(|e| {
                (
                    e.labels["alertname"].as_str(),
                    e.labels["severity"].as_str(),
                    e.labels["subject"].as_str(),
                )
            })
            .collect();
        firing.sort_unstable();
        // The critical ones only.
        assert_eq!(
            firing,
            [
                ("security_critical", "critical", "10.0.0.2 on br0"),
                ("security_critical", "critical", "192.0.2.7"),
            ]
        );
        // The finding gone: the alert resolves.
        let out = e.evaluate(&Values::new(), at + Duration::from_secs(10));
        assert!(
            out.events
                .iter()
                .any(|e| e.to == State::Resolved && e.labels["alertname"] == "security_critical"),
            "{:?}",
            out.events
        );
    }

    #[test]
    fn empty_agent_has_only_what_it_knows() {
        let intervals = Intervals::default();
        let v = fill(
            &Snapshot::default(),
            &Telemetry::default(),
            &intervals,
            Health {
                history_degraded: Some(true),
            },
            SystemTime::now(),
        );
        check_names(&v);
        assert_eq!(v.get("history_degraded")[0].value, 1.0);
        // Collectors turned off have no collector_up; no snapshot, no maps.
        assert!(v.get("collector_up").is_empty());
        assert!(v.get("map_fill_percent").is_empty());
        assert!(v.get("cpu_percent").is_empty());
    }
}
