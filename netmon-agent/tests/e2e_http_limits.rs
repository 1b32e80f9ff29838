//! End-to-end tests of the API's limits against the real `netmon-agent` in a
//! network namespace, over real sockets: slow and idle clients are closed,
//! the connection cap refuses the extra connections while admitted clients
//! are served, the stream's client cap and its dropping of clients that fall
//! behind, the history's point cap, the 429 after repeated bad keys, the
//! TLS handshake timeout, and the JSON 400s for inputs that used to panic or
//! answer in text. Each refusal is checked in `/metrics` too.
//!
//! Requests are written by hand on `TcpStream`s where the test needs to
//! control what is sent and when (half a request, nothing, not reading).
//!
//! Privileged: needs root, like every namespace test (see `tests/common`).

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::*;

/// How long a closed connection may take to be seen closed, beyond its
/// limit (the watchdog's tick and scheduling).
const SLACK: Duration = Duration::from_secs(5);

fn listen() -> SocketAddr {
    LISTEN.parse().expect("LISTEN is an address")
}

/// A connection to the agent in `ns`, with a read timeout of `timeout`.
fn connect(ns: &NetNs, timeout: Duration) -> TcpStream {
    let conn = ns
        .run(|| TcpStream::connect(listen()))
        .unwrap_or_else(|e| panic!("connect {LISTEN}: {e}"));
    conn.set_read_timeout(Some(timeout)).expect("read timeout");
    conn
}

/// Reads until the server closes `conn`, for at most `within`; how long it
/// took, or `None` if it was still open (or the read failed otherwise).
fn closed_within(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    conn.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed());
            }
            Err(_) => return None,
        }
        if start.elapsed() > within {
            return None;
        }
    }
}

/// Sends `GET path` (kept alive) and reads one whole response with a
/// `Content-Length`: status and body.
fn exchange(conn: &mut TcpStream, path: &str, key: Option<&str>) -> (u16, String) {
    let auth = key
        .map(|k| format!("X-API-KEY: {k}\r\n"))
        .unwrap_or_default();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").expect("write the request");
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).expect("read the response");
        assert!(n > 0, "closed before a whole response: {data:?}");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().expect("a length"))
            })
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        if body.len() >= length {
            let status = head[9..12].parse().expect("a status");
            return (status, body[..length].to_owned());
        }
    }
}

/// The value of the sample `name` (with its labels, as written) in the
/// agent's `/metrics`.
fn metric(agent: &Agent<'_>, ns: &NetNs, name: &str) -> u64 {
    let reply = http_get_ok(ns, "/metrics", &[("X-API-KEY", TEST_KEY)]);
    assert_eq!(reply.status, 200, "{reply:#?}\n{}", agent.stderr());
    reply
        .text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{}", reply.text))
        .trim()
        .parse()
        .expect("an integer sample")
}

/// With the defaults, clients that send half a request line and then
/// nothing, or nothing at all, are closed within 30 s (the header timeout
/// is 10 s); each is counted. A kept-alive connection is closed once idle
/// for `--http-idle-timeout`, while one used within it keeps working.
#[test]
fn slow_and_idle_clients_are_closed() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let agent = Agent::start(ns, &["--http-idle-timeout", "3s"]);
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = connect(ns, Duration::from_secs(1));
            if i % 2 == 0 {
                c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                    .expect("half a request");
            }
            c
        })
        .collect();
    // A kept-alive connection, used again before it is idle too long.
    let mut kept = connect(ns, Duration::from_secs(5));
    assert_eq!(exchange(&mut kept, "/health", None).0, 200);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(exchange(&mut kept, "/health", None).0, 200);
    let idle_closed = closed_within(&mut kept, Duration::from_secs(3) + SLACK);
    assert!(
        idle_closed.is_some(),
        "an idle kept-alive connection is still open after 8 s"
    );

    for (i, c) in slow.iter_mut().enumerate() {
        let left = Duration::from_secs(30).saturating_sub(opened.elapsed());
        assert!(
            closed_within(c, left).is_some(),
            "slow client {i} still open after 30 s"
        );
    }
    // Closed by the 10 s header timeout, not by anything sooner.
    assert!(
        opened.elapsed() >= Duration::from_secs(9),
        "{:?}",
        opened.elapsed()
    );
    assert_eq!(
        metric(
            &agent,
            ns,
            "netmon_http_connections_closed_total{reason=\"header_timeout\"}"
        ),
        20
    );
    assert!(
        metric(
            &agent,
            ns,
            "netmon_http_connections_closed_total{reason=\"idle\"}"
        ) >= 1
    );
}

/// Over `--http-max-connections` a connection is refused at once with a
/// JSON 503, while an admitted client still gets `/health`; the refusal is
/// counted.
#[test]
fn connection_cap_refuses_the_extra_ones_and_admitted_clients_get_health() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let agent = Agent::start(ns, &["--http-max-connections", "8"]);
    // The start-up polls' connections are gone (their slots given back):
    // only the asking one is open. It asks on a connection it keeps, the
    // first admitted one: a connection closed after its answer would give
    // its slot back only when the server sees it closed, which may be after
    // the next ones connect.
    let mut first = connect(ns, Duration::from_secs(5));
    assert!(
        poll_until(Duration::from_secs(10), || {
            let (status, body) = exchange(&mut first, "/api/v1/limits", Some(TEST_KEY));
            let limits: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            status == 200 && limits["open"]["connections"] == 1
        }),
        "connections of the start-up polls are still open"
    );
    let mut admitted: Vec<TcpStream> = std::iter::once(first)
        .chain((1..8).map(|_| connect(ns, Duration::from_secs(5))))
        .collect();
    // Each is served once, so every one holds a slot.
    for c in &mut admitted {
        assert_eq!(exchange(c, "/health", None).0, 200);
    }
    for _ in 0..3 {
        let mut extra = connect(ns, Duration::from_secs(5));
        let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut reply = Vec::new();
        let _ = extra.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply:?}");
        assert!(reply.contains("\"unavailable\""), "{reply}");
    }
    for c in &mut admitted {
        let (status, body) = exchange(c, "/health", None);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"status\""), "{body}");
    }
    drop(admitted);
    assert!(
        poll_until(Duration::from_secs(10), || {
            http_get(ns, "/health", &[]).is_ok_and(|r| r.status == 200)
        }),
        "the agent does not serve new clients after the others left"
    );
    assert_eq!(
        metric(&agent, ns, "netmon_http_connections_refused_total"),
        3
    );
}

/// `/api/v1/stream` takes at most `--sse-max-clients` at once (more get a
/// JSON 503), gives a slot back when a client leaves, and ends the stream of
/// a client that reads nothing once it is `--sse-max-backlog` bytes behind.
#[test]
fn stream_clients_are_capped_and_those_that_fall_behind_are_dropped() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let agent = Agent::start(ns, &["--sse-max-clients", "2", "--sse-max-backlog", "4096"]);
    let open_stream = |ns: &NetNs| {
        let mut c = connect(ns, Duration::from_secs(5));
        write!(
            c,
            "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nX-API-KEY: {TEST_KEY}\r\n\r\n"
        )
        .expect("write");
        let mut head = [0u8; 12];
        c.read_exact(&mut head).expect("a status line");
        (c, String::from_utf8_lossy(&head).into_owned())
    };
    let (a, head) = open_stream(ns);
    assert_eq!(head, "HTTP/1.1 200", "first stream");
    let (_b, head) = open_stream(ns);
    assert_eq!(head, "HTTP/1.1 200", "second stream");
    let reply = http_get_ok(ns, "/api/v1/stream", &[("X-API-KEY", TEST_KEY)]);
    assert_json_error(&reply, 503, "unavailable", None, "a third stream");
    assert_eq!(reply.header("retry-after"), Some("1"), "{reply:#?}");
    drop(a);
    assert!(
        poll_until(Duration::from_secs(10), || metric(
            &agent,
            ns,
            "netmon_http_sse_clients"
        ) == 1),
        "the first stream's slot was not given back"
    );

    // A client with a tiny receive buffer that reads nothing falls behind.
    let stalled = ns.run(|| {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(2048).expect("SO_RCVBUF");
        socket.connect(&listen().into()).expect("connect");
        let mut c: TcpStream = socket.into();
        write!(
            c,
            "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nX-API-KEY: {TEST_KEY}\r\n\r\n"
        )
        .expect("write");
        c
    });
    assert!(
        poll_until(Duration::from_secs(60), || {
            metric(&agent, ns, "netmon_http_sse_dropped_total") == 1
        }),
        "a stream client that reads nothing was never dropped; stderr:\n{}",
        agent.stderr()
    );
    assert_eq!(
        metric(
            &agent,
            ns,
            "netmon_http_requests_refused_total{reason=\"sse_clients\"}"
        ),
        1
    );
    drop(stalled);
}

/// `step=raw` over an hour at a 200 ms interval is 18,001 points: over
/// `--history-max-points 1000` it is a JSON 400 naming `step`; without a
/// step the answer comes at a coarser tier.
#[test]
fn history_point_cap_is_a_400_naming_step_or_a_coarser_tier() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let agent = Agent::start(ns, &["--history-max-points", "1000"]);
    let key = [("X-API-KEY", TEST_KEY)];
    assert!(
        poll_until(START_TIMEOUT, || {
            http_get(ns, "/api/v1/history?series=system&from=5s", &key)
                .is_ok_and(|r| r.status == 200)
        }),
        "no system history yet"
    );
    let reply = http_get_ok(ns, "/api/v1/history?series=system&step=raw&from=1h", &key);
    assert_json_error(&reply, 400, "bad_request", Some("step"), "raw over an hour");
    let message = reply.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("18001 points") && message.contains("1000"),
        "{message}"
    );
    let reply = http_get_ok(ns, "/api/v1/history?series=system&from=1h", &key);
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(reply.json["tier"], "minute", "{reply:#?}");
    assert_eq!(
        metric(
            &agent,
            ns,
            "netmon_http_requests_refused_total{reason=\"history_points\"}"
        ),
        1
    );
}

/// After `--auth-max-failures` bad keys from one address, more bad keys (and
/// no key) get a JSON 429 with `Retry-After`, while the correct key from the
/// same address still works; the refusals are counted.
#[test]
fn repeated_bad_keys_get_429_and_a_good_key_still_works() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let agent = Agent::start(ns, &["--auth-max-failures", "3"]);
    let wrong = [("X-API-KEY", "netmon-wrong-key-0123456789")];
    for i in 0..3 {
        let reply = http_get_ok(ns, "/api/v1/devices", &wrong);
        assert_json_error(&reply, 401, "unauthorized", None, &format!("bad key {i}"));
    }
    for headers in [&wrong[..], &[]] {
        let reply = http_get_ok(ns, "/api/v1/devices", headers);
        assert_json_error(&reply, 429, "rate_limited", None, "over the limit");
        let retry: u64 = reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After: {reply:#?}"));
        assert!((1..=60).contains(&retry), "{retry}");
    }
    let reply = http_get_ok(ns, "/api/v1/devices", &[("X-API-KEY", TEST_KEY)]);
    assert_eq!(
        reply.status, 200,
        "the correct key from the limited address: {reply:#?}"
    );
    assert_eq!(
        metric(
            &agent,
            ns,
            "netmon_http_requests_refused_total{reason=\"auth_rate_limited\"}"
        ),
        2
    );
    assert_eq!(metric(&agent, ns, "netmon_http_auth_failures_total"), 3);
}

/// A TLS client that connects and never starts its handshake is closed
/// after `--tls-handshake-timeout`; HTTPS still works, and the closure is
/// counted.
#[test]
fn tls_handshake_timeout_closes_silent_clients() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = make_cert(tmp.path());
    // Readable by an agent run as `nobody` (NETMON_TEST_AGENT_USER): a
    // throwaway test key.
    use std::os::unix::fs::PermissionsExt as _;
    for (path, mode) in [
        (tmp.path(), 0o755),
        (cert.as_path(), 0o644),
        (key.as_path(), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let state = tmp.path().join("state");
    let mut child = ns.spawn(&agent_command(
        &state,
        &[
            "--tls-cert",
            cert.to_str().expect("UTF-8"),
            "--tls-key",
            key.to_str().expect("UTF-8"),
            "--tls-handshake-timeout",
            "1s",
        ],
    ));
    let curl = |path: &str| {
        ns.try_exec(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            cert.to_str().expect("UTF-8"),
            "-H",
            &format!("X-API-KEY: {TEST_KEY}"),
            &format!("https://{LISTEN}{path}"),
        ])
    };
    assert!(
        poll_until(START_TIMEOUT, || curl("/health")
            .is_ok_and(|b| b.contains("\"ok\""))),
        "the agent did not come up over HTTPS:\n{}",
        child.stderr_text()
    );
    let mut silent = connect(ns, Duration::from_secs(1));
    let closed = closed_within(&mut silent, Duration::from_secs(1) + SLACK);
    assert!(
        closed.is_some(),
        "a silent TLS client is still open after 6 s"
    );
    let metrics = curl("/metrics").expect("metrics over HTTPS");
    assert!(
        metrics.contains("netmon_http_connections_closed_total{reason=\"tls_handshake\"} 1"),
        "{metrics}"
    );
    child.terminate();
}

/// The inputs that used to panic a worker or answer in text get a JSON 400
/// naming the parameter; a method the path does not serve a JSON 405.
#[test]
fn bad_inputs_get_json_errors_naming_the_parameter() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let _agent = Agent::start(ns, &[]);
    let key = [("X-API-KEY", TEST_KEY)];
    for (path, param) in [
        ("/api/v1/history?series=system&to=100years", "to"),
        (
            "/api/v1/devices/02:00:00:00:00:01/history?from=100years&to=99years",
            "to",
        ),
        ("/api/v1/devices/%FF", "mac"),
        ("/api/v1/devices/%FF/history", "mac"),
        ("/api/v1/devices/zz:00:00:00:00:00", "mac"),
        (
            "/api/v1/history?series=system&from=10000-01-01T00:00:00Z",
            "from",
        ),
        ("/api/v1/flows?limit=-1", "limit"),
    ] {
        let reply = http_get_ok(ns, path, &key);
        assert_json_error(&reply, 400, "bad_request", Some(param), path);
    }
    // The agent is still there, and a method it does not serve is JSON too.
    let mut conn = connect(ns, Duration::from_secs(5));
    write!(conn, "DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut reply = [0u8; 1024];
    let n = conn.read(&mut reply).expect("a reply");
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert!(
        reply.contains("application/json") && reply.contains("method_not_allowed"),
        "{reply}"
    );
}
