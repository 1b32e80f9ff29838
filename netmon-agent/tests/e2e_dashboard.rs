//! The web dashboard in a real browser: Debian's headless Chromium, driven
//! by `web/e2e/dashboard.mjs` (playwright-core), against the real agent in a
//! test namespace with real traffic.
//!
//! The script signs in with a read-only key, finds the device that sent
//! the traffic in the devices table with at least the bytes it sent, sees
//! its history chart draw points and the overview's rate chart move within
//! two intervals, gets the banner for a wrong key, checks the security
//! headers and that no page logged a console error, and renames the device
//! with the admin key; this test then finds the new name in `/metrics`.
//! On the security page it finds the process this test runs from /tmp,
//! every compliance check with the API's result and the package count.
//! Screenshots of every page at 1280 and 390 px land in
//! `target/dashboard-screenshots/`; the first render of the overview is
//! printed (`first render of the overview: N ms`).
//!
//! Needs root (namespaces, the agent), Node.js with `web/node_modules`
//! (`npm ci --prefix web`) and `/usr/bin/chromium`: `cargo xtask test`
//! installs all of them.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use common::*;

/// A read-only key, written to a `--read-only-key-file`.
const RO_KEY: &str = "dashboard-read-only-0123456789";
/// What the admin renames the device to.
const RENAMED: &str = "e2e-renamed printer";
/// The agent's interval: the overview's chart must move within two.
const INTERVAL_MS: u64 = 1000;
/// Datagrams of [`PAYLOAD`] bytes the device sends before the browser looks.
const DATAGRAMS: usize = 300;
const PAYLOAD: usize = 1000;
/// Longest the browser script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// Panics with how to install what the test needs, if anything is missing.
fn require_browser_tools(web: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: `cargo xtask test` installs Node.js (apt-get install nodejs npm)"
    );
    assert!(
        web.join("node_modules/playwright-core/package.json")
            .exists(),
        "web/node_modules is missing: run `npm ci --prefix web` (cargo xtask test does)"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `cargo xtask test` installs it (apt-get install chromium chromium-driver)"
    );
}

#[test]
fn the_dashboard_works_in_a_real_browser_against_the_real_agent() {
    skip_unless_root!();
    let web = workspace().join("web");
    require_browser_tools(&web);
    let shots = workspace().join("target/dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let pair = Pair::new();
    let ns = pair.b().ns();
    let tmp = std::env::temp_dir().join(format!("{}-dashboard", ns.name()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let keys = tmp.join("read-only-keys");
    std::fs::write(&keys, format!("{RO_KEY}\n")).expect("key file");
    // A process run from a copy of a binary in /tmp: the security page's
    // finding (killed when the test ends, however it ends).
    let tmp_dir = tempfile::Builder::new()
        .prefix("netmon-e2e-dash-")
        .tempdir_in("/tmp")
        .expect("temp dir in /tmp");
    let copy = tmp_dir.path().join("sleeper");
    std::fs::copy("/bin/sleep", &copy).expect("copy /bin/sleep");
    let sleeper = KillOnDrop(Command::new(&copy).arg("600").spawn().expect("sleeper"));
    let agent = Agent::start(
        ns,
        &[
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--read-only-key-file",
            keys.to_str().expect("UTF-8 path"),
        ],
    );

    // The device (end A) sends; B's agent counts it.
    let mac = format_mac(Pair::MAC_A);
    let sink = ns.run(|| udp_sink(format!("{}:0", Pair::IP4_B).parse().expect("address")));
    let to = sink.local_addr();
    let from = format!("{}:0", Pair::IP4_A).parse().expect("address");
    pair.a().ns().run(|| udp_send(from, to, PAYLOAD, DATAGRAMS));
    let sent = (DATAGRAMS * PAYLOAD) as u64;
    agent.wait_for("/api/v1/devices", START_TIMEOUT, |b| {
        b["devices"].as_array().is_some_and(|d| {
            d.iter()
                .any(|x| x["mac"] == mac && x["tx"]["bytes"].as_u64() >= Some(sent))
        })
    });
    // ... and keeps sending a little, so the live chart has rates to draw.
    let stop = AtomicBool::new(false);
    let output = std::thread::scope(|scope| {
        scope.spawn(|| {
            pair.a().ns().run(|| {
                while !stop.load(Ordering::Relaxed) {
                    udp_send(from, to, 500, 5);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        let output = run_browser(ns, &web, &tmp, &shots, &mac, sent, sleeper.0.id());
        stop.store(true, Ordering::Relaxed);
        output
    });
    drop(sink);
    eprintln!("{output}");
    for line in output.lines().filter_map(|l| l.strip_prefix("result ")) {
        if let Some(ms) = line.strip_prefix("first_render_ms ") {
            eprintln!("first render of the overview: {ms} ms (after navigation start)");
        }
    }
    assert!(
        output.contains("dashboard e2e: every check passed"),
        "the browser checks failed:\n{output}\nagent stderr:\n{}",
        agent.stderr()
    );

    // The admin's name is served in the API and in /metrics.
    let one = agent.get(&format!("/api/v1/devices/{mac}"));
    assert_eq!(one["devices"][0]["name"], RENAMED, "{one:#}");
    let metrics = http_get_ok(ns, "/metrics", &[]);
    let line = metrics
        .text
        .lines()
        .find(|l| {
            l.starts_with("netmon_device_transmit_bytes_total{")
                && l.contains(&format!("mac=\"{mac}\""))
        })
        .unwrap_or_else(|| panic!("no series of {mac} in /metrics:\n{}", metrics.text));
    assert!(
        line.contains(&format!("name=\"{RENAMED}\"")),
        "/metrics does not name the device {RENAMED:?}: {line}"
    );

    // Every page at both widths.
    for page in [
        "signin",
        "overview",
        "devices",
        "device",
        "top",
        "flows",
        "interfaces",
        "system",
        "latency",
        "security",
        "wrong-key",
    ] {
        for width in [1280, 390] {
            let file = shots.join(format!("{page}-{width}.png"));
            let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "no screenshot {}", file.display());
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A child process killed and reaped when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the browser script inside `ns` (where the agent listens on
/// loopback) and returns what it printed; panics if it hangs.
#[allow(clippy::too_many_arguments)]
fn run_browser(
    ns: &NetNs,
    web: &Path,
    tmp: &Path,
    shots: &Path,
    mac: &str,
    sent: u64,
    tmp_pid: u32,
) -> String {
    let env = [
        ("NETMON_URL", format!("http://{LISTEN}")),
        ("NETMON_RO_KEY", RO_KEY.to_owned()),
        ("NETMON_ADMIN_KEY", TEST_KEY.to_owned()),
        ("NETMON_DEVICE_MAC", mac.to_owned()),
        ("NETMON_SENT_BYTES", sent.to_string()),
        ("NETMON_INTERVAL_MS", INTERVAL_MS.to_string()),
        ("NETMON_RENAME", RENAMED.to_owned()),
        ("NETMON_TMP_PID", tmp_pid.to_string()),
        ("NETMON_SCREENSHOTS", shots.display().to_string()),
    ];
    run_browser_script(ns, web, "dashboard.mjs", tmp, &env, SCRIPT_TIMEOUT)
}
