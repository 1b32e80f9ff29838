//! End-to-end tests of `GET /metrics` through the real agent binary inside
//! a test namespace pair: known UDP traffic from A to B, then
//! - the exposition passes `promtool check metrics`;
//! - its device counters equal `/api/v1/devices`, its interface counters
//!   equal the kernel's `statistics/` (both compared at a quiet moment, when
//!   two reads around the scrape agree);
//! - a real Prometheus server (Debian's `prometheus`) scraping the agent
//!   returns the same value through PromQL;
//! - with a non-loopback listen address `/metrics` needs the key.
//!
//! Needs `promtool` and `prometheus` (`apt-get install prometheus`; `cargo
//! xtask test` installs them). Privileged: run as root.

mod common;

use std::{
    fs,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMETHEUS_LISTEN: &str = "127.0.0.1:9590";
const COUNT: usize = 40;
const PAYLOAD: usize = 200;

/// Panics with how to install `tool` when it is missing.
fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: install Debian's prometheus package (`apt-get install prometheus`), \
         which provides promtool and the server; `cargo xtask test` does this for you"
    );
}

/// A pair with static neighbours (no ARP before the datagrams), the agent
/// on A's side with `args`.
fn pair() -> Pair {
    Pair::with_options(PairOptions {
        static_neighbors: true,
        ..PairOptions::default()
    })
}

/// Sends the test's datagrams from A to B.
fn send(pair: &Pair) {
    let src = SocketAddr::new(IpAddr::V4(Pair::IP4_A), 0);
    let dst = SocketAddr::new(IpAddr::V4(Pair::IP4_B), 9);
    pair.a().ns().run(|| udp_send(src, dst, PAYLOAD, COUNT));
}

/// `GET /metrics` with the key; the body.
fn scrape(agent_ns: &NetNs) -> String {
    let r = http_get_ok(agent_ns, "/metrics", &[("X-API-KEY", TEST_KEY)]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok()).flatten()
    })
}

/// The sample of family `name` whose labels include `label`.
fn sample_with(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k.starts_with(&format!("{name}{{")) && k.contains(label))
            .then(|| v.parse().ok())
            .flatten()
    })
}

/// A's device entry in `/api/v1/devices` (on eth0), as (tx bytes, tx
/// packets, rx bytes, rx packets).
fn api_device(body: &Value, mac: &str) -> Option<[u64; 4]> {
    let d = body["devices"]
        .as_array()?
        .iter()
        .find(|d| d["mac"] == mac && d["interface"] == Pair::IFNAME)?;
    Some([
        d["tx"]["bytes"].as_u64()?,
        d["tx"]["packets"].as_u64()?,
        d["rx"]["bytes"].as_u64()?,
        d["rx"]["packets"].as_u64()?,
    ])
}

fn metrics_device(text: &str, mac: &str) -> Option<[u64; 4]> {
    let l = format!("mac=\"{mac}\"");
    let get = |name| sample_with(text, name, &l).map(|v| v as u64);
    Some([
        get("netmon_device_transmit_bytes_total")?,
        get("netmon_device_transmit_packets_total")?,
        get("netmon_device_receive_bytes_total")?,
        get("netmon_device_receive_packets_total")?,
    ])
}

/// Polls until `check` returns `Some(true)`; panics with `what` and the
/// last reason otherwise.
fn until(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => panic!("{what} after {WAIT:?}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The families (`# TYPE` lines: name and type) of `text` equal
/// `tests/golden/metrics.txt`, so a refactor can neither drop nor rename a
/// metric unnoticed; `NETMON_BLESS=1` rewrites the file when a change is
/// meant. The families are those of the agent of the test below (history
/// on, discovery and latency off, one interface with traffic). Families
/// that follow the machine's hardware (temperature sensors, swap) are left
/// out.
fn assert_families_are_golden(text: &str) {
    let mut families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter(|f| !f.starts_with("netmon_hwmon") && !f.starts_with("netmon_swap"))
        .collect();
    families.sort_unstable();
    families.dedup();
    let want = families.join("\n") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.txt");
    if std::env::var_os("NETMON_BLESS").is_some() {
        fs::write(&path, &want).unwrap();
    }
    let have = fs::read_to_string(&path).unwrap_or_default();
    let (gone, new): (Vec<&str>, Vec<&str>) = (
        have.lines().filter(|l| !families.contains(l)).collect(),
        families
            .iter()
            .copied()
            .filter(|f| !have.lines().any(|l| l == *f))
            .collect(),
    );
    assert!(
        gone.is_empty() && new.is_empty(),
        "/metrics families differ from {}: gone {gone:?}, new {new:?}; if the change is meant, \
         run (as root) `NETMON_BLESS=1 cargo test -p netmon-agent --test e2e_metrics metrics_pass_promtool`",
        path.display()
    );
}

#[test]
fn metrics_pass_promtool_and_agree_with_the_api_and_the_kernel() {
    skip_unless_root!();
    require(PROMTOOL);
    let pair = pair();
    let ns = pair.a().ns();
    let agent = Agent::start(
        ns,
        &["--iface", Pair::IFNAME, "--disable", "discovery,latency"],
    );
    send(&pair);
    let mac_a = format_mac(Pair::MAC_A);

    // (1) promtool accepts the exposition.
    let text = scrape(ns);
    let mut check = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    check
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = check.wait_with_output().expect("running promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // (1b) The metric families are the golden ones (refactors keep names),
    // once every enabled collector has a reading and a drain has counted
    // the frames sent (under load the system collector's first reading can
    // come before that drain: then no device has series yet).
    let mut text = text;
    until("the system collector's and the devices' families", || {
        text = scrape(ns);
        for family in [
            "netmon_cpu_usage_ratio",
            "netmon_device_receive_bytes_total",
        ] {
            if !text.contains(&format!("# TYPE {family} ")) {
                return Err(format!("no {family} yet"));
            }
        }
        Ok(())
    });
    assert_families_are_golden(&text);

    // (2) Device counters equal /api/v1/devices at a quiet moment, and
    // include the datagrams sent.
    until("device counters equal /api/v1/devices", || {
        let before = api_device(&agent.get("/api/v1/devices"), &mac_a);
        let text = scrape(ns);
        let after = api_device(&agent.get("/api/v1/devices"), &mac_a);
        let m = metrics_device(&text, &mac_a);
        match (before, m, after) {
            (Some(b), Some(m), Some(a)) if b == a && m == a => Ok(()),
            other => Err(format!("api before, metrics, api after: {other:?}")),
        }
    });
    let text = scrape(ns);
    let [tx_bytes, tx_packets, ..] = metrics_device(&text, &mac_a).expect("device series");
    assert!(tx_packets >= COUNT as u64, "{tx_packets} < {COUNT}");
    // Ethernet + IPv4 + UDP headers on each datagram.
    assert!(
        tx_bytes >= (COUNT * (PAYLOAD + 42)) as u64,
        "{tx_bytes} bytes for {COUNT} datagrams of {PAYLOAD}"
    );
    let ip_label = format!("ip=\"{}\"", Pair::IP4_A);
    assert!(
        sample_with(&text, "netmon_device_transmit_bytes_total", &ip_label).is_some(),
        "A's series lacks {ip_label}:\n{text}"
    );
    assert_eq!(
        sample(&text, "netmon_collector_up{collector=\"interfaces\"}"),
        Some(1.0)
    );
    assert!(!text.contains("collector=\"discovery\""), "{text}");

    // The kernel's counters of eth0 (interfaces collector) equal sysfs.
    let files = ["tx_packets", "tx_bytes", "rx_packets", "rx_bytes"];
    let names = [
        "netmon_network_transmit_packets_total",
        "netmon_network_transmit_bytes_total",
        "netmon_network_receive_packets_total",
        "netmon_network_receive_bytes_total",
    ];
    let kernel = || -> Vec<f64> {
        files
            .iter()
            .map(|f| {
                ns.sysfs(Pair::IFNAME, &format!("statistics/{f}"))
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("statistics/{f}: {e}"))
            })
            .collect()
    };
    until("interface counters equal the kernel's", || {
        let before = kernel();
        let text = scrape(ns);
        let after = kernel();
        let m: Vec<Option<f64>> = names
            .iter()
            .map(|n| sample(&text, &format!("{n}{{device=\"{}\"}}", Pair::IFNAME)))
            .collect();
        let m: Option<Vec<f64>> = m.into_iter().collect();
        match m {
            Some(m) if before == after && m == after => Ok(()),
            other => Err(format!("kernel {before:?} / {after:?}, metrics {other:?}")),
        }
    });
    drop(agent);
}

/// Prometheus running in a namespace; killed (and its data removed) when
/// dropped, also when the test fails.
struct Prometheus {
    child: Option<NsChild>,
    dir: PathBuf,
}

impl Prometheus {
    fn start(ns: &NetNs) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("{}-prometheus", ns.name()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).expect("creating Prometheus' directory");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: netmon\n    \
             authorization:\n      type: Bearer\n      credentials: {TEST_KEY}\n    \
             static_configs:\n      - targets: ['{LISTEN}']\n"
        );
        fs::write(dir.join("prometheus.yml"), config).expect("writing prometheus.yml");
        let mut cmd = Command::new(PROMETHEUS);
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS_LISTEN}"));
        Prometheus {
            child: Some(ns.spawn(&cmd)),
            dir,
        }
    }

    /// The value of an instant PromQL query that returns one sample.
    fn query(&mut self, ns: &NetNs, query: &str) -> Result<f64, String> {
        if let Some(status) = self.child.as_mut().and_then(NsChild::try_status) {
            panic!(
                "prometheus exited ({status}):\n{}",
                self.child
                    .as_ref()
                    .map(NsChild::stderr_text)
                    .unwrap_or_default()
            );
        }
        let url = format!("http://{PROMETHEUS_LISTEN}/api/v1/query");
        let q = query.to_owned();
        let body: Value = ns.run(move || {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build();
            let mut resp = ureq::Agent::new_with_config(config)
                .get(&url)
                .query("query", &q)
                .call()
                .map_err(|e| format!("GET {url}: {e}"))?;
            let text = resp
                .body_mut()
                .read_to_string()
                .map_err(|e| format!("GET {url}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
        })?;
        let result = body["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("no result: {body}"))?;
        match result.as_slice() {
            [one] => one["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no value: {body}")),
            other => Err(format!("{} samples: {body}", other.len())),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn prometheus_scrapes_the_agent_and_answers_promql() {
    skip_unless_root!();
    require(PROMETHEUS);
    let pair = pair();
    let ns = pair.a().ns();
    let agent = Agent::start(
        ns,
        &["--iface", Pair::IFNAME, "--disable", "discovery,latency"],
    );
    let mut prometheus = Prometheus::start(ns);
    send(&pair);
    let mac_a = format_mac(Pair::MAC_A);
    let query = format!("netmon_device_transmit_bytes_total{{mac=\"{mac_a}\"}}");
    until("PromQL returns A's transmitted bytes", || {
        let api =
            api_device(&agent.get("/api/v1/devices"), &mac_a).ok_or("A not in /api/v1/devices")?[0];
        let got = prometheus.query(ns, &query)?;
        if api >= (COUNT * (PAYLOAD + 42)) as u64 && got == api as f64 {
            Ok(())
        } else {
            Err(format!("PromQL {got}, /api/v1/devices {api}"))
        }
    });
    let up = prometheus
        .query(ns, "up{job=\"netmon\"}")
        .expect("up{job=\"netmon\"}");
    assert_eq!(up, 1.0, "Prometheus' scrape of the agent failed");
    drop(prometheus);
    drop(agent);
}

#[test]
fn metrics_need_the_key_unless_on_loopback_or_turned_off() {
    skip_unless_root!();
    let pair = pair();
    let ns = pair.a().ns();
    // 0.0.0.0 is not loopback: auto means the key is needed.
    let agent = Agent::start(ns, &["--iface", Pair::IFNAME, "--listen", "0.0.0.0:9713"]);
    let r = http_get_ok(ns, "/metrics", &[]);
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "unauthorized", "{}", r.text);
    let r = http_get_ok(
        ns,
        "/metrics",
        &[("Authorization", &format!("Bearer {TEST_KEY}"))],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = http_get_ok(ns, "/metrics?debug=1", &[("X-API-KEY", TEST_KEY)]);
    assert_eq!(r.status, 400, "{}", r.text);
    drop(agent);
}

/// On a loopback listen address (`--metrics-auth auto`), or with
/// `--metrics-auth off`, `/metrics` needs no key.
#[test]
fn metrics_are_open_on_loopback_or_when_turned_off() {
    skip_unless_root!();
    let pair = pair();
    let ns = pair.a().ns();
    for args in [
        &["--iface", Pair::IFNAME][..],
        &[
            "--iface",
            Pair::IFNAME,
            "--listen",
            "0.0.0.0:9713",
            "--metrics-auth",
            "off",
        ][..],
    ] {
        let agent = Agent::start(ns, args);
        let r = http_get_ok(ns, "/metrics", &[]);
        assert_eq!(r.status, 200, "{args:?}: {}", r.text);
        assert!(
            r.text.contains("# TYPE netmon_frames_total counter"),
            "{}",
            r.text
        );
        // The rest of the API still needs the key.
        let r = http_get_ok(ns, "/api/v1/devices", &[]);
        assert_eq!(r.status, 401, "{args:?}: {}", r.text);
        drop(agent);
    }
}
