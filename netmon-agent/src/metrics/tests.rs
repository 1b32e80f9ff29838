//! The encoder's rules, on hand-built snapshots and readings.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant, SystemTime},
};

use netmon_common::{Counter, MacKey, direction};

use std::sync::Arc;

use super::*;
use crate::{
    collect::{
        Avail, CollectorName, Cycle, Reading, State, Telemetry,
        discovery::{self, DeviceReport, inventory::SeenBy as Seen, inventory::Status},
        interfaces::{self, Counters, InterfaceStats},
        latency,
        system::{self, Cpu, Filesystem, Host, Memory, Sensor, Temperatures},
    },
    ifaces::{Subnets, format_mac},
    snapshot::Snapshot,
    traffic::{MapCounts as MapReading, Traffic},
};

const ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 0xee];

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

/// A snapshot after one drain in which each `(ifindex, src, bytes)`
/// sent `bytes` in one frame to [`ROUTER`].
fn snapshot(sent: &[(u32, [u8; 6], u64)], names: &[(u32, &str)]) -> Snapshot {
    let mut traffic = Traffic::new(Duration::from_secs(300));
    let reading = MapReading {
        macs: sent
            .iter()
            .map(|&(ifindex, src, bytes)| {
                (
                    MacKey {
                        ifindex,
                        direction: direction::EGRESS,
                        _pad0: 0,
                        src,
                        dst: ROUTER,
                        _pad1: [0; 2],
                    },
                    Counter { bytes, packets: 1 },
                )
            })
            .collect(),
        mac_capacity: 4096,
        flow_capacity: 65536,
        ..MapReading::default()
    };
    let now = Instant::now();
    traffic.update(now, SystemTime::now(), &reading, &Subnets::default());
    Snapshot {
        updated: Some(SystemTime::now()),
        devices: traffic.devices.values().cloned().collect(),
        flows: traffic.flows.values().cloned().collect(),
        globals: traffic.globals,
        mac_map: traffic.mac_map,
        flow_map: traffic.flow_map,
        flow_cache: traffic.flow_cache,
        names: names.iter().map(|&(i, n)| (i, n.to_owned())).collect(),
        ..Snapshot::default()
    }
}

fn cycle() -> Cycle {
    Cycle {
        started: SystemTime::now(),
        finished: SystemTime::now(),
        wall: Duration::from_millis(20),
        cpu: Duration::from_millis(5),
        cycles: 7,
        cpu_total: Duration::from_millis(35),
        failures: 0,
    }
}

fn reading<R>(report: R) -> Reading<R> {
    Reading {
        collection: cycle(),
        report,
    }
}

fn found(ifindex: u32, m: [u8; 6], hostname: Option<&str>, status: Status) -> DeviceReport {
    DeviceReport {
        interface: String::new(),
        ifindex,
        mac: format_mac(m),
        mac_bytes: m,
        vendor: None,
        locally_administered: true,
        hostname: hostname.map(str::to_owned),
        addresses: vec![discovery::inventory::Address {
            ip: IpAddr::V4(Ipv4Addr::new(10, 9, 0, m[5])),
            last_seen: SystemTime::now(),
        }],
        first_seen: SystemTime::now(),
        last_seen: SystemTime::now(),
        status,
        sources: vec![Seen::Arp],
    }
}

fn none() -> Telemetry {
    Telemetry::default()
}

/// Every collector disabled but those given.
fn inputs(slots: &[(CollectorName, State)]) -> Telemetry {
    let t = Telemetry::default();
    for (name, state) in slots {
        t.slot(*name).set(state.clone());
    }
    t
}

fn ready<R: serde::Serialize + Send + Sync + Clone + 'static>(r: &Reading<R>) -> State {
    State::Ready(Arc::new(Reading {
        collection: r.collection,
        report: r.report.clone(),
    }))
}

fn encode_inputs(s: &Snapshot, t: &Telemetry, limits: &Limits) -> String {
    encode(s, t, limits, &Names::new())
}

const LIMITS: Limits = Limits {
    max_devices: 1000,
    flows: false,
    max_flows: 1000,
};

/// The samples of the exposition, as (name{labels}, value) text pairs,
/// after checking its shape: every family has one HELP and one TYPE
/// line before its samples, samples of a family are contiguous, counters
/// (and only they) end in `_total`, and no series appears twice.
fn samples(text: &str) -> Vec<(String, String)> {
    let mut helped = HashSet::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut done = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(helped.insert(name.clone()), "two HELP lines for {name}");
            if let Some(c) = current.take() {
                done.insert(c);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(
                typed.insert(name.into(), kind.into()).is_none(),
                "two TYPE lines for {name}"
            );
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            current = Some(name.into());
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample out of its family: {line}"
        );
        assert!(!done.contains(name), "family {name} split");
        let value_at = line.rfind(' ').unwrap();
        let (key, value) = (&line[..value_at], &line[value_at + 1..]);
        assert!(value.parse::<f64>().is_ok() || value == "NaN", "{line}");
        assert!(series.insert(key.to_owned()), "duplicate series {key}");
        out.push((key.to_owned(), value.to_owned()));
    }
    out
}

fn value(text: &str, key: &str) -> Option<String> {
    samples(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn device_counters_carry_interface_mac_ip_and_name() {
    let s = snapshot(&[(3, mac(1), 1500)], &[(3, "eth0")]);
    let disc = reading(discovery::Report {
        devices: vec![found(3, mac(1), Some("printer"), Status::Active)],
        ..discovery::Report::default()
    });
    let tel = inputs(&[(CollectorName::Discovery, ready(&disc))]);
    let text = encode_inputs(&s, &tel, &LIMITS);
    let labels = r#"{interface="eth0",mac="02:00:00:00:00:01",ip="10.9.0.1",name="printer"}"#;
    assert_eq!(
        value(
            &text,
            &format!("netmon_device_transmit_bytes_total{labels}")
        )
        .as_deref(),
        Some("1500")
    );
    assert_eq!(
        value(
            &text,
            &format!("netmon_device_transmit_packets_total{labels}")
        )
        .as_deref(),
        Some("1")
    );
    // The router received it; discovery does not know it: no ip, no name.
    let router = r#"{interface="eth0",mac="02:00:00:00:00:ee",ip="",name=""}"#;
    assert_eq!(
        value(&text, &format!("netmon_device_receive_bytes_total{router}")).as_deref(),
        Some("1500")
    );
    assert_eq!(value(&text, "netmon_devices").as_deref(), Some("2"));
    assert_eq!(
        value(&text, "netmon_device_series_dropped").as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&text, r#"netmon_map_capacity_entries{map="mac"}"#).as_deref(),
        Some("4096")
    );
    assert_eq!(
        value(&text, r#"netmon_discovery_devices{status="active"}"#).as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&text, r#"netmon_collector_up{collector="discovery"}"#).as_deref(),
        Some("1")
    );
    assert_eq!(
        value(
            &text,
            r#"netmon_collector_cycles_total{collector="discovery"}"#
        )
        .as_deref(),
        Some("7")
    );
}

#[test]
fn odd_hostnames_and_interface_names_are_escaped() {
    let s = snapshot(&[(3, mac(1), 100)], &[(3, "we\"ird\\if")]);
    let disc = reading(discovery::Report {
        devices: vec![found(
            3,
            mac(1),
            Some("evil\"} 1\nnetmon_fake 9\\"),
            Status::Active,
        )],
        ..discovery::Report::default()
    });
    let tel = inputs(&[(CollectorName::Discovery, ready(&disc))]);
    let text = encode_inputs(&s, &tel, &LIMITS);
    let want = r#"netmon_device_transmit_bytes_total{interface="we\"ird\\if",mac="02:00:00:00:00:01",ip="10.9.0.1",name="evil\"} 1\nnetmon_fake 9\\"} 100"#;
    assert!(text.lines().any(|l| l == want), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("netmon_fake")),
        "{text}"
    );
    samples(&text);
    assert_eq!(escape_label("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
}

#[test]
fn device_cap_keeps_the_busiest_and_counts_the_rest() {
    let s = snapshot(
        &[(3, mac(1), 100), (3, mac(2), 300), (3, mac(3), 200)],
        &[(3, "eth0")],
    );
    let limits = Limits {
        max_devices: 2,
        ..LIMITS
    };
    let text = encode_inputs(&s, &none(), &limits);
    let macs: HashSet<String> = samples(&text)
        .into_iter()
        .filter(|(k, _)| k.starts_with("netmon_device_receive_bytes_total{"))
        .map(|(k, _)| k[k.find("mac=\"").unwrap() + 5..][..17].to_owned())
        .collect();
    // The router (600 bytes received) and mac 2 (300 sent).
    let want: HashSet<String> = [format_mac(ROUTER), format_mac(mac(2))].into();
    assert_eq!(macs, want);
    assert_eq!(value(&text, "netmon_devices").as_deref(), Some("4"));
    assert_eq!(
        value(&text, "netmon_device_series_dropped").as_deref(),
        Some("2")
    );
}

#[test]
fn gone_devices_have_no_series() {
    let s = snapshot(&[(3, mac(1), 100), (3, mac(2), 100)], &[(3, "eth0")]);
    let disc = reading(discovery::Report {
        devices: vec![
            found(3, mac(1), None, Status::Gone),
            found(3, mac(2), None, Status::Idle),
        ],
        ..discovery::Report::default()
    });
    let tel = inputs(&[(CollectorName::Discovery, ready(&disc))]);
    let text = encode_inputs(&s, &tel, &LIMITS);
    assert!(!text.contains(&format_mac(mac(1))), "{text}");
    assert!(text.contains(&format_mac(mac(2))), "{text}");
    assert_eq!(value(&text, "netmon_devices").as_deref(), Some("2"));
}

#[test]
fn same_labels_on_two_interfaces_are_summed_once() {
    // An interface re-created under the same name has a new ifindex.
    let s = snapshot(
        &[(3, mac(1), 100), (4, mac(1), 50)],
        &[(3, "eth0"), (4, "eth0")],
    );
    let text = encode_inputs(&s, &none(), &LIMITS);
    let key = r#"netmon_device_transmit_bytes_total{interface="eth0",mac="02:00:00:00:00:01",ip="",name=""}"#;
    assert_eq!(value(&text, key).as_deref(), Some("150"));
}

#[test]
fn counters_keep_every_digit() {
    let s = snapshot(&[(3, mac(1), u64::MAX - 1)], &[(3, "eth0")]);
    let text = encode_inputs(&s, &none(), &LIMITS);
    assert!(
        text.contains(&format!("name=\"\"}} {}\n", u64::MAX - 1)),
        "{text}"
    );
}

fn system_report(cpu: Avail<Cpu>, cached: Avail<u64>, celsius: Avail<f64>) -> system::Report {
    system::Report {
        cpu,
        load_average: Avail::unavailable("test"),
        memory: Avail::Value(Memory {
            total_bytes: 1000,
            used_bytes: 400,
            available_bytes: 600,
            free_bytes: 300,
            cached_bytes: cached,
            used_percent: 40.0,
        }),
        swap: Avail::unavailable("test"),
        filesystems: Avail::Value(vec![Filesystem {
            mount_point: "/".into(),
            device: "/dev/vda1".into(),
            fs_type: "ext4".into(),
            total_bytes: 5000,
            used_bytes: 1000,
            free_bytes: 4000,
            used_percent: Avail::Value(20.0),
            read_only: false,
        }]),
        temperatures: Avail::Value(Temperatures {
            sensors: vec![Sensor {
                label: "coretemp Package id 0".into(),
                cpu: true,
                celsius,
                critical_celsius: None,
            }],
            hottest_cpu_celsius: Avail::unavailable("test"),
        }),
        uptime_seconds: Avail::Value(3600),
        host: Host {
            hostname: Avail::unavailable("test"),
            os_name: Avail::unavailable("test"),
            os_version: Avail::unavailable("test"),
            os_long_version: Avail::unavailable("test"),
            kernel: Avail::unavailable("test"),
            boot_time: Avail::Value("2026-01-01T00:00:00.000Z".into()),
            primary_addresses: Avail::unavailable("test"),
        },
    }
}

fn iface(name: &str, speed: Avail<u64>, counters: Avail<Counters>) -> InterfaceStats {
    InterfaceStats {
        name: name.into(),
        ifindex: 2,
        watched: true,
        mac: Avail::unavailable("test"),
        addresses: Avail::unavailable("test"),
        oper_state: "up".into(),
        mtu: Avail::Value(1500),
        speed_mbps: speed,
        counters,
        rates: Avail::unavailable("test"),
        utilization: Avail::unavailable("test"),
    }
}

#[test]
fn unavailable_values_have_no_series() {
    let s = Snapshot::default();
    let sys_missing = reading(system_report(
        Avail::unavailable("no /proc/stat"),
        Avail::unavailable("no Cached line"),
        Avail::unavailable("sensor fault"),
    ));
    let counters = Counters {
        rx_bytes: 10,
        tx_bytes: 20,
        ..Counters::default()
    };
    let ifs = reading(interfaces::Report {
        interfaces: Avail::Value(vec![
            iface(
                "veth0",
                Avail::unavailable("virtual"),
                Avail::Value(counters),
            ),
            iface(
                "eth1",
                Avail::Value(1000),
                Avail::unavailable("no statistics"),
            ),
        ]),
    });
    let tel = inputs(&[
        (CollectorName::System, ready(&sys_missing)),
        (CollectorName::Interfaces, ready(&ifs)),
    ]);
    let text = encode_inputs(&s, &tel, &LIMITS);
    samples(&text);
    for absent in [
        "netmon_cpu_usage_ratio",
        "netmon_memory_cached_bytes",
        "netmon_hwmon_temp_celsius",
        "netmon_load1",
        "netmon_swap_total_bytes",
        "netmon_network_speed_bytes{device=\"veth0\"}",
        "netmon_network_receive_bytes_total{device=\"eth1\"}",
        // No drain yet: no traffic-core gauges either.
        "netmon_devices",
        "netmon_map_entries",
    ] {
        assert!(!text.contains(absent), "{absent} present:\n{text}");
    }
    assert_eq!(
        value(&text, "netmon_memory_total_bytes").as_deref(),
        Some("1000")
    );
    assert_eq!(
        value(
            &text,
            r#"netmon_network_transmit_bytes_total{device="veth0"}"#
        )
        .as_deref(),
        Some("20")
    );
    assert_eq!(
        value(&text, r#"netmon_network_speed_bytes{device="eth1"}"#).as_deref(),
        Some("125000000")
    );
    assert_eq!(
        value(&text, r#"netmon_network_up{device="eth1"}"#).as_deref(),
        Some("1")
    );

    let sys = reading(system_report(
        Avail::Value(Cpu {
            usage_percent: 25.0,
            cores: vec![system::Core {
                name: "cpu0".into(),
                usage_percent: 50.0,
            }],
        }),
        Avail::Value(77),
        Avail::Value(45.5),
    ));
    let tel = inputs(&[(CollectorName::System, ready(&sys))]);
    let text = encode_inputs(&s, &tel, &LIMITS);
    assert_eq!(
        value(&text, "netmon_cpu_usage_ratio").as_deref(),
        Some("0.25")
    );
    assert_eq!(
        value(&text, r#"netmon_cpu_core_usage_ratio{cpu="cpu0"}"#).as_deref(),
        Some("0.5")
    );
    assert_eq!(
        value(&text, "netmon_memory_cached_bytes").as_deref(),
        Some("77")
    );
    assert_eq!(
        value(
            &text,
            r#"netmon_hwmon_temp_celsius{chip="coretemp",sensor="Package id 0"}"#
        )
        .as_deref(),
        Some("45.5")
    );
    assert_eq!(
        value(&text, "netmon_boot_time_seconds").as_deref(),
        Some("1767225600")
    );
    assert_eq!(
        value(
            &text,
            r#"netmon_filesystem_avail_bytes{mountpoint="/",fstype="ext4",device="/dev/vda1"}"#
        )
        .as_deref(),
        Some("4000")
    );
}

#[test]
fn latency_reports_gauges_per_target() {
    let lat = reading(latency::Report {
        sockets: latency::Sockets {
            ipv4: Avail::unavailable("test"),
            ipv6: Avail::unavailable("test"),
        },
        target_selection: "configured",
        probes_per_cycle: 4,
        targets: vec![
            latency::TargetReport {
                address: "10.0.0.1".parse().unwrap(),
                interface: None,
                source: "configured".into(),
                sent: 4,
                received: 3,
                loss_percent: Avail::Value(25.0),
                rtt: Avail::Value(latency::RttStats {
                    min_seconds: 0.001,
                    avg_seconds: 0.002,
                    max_seconds: 0.003,
                    stddev_seconds: 0.0005,
                }),
                last_reply: None,
                last_error: None,
            },
            latency::TargetReport {
                address: "fe80::1".parse().unwrap(),
                interface: Some("eth0".into()),
                source: "configured".into(),
                sent: 4,
                received: 0,
                loss_percent: Avail::Value(100.0),
                rtt: Avail::unavailable("no replies"),
                last_reply: None,
                last_error: None,
            },
        ],
    });
    let tel = inputs(&[
        (CollectorName::Latency, ready(&lat)),
        (CollectorName::System, State::Pending),
    ]);
    let text = encode_inputs(&Snapshot::default(), &tel, &LIMITS);
    let t = r#"{target="10.0.0.1"}"#;
    assert_eq!(
        value(&text, &format!("netmon_latency_rtt_avg_seconds{t}")).as_deref(),
        Some("0.002")
    );
    assert_eq!(
        value(&text, &format!("netmon_latency_loss_ratio{t}")).as_deref(),
        Some("0.25")
    );
    assert_eq!(
        value(&text, r#"netmon_latency_loss_ratio{target="fe80::1%eth0"}"#).as_deref(),
        Some("1")
    );
    assert!(!text.contains(r#"netmon_latency_rtt_avg_seconds{target="fe80::1%eth0"}"#));
    assert_eq!(
        value(&text, &format!("netmon_latency_probes_received{t}")).as_deref(),
        Some("3")
    );
    // Pending: up 0 and no cycle figures; disabled: nothing.
    assert_eq!(
        value(&text, r#"netmon_collector_up{collector="system"}"#).as_deref(),
        Some("0")
    );
    assert!(!text.contains(r#"netmon_collector_cycles_total{collector="system"}"#));
    assert!(!text.contains(r#"collector="interfaces""#));
}

#[test]
fn flows_only_when_asked_and_capped() {
    let s = Snapshot {
        updated: Some(SystemTime::now()),
        ..Snapshot::default()
    };
    let text = encode_inputs(&s, &none(), &LIMITS);
    assert!(!text.contains("netmon_flow_"), "{text}");
    let on = Limits {
        flows: true,
        max_flows: 0,
        ..LIMITS
    };
    let text = encode_inputs(&s, &none(), &on);
    assert_eq!(
        value(&text, "netmon_flow_series_dropped").as_deref(),
        Some("0")
    );
}

#[test]
fn auth_auto_is_off_only_on_loopback() {
    let o = Options::default();
    assert!(!o.needs_key("127.0.0.1:9713".parse().unwrap()));
    assert!(!o.needs_key("[::1]:9713".parse().unwrap()));
    assert!(o.needs_key("0.0.0.0:9713".parse().unwrap()));
    assert!(o.needs_key("10.1.2.3:9713".parse().unwrap()));
    let on = Options {
        metrics_auth: MetricsAuth::On,
        ..Options::default()
    };
    assert!(on.needs_key("127.0.0.1:9713".parse().unwrap()));
    let off = Options {
        metrics_auth: MetricsAuth::Off,
        ..Options::default()
    };
    assert!(!off.needs_key("0.0.0.0:9713".parse().unwrap()));
}
