//! History over real HTTP: the real agent writes every interval to its redb
//! file; the history endpoints read it back. Counter points hold per-interval
//! deltas, so their sum over the agent's life is the device's total.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn sum(history: &Value, field: &str) -> u64 {
    history["points"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["values"][field].as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn history_latest_top_and_stream_agree_with_the_live_counters() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--system-interval=200ms",
            "--disable=discovery,latency",
        ],
    );
    udp_exchange(a, b, 100, 300);
    let mac = format_mac(a.mac());
    let series = format!("device/eth0/{mac}");

    // The history's deltas add up to the live total (once the interval
    // holding the last frames is written).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (history, live) = loop {
        let devices = agent.get("/api/v1/devices");
        let live = devices["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["mac"] == mac.as_str()).cloned());
        let h = agent.try_request(
            &format!("/api/v1/history?series={series}&from=10m&step=raw"),
            &[("X-API-KEY", TEST_KEY)],
        );
        let last = format!(
            "live {live:?}\nhistory {h:?}\nseries {:?}\nstderr {}",
            agent.try_request("/api/v1/series", &[("X-API-KEY", TEST_KEY)]),
            agent.stderr()
        );
        if let (Some(live), Ok((200, h))) = (live, h)
            && sum(&h, "tx_bytes") == live["tx"]["bytes"].as_u64().unwrap_or(0)
            && sum(&h, "tx_bytes") >= 300 * 142
        {
            break (h, live);
        }
        assert!(
            Instant::now() < deadline,
            "history never caught up with {series}:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(history["tier"], "raw");
    assert_eq!(history["kind"], "counter");
    assert_eq!(
        sum(&history, "tx_packets"),
        live["tx"]["packets"].as_u64().unwrap()
    );
    assert!(history["points"][0]["time"].is_string(), "{history:#}");

    // The same from the device's own history, and from the 1-minute tier.
    let dh = agent.get(&format!(
        "/api/v1/devices/{}/history?from=10m",
        mac.to_uppercase()
    ));
    assert_eq!(dh["series"][0]["series"], series.as_str(), "{dh:#}");
    let minute = agent.get(&format!("/api/v1/history?series={series}&from=10m&step=1m"));
    assert_eq!(minute["tier"], "minute");
    assert_eq!(
        sum(&minute, "tx_bytes"),
        sum(&history, "tx_bytes"),
        "{minute:#}"
    );

    // Top talkers: a is the one that sent most.
    let top = agent.get("/api/v1/top?window=10m&by=bytes&limit=1");
    assert_eq!(top["top"][0]["series"], series.as_str(), "{top:#}");
    assert_eq!(
        top["top"][0]["value"].as_f64().unwrap() as u64,
        sum(&history, "tx_bytes"),
        "{top:#}"
    );

    // /latest: newest first, with the interface's totals and the host.
    let latest = agent.get("/latest?limit=5");
    let rows = latest["latest"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() <= 5, "{latest:#}");
    let times: Vec<&str> = rows.iter().map(|r| r["time"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {times:?}"
    );
    assert!(
        rows.iter().any(|r| r["interfaces"]["eth0"].is_object()),
        "{latest:#}"
    );

    // The series list names them.
    let names = agent.get("/api/v1/series?family=device");
    assert!(
        names["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == series.as_str()),
        "{names:#}"
    );

    // Bad parameters are 400s naming them; unknown series 404.
    let key = [("X-API-KEY", TEST_KEY)];
    for (path, status, param) in [
        (
            "/api/v1/history?series=device/eth0/x&from=soon",
            400,
            "from",
        ),
        (
            "/api/v1/history?series=device/eth0/x&from=1m&to=10m",
            400,
            "from",
        ),
        ("/api/v1/history?series=device/eth0/x&step=5s", 400, "step"),
        ("/api/v1/history?series=nonsense", 400, "series"),
        ("/api/v1/history", 400, "series"),
        ("/api/v1/top?window=forever", 400, "window"),
        ("/api/v1/top?by=colour", 400, "by"),
        ("/latest?limit=0", 400, "limit"),
        ("/api/v1/devices/zz/history", 400, "mac"),
    ] {
        let r = http_get_ok(b.ns(), path, &key);
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert_eq!(r.json["error"]["param"], param, "{path}: {}", r.text);
    }
    let r = http_get_ok(
        b.ns(),
        "/api/v1/history?series=device/eth0/02:00:00:00:99:99",
        &key,
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = http_get_ok(b.ns(), "/latest", &[]);
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn the_stream_sends_one_event_per_interval() {
    use std::io::{BufRead as _, BufReader, Write as _};
    skip_unless_root!();
    let pair = Pair::new();
    let agent = Agent::start(
        pair.b().ns(),
        &["--iface=eth0", "--disable=discovery,latency"],
    );
    let events = pair.b().ns().run(|| {
        let mut s = std::net::TcpStream::connect(LISTEN).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nX-API-KEY: {TEST_KEY}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut lines = BufReader::new(s).lines();
        let mut header = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.is_empty() {
                break;
            }
            header.push(line);
        }
        assert!(header[0].contains("200"), "{header:?}");
        assert!(
            header.iter().any(|h| h.to_ascii_lowercase().contains("text/event-stream")),
            "{header:?}"
        );
        let mut data = Vec::new();
        for line in lines {
            let line = line.unwrap();
            if let Some(d) = line.strip_prefix("data: ")
                && let Ok(v) = serde_json::from_str::<Value>(d)
            {
                data.push(v);
                if data.len() == 3 {
                    break;
                }
            }
        }
        data
    });
    drop(agent);
    let times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "one event per drain: {times:?}"
    );
    // The first drain has no interval before it.
    for e in &events[1..] {
        assert_eq!(
            e["interval_seconds"].as_f64().map(|s| s > 0.0),
            Some(true),
            "{e}"
        );
        assert!(e["interfaces"][0]["name"] == "eth0", "{e}");
    }
}

#[test]
fn without_history_the_endpoints_say_why() {
    skip_unless_root!();
    let pair = Pair::new();
    let agent = Agent::start(pair.b().ns(), &["--iface=eth0", "--no-history"]);
    for path in ["/latest", "/api/v1/series", "/api/v1/top"] {
        let (status, body) = agent.try_request(path, &[("X-API-KEY", TEST_KEY)]).unwrap();
        assert_eq!(status, 503, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--no-history"),
            "{path}: {body}"
        );
    }
    assert!(
        agent.stderr().contains("History is off"),
        "{}",
        agent.stderr()
    );
}

/// Polls `/health` until `done` holds for it; panics with the last answer
/// and the agent's log after `timeout`.
fn wait_health(agent: &Agent, timeout: Duration, mut done: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let h = agent.try_request("/health", &[]);
        if let Ok((200, body)) = &h
            && done(body)
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "/health never got there: {h:?}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files in `dir` whose names contain `.damaged-`.
fn damaged_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().contains(".damaged-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_damaged_history_file_is_moved_aside_and_the_agent_counts_on() {
    use netmon_agent::store::{Family, Interval, SeriesKey, Store, Values};
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    for damage in ["garbage", "truncated"] {
        // A damaged file where the history file is (the agent's default
        // place: the state directory).
        let state = Agent::state_dir_in(ns);
        std::fs::create_dir_all(&state).unwrap();
        let file = state.join("netmon.redb");
        if damage == "garbage" {
            let garbage: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
            std::fs::write(&file, &garbage).unwrap();
        } else {
            // A real history, cut short.
            let store = Store::open(&file, Default::default()).unwrap();
            for i in 0..100u64 {
                let sample = (
                    SeriesKey::new(Family::Device, &["eth0", "02:00:00:00:00:01"]),
                    Values::Counter {
                        interval_ms: 1000,
                        deltas: vec![i, 1, 0, 0],
                    },
                );
                store
                    .write(&Interval {
                        at_ms: 1_800_000_000_000 + i * 1000,
                        length_ms: 1000,
                        samples: vec![sample],
                    })
                    .unwrap();
            }
            drop(store);
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            f.set_len(1000).unwrap();
        }
        let damaged = std::fs::read(&file).unwrap();
        let agent = Agent::start(ns, &["--iface=eth0", "--disable=discovery,latency"]);
        let h = wait_health(&agent, Duration::from_secs(5), |h| {
            h["history"] == "degraded"
        });
        let moved = damaged_files(agent.state_dir());
        assert_eq!(moved.len(), 1, "{damage}: {moved:?}\n{h:#}");
        assert!(
            std::fs::read(&moved[0]).unwrap() == damaged,
            "{damage}: kept as it was"
        );
        let reason = h["history_reason"].as_str().unwrap();
        assert!(
            reason.contains("damaged") && reason.contains(&moved[0].display().to_string()),
            "{damage}: {h:#}"
        );
        assert_eq!(h["status"], "ok", "{damage}: the agent counts: {h:#}");
        assert!(
            agent.stderr().contains("The history file is damaged"),
            "{damage}: {}",
            agent.stderr()
        );
        // The fresh file is written.
        agent.wait_for("/latest?limit=1", Duration::from_secs(10), |b| {
            b["latest"].as_array().is_some_and(|r| !r.is_empty())
        });
    }
}

#[test]
fn a_panicking_history_thread_is_restarted_and_health_says_so_meanwhile() {
    skip_unless_root!();
    let pair = Pair::new();
    let agent = Agent::start_with_env(
        pair.b().ns(),
        &[
            "--iface=eth0",
            "--disable=discovery,latency",
            "--store-maintenance-interval=200ms",
        ],
        &[("NETMON_TEST_STORE_PANIC", Some("writer,maintenance"))],
    );
    let degraded = wait_health(&agent, Duration::from_secs(10), |h| {
        h["history"] == "degraded"
    });
    let reason = degraded["history_reason"].as_str().unwrap();
    assert!(
        reason.contains("panicked") && reason.contains("NETMON_TEST_STORE_PANIC"),
        "{degraded:#}"
    );
    // Both threads restart; the history is ok again and keeps being written.
    let ok = wait_health(&agent, Duration::from_secs(10), |h| {
        h["history"] == "ok" && h["history_thread_restarts"] == 2
    });
    assert!(ok.get("history_reason").is_none(), "{ok:#}");
    let text = http_get_ok(pair.b().ns(), "/metrics", &[]).text;
    for thread in ["writer", "maintenance"] {
        assert!(
            text.contains(&format!(
                "netmon_history_thread_restarts_total{{thread=\"{thread}\"}} 1\n"
            )),
            "{text}"
        );
    }
    let before = agent.get("/latest?limit=1")["latest"][0]["time"].clone();
    agent.wait_for("/latest?limit=1", Duration::from_secs(10), |b| {
        b["latest"][0]["time"] != before
    });
}

#[test]
fn sigterm_writes_the_last_intervals() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.redb");
    // A long interval: the writer runs just before each drain, so the
    // drain's newest totals wait almost a whole interval to be written.
    let agent = Agent::start(
        b.ns(),
        &[
            "--iface=eth0",
            "--disable=discovery,latency,system,interfaces",
            "--interval=3s",
            &format!("--store-path={}", path.display()),
        ],
    );
    udp_exchange(a, b, 100, 200);
    let mac = format_mac(a.mac());
    let seen = agent.wait_for("/api/v1/devices", Duration::from_secs(10), |d| {
        d["devices"].as_array().is_some_and(|d| {
            d.iter().any(|d| {
                d["mac"] == mac.as_str() && d["tx"]["packets"].as_u64().unwrap_or(0) >= 200
            })
        })
    });
    let live = seen["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["mac"] == mac.as_str())
        .unwrap()["tx"]
        .clone();
    let status = agent.stop();
    assert!(status.success(), "{status}");
    let store = netmon_agent::store::Store::open(&path, Default::default()).unwrap();
    let h = store
        .query(&format!("device/eth0/{mac}"), 0, u64::MAX, None, u64::MAX)
        .unwrap_or_else(|e| panic!("after SIGTERM the history lacks {mac}'s intervals: {e}"));
    let total = |field: &str| -> u64 {
        h.points
            .iter()
            .map(|p| match p.values[field] {
                netmon_agent::store::FieldValue::Sum(s) => s,
                _ => 0,
            })
            .sum()
    };
    assert!(
        total("tx_packets") >= live["packets"].as_u64().unwrap()
            && total("tx_bytes") >= live["bytes"].as_u64().unwrap(),
        "the history holds {} packets, {} bytes; the agent had counted {live} before SIGTERM",
        total("tx_packets"),
        total("tx_bytes")
    );
}

#[test]
fn the_history_file_is_in_the_state_directory_by_default() {
    skip_unless_root!();
    let pair = Pair::new();
    let agent = Agent::start_with_env(
        pair.b().ns(),
        &["--iface=eth0", "--disable=discovery,latency"],
        &[("NETMON_STORE_PATH", None)],
    );
    agent.wait_for("/latest?limit=1", Duration::from_secs(10), |b| {
        b["latest"].as_array().is_some_and(|r| !r.is_empty())
    });
    assert!(
        agent.state_dir().join("netmon.redb").is_file(),
        "{}",
        agent.stderr()
    );
    assert!(
        agent
            .stderr()
            .contains(&agent.state_dir().join("netmon.redb").display().to_string()),
        "the log names the file:\n{}",
        agent.stderr()
    );
}

#[test]
fn a_history_file_out_of_reach_is_named_with_its_owner_and_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    // A directory only root may enter; the agent runs as nobody.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = locked.join("netmon.redb");
    let store_path = format!("--store-path={}", path.display());
    let cmd = unprivileged(
        UNPRIVILEGED_CAPS,
        &agent_command(
            &Agent::state_dir_in(ns),
            &["--iface=eth0", "--disable=discovery,latency", &store_path],
        ),
    );
    let agent = Agent::start_command(ns, &cmd);
    let h = wait_health(&agent, Duration::from_secs(5), |h| h["history"] == "off");
    let reason = h["history_reason"].as_str().unwrap();
    for needle in [
        path.display().to_string(),
        format!("{}: owner uid 0 (root)", locked.display()),
        "mode 0700".to_owned(),
        "the agent runs as uid 65534".to_owned(),
    ] {
        assert!(reason.contains(&needle), "no {needle:?} in {h:#}");
        assert!(agent.stderr().contains(&needle), "{}", agent.stderr());
    }
}

#[test]
fn a_newer_or_foreign_history_file_still_stops_the_start_with_exit_9() {
    use netmon_agent::store::schema;
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let dir = tempfile::tempdir().unwrap();
    for (name, table, version) in [("foreign", "theirs", None), ("newer", "meta", Some(99u64))] {
        let path = dir.path().join(format!("{name}.redb"));
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            match version {
                Some(v) => {
                    tx.open_table(schema::META)
                        .unwrap()
                        .insert(schema::VERSION_KEY, v)
                        .unwrap();
                }
                None => {
                    tx.open_table(redb::TableDefinition::<u64, u64>::new(table))
                        .unwrap()
                        .insert(1, 2)
                        .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let cmd = agent_command(
            &Agent::state_dir_in(ns),
            &["--iface=eth0", &format!("--store-path={}", path.display())],
        );
        let (status, stderr) = run_to_exit(ns, &cmd);
        let needle = if version.is_some() {
            "newer netmon"
        } else {
            "not a netmon history file"
        };
        assert_exit(status, &stderr, 9, &[needle, &path.display().to_string()]);
        // Its data is as it was (redb rewrites its header on open).
        let db = redb::Database::create(&path).unwrap();
        let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
        match version {
            Some(v) => {
                let meta = rtx.open_table(schema::META).unwrap();
                let found = meta.get(schema::VERSION_KEY).unwrap().map(|g| g.value());
                assert_eq!(found, Some(v), "{name}");
            }
            None => {
                let t = rtx
                    .open_table(redb::TableDefinition::<u64, u64>::new(table))
                    .unwrap();
                assert_eq!(t.get(1).unwrap().map(|g| g.value()), Some(2), "{name}");
            }
        }
        assert!(damaged_files(dir.path()).is_empty(), "{name}: not moved");
    }
}
