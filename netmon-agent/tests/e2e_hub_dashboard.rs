//! The web dashboard served by `netmon-agent hub`, in Debian's headless
//! Chromium (`web/e2e/hub.mjs`, playwright-core): a real agent in its own
//! namespace pushes to the hub in the gateway namespace over real HTTP.
//!
//! The script signs in with the hub's read-only token, sees only the hub's
//! pages in the navigation, finds the host on the Hosts page with every
//! figure equal to the hub's `/api/v1/hosts` answer the page got, opens the
//! Host page and sees its history chart draw points and its devices, opens
//! a device's view from its row and sees its traffic chart draw the
//! hub's history of the device (real points, real bytes), checks
//! the security headers, and that no page logged a console error.
//! Screenshots land in `target/dashboard-screenshots/hub-*.png`.
//!
//! Needs root (namespaces), Node.js with `web/node_modules` and
//! `/usr/bin/chromium`: `cargo xtask test` installs all of them.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::*;

const HUB_PORT: u16 = 9300;
const HOST: &str = "web01";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

fn hub_url(path: &str) -> String {
    format!("http://{}:{HUB_PORT}{path}", Lan::GW_IP4)
}

/// GET `path` on the hub from inside `ns`: status and body.
fn hub_get(ns: &NetNs, path: &str, token: &str) -> Option<(u16, String)> {
    let (url, token) = (hub_url(path), token.to_owned());
    ns.run(move || {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build();
        let mut r = ureq::Agent::new_with_config(config)
            .get(&url)
            .header("X-API-KEY", token.as_str())
            .call()
            .ok()?;
        Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
    })
}

#[test]
fn the_hub_dashboard_shows_the_hosts_in_a_real_browser() {
    skip_unless_root!();
    let web = workspace().join("web");
    for (ok, what) in [
        (
            Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "node (apt-get install nodejs npm)",
        ),
        (
            web.join("node_modules/playwright-core/package.json")
                .exists(),
            "web/node_modules (npm ci --prefix web)",
        ),
        (Path::new(CHROMIUM).exists(), CHROMIUM),
    ] {
        assert!(ok, "{what} is missing: `cargo xtask test` installs it");
    }
    let shots = workspace().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    let lan = Lan::new(1);
    let gw = lan.gw();
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let read = hub_token(&hub_dir, &["add", "--read-only", "dashboard"]);
    let host_token = hub_token(&hub_dir, &["add", HOST]);
    let key_file = dir.path().join("push.key");
    std::fs::write(&key_file, format!("{host_token}\n")).unwrap();

    let mut cmd = Command::new(agent_bin());
    cmd.arg("hub")
        .arg(format!("--listen={}:{HUB_PORT}", Lan::GW_IP4))
        .arg(format!("--state-dir={}", hub_dir.display()))
        .arg("--push-interval=1s")
        .env("NETMON_LOG", "info");
    let mut hub = gw.spawn(&cmd);
    let _agent = Agent::start(
        lan.host(1).ns(),
        &[
            "--iface=eth0",
            &format!("--server-id={HOST}"),
            "--no-history",
            &format!("--push-url={}", hub_url("/api/v1/ingest")),
            &format!("--push-key-file={}", key_file.display()),
            "--push-interval=1s",
        ],
    );
    // The host is listed, fresh, with a few points of history.
    let mut last = None;
    let listed = poll_until(Duration::from_secs(30), || {
        assert!(
            hub.try_status().is_none(),
            "the hub exited:\n{}",
            hub.stderr_text()
        );
        last = hub_get(gw, &format!("/api/v1/hosts/{HOST}/history"), &read);
        last.as_ref().is_some_and(|(s, b)| {
            *s == 200
                && serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| {
                    v["history"]["points"]
                        .as_array()
                        .is_some_and(|p| p.len() >= 3)
                })
        })
    });
    assert!(
        listed,
        "no history of {HOST}: {last:?}\n{}",
        hub.stderr_text()
    );

    // Traffic from the host to the gateway, so its flows and top talkers
    // have real rows; the hub has ranked it before the browser starts.
    let sink = gw.run(|| udp_sink(std::net::SocketAddr::new(Lan::GW_IP4.into(), 0)));
    let (to, from) = (sink.local_addr(), lan.host(1).ip4());
    lan.host(1)
        .ns()
        .run(move || icmp_echo(Lan::GW_IP4.into(), 1, 16));
    lan.host(1).ns().run(move || {
        udp_send(std::net::SocketAddr::new(from.into(), 0), to, 800, 200);
    });
    assert!(sink.wait_for(200, Duration::from_secs(10)));
    let ranked = poll_until(Duration::from_secs(20), || {
        hub_get(gw, &format!("/api/v1/hosts/{HOST}/top?family=flow"), &read).is_some_and(
            |(s, b)| {
                s == 200
                    && serde_json::from_str::<serde_json::Value>(&b)
                        .is_ok_and(|v| v["top"].as_array().is_some_and(|t| !t.is_empty()))
            },
        )
    });
    assert!(
        ranked,
        "the hub ranked no flow of {HOST}:
{}",
        hub.stderr_text()
    );

    // The gateway's device series on the hub holds two samples of traffic
    // (a second burst after the first is stored), so the device view's
    // chart has a line to draw.
    let gw_series = format!("device/eth0/{}", format_mac(gw.mac("br0")));
    let points = |read: &str| {
        hub_get(
            gw,
            &format!("/api/v1/hosts/{HOST}/history?series={gw_series}&tier=raw"),
            read,
        )
        .filter(|(s, _)| *s == 200)
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["history"]["points"].as_array().map(Vec::len))
        .unwrap_or(0)
    };
    assert!(
        poll_until(Duration::from_secs(20), || points(&read) >= 1),
        "no history of {gw_series} on the hub:\n{}",
        hub.stderr_text()
    );
    let before = points(&read);
    lan.host(1).ns().run(move || {
        udp_send(std::net::SocketAddr::new(from.into(), 0), to, 800, 50);
    });
    assert!(sink.wait_for(250, Duration::from_secs(10)));
    assert!(
        poll_until(Duration::from_secs(20), || points(&read) > before),
        "the second burst is not in {gw_series}'s history on the hub"
    );

    let tmp = dir.path().join("browser");
    let env = [
        ("NETMON_URL", hub_url("")),
        ("NETMON_HUB_TOKEN", read.clone()),
        ("NETMON_HOST", HOST.to_owned()),
        ("NETMON_SCREENSHOTS", shots.display().to_string()),
    ];
    let output = run_browser_script(gw, &web, "hub.mjs", &tmp, &env, SCRIPT_TIMEOUT);
    eprintln!("{output}");
    assert!(
        output.contains("hub dashboard e2e: every check passed"),
        "the browser checks failed:\n{output}\nhub stderr:\n{}",
        hub.stderr_text()
    );
    for page in ["signin", "hosts", "host", "host-device"] {
        for width in [1280, 390] {
            let file = shots.join(format!("hub-{page}-{width}.png"));
            let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "no screenshot {}", file.display());
        }
    }
    hub.terminate();
}
