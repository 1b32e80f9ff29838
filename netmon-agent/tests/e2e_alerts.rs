//! End-to-end test of the alerts: the real agent in the gateway namespace
//! of a bridged LAN (`common::Lan`) watching `br0`, a real Alertmanager
//! (Debian's `prometheus-alertmanager`) and a webhook receiver written here,
//! both on the gateway's loopback, started by the test.
//!
//! - hosts `h2` and `h3` start unplugged (their bridge ports detached);
//!   plugging `h2` in raises `new_device` at Alertmanager within 3
//!   intervals, with its MAC, IP, interface and vendor as labels; an
//!   admin silences it for that device over the API, and ends the silence;
//! - a burst from `h1` above the test's rule (`device_tx_bps` of h1's MAC
//!   over 4 Mbit/s) fires, then resolves once it ends (Alertmanager counts
//!   the resolution and lists the alert no more);
//! - Alertmanager stopped for 30 s, while a burst fires and resolves and
//!   `h3` joins, then started again: it gets every one of them;
//! - the webhook receiver checks each body's HMAC-SHA256 signature;
//! - `/api/v1/alerts`, `/api/v1/alerts/history` and `/metrics` over HTTP.
//!
//! Needs `/usr/bin/prometheus-alertmanager` (`cargo xtask test` installs
//! it). Privileged: run as root (cargo xtask test does).

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// Alertmanager's port on the gateway's loopback.
const AM_PORT: u16 = 19093;
/// The agent's interval in this test.
const INTERVAL: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "webhook s3cret";
/// A MAC with a registered prefix (Intel), for the vendor label.
const H2_MAC: [u8; 6] = [0x00, 0x1b, 0x21, 0x00, 0x00, 0x02];
const H2_VENDOR: &str = "Intel Corporate";
const H3_MAC: [u8; 6] = [0x50, 0xa6, 0xd8, 0x00, 0x00, 0x03];

/// An HTTP GET from inside `ns`: status and body.
fn get_in(ns: &NetNs, url: &str) -> Option<(u16, String)> {
    let url = url.to_owned();
    ns.run(move || {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build();
        let mut r = ureq::Agent::new_with_config(config).get(&url).call().ok()?;
        Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
    })
}

/// Alertmanager in `ns`, on [`AM_PORT`]; its data dir survives restarts.
struct Alertmanager<'a> {
    ns: &'a NetNs,
    child: Option<NsChild>,
    dir: tempfile::TempDir,
}

impl<'a> Alertmanager<'a> {
    fn start(ns: &'a NetNs) -> Self {
        assert!(
            std::path::Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing: apt-get install prometheus-alertmanager (cargo xtask test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("alertmanager.yml"),
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let mut am = Alertmanager {
            ns,
            child: None,
            dir,
        };
        am.spawn();
        am
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new(ALERTMANAGER);
        cmd.arg(format!(
            "--config.file={}",
            d.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", d.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{AM_PORT}"))
        .arg("--cluster.listen-address=");
        self.child = Some(self.ns.spawn(&cmd));
        let deadline = Instant::now() + WAIT;
        while get_in(self.ns, &self.url("/-/ready")).map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "alertmanager not ready:\n{}",
                self.child.as_ref().unwrap().stderr_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.terminate();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{AM_PORT}{path}")
    }

    /// Its active alerts.
    fn alerts(&self) -> Vec<Value> {
        let (_, body) = get_in(self.ns, &self.url("/api/v2/alerts")).expect("GET /api/v2/alerts");
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn find(&self, alertname: &str, mac: &str) -> Option<Value> {
        self.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == alertname && a["labels"]["mac"] == mac)
    }

    /// `alertmanager_alerts_received_total{status}` since its start.
    fn received(&self, status: &str) -> f64 {
        let (_, text) = get_in(self.ns, &self.url("/metrics")).expect("GET /metrics");
        text.lines()
            .filter(|l| {
                l.starts_with("alertmanager_alerts_received_total{")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Alertmanager<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One webhook post: whether its signature verified, and its alerts'
/// (alertname, mac, status).
type Post = (bool, Vec<(String, String, String)>);

/// A webhook receiver on `ns`'s loopback: checks each body's signature
/// with [`SECRET`] and passes what it got on.
fn webhook(ns: &NetNs) -> (SocketAddr, mpsc::Receiver<Post>) {
    let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Some((sig, body)) = read_post(&mut conn) else {
                continue;
            };
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
            let ok = sig
                .strip_prefix("sha256=")
                .and_then(unhex)
                .is_some_and(|tag| ring::hmac::verify(&key, &body, &tag).is_ok());
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let alerts = v["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
                    (
                        s(&a["labels"]["alertname"]),
                        s(&a["labels"]["mac"]),
                        s(&a["status"]),
                    )
                })
                .collect();
            if tx.send((ok, alerts)).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature header and the body of one POST.
fn read_post(conn: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let (mut len, mut sig) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "x-netmon-signature" => sig = v.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((sig, body))
}

/// Waits until `f` gives something; panics with `what` after `timeout`.
fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Plugs host `i` into the bridge and has it ping the gateway.
fn plug(lan: &Lan, i: usize) {
    lan.gw().ip_line(&format!(
        "link set {} master {} up",
        Lan::port_name(i),
        Lan::BRIDGE
    ));
    let replies = lan
        .host(i)
        .ns()
        .run(|| icmp_echo(Lan::GW_IP4.into(), 2, 56));
    assert!(replies > 0, "h{i} cannot reach the gateway");
}

/// h1 sends about 9.6 Mbit/s to the gateway for `d`.
fn burst(lan: &Lan, d: Duration) {
    let src = SocketAddr::new(lan.host(1).ip4().into(), 0);
    let dst = SocketAddr::new(Lan::GW_IP4.into(), 9);
    lan.host(1)
        .ns()
        .run(move || udp_send_paced(src, dst, 1200, 1000, d));
}

/// What the webhook got so far (each post's signature checked).
fn drain(rx: &mpsc::Receiver<Post>, got: &mut Vec<(String, String, String)>) {
    while let Ok((ok, alerts)) = rx.try_recv() {
        assert!(ok, "a webhook post's signature does not verify: {alerts:?}");
        got.extend(alerts);
    }
}

#[test]
fn new_devices_bursts_and_an_alertmanager_outage() {
    skip_unless_root!();
    let lan = Lan::new(3);
    let gw = lan.gw();
    for (i, mac) in [(2, H2_MAC), (3, H3_MAC)] {
        lan.host(i)
            .ns()
            .ip_line(&format!("link set eth0 address {}", format_mac(mac)));
        gw.ip_line(&format!("link set {} nomaster", Lan::port_name(i)));
    }
    let mut am = Alertmanager::start(gw);
    let (hook, posts) = webhook(gw);
    let dir = tempfile::tempdir().unwrap();
    let h1 = format_mac(lan.host(1).mac());
    let config = dir.path().join("netmon.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerts.rules]]\nname = \"burst\"\nexpr = 'device_tx_bps{{mac=\"{h1}\"}} > 4000000'\n\
             resolve = 1000000\nseverity = \"critical\"\n\
             annotations = {{ summary = \"{{{{ mac }}}} sends {{{{ value }}}} bit/s\" }}\n"
        ),
    )
    .unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let am_url = format!("--alertmanager-url=http://127.0.0.1:{AM_PORT}");
    let hook_url = format!("--webhook-url=http://{hook}/hook");
    let agent = Agent::start(
        gw,
        &[
            "--config",
            config.to_str().unwrap(),
            "--iface=br0",
            "--interval=1s",
            "--discovery-interval=500ms",
            "--discovery-sweep-wait=300ms",
            "--disable=latency",
            "--alerts-learn-devices=2s",
            &am_url,
            &hook_url,
            "--webhook-secret-file",
            secret.to_str().unwrap(),
        ],
    );
    // The first evaluation (after every collector's first reading) and the
    // 2 s after it learn the devices present (a first start: the history
    // knows none).
    agent.wait_for("/api/v1/alerts", WAIT, |b| b["evaluated"].is_string());
    thread::sleep(Duration::from_secs(3));
    let rules = agent.get("/api/v1/alerts");
    assert_eq!(rules["enabled"], true);
    assert_eq!(rules["rules"], 20, "19 defaults on, and the test's rule");

    // (1) A new host joins: new_device at Alertmanager within 3 intervals.
    let h2 = format_mac(H2_MAC);
    let joined = Instant::now();
    plug(&lan, 2);
    let a = wait("new_device for h2 at Alertmanager", WAIT, || {
        am.find("new_device", &h2)
    });
    let took = joined.elapsed();
    eprintln!("new_device at Alertmanager {took:?} after h2 joined (interval {INTERVAL:?})");
    assert!(
        took <= 3 * INTERVAL,
        "new_device took {took:?}, more than 3 intervals"
    );
    let l = &a["labels"];
    assert_eq!(l["interface"], "br0", "{a:#}");
    assert_eq!(l["ip"], lan.host(2).ip4().to_string(), "{a:#}");
    assert_eq!(l["vendor"], H2_VENDOR, "{a:#}");
    assert_eq!(l["severity"], "info", "{a:#}");
    assert!(a["endsAt"].as_str().unwrap() > a["startsAt"].as_str().unwrap());
    // ... and in the API.
    let active = agent.get("/api/v1/alerts");
    let nd = active["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "new_device" && x["labels"]["mac"] == h2.as_str())
        .unwrap_or_else(|| panic!("no new_device for {h2}: {active:#}"));
    assert_eq!(nd["state"], "firing");
    assert_eq!(nd["value"], 1.0);
    assert!(
        nd["since"].is_string() && nd["fired_at"].is_string(),
        "{nd:#}"
    );
    // An admin silences it for h2 (the test key is the admin key): it
    // shows silenced from the next evaluation; a duration of 0s ends it.
    let silence = |duration: &str| {
        let body = serde_json::json!({"rule": "new_device", "mac": h2.to_uppercase(), "duration": duration});
        http_send(
            gw,
            "POST",
            "/api/v1/alerts/silences",
            &[("X-API-KEY", TEST_KEY)],
            Some(&body),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let set = silence("1h");
    assert_eq!(set.status, 200, "{set:#?}");
    assert_eq!(set.json["mac"], h2.as_str());
    agent.wait_for("/api/v1/alerts", WAIT, |b| {
        b["silences"].as_array().is_some_and(|s| s.len() == 1)
            && b["alerts"].as_array().unwrap().iter().any(|x| {
                x["name"] == "new_device"
                    && x["labels"]["mac"] == h2.as_str()
                    && x["silenced"] == true
            })
    });
    assert_eq!(silence("0s").status, 200);
    assert_eq!(silence("0s").status, 404, "ended already");

    // (2) A burst fires, then resolves.
    let resolved_before = am.received("resolved");
    burst(&lan, Duration::from_secs(4));
    let b = wait("burst at Alertmanager", WAIT, || am.find("burst", &h1));
    assert_eq!(b["labels"]["severity"], "critical", "{b:#}");
    assert!(
        b["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains(" bit/s"),
        "{b:#}"
    );
    wait("the burst resolved at Alertmanager", WAIT, || {
        (am.find("burst", &h1).is_none() && am.received("resolved") >= resolved_before + 1.0)
            .then_some(())
    });
    let log = agent.get("/api/v1/alerts/history?from=10m");
    let transitions: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "burst")
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            ("inactive".into(), "firing".into()),
            ("firing".into(), "resolved".into())
        ],
        "{log:#}"
    );
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "new_device" && e["labels"]["mac"] == h2.as_str()),
        "{log:#}"
    );

    // (3) Alertmanager down for 30 s: a burst fires and resolves, h3
    // joins; started again, it gets all of it.
    am.stop();
    let down = Instant::now();
    burst(&lan, Duration::from_secs(3));
    plug(&lan, 3);
    let h3 = format_mac(H3_MAC);
    agent.wait_for("/api/v1/alerts/history?from=1m", WAIT, |log| {
        let e = log["entries"].as_array().unwrap();
        e.iter()
            .any(|e| e["name"] == "burst" && e["to"] == "resolved")
            && e.iter()
                .any(|e| e["name"] == "new_device" && e["labels"]["mac"] == h3.as_str())
    });
    thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    let metrics = agent_metrics(gw);
    assert!(
        metric(
            &metrics,
            "netmon_alerts_send_failures_total{receiver=\"http://127.0.0.1:19093\",kind=\"alertmanager\"}"
        ) > 0.0,
        "posts must have failed while it was down"
    );
    am.spawn();
    // A fresh Alertmanager keeps no alerts: what it has now came from the
    // queue (firing ones are re-sent only every minute).
    wait("h3's new_device after the outage", WAIT, || {
        am.find("new_device", &h3)
    });
    wait("the outage's burst resolution", WAIT, || {
        (am.received("resolved") >= 1.0).then_some(())
    });
    let metrics = agent_metrics(gw);
    assert_eq!(
        metric(
            &metrics,
            "netmon_alerts_dropped_total{receiver=\"http://127.0.0.1:19093\",kind=\"alertmanager\"}"
        ),
        0.0
    );
    // h2 and h3, and whatever else appeared after the first evaluation
    // (h1 when it first sent).
    assert!(
        metric(
            &metrics,
            "netmon_alerts{alertname=\"new_device\",severity=\"info\",state=\"firing\"}"
        ) >= 2.0
    );

    // (4) The webhook got every transition, signed.
    let mut got = Vec::new();
    wait("the webhook's posts", WAIT, || {
        drain(&posts, &mut got);
        let n = |name: &str, status: &str| {
            got.iter()
                .filter(|(a, m, s)| a == name && *m == h1 && s == status)
                .count()
        };
        (n("burst", "firing") >= 2 && n("burst", "resolved") == 2).then_some(())
    });
    for mac in [&h2, &h3] {
        assert!(
            got.iter()
                .any(|(a, m, s)| a == "new_device" && m == mac && s == "firing"),
            "{got:?}"
        );
    }
    drop(agent);
}

/// `/metrics` of the agent in `ns` (open on loopback).
fn agent_metrics(ns: &NetNs) -> String {
    get_in(ns, &format!("http://{LISTEN}/metrics"))
        .expect("GET /metrics")
        .1
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}
