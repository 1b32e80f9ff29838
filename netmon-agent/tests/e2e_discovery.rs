//! End-to-end tests of device discovery: the real agent in the gateway
//! namespace of a bridged LAN (`common::Lan`) watching its `br0`, real ARP
//! and ICMPv6 between namespaces, answers read over real HTTP.
//!
//! Hosts get MACs with registered IEEE prefixes so vendors are checkable
//! (one keeps a locally administered MAC, which has none). The hosts send
//! nothing on purpose; the kernel's own MLD reports may still reach the
//! bridge, so "found by the sweep" is checked as the `arp` source and the
//! sweep's reply count, not as absence of other sources.
//!
//! Privileged: run as root (cargo xtask test does).

mod common;

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// How long discovery may take to show something (a few sweep cycles).
const WAIT: Duration = Duration::from_secs(20);

/// MACs with registered prefixes, and the registrant the IEEE lists.
const VENDORS: [([u8; 6], &str); 3] = [
    ([0x00, 0x1b, 0x21, 0x00, 0x00, 0x01], "Intel Corporate"),
    ([0x50, 0xa6, 0xd8, 0x00, 0x00, 0x02], "Apple, Inc."),
    ([0x00, 0x00, 0x00, 0x00, 0x00, 0x03], "XEROX CORPORATION"),
];

/// A LAN whose first hosts carry the [`VENDORS`] MACs; returns it and every
/// host's MAC (host `i` at index `i - 1`).
fn lan(n: usize) -> (Lan, Vec<[u8; 6]>) {
    let lan = Lan::new(n);
    let mut macs = Vec::new();
    for i in 1..=n {
        let mac = VENDORS.get(i - 1).map_or(Lan::host_mac(i as u8), |v| v.0);
        lan.host(i)
            .ns()
            .ip_line(&format!("link set eth0 address {}", format_mac(mac)));
        macs.push(mac);
    }
    (lan, macs)
}

fn devices(body: &Value) -> &[Value] {
    body["devices"].as_array().map_or(&[], Vec::as_slice)
}

fn device(body: &Value, mac: [u8; 6]) -> Option<&Value> {
    let mac = format_mac(mac);
    devices(body).iter().find(|d| d["mac"] == mac.as_str())
}

fn has(list: &Value, item: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(item)))
}

fn status_of(agent: &Agent, mac: [u8; 6]) -> Option<String> {
    let body = agent.get("/api/v1/devices");
    device(&body, mac).and_then(|d| d["status"].as_str().map(str::to_owned))
}

#[test]
fn sweep_finds_every_host_with_mac_ip_vendor_and_ipv6() {
    skip_unless_root!();
    let (lan, macs) = lan(4);
    let agent = Agent::start(
        lan.gw(),
        &[
            "--iface=br0",
            "--discovery-interval=200ms",
            "--discovery-sweep-interval=2s",
            "--discovery-sweep-wait=500ms",
        ],
    );
    let body = agent.wait_for("/api/v1/devices", WAIT, |body| {
        macs.iter().enumerate().all(|(i, &mac)| {
            let host = lan.host(i + 1);
            device(body, mac).is_some_and(|d| {
                has(&d["sources"], "arp")
                    && has(&d["ips"], &host.ip4().to_string())
                    && has(&d["ips"], &host.ip6().to_string())
            })
        })
    });
    for (i, &mac) in macs.iter().enumerate() {
        let d = device(&body, mac).unwrap();
        assert_eq!(d["interface"], "br0", "{d:#}");
        assert_eq!(d["status"], "active", "{d:#}");
        assert_eq!(d["self"], false, "{d:#}");
        match VENDORS.get(i) {
            Some((_, vendor)) => {
                assert_eq!(d["vendor"], *vendor, "{d:#}");
                assert_eq!(d["locally_administered"], false, "{d:#}");
            }
            None => {
                assert_eq!(d["vendor"], Value::Null, "{d:#}");
                assert_eq!(d["locally_administered"], true, "{d:#}");
            }
        }
        assert!(
            d["addresses"].as_array().is_some_and(|a| a
                .iter()
                .all(|a| a["ip"].is_string() && a["last_seen"].is_string())),
            "{d:#}"
        );
    }
    // The sweep asked every address of 10.0.0.0/24 but the agent's own.
    let sweep = &body["discovery"]["sweep"];
    let subnets = sweep["subnets"].as_array().expect("sweep statistics");
    assert_eq!(subnets.len(), 1, "{sweep:#}");
    let s = &subnets[0];
    eprintln!("sweep of a /24 with {} hosts: {s}", macs.len());
    assert_eq!(s["interface"], "br0");
    assert_eq!(s["subnet"], "10.0.0.0/24");
    assert_eq!(s["requests"], 253, "{s:#}");
    assert_eq!(s["replies"], macs.len(), "{s:#}");
    assert!(
        s["wall_seconds"].as_f64().is_some() && s["started"].is_string(),
        "{s:#}"
    );
    // Nothing but the hosts and the bridge itself.
    for d in devices(&body) {
        let mac = d["mac"].as_str().unwrap();
        let known = macs.iter().any(|m| format_mac(*m) == mac);
        let own = mac == format_mac(Lan::GW_MAC);
        assert!(
            known || (own && d["self"] == true) || d["group"] == true,
            "{d:#}"
        );
    }

    // One MAC, in capitals; malformed and unknown MACs; a bad filter.
    let one = agent.get(&format!(
        "/api/v1/devices/{}",
        format_mac(macs[0]).to_uppercase()
    ));
    assert_eq!(one["mac"], format_mac(macs[0]));
    assert_eq!(one["devices"].as_array().map(Vec::len), Some(1), "{one:#}");
    let key = [("X-API-KEY", TEST_KEY)];
    for (path, status, code) in [
        ("/api/v1/devices/zz:00:00:00:00:01", 400, "bad_request"),
        ("/api/v1/devices/+0:1b:21:00:00:01", 400, "bad_request"),
        ("/api/v1/devices/00:1b:21:00:00", 400, "bad_request"),
        ("/api/v1/devices/00:1b:21:99:99:99", 404, "not_found"),
        ("/api/v1/devices?status=sleepy", 400, "bad_request"),
        ("/api/v1/devices?colour=red", 400, "bad_request"),
    ] {
        let r = http_get_ok(lan.gw(), path, &key);
        assert_eq!(r.status, status, "{path}: {r:#?}");
        assert_eq!(r.json["error"]["code"], code, "{path}: {r:#?}");
    }
    let active = agent.get("/api/v1/devices?status=active&interface=br0");
    for &mac in &macs {
        assert!(device(&active, mac).is_some(), "{active:#}");
    }
    let gone = agent.get("/api/v1/devices?status=gone");
    assert!(devices(&gone).is_empty(), "{gone:#}");
}

#[test]
fn a_host_that_leaves_goes_idle_then_gone() {
    skip_unless_root!();
    let (lan, macs) = lan(2);
    let agent = Agent::start(
        lan.gw(),
        &[
            "--iface=br0",
            "--discovery-interval=200ms",
            "--discovery-sweep-interval=1s",
            "--discovery-sweep-rate=2000",
            "--discovery-sweep-wait=300ms",
            "--discovery-idle-after=2s",
            "--discovery-gone-after=6s",
        ],
    );
    agent.wait_for("/api/v1/devices", WAIT, |body| {
        macs.iter()
            .all(|&m| device(body, m).is_some_and(|d| d["status"] == "active"))
    });
    lan.gw().ip_line(&format!("link del {}", Lan::port_name(2)));
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen.last().map(String::as_str) != Some("gone") {
        assert!(Instant::now() < deadline, "statuses seen: {seen:?}");
        if let Some(s) = status_of(&agent, macs[1])
            && seen.last() != Some(&s)
        {
            seen.push(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, ["active", "idle", "gone"]);
    // The host still on the LAN stays active through the sweeps.
    assert_eq!(status_of(&agent, macs[0]).as_deref(), Some("active"));
}

#[test]
fn without_cap_net_raw_the_sweep_is_unavailable_and_discovery_goes_on() {
    skip_unless_root!();
    let (lan, macs) = lan(2);
    let state = tempfile::tempdir().unwrap();
    let cmd = wrapped(
        &[
            "setpriv",
            "--inh-caps=-net_raw",
            "--bounding-set=-net_raw",
            "--",
        ],
        &agent_command(
            &state.path().to_owned(),
            &[
                "--iface=br0",
                "--discovery-interval=200ms",
                "--discovery-sweep-interval=1s",
            ],
        ),
    );
    let mut child = lan.gw().spawn(&cmd);
    let key = [("X-API-KEY", TEST_KEY)];
    let found = poll_until(WAIT, || {
        assert!(
            child.try_status().is_none(),
            "agent exited:\n{}",
            child.stderr_text()
        );
        // Talk to the gateway so its kernel learns the host.
        lan.host(1).ns().run(|| icmp_echo(Lan::GW_IP4.into(), 1, 8));
        http_get(lan.gw(), "/api/v1/devices", &key).is_ok_and(|r| {
            r.status == 200
                && r.json["discovery"]["sweep"]["unavailable"]
                    .as_str()
                    .is_some_and(|m| m.contains("CAP_NET_RAW"))
                && device(&r.json, macs[0]).is_some_and(|d| has(&d["sources"], "neighbour"))
        })
    });
    let stderr = child.stderr_text();
    assert!(
        found,
        "no CAP_NET_RAW report or no passive discovery:\n{stderr}"
    );
    // Several sweep intervals have passed: still one log line.
    std::thread::sleep(Duration::from_secs(3));
    let stderr = child.stderr_text();
    assert_eq!(
        stderr.matches("missing capability CAP_NET_RAW").count(),
        1,
        "{stderr}"
    );
    assert!(child.try_status().is_none(), "agent exited:\n{stderr}");
}

#[test]
fn a_huge_neighbour_table_is_logged_and_bounded() {
    skip_unless_root!();
    const ENTRIES: usize = 3000;
    const MAX: usize = 500;
    let pair = Pair::new();
    let ns = pair.b().ns();
    let mut batch = String::new();
    for i in 0..ENTRIES {
        let (hi, lo) = ((i >> 8) as u8, i as u8);
        writeln!(
            batch,
            "neigh add 10.1.{hi}.{lo} lladdr 00:1b:21:01:{hi:02x}:{lo:02x} dev eth0 nud permanent"
        )
        .unwrap();
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), batch).unwrap();
    ns.ip(&["-batch", file.path().to_str().unwrap()]);

    let agent = Agent::start(
        ns,
        &[
            "--iface=eth0",
            "--discovery-interval=200ms",
            "--discovery-sweep-interval=0",
            &format!("--discovery-max-devices={MAX}"),
        ],
    );
    let body = agent.wait_for("/api/v1/devices", WAIT, |b| {
        b["discovery"]["neighbours"]["entries"]
            .as_u64()
            .is_some_and(|n| n >= ENTRIES as u64)
            && b["discovery"]["inventory"]["refused_total"]
                .as_u64()
                .is_some_and(|n| n > 0)
    });
    let inv = &body["discovery"]["inventory"];
    assert_eq!(inv["devices"], MAX, "{inv:#}");
    assert_eq!(inv["max_devices"], MAX, "{inv:#}");
    assert_eq!(
        body["discovery"]["sweep"]["unavailable"],
        "turned off (--discovery-sweep-interval 0)"
    );
    // A few more cycles: one log line, the agent still answering.
    std::thread::sleep(Duration::from_secs(2));
    let again = agent.get("/api/v1/devices");
    assert_eq!(again["discovery"]["inventory"]["devices"], MAX);
    let stderr = agent.stderr();
    assert_eq!(
        stderr.matches("Device inventory full").count(),
        1,
        "{stderr}"
    );
    assert_eq!(agent.get("/health")["status"], "ok");
}

/// Hostnames through the agent: a device named in a DHCP lease file gets
/// that name; one without a lease has none (reverse DNS is off here); a
/// lease added later is picked up when the file changes.
#[test]
fn hostnames_come_from_the_lease_file() {
    skip_unless_root!();
    let (lan, macs) = lan(2);
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("dnsmasq.leases");
    let line = |mac: [u8; 6], ip: std::net::Ipv4Addr, name: &str| {
        format!("0 {} {ip} {name} *\n", format_mac(mac))
    };
    std::fs::write(&leases, line(macs[0], lan.host(1).ip4(), "printer-one")).unwrap();
    let lease_arg = format!("--lease-file={}", leases.display());
    let agent = Agent::start(
        lan.gw(),
        &[
            "--iface=br0",
            "--discovery-interval=200ms",
            "--discovery-sweep-interval=1s",
            "--discovery-sweep-wait=300ms",
            "--no-reverse-dns",
            &lease_arg,
        ],
    );
    let body = agent.wait_for("/api/v1/devices", WAIT, |body| {
        device(body, macs[0]).is_some_and(|d| d["hostname"] == "printer-one")
            && device(body, macs[1]).is_some()
    });
    assert_eq!(device(&body, macs[1]).unwrap()["hostname"], Value::Null);

    let mut both = line(macs[0], lan.host(1).ip4(), "printer-one");
    both.push_str(&line(macs[1], lan.host(2).ip4(), "nas"));
    std::fs::write(&leases, both).unwrap();
    agent.wait_for("/api/v1/devices", WAIT, |body| {
        device(body, macs[1]).is_some_and(|d| d["hostname"] == "nas")
    });
    let one = agent.get(&format!("/api/v1/devices/{}", format_mac(macs[1])));
    assert_eq!(one["devices"][0]["hostname"], "nas", "{one:#}");
}

/// The first sweep runs at start-up even with a long sweep interval: it
/// waits for the traffic core's first list of watched interfaces instead
/// of sweeping nothing and putting the real one off by an interval.
#[test]
fn the_first_sweep_happens_at_start_with_a_long_interval() {
    skip_unless_root!();
    let (lan, macs) = lan(2);
    let agent = Agent::start(
        lan.gw(),
        &[
            "--iface=br0",
            "--discovery-interval=200ms",
            "--discovery-sweep-interval=1h",
            "--discovery-sweep-rate=2000",
            "--discovery-sweep-wait=300ms",
        ],
    );
    let body = agent.wait_for("/api/v1/devices", WAIT, |body| {
        body["discovery"]["sweep"]["subnets"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    });
    let s = &body["discovery"]["sweep"]["subnets"][0];
    assert_eq!(s["requests"], 253, "{s:#}");
    assert_eq!(s["replies"], macs.len(), "{s:#}");
}
