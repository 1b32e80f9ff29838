//! The security collector's host checks in the running agent: a socket
//! that starts listening in the agent's namespace after it started is a
//! `new_listener` finding, listed once while it listens and gone when it
//! closes; failed SSH logins appended to an auth.log are an
//! `ssh_brute_force` finding.
//!
//! Privileged: run as root (`cargo xtask test` does).

mod common;

use std::{
    io::Write,
    net::{TcpListener, UdpSocket},
    time::{Duration, SystemTime},
};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// `GET /api/v1/security` until `done(body)`.
fn wait_security(agent: &Agent<'_>, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let last = agent.try_request("/api/v1/security", &[("X-API-KEY", TEST_KEY)]);
        if let Ok((200, body)) = &last
            && done(body)
        {
            return body.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET /api/v1/security: {last:?}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn of_kind<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["findings"]
        .as_array()
        .map(|l| l.iter().filter(|f| f["kind"] == kind).collect())
        .unwrap_or_default()
}

#[test]
fn a_socket_listening_after_start_is_a_new_listener_once_until_it_closes() {
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b();
    let agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--interval=200ms",
            "--security-interval=200ms",
        ],
    );
    // The baseline (the agent's own API socket among it) is taken.
    let r = wait_security(&agent, |r| r["listeners"].as_u64() > Some(0));
    assert!(of_kind(&r, "new_listener").is_empty(), "{r:#}");

    let (tcp, udp) = b.ns().run(|| {
        (
            TcpListener::bind("0.0.0.0:0").unwrap(),
            UdpSocket::bind("[::]:0").unwrap(),
        )
    });
    let (tp, up) = (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    let both = |r: &Value| {
        let l = of_kind(r, "new_listener");
        l.iter().any(|f| f["port"] == tp) && l.iter().any(|f| f["port"] == up)
    };
    let r = wait_security(&agent, both);
    let first = r.clone();
    let t: Vec<&Value> = of_kind(&r, "new_listener")
        .into_iter()
        .filter(|f| f["port"] == tp)
        .collect();
    assert_eq!(t.len(), 1, "{r:#}");
    assert_eq!(t[0]["protocol"], "tcp");
    assert_eq!(t[0]["address"], "0.0.0.0");
    assert_eq!(t[0]["severity"], "warning");
    assert_eq!(t[0]["pid"], std::process::id(), "{:#}", t[0]);
    let u = of_kind(&r, "new_listener")
        .into_iter()
        .find(|f| f["port"] == up)
        .unwrap();
    assert_eq!(
        (&u["protocol"], &u["address"]),
        (&"udp".into(), &"::".into())
    );

    // Cycles later: still listed once, with its first_seen.
    std::thread::sleep(Duration::from_millis(600));
    let r = wait_security(&agent, both);
    let again: Vec<&Value> = of_kind(&r, "new_listener")
        .into_iter()
        .filter(|f| f["port"] == tp)
        .collect();
    assert_eq!(again.len(), 1, "{r:#}");
    let was = of_kind(&first, "new_listener")
        .into_iter()
        .find(|f| f["port"] == tp)
        .unwrap();
    assert_eq!(again[0]["first_seen"], was["first_seen"]);
    assert_ne!(again[0]["last_seen"], was["last_seen"]);
    let m = http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    assert!(
        m.lines()
            .any(|l| l == "netmon_security_findings{kind=\"new_listener\"} 2"),
        "{m}"
    );

    drop((tcp, udp));
    wait_security(&agent, |r| of_kind(r, "new_listener").is_empty());
}

#[test]
fn failed_ssh_logins_appended_to_the_auth_log_are_a_brute_force_finding() {
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let log_arg = format!("--security-auth-log={}", log.display());
    let agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--interval=200ms",
            "--security-interval=200ms",
            "--security-ssh-threshold=3",
            &log_arg,
        ],
    );
    let append = |lines: &[String]| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    };
    let failed = |user: &str, port: u16| {
        format!(
            "{} gw sshd[77]: Failed password for {user} from 203.0.113.77 port {port} ssh2",
            humantime::format_rfc3339_micros(SystemTime::now())
        )
    };
    let read = log.display().to_string();
    wait_security(&agent, |r| r["ssh_read"] == read.as_str());
    // Two: below the threshold; an odd line and a login that worked.
    append(&[
        failed("root", 40000),
        failed("admin", 40001),
        format!(
            "{} gw sshd[78]: Failed password for root from 203.0.113",
            humantime::format_rfc3339_micros(SystemTime::now())
        ),
        format!(
            "{} gw sshd[79]: Accepted publickey for alice from 192.0.2.1 port 5 ssh2",
            humantime::format_rfc3339_micros(SystemTime::now())
        ),
    ]);
    let r = wait_security(&agent, |r| r["ssh_sources"] == 1 && r["ssh_odd_lines"] == 1);
    assert!(of_kind(&r, "ssh_brute_force").is_empty(), "{r:#}");
    append(&[failed("oracle", 40002)]);
    let r = wait_security(&agent, |r| !of_kind(r, "ssh_brute_force").is_empty());
    let f = of_kind(&r, "ssh_brute_force");
    assert_eq!(f.len(), 1, "{r:#}");
    assert_eq!(f[0]["source"], "203.0.113.77");
    assert_eq!(f[0]["count"], 3);
    assert_eq!(f[0]["window_seconds"], 600);
    assert_eq!(f[0]["severity"], "critical");
    assert_eq!(
        f[0]["users"],
        serde_json::json!(["admin", "oracle", "root"])
    );
    let first_seen = f[0]["first_seen"].clone();
    // More attempts: the same finding, counted on.
    append(&[failed("root", 40003)]);
    let r = wait_security(&agent, |r| {
        of_kind(r, "ssh_brute_force")
            .first()
            .is_some_and(|f| f["count"] == 4)
    });
    assert_eq!(of_kind(&r, "ssh_brute_force")[0]["first_seen"], first_seen);
    let m = http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    for want in [
        "netmon_security_findings{kind=\"ssh_brute_force\"} 1",
        "netmon_security_ssh_odd_lines_total 1",
        "netmon_security_ssh_sources_evicted_total 0",
    ] {
        assert!(m.lines().any(|l| l == want), "{want}\n{m}");
    }
    // The odd line was logged once, however many cycles ran since.
    let logged = agent
        .stderr()
        .matches("sshd failure lines not understood")
        .count();
    assert_eq!(logged, 1, "{}", agent.stderr());
}

/// As the capability-restricted unit runs it (`nobody`, four
/// capabilities): sock_diag still lists the sockets, a root process's
/// listener has its uid but no pid (its `/proc/<pid>/fd` is not
/// readable), and a root-only auth.log is an `ssh_error`, logged once.
#[test]
fn unprivileged_the_listener_has_its_uid_and_a_root_only_auth_log_is_an_error() {
    use std::os::unix::fs::PermissionsExt;
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).unwrap();
    let log_arg = format!("--security-auth-log={}", log.display());
    let cmd = unprivileged(
        UNPRIVILEGED_CAPS,
        &agent_command(
            &Agent::state_dir_in(b.ns()),
            &[
                "--iface=eth0",
                "--disable=discovery,latency",
                "--security-interval=200ms",
                &log_arg,
            ],
        ),
    );
    let agent = Agent::start_command(b.ns(), &cmd);
    let r = wait_security(&agent, |r| r["listeners"].as_u64() > Some(0));
    let err = r["ssh_error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with(&log.display().to_string()) && err.contains("Permission denied"),
        "{r:#}"
    );
    let tcp = b.ns().run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let port = tcp.local_addr().unwrap().port();
    let r = wait_security(&agent, |r| {
        of_kind(r, "new_listener").iter().any(|f| f["port"] == port)
    });
    let f = of_kind(&r, "new_listener")
        .into_iter()
        .find(|f| f["port"] == port)
        .unwrap();
    assert_eq!(f["uid"], 0, "{f:#}");
    assert!(f.get("pid").is_none(), "{f:#}");
    let needle = format!("{}: Permission denied", log.display());
    let logged = agent.stderr().matches(&needle).count();
    assert_eq!(logged, 1, "{}", agent.stderr());
}
