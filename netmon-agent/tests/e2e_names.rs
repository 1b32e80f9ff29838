//! End-to-end test of hostnames: reverse DNS through the real system
//! resolver (`getnameinfo`: nsswitch, `/etc/hosts`, a real DNS server over
//! UDP), its caches, and lease files winning over DNS, with no network.
//!
//! Privileged: the test re-runs itself in a child process under
//! `unshare --mount --propagation private --net`. The child refuses to go on
//! unless its mount and network namespaces differ from init's, brings up its
//! own loopback, runs a tiny DNS server on 127.0.0.1:53 and bind-mounts its
//! own `/etc/hosts`, `/etc/resolv.conf` and `/etc/nsswitch.conf`; those
//! mounts exist only in the child's namespace and vanish with it, so the
//! machine's files are never touched, even when the test fails.

mod common;

use std::{
    collections::HashMap,
    ffi::CString,
    fs,
    net::{IpAddr, UdpSocket},
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use common::*;
use netmon_agent::collect::names::{Hostnames, Options};

/// Set in the child's environment: run the body instead of spawning.
const CHILD: &str = "NETMON_E2E_NAMES_CHILD";
/// The parent's mount and network namespaces, which the child must not be
/// in.
const PARENT_NS: &str = "NETMON_E2E_NAMES_PARENT_NS";
/// Printed by the child once every check passed.
const PASSED: &str = "e2e_names child: all checks passed";
/// How long an answer may take to arrive in the cache.
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn reverse_dns_resolves_caches_and_yields_to_leases() {
    skip_unless_root!();
    if std::env::var_os(CHILD).is_some() {
        return child(reverse_dns_body);
    }
    spawn_child("reverse_dns_resolves_caches_and_yields_to_leases");
}

#[test]
fn reverse_dns_answers_expire_and_are_renewed() {
    skip_unless_root!();
    if std::env::var_os(CHILD).is_some() {
        return child(expiry_body);
    }
    spawn_child("reverse_dns_answers_expire_and_are_renewed");
}

/// Runs this test binary's `test` in private mount and network namespaces
/// and checks that it passed there.
fn spawn_child(test: &str) {
    require_root();
    let before = fs::read("/etc/hosts").ok();
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--net", "--"])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env(PARENT_NS, namespaces())
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(PASSED),
        "the child failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert_eq!(
        fs::read("/etc/hosts").ok(),
        before,
        "the machine's /etc/hosts changed"
    );
}

/// This process's mount and network namespaces, e.g.
/// `mnt:[4026531832] net:[4026531840]`.
fn namespaces() -> String {
    ["mnt", "net"]
        .map(|kind| {
            let p = format!("/proc/self/ns/{kind}");
            let link = fs::read_link(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
            link.display().to_string()
        })
        .join(" ")
}

fn child(body: fn(&Dns)) {
    let parent = std::env::var(PARENT_NS).expect("the parent's namespaces");
    let mine = namespaces();
    for (p, m) in parent.split(' ').zip(mine.split(' ')) {
        assert_ne!(
            p, m,
            "not in a private namespace: refusing to bind-mount over /etc"
        );
    }
    // No mount here may propagate back to the parent's namespace.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    assert!(
        !mountinfo.contains(" shared:"),
        "a mount still propagates: refusing to bind-mount over /etc:\n{mountinfo}"
    );
    let ip = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("running ip");
    assert!(ip.success(), "ip link set lo up: {ip}");
    let dns = Dns::start();

    let dir = tempfile::tempdir().expect("a temp dir");
    for (file, text) in [
        ("hosts", "127.0.0.1 localhost\n10.9.8.7 printer.test\n"),
        (
            "resolv.conf",
            "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n",
        ),
        ("nsswitch.conf", "hosts: files dns\n"),
    ] {
        let src = dir.path().join(file);
        fs::write(&src, text).expect("writing a temp file");
        bind_mount(&src, &Path::new("/etc").join(file));
    }
    body(&dns);
    println!("{PASSED}");
}

fn bind_mount(src: &Path, target: &Path) {
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).expect("a path without NUL");
    let (s, t) = (c(src), c(target));
    // SAFETY: valid NUL-terminated paths; a bind mount takes no fs type or
    // data.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "bind-mounting {} over {}: {}",
        src.display(),
        target.display(),
        std::io::Error::last_os_error()
    );
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("an IP"))
}

/// Looks `mac`/`ip` up until it has a name, or panics.
fn wait_name(h: &mut Hostnames, mac: [u8; 6], ip: Option<IpAddr>) -> String {
    let mut name = None;
    poll_until(WAIT, || {
        name = h.lookup(mac, ip);
        name.is_some()
    });
    name.unwrap_or_else(|| panic!("no name for {ip:?} after {WAIT:?}: {:?}", h.stats()))
}

/// Looks up until no reverse-DNS lookup is pending, or panics.
fn wait_settled(h: &mut Hostnames) {
    assert!(
        poll_until(WAIT, || h
            .stats()
            .reverse_dns
            .is_some_and(|s| s.pending == 0)),
        "lookups still pending after {WAIT:?}: {:?}",
        h.stats()
    );
}

fn reverse_dns_body(dns: &Dns) {
    let leases = tempfile::NamedTempFile::new().expect("a temp file");
    // The lease names 10.9.8.5, which DNS names differently.
    fs::write(leases.path(), "0 02:00:00:00:00:05 10.9.8.5 leased-box *\n").expect("writing");
    let mut h = Hostnames::new(&Options {
        names_lease_files: vec![leases.path().to_path_buf()],
        ..Options::default()
    });
    h.refresh();

    // The lease wins, at once, and DNS is not asked.
    assert_eq!(
        h.lookup(mac(5), ip("10.9.8.5")).as_deref(),
        Some("leased-box")
    );

    // First lookups return at once, unanswered; answers come later:
    // /etc/hosts for .7, the DNS server for .6, no name at all for .9.
    assert_eq!(h.lookup(mac(7), ip("10.9.8.7")), None);
    assert_eq!(h.lookup(mac(6), ip("10.9.8.6")), None);
    assert_eq!(h.lookup(mac(9), ip("10.9.8.9")), None);
    assert_eq!(wait_name(&mut h, mac(7), ip("10.9.8.7")), "printer.test");
    assert_eq!(wait_name(&mut h, mac(6), ip("10.9.8.6")), "scanner.test");
    wait_settled(&mut h);
    assert_eq!(h.lookup(mac(9), ip("10.9.8.9")), None);
    let stats = h.stats().reverse_dns.expect("reverse DNS is on");
    assert_eq!(
        (stats.names, stats.no_name, stats.pending),
        (2, 1, 0),
        "{stats:?}"
    );

    // Cached, positive and negative: asking again asks nobody.
    let asked = dns.queries();
    assert_eq!(asked.get("6.8.9.10.in-addr.arpa"), Some(&1), "{asked:?}");
    assert!(
        asked.get("9.8.9.10.in-addr.arpa").is_some_and(|n| *n >= 1),
        "{asked:?}"
    );
    assert_eq!(
        asked.get("7.8.9.10.in-addr.arpa"),
        None,
        "/etc/hosts answers .7: {asked:?}"
    );
    assert_eq!(
        asked.get("5.8.9.10.in-addr.arpa"),
        None,
        "the lease answers .5: {asked:?}"
    );
    for _ in 0..1000 {
        assert_eq!(
            h.lookup(mac(6), ip("10.9.8.6")).as_deref(),
            Some("scanner.test")
        );
        assert_eq!(
            h.lookup(mac(7), ip("10.9.8.7")).as_deref(),
            Some("printer.test")
        );
        assert_eq!(h.lookup(mac(9), ip("10.9.8.9")), None);
        assert_eq!(
            h.lookup(mac(5), ip("10.9.8.5")).as_deref(),
            Some("leased-box")
        );
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(dns.queries(), asked, "a cached address was asked again");

    // A lease that appears later wins over the cached DNS name.
    fs::write(
        leases.path(),
        "0 02:00:00:00:00:05 10.9.8.5 leased-box *\n0 02:00:00:00:00:06 10.9.8.6 scanner-lease *\n",
    )
    .expect("writing");
    h.refresh();
    assert_eq!(
        h.lookup(mac(6), ip("10.9.8.6")).as_deref(),
        Some("scanner-lease")
    );

    // Turned off: no lookups at all.
    let mut off = Hostnames::new(&Options {
        names_lease_files: vec![leases.path().to_path_buf()],
        names_no_reverse_dns: true,
        ..Options::default()
    });
    off.refresh();
    for _ in 0..3 {
        assert_eq!(off.lookup(mac(8), ip("10.9.8.8")), None);
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dns.queries().get("8.8.9.10.in-addr.arpa"), None);
}

fn expiry_body(dns: &Dns) {
    let mut h = Hostnames::new(&Options {
        names_lease_files: vec!["/nonexistent/leases".into()],
        names_reverse_dns_ttl: Duration::from_secs(1),
        names_reverse_dns_negative_ttl: Duration::from_secs(1),
        ..Options::default()
    });
    h.refresh();
    assert_eq!(h.lookup(mac(6), ip("10.9.8.6")), None);
    assert_eq!(h.lookup(mac(9), ip("10.9.8.9")), None);
    assert_eq!(wait_name(&mut h, mac(6), ip("10.9.8.6")), "scanner.test");
    wait_settled(&mut h);
    let asked = dns.queries();
    let n6 = asked["6.8.9.10.in-addr.arpa"];
    let n9 = asked["9.8.9.10.in-addr.arpa"];
    thread::sleep(Duration::from_millis(1200));
    // Expired: the stale name is still returned while it is renewed.
    assert_eq!(
        h.lookup(mac(6), ip("10.9.8.6")).as_deref(),
        Some("scanner.test")
    );
    assert_eq!(h.lookup(mac(9), ip("10.9.8.9")), None);
    wait_settled(&mut h);
    let asked = dns.queries();
    assert!(
        asked["6.8.9.10.in-addr.arpa"] > n6,
        "the expired name was not renewed: {asked:?}"
    );
    assert!(
        asked["9.8.9.10.in-addr.arpa"] > n9,
        "the expired no-name was not renewed: {asked:?}"
    );
    assert_eq!(
        h.lookup(mac(6), ip("10.9.8.6")).as_deref(),
        Some("scanner.test")
    );
}

/// A DNS server on 127.0.0.1:53 that knows two PTR records, answers
/// NXDOMAIN to everything else and counts the questions by name.
struct Dns {
    queries: Arc<Mutex<HashMap<String, usize>>>,
}

impl Dns {
    fn start() -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:53").expect("binding 127.0.0.1:53");
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let counts = Arc::clone(&queries);
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    return;
                };
                let Some((qname, reply)) = answer(&buf[..n]) else {
                    continue;
                };
                *counts.lock().unwrap().entry(qname).or_insert(0) += 1;
                let _ = sock.send_to(&reply, from);
            }
        });
        Dns { queries }
    }

    fn queries(&self) -> HashMap<String, usize> {
        self.queries.lock().unwrap().clone()
    }
}

/// The question's name and the reply to a DNS query.
fn answer(q: &[u8]) -> Option<(String, Vec<u8>)> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_lowercase());
        i += len;
    }
    let question_end = i + 4;
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let qname = labels.join(".");
    let target = match qname.as_str() {
        "6.8.9.10.in-addr.arpa" => Some("scanner.test"),
        "5.8.9.10.in-addr.arpa" => Some("dns-name-for-the-leased-box.test"),
        _ => None,
    }
    .filter(|_| qtype == 12);
    let mut r = Vec::new();
    r.extend_from_slice(&q[0..2]);
    let rd = q[2] & 1;
    r.push(0x84 | rd); // QR, AA, RD copied
    r.push(if target.is_some() { 0x00 } else { 0x03 }); // NOERROR or NXDOMAIN
    r.extend_from_slice(&[0, 1, 0, u8::from(target.is_some()), 0, 0, 0, 0]);
    r.extend_from_slice(q.get(12..question_end)?);
    if let Some(target) = target {
        let mut rdata = Vec::new();
        for label in target.split('.') {
            rdata.push(label.len() as u8);
            rdata.extend_from_slice(label.as_bytes());
        }
        rdata.push(0);
        r.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 60]);
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some((qname, r))
}
