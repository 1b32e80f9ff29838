//! Capabilities: the agent drops what it no longer needs once attached, and
//! runs as an unprivileged user holding only CAP_BPF, CAP_NET_ADMIN,
//! CAP_PERFMON and CAP_NET_RAW (the capability-restricted unit's set),
//! counting exactly as root does. (`cargo xtask test` also runs all of
//! `e2e_traffic` that way.)

mod common;

use std::{fs, net::SocketAddr, time::Duration};

use common::{
    agent::{Agent, UNPRIVILEGED_CAPS, agent_command, unprivileged},
    netns::Pair,
    traffic::{udp_send, udp_sink},
};

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_BPF: u32 = 39;

/// `(CapPrm, CapEff, CapBnd, CapAmb)` of every thread of `pid`.
fn thread_caps(pid: u32) -> Vec<(String, [u64; 4])> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let status = fs::read_to_string(task.join("status")).unwrap();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
        };
        let comm = fs::read_to_string(task.join("comm")).unwrap();
        out.push((
            comm.trim().to_owned(),
            [
                field("CapPrm:"),
                field("CapEff:"),
                field("CapBnd:"),
                field("CapAmb:"),
            ],
        ));
    }
    out
}

fn bits(list: &[u32]) -> u64 {
    list.iter().fold(0, |acc, b| acc | (1 << b))
}

fn assert_every_thread_holds_only(pid: u32, allowed: u64) {
    let threads = thread_caps(pid);
    assert!(
        threads.len() > 3,
        "expected the agent's threads: {threads:?}"
    );
    for (name, [prm, eff, bnd, amb]) in threads {
        for (set, value) in [("permitted", prm), ("effective", eff), ("bounding", bnd)] {
            assert_eq!(
                value & !allowed,
                0,
                "thread {name}: {set} set {value:x} holds more than {allowed:x}"
            );
        }
        assert_eq!(amb, 0, "thread {name}: ambient set {amb:x}");
        assert_eq!(
            eff & bits(&[CAP_BPF, CAP_NET_ADMIN]),
            bits(&[CAP_BPF, CAP_NET_ADMIN])
        );
    }
}

#[test]
fn root_keeps_only_what_running_needs_in_every_thread() {
    skip_unless_root!();
    let pair = Pair::new();
    let agent = Agent::start(pair.a().ns(), &["--iface", Pair::IFNAME]);
    assert_every_thread_holds_only(
        agent.pid(),
        bits(&[
            CAP_BPF,
            CAP_NET_ADMIN,
            CAP_NET_RAW,
            CAP_DAC_READ_SEARCH,
            CAP_SYS_PTRACE,
        ]),
    );
    assert!(
        agent
            .stderr()
            .contains("Dropped the capabilities no longer needed."),
        "{}",
        agent.stderr()
    );
    drop(agent);
    // Without discovery and latency, CAP_NET_RAW goes too; without
    // security, CAP_SYS_PTRACE.
    let agent = Agent::start(
        pair.a().ns(),
        &[
            "--iface",
            Pair::IFNAME,
            "--disable",
            "discovery,latency,security",
        ],
    );
    assert_every_thread_holds_only(agent.pid(), bits(&[CAP_BPF, CAP_NET_ADMIN]));
}

#[test]
fn an_unprivileged_user_with_four_capabilities_counts_exactly() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let state = tempfile::tempdir().unwrap();
    let cmd = unprivileged(
        UNPRIVILEGED_CAPS,
        &agent_command(&state.path().to_owned(), &["--iface", Pair::IFNAME]),
    );
    let mut child = b.ns().spawn(&cmd);
    let sink = b.ns().run(|| udp_sink(SocketAddr::new(b.ip4().into(), 0)));
    // Wait for the API before sending.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            child.try_status().is_none(),
            "exited:\n{}",
            child.stderr_text()
        );
        if common::agent::http_get(b.ns(), "/health", &[])
            .is_ok_and(|r| r.status == 200 && r.json["status"] == "ok")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            child.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534")),
        "{status}"
    );

    a.ns().run(|| {
        udp_send(
            SocketAddr::new(a.ip4().into(), 0),
            sink.local_addr(),
            100,
            500,
        )
    });
    assert!(sink.wait_for(500, Duration::from_secs(10)));
    // 100 bytes of payload + 8 UDP + 20 IPv4 + 14 Ethernet.
    let want = (500u64 * 142, 500u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = common::agent::http_get(
            b.ns(),
            "/api/v1/flows?sort=bytes",
            &[("X-API-KEY", common::agent::TEST_KEY)],
        )
        .unwrap();
        let got = r.json["flows"].as_array().and_then(|f| {
            f.iter()
                .find(|f| f["protocol"] == "udp" && f["direction"] == "ingress")
                .map(|f| {
                    (
                        f["bytes"].as_u64().unwrap_or(0),
                        f["packets"].as_u64().unwrap_or(0),
                    )
                })
        });
        if got == Some(want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flow {got:?}, want {want:?}:\n{}",
            r.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit = child.terminate();
    assert!(exit.success(), "{exit}:\n{}", child.stderr_text());
}

#[test]
fn an_unprivileged_user_missing_one_capability_is_told_which() {
    skip_unless_root!();
    let pair = Pair::new();
    let state = tempfile::tempdir().unwrap();
    let cmd = unprivileged(
        &["bpf", "net_admin", "net_raw"],
        &agent_command(&state.path().to_owned(), &["--iface", Pair::IFNAME]),
    );
    let mut child = pair.a().ns().spawn(&cmd);
    let status = child.wait_with_timeout(Duration::from_secs(30)).unwrap();
    let stderr = child.stderr_text();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("missing capability CAP_PERFMON"),
        "{stderr}"
    );
}
