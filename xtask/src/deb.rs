//! `cargo xtask deb`: the Debian package, built by cargo-deb from
//! `[package.metadata.deb]` in netmon-agent/Cargo.toml (installed first if
//! missing). `--install-test` then installs it with `dpkg -i`, checks what
//! landed where, and purges it again, checking that nothing is left.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, display, is_root, output, status, toolchain};

/// Pinned so CI builds the package the same way every time.
const CARGO_DEB_VERSION: &str = "3.8.0";

#[derive(clap::Args)]
pub struct DebArgs {
    /// Install the package with dpkg, check it, and purge it (root only).
    #[arg(long)]
    install_test: bool,
}

pub fn run(root: &Path, args: DebArgs) -> Result<ExitCode> {
    toolchain::ensure_all(root)?;
    ensure_cargo_deb(root)?;
    // The build's progress shows on stderr; stdout is the package's path.
    let out = output(
        cargo(root)
            .arg(format!("+{}", toolchain::USERSPACE_TOOLCHAIN))
            .args(["deb", "-p", "netmon-agent"])
            .stderr(Stdio::inherit()),
    )?;
    // cargo-deb prints the package's path last.
    let deb = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    if !deb.is_file() {
        bail!("cargo deb did not print a package path; it printed:\n{out}");
    }
    println!("{}", deb.display());
    if args.install_test {
        install_test(&deb)?;
        println!("dpkg -i installed the files and the user; dpkg --purge removed them.");
    }
    Ok(ExitCode::SUCCESS)
}

fn ensure_cargo_deb(root: &Path) -> Result<()> {
    if output(cargo(root).args(["deb", "--version"])).is_ok() {
        return Ok(());
    }
    let mut install = cargo(root);
    install
        .arg(format!("+{}", toolchain::USERSPACE_TOOLCHAIN))
        .args(["install", "cargo-deb", "--version", CARGO_DEB_VERSION, "--locked"]);
    eprintln!("xtask: installing cargo-deb: {}", display(&install));
    status(&mut install)
}

/// What the package must put in place.
const FILES: &[&str] = &[
    "/usr/bin/netmon-agent",
    "/lib/systemd/system/netmon-agent.service",
    "/lib/systemd/system/netmon-agent-caps.service",
    "/lib/systemd/system/netmon-hub.service",
    "/etc/netmon/netmon.toml",
    "/usr/share/doc/netmon-agent/README.md",
];

fn install_test(deb: &Path) -> Result<()> {
    if !is_root() {
        bail!("--install-test installs a package: run it as root");
    }
    if Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "netmon-agent"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
    {
        bail!("a netmon-agent package is installed already; the test will not replace it");
    }
    let purge = Purge;
    status(Command::new("dpkg").arg("-i").arg(deb))?;
    for f in FILES {
        if !Path::new(f).exists() {
            bail!("dpkg -i did not install {f}");
        }
    }
    if !passwd_has("netmon")? {
        bail!("the postinst did not create the netmon user");
    }
    status(Command::new("/usr/bin/netmon-agent").args(["config", "check"]))?;
    let unit = fs::read_to_string("/lib/systemd/system/netmon-agent-caps.service")?;
    if !unit.contains("\nExecStart=/usr/bin/netmon-agent\n") {
        bail!("the packaged unit does not start /usr/bin/netmon-agent");
    }
    status(Command::new("systemd-analyze").args([
        "verify",
        "/lib/systemd/system/netmon-agent.service",
        "/lib/systemd/system/netmon-agent-caps.service",
        "/lib/systemd/system/netmon-hub.service",
    ]))?;
    drop(purge);
    for f in FILES {
        if Path::new(f).exists() {
            bail!("dpkg --purge left {f}");
        }
    }
    if passwd_has("netmon")? {
        bail!("dpkg --purge left the netmon user");
    }
    Ok(())
}

fn passwd_has(user: &str) -> Result<bool> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    Ok(passwd.lines().any(|l| l.split(':').next() == Some(user)))
}

/// Purges the package when dropped, so a failed check leaves nothing behind.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "netmon-agent"]).status();
    }
}
