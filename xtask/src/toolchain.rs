//! Makes sure the build's tools are installed, and installs what is missing:
//! the pinned userspace toolchain, the nightly that builds the eBPF object,
//! bpf-linker, and the web dashboard's Node.js and packages (see `web.rs`).
//! Each check prints one line so a slow install is not a silent one.

use std::{env, fs, io, path::Path, process::Command};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{display, is_root, output, status};

/// The userspace toolchain. Keep in step with `rust-toolchain.toml` (a test
/// checks).
pub const USERSPACE_TOOLCHAIN: &str = "1.98.0";
const USERSPACE_COMPONENTS: &[&str] = &["clippy", "rustfmt"];

/// The nightly that builds the eBPF object (`-Z build-std=core` needs nightly
/// and its `rust-src`). Keep in step with `EBPF_TOOLCHAIN` in
/// `netmon-agent/build.rs` (a test checks).
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-07-01";
const EBPF_COMPONENTS: &[&str] = &["rust-src", "clippy", "rustfmt"];

/// Debian packages bpf-linker builds against. The LLVM major version here, in
/// [`LLVM_BIN_DIR`] and in bpf-linker's `llvm-NN` feature must agree.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// Put first on PATH so llvm-sys finds LLVM 22's llvm-config rather than the
/// distribution default in /usr/bin.
const LLVM_BIN_DIR: &str = "/usr/lib/llvm-22/bin";
/// Pinned so a new release cannot rename the `llvm-22` feature under CI.
const BPF_LINKER_INSTALL: &[&str] = &[
    "install",
    "bpf-linker",
    "--version",
    "0.13.0",
    "--locked",
    "--no-default-features",
    "--features",
    "llvm-22",
];

/// Installs whatever of the two toolchains, bpf-linker and the dashboard's
/// tools is missing.
pub fn ensure_all(root: &Path) -> Result<()> {
    let host = host_triple(root)?;
    let listed = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to install toolchains; see https://rustup.rs")?;
    ensure_toolchain(USERSPACE_TOOLCHAIN, USERSPACE_COMPONENTS, &host, &listed)?;
    ensure_toolchain(EBPF_TOOLCHAIN, EBPF_COMPONENTS, &host, &listed)?;
    ensure_bpf_linker(root)?;
    crate::web::ensure(root)
}

/// The host's target triple, as the userspace rustc reports it.
pub fn host_triple(root: &Path) -> Result<String> {
    let version = output(Command::new("rustc").arg("-vV").current_dir(root))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("`rustc -vV` printed no `host:` line"))
}

fn ensure_toolchain(name: &str, components: &[&str], host: &str, listed: &str) -> Result<()> {
    if !toolchain_listed(listed, name, host) {
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "install", name, "--profile", "minimal", "-c"])
            .arg(components.join(","));
        eprintln!("xtask: installing toolchain {name}: {}", display(&cmd));
        return status(&mut cmd);
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        name,
    ]))?;
    let missing = missing_components(&installed, components);
    if missing.is_empty() {
        eprintln!("xtask: toolchain {name} found ({})", components.join(", "));
        return Ok(());
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["component", "add", "--toolchain", name])
        .args(&missing);
    eprintln!(
        "xtask: adding {} to {name}: {}",
        missing.join(", "),
        display(&cmd)
    );
    status(&mut cmd)
}

/// Whether `rustup toolchain list` output names `name` for `host`.
fn toolchain_listed(listed: &str, name: &str, host: &str) -> bool {
    let full = format!("{name}-{host}");
    listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|toolchain| toolchain == full || toolchain == name)
}

/// Which of `wanted` are absent from `rustup component list --installed`
/// output, whose lines are `rust-src` or `clippy-x86_64-unknown-linux-gnu`.
fn missing_components<'a>(installed: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let present = |component: &str| {
        installed.lines().map(str::trim).any(|line| {
            line.strip_prefix(component)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
    };
    wanted.iter().copied().filter(|c| !present(c)).collect()
}

fn ensure_bpf_linker(root: &Path) -> Result<()> {
    match bpf_linker_version() {
        Ok(version) => {
            eprintln!("xtask: {version} found");
            return Ok(());
        }
        Err(why) => eprintln!("xtask: bpf-linker missing: {why:#}"),
    }

    // LLVM 22 first on PATH: llvm-sys builds against the first llvm-config it finds.
    let mut path = env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    path.insert(0, LLVM_BIN_DIR.into());
    let mut install = Command::new("cargo");
    install
        .arg(format!("+{USERSPACE_TOOLCHAIN}"))
        .args(BPF_LINKER_INSTALL)
        .current_dir(root)
        .env("PATH", env::join_paths(path).context("joining PATH")?);

    if !is_debian_like() {
        bail!(
            "bpf-linker is missing, and xtask installs it only on Debian and Ubuntu. \
             Install LLVM 22 with its development files, then run (with that LLVM's \
             bin directory in place of {LLVM_BIN_DIR}):\n  {}",
            display(&install)
        );
    }

    let packages = missing_apt_packages();
    let apt = (!packages.is_empty()).then(|| {
        let mut update = Command::new("apt-get");
        update
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive");
        let mut add = Command::new("apt-get");
        add.args(["install", "-y"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        [update, add]
    });
    if let Some(apt) = &apt
        && !is_root()
    {
        let apt = apt.iter().map(|cmd| format!("  sudo {}\n", display(cmd)));
        bail!(
            "bpf-linker is missing and installing its build dependencies needs root. \
             Rerun as root, or run:\n{}  {}",
            apt.collect::<String>(),
            display(&install)
        );
    }

    for mut cmd in apt.into_iter().flatten().chain([install]) {
        eprintln!("xtask: installing bpf-linker: {}", display(&cmd));
        status(&mut cmd)?;
    }
    let version = bpf_linker_version().context(
        "bpf-linker still does not run after `cargo install`: is cargo's bin directory \
         (~/.cargo/bin) on PATH, and ahead of any other bpf-linker? (If cargo said it \
         was already installed, add --force to the command above.)",
    )?;
    eprintln!("xtask: {version} installed");
    Ok(())
}

/// The tools the metrics and alerts tests run: `promtool` (checks the
/// exposition and the rules file) and the Prometheus server (scrapes the
/// agent), from Debian's `prometheus` package, and Alertmanager (receives
/// the agent's alerts) from `prometheus-alertmanager`.
const PROMETHEUS_TOOLS: &[&str] = &[
    "/usr/bin/promtool",
    "/usr/bin/prometheus",
    "/usr/bin/prometheus-alertmanager",
];

/// Installs Debian's `prometheus` and `prometheus-alertmanager` packages when
/// a tool is missing (the `e2e_metrics` and `alerts_delivery` tests).
pub fn ensure_prometheus() -> Result<()> {
    ensure_tools(
        "the metrics and alerts tests",
        PROMETHEUS_TOOLS,
        &["prometheus", "prometheus-alertmanager"],
    )
}

/// The container engine the containers test runs: Podman (its Engine API
/// service) with `runc`, which works where cgroups are mounted in hybrid
/// mode (Debian's default `crun` refuses that).
const CONTAINER_TOOLS: &[&str] = &["/usr/bin/podman", "/usr/sbin/runc"];

/// Installs Debian's `podman` and `runc` when missing (`e2e_containers`).
pub fn ensure_podman() -> Result<()> {
    ensure_tools("the containers test", CONTAINER_TOOLS, &["podman", "runc"])
}

/// Installs `packages` when one of `tools` is missing.
fn ensure_tools(what: &str, tools: &[&str], packages: &[&str]) -> Result<()> {
    if tools.iter().all(|t| Path::new(t).exists()) {
        eprintln!("xtask: {} found", packages.join(", "));
        return Ok(());
    }
    apt_install(what, packages)?;
    if let Some(tool) = tools.iter().find(|t| !Path::new(t).exists()) {
        bail!(
            "{tool} is still missing after installing {}",
            packages.join(", ")
        );
    }
    eprintln!("xtask: {} installed", packages.join(", "));
    Ok(())
}

/// `apt-get install -y packages` (non-interactive, after an update), as
/// root on Debian; elsewhere an error saying what to install.
pub fn apt_install(what: &str, packages: &[&str]) -> Result<()> {
    let mut update = Command::new("apt-get");
    update
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive");
    let mut add = Command::new("apt-get");
    add.args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    if !is_debian_like() {
        bail!(
            "{} missing for {what}: install them with your system's package manager",
            packages.join(" and ")
        );
    }
    if !is_root() {
        bail!(
            "{} missing for {what}, and installing needs root. Rerun as root, or run:\n  sudo {}\n  sudo {}",
            packages.join(" and "),
            display(&update),
            display(&add)
        );
    }
    for mut cmd in [update, add] {
        eprintln!(
            "xtask: installing {}: {}",
            packages.join(", "),
            display(&cmd)
        );
        status(&mut cmd)?;
    }
    Ok(())
}

/// `bpf-linker --version`, e.g. `bpf-linker 0.13.0`.
fn bpf_linker_version() -> Result<String> {
    match output(Command::new("bpf-linker").arg("--version")) {
        Ok(version) => Ok(version.trim().to_owned()),
        Err(err)
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|err| err.kind() == io::ErrorKind::NotFound) =>
        {
            Err(anyhow!("not found on PATH"))
        }
        Err(err) => Err(err),
    }
}

pub fn is_debian_like() -> bool {
    fs::read_to_string("/etc/os-release").is_ok_and(|text| os_release_is_debian_like(&text))
}

/// Whether an os-release file has `debian` in `ID` or `ID_LIKE`.
fn os_release_is_debian_like(text: &str) -> bool {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| matches!(key.trim(), "ID" | "ID_LIKE"))
        .flat_map(|(_, value)| value.trim().trim_matches(['"', '\'']).split_whitespace())
        .any(|id| id == "debian")
}

/// The entries of [`APT_PACKAGES`] dpkg does not list as installed.
fn missing_apt_packages() -> Vec<&'static str> {
    // dpkg-query exits non-zero when it knows none of a package; the lines it
    // prints for the rest are still right, so its status is not checked.
    let listed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Status}\n"])
        .args(APT_PACKAGES)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            !listed.lines().any(|line| {
                line.strip_prefix(package)
                    .is_some_and(|rest| rest.starts_with(' ') && rest.ends_with(" installed"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_file(path: &str) -> String {
        let path = crate::workspace_root().join(path);
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
    }

    #[test]
    fn userspace_toolchain_matches_rust_toolchain_toml() {
        let pin = format!("channel = \"{USERSPACE_TOOLCHAIN}\"");
        assert!(
            workspace_file("rust-toolchain.toml").contains(&pin),
            "rust-toolchain.toml does not say {pin}; update USERSPACE_TOOLCHAIN"
        );
    }

    #[test]
    fn ebpf_toolchain_matches_agent_build_script() {
        let pin = format!("const EBPF_TOOLCHAIN: &str = \"{EBPF_TOOLCHAIN}\";");
        assert!(
            workspace_file("netmon-agent/build.rs").contains(&pin),
            "netmon-agent/build.rs does not say {pin}; update one of them"
        );
    }

    #[test]
    fn finds_toolchains_by_full_or_short_name() {
        let listed = "stable-x86_64-unknown-linux-gnu (default)\n\
                      nightly-2026-07-01-x86_64-unknown-linux-gnu\n\
                      1.98.0-x86_64-unknown-linux-gnu (active)\n\
                      my-custom\n";
        let host = "x86_64-unknown-linux-gnu";
        assert!(toolchain_listed(listed, "1.98.0", host));
        assert!(toolchain_listed(listed, "nightly-2026-07-01", host));
        assert!(toolchain_listed(listed, "my-custom", host));
        assert!(!toolchain_listed(listed, "nightly", host));
        assert!(!toolchain_listed(
            listed,
            "1.98.0",
            "aarch64-unknown-linux-gnu"
        ));
        assert!(!toolchain_listed(
            "no installed toolchains\n",
            "1.98.0",
            host
        ));
    }

    #[test]
    fn finds_missing_components() {
        let installed = "cargo-x86_64-unknown-linux-gnu\n\
                         rust-src\n\
                         rust-std-x86_64-unknown-linux-gnu\n\
                         rustfmt-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            missing_components(installed, &["rust-src", "clippy", "rustfmt"]),
            ["clippy"]
        );
        assert_eq!(
            missing_components("rust-std-x86_64\n", &["rust-src"]),
            ["rust-src"]
        );
    }

    #[test]
    fn recognises_debian_and_its_derivatives() {
        assert!(os_release_is_debian_like("NAME=\"Debian\"\nID=debian\n"));
        assert!(os_release_is_debian_like("ID=ubuntu\nID_LIKE=debian\n"));
        assert!(os_release_is_debian_like(
            "ID=pop\nID_LIKE=\"ubuntu debian\"\n"
        ));
        assert!(!os_release_is_debian_like("ID=fedora\nVERSION_ID=40\n"));
        assert!(!os_release_is_debian_like("ID=arch\nID_LIKE=archlinux\n"));
        assert!(!os_release_is_debian_like("VERSION_CODENAME=debian\n"));
    }
}
