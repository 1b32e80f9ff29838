//! End-to-end tests of the system and interfaces collectors through the real
//! agent binary and its HTTP API, inside test network namespaces.
//!
//! The interface counters the agent reports are compared with the kernel's
//! `/sys/class/net/<if>/statistics`, read in the same namespace. To make the
//! comparison exact the kernel is read twice around a collection cycle that
//! started after the first read; when the two kernel reads agree (no packet
//! in between), the agent's figures must equal them.
//!
//! Privileged: run as root (`cargo xtask test` does).

mod common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use serde_json::Value;

/// How long a condition on the API may take to come true.
const WAIT: Duration = Duration::from_secs(10);
const INTERFACES: &str = "/api/v1/interfaces";
const SYSTEM: &str = "/api/v1/system";
/// The statistics files the agent reports, in its field names.
const COUNTERS: [&str; 8] = [
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
];

/// The kernel's counters of `ifname` in `ns`, read in one `cat`.
fn kernel_counters(ns: &NetNs, ifname: &str) -> Vec<u64> {
    let files: Vec<String> = COUNTERS
        .iter()
        .map(|f| format!("/sys/class/net/{ifname}/statistics/{f}"))
        .collect();
    let mut args = vec!["cat"];
    args.extend(files.iter().map(String::as_str));
    let out = ns.exec(&args);
    let values: Vec<u64> = out
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{ifname}: {l:?}: {e}"))
        })
        .collect();
    assert_eq!(values.len(), COUNTERS.len(), "{ifname}: {out:?}");
    values
}

/// The agent's counters of one entry of `stats.interfaces`.
fn agent_counters(entry: &Value) -> Vec<u64> {
    COUNTERS
        .iter()
        .map(|c| {
            entry["counters"][c]
                .as_u64()
                .unwrap_or_else(|| panic!("no counters.{c} in {entry:#}"))
        })
        .collect()
}

/// The collector's interface entry named `name`.
fn stats_entry<'v>(body: &'v Value, name: &str) -> &'v Value {
    body["stats"]["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no stats for {name}:\n{body:#}"))
}

/// Cycles the interfaces collector has published (0 before the first).
fn cycles(body: &Value) -> u64 {
    body["stats"]["collection"]["cycles"].as_u64().unwrap_or(0)
}

/// Waits until `path` answers 200 and returns the body (the collectors'
/// first cycle may still be running at start-up: 503).
fn wait_ok(agent: &Agent, path: &str) -> Value {
    let mut last = None;
    let ok = poll_until(WAIT, || {
        match agent.try_request(path, &[("X-API-KEY", TEST_KEY)]) {
            Ok((200, body)) => {
                last = Some(body);
                true
            }
            Ok((status, body)) => {
                assert_eq!(status, 503, "GET {path}: {body:#}");
                false
            }
            Err(_) => false,
        }
    });
    assert!(ok, "GET {path} not 200 after {WAIT:?}:\n{}", agent.stderr());
    last.expect("set when ok")
}

/// Every rate and utilization figure present in `entry` is finite and >= 0.
fn assert_rates_sane(entry: &Value) {
    for group in ["rates", "utilization"] {
        let Some(obj) = entry[group].as_object() else {
            panic!("{group} is not an object: {entry:#}");
        };
        if obj.contains_key("unavailable") {
            continue;
        }
        for (k, v) in obj {
            let v = v
                .as_f64()
                .unwrap_or_else(|| panic!("{group}.{k} not a number: {entry:#}"));
            assert!(v.is_finite() && v >= 0.0, "{group}.{k} = {v}: {entry:#}");
        }
    }
}

#[test]
fn interface_counters_equal_the_kernels_and_every_interface_is_listed() {
    skip_unless_root!();
    // Static neighbours: no datagram waits for (or is dropped during) ARP.
    let pair = Pair::with_options(PairOptions {
        static_neighbors: true,
        ..PairOptions::default()
    });
    let b = pair.b().ns();
    // Interfaces with odd names (quotes, backslash) the traffic core does not
    // watch (down): listed, escaped in JSON, nothing breaks.
    b.ip(&[
        "link", "add", "odd\"q", "type", "veth", "peer", "name", "odd\\b",
    ]);
    let agent = Agent::start(b, &["--interfaces-interval", "200ms"]);

    // Known traffic into b's eth0: 200 datagrams of 300 bytes.
    let before = kernel_counters(b, "eth0");
    let dst: SocketAddr = (Pair::IP4_B, 9).into();
    let src: SocketAddr = (Pair::IP4_A, 0).into();
    pair.a().ns().run(move || udp_send(src, dst, 300, 200));
    let body = wait_ok(&agent, INTERFACES);
    for entry in body["stats"]["interfaces"]
        .as_array()
        .expect("stats listed")
    {
        assert_rates_sane(entry);
    }

    // Exact comparison: kernel read k1, then a cycle wholly after it, then
    // kernel read k2; if k1 == k2 the agent saw exactly k1.
    let mut attempts = Vec::new();
    let (body, k) = loop {
        let k1 = kernel_counters(b, "eth0");
        let c1 = cycles(&agent.get(INTERFACES));
        let body = agent.wait_for(INTERFACES, WAIT, |v| cycles(v) >= c1 + 3);
        let k2 = kernel_counters(b, "eth0");
        if k1 == k2 {
            break (body, k1);
        }
        attempts.push(format!("{k1:?} -> {k2:?}"));
        assert!(
            attempts.len() < 20,
            "eth0 never quiet for a whole cycle: {attempts:#?}"
        );
    };
    let eth0 = stats_entry(&body, "eth0");
    assert_eq!(agent_counters(eth0), k, "agent vs kernel:\n{eth0:#}");
    assert!(
        k[1] - before[1] >= 200 && k[0] - before[0] >= 200 * 300,
        "the datagrams were counted: {before:?} -> {k:?}"
    );
    // Two readings after k1 and before k2 with equal counters: zero rates.
    for (key, v) in eth0["rates"].as_object().expect("rates after 3 cycles") {
        if key != "interval_seconds" {
            assert_eq!(v.as_f64(), Some(0.0), "rates.{key}:\n{eth0:#}");
        }
    }

    // Fields against the kernel and the harness's topology.
    assert_eq!(eth0["ifindex"], Pair::IFINDEX_B);
    assert_eq!(eth0["watched"], true, "{body:#}");
    assert_eq!(eth0["mac"], format_mac(Pair::MAC_B));
    assert_eq!(eth0["oper_state"], b.sysfs("eth0", "operstate"));
    assert_eq!(eth0["mtu"].to_string(), b.sysfs("eth0", "mtu"));
    let speed: i64 = b.sysfs("eth0", "speed").parse().expect("veth has a speed");
    assert_eq!(eth0["speed_mbps"].as_i64(), Some(speed), "{eth0:#}");
    assert_eq!(eth0["utilization"]["rx_percent"].as_f64(), Some(0.0));
    let addrs: Vec<String> = eth0["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .map(|a| format!("{}/{}", a["address"].as_str().unwrap(), a["prefix_len"]))
        .collect();
    for want in ["10.0.0.2/24", "fd00::2/64"] {
        assert!(addrs.iter().any(|a| a == want), "{want} not in {addrs:?}");
    }

    let lo = stats_entry(&body, "lo");
    assert_eq!(lo["watched"], false);
    assert!(
        b.try_exec(&["cat", "/sys/class/net/lo/speed"]).is_err(),
        "loopback has no speed in this kernel"
    );
    assert!(lo["speed_mbps"]["unavailable"].is_string(), "{lo:#}");
    assert!(lo["utilization"]["unavailable"].is_string(), "{lo:#}");
    for odd in ["odd\"q", "odd\\b"] {
        let e = stats_entry(&body, odd);
        assert_eq!(e["watched"], false);
        assert_eq!(e["ifindex"].to_string(), b.sysfs(odd, "ifindex"));
        assert_eq!(e["oper_state"], "down");
    }

    // The traffic core's part is unchanged beside it.
    assert_eq!(body["interfaces"][0]["name"], "eth0", "{body:#}");
    assert!(body["globals"]["packets"].is_u64());
    assert!(!agent.stderr().contains("panicked"), "{}", agent.stderr());
}

#[test]
fn system_reports_sane_values_and_the_default_route_addresses() {
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b().ns();
    b.ip_line("route add default via 10.0.0.1 dev eth0");
    let agent = Agent::start(b, &["--system-interval", "200ms"]);
    let s = wait_ok(&agent, SYSTEM);

    assert!(s["collection"]["cycles"].as_u64() >= Some(1), "{s:#}");
    let cpu = s["cpu"]["usage_percent"].as_f64().expect("cpu usage");
    assert!((0.0..=100.0).contains(&cpu), "{s:#}");
    let cores = s["cpu"]["cores"].as_array().expect("cores");
    let stat = b.exec(&["cat", "/proc/stat"]);
    let online = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    assert_eq!(cores.len(), online, "one entry per CPU in /proc/stat");
    for c in cores {
        let u = c["usage_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&u), "{c}");
    }
    for k in ["one", "five", "fifteen"] {
        assert!(
            s["load_average"][k].as_f64().is_some_and(|v| v >= 0.0),
            "{s:#}"
        );
    }

    let m = &s["memory"];
    let total = m["total_bytes"].as_u64().expect("memory total");
    let meminfo = b.exec(&["cat", "/proc/meminfo"]);
    let mem_total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    assert_eq!(total, mem_total_kib * 1024, "{m:#}");
    let used = m["used_bytes"].as_u64().unwrap();
    let available = m["available_bytes"].as_u64().unwrap();
    assert!(used <= total && available <= total, "{m:#}");
    assert!(
        m["cached_bytes"].as_u64().is_some_and(|c| c <= total),
        "{m:#}"
    );
    let swap = &s["swap"];
    assert!(swap["used_bytes"].as_u64() <= swap["total_bytes"].as_u64());

    let fss = s["filesystems"].as_array().expect("filesystems");
    assert!(fss.iter().any(|f| f["mount_point"] == "/"), "{fss:#?}");
    for f in fss {
        let (t, u, fr) = (
            f["total_bytes"].as_u64().unwrap(),
            f["used_bytes"].as_u64().unwrap(),
            f["free_bytes"].as_u64().unwrap(),
        );
        assert!(u + fr <= t, "{f}");
        assert_ne!(f["fs_type"], "proc", "pseudo filesystems are left out");
    }

    let uptime = s["uptime_seconds"].as_u64().expect("uptime");
    assert!(uptime > 0);
    let h = &s["host"];
    assert_eq!(h["kernel"], b.exec(&["uname", "-r"]).trim(), "{h:#}");
    assert_eq!(
        h["hostname"],
        b.exec(&["cat", "/proc/sys/kernel/hostname"]).trim()
    );
    assert!(
        h["boot_time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{h:#}"
    );
    let primary = &h["primary_addresses"];
    assert_eq!(primary["source"], "default_route", "{primary:#}");
    let names: Vec<&String> = primary["interfaces"]
        .as_object()
        .expect("interfaces")
        .keys()
        .collect();
    assert_eq!(names, ["eth0"], "{primary:#}");
    let addrs = primary["interfaces"]["eth0"].to_string();
    assert!(
        addrs.contains("10.0.0.2") && addrs.contains("fd00::2"),
        "{addrs}"
    );
    assert!(!addrs.contains("fe80"), "link-local left out: {addrs}");

    // Temperatures: sensors or an explicit reason, never an error or zero.
    let t = &s["temperatures"];
    assert!(
        t["unavailable"].is_string() || t["sensors"].as_array().is_some_and(|s| !s.is_empty()),
        "{t:#}"
    );
}

#[test]
fn disabled_collectors_give_503_or_unavailable_and_bad_parameters_400() {
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b().ns();
    let agent = Agent::start(b, &["--disable", "system,interfaces"]);
    let key = [("X-API-KEY", TEST_KEY)];

    let r = http_get_ok(b, SYSTEM, &key);
    assert_eq!(r.status, 503, "{r:#?}");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    assert_eq!(r.json["error"]["code"], "unavailable", "{r:#?}");
    let msg = r.json["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("--disable system"), "{msg}");

    let body = agent.get(INTERFACES);
    assert!(
        body["interfaces"].is_array(),
        "traffic part still served: {body:#}"
    );
    let why = body["stats"]["unavailable"].as_str().unwrap_or("");
    assert!(why.contains("--disable interfaces"), "{body:#}");

    for (path, param) in [
        ("/api/v1/system?x=1", "x"),
        ("/api/v1/interfaces?verbose=true", "verbose"),
    ] {
        let r = http_get_ok(b, path, &key);
        assert_eq!(r.status, 400, "{path}: {r:#?}");
        assert_eq!(r.json["error"]["code"], "bad_request");
        assert_eq!(r.json["error"]["param"], param, "{r:#?}");
    }
    // Without the key, still 401 before anything else.
    assert_eq!(http_get_ok(b, SYSTEM, &[]).status, 401);
}

/// The schema check catches the shapes the seed's consumers would trip on
/// (a bare CPU number, rates as fractions, a missing key, a local time),
/// and passes the seed's own example.
#[test]
fn the_seed001_schema_check_can_fail() {
    let example: Value = serde_json::from_str(seed001::EXAMPLE).unwrap();
    assert_eq!(seed001_mismatches(&example), Vec::<String>::new());
    let spoil = |f: &dyn Fn(&mut Value)| {
        let mut doc = example.clone();
        f(&mut doc);
        seed001_mismatches(&doc)
    };
    let broken = [
        spoil(&|d| d["metrics"]["cpu"] = 25.5.into()),
        spoil(&|d| d["metrics"]["memory"] = 50.0.into()),
        spoil(&|d| d["metrics"]["disk"] = 50.0.into()),
        spoil(&|d| d["network"]["connectedDevices"][0]["bandwidth"]["rxRateBps"] = 1.5.into()),
        spoil(&|d| d["network"]["collectionDurationSeconds"] = 5.2.into()),
        spoil(&|d| {
            d["network"]["connectedDevices"][0]["bandwidth"]
                .as_object_mut()
                .unwrap()
                .remove("txBytesTotal");
        }),
        spoil(&|d| d["snapshotTime"] = "2024-01-01T12:00:00+01:00".into()),
        spoil(&|d| d["metrics"]["cpu"]["percent"] = Value::Null),
    ];
    for (i, problems) in broken.iter().enumerate() {
        assert_eq!(problems.len(), 1, "case {i}: {problems:?}");
    }
}

/// `/api/v1/snapshot` in the earlier bandwidth agent's shape: its fields are
/// there with the documented meanings, devices carry the same totals as
/// `/api/v1/devices`, names come from leases, and extras sit beside them.
#[test]
fn snapshot_has_the_legacy_shape_and_agrees_with_the_other_endpoints() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("dnsmasq.leases");
    std::fs::write(
        &leases,
        format!("0 {} {} sender-a *\n", format_mac(a.mac()), a.ip4()),
    )
    .unwrap();
    let lease_arg = format!("--lease-file={}", leases.display());
    let agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--server-id=gw-1",
            "--system-interval=200ms",
            "--interfaces-interval=200ms",
            "--discovery-interval=200ms",
            "--no-reverse-dns",
            &lease_arg,
        ],
    );
    udp_exchange(a, b, 100, 300);

    let mac = format_mac(a.mac());
    let find = |snap: &Value| -> Option<Value> {
        snap["network"]["connectedDevices"]
            .as_array()?
            .iter()
            .find(|d| d["mac"] == mac.as_str())
            .cloned()
    };
    // Until the device has its name, and its totals equal /devices' (both
    // read with no traffic in between, so from the same counts).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (snap, dev) = loop {
        let snap = agent.get("/api/v1/snapshot");
        let devices = agent.get("/api/v1/devices");
        let listed = devices["devices"]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["mac"] == mac.as_str()).cloned());
        if let (Some(d), Some(l)) = (find(&snap), listed)
            && d["deviceName"] == "sender-a"
            && d["bandwidth"]["txBytesTotal"] == l["tx"]["bytes"]
            && d["bandwidth"]["rxBytesTotal"] == l["rx"]["bytes"]
            && l["tx"]["bytes"].as_u64().unwrap_or(0) >= 300 * 142
            && snap["metrics"]["cpu"]["percent"].is_number()
        {
            break (snap, d);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snapshot never agreed with /devices:\n{snap:#}\n{devices:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(snap["messageType"], "realtimeSnapshot");
    assert_eq!(snap["serverId"], "gw-1");
    // Every key of the seed's documented example, with its JSON type.
    let problems = seed001_mismatches(&snap);
    assert!(problems.is_empty(), "{problems:#?}\n{snap:#}");
    let m = &snap["metrics"];
    for pct in [&m["cpu"]["percent"], &m["memory"]["percentUsed"]] {
        let v = pct.as_f64().unwrap();
        assert!((0.0..=100.0).contains(&v), "{m:#}");
    }
    let mem = &m["memory"];
    assert!(mem["usedBytes"].as_u64().unwrap() <= mem["totalBytes"].as_u64().unwrap());
    assert!(mem["freeBytes"].as_u64().unwrap() <= mem["totalBytes"].as_u64().unwrap());
    // The root filesystem is in the list, in the memory object's style.
    let disks = m["disk"].as_array().unwrap();
    let root = disks.iter().find(|d| d["mountpoint"] == "/");
    let root = root.unwrap_or_else(|| panic!("no / in {m:#}"));
    for key in ["totalBytes", "usedBytes", "freeBytes"] {
        assert!(root[key].is_u64(), "{root:#}");
    }
    assert!(
        root["device"].is_string() && root["fstype"].is_string(),
        "{root:#}"
    );
    assert!(m["uptimeSeconds"].as_u64().unwrap() > 0, "{m:#}");
    let n = &snap["network"];
    // The last 200 ms drain interval: whole seconds as the seed types it,
    // and to the fraction beside it.
    let ms = n["collectionDurationMs"].as_f64().unwrap();
    assert!((100.0..500.0).contains(&ms), "{n:#}");
    assert_eq!(n["collectionDurationSeconds"], (ms / 1e3).round() as u64);
    assert!(n["collectionStartTime"].is_string() && n["collectionEndTime"].is_string());
    assert!(
        n["interfaces"].as_array().is_some_and(|l| l
            .iter()
            .any(|i| i["name"] == "eth0" && i["watched"] == true)),
        "{n:#}"
    );
    assert_eq!(dev["ip"], a.ip4().to_string(), "{dev:#}");
    assert_eq!(dev["status"], "active", "{dev:#}");
    assert!(dev["timeChecked"].is_string(), "{dev:#}");
    // Rates in bits per second (the seed's `Bps`, whole numbers); the
    // busier direction's share of the link speed, where it is known
    // (veth reports 10 Gb/s on recent kernels); null, not 0, where not.
    let eth0 = n["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap();
    let bw = &dev["bandwidth"];
    let busier = bw["txRateBps"]
        .as_f64()
        .unwrap()
        .max(bw["rxRateBps"].as_f64().unwrap());
    match eth0["speedMbps"].as_f64() {
        Some(mbps) => {
            // The rates are rounded to whole bits; the share is not.
            let want = busier * 100.0 / (mbps * 1e6);
            let got = bw["utilizationPercent"].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 100.0 / (mbps * 1e6),
                "{got} != {want}: {dev:#}"
            );
        }
        None => assert!(bw["utilizationPercent"].is_null(), "{dev:#}"),
    }
    // This host's own MAC is not a connected device.
    assert!(find(&snap).is_some());
    let own = format_mac(b.mac());
    assert!(
        !n["connectedDevices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["mac"] == own.as_str()),
        "{n:#}"
    );
    let r = http_get_ok(b.ns(), "/api/v1/snapshot?x=1", &[("X-API-KEY", TEST_KEY)]);
    assert_eq!(r.status, 400, "{r:#?}");
}

/// Without discovery (which lists this host's own MACs), the watched
/// interface's own MAC is still known as this host's: `self` in
/// `/api/v1/devices`, and not a connected device in the snapshot.
#[test]
fn own_mac_is_known_without_discovery() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let agent = Agent::start(b.ns(), &["--iface=eth0", "--disable", "discovery"]);
    udp_exchange(a, b, 20, 100);
    let own = format_mac(b.mac());
    let peer = format_mac(a.mac());
    let listed = |devices: &Value, mac: &str| -> Option<Value> {
        devices["devices"]
            .as_array()?
            .iter()
            .find(|d| d["mac"] == mac)
            .cloned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let devices = loop {
        let devices = agent.get("/api/v1/devices");
        if listed(&devices, &own).is_some() && listed(&devices, &peer).is_some() {
            break devices;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both MACs not listed: {devices:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(listed(&devices, &own).unwrap()["self"], true, "{devices:#}");
    assert_eq!(
        listed(&devices, &peer).unwrap()["self"],
        false,
        "{devices:#}"
    );
    let snap = agent.get("/api/v1/snapshot");
    let connected: Vec<&Value> = snap["network"]["connectedDevices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["mac"])
        .collect();
    assert!(connected.contains(&&Value::from(peer.as_str())), "{snap:#}");
    assert!(!connected.contains(&&Value::from(own.as_str())), "{snap:#}");
}
