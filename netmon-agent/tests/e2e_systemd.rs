//! The agent under systemd: `Type=notify` readiness after the programs are
//! attached, watchdog answers, `STOPPING=1`, and the journal and JSON log
//! formats. systemd itself does not run here, so the test plays the service
//! manager: it binds the notification socket and reads what the agent sends.

mod common;

use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use common::{
    agent::{TEST_KEY, agent_command, http_get},
    netns::Pair,
};

/// Reads notification datagrams until one contains `line` or `timeout`
/// passes; returns every message read, the matching one last.
fn read_until(sock: &UnixDatagram, line: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {line:?} from the agent within {timeout:?}; got {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("reading the notify socket: {e}"),
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let found = msg.lines().any(|l| l == line);
        seen.push(msg);
        if found {
            return seen;
        }
    }
}

/// Whether `line` holds an RFC 3339 date-time (`2026-11-23T12:00`).
fn has_timestamp(line: &str) -> bool {
    line.as_bytes().windows(11).any(|w| {
        w.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            _ => b.is_ascii_digit(),
        })
    })
}

#[test]
fn ready_after_attach_then_watchdog_then_stopping() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.a().ns();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();

    let mut cmd = agent_command(&dir.path().join("state"), &["--iface", Pair::IFNAME]);
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .env("NETMON_INTERVAL", "5s");
    let mut agent = ns.spawn(&cmd);

    let before = read_until(&sock, "READY=1", Duration::from_secs(30));
    assert!(
        before.iter().all(|m| !m.contains("WATCHDOG=1")),
        "watchdog answered before readiness: {before:?}"
    );
    // Ready means attached and listening.
    let link = ns.ip(&["-d", "link", "show", "dev", Pair::IFNAME]);
    assert!(
        link.contains("xdp"),
        "READY=1 before XDP was attached:\n{link}"
    );
    let health = http_get(ns, "/health", &[("X-API-KEY", TEST_KEY)]).unwrap();
    assert_eq!(health.status, 200, "{}", health.text);
    let ready = before.last().unwrap();
    assert!(
        ready.contains("STATUS=Watching 1 interface(s)"),
        "no status line with readiness: {ready:?}"
    );

    // A 400 ms watchdog is answered every 200 ms or sooner, although the
    // drain interval is 5 s.
    let start = Instant::now();
    for _ in 0..5 {
        read_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "five watchdog answers took longer than one drain interval"
    );

    let status = agent.terminate();
    assert!(status.success(), "{status}:\n{}", agent.stderr_text());
    read_until(&sock, "STOPPING=1", Duration::from_secs(5));
}

#[test]
fn journal_format_has_priorities_and_no_timestamps() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.a().ns();
    let dir = tempfile::tempdir().unwrap();
    let cmd = agent_command(
        &dir.path().join("state"),
        &["--iface", "no-such-if", "--log-format", "journal"],
    );
    let mut agent = ns.spawn(&cmd);
    let status = agent.wait_with_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(status.code(), Some(5));
    let text = agent.stderr_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let prio = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(p, _)| p);
        assert!(
            matches!(prio, Some("3" | "4" | "6" | "7")),
            "line without a syslog priority: {line:?}"
        );
        assert!(
            !has_timestamp(line),
            "timestamp in a journal line: {line:?}"
        );
        assert!(!line.contains('\x1b'), "colour codes in {line:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>") && l.contains("unknown interface no-such-if")),
        "the error is not at priority 3:\n{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<6>")),
        "no info line:\n{text}"
    );
}

#[test]
fn timestamps_are_recognised() {
    assert!(has_timestamp("2026-11-23T12:21:25.378447Z  INFO x"));
    assert!(!has_timestamp("<6>Loaded eBPF programs. ncpus=2"));
}

#[test]
fn json_format_is_one_object_a_line() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.a().ns();
    let dir = tempfile::tempdir().unwrap();
    let cmd = agent_command(
        &dir.path().join("state"),
        &["--iface", "no-such-if", "--log-format", "json"],
    );
    let mut agent = ns.spawn(&cmd);
    let status = agent.wait_with_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(status.code(), Some(5));
    let text = agent.stderr_text();
    let mut levels = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v["timestamp"].is_string(), "{line}");
        levels.push(v["level"].as_str().unwrap().to_owned());
    }
    assert!(levels.iter().any(|l| l == "ERROR"), "{text}");
}
