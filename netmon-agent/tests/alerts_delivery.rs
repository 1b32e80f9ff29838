//! Alert delivery against real receivers, on loopback only:
//! - a real Alertmanager (Debian's `prometheus-alertmanager`, started by
//!   the test with a temporary config and storage directory) gets firing
//!   alerts from the engine through [`Delivery`], then their resolution,
//!   read back from its `GET /api/v2/alerts` and its own counters;
//! - Alertmanager killed mid-stream and started again: nothing the engine
//!   produced meanwhile is lost;
//! - a webhook receiver written here checks every body's HMAC-SHA256
//!   signature, answers 503 at first (retries), and gets the transitions
//!   in order;
//! - `netmon-agent rules` passes `promtool check rules`.
//!
//! Needs `/usr/bin/prometheus-alertmanager` and `/usr/bin/promtool`
//! (`apt-get install prometheus-alertmanager prometheus`; `cargo xtask
//! test` installs them). Unprivileged.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime},
};

use netmon_agent::alerts::{
    Values,
    deliver::{Delivery, Kind, Options as DeliveryOptions, Receiver, SIGNATURE_HEADER},
    engine::{Engine, Options as EngineOptions, State},
    rules::Section,
};
use serde_json::Value;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const PROMTOOL: &str = "/usr/bin/promtool";
const WAIT: Duration = Duration::from_secs(30);

fn require(tool: &str, package: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: install Debian's {package} package (`apt-get install {package}`); \
         `cargo xtask test` does this for you"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// An Alertmanager on a loopback port, killed when dropped.
struct Alertmanager {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Self {
        require(ALERTMANAGER, "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(
            dir.path().join("alertmanager.yml"),
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .expect("writing the config");
        let mut am = Alertmanager {
            child: None,
            port: free_port(),
            dir,
        };
        am.spawn();
        am
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let child = Command::new(ALERTMANAGER)
            .arg(format!(
                "--config.file={}",
                d.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("log")).expect("log file"))
            .spawn()
            .expect("starting alertmanager");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while get(&self.url("/-/ready")).map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "alertmanager not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The active alerts' `alertname` and `mac` labels, sorted.
    fn alerts(&self) -> Vec<(String, String)> {
        let (_, body) = get(&self.url("/api/v2/alerts")).expect("GET /api/v2/alerts");
        let v: Value = serde_json::from_str(&body).expect("JSON alerts");
        let mut out: Vec<(String, String)> = v
            .as_array()
            .expect("an array")
            .iter()
            .map(|a| {
                let l = &a["labels"];
                (
                    l["alertname"].as_str().unwrap_or("").to_owned(),
                    l["mac"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// `alertmanager_alerts_received_total{status}` since its start.
    fn received(&self, status: &str) -> f64 {
        let (_, text) = get(&self.url("/metrics")).expect("GET /metrics");
        text.lines()
            .filter(|l| {
                l.starts_with("alertmanager_alerts_received_total{")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `alerts()` is `want`.
    fn wait_for(&self, want: &[(&str, &str)]) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.alerts();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager has {got:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.kill();
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    let mut r = ureq::Agent::new_with_config(config).get(url).call().ok()?;
    Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
}

/// A rule per device, firing at once: `device_tx_bps > 1000`, resolving
/// at 500.
fn engine() -> Engine {
    let text = r#"
        [alerts]
        defaults = false
        [[alerts.rules]]
        name = "burst"
        expr = "device_tx_bps > 1000"
        resolve = 500
        severity = "critical"
        annotations = { summary = "{{ mac }} sends {{ value }} bit/s" }
    "#;
    let rules = Section::from_toml(text).unwrap().rules().unwrap();
    Engine::new(
        rules,
        EngineOptions {
            interval: Duration::from_millis(200),
            resend_every: Duration::from_secs(1),
            ..EngineOptions::default()
        },
    )
}

fn rates(devices: &[(&str, f64)]) -> Values {
    let mut v = Values::new();
    for (mac, bps) in devices {
        v.push("device_tx_bps", [("interface", "br0"), ("mac", *mac)], *bps);
    }
    v
}

fn quick() -> DeliveryOptions {
    DeliveryOptions {
        timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..DeliveryOptions::default()
    }
}

/// Evaluates `values` now and queues what the receivers must get.
fn tick(e: &mut Engine, d: &Delivery, values: &Values) -> Vec<State> {
    let out = e.evaluate(values, SystemTime::now());
    d.send(&out.notify);
    out.events.iter().map(|e| e.to).collect()
}

const A: &str = "02:00:00:00:00:0a";
const B: &str = "02:00:00:00:00:0b";
const C: &str = "02:00:00:00:00:0c";

#[test]
fn alertmanager_gets_firing_then_resolved() {
    let am = Alertmanager::start();
    let d = Delivery::start(
        vec![Receiver {
            url: am.url(""),
            kind: Kind::Alertmanager,
        }],
        quick(),
    )
    .unwrap();
    let mut e = engine();
    assert_eq!(
        tick(&mut e, &d, &rates(&[(A, 5000.0), (B, 10.0)])),
        [State::Firing]
    );
    am.wait_for(&[("burst", A)]);
    let (_, body) = get(&am.url("/api/v2/alerts")).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["labels"]["severity"], "critical");
    assert_eq!(v[0]["labels"]["interface"], "br0");
    assert_eq!(
        v[0]["annotations"]["summary"],
        format!("{A} sends 5000 bit/s")
    );
    // Hysteresis: 700 is above the resolve threshold, still firing.
    assert!(tick(&mut e, &d, &rates(&[(A, 700.0)])).is_empty());
    assert_eq!(tick(&mut e, &d, &rates(&[(A, 400.0)])), [State::Resolved]);
    am.wait_for(&[]);
    assert_eq!(am.received("resolved"), 1.0);
    let (r, stats, queued) = d.stats().next().unwrap();
    assert_eq!(r.kind, Kind::Alertmanager);
    assert_eq!(queued, 0);
    assert_eq!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn alertmanager_down_for_a_while_loses_no_transition() {
    let mut am = Alertmanager::start();
    let d = Delivery::start(
        vec![Receiver {
            url: am.url(""),
            kind: Kind::Alertmanager,
        }],
        quick(),
    )
    .unwrap();
    let mut e = engine();
    tick(&mut e, &d, &rates(&[(A, 5000.0), (B, 5000.0)]));
    am.wait_for(&[("burst", A), ("burst", B)]);
    am.kill();
    // While it is down: A resolves, C fires, B keeps firing (re-sent).
    assert_eq!(
        tick(&mut e, &d, &rates(&[(A, 0.0), (B, 5000.0)])),
        [State::Resolved]
    );
    assert_eq!(
        tick(&mut e, &d, &rates(&[(B, 5000.0), (C, 9000.0)])),
        [State::Firing]
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        tick(&mut e, &d, &rates(&[(B, 5000.0), (C, 9000.0)]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let failures = d
        .stats()
        .map(|(_, s, _)| s.failures.load(std::sync::atomic::Ordering::Relaxed))
        .sum::<u64>();
    assert!(failures > 0, "posts must have failed while it was down");
    // Started again (with an empty memory: Alertmanager keeps no alerts
    // across restarts): the queued resolution and C's firing arrive.
    // The engine goes on evaluating (firing alerts expire at Alertmanager
    // 4 s after their last re-send).
    am.spawn();
    let want = [
        ("burst".to_owned(), B.to_owned()),
        ("burst".to_owned(), C.to_owned()),
    ];
    let deadline = Instant::now() + WAIT;
    while am.alerts() != want || am.received("resolved") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "after the restart: {:?}, {} resolved received",
            am.alerts(),
            am.received("resolved")
        );
        tick(&mut e, &d, &rates(&[(B, 5000.0), (C, 9000.0)]));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(am.received("resolved"), 1.0, "A's resolution, once");
    let (_, stats, _) = d.stats().next().unwrap();
    assert_eq!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// One request a receiver got.
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Answers `statuses` in turn (then 200) and passes each request on.
fn webhook_receiver(mut statuses: Vec<u16>) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Some(req) = read_request(&mut conn) else {
                continue;
            };
            let status = if statuses.is_empty() {
                200
            } else {
                statuses.remove(0)
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if status == 200 && tx.send(req).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST /hook "), "{line}");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")?
        .1
        .parse()
        .ok()?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { headers, body })
}

/// The receiver's own check: HMAC-SHA256 of the body, in constant time.
fn signature_ok(secret: &[u8], req: &Request) -> bool {
    let Some((_, sig)) = req
        .headers
        .iter()
        .find(|(k, _)| *k == SIGNATURE_HEADER.to_ascii_lowercase())
    else {
        return false;
    };
    let Some(hex) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, &req.body, &tag).is_ok()
}

#[test]
fn webhook_gets_signed_transitions_in_order_after_retries() {
    let secret = b"s3cret webhook key".to_vec();
    let (url, got) = webhook_receiver(vec![503, 503]);
    let d = Delivery::start(
        vec![Receiver {
            url,
            kind: Kind::Webhook {
                secret: Some(secret.clone()),
            },
        }],
        quick(),
    )
    .unwrap();
    let mut e = engine();
    tick(&mut e, &d, &rates(&[(A, 5000.0)]));
    tick(&mut e, &d, &rates(&[(A, 0.0)]));
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let req = got.recv_timeout(WAIT).expect("the webhook got nothing");
        assert!(signature_ok(&secret, &req), "bad signature");
        assert!(
            !signature_ok(b"another key", &req),
            "a wrong key must not verify"
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["version"], "1");
        for a in body["alerts"].as_array().unwrap() {
            assert_eq!(a["labels"]["mac"], A);
            statuses.push(a["status"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(statuses, ["firing", "resolved"]);
    // The sender counts once it has read the answer.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, stats, queued) = d.stats().next().unwrap();
        let sent = stats.sent.load(std::sync::atomic::Ordering::Relaxed);
        if queued == 0 && sent == 2 {
            assert_eq!(stats.failures.load(std::sync::atomic::Ordering::Relaxed), 2);
            break;
        }
        assert!(Instant::now() < deadline, "{sent} sent, {queued} queued");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn prometheus_rules_pass_promtool() {
    require(PROMTOOL, "prometheus");
    let out = Command::new(env!("CARGO_BIN_EXE_netmon-agent"))
        .arg("rules")
        .output()
        .expect("running netmon-agent rules");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("netmon.rules.yml");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool");
    assert!(
        check.status.success(),
        "promtool check rules failed:\n{}{}\n--- rules ---\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("SUCCESS: 19 rules found"), "{text}");
}
