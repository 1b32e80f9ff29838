//! Running the web dashboard's browser scripts (`web/e2e/*.mjs`, Node.js
//! with playwright-core driving Debian's headless Chromium) inside a test
//! namespace, and the hub's token command they need.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use super::{agent::agent_bin, netns::NetNs};

/// Debian's Chromium, which `cargo xtask test` installs.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `node web/e2e/<script>` with `env`, a home and a Chromium profile of its
/// own under `tmp`, run inside `ns`; what it printed. Panics if it does not
/// finish within `timeout`.
pub fn run_browser_script(
    ns: &NetNs,
    web: &Path,
    script: &str,
    tmp: &Path,
    env: &[(&str, String)],
    timeout: Duration,
) -> String {
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).expect("home dir");
    let mut cmd = Command::new("node");
    cmd.arg(web.join("e2e").join(script))
        .current_dir(web)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("NETMON_PROFILE", tmp.join("chromium-profile"))
        .env("CHROMIUM", CHROMIUM);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = ns.spawn(&cmd);
    let status = child.wait_with_timeout(timeout);
    let text = format!(
        "--- browser script {script} ({:.1} s, {status:?}) ---\n{}{}",
        started.elapsed().as_secs_f64(),
        child.stdout_text(),
        child.stderr_text()
    );
    if status.is_none() {
        child.terminate();
        panic!("the browser script did not finish in {timeout:?}:\n{text}");
    }
    text
}

/// `netmon-agent hub --state-dir dir token ...`; its stdout.
pub fn hub_token(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(agent_bin())
        .args(["hub", "--state-dir"])
        .arg(dir)
        .arg("token")
        .args(args)
        .output()
        .expect("running hub token");
    assert!(
        out.status.success(),
        "hub token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
