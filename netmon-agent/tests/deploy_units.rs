//! The systemd units in `deploy/systemd`: `systemd-analyze verify` accepts
//! both, both carry the hardening the README promises, and the
//! capability-restricted one rates at exposure 2.0 or lower in
//! `systemd-analyze security --offline=yes`; so does the hub's unit, which
//! holds no capability. systemd does not run here; the
//! offline analysis needs only the unit file and the binary it starts.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

const PRIVILEGED: &str = "netmon-agent.service";
const RESTRICTED: &str = "netmon-agent-caps.service";
const HUB: &str = "netmon-hub.service";

/// Settings both units must have (the README's security model).
const REQUIRED: &[&str] = &[
    "Type=notify",
    "WatchdogSec=",
    "Restart=on-failure",
    "StateDirectory=netmon",
    "ConfigurationDirectory=netmon",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_NET_RAW",
];

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd")
}

/// A copy of `unit` in `dir` whose ExecStart is the binary cargo built (verify
/// checks that the program exists and is executable).
fn installed_copy(dir: &Path, unit: &str) -> PathBuf {
    let text = fs::read_to_string(unit_dir().join(unit)).unwrap();
    let exec = if unit == HUB {
        "ExecStart=/usr/bin/netmon-agent hub\n"
    } else {
        "ExecStart=/usr/bin/netmon-agent\n"
    };
    assert!(text.contains(exec), "{unit}: ExecStart is not {exec:?}");
    let text = text.replace(
        "ExecStart=/usr/bin/netmon-agent",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_netmon-agent")),
    );
    let path = dir.join(unit);
    fs::write(&path, text).unwrap();
    path
}

fn systemd_analyze(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}); install Debian's systemd package")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The "Overall exposure level for X: N" figure.
fn exposure(report: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    let after = line.rsplit_once(": ").unwrap().1;
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure line {line:?}"))
}

#[test]
fn both_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    for unit in [PRIVILEGED, RESTRICTED] {
        let path = installed_copy(dir.path(), unit);
        let (ok, stdout, stderr) = systemd_analyze(&["verify", path.to_str().unwrap()]);
        assert!(ok && stderr.trim().is_empty(), "{unit}:\n{stdout}{stderr}");
    }
}

#[test]
fn both_units_are_hardened() {
    for unit in [PRIVILEGED, RESTRICTED] {
        let text = fs::read_to_string(unit_dir().join(unit)).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for want in REQUIRED {
            assert!(
                lines.iter().any(|l| l.starts_with(want)),
                "{unit} lacks {want}"
            );
        }
    }
}

/// The history stamps samples with the wall clock and tells a jump from
/// downtime only while it runs: start on a synchronized clock.
#[test]
fn both_units_start_after_the_clock_is_synchronized() {
    for unit in [PRIVILEGED, RESTRICTED] {
        let text = fs::read_to_string(unit_dir().join(unit)).unwrap();
        assert!(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("After="))
                .any(|l| l.split_whitespace().any(|u| u == "time-sync.target")),
            "{unit} does not order after time-sync.target"
        );
    }
}

/// Both units raise the open-file limit well above what the agent's
/// default connection cap needs (the agent warns at start below it).
#[test]
fn both_units_set_an_open_file_limit_the_defaults_fit_in() {
    let need = netmon_agent::api::limits::fds_needed(&Default::default());
    for unit in [PRIVILEGED, RESTRICTED] {
        let text = fs::read_to_string(unit_dir().join(unit)).unwrap();
        let limit: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .unwrap_or_else(|| panic!("{unit} has no LimitNOFILE="))
            .parse()
            .unwrap_or_else(|e| panic!("{unit}: LimitNOFILE is not a number: {e}"));
        assert!(
            limit >= 4 * need,
            "{unit}: LimitNOFILE={limit}, the defaults need {need}"
        );
    }
}

#[test]
fn restricted_unit_runs_as_a_user_with_four_capabilities() {
    let text = fs::read_to_string(unit_dir().join(RESTRICTED)).unwrap();
    assert!(text.contains("\nUser=netmon\n"), "not a dedicated user");
    assert!(
        text.contains("\nAmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_NET_RAW\n"),
        "ambient capabilities differ from the documented four"
    );
}

#[test]
fn restricted_unit_exposure_is_at_most_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = installed_copy(dir.path(), RESTRICTED);
    let (_, stdout, stderr) =
        systemd_analyze(&["security", "--offline=yes", path.to_str().unwrap()]);
    let level = exposure(&stdout);
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{stdout}{stderr}");
}

#[test]
fn the_hub_unit_verifies_holds_no_capability_and_rates_at_most_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = installed_copy(dir.path(), HUB);
    let (ok, stdout, stderr) = systemd_analyze(&["verify", path.to_str().unwrap()]);
    assert!(ok && stderr.trim().is_empty(), "{HUB}:\n{stdout}{stderr}");
    let text = fs::read_to_string(unit_dir().join(HUB)).unwrap();
    for line in [
        "\nUser=netmon\n",
        "\nCapabilityBoundingSet=\n",
        "\nAmbientCapabilities=\n",
        "\nStateDirectory=netmon-hub\n",
        "\nNoNewPrivileges=yes\n",
        "\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
    ] {
        assert!(text.contains(line), "{HUB} lacks {line:?}");
    }
    let (_, stdout, stderr) =
        systemd_analyze(&["security", "--offline=yes", path.to_str().unwrap()]);
    let level = exposure(&stdout);
    eprintln!("{HUB}: exposure {level}");
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{stdout}{stderr}");
}

#[test]
fn exposure_line_is_parsed() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for a.service: 1.9 OK 🙂\n"),
        1.9
    );
}
