use std::{fs, io::Write, net::Ipv4Addr};

use super::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/security/auth.log"
);

/// 2026-12-07T10:09:00Z, after every line of the fixture.
fn now() -> SystemTime {
    rfc3339("2026-12-07T10:09:00Z").unwrap()
}

fn found(ssh: &mut Ssh, at: SystemTime) -> Vec<Found> {
    let mut out = Vec::new();
    ssh.scan(at, &mut out).unwrap();
    out
}

fn copy_fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.log");
    fs::copy(FIXTURE, &path).unwrap();
    (dir, path)
}

fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn sources_at_or_above_the_threshold_within_the_window_are_found() {
    let (_dir, path) = copy_fixture();
    let mut ssh = Ssh::new(&path, 5, Duration::from_secs(600), 100);
    let out = found(&mut ssh, now());
    let got: Vec<(&str, u64)> = out
        .iter()
        .map(|f| (&f.key[..], f.detail.count.unwrap()))
        .collect();
    // 198.51.100.99: six failures an hour ago, out of the window;
    // 198.51.100.7: three (a password twice, a key-only connection that
    // gave up): below; 192.0.2.1 logged in.
    assert_eq!(got, [("203.0.113.10", 7), ("2001:db8::5", 5)], "{out:#?}");
    let f = &out[0];
    assert_eq!(f.kind, Kind::SshBruteForce);
    assert_eq!(
        f.evidence,
        "7 failed SSH logins from 203.0.113.10 within 10m (threshold 5); users tried: admin, root"
    );
    assert_eq!(
        f.detail.source,
        Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)))
    );
    assert_eq!(f.detail.window_seconds, Some(600));
    assert_eq!(
        f.detail.first_attempt.as_deref(),
        Some("2026-12-07T10:01:00.000Z")
    );
    assert_eq!(
        f.detail.last_attempt.as_deref(),
        Some("2026-12-07T10:05:05.000Z")
    );
    assert_eq!(
        out[1].detail.users.as_deref(),
        Some(&["git", "oracle", "root", "test"].map(String::from)[..])
    );
    // Two sshd failure lines that do not parse; the rest are other
    // programs' lines, other sshd lines and garbage, not looked at.
    assert_eq!(ssh.brute.counts.odd_lines, 2);
    assert_eq!(
        ssh.brute.counts.odd_example.as_deref(),
        Some(
            "2026-12-07T10:05:00.000000+00:00 gw sshd[1040]: Failed password for root from 203.0.113"
        )
    );
    assert_eq!(ssh.brute.counts.sources, 3);
}

#[test]
fn the_log_is_read_incrementally_and_a_line_waits_for_its_newline() {
    let (_dir, path) = copy_fixture();
    let mut ssh = Ssh::new(&path, 5, Duration::from_secs(600), 100);
    found(&mut ssh, now());
    // The same lines are not counted twice.
    assert_eq!(found(&mut ssh, now())[0].detail.count, Some(7));
    // The fixture's last line ends now: port 51003, one more attempt.
    append(&path, "03 ssh2\n");
    assert_eq!(found(&mut ssh, now())[0].detail.count, Some(8));
    // Below the threshold once the window has passed; forgotten.
    let later = now() + Duration::from_secs(600);
    assert!(found(&mut ssh, later).is_empty());
    assert_eq!(ssh.brute.counts.sources, 0);
}

#[test]
fn a_rotated_log_is_read_to_its_end_then_the_new_one_and_a_truncated_one_again() {
    let (dir, path) = copy_fixture();
    let mut ssh = Ssh::new(&path, 5, Duration::from_secs(600), 100);
    found(&mut ssh, now());
    // logrotate: rename, the writer's last line lands in the old file,
    // a new file at the path.
    let old = dir.path().join("auth.log.1");
    fs::rename(&path, &old).unwrap();
    append(&old, "03 ssh2\n");
    let line = |port: u16| {
        format!(
            "2026-12-07T10:06:00Z gw sshd[7]: Failed password for root from 203.0.113.10 port {port} ssh2\n"
        )
    };
    fs::write(&path, line(60000)).unwrap();
    assert_eq!(found(&mut ssh, now())[0].detail.count, Some(9));
    // copytruncate: the file is emptied in place and written again.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    assert_eq!(found(&mut ssh, now())[0].detail.count, Some(9));
    append(&path, &line(60001));
    assert_eq!(found(&mut ssh, now())[0].detail.count, Some(10));
}

#[test]
fn sources_are_bounded_and_the_oldest_evicted() {
    let mut b = Brute::new(1, Duration::from_secs(600), 2);
    let lines: Vec<String> = (1..=4)
        .map(|i| {
            format!("2026-12-07T10:0{i}:00Z gw sshd[7]: Invalid user u from 10.0.0.{i} port 1")
        })
        .collect();
    b.lines(&lines, now());
    let mut out = Vec::new();
    b.judge(now(), &mut out);
    let keys: Vec<&str> = out.iter().map(|f| &f.key[..]).collect();
    assert_eq!(keys, ["10.0.0.3", "10.0.0.4"]);
    assert_eq!(b.counts.evicted, 2);
}

#[test]
fn attempts_and_users_per_source_are_bounded() {
    let mut b = Brute::new(5, Duration::from_secs(600), 10);
    let lines: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "2026-12-07T10:00:{:02}Z gw sshd[7]: Invalid user u{i} from 10.0.0.1 port {i}",
                i % 60
            )
        })
        .collect();
    b.lines(&lines, now());
    let mut out = Vec::new();
    b.judge(now(), &mut out);
    assert_eq!(out[0].detail.count, Some(ATTEMPTS_KEPT as u64));
    assert_eq!(out[0].detail.users.as_ref().unwrap().len(), USERS_KEPT);
    assert!(
        out[0].evidence.starts_with("at least 64 failed"),
        "{}",
        out[0].evidence
    );
    assert!(
        out[0].evidence.ends_with(" and 92 more"),
        "{}",
        out[0].evidence
    );
}

#[test]
fn timestamps_of_auth_log_and_the_journal_are_read() {
    let t = |s: &str| match parse_line(s, now()) {
        Line::Attempt(a) => a.time,
        other => panic!("{other:?}"),
    };
    let msg = "sshd[1]: Invalid user a from 10.0.0.1 port 2";
    let at = rfc3339("2026-12-07T10:00:00Z").unwrap();
    assert_eq!(t(&format!("2026-12-07T11:00:00.000000+01:00 gw {msg}")), at);
    assert_eq!(t(&format!("2026-12-07T09:30:00-00:30 gw {msg}")), at);
    let unix = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(t(&format!("{unix}.000000 gw {msg}")), at);
    // Traditional syslog: local time, this year or, ahead of now, last.
    assert_eq!(
        t(&format!("Dec  7 10:00:00 gw {msg}")),
        local(2026, 11, 7, 10, 0, 0).unwrap()
    );
    assert_eq!(
        t(&format!("Dec 31 10:00:00 gw {msg}")),
        local(2025, 11, 31, 10, 0, 0).unwrap()
    );
    assert_eq!(
        parse_line(&format!("Dec 99 10:00 gw {msg}"), now()),
        Line::Odd
    );
    assert_eq!(rfc3339("2026-13-01T00:00:00Z"), None);
    assert_eq!(civil_year(0), 1970);
    assert_eq!(civil_year(1_796_601_540), 2026);
}

#[test]
fn no_file_reads_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut ssh = Ssh::new(&dir.path().join("none"), 5, Duration::from_secs(600), 100);
    let mut out = Vec::new();
    // Either journalctl answers (from the journal) or says why not: never
    // a finding from nothing, never a panic.
    match ssh.scan(now(), &mut out) {
        Ok(from) => assert_eq!(from, "journal"),
        Err(e) => assert!(e.starts_with("journalctl"), "{e}"),
    }
}

#[test]
fn an_unreadable_file_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut ssh = Ssh::new(dir.path(), 5, Duration::from_secs(600), 100);
    let e = ssh.scan(now(), &mut Vec::new()).unwrap_err();
    assert!(e.starts_with(&dir.path().display().to_string()), "{e}");
}

#[test]
fn the_collector_reports_ssh_findings_and_counts_odd_lines() {
    use super::super::{Options, Security, Severity};
    let (dir, path) = copy_fixture();
    let opts = Options {
        security_interval: Duration::from_secs(10),
        security_proc: dir.path().to_path_buf(),
        security_max_findings: 100,
        security_max_listeners: 100_000,
        security_auth_log: path.clone(),
        security_ssh_threshold: 5,
        security_ssh_window: Duration::from_secs(600),
        security_ssh_max_sources: 10,
        security_arp_window: Duration::from_secs(900),
        security_garp_rate: 1.0,
    };
    let mut s = Security::new(&opts);
    let r = s.scan(now());
    let ssh: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == Kind::SshBruteForce)
        .collect();
    assert_eq!(ssh.len(), 2);
    assert_eq!(ssh[0].severity, Severity::Critical);
    assert_eq!(r.ssh_read.as_deref(), Some(&path.display().to_string()[..]));
    assert_eq!((r.ssh_sources, r.ssh_odd_lines, r.ssh_error), (3, 2, None));
    // Sorted by key (the address's text).
    let json = serde_json::to_value(ssh[1]).unwrap();
    assert_eq!(json["source"], "203.0.113.10");
    assert_eq!(json["users"], serde_json::json!(["admin", "root"]));
    // The next cycle: the same findings, first seen the first time.
    let r = s.scan(now() + Duration::from_secs(10));
    let f = r
        .findings
        .iter()
        .find(|f| f.kind == Kind::SshBruteForce)
        .unwrap();
    assert_eq!(f.first_seen, now());
    assert_eq!(r.ssh_odd_lines, 2);
}

#[test]
fn journalctl_finding_nothing_is_no_failure_and_no_journal_is_one() {
    // systemd 252: exit 1, `-- No entries --` on stdout.
    assert_eq!(journal_failed(false, "-- No entries --\n", ""), None);
    assert_eq!(
        journal_failed(
            false,
            "-- No entries --\n",
            "No journal files were found.\n"
        ),
        Some("No journal files were found.".into())
    );
    assert_eq!(
        journal_failed(
            true,
            "1 gw sshd[1]: x\n",
            "Hint: You are currently not seeing messages from other users and the system.\n"
        ),
        None
    );
    assert_eq!(
        journal_failed(false, "", "Failed to add match 'x': Invalid argument\n"),
        Some("Failed to add match 'x': Invalid argument".into())
    );
    assert_eq!(journal_failed(false, "", ""), Some("failed".into()));
    assert_eq!(cut("aé", 2), "a");
    assert_eq!(cut("abc", 9), "abc");
}

proptest::proptest! {
    /// Any line, sshd's or not, parses to something: never a panic.
    #[test]
    fn no_line_panics(
        head in "(|[0-9]{1,25}(\\.[0-9]{0,9})?|[0-9T:.+Z-]{0,40}|(Jan|Dec) [0-9]{1,6} [0-9:]{0,12}) gw ",
        tag in "(sshd\\[1\\]: |sshd-session\\[2\\]: |sshd: |x: )",
        msg in "(Failed |Invalid user |Connection closed by invalid user |error: maximum authentication attempts exceeded for )?\\PC{0,60}( from | port | \\[preauth\\])?\\PC{0,20}",
    ) {
        let line = format!("{head}{tag}{msg}");
        let _ = parse_line(&line, now());
        let mut b = Brute::new(1, Duration::from_secs(600), 4);
        b.lines(&[line], now());
        b.judge(now(), &mut Vec::new());
    }
}

#[test]
fn an_sshd_tag_inside_another_program_s_message_is_not_sshd() {
    let forged = "2026-12-07T10:00:00Z gw sudo: alice : COMMAND=/bin/echo x sshd[1]: Failed password for root from 10.9.9.9 port 1 ssh2";
    assert_eq!(parse_line(forged, now()), Line::Other);
    let real = "Dec  7 10:00:00 gw sshd[1]: Failed password for root from 10.9.9.9 port 1 ssh2";
    assert!(matches!(parse_line(real, now()), Line::Attempt(_)));
    // A user name holding " from IP port N": the last one is sshd's.
    let named =
        "2026-12-07T10:00:00Z gw sshd[1]: Invalid user x from 10.1.1.1 port 9 from 10.2.2.2 port 7";
    let Line::Attempt(a) = parse_line(named, now()) else {
        panic!()
    };
    assert_eq!((a.source.to_string(), a.port), ("10.2.2.2".into(), 7));
}
