//! End-to-end tests of the latency collector: the real agent in one network
//! namespace sends real ICMP echo requests over a veth to its peer, and the
//! results are read from `GET /api/v1/latency` over real HTTP.
//!
//! Privileged (root, namespaces): see `tests/common`. Nothing here asserts
//! how fast anything is; the delaying responder checks a lower bound on the
//! RTT that the responder itself guarantees.

mod common;

use std::{
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// How long a latency condition may take to come true (a cycle includes
/// waiting out the probe timeout of unanswered probes).
const WAIT: Duration = Duration::from_secs(30);
/// Addresses inside the pair's subnets with nobody behind them.
const NOBODY4: &str = "10.0.0.99";
const NOBODY6: &str = "fd00::99";
/// An address the agent's namespace has no route to.
const NO_ROUTE: &str = "10.9.9.9";

/// Polls `/api/v1/latency` until `done(body)` holds (503 before the first
/// cycle is part of waiting); panics with the last answer and the agent's
/// log otherwise.
fn wait_latency(agent: &Agent, mut done: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match agent.try_request("/api/v1/latency", &[("X-API-KEY", TEST_KEY)]) {
            Ok((200, body)) if done(&body) => return body,
            Ok((status, body)) => format!("{status}: {body:#}"),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "latency condition not met after {WAIT:?}; last answer {last}\nagent stderr:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The report's entry for `addr`, if any.
fn target<'a>(body: &'a Value, addr: &str) -> Option<&'a Value> {
    body["targets"]
        .as_array()?
        .iter()
        .find(|t| t["address"] == addr)
}

/// Whether every target in `addrs` has a report with probes sent.
fn all_probed(body: &Value, addrs: &[&str]) -> bool {
    addrs
        .iter()
        .all(|a| target(body, a).is_some_and(|t| t["sent"].as_u64().is_some_and(|s| s > 0)))
}

/// Checks a target answered every probe of the cycle with an RTT > 0.
fn assert_reachable(body: &Value, addr: &str, count: u64) {
    let t = target(body, addr).unwrap_or_else(|| panic!("no target {addr}: {body:#}"));
    assert_eq!(t["sent"], count, "{addr}: {body:#}");
    assert_eq!(t["received"], count, "{addr}: {body:#}");
    assert_eq!(t["loss_percent"], 0.0, "{addr}: {body:#}");
    let rtt = &t["rtt"];
    for k in [
        "min_seconds",
        "avg_seconds",
        "max_seconds",
        "stddev_seconds",
    ] {
        assert!(rtt[k].is_f64(), "{addr}: rtt.{k}: {body:#}");
    }
    let min = rtt["min_seconds"].as_f64().unwrap_or_default();
    assert!(min > 0.0, "{addr}: min RTT {min}: {body:#}");
    assert!(
        min <= rtt["avg_seconds"].as_f64().unwrap_or_default()
            && rtt["avg_seconds"].as_f64() <= rtt["max_seconds"].as_f64(),
        "{addr}: min <= avg <= max: {body:#}"
    );
    assert!(t["last_reply"].is_string(), "{addr}: {body:#}");
}

/// Checks a target lost every probe and reports no RTT.
fn assert_unreachable(body: &Value, addr: &str, count: u64) {
    let t = target(body, addr).unwrap_or_else(|| panic!("no target {addr}: {body:#}"));
    assert_eq!(t["sent"], count, "{addr}: {body:#}");
    assert_eq!(t["received"], 0, "{addr}: {body:#}");
    assert_eq!(t["loss_percent"], 100.0, "{addr}: {body:#}");
    assert!(
        t["rtt"]["unavailable"].is_string(),
        "{addr}: an RTT without replies: {body:#}"
    );
    assert!(t["last_reply"].is_null(), "{addr}: {body:#}");
}

fn rx_packets(agent: &Agent) -> u64 {
    let body = agent.get("/api/v1/interfaces");
    body["interfaces"][0]["rx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rx packets: {body:#}"))
}

/// Both families, reachable and unreachable targets in the same cycle, over
/// datagram sockets; while the unanswered probes wait out their (long)
/// timeout, the API answers and the traffic counters advance.
#[test]
fn reachable_and_unreachable_targets_while_the_agent_keeps_serving() {
    skip_unless_root!();
    let pair = Pair::new();
    let a = pair.a().ns();
    let targets = format!("10.0.0.2,fd00::2,{NOBODY4},{NOBODY6},{NO_ROUTE}");
    let agent = Agent::start(
        a,
        &[
            "--probe-target",
            &targets,
            "--probe-socket=datagram",
            "--probe-count=3",
            "--probe-spacing=50ms",
            // Long, so the next cycle's probes are surely still outstanding
            // while the checks below run.
            "--probe-timeout=10s",
            "--latency-interval=100ms",
        ],
    );
    let body = wait_latency(&agent, |b| {
        all_probed(b, &["10.0.0.2", "fd00::2", NOBODY4, NOBODY6, NO_ROUTE])
    });
    assert_eq!(body["sockets"]["ipv4"], "datagram", "{body:#}");
    assert_eq!(body["sockets"]["ipv6"], "datagram", "{body:#}");
    assert_eq!(body["target_selection"], "configured", "{body:#}");
    assert_eq!(body["probes_per_cycle"], 3, "{body:#}");
    assert_reachable(&body, "10.0.0.2", 3);
    assert_reachable(&body, "fd00::2", 3);
    assert_unreachable(&body, NOBODY4, 3);
    assert_unreachable(&body, NOBODY6, 3);
    // A failed send is a lost probe with its error, not a failure.
    assert_unreachable(&body, NO_ROUTE, 3);
    let error = target(&body, NO_ROUTE).unwrap()["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("unreachable"), "{NO_ROUTE}: {body:#}");
    assert_eq!(body["collection"]["failures"], 0, "{body:#}");
    for addr in ["10.0.0.2", NOBODY6] {
        assert_eq!(target(&body, addr).unwrap()["source"], "configured");
    }

    // The second cycle started right after the first and its probes to the
    // silent addresses are outstanding: the API answers and the counters
    // move meanwhile.
    let cycle = body["collection"]["cycles"].clone();
    let before = rx_packets(&agent);
    let dst = SocketAddr::new(IpAddr::V4(Pair::IP4_A), 9);
    let src = SocketAddr::new(IpAddr::V4(Pair::IP4_B), 0);
    pair.b().ns().run(|| udp_send(src, dst, 100, 20));
    assert!(
        poll_until(WAIT, || rx_packets(&agent) >= before + 20),
        "the traffic counters did not advance while probes were outstanding"
    );
    for _ in 0..5 {
        assert_eq!(agent.get("/health")["status"], "ok");
        agent.get("/api/v1/flows");
    }
    // Unknown parameters are refused with the JSON error naming them.
    let reply = http_get_ok(a, "/api/v1/latency?window=5", &[("X-API-KEY", TEST_KEY)]);
    assert_eq!(reply.status, 400, "{reply:#?}");
    assert_eq!(reply.json["error"]["code"], "bad_request", "{reply:#?}");
    assert_eq!(reply.json["error"]["param"], "window", "{reply:#?}");
    let now = agent.get("/api/v1/latency");
    assert_eq!(
        now["collection"]["cycles"], cycle,
        "the latency cycle finished: the checks above did not overlap outstanding probes"
    );
}

/// Raw sockets (forced) measure the same: both families, 0% loss.
#[test]
fn raw_sockets_measure_both_families() {
    skip_unless_root!();
    let pair = Pair::new();
    let agent = Agent::start(
        pair.a().ns(),
        &[
            "--probe-target=10.0.0.2",
            "--probe-target=fd00::2",
            "--probe-socket=raw",
            "--probe-count=4",
            "--probe-spacing=20ms",
            "--probe-timeout=2s",
            "--latency-interval=200ms",
        ],
    );
    let body = wait_latency(&agent, |b| all_probed(b, &["10.0.0.2", "fd00::2"]));
    assert_eq!(body["sockets"]["ipv4"], "raw", "{body:#}");
    assert_eq!(body["sockets"]["ipv6"], "raw", "{body:#}");
    assert_reachable(&body, "10.0.0.2", 4);
    assert_reachable(&body, "fd00::2", 4);
}

/// The peer's IPv6 link-local address on `eth0`.
fn link_local(ns: &NetNs) -> String {
    let out = ns.ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address in {out:?}"))
        .to_owned()
}

/// Without --probe-target the default gateways of the watched interface are
/// probed, including ones added after the agent started, and an IPv6
/// link-local gateway with its scope.
#[test]
fn default_gateways_are_probed_once_they_appear() {
    skip_unless_root!();
    let pair = Pair::new();
    let a = pair.a().ns();
    let gw6 = link_local(pair.b().ns());
    let agent = Agent::start(
        a,
        &[
            "--probe-count=2",
            "--probe-spacing=20ms",
            "--probe-timeout=2s",
            "--latency-interval=200ms",
        ],
    );
    let body = wait_latency(&agent, |b| b["targets"].is_array());
    assert_eq!(body["target_selection"], "default gateways", "{body:#}");
    assert_eq!(
        body["targets"],
        Value::Array(vec![]),
        "no default route yet: {body:#}"
    );
    assert_eq!(
        body["sockets"]["ipv4"], "datagram",
        "auto prefers datagram: {body:#}"
    );

    a.ip(&["route", "add", "default", "via", "10.0.0.2"]);
    a.ip(&["-6", "route", "add", "default", "via", &gw6, "dev", "eth0"]);
    let body = wait_latency(&agent, |b| {
        all_probed(b, &["10.0.0.2", &gw6])
            && [&*gw6, "10.0.0.2"]
                .iter()
                .all(|g| target(b, g).is_some_and(|t| t["received"] == 2))
    });
    for g in ["10.0.0.2", &gw6] {
        let t = target(&body, g).unwrap();
        assert_eq!(t["source"], "default gateway of eth0", "{body:#}");
        assert_eq!(t["interface"], "eth0", "{body:#}");
        assert_reachable(&body, g, 2);
    }
}

/// With neither socket kind allowed (no CAP_NET_RAW, the group outside
/// ping_group_range) the agent runs and the latency report says why.
#[test]
fn no_icmp_socket_is_reported_unavailable_with_the_reason() {
    skip_unless_root!();
    assert!(
        Command::new("setpriv").arg("--version").output().is_ok(),
        "this test needs setpriv (util-linux) on the PATH"
    );
    let pair = Pair::new();
    let a = pair.a().ns();
    a.sysctl("net.ipv4.ping_group_range", "1 0");
    let state = tempfile::tempdir().expect("temp dir");
    let inner = agent_command(
        &state.path().to_owned(),
        &[
            "--probe-target=10.0.0.2",
            "--probe-target=fd00::2",
            "--latency-interval=200ms",
        ],
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(["--inh-caps=-net_raw", "--bounding-set=-net_raw", "--"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let mut child = a.spawn(&cmd);
    let get = |path: &str| http_get(a, path, &[("X-API-KEY", TEST_KEY)]);
    let mut last = String::new();
    // A few cycles, to check the problem is logged once, not each cycle.
    let ready = poll_until(WAIT, || match get("/api/v1/latency") {
        Ok(r) if r.status == 200 && r.json["collection"]["cycles"].as_u64() >= Some(3) => {
            last = r.text.clone();
            true
        }
        Ok(r) => {
            last = format!("{}: {}", r.status, r.text);
            false
        }
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(
        ready,
        "no latency reading ({last}); status {:?}; stderr:\n{}",
        child.try_status(),
        child.stderr_text()
    );
    let body: Value = serde_json::from_str(&last).expect("JSON");
    for family in ["ipv4", "ipv6"] {
        let reason = body["sockets"][family]["unavailable"]
            .as_str()
            .unwrap_or_else(|| panic!("{family} not unavailable: {body:#}"));
        assert!(
            reason.contains("ping_group_range") && reason.contains("CAP_NET_RAW"),
            "{family}: the reason names neither the sysctl nor the capability: {reason}"
        );
    }
    for addr in ["10.0.0.2", "fd00::2"] {
        let t = target(&body, addr).unwrap_or_else(|| panic!("no {addr}: {body:#}"));
        assert_eq!(t["sent"], 0, "{body:#}");
        assert!(t["loss_percent"]["unavailable"].is_string(), "{body:#}");
        let reason = t["rtt"]["unavailable"].as_str().unwrap_or_default();
        assert!(reason.contains("CAP_NET_RAW"), "{body:#}");
    }
    // The rest of the agent still works.
    let reply = get("/api/v1/interfaces").expect("interfaces");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(child.try_status().is_none(), "the agent exited");
    // Logged once, not every cycle.
    let stderr = child.stderr_text();
    assert_eq!(
        stderr.matches("no ICMP socket allowed").count(),
        2,
        "one line per family:\n{stderr}"
    );
}

/// Echo replies from a raw socket in `ns` (whose kernel ignores echo
/// requests), each sent `delay` after its request arrived, until `stop`.
fn delaying_responder(ns: &NetNs, delay: Duration, stop: &AtomicBool, ready: &AtomicBool) {
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1");
    ns.run(|| {
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::ICMPV4),
        )
        .expect("raw ICMP socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("SO_RCVTIMEO");
        ready.store(true, Ordering::SeqCst);
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        while !stop.load(Ordering::SeqCst) {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            // SAFETY: recv_from initialised the first `len` bytes.
            let packet: Vec<u8> = buf[..len]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let icmp = &packet[ihl..];
            if icmp.len() < 8 || icmp[0] != 8 {
                continue;
            }
            std::thread::sleep(delay);
            let mut reply = icmp.to_vec();
            reply[0] = 0;
            reply[2..4].copy_from_slice(&[0, 0]);
            let sum = internet_checksum(&reply);
            reply[2..4].copy_from_slice(&sum.to_be_bytes());
            sock.send_to(&reply, &from).expect("sending the reply");
        }
    });
}

/// A peer that answers 60 ms late: every RTT is at least that.
#[test]
fn delayed_replies_give_rtts_of_at_least_the_delay() {
    skip_unless_root!();
    let delay = Duration::from_millis(60);
    let pair = Pair::new();
    let stop = AtomicBool::new(false);
    let ready = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| delaying_responder(pair.b().ns(), delay, &stop, &ready));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert!(poll_until(WAIT, || ready.load(Ordering::SeqCst)));
            let agent = Agent::start(
                pair.a().ns(),
                &[
                    "--probe-target=10.0.0.2",
                    "--probe-count=3",
                    "--probe-spacing=100ms",
                    "--probe-timeout=2s",
                    "--latency-interval=200ms",
                ],
            );
            let body = wait_latency(&agent, |b| all_probed(b, &["10.0.0.2"]));
            assert_reachable(&body, "10.0.0.2", 3);
            let min = target(&body, "10.0.0.2").unwrap()["rtt"]["min_seconds"]
                .as_f64()
                .unwrap_or_default();
            assert!(
                min >= delay.as_secs_f64(),
                "min RTT {min} < {delay:?}: {body:#}"
            );
        }));
        stop.store(true, Ordering::SeqCst);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}
