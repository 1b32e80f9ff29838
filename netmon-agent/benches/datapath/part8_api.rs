//! Part 8: API latency under load, with 1000 devices in the real agent.

use std::{
    net::SocketAddrV4,
    thread,
    time::{Duration, Instant},
};

use crate::{
    common::{self, Agent, ETHERTYPE_IPV4, Pair, eth, ipv4_udp},
    harness::{BATCH, FLOOD_PAYLOAD, RawSocket, SINK_PORT},
};

const API_DEVICES: usize = 1000;
const API_CLIENTS: usize = 4;
const API_SECONDS: u64 = 5;

pub struct ApiLatency {
    path: &'static str,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
}

pub fn part8() -> Vec<ApiLatency> {
    println!(
        "\n## Part 8: API latency with {API_DEVICES} devices ({API_CLIENTS} client threads, {API_SECONDS} s an endpoint)\n"
    );
    let pair = Pair::new();
    let agent = Agent::start(
        pair.b().ns(),
        &[
            "--iface=eth0",
            "--interval=1s",
            "--log=info",
            "--disable=discovery,latency",
        ],
    );
    // One frame from each of 1000 MACs.
    let frames: Vec<Vec<u8>> = (0..API_DEVICES)
        .map(|i| {
            let src = [0x02, 0x10, 0, 0, (i / 256) as u8, (i % 256) as u8];
            let ip = ipv4_udp(
                SocketAddrV4::new(Pair::IP4_A, 4000),
                SocketAddrV4::new(Pair::IP4_B, SINK_PORT),
                &[0x5a; FLOOD_PAYLOAD],
            );
            eth(Pair::MAC_B, src, ETHERTYPE_IPV4, &ip)
        })
        .collect();
    pair.a().ns().run(|| {
        let sock = RawSocket::open(Pair::IFNAME);
        for chunk in frames.chunks(BATCH) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let mut done = 0;
            while done < refs.len() {
                done += sock.send_or_skip(&refs[done..]);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.get("/api/v1/devices")["devices"]
        .as_array()
        .map_or(0, Vec::len)
        < API_DEVICES
    {
        assert!(
            Instant::now() < deadline,
            "the agent never listed {API_DEVICES} devices"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let mut out = Vec::new();
    for path in ["/metrics", "/api/v1/devices"] {
        let url = format!("http://{}{path}", common::LISTEN);
        let latencies: Vec<f64> = pair.b().ns().run(|| {
            let stop_at = Instant::now() + Duration::from_secs(API_SECONDS);
            let handles: Vec<_> = (0..API_CLIENTS)
                .map(|_| {
                    let url = url.clone();
                    thread::spawn(move || {
                        let client = ureq::Agent::new_with_config(
                            ureq::Agent::config_builder()
                                .timeout_global(Some(Duration::from_secs(10)))
                                .build(),
                        );
                        let mut lat = Vec::new();
                        while Instant::now() < stop_at {
                            let t = Instant::now();
                            let mut r = client
                                .get(&url)
                                .header("X-API-KEY", common::TEST_KEY)
                                .call()
                                .expect("an API answer");
                            let _ = r.body_mut().read_to_vec().expect("a body");
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        lat
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a client thread"))
                .collect()
        });
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
        let r = ApiLatency {
            path,
            requests: sorted.len(),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        };
        println!(
            "{path:<16} {} requests: p50 {:.2} ms, p99 {:.2} ms",
            r.requests, r.p50_ms, r.p99_ms
        );
        out.push(r);
    }
    out
}

/// Part 8's summary rows.
pub fn summary(api: &[ApiLatency]) {
    for a in api {
        println!(
            "| {} latency with {API_DEVICES} devices, {API_CLIENTS} clients | p50 {:.2} ms, p99 {:.2} ms ({} requests in {API_SECONDS} s) | - | - |",
            a.path, a.p50_ms, a.p99_ms, a.requests
        );
    }
}
