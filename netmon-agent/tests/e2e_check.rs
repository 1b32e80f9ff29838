//! `netmon-agent check`, the preflight, in a test namespace: it passes where
//! everything is in place (and leaves nothing attached), and each failure
//! is a FAIL row naming the problem with its fix, and a non-zero exit.

mod common;

use std::{net::TcpListener, process::Command, time::Duration};

use common::{
    agent::{LISTEN, agent_bin},
    netns::{NetNs, Pair},
};

/// Runs `check` with `args` in `ns` through `wrapper` (e.g. setpriv); the
/// exit code and stdout.
fn check(ns: &NetNs, wrapper: &[&str], args: &[&str]) -> (Option<i32>, String, String) {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(wrapper.first().copied().unwrap_or(agent_bin()));
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg(agent_bin());
    }
    cmd.arg("check")
        .args(["--state-dir", state.path().to_str().unwrap()])
        .args(["--listen", LISTEN])
        .args(args);
    let mut child = ns.spawn(&cmd);
    let status = child
        .wait_with_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("check did not finish:\n{}", child.stderr_text()));
    (status.code(), child.stdout_text(), child.stderr_text())
}

/// The table row for `check`, split into its result word and detail.
fn row<'a>(table: &'a str, check: &str) -> (&'a str, &'a str) {
    let line = table
        .lines()
        .find(|l| l.starts_with(check) && l[check.len()..].starts_with("  "))
        .unwrap_or_else(|| panic!("no row {check:?} in:\n{table}"));
    let rest = line[check.len()..].trim_start();
    rest.split_once("  ")
        .map_or((rest, ""), |(r, d)| (r, d.trim()))
}

#[test]
fn passes_and_leaves_nothing_attached() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.a().ns();
    let (code, out, err) = check(ns, &[], &["--iface", Pair::IFNAME]);
    assert_eq!(code, Some(0), "{out}{err}");
    for name in [
        "kernel",
        "btf",
        "capability CAP_BPF",
        "programs",
        "listen",
        "api key",
    ] {
        assert_eq!(row(&out, name).0, "pass", "{name}:\n{out}");
    }
    let (result, detail) = row(&out, "interface eth0");
    assert_eq!(result, "pass", "{out}");
    assert!(detail.contains("native XDP in"), "{detail}");
    assert!(out.contains("All checks passed."), "{out}");
    let link = ns.ip(&["-d", "link", "show", "dev", Pair::IFNAME]);
    assert!(
        !link.contains("prog/xdp"),
        "check left XDP attached:\n{link}"
    );
}

#[test]
fn failures_are_named_with_a_fix() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.a().ns();
    // Something else holds the API address.
    let _taken = ns.run(|| TcpListener::bind(LISTEN).expect("binding the API address"));
    let (code, out, err) = check(ns, &[], &["--iface", Pair::IFNAME, "--iface", "nope0"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(row(&out, "interface nope0"), ("FAIL", "no such interface"));
    let (result, detail) = row(&out, "listen");
    assert_eq!(result, "FAIL", "{out}");
    assert!(detail.contains(LISTEN), "{detail}");
    assert!(out.contains("fix: stop what holds the address"), "{out}");
    assert!(out.contains("2 check(s) failed."), "{out}");
}

#[test]
fn a_missing_capability_fails_by_name() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.a().ns();
    let wrapper = [
        "setpriv",
        "--inh-caps=-bpf,-sys_admin",
        "--bounding-set=-bpf,-sys_admin",
        "--",
    ];
    let (code, out, err) = check(ns, &wrapper, &["--iface", Pair::IFNAME]);
    assert_eq!(code, Some(1), "{out}{err}");
    let (result, detail) = row(&out, "capability CAP_BPF");
    assert_eq!(result, "FAIL", "{out}");
    assert!(detail.contains("missing"), "{detail}");
    assert!(out.contains("AmbientCapabilities=CAP_BPF"), "{out}");
    assert_eq!(row(&out, "capability CAP_NET_ADMIN").0, "pass", "{out}");
    assert_eq!(row(&out, "interface eth0").0, "warn", "{out}");
}
