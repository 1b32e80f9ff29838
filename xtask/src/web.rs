//! The web dashboard's tools: Node.js and npm (Debian's `nodejs` and `npm`
//! when missing), the dashboard's npm packages (`npm ci` from the committed
//! `web/package-lock.json`), and for the browser tests Debian's `chromium`
//! and `chromium-driver`. Then the bundle is built once into `target/web`
//! to print its size (the agent's build script bundles it again into its
//! own output directory and embeds it).

use std::{fs, path::Path, process::Command, time::SystemTime};

use anyhow::{Context as _, Result, bail};

use crate::{display, status, target_dir, toolchain};

/// The browser and driver the dashboard's end-to-end test drives.
const BROWSER: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromedriver"];

/// Node.js and npm present (installed from Debian when missing), the
/// dashboard's packages installed, and its bundle built (size printed).
pub fn ensure(root: &Path) -> Result<()> {
    let web = root.join("web");
    let mut missing = Vec::new();
    for (tool, package) in [("node", "nodejs"), ("npm", "npm")] {
        match version(tool) {
            Some(v) => eprintln!("xtask: {tool} {v} found"),
            None => missing.push(package),
        }
    }
    if !missing.is_empty() {
        toolchain::apt_install("the dashboard's build tools", &missing)?;
    }
    if !installed_is_current(&web) {
        let mut ci = Command::new("npm");
        ci.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&web);
        eprintln!(
            "xtask: installing the dashboard's packages: {}",
            display(&ci)
        );
        status(&mut ci)?;
    }
    let out = target_dir(root).join("web");
    let mut build = Command::new("node");
    build
        .arg(web.join("build.mjs"))
        .arg("--outdir")
        .arg(&out)
        .current_dir(&web);
    status(&mut build).context("bundling the dashboard")
}

/// Debian's Chromium and ChromeDriver, installed when missing.
pub fn ensure_browser() -> Result<()> {
    if BROWSER.iter().all(|b| Path::new(b).exists()) {
        eprintln!("xtask: chromium and chromedriver found");
        return Ok(());
    }
    toolchain::apt_install(
        "the dashboard's browser test",
        &["chromium", "chromium-driver"],
    )?;
    if let Some(b) = BROWSER.iter().find(|b| !Path::new(b).exists()) {
        bail!("{b} is still missing after installing chromium and chromium-driver");
    }
    Ok(())
}

/// `tool --version`, if it runs.
fn version(tool: &str) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether `web/node_modules` was installed after the lock file and the
/// manifest last changed (npm writes `node_modules/.package-lock.json`).
fn installed_is_current(web: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(&web.join("node_modules/.package-lock.json"));
    let inputs = [web.join("package-lock.json"), web.join("package.json")];
    let newest = inputs
        .iter()
        .filter_map(|p| modified(p))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    installed.is_some_and(|i| i >= newest)
}
