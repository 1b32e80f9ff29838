//! `--push-url`: the agent pushes its snapshot to a receiver in another
//! namespace, over the test's veth pair.
//!
//! The receiver here is written like seed 000's `/ingest`: it takes the
//! key from `X-API-KEY` (and checks the Bearer copy), gunzips the body and
//! keeps the document. It is stopped (its port closed: connections are
//! refused) and started again, and every interval pushed meanwhile must
//! arrive afterwards, in order, with no gap.
//!
//! Privileged: run as root (`cargo xtask test` does).

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use common::*;
use serde_json::Value;

const KEY: &str = "push-test-key-0123456789";

/// One push as the receiver saw it.
struct Pushed {
    headers: Vec<(String, String)>,
    doc: Value,
}

/// A receiver listening on `addr` inside `ns`, sending each pushed
/// document to its channel.
struct Receiver<'a> {
    ns: &'a NetNs,
    addr: SocketAddr,
    closing: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    rx: mpsc::Receiver<Pushed>,
}

impl<'a> Receiver<'a> {
    fn start(ns: &'a NetNs, addr: SocketAddr) -> Self {
        let (tx, rx) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let listener = ns.run(move || TcpListener::bind(addr).expect("binding the receiver"));
        let thread = Some(serve(listener, tx, Arc::clone(&closing)));
        Receiver {
            ns,
            addr,
            closing,
            thread,
            rx,
        }
    }

    fn next(&self) -> Pushed {
        self.rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a push within 10 s")
    }

    /// Closes the port: connections are refused from now on. A push caught
    /// in between gets no answer (the agent retries it).
    fn stop(mut self) {
        self.closing.store(true, Ordering::SeqCst);
        let addr = self.addr;
        self.ns.run(|| {
            let _ = std::net::TcpStream::connect(addr);
        });
        self.thread.take().unwrap().join().unwrap();
    }
}

fn serve(
    listener: TcpListener,
    tx: mpsc::Sender<Pushed>,
    closing: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if closing.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).unwrap_or(0) == 0 {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
            let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let len: usize = header("content-length").unwrap().parse().unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            if !request.starts_with("POST /ingest ") {
                continue;
            }
            let mut json = Vec::new();
            if header("content-encoding").as_deref() == Some("gzip") {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut json)
                    .expect("a gzip body");
            } else {
                json = body;
            }
            let doc = serde_json::from_slice(&json).expect("a JSON body");
            let _ = tx.send(Pushed { headers, doc });
        }
    })
}

fn snapshot_time(doc: &Value) -> SystemTime {
    humantime::parse_rfc3339(doc["snapshotTime"].as_str().unwrap()).unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Pushes arrive gzipped with both key headers, in seed 001's shape; the
/// receiver goes away for a while (connections refused) and every interval
/// pushed meanwhile arrives once it is back, in order, with no gap.
#[test]
fn pushes_survive_a_receiver_outage_without_a_gap() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("push-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let addr = SocketAddr::from((a.ip4(), 8765));
    let url = format!("--push-url=http://{addr}/ingest");
    let key_arg = format!("--push-key-file={}", key_file.display());
    let _agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--interval=200ms",
            "--server-id=pusher",
            "--no-history",
            &url,
            &key_arg,
        ],
    );

    let metrics = || http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;

    // Up: documents arrive, in the seed's shape, with both key headers.
    let first = Receiver::start(a.ns(), addr);
    let mut got: Vec<Pushed> = (0..3).map(|_| first.next()).collect();
    let i = with_system_metrics(&first, &mut got);
    let p = &got[i];
    let header = |n: &str| {
        p.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-api-key"), Some(KEY));
    assert_eq!(
        header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(header("content-encoding"), Some("gzip"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(p.doc["serverId"], "pusher");
    let problems = seed001_mismatches(&p.doc);
    assert!(problems.is_empty(), "{problems:#?}\n{:#}", p.doc);

    // Down: the port is closed; what was received before stays in `got`.
    while let Ok(p) = first.rx.try_recv() {
        got.push(p);
    }
    let down_at = SystemTime::now();
    first.stop();
    std::thread::sleep(Duration::from_secs(6));
    let m = metrics();
    assert!(metric(&m, "netmon_push_failures_total") > 0, "{m}");
    assert!(metric(&m, "netmon_push_queued") >= 20, "{m}");

    // Up again: everything pushed while it was down arrives, in order.
    let second = Receiver::start(a.ns(), addr);
    let back_at = SystemTime::now();
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = second.next();
        let t = snapshot_time(&p.doc);
        after.push(p);
        if t > back_at + Duration::from_secs(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog never drained");
    }
    let times: Vec<SystemTime> = got
        .iter()
        .chain(&after)
        .map(|p| snapshot_time(&p.doc))
        .collect();
    for w in times.windows(2) {
        let step = w[1].duration_since(w[0]).expect("in order");
        assert!(
            step < Duration::from_millis(700),
            "a gap of {step:?} in {times:?}"
        );
    }
    let during = times
        .iter()
        .filter(|t| **t > down_at && **t < back_at)
        .count();
    assert!(during >= 25, "only {during} pushes from the 6 s outage");
    let m = metrics();
    assert_eq!(metric(&m, "netmon_push_dropped_total"), 0, "{m}");
    assert_eq!(metric(&m, "netmon_push_rejected_total"), 0, "{m}");
}

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// `GET url` from inside `ns`: the status and body.
/// `--push-compression none`: plain JSON, no `Content-Encoding`, for the
/// earlier receivers that cannot decompress a request body.
#[test]
fn a_receiver_that_cannot_gunzip_gets_plain_json() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let addr = SocketAddr::from((a.ip4(), 8766));
    let url = format!("--push-url=http://{addr}/ingest");
    let receiver = Receiver::start(a.ns(), addr);
    let _agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--interval=200ms",
            "--no-history",
            "--push-compression=none",
            &url,
        ],
    );
    let mut got = vec![receiver.next()];
    let i = with_system_metrics(&receiver, &mut got);
    let p = &got[i];
    assert!(
        !p.headers.iter().any(|(k, _)| k == "content-encoding"),
        "{:?}",
        p.headers
    );
    let problems = seed001_mismatches(&p.doc);
    assert!(problems.is_empty(), "{problems:#?}\n{:#}", p.doc);
    receiver.stop();
}

/// The index in `got` of the first push made after the system collector's
/// first reading, receiving more from `rx` while none is: a push made
/// before it carries the host's figures as null (never 0), which the seed's
/// types do not describe.
fn with_system_metrics(rx: &Receiver, got: &mut Vec<Pushed>) -> usize {
    for _ in 0..50 {
        if let Some(i) = got.iter().position(|p| !p.doc["metrics"]["cpu"].is_null()) {
            return i;
        }
        got.push(rx.next());
    }
    panic!(
        "no push carried the system collector's figures: {:#}",
        got.last().map(|p| &p.doc).unwrap_or(&Value::Null)
    )
}

fn get_in(ns: &NetNs, url: &str, query: &[(&str, &str)]) -> Option<(u16, String)> {
    let (url, query): (String, Vec<(String, String)>) = (
        url.to_owned(),
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    ns.run(move || {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build();
        let mut req = ureq::Agent::new_with_config(config).get(&url);
        for (k, v) in &query {
            req = req.query(k, v);
        }
        let mut resp = req.call().ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.body_mut().read_to_string().ok()?))
    })
}

/// The series of `name` for interface eth0 in an exposition, by label set.
fn eth0_series(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out: Vec<_> = netmon_agent::push::remote_write::parse_exposition(text, 0)
        .into_iter()
        .map(|ts| {
            let labels: Vec<(String, String)> =
                ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            (labels, ts.samples[0].value)
        })
        .filter(|(labels, _)| {
            labels.contains(&("__name__".to_owned(), name.to_owned()))
                && labels.contains(&("interface".to_owned(), "eth0".to_owned()))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A real Prometheus started with its remote-write receiver gets netmon's
/// series from `--remote-write-url`: after the traffic stops, PromQL
/// answers exactly what `/metrics` says, label for label.
#[test]
fn remote_write_reaches_a_real_prometheus() {
    skip_unless_root!();
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's prometheus package (`cargo xtask test` does)"
    );
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        "global:\n  scrape_interval: 1h\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(PROMETHEUS);
    cmd.arg(format!(
        "--config.file={}",
        dir.path().join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.path().join("data").display()
    ))
    .arg("--web.listen-address=127.0.0.1:19090")
    .arg("--web.enable-remote-write-receiver");
    let mut prometheus = b.ns().spawn(&cmd);
    let ready = poll_until(Duration::from_secs(60), || {
        get_in(b.ns(), "http://127.0.0.1:19090/-/ready", &[]).is_some_and(|(s, _)| s == 200)
    });
    assert!(
        ready,
        "prometheus never got ready:\n{}",
        prometheus.stderr_text()
    );

    let _agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--interval=200ms",
            "--no-history",
            "--remote-write-url=http://127.0.0.1:19090/api/v1/write",
            "--remote-write-interval=500ms",
        ],
    );
    udp_exchange(a, b, 100, 300);
    let metrics = || http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    const NAME: &str = "netmon_interface_receive_bytes_total";
    // Until /metrics holds still (the traffic is over), then until a write
    // after that has reached Prometheus: both must say the same.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = eth0_series(&metrics(), NAME);
        std::thread::sleep(Duration::from_millis(1500));
        let m = metrics();
        let now = eth0_series(&m, NAME);
        let (_, body) = get_in(
            b.ns(),
            "http://127.0.0.1:19090/api/v1/query",
            &[("query", &format!("{NAME}{{interface=\"eth0\"}}"))],
        )
        .expect("a PromQL answer");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let mut promql: Vec<(Vec<(String, String)>, f64)> = answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut labels: Vec<(String, String)> = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                labels.sort();
                (labels, r["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect();
        promql.sort_by(|a, b| a.0.cmp(&b.0));
        if before == now && !now.is_empty() && promql == now {
            assert!(now.iter().all(|(_, v)| *v >= 300.0 * 142.0), "{m}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PromQL never agreed with /metrics:\n{promql:?}\n{now:?}\n{}",
            prometheus.stderr_text()
        );
    }
    let m = metrics();
    for family in [
        "netmon_remote_write_sent_total",
        "netmon_remote_write_dropped_total",
    ] {
        assert!(m.contains(family), "no {family} in\n{m}");
    }
    assert!(
        m.contains(
            "netmon_remote_write_rejected_total{url=\"http://127.0.0.1:19090/api/v1/write\"} 0"
        ),
        "{m}"
    );
    prometheus.terminate();
}
