//! `netmon-agent hub`: three agents, each in its own namespace on a LAN,
//! push to one hub in the gateway namespace over real HTTP.
//!
//! Checked: `/api/v1/hosts` lists the three with the figures of what each
//! pushed, matching each agent's own `/api/v1/snapshot`; a host token
//! cannot push as another host (403); a seed-000 style `POST /ingest` with
//! `X-API-KEY` is taken and shows in seed 004's `/hosts` and `/latest`; a
//! revoked token gets 401 from the running hub; and a hub stopped for 30 s
//! loses no interval: each agent's push queue delivers the outage after
//! the restart, and each host's history has no gap.
//!
//! Privileged: run as root (`cargo xtask test` does).

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::*;
use serde_json::{Value, json};

const HUB_PORT: u16 = 9300;

fn hub_url(path: &str) -> String {
    format!("http://{}:{HUB_PORT}{path}", Lan::GW_IP4)
}

/// `method path` on the hub from inside `ns`: status and JSON body.
fn hub_req(
    ns: &NetNs,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let url = hub_url(path);
    let (method, token) = (method.to_owned(), token.to_owned());
    ns.run(move || {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build();
        let client = ureq::Agent::new_with_config(config);
        let req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("X-API-KEY", token.as_str())
            .header("content-type", "application/json");
        let sent = match body {
            Some(b) => client.run(req.body(b.to_string()).unwrap()),
            None => client.run(req.body(()).unwrap()),
        };
        let mut resp = sent.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    })
}

fn hub_get(ns: &NetNs, path: &str, token: &str) -> Value {
    match hub_req(ns, "GET", path, token, None) {
        Ok((200, v)) => v,
        other => panic!("GET {path}: {other:?}"),
    }
}

fn start_hub(gw: &NetNs, dir: &Path, read: &str) -> NsChild {
    let mut cmd = Command::new(agent_bin());
    cmd.arg("hub")
        .arg(format!("--listen={}:{HUB_PORT}", Lan::GW_IP4))
        .arg(format!("--state-dir={}", dir.display()))
        .arg("--push-interval=1s")
        .env("NETMON_LOG", "info");
    let mut child = gw.spawn(&cmd);
    let ok = poll_until(Duration::from_secs(20), || {
        assert!(
            child.try_status().is_none(),
            "the hub exited:\n{}",
            child.stderr_text()
        );
        matches!(hub_req(gw, "GET", "/health", read, None), Ok((200, _)))
    });
    assert!(
        ok,
        "the hub did not answer /health:\n{}",
        child.stderr_text()
    );
    child
}

fn host<'a>(hosts: &'a Value, name: &str) -> Option<&'a Value> {
    hosts["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == name)
}

#[test]
fn three_agents_push_to_one_hub() {
    skip_unless_root!();
    let lan = Lan::new(3);
    let gw = lan.gw();
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let read = hub_token(&hub_dir, &["add", "--read-only", "dashboard"]);
    assert_eq!(read.len(), 64);
    let mut hub = start_hub(gw, &hub_dir, &read);

    let names = ["h1", "h2", "h3"];
    let mut tokens = Vec::new();
    let mut agents = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let t = hub_token(&hub_dir, &["add", name]);
        let key_file = dir.path().join(format!("{name}.key"));
        std::fs::write(&key_file, format!("{t}\n")).unwrap();
        tokens.push(t);
        agents.push(Agent::start(
            lan.host(i + 1).ns(),
            &[
                "--iface=eth0",
                &format!("--server-id={name}"),
                "--no-history",
                &format!("--push-url={}", hub_url("/api/v1/ingest")),
                &format!("--push-key-file={}", key_file.display()),
                "--push-interval=1s",
            ],
        ));
    }
    // Only hashes on disk.
    let file = std::fs::read_to_string(hub_dir.join("hub-tokens")).unwrap();
    assert!(tokens.iter().all(|t| !file.contains(t.as_str())), "{file}");

    // The three, fresh.
    let mut hosts = Value::Null;
    let listed = poll_until(Duration::from_secs(30), || {
        hosts = hub_get(gw, "/api/v1/hosts", &read);
        names
            .iter()
            .all(|n| host(&hosts, n).is_some_and(|h| h["stale"] == false))
    });
    assert!(
        listed,
        "not all three listed:\n{hosts:#}\n{}",
        hub.stderr_text()
    );

    // Each host's figures are those of what it pushed, and match its own API.
    for (i, name) in names.iter().enumerate() {
        let own = agents[i].get("/api/v1/snapshot");
        let one = hub_get(gw, &format!("/api/v1/hosts/{name}"), &read);
        let (sum, snap) = (&one["summary"], &one["snapshot"]);
        assert_eq!(snap["serverId"], *name);
        assert_eq!(
            sum["cpuPercent"], snap["metrics"]["cpu"]["percent"],
            "{one:#}"
        );
        assert_eq!(
            sum["memoryTotalBytes"], own["metrics"]["memory"]["totalBytes"],
            "{name}: hub {one:#}\nagent {own:#}"
        );
        assert_eq!(
            sum["memoryTotalBytes"],
            snap["metrics"]["memory"]["totalBytes"]
        );
        assert_eq!(
            sum["memoryUsedBytes"],
            snap["metrics"]["memory"]["usedBytes"]
        );
        let fullest = |d: &Value| {
            d["metrics"]["disk"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["percentUsed"].as_f64())
                .reduce(f64::max)
        };
        assert_eq!(sum["diskPercent"].as_f64(), fullest(snap));
        // The host's active alerts are those of its last push (the agents
        // run the default rules).
        assert!(snap["alerts"]["firing"].is_u64(), "{snap:#}");
        assert_eq!(sum["alerts"], snap["alerts"], "{one:#}");
        assert!(own["alerts"]["active"].is_array(), "{own:#}");
        let (a, b) = (fullest(&own).unwrap(), fullest(snap).unwrap());
        assert!((a - b).abs() < 1.0, "{name}: disk {a} vs {b}");
        let rates = |k: &str| -> f64 {
            snap["network"]["interfaces"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i[k].as_f64())
                .sum()
        };
        assert_eq!(sum["rxBps"].as_f64(), Some(rates("rxRateBps")), "{one:#}");
        assert_eq!(sum["txBps"].as_f64(), Some(rates("txRateBps")), "{one:#}");
        let own_ifaces: Vec<&Value> = own["network"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["name"])
            .collect();
        let hub_ifaces: Vec<&Value> = snap["network"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["name"])
            .collect();
        assert_eq!(own_ifaces, hub_ifaces, "{name}");
        // Device counts: the agent's own list and the hub's agree once a
        // push after the agent's answer has arrived.
        let mut last = (Value::Null, Value::Null);
        let agree = poll_until(Duration::from_secs(10), || {
            let own = agents[i].get("/api/v1/snapshot");
            let n = own["network"]["connectedDevices"].as_array().unwrap().len();
            std::thread::sleep(Duration::from_millis(1500));
            let one = hub_get(gw, &format!("/api/v1/hosts/{name}"), &read);
            last = (own.clone(), one["summary"]["devices"].clone());
            one["summary"]["devices"] == json!(n)
                && one["devices"].as_array().map(Vec::len) == Some(n)
        });
        assert!(agree, "{name}: devices differ: {last:#?}");
    }

    // Seed 004's list and latest.
    let list = hub_get(gw, "/hosts", &read);
    assert_eq!(list, json!(["h1", "h2", "h3"]));
    let latest = hub_get(gw, "/latest?hostname=h2", &read);
    assert_eq!(latest["messageType"], "realtimeSnapshot");
    assert_eq!(latest["serverId"], "h2");
    let (status, body) = hub_req(gw, "GET", "/latest", &read, None).unwrap();
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("hostname")),
        "{body}"
    );

    // Seed 000's agent: its body with X-API-KEY.
    let pi = hub_token(&hub_dir, &["add", "pi"]);
    let seed000 = json!({"host": "pi", "cpu_pct": 12.5, "mem_pct": 40.0, "disk_pct": 55.0,
        "rx_kbps": 8.0, "tx_kbps": 2.0, "ping_ms": 3.5});
    let (status, body) = hub_req(gw, "POST", "/ingest", &pi, Some(seed000.clone())).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ingested"], true);
    assert!(body["ts"].as_str().is_some(), "{body}");
    assert_eq!(
        hub_get(gw, "/hosts", &read),
        json!(["h1", "h2", "h3", "pi"])
    );
    assert_eq!(hub_get(gw, "/latest?hostname=pi", &read), seed000);
    let hosts = hub_get(gw, "/api/v1/hosts", &read);
    let p = host(&hosts, "pi").unwrap();
    assert_eq!(
        (p["cpuPercent"].as_f64(), p["rxBps"].as_f64()),
        (Some(12.5), Some(8000.0))
    );
    // A bad body: a JSON 400 naming the field.
    let mut bad = seed000.clone();
    bad["mem_pct"] = json!(140);
    let (status, body) = hub_req(gw, "POST", "/ingest", &pi, Some(bad)).unwrap();
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("mem_pct")),
        "{body}"
    );
    // A host's token pushing as another host: 403.
    let mut other = seed000.clone();
    other["host"] = json!("h1");
    let (status, body) = hub_req(gw, "POST", "/ingest", &pi, Some(other)).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    // The read-only token cannot push.
    let (status, _) = hub_req(gw, "POST", "/ingest", &read, Some(seed000.clone())).unwrap();
    assert_eq!(status, 403);

    // Revoked, the running hub refuses the token.
    hub_token(&hub_dir, &["revoke", "pi"]);
    let (status, body) = hub_req(gw, "POST", "/ingest", &pi, Some(seed000)).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized")),
        "{body}"
    );
    let (status, _) = hub_req(gw, "GET", "/hosts", &pi, None).unwrap();
    assert_eq!(status, 401);
    let (status, _) = hub_req(gw, "GET", "/hosts", "not-a-token-at-all-0000", None).unwrap();
    assert_eq!(status, 401);

    // The hub stops for 30 s; the agents' queues deliver the outage.
    let down_ms = now_ms();
    hub.terminate();
    std::thread::sleep(Duration::from_secs(30));
    let mut hub = start_hub(gw, &hub_dir, &read);
    let up_ms = now_ms();
    for name in names {
        let mut points = Vec::new();
        let caught_up = poll_until(Duration::from_secs(60), || {
            let h = hub_get(
                gw,
                &format!("/api/v1/hosts/{name}/history?since=10m&tier=raw"),
                &read,
            );
            points = h["history"]["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["at_ms"].as_u64().unwrap())
                .collect();
            points.last().is_some_and(|&l| l > up_ms + 2000)
        });
        assert!(
            caught_up,
            "{name}: no push after the restart:\n{}",
            hub.stderr_text()
        );
        let during = points.iter().filter(|&&t| t > down_ms && t < up_ms).count();
        assert!(
            during >= 27,
            "{name}: only {during} samples from the 30 s outage"
        );
        for w in points.windows(2) {
            let step = w[1] - w[0];
            assert!(
                step <= 1600,
                "{name}: a gap of {step} ms at {} in {points:?}",
                w[0]
            );
        }
    }
    let stats = hub_get(gw, "/api/v1/hub", &read);
    assert_eq!(stats["counters"]["hosts"], 4, "{stats:#}");
    assert_eq!(stats["counters"]["writeFailures"], 0, "{stats:#}");
    hub.terminate();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The fields a ranked talker is compared by: its series, its value, and
/// its totals' values (its time span is each store's own intervals).
fn talkers(top: &Value) -> Vec<(Value, Value, Value)> {
    top["top"]
        .as_array()
        .unwrap_or_else(|| panic!("no top: {top:#}"))
        .iter()
        .map(|r| {
            (
                r["series"].clone(),
                r["value"].clone(),
                r["total"]["values"].clone(),
            )
        })
        .collect()
}

/// One agent (history on) pushes to a hub while two hosts exchange UDP:
/// the hub's flows of the host are the agent's own `/api/v1/flows` of the
/// same interval field for field (bounded by `--push-flows`, the rest
/// counted as omitted), its top talkers (flows and devices) are the
/// agent's own `/api/v1/top` over the same window, and an admin removes
/// the host: its token then gets 401, its history file is gone, and other
/// tokens cannot remove hosts.
#[test]
fn a_hosts_flows_and_top_talkers_match_its_agent_and_it_can_be_removed() {
    skip_unless_root!();
    let lan = Lan::new(2);
    let gw = lan.gw();
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let read = hub_token(&hub_dir, &["add", "--read-only", "dashboard"]);
    let admin = hub_token(&hub_dir, &["add", "--admin", "ops"]);
    let mut hub = start_hub(gw, &hub_dir, &read);
    let token = hub_token(&hub_dir, &["add", "h1"]);
    let key_file = dir.path().join("h1.key");
    std::fs::write(&key_file, format!("{token}\n")).unwrap();
    const LISTED: usize = 3;
    let agent = Agent::start(
        lan.host(1).ns(),
        &[
            "--iface=eth0",
            "--server-id=h1",
            "--interval=1s",
            &format!("--push-url={}", hub_url("/api/v1/ingest")),
            &format!("--push-key-file={}", key_file.display()),
            "--push-interval=1s",
            &format!("--push-flows={LISTED}"),
        ],
    );
    let listed = poll_until(Duration::from_secs(30), || {
        hub_req(gw, "GET", "/api/v1/hosts/h1/flows", &read, None).is_ok_and(|(s, _)| s == 200)
    });
    assert!(listed, "h1 never pushed:\n{}", hub.stderr_text());

    // Two flows of known sizes each way (and whatever else the link carries).
    let (h1, h2) = (lan.host(1), lan.host(2));
    icmp_echo_between(h1, h2);
    udp_exchange(h1, h2, 1000, 300);
    udp_exchange(h2, h1, 400, 100);
    std::thread::sleep(Duration::from_secs(3));

    // The flows: the hub's of the interval the agent answered for.
    let mut own_by_time = std::collections::HashMap::new();
    let mut last = (Value::Null, Value::Null);
    let same = poll_until(Duration::from_secs(30), || {
        let own = agent.get(&format!("/api/v1/flows?limit={LISTED}"));
        own_by_time.insert(own["updated"].to_string(), own);
        let hub = hub_get(gw, "/api/v1/hosts/h1/flows", &read);
        let Some(own) = own_by_time.get(&hub["updated"].to_string()) else {
            std::thread::sleep(Duration::from_millis(200));
            return false;
        };
        last = (own.clone(), hub.clone());
        for k in [
            "flows",
            "total",
            "capacity",
            "evictions",
            "interval_seconds",
        ] {
            assert_eq!(own[k], hub[k], "{k}: agent {own:#}\nhub {hub:#}");
        }
        true
    });
    assert!(same, "no push of an interval the agent answered: {last:#?}");
    let (own, hub_flows) = last;
    // The busiest by rate (the pushes to the hub, now that the UDP bursts
    // are over), at most --push-flows, the rest counted.
    let n = hub_flows["flows"].as_array().unwrap().len() as u64;
    let total = own["total"].as_u64().unwrap();
    assert_eq!(n, total.min(LISTED as u64), "{hub_flows:#}");
    assert!(total > LISTED as u64, "more flows than listed: {own:#}");
    assert_eq!(hub_flows["limit"], LISTED as u64);
    assert_eq!(
        hub_flows["omitted"].as_u64(),
        Some(total - n),
        "{hub_flows:#}"
    );

    // The size of what is pushed (printed for the README): the agent's
    // snapshot, gzip-compressed as its push does.
    let doc = serde_json::to_vec(&agent.get("/api/v1/snapshot")).unwrap();
    eprintln!(
        "snapshot with {n} flows listed: {} B of JSON, {} B gzip-compressed",
        doc.len(),
        netmon_agent::push::gzip(&doc).len()
    );

    // Top talkers over the same window, from each side's history.
    for (family, limit) in [("flow", 2), ("device", 50)] {
        let q = format!("top?window=1h&family={family}&limit={limit}");
        let mut seen = (Vec::new(), Vec::new());
        let equal = poll_until(Duration::from_secs(20), || {
            let own = talkers(&agent.get(&format!("/api/v1/{q}")));
            let hub = talkers(&hub_get(gw, &format!("/api/v1/hosts/h1/{q}"), &read));
            // The agent also ranks what a push does not list as devices
            // (groups): compare the hub's against the same series of the
            // agent's. Devices still talking (the agent and the gateway:
            // the pushes) move on between the two answers: compare the
            // quiet ones, h2 among them.
            let quiet = |t: &(Value, Value, Value)| {
                family == "flow" || t.0 == format!("device/eth0/{}", format_mac(h2.mac()))
            };
            let own: Vec<_> = own
                .into_iter()
                .filter(|o| hub.iter().any(|h| h.0 == o.0) && quiet(o))
                .collect();
            let hub: Vec<_> = hub.into_iter().filter(quiet).collect();
            let ok = !hub.is_empty() && own == hub;
            seen = (own, hub);
            if !ok {
                std::thread::sleep(Duration::from_millis(500));
            }
            ok
        });
        assert!(equal, "{family} talkers differ: agent vs hub {seen:#?}");
        if family == "flow" {
            // The two UDP flows, their bytes as sent (1000 x 300 egress).
            let top = &seen.1;
            assert!(
                top[0]
                    .0
                    .as_str()
                    .unwrap()
                    .starts_with("flow/eth0/egress/17/"),
                "{top:?}"
            );
            assert_eq!(top[0].2["packets"], 300, "{top:?}");
        } else {
            let h2_mac = format_mac(h2.mac());
            assert!(
                seen.1
                    .iter()
                    .any(|t| t.0 == format!("device/eth0/{h2_mac}")),
                "h2 is a talker: {:?}",
                seen.1
            );
        }
    }

    // A device's history on the hub (h2, quiet now): the sum of its points
    // equals the totals its latest push carried (the agent started after
    // the hub, so all it counted is new) and the agent's own history of
    // the same series, field for field.
    let series = format!("device/eth0/{}", format_mac(h2.mac()));
    let sums = |history: &Value| {
        let mut out = std::collections::BTreeMap::new();
        for p in history["points"].as_array().into_iter().flatten() {
            for (k, v) in p["values"].as_object().unwrap() {
                *out.entry(k.clone()).or_insert(0) += v.as_u64().unwrap();
            }
        }
        out
    };
    let mut seen = Value::Null;
    let equal = poll_until(Duration::from_secs(20), || {
        let on_hub = hub_get(
            gw,
            &format!("/api/v1/hosts/h1/history?series={series}&tier=raw"),
            &read,
        );
        let own = agent.get(&format!("/api/v1/history?series={series}&step=raw"));
        let latest = hub_get(gw, "/api/v1/hosts/h1", &read);
        let pushed = latest["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["mac"] == format_mac(h2.mac()))
            .map(|d| {
                let b = &d["bandwidth"];
                ["rx_bytes", "rx_packets", "tx_bytes", "tx_packets"]
                    .into_iter()
                    .zip([
                        "rxBytesTotal",
                        "rxPacketsTotal",
                        "txBytesTotal",
                        "txPacketsTotal",
                    ])
                    .map(|(k, t)| (k.to_owned(), b[t].as_u64().unwrap()))
                    .collect::<std::collections::BTreeMap<_, _>>()
            });
        let h = sums(&on_hub["history"]);
        let ok = on_hub["history"]["series"] == series.as_str()
            && h.get("tx_bytes").is_some_and(|b| *b > 0)
            && Some(&h) == pushed.as_ref()
            && h == sums(&own);
        seen = json!({"hub": h, "pushed": pushed, "agent": sums(&own)});
        if !ok {
            std::thread::sleep(Duration::from_millis(500));
        }
        ok
    });
    assert!(equal, "h2's history on the hub differs: {seen:#}");
    eprintln!("h2's history on the hub: {seen}");
    // h2 sent h1 100 datagrams of 400 bytes of payload: at least that much.
    assert!(
        seen["hub"]["tx_bytes"].as_u64().unwrap() >= 100 * 400,
        "{seen}"
    );
    let (status, names) = hub_req(
        gw,
        "GET",
        "/api/v1/hosts/h1/series?family=device",
        &read,
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{names}");
    assert!(
        names["series"].as_array().unwrap().contains(&json!(series)),
        "{names}"
    );
    for (q, want, param) in [
        ("series=nope", 400, json!("series")),
        ("series=device/eth0/02:00:00:00:00:99", 404, Value::Null),
    ] {
        let (status, body) = hub_req(
            gw,
            "GET",
            &format!("/api/v1/hosts/h1/history?{q}"),
            &read,
            None,
        )
        .unwrap();
        assert_eq!(
            (status, &body["error"]["param"]),
            (want, &param),
            "{q}: {body}"
        );
    }

    // Removal: not by a host's or a read-only token; unknown hosts are 404.
    let file = hub_dir.join("hosts/h1.redb");
    assert!(file.exists());
    for t in [&read, &token] {
        let (status, body) = hub_req(gw, "DELETE", "/api/v1/hosts/h1", t, None).unwrap();
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("forbidden")),
            "{body}"
        );
    }
    let (status, body) = hub_req(gw, "DELETE", "/api/v1/hosts/nope", &admin, None).unwrap();
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, body) = hub_req(gw, "DELETE", "/api/v1/hosts/h1", &admin, None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tokenRevoked"], true, "{body}");
    assert!(body["historyBytes"].as_u64().unwrap() > 0, "{body}");
    // The agent goes on pushing with the revoked token: 401, nothing kept.
    let before = hub_get(gw, "/api/v1/hub", &read)["counters"]["refused"]["unauthorized"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let stats = hub_get(gw, "/api/v1/hub", &read);
    assert!(
        stats["counters"]["refused"]["unauthorized"]
            .as_u64()
            .unwrap()
            >= before + 2,
        "the agent's pushes are refused: {stats:#}"
    );
    assert_eq!(stats["counters"]["removed"], 1, "{stats:#}");
    assert!(!file.exists(), "the history file is gone");
    let snap = agent.get("/api/v1/snapshot");
    let (status, _) = hub_req(gw, "POST", "/api/v1/ingest", &token, Some(snap)).unwrap();
    assert_eq!(status, 401);
    assert_eq!(hub_get(gw, "/hosts", &read), json!([]));
    let (status, _) = hub_req(gw, "GET", "/api/v1/hosts/h1/flows", &read, None).unwrap();
    assert_eq!(status, 404);

    // `hub host remove`: refused while the hub holds the host's file,
    // done once it is stopped.
    let pi = hub_token(&hub_dir, &["add", "pi"]);
    let body = json!({"host": "pi", "cpu_pct": 1.0, "mem_pct": 2.0, "disk_pct": 3.0,
        "rx_kbps": 4.0, "tx_kbps": 5.0});
    let (status, _) = hub_req(gw, "POST", "/ingest", &pi, Some(body)).unwrap();
    assert_eq!(status, 200);
    let pi_file = hub_dir.join("hosts/pi.redb");
    let remove = |name: &str| {
        Command::new(agent_bin())
            .args(["hub", "--state-dir"])
            .arg(&hub_dir)
            .args(["host", "remove", name])
            .output()
            .unwrap()
    };
    let out = remove("pi");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("DELETE /api/v1/hosts/pi"),
        "{err}"
    );
    assert!(pi_file.exists());
    hub.terminate();
    let out = remove("pi");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!pi_file.exists(), "{err}");
    let list = hub_token(&hub_dir, &["list"]);
    assert!(!list.contains("pi"), "{list}");
    assert!(!remove("nope").status.success());
}

/// A ping each way, so that both hosts' neighbours are resolved before
/// the UDP bursts.
fn icmp_echo_between(a: &Host, b: &Host) {
    let (ip_b, ip_a) = (b.ip4(), a.ip4());
    a.ns().run(move || icmp_echo(ip_b.into(), 1, 16));
    b.ns().run(move || icmp_echo(ip_a.into(), 1, 16));
}
