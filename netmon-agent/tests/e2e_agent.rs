//! End-to-end tests of the real `netmon-agent` binary: its HTTP API over a
//! real socket (authentication, errors, flow sorting), its API key on disk,
//! its start-up failures and exit codes, clean shutdown (nothing left
//! attached after SIGTERM, SIGINT or SIGKILL) and re-attaching to interfaces
//! that go away and come back.
//!
//! Privileged: every test runs the agent as root inside its own network
//! namespaces (see `tests/common`). What is attached is checked from outside
//! the agent: `ip -d link` for XDP, `BPF_PROG_QUERY` on the interface (from a
//! thread inside its namespace, where ifindexes are unambiguous) for TCX, and
//! the BPF link and program ids the agent held, read from its
//! `/proc/PID/fdinfo` while it ran, for whether anything of it survived.

mod common;

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TcAttachType, loaded_links, loaded_programs};
use common::*;
use serde_json::Value;

/// How long a condition on the API or the kernel may take to come true.
const WAIT: Duration = Duration::from_secs(5);
/// How long the agent may take to exit after SIGTERM or SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(4);
/// Size of the Ethernet, IPv4 and UDP headers around a UDP payload.
const UDP4_OVERHEAD: u64 = 14 + 20 + 8;

// ---------------------------------------------------------------------------
// HTTP

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_json_error(reply, 401, "unauthorized", None, what);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="netmon""#),
        "{what}: 401 without the Bearer challenge: {reply:#?}"
    );
    assert!(
        reply.json["error"].get("param").is_none(),
        "{what}: {reply:#?}"
    );
}

// ---------------------------------------------------------------------------
// Running the agent

/// An agent started by this file (rather than `common::Agent`) for tests
/// that control its environment, signal it or wait for its exit status.
struct Running<'ns> {
    ns: &'ns NetNs,
    child: NsChild,
    key: String,
}

impl<'ns> Running<'ns> {
    /// Spawns `cmd` in `ns` and waits until `/health` says `ok`; `key` is
    /// what [`Running::get`] sends.
    fn start(ns: &'ns NetNs, cmd: &Command, key: &str) -> Running<'ns> {
        let mut child = ns.spawn(cmd);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_status() {
                panic!(
                    "`{}` exited during start-up ({status}):\n{}",
                    child.command(),
                    child.stderr_text()
                );
            }
            if let Ok(reply) = http_get(ns, "/health", &[])
                && reply.status == 200
                && reply.json["status"] == "ok"
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` not ready after {START_TIMEOUT:?}:\n{}",
                child.command(),
                child.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Running {
            ns,
            child,
            key: key.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.child.stderr_text()
    }

    /// `GET path` with the key, expecting 200.
    fn get(&self, path: &str) -> Value {
        let reply = http_get_ok(self.ns, path, &[("X-API-KEY", &self.key)]);
        assert_eq!(reply.status, 200, "GET {path}: {reply:#?}");
        reply.json
    }

    /// Sends `signal` to the agent.
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill has no memory preconditions; the child is not reaped
        // (this guard owns it), so the pid is still the agent's.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for the agent to exit by itself; panics with its stderr if it
    /// is still running after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.child.wait_with_timeout(timeout).unwrap_or_else(|| {
            panic!(
                "the agent did not exit within {timeout:?}:\n{}",
                self.child.stderr_text()
            )
        })
    }
}

/// A private state directory (deleted on drop).
fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("netmon-e2e-state-")
        .tempdir()
        .expect("creating a temporary state directory")
}

// ---------------------------------------------------------------------------
// What is attached

/// A BPF link the agent holds, from its fdinfo.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HeldLink {
    id: u32,
    link_type: String,
    prog_id: u32,
    ifindex: Option<u32>,
}

/// The BPF links and programs a process holds file descriptors for.
#[derive(Debug, Default)]
struct Held {
    links: Vec<HeldLink>,
    progs: BTreeSet<u32>,
}

fn held_by(pid: u32) -> Held {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut held = Held::default();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {dir}: {e}"));
    for entry in entries.flatten() {
        // A descriptor closed meanwhile is simply skipped.
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse::<u32>().ok());
        if let Some(id) = number("link_id") {
            held.links.push(HeldLink {
                id,
                link_type: field("link_type").unwrap_or_default().to_owned(),
                prog_id: number("prog_id").unwrap_or_default(),
                ifindex: number("ifindex"),
            });
        } else if field("prog_type").is_some()
            && let Some(id) = number("prog_id")
        {
            held.progs.insert(id);
        }
    }
    held.links.sort();
    held
}

/// `ip -d link show ifname` in `ns`.
fn link_details(ns: &NetNs, ifname: &str) -> String {
    ns.ip(&["-d", "link", "show", ifname])
}

/// Programs attached with TCX at `hook` of `ifname` in `ns`
/// (`BPF_PROG_QUERY` from a thread inside `ns`, so the ifindex is that
/// namespace's).
fn tcx_progs(ns: &NetNs, ifname: &str, hook: TcAttachType) -> BTreeSet<u32> {
    let ifindex = ns.ifindex(ifname);
    // A program detached between the query and the lookup of its id fails
    // the lookup: ask again.
    let mut last_err = None;
    for _ in 0..10 {
        match ns.run(|| SchedClassifier::query_tcx(ifindex, hook)) {
            Ok((_, progs)) => return progs.iter().map(|p| p.id()).collect(),
            Err(e) => last_err = Some(e),
        }
    }
    panic!(
        "BPF_PROG_QUERY {hook:?} on {ifname} in {}: {:?}",
        ns.name(),
        last_err
    )
}

fn live_link_ids() -> BTreeSet<u32> {
    loaded_links()
        .filter_map(Result::ok)
        .map(|l| l.id())
        .collect()
}

fn live_prog_ids() -> BTreeSet<u32> {
    loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

/// Checks what a running agent watching only `eth0` of `ns` (ifindex
/// `ifindex`) holds and has attached, with `ingress` its ingress mode
/// (`xdp` or `tc`); returns it for [`assert_all_released`].
fn assert_attached(agent: &Running, ifindex: u32, ingress: &str) -> Held {
    let ns = agent.ns;
    let held = held_by(agent.pid());
    let mut types: Vec<&str> = held.links.iter().map(|l| l.link_type.as_str()).collect();
    types.sort_unstable();
    let expected = if ingress == "xdp" {
        ["tcx", "xdp"]
    } else {
        ["tcx", "tcx"]
    };
    assert_eq!(types, expected, "links held: {:#?}", held.links);
    for link in &held.links {
        assert_eq!(link.ifindex, Some(ifindex), "{:#?}", held.links);
        assert!(held.progs.contains(&link.prog_id), "{held:#?}");
    }
    let details = link_details(ns, "eth0");
    let egress = tcx_progs(ns, "eth0", TcAttachType::Egress);
    let ingress_tcx = tcx_progs(ns, "eth0", TcAttachType::Ingress);
    let link_prog = |t: &str| {
        held.links
            .iter()
            .filter(|l| l.link_type == t)
            .map(|l| l.prog_id)
            .collect::<BTreeSet<_>>()
    };
    if ingress == "xdp" {
        let xdp_prog = link_prog("xdp");
        let id = xdp_prog.first().expect("an XDP link");
        assert!(
            details.contains(&format!("prog/xdp id {id} ")),
            "XDP program {id} not on eth0:\n{details}"
        );
        assert!(ingress_tcx.is_empty(), "TCX ingress: {ingress_tcx:?}");
        assert_eq!(egress, link_prog("tcx"), "TCX egress");
    } else {
        assert!(!details.contains("xdp"), "XDP on eth0:\n{details}");
        let tcx = link_prog("tcx");
        assert_eq!(ingress_tcx.len(), 1, "TCX ingress: {ingress_tcx:?}");
        assert_eq!(egress.len(), 1, "TCX egress: {egress:?}");
        assert!(tcx.is_superset(&ingress_tcx) && tcx.is_superset(&egress));
        assert_ne!(ingress_tcx, egress, "ingress and egress programs differ");
    }
    held
}

/// What of an agent is still in the kernel: attachments on `eth0` and
/// which of the links and programs it held still exist.
#[derive(Debug)]
struct Leftovers {
    /// `ip -d link show eth0`.
    ip_link: String,
    tcx_ingress: BTreeSet<u32>,
    tcx_egress: BTreeSet<u32>,
    links: BTreeSet<u32>,
    progs: BTreeSet<u32>,
}

impl Leftovers {
    fn of(ns: &NetNs, held: &Held) -> Leftovers {
        let link_ids: BTreeSet<u32> = held.links.iter().map(|l| l.id).collect();
        Leftovers {
            ip_link: link_details(ns, "eth0"),
            tcx_ingress: tcx_progs(ns, "eth0", TcAttachType::Ingress),
            tcx_egress: tcx_progs(ns, "eth0", TcAttachType::Egress),
            links: live_link_ids().intersection(&link_ids).copied().collect(),
            progs: live_prog_ids().intersection(&held.progs).copied().collect(),
        }
    }

    /// Whether an XDP program (any mode) is on the interface.
    fn xdp(&self) -> bool {
        self.ip_link.contains("xdp")
    }

    fn none(&self) -> bool {
        !self.xdp()
            && self.tcx_ingress.is_empty()
            && self.tcx_egress.is_empty()
            && self.links.is_empty()
            && self.progs.is_empty()
    }
}

/// Checks that the checks of [`Leftovers`] see everything a running agent
/// holds (`ingress` as in [`assert_attached`]), so that finding nothing
/// later means something.
fn assert_leftovers_seen(ns: &NetNs, held: &Held, ingress: &str) {
    let now = Leftovers::of(ns, held);
    let ok = now.xdp() == (ingress == "xdp")
        && now.tcx_ingress.len() == usize::from(ingress != "xdp")
        && now.tcx_egress.len() == 1
        && now.links.len() == held.links.len()
        && now.progs == held.progs;
    assert!(
        ok,
        "while the agent runs, expected to see all of {held:#?}\nsaw {now:#?}"
    );
}

/// Checks that nothing is attached to `eth0` of `ns` and that no link or
/// program in `held` exists any more (waiting up to [`WAIT`], as the kernel
/// may free them asynchronously).
fn assert_all_released(ns: &NetNs, held: &Held) {
    let mut last = None;
    let released = poll_until(WAIT, || {
        let now = Leftovers::of(ns, held);
        let none = now.none();
        last = Some(now);
        none
    });
    assert!(
        released,
        "left behind after the agent exited (it held {held:#?}):\n{last:#?}"
    );
}

// ---------------------------------------------------------------------------
// Flows

/// The flows of `body` (a `/api/v1/flows` answer).
fn flows(body: &Value) -> &[Value] {
    body["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no flows array: {body:#}"))
}

/// The ingress UDP flow 10.0.0.1 -> `dst` on `ifindex` in `body`.
fn udp_flow<'a>(body: &'a Value, ifindex: u32, dst: &str) -> Option<&'a Value> {
    flows(body).iter().find(|f| {
        f["ifindex"] == ifindex
            && f["direction"] == "ingress"
            && f["protocol"] == "udp"
            && f["src"] == Pair::IP4_A.to_string()
            && f["dst"] == dst
    })
}

/// Whether the UDP flow to `dst` has exactly `packets` datagrams of
/// `payload` bytes.
fn udp_flow_is(body: &Value, ifindex: u32, dst: &str, packets: u64, payload: u64) -> bool {
    udp_flow(body, ifindex, dst).is_some_and(|f| {
        f["packets"] == packets && f["bytes"] == packets * (payload + UDP4_OVERHEAD)
    })
}

/// Sends `count` UDP datagrams of `payload` bytes from a (10.0.0.1) to a
/// sink on `dst` in b and waits until all arrived.
fn send_udp(pair: &Pair, dst: &str, payload: usize, count: u64) {
    let bind = format!("{dst}:0").parse().expect("an IPv4 address");
    let sink = pair.b().ns().run(|| udp_sink(bind));
    let src = format!("{}:0", Pair::IP4_A).parse().expect("an address");
    let to = sink.local_addr();
    pair.a()
        .ns()
        .run(|| udp_send(src, to, payload, count as usize));
    assert!(
        sink.wait_for(count, WAIT),
        "sink on {dst} got {} of {count} datagrams",
        sink.packets()
    );
    assert_eq!(sink.stop().packets, count, "datagrams to {dst}");
}

// ===========================================================================
// 1. Authentication

#[test]
fn api_needs_the_key_except_for_health() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let _agent = Agent::start(ns, &[]);

    let health = http_get_ok(ns, "/health", &[]);
    assert_eq!(health.status, 200, "{health:#?}");
    assert_eq!(health.json["status"], "ok", "{health:#?}");

    let wrong = format!("{TEST_KEY}x");
    let short = &TEST_KEY[..TEST_KEY.len() - 1];
    let bearer_wrong = format!("Bearer {wrong}");
    let basic = format!("Basic {TEST_KEY}");
    let rejected: [(&str, &[(&str, &str)]); 7] = [
        ("no key", &[]),
        ("wrong X-API-KEY", &[("X-API-KEY", &wrong)]),
        ("X-API-KEY prefix of the key", &[("X-API-KEY", short)]),
        ("wrong bearer token", &[("Authorization", &bearer_wrong)]),
        ("Basic scheme", &[("Authorization", &basic)]),
        ("no scheme", &[("Authorization", TEST_KEY)]),
        ("empty X-API-KEY", &[("X-API-KEY", "")]),
    ];
    // Authentication comes before parameter checks: a bad parameter without
    // the key is still 401.
    let protected = [
        "/api/v1/devices",
        "/api/v1/devices?interface=eth0",
        "/api/v1/flows",
        "/api/v1/flows?limit=abc",
        "/api/v1/interfaces",
    ];
    for path in protected {
        for (what, headers) in rejected {
            assert_unauthorized(
                &http_get_ok(ns, path, headers),
                &format!("GET {path}, {what}"),
            );
        }
    }

    let bearer = format!("Bearer {TEST_KEY}");
    let lower = format!("bearer {TEST_KEY}");
    let upper = format!("BEARER {TEST_KEY}");
    let accepted = [
        ("X-API-KEY", TEST_KEY),
        ("x-api-key", TEST_KEY),
        ("Authorization", bearer.as_str()),
        ("authorization", lower.as_str()),
        ("Authorization", upper.as_str()),
    ];
    for header in accepted {
        for (path, field) in [
            ("/api/v1/devices", "devices"),
            ("/api/v1/flows", "flows"),
            ("/api/v1/interfaces", "interfaces"),
        ] {
            let reply = http_get_ok(ns, path, &[header]);
            assert_eq!(reply.status, 200, "GET {path} with {header:?}: {reply:#?}");
            assert!(
                reply.json[field].is_array(),
                "GET {path} with {header:?}: no {field} array: {}",
                reply.text
            );
        }
    }
}

// ===========================================================================
// 2. Bad requests

#[test]
fn bad_parameters_are_400_naming_them_and_unknown_paths_404() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let _agent = Agent::start(ns, &[]);
    let key = [("X-API-KEY", TEST_KEY)];

    let cases = [
        ("/api/v1/flows?limit=0", "limit"),
        ("/api/v1/flows?limit=10001", "limit"),
        ("/api/v1/flows?limit=100000", "limit"),
        ("/api/v1/flows?limit=abc", "limit"),
        ("/api/v1/flows?limit=-1", "limit"),
        ("/api/v1/flows?sort=nope", "sort"),
        ("/api/v1/flows?sort=bytes&limit=0", "limit"),
        ("/api/v1/flows?bogus=1", "bogus"),
        ("/api/v1/flows?limit=5&bogus=1", "bogus"),
        ("/api/v1/interfaces?x=1", "x"),
        ("/api/v1/devices?colour=red", "colour"),
    ];
    let mut unnamed = Vec::new();
    for (path, param) in cases {
        let reply = http_get_ok(ns, path, &key);
        let what = format!("GET {path}");
        assert_json_error(&reply, 400, "bad_request", None, &what);
        let message = reply.json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(param),
            "{what}: the message does not name `{param}`: {reply:#?}"
        );
        if reply.json["error"]["param"] != param {
            unnamed.push(format!("{what}: {}", reply.text));
        }
    }
    assert!(
        unnamed.is_empty(),
        "400s whose `param` field does not name the parameter at fault:\n{}",
        unnamed.join("\n")
    );

    // The edges of the range are fine.
    for path in ["/api/v1/flows?limit=1", "/api/v1/flows?limit=10000"] {
        let reply = http_get_ok(ns, path, &key);
        assert_eq!(reply.status, 200, "GET {path}: {reply:#?}");
    }

    for path in ["/api/v1/nope", "/nope", "/api/v2/flows", "/api/v1/flows/x"] {
        for headers in [&key[..], &[]] {
            let what = format!("GET {path} with {} key", headers.len());
            assert_json_error(
                &http_get_ok(ns, path, headers),
                404,
                "not_found",
                None,
                &what,
            );
        }
    }
}

// ===========================================================================
// 3. Flow sorting and limits

#[test]
fn flows_sort_by_bytes_or_packets_and_limit_counts_all() {
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b().ns();
    for ip in ["10.0.0.3", "10.0.0.4"] {
        b.ip_line(&format!("addr add {ip}/24 dev eth0"));
    }
    let agent = Agent::start(b, &[]);
    let ifindex = Pair::IFINDEX_B;
    // Bytes order x > z > y, packets order y > z > x.
    let (x, y, z) = ("10.0.0.2", "10.0.0.3", "10.0.0.4");
    let specs = [(x, 1400, 10), (y, 100, 40), (z, 500, 20)];
    for (dst, payload, count) in specs {
        send_udp(&pair, dst, payload, count);
    }
    agent.wait_for("/api/v1/flows?limit=10000", WAIT, |body| {
        specs
            .iter()
            .all(|&(dst, payload, count)| udp_flow_is(body, ifindex, dst, count, payload as u64))
    });

    let dsts = |body: &Value| -> Vec<String> {
        flows(body)
            .iter()
            .map(|f| f["dst"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let all = agent.get("/api/v1/flows?limit=10000&sort=bytes");
    let total = all["total"].as_u64().expect("total");
    assert_eq!(flows(&all).len() as u64, total, "{all:#}");
    assert!(total >= 3, "{all:#}");
    let bytes: Vec<u64> = flows(&all)
        .iter()
        .map(|f| f["bytes"].as_u64().expect("bytes"))
        .collect();
    assert!(
        bytes.windows(2).all(|w| w[0] >= w[1]),
        "sort=bytes is not descending: {bytes:?}"
    );

    for (query, expected) in [
        ("sort=bytes&limit=2", vec![x, z]),
        ("sort=bytes&limit=1", vec![x]),
        ("sort=packets&limit=2", vec![y, z]),
        ("limit=3&sort=packets", vec![y, z, x]),
    ] {
        let body = agent.get(&format!("/api/v1/flows?{query}"));
        assert_eq!(dsts(&body), expected, "?{query}: {body:#}");
        let total_now = body["total"].as_u64().expect("total");
        // Background flows (IPv6 neighbour discovery, MLD) may appear
        // between requests, never disappear within the idle expiry.
        assert!(total_now >= total, "?{query}: total {total_now} < {total}");
    }

    // Default: sorted by rate, at most 100, the same total.
    let body = agent.get("/api/v1/flows");
    assert!(body["total"].as_u64() >= Some(total), "{body:#}");
    assert!(flows(&body).len() <= 100);
    for dst in [x, y, z] {
        assert!(udp_flow(&body, ifindex, dst).is_some(), "{dst}: {body:#}");
    }
}

// ===========================================================================
// 4. The generated API key

#[test]
fn generated_key_is_private_logged_works_and_is_reused() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = state_dir();
    let state = tmp.path().join("netmon");
    let key_path = state.join("api-key");
    let mut cmd = agent_command(&state, &[]);
    cmd.env_remove("NETMON_API_KEY");

    let mut agent = Running::start(ns, &cmd, "");
    let meta = fs::metadata(&key_path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", key_path.display(), agent.stderr()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "key file mode");
    let dir_mode = fs::metadata(&state)
        .expect("state dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "state dir mode");
    let key = fs::read_to_string(&key_path).expect("reading the key");
    let key = key.trim_end().to_owned();
    assert_eq!(key.len(), 64, "{key:?}");
    assert!(
        key.bytes().all(|c| c.is_ascii_hexdigit()),
        "not hex: {key:?}"
    );
    let log = agent.stderr();
    assert!(
        log.contains(&key_path.display().to_string()) && log.contains("Generated"),
        "the log does not say where the new key is:\n{log}"
    );
    assert!(!log.contains(&key), "the log shows the key:\n{log}");

    let check_key = |key: &str| {
        let bearer = format!("Bearer {key}");
        for header in [("X-API-KEY", key), ("Authorization", bearer.as_str())] {
            let reply = http_get_ok(ns, "/api/v1/interfaces", &[header]);
            assert_eq!(reply.status, 200, "with {header:?}: {reply:#?}");
        }
        let reply = http_get_ok(ns, "/api/v1/interfaces", &[("X-API-KEY", TEST_KEY)]);
        assert_unauthorized(&reply, "the test key, with a generated key in use");
    };
    check_key(&key);

    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(STOP_TIMEOUT).code(), Some(0));
    drop(agent);

    let again = Running::start(ns, &cmd, &key);
    let reread = fs::read_to_string(&key_path).expect("reading the key");
    assert_eq!(reread.trim_end(), key, "the restart replaced the key");
    let log = again.stderr();
    assert!(
        !log.contains("Generated") && log.contains(&key_path.display().to_string()),
        "the restart should say it uses the existing key file:\n{log}"
    );
    check_key(&key);
    again.get("/api/v1/flows");
}

#[test]
fn short_or_unreadable_keys_exit_2_naming_the_source() {
    skip_unless_root!();
    let ns = NetNs::new("keys");
    let tmp = state_dir();
    let state = tmp.path().join("state");

    let mut cmd = agent_command(&state, &[]);
    cmd.env("NETMON_API_KEY", "short-key");
    let (status, stderr) = run_to_exit(&ns, &cmd);
    assert_exit(status, &stderr, 2, &["too short", "NETMON_API_KEY"]);
    assert!(!state.exists(), "a key was generated after all");

    let missing = tmp.path().join("no/such/api-key");
    let missing_text = missing.display().to_string();
    let mut cmd = agent_command(&state, &["--api-key-file", &missing_text]);
    cmd.env_remove("NETMON_API_KEY");
    let (status, stderr) = run_to_exit(&ns, &cmd);
    assert_exit(status, &stderr, 2, &[&missing_text]);
    assert!(!state.exists(), "a key was generated after all");

    let short_file = tmp.path().join("short-key");
    fs::write(&short_file, "abc\n").expect("writing a key file");
    fs::set_permissions(&short_file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let short_text = short_file.display().to_string();
    let mut cmd = agent_command(&state, &["--api-key-file", &short_text]);
    cmd.env_remove("NETMON_API_KEY");
    let (status, stderr) = run_to_exit(&ns, &cmd);
    assert_exit(status, &stderr, 2, &[&short_text, "too short"]);
}

// ===========================================================================
// 5. Clean shutdown

/// Starts the agent on b's eth0 with `args`, checks what it attached, stops
/// it with `signal` and checks that nothing of it is left in the kernel.
fn stop_leaves_nothing(args: &[&str], ingress: &str, signal: libc::c_int) {
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = state_dir();
    let mut agent = Running::start(ns, &agent_command(&tmp.path().to_owned(), args), TEST_KEY);
    let interfaces = agent.get("/api/v1/interfaces");
    let hook = if ingress == "xdp" { "xdp-native" } else { "tc" };
    assert_eq!(
        interfaces["interfaces"][0]["ingress_hook"], hook,
        "{interfaces:#}"
    );
    let held = assert_attached(&agent, Pair::IFINDEX_B, ingress);
    assert_leftovers_seen(ns, &held, ingress);

    let sent = Instant::now();
    agent.signal(signal);
    let status = agent.wait_exit(STOP_TIMEOUT);
    let took = sent.elapsed();
    let stderr = agent.stderr();
    if signal == libc::SIGKILL {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    } else {
        assert_eq!(status.code(), Some(0), "{status} after {took:?}:\n{stderr}");
        let name = if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        for needle in [name, "Detached.", "Stopped."] {
            assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
        }
    }
    assert_all_released(ns, &held);
    drop(agent);
}

#[test]
fn sigterm_exits_0_and_detaches_xdp_and_tcx() {
    skip_unless_root!();
    stop_leaves_nothing(&[], "xdp", libc::SIGTERM);
}

#[test]
fn sigint_exits_0_and_detaches_tcx_ingress_and_egress() {
    skip_unless_root!();
    stop_leaves_nothing(&["--ingress", "tc"], "tc", libc::SIGINT);
}

#[test]
fn sigkill_leaves_nothing_attached() {
    skip_unless_root!();
    stop_leaves_nothing(&[], "xdp", libc::SIGKILL);
}

#[test]
fn sigterm_exits_promptly_with_client_connections_open() {
    skip_unless_root!();
    use std::io::Write as _;
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = state_dir();
    let mut agent = Running::start(ns, &agent_command(&tmp.path().to_owned(), &[]), TEST_KEY);
    // Declared after the agent, so dropped (closed) first if this fails.
    let connections = ns.run(|| {
        let connect = || {
            std::net::TcpStream::connect(LISTEN).unwrap_or_else(|e| panic!("connect {LISTEN}: {e}"))
        };
        // Connected, nothing sent.
        let idle = connect();
        // A whole request answered; the connection stays open (keep-alive).
        let mut kept = connect();
        // A client that stalls half-way through its request headers.
        let mut stalled = connect();
        kept.write_all(b"GET /health HTTP/1.1\r\nHost: netmon\r\n\r\n")
            .and_then(|()| stalled.write_all(b"GET /health HTTP/1.1\r\nHost: netmon\r\n"))
            .unwrap_or_else(|e| panic!("write to {LISTEN}: {e}"));
        [idle, kept, stalled]
    });
    // Let the agent read what was sent.
    std::thread::sleep(Duration::from_millis(300));

    let sent = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.child.wait_with_timeout(STOP_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "with an idle connection, a kept-alive one and one stalled in the middle of its \
         request headers open, SIGTERM did not stop the agent within {STOP_TIMEOUT:?} \
         (status {status:?} after {:?}): shutdown waits for clients without a deadline\n{}",
        sent.elapsed(),
        agent.stderr()
    );
    drop(connections);
}

/// Collectors that wait (probes for an address nobody answers, a sweep at
/// one request a second) do not hold up shutdown.
#[test]
fn sigterm_exits_promptly_while_probes_and_a_sweep_wait() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = state_dir();
    let cmd = agent_command(
        &tmp.path().to_owned(),
        &[
            "--probe-target=10.0.0.99",
            "--probe-timeout=60s",
            "--discovery-sweep-rate=1",
            "--discovery-sweep-wait=10s",
        ],
    );
    let mut agent = Running::start(ns, &cmd, TEST_KEY);
    // Both are under way: the probe waits up to 60 s, the sweep of the /24
    // would take minutes.
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.child.wait_with_timeout(STOP_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "SIGTERM during a latency probe and an ARP sweep did not stop the agent within \
         {STOP_TIMEOUT:?} (status {status:?} after {:?})\n{}",
        sent.elapsed(),
        agent.stderr()
    );
}

// ===========================================================================
// 6. Interfaces that go away and come back

/// Re-creates the pair's veth (deleted before) with new interface indexes
/// and the same MACs and addresses, and waits until both ends are ready.
fn recreate_veth(pair: &Pair, index_a: u32, index_b: u32) {
    let (a, b) = (pair.a(), pair.b());
    a.ns().ip_line(&format!(
        "link add eth0 index {index_a} type veth peer name eth0 index {index_b} netns {}",
        b.ns().name()
    ));
    for host in [a, b] {
        let ns = host.ns();
        ns.ip_line(&format!("link set eth0 address {}", format_mac(host.mac())));
        ns.ip_line(&format!("addr add {}/{PREFIX_V4} dev eth0", host.ip4()));
        ns.ip_line(&format!(
            "addr add {}/{PREFIX_V6} dev eth0 nodad",
            host.ip6()
        ));
        ns.ip_line("link set eth0 up");
    }
    for host in [a, b] {
        host.ns().wait_ipv6_ready("eth0", WAIT);
    }
}

/// Ifindexes of the interfaces the agent lists.
fn watched(body: &Value) -> Vec<(String, u64)> {
    body["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no interfaces array: {body:#}"))
        .iter()
        .map(|i| {
            let name = i["name"].as_str().unwrap_or("?").to_owned();
            (name, i["ifindex"].as_u64().unwrap_or(0))
        })
        .collect()
}

#[test]
fn reattaches_to_a_recreated_interface_and_survives_link_down_up() {
    skip_unless_root!();
    const NEW_A: u32 = 20;
    const NEW_B: u32 = 21;
    let pair = Pair::new();
    let (a, b) = (pair.a().ns(), pair.b().ns());
    let agent = Agent::start(b, &[]);
    let dst = Pair::IP4_B.to_string();
    let old = Pair::IFINDEX_B;

    send_udp(&pair, &dst, 200, 10);
    agent.wait_for("/api/v1/flows?limit=10000", WAIT, |body| {
        udp_flow_is(body, old, &dst, 10, 200)
    });

    a.ip_line("link del eth0");
    agent.wait_for("/api/v1/interfaces", WAIT, |body| watched(body).is_empty());
    let log = agent.stderr();
    assert!(
        log.contains("Interface went away") && log.contains(&format!("ifindex={old}")),
        "no log line about eth0 going away:\n{log}"
    );

    recreate_veth(&pair, NEW_A, NEW_B);
    let body = agent.wait_for("/api/v1/interfaces", WAIT, |body| {
        watched(body) == [("eth0".to_owned(), u64::from(NEW_B))]
    });
    assert_eq!(
        body["interfaces"][0]["ingress_hook"], "xdp-native",
        "{body:#}"
    );
    let details = link_details(b, "eth0");
    assert!(
        details.contains("prog/xdp"),
        "no XDP on the new eth0:\n{details}"
    );
    assert_eq!(tcx_progs(b, "eth0", TcAttachType::Egress).len(), 1);
    // The links of the old interface were released, not kept open.
    let held = held_by(agent.pid());
    let ifindexes: Vec<Option<u32>> = held.links.iter().map(|l| l.ifindex).collect();
    assert_eq!(ifindexes, [Some(NEW_B); 2], "{held:#?}");
    let log = agent.stderr();
    assert!(
        log.contains(&format!("ifindex={NEW_B}")) && log.matches("Attached.").count() == 2,
        "no log line about attaching to the new eth0:\n{log}"
    );

    send_udp(&pair, &dst, 300, 25);
    agent.wait_for("/api/v1/flows?limit=10000", WAIT, |body| {
        udp_flow_is(body, NEW_B, &dst, 25, 300)
    });
    // Stays exact over the next reads (no double counting).
    std::thread::sleep(Duration::from_millis(500));
    let body = agent.get("/api/v1/flows?limit=10000");
    assert!(udp_flow_is(&body, NEW_B, &dst, 25, 300), "{body:#}");

    // Down and up again: same interface, same links, counting goes on.
    let held_before = held_by(agent.pid());
    b.ip_line("link set eth0 down");
    std::thread::sleep(Duration::from_millis(600));
    let body = agent.get("/api/v1/interfaces");
    assert_eq!(
        watched(&body),
        [("eth0".to_owned(), u64::from(NEW_B))],
        "{body:#}"
    );
    b.ip_line("link set eth0 up");
    b.wait_ipv6_ready("eth0", WAIT);
    send_udp(&pair, &dst, 300, 15);
    agent.wait_for("/api/v1/flows?limit=10000", WAIT, |body| {
        udp_flow_is(body, NEW_B, &dst, 40, 300)
    });
    assert_eq!(
        held_by(agent.pid()).links,
        held_before.links,
        "link down/up changed the agent's links"
    );
    let log = agent.stderr();
    assert_eq!(
        log.matches("Interface went away").count(),
        1,
        "link down was taken for removal:\n{log}"
    );
}

// ===========================================================================
// 7. Start-up errors

#[test]
fn unknown_interface_exits_5_naming_it() {
    skip_unless_root!();
    let ns = NetNs::new("noif");
    let tmp = state_dir();
    let cmd = agent_command(&tmp.path().to_owned(), &["--iface", "nosuch0"]);
    let (status, stderr) = run_to_exit(&ns, &cmd);
    assert_exit(status, &stderr, 5, &["nosuch0"]);
}

#[test]
fn nothing_to_watch_exits_5() {
    skip_unless_root!();
    // Only `lo`: nothing up, non-loopback and with a MAC.
    let ns = NetNs::new("empty");
    let tmp = state_dir();
    let (status, stderr) = run_to_exit(&ns, &agent_command(&tmp.path().to_owned(), &[]));
    assert_exit(status, &stderr, 5, &["no interface to watch"]);
}

#[test]
fn bad_interval_exits_2_naming_the_option() {
    skip_unless_root!();
    let ns = NetNs::new("opt");
    let tmp = state_dir();
    for value in ["10ms", "soon"] {
        let mut cmd = Command::new(agent_bin());
        cmd.arg("--state-dir")
            .arg(tmp.path())
            .args(["--interval", value]);
        let (status, stderr) = run_to_exit(&ns, &cmd);
        assert_exit(status, &stderr, 2, &["--interval", value]);
    }
}

#[test]
fn second_agent_on_the_same_address_exits_8_and_leaves_the_first_alone() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let first = Agent::start(ns, &[]);
    let first_links = {
        let held = held_by(first.pid());
        assert_eq!(held.links.len(), 2, "{held:#?}");
        held
    };

    // The second binds its API address before loading anything, so it
    // exits 8 without touching the interface.
    let tmp = state_dir();
    let (status, stderr) = run_to_exit(ns, &agent_command(&tmp.path().to_owned(), &[]));
    assert_exit(
        status,
        &stderr,
        8,
        &[&format!("cannot listen on {LISTEN}"), "in use"],
    );

    // On a free address, asking for native XDP (taken by the first agent)
    // fails at the attachment.
    let mut cmd = Command::new(agent_bin());
    cmd.env("NETMON_API_KEY", TEST_KEY)
        .arg("--state-dir")
        .arg(tmp.path())
        .args(["--listen", "127.0.0.1:9714", "--ingress", "xdp"]);
    let (status, stderr) = run_to_exit(ns, &cmd);
    assert_exit(status, &stderr, 6, &["eth0", "netmon_xdp", "native XDP"]);

    // The first agent is untouched: its links, only its programs on eth0,
    // and it still counts.
    assert_eq!(held_by(first.pid()).links, first_links.links);
    let egress = tcx_progs(ns, "eth0", TcAttachType::Egress);
    assert!(
        poll_until(WAIT, || tcx_progs(ns, "eth0", TcAttachType::Egress).len()
            == 1
            && tcx_progs(ns, "eth0", TcAttachType::Ingress).is_empty()),
        "the failed agents left TCX programs behind: egress {egress:?}"
    );
    let dst = Pair::IP4_B.to_string();
    send_udp(&pair, &dst, 100, 7);
    first.wait_for("/api/v1/flows?limit=10000", WAIT, |body| {
        udp_flow_is(body, Pair::IFINDEX_B, &dst, 7, 100)
    });
}

#[test]
fn no_kernel_btf_exits_4() {
    skip_unless_root!();
    let ns = NetNs::new("btf");
    let tmp = state_dir();
    // Hides /sys/kernel/btf from the agent only, in a private mount
    // namespace; "$0" is the agent, "$@" its arguments.
    let hide_btf = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        r#"mount -t tmpfs none /sys/kernel/btf && exec "$0" "$@""#,
    ];
    let cmd = wrapped(&hide_btf, &agent_command(&tmp.path().to_owned(), &[]));
    let (status, stderr) = run_to_exit(&ns, &cmd);
    assert_exit(status, &stderr, 4, &["/sys/kernel/btf/vmlinux", "BTF"]);
}

/// The effective capability set `setpriv_args` leaves a root process in
/// `ns`.
fn cap_eff_under(ns: &NetNs, setpriv_args: &[&str]) -> u64 {
    let mut args = vec!["setpriv"];
    args.extend_from_slice(setpriv_args);
    args.extend_from_slice(&["grep", "CapEff", "/proc/self/status"]);
    let out = ns.exec(&args);
    let hex = out
        .trim()
        .strip_prefix("CapEff:")
        .unwrap_or_else(|| panic!("unexpected output: {out:?}"))
        .trim();
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{hex:?}: {e}"))
}

#[test]
fn missing_capabilities_exit_3_naming_them() {
    skip_unless_root!();
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    assert!(
        Command::new("setpriv").arg("--version").output().is_ok(),
        "this test needs setpriv (util-linux) on the PATH"
    );
    let ns = NetNs::new("caps");
    let tmp = state_dir();
    // CAP_SYS_ADMIN stands in for CAP_BPF (the kernel accepts either), so
    // both go.
    let cases: [(&[&str], &[u32], &str); 2] = [
        (
            &[
                "--inh-caps=-bpf,-sys_admin",
                "--bounding-set=-bpf,-sys_admin",
                "--",
            ],
            &[CAP_BPF, CAP_SYS_ADMIN],
            "missing capability CAP_BPF: needed to",
        ),
        (
            &["--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"],
            &[CAP_NET_ADMIN],
            "missing capability CAP_NET_ADMIN: needed to",
        ),
    ];
    for (setpriv_args, dropped, message) in cases {
        let eff = cap_eff_under(&ns, setpriv_args);
        for bit in dropped {
            assert_eq!(
                eff & (1 << bit),
                0,
                "setpriv {setpriv_args:?}: CapEff {eff:x}"
            );
        }
        let mut wrapper = vec!["setpriv"];
        wrapper.extend_from_slice(setpriv_args);
        let cmd = wrapped(&wrapper, &agent_command(&tmp.path().to_owned(), &[]));
        let (status, stderr) = run_to_exit(&ns, &cmd);
        assert_exit(status, &stderr, 3, &[message]);
        for other in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"] {
            if !message.contains(other) {
                assert!(!stderr.contains(other), "{other} is not missing:\n{stderr}");
            }
        }
    }
}
