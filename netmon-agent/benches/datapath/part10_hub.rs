//! Part 10: one hub (`netmon-agent hub`, the real binary in its own
//! namespace) and 100 simulated agents pushing a gzip-compressed snapshot
//! with 100 flows and 20 devices every 5 s (issue 17: one hub must hold
//! 100 agents at 5 s on this 2-core VM): the hub's CPU, the ingest latency
//! the agents see (p50, p99, max), its peak memory; then what one host's
//! history costs on disk per day, from two simulated hours written with
//! the hub's store code.

use std::{
    io::Write,
    thread,
    time::{Duration, Instant, SystemTime},
};

use netmon_agent::{
    keys,
    store::{Family, Interval, Retention, SeriesKey, Store, Values, epoch_ms},
};
use serde_json::{Value, json};

use crate::{
    common::{NetNs, agent_bin, poll_until},
    harness::vm_kib,
    part4_5_agent::process_cpu,
};

const AGENTS: usize = 100;
const PUSH_EVERY: Duration = Duration::from_secs(5);
const LISTEN: &str = "127.0.0.1:9300";
/// A host's pushes in the simulated hours: 2 h at 5 s.
const DAY_SAMPLE: usize = 2 * 720;

pub struct HubResult {
    seconds: f64,
    pushes: usize,
    failures: usize,
    body_bytes: usize,
    cpu_percent: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    rss_kib: u64,
    day_used_bytes: u64,
    file_growth_2h: u64,
}

/// Flows each simulated push lists (`--push-flows`' default).
const FLOWS: u64 = 100;

/// A snapshot like a small host's: 3 filesystems, 2 interfaces, 20 devices,
/// and its top 100 flows (distinct addresses, rates and totals as
/// `/api/v1/flows` lists them), push number `seq` of the host: every total
/// grows from one push to the next, so the hub writes a delta for each
/// device and flow.
fn snapshot(host: &str, seq: u64) -> Value {
    let now = netmon_agent::units::time(SystemTime::now());
    let flows: Vec<Value> = (0..FLOWS)
        .map(|i| {
            let bytes = (i + 1) * 1_000 * (seq + 1) + i * 7_919;
            json!({"interface": "eth0", "ifindex": 2, "direction": if i % 2 == 0 { "egress" } else { "ingress" },
                "protocol": "tcp", "protocol_number": 6,
                "src": format!("192.168.1.{}", 10 + i % 20), "dst": format!("10.{}.{}.{}", i % 7, i * 13 % 251, i * 37 % 251),
                "src_mac": format!("02:00:00:00:00:{:02x}", i % 20), "dst_mac": "02:00:00:00:01:fe",
                "bytes": bytes, "packets": bytes / 900, "bits_per_second": (i + 1) as f64 * 1_600.0 / 7.0,
                "packets_per_second": (i + 1) as f64 / 4.5, "first_seen": "2026-12-07T19:00:00.000Z", "last_seen": now})
        })
        .collect();
    let devices: Vec<Value> = (0..20)
        .map(|i| {
            json!({"ip": format!("192.168.1.{}", 10 + i), "mac": format!("02:00:00:00:00:{i:02x}"),
                "deviceName": format!("device-{i}"), "status": if i % 3 == 0 { "idle" } else { "active" },
                "timeChecked": now, "interface": "eth0", "vendor": null, "ips": [format!("192.168.1.{}", 10 + i)],
                "bandwidth": {"rxBytesTotal": 1_000_000 * i * (seq + 1), "txBytesTotal": 2_000_000 * i * (seq + 1),
                    "rxPacketsTotal": 1_000 * i * (seq + 1), "txPacketsTotal": 2_000 * i * (seq + 1),
                    "rxRateBps": 16_384 * i, "txRateBps": 32_768 * i, "utilizationPercent": 0.03 * i as f64}})
        })
        .collect();
    let disk: Vec<Value> = ["/", "/boot", "/var"]
        .iter()
        .map(|m| {
            json!({"mountpoint": m, "device": "/dev/sda1", "fstype": "ext4",
            "totalBytes": 100_000_000_000u64, "usedBytes": 40_000_000_000u64,
            "freeBytes": 60_000_000_000u64, "percentUsed": 40.0})
        })
        .collect();
    json!({
        "messageType": "realtimeSnapshot", "serverId": host, "snapshotTime": now,
        "metrics": {"cpu": {"percent": 12.5}, "memory": {"totalBytes": 8_589_934_592u64,
            "usedBytes": 4_294_967_296u64, "freeBytes": 1_073_741_824u64, "percentUsed": 50.0},
            "disk": disk, "uptimeSeconds": 86_400, "cpuPerCore": [10.0, 15.0], "loadAverage": [0.5, 0.4, 0.3]},
        "network": {"collectionStartTime": now, "collectionEndTime": now, "collectionDurationSeconds": 5,
            "collectionDurationMs": 5000.0,
            "interfaces": [
                {"name": "eth0", "mac": "02:00:00:00:01:01", "ipAddresses": ["192.168.1.2"], "operState": "up",
                 "speedMbps": 1000, "watched": true, "rxBytesTotal": 123_456_789, "txBytesTotal": 98_765_432,
                 "rxRateBps": 3_276_800, "txRateBps": 1_638_400, "utilizationPercent": 0.33},
                {"name": "wlan0", "mac": "02:00:00:00:01:02", "ipAddresses": [], "operState": "down",
                 "speedMbps": null, "watched": true, "rxBytesTotal": 0, "txBytesTotal": 0,
                 "rxRateBps": 0, "txRateBps": 0, "utilizationPercent": null}],
            "connectedDevices": devices},
        "latency": {"unavailable": "off"}, "agentVersion": "bench",
        "agentStartTime": "2026-12-07T19:00:00.000Z",
        "flows": {"updated": now, "interval_seconds": 5.0, "total": 2_500, "capacity": 131_072,
            "evictions": 0, "limit": FLOWS, "omitted": 2_500 - FLOWS, "flows": flows}
    })
}

fn gzip(doc: &Value) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(doc.to_string().as_bytes()).unwrap();
    enc.finish().unwrap()
}

pub fn part10(seconds: Duration) -> HubResult {
    println!(
        "\n## Part 10: one hub, {AGENTS} simulated agents pushing every {} s for {:.0} s\n",
        PUSH_EVERY.as_secs(),
        seconds.as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::new();
    let mut tokens = Vec::new();
    for i in 0..AGENTS {
        let t = keys::random_key().unwrap();
        file.push_str(&format!("host sim-{i:03} {}\n", keys::sha256_form(&t)));
        tokens.push(t);
    }
    std::fs::write(dir.path().join("hub-tokens"), file).unwrap();
    let ns = NetNs::new("hub");
    ns.ip(&["link", "set", "lo", "up"]);
    let mut cmd = std::process::Command::new(agent_bin());
    cmd.args([
        "hub",
        "--listen",
        LISTEN,
        "--push-interval",
        "5s",
        "--log",
        "warn",
    ])
    .arg("--state-dir")
    .arg(dir.path());
    let mut hub = ns.spawn(&cmd);
    let health = format!("http://{LISTEN}/health");
    let up = poll_until(Duration::from_secs(20), || {
        ns.run({
            let h = health.clone();
            move || ureq::get(&h).call().is_ok()
        })
    });
    assert!(up, "the hub did not start:\n{}", hub.stderr_text());
    let body_bytes = gzip(&snapshot("sim-000", 0)).len();

    let pid = hub.id();
    let url = format!("http://{LISTEN}/api/v1/ingest");
    // One warm-up push each (creates the host files), then the window.
    let (cpu0, t0, lat, failures) = ns.run(move || {
        let client = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        for (i, t) in tokens.iter().enumerate() {
            let body = gzip(&snapshot(&format!("sim-{i:03}"), 0));
            let r = client
                .post(&url)
                .header("X-API-KEY", t)
                .header("Content-Encoding", "gzip")
                .send(&body[..])
                .expect("a hub answer");
            assert_eq!(r.status(), 200, "warm-up push of sim-{i:03}");
        }
        let cpu0 = process_cpu(pid);
        let t0 = Instant::now();
        let stop_at = t0 + seconds;
        let handles: Vec<_> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let url = url.clone();
                thread::spawn(move || {
                    let client = ureq::Agent::new_with_config(
                        ureq::Agent::config_builder()
                            .http_status_as_error(false)
                            .timeout_global(Some(Duration::from_secs(10)))
                            .build(),
                    );
                    // Agents spread over the interval, as independent ones are.
                    let mut next = t0 + PUSH_EVERY * i as u32 / AGENTS as u32;
                    let (mut lat, mut failures) = (Vec::new(), 0);
                    let mut seq = 0;
                    while next < stop_at {
                        thread::sleep(next.saturating_duration_since(Instant::now()));
                        seq += 1;
                        let body = gzip(&snapshot(&format!("sim-{i:03}"), seq));
                        let t = Instant::now();
                        match client
                            .post(&url)
                            .header("X-API-KEY", &token)
                            .header("Content-Encoding", "gzip")
                            .send(&body[..])
                        {
                            Ok(r) if r.status() == 200 => lat.push(t.elapsed().as_secs_f64() * 1e3),
                            _ => failures += 1,
                        }
                        next += PUSH_EVERY;
                    }
                    (lat, failures)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut failures = 0;
        for h in handles {
            let (l, f) = h.join().expect("an agent thread");
            all.extend(l);
            failures += f;
        }
        (cpu0, t0, all, failures)
    });
    let elapsed = t0.elapsed();
    let cpu = process_cpu(pid) - cpu0;
    let rss_kib = vm_kib(pid, "VmHWM");
    hub.terminate();
    let mut sorted = lat;
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let (day_used_bytes, file_growth_2h) = day_on_disk(dir.path());
    let r = HubResult {
        seconds: elapsed.as_secs_f64(),
        pushes: sorted.len(),
        failures,
        body_bytes,
        cpu_percent: cpu.as_secs_f64() * 100.0 / elapsed.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        rss_kib,
        day_used_bytes,
        file_growth_2h,
    };
    println!(
        "| agents | push every | window s | pushes (failed) | body (gzip) | hub CPU % of a core | ingest p50 ms | p99 ms | max ms | hub peak RSS | history a host a day: pages in use | file growth over the 2 h |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {AGENTS} | {} s | {:.1} | {} ({}) | {} B | {:.1} | {:.2} | {:.2} | {:.2} | {} MiB | {:.2} MiB | {:.2} MiB |",
        PUSH_EVERY.as_secs(),
        r.seconds,
        r.pushes,
        r.failures,
        r.body_bytes,
        r.cpu_percent,
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.rss_kib / 1024,
        r.day_used_bytes as f64 / 1048576.0,
        r.file_growth_2h as f64 / 1048576.0,
    );
    println!(
        "\nhub CPU: the process's CPU clock over the window (all threads); latency: each simulated \
         agent's POST until the answer, from {AGENTS} threads in the hub's namespace over loopback \
         (their own CPU shares the 2 cores). Each push lists {FLOWS} flows and 20 devices whose \
         totals grow, so the hub writes 121 series a push. A day on disk: {DAY_SAMPLE} pushes \
         (2 h at 5 s) of one host written through the store as the hub writes them (its gauges, 20 \
         device and {FLOWS} flow deltas each), then one maintenance run; \
         pages in use times 12 (redb grows its file by doubling, so the file's growth is not \
         scaled)."
    );
    r
}

/// Pages in use a host's history takes per day, from two simulated hours
/// (the history file's fixed overhead subtracted), and the file's growth
/// over those two hours.
fn day_on_disk(dir: &std::path::Path) -> (u64, u64) {
    let path = dir.join("day.redb");
    let store = Store::open(
        &path,
        Retention {
            size_budget: 64 << 20,
            ..Retention::default()
        },
    )
    .expect("a history file");
    let start = epoch_ms(SystemTime::now()) - 3 * 3_600_000;
    let key = SeriesKey::new(Family::Host, &[]);
    let write = |i: usize| {
        let v = vec![
            12.5 + (i % 7) as f64,
            4.2e9,
            8.5e9,
            49.0,
            40.0,
            3.2e6,
            1.6e6,
            20.0,
            14.0,
            f64::NAN,
        ];
        // As the hub writes a push: the host's gauges, then a delta for
        // each of 20 devices and 100 flows (all of them busy).
        let mut samples = vec![(key.clone(), Values::Gauge(v))];
        let counter = |deltas: Vec<u64>| Values::Counter {
            interval_ms: 5000,
            deltas,
        };
        for d in 0..20u64 {
            let mac = format!("02:00:00:00:00:{d:02x}");
            let k = SeriesKey::new(Family::Device, &["eth0", &mac]);
            samples.push((
                k,
                counter(vec![2_000 * d + i as u64 % 97, 3 * d, 1_000 * d, 2 * d]),
            ));
        }
        for f in 0..FLOWS {
            let (src, dst) = (
                format!("192.168.1.{}", 10 + f % 20),
                format!("10.{}.{}.{}", f % 7, f * 13 % 251, f * 37 % 251),
            );
            let dir = if f % 2 == 0 { "egress" } else { "ingress" };
            let k = SeriesKey::new(Family::Flow, &["eth0", dir, "6", &src, &dst]);
            samples.push((k, counter(vec![(f + 1) * 1_000 + i as u64 % 89, f + 1])));
        }
        store
            .write(&Interval {
                at_ms: start + i as u64 * 5000,
                length_ms: 5000,
                samples,
            })
            .expect("a write");
    };
    write(0);
    let base = store.usage().expect("usage");
    for i in 1..=DAY_SAMPLE {
        write(i);
    }
    store
        .maintain(start + (DAY_SAMPLE as u64 + 24) * 5000)
        .expect("maintenance");
    let after = store.usage().expect("usage");
    (
        after.used_bytes.saturating_sub(base.used_bytes) * 12,
        after.file_bytes.saturating_sub(base.file_bytes),
    )
}

/// Part 10's summary rows.
pub fn summary(h: &HubResult) {
    println!(
        "| hub: {AGENTS} agents at {} s, CPU | {:.1} % of a core | - | - |",
        PUSH_EVERY.as_secs(),
        h.cpu_percent
    );
    println!(
        "| hub: ingest latency | p50 {:.2} ms, p99 {:.2} ms ({} pushes, {} failed) | - | - |",
        h.p50_ms, h.p99_ms, h.pushes, h.failures
    );
    println!(
        "| hub: history a host a day | {:.2} MiB of pages in use | - | - |",
        h.day_used_bytes as f64 / 1048576.0
    );
}
