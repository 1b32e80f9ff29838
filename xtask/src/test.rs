//! `cargo xtask test`: what CI runs. rustfmt, clippy on the host crates, clippy
//! on the eBPF crate (nightly, bpf target), then `cargo test` as root, stopping
//! at the first step that fails.

use std::{
    ffi::OsString,
    path::Path,
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result};

use crate::{cargo, is_root, run_binaries_as_root, status, target_dir, toolchain};

/// The eBPF crate: it builds only for the bpf target, so the host steps leave
/// it out and step 3 lints it on its own.
const EBPF_CRATE: &str = "netmon-ebpf";

/// The bpf target of the host's byte order, as aya-build picks it.
const BPF_TARGET: &str = if cfg!(target_endian = "big") {
    "bpfeb-unknown-none"
} else {
    "bpfel-unknown-none"
};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip rustfmt and clippy; only run the tests.
    #[arg(long)]
    no_lint: bool,

    /// Extra arguments for `cargo test`, after `--` (a second `--` passes
    /// arguments on to the test binaries).
    #[arg(last = true, value_name = "CARGO TEST ARGS")]
    cargo_test_args: Vec<OsString>,
}

pub fn run(root: &Path, args: TestArgs) -> Result<ExitCode> {
    toolchain::ensure_all(root)?;
    toolchain::ensure_prometheus()?;
    toolchain::ensure_podman()?;
    crate::web::ensure_browser()?;

    let mut steps = Vec::new();
    if !args.no_lint {
        let mut fmt = cargo(root);
        fmt.args(["fmt", "--all", "--check"]);
        steps.push(("rustfmt --check", fmt));

        let mut clippy = cargo(root);
        clippy.args(["clippy", "--workspace", "--exclude", EBPF_CRATE, "--all-targets"]);
        clippy.args(["--", "-D", "warnings"]);
        steps.push(("clippy -D warnings", clippy));

        steps.push(("clippy -D warnings (eBPF)", ebpf_clippy(root)));
    }
    if args.cargo_test_args.is_empty() && is_root() {
        // The Debian package: built, installed with dpkg, checked, purged.
        let mut deb = Command::new(std::env::current_exe()?);
        deb.args(["deb", "--install-test"]).current_dir(root);
        steps.push(("Debian package (dpkg -i, then purge)", deb));
    }
    if args.cargo_test_args.is_empty() {
        // The capability-restricted deployment: the traffic tests again with
        // the agent as `nobody` holding only the four capabilities. Before the
        // full run, so that run's summary stays the last thing printed.
        let mut unprivileged = cargo_test(
            root,
            vec!["-p".into(), "netmon-agent".into(), "--test".into(), "e2e_traffic".into()],
            false,
        )?;
        unprivileged.env("NETMON_TEST_AGENT_USER", "unprivileged");
        steps.push(("traffic e2e, agent unprivileged", unprivileged));
    }
    steps.push(("cargo test", cargo_test(root, args.cargo_test_args, true)?));

    let total = steps.len();
    for (i, (name, mut cmd)) in steps.into_iter().enumerate() {
        let step = format!("[{}/{total}] {name}", i + 1);
        eprintln!("xtask test: {step}");
        status(&mut cmd).with_context(|| format!("xtask test: step {step} failed"))?;
    }
    // Nothing printed after success: CI reads cargo test's closing lines.
    Ok(ExitCode::SUCCESS)
}

/// Clippy on the eBPF crate with the toolchain and target the agent's build.rs
/// builds it with. Its own target directory keeps the nightly's artifacts
/// apart from the userspace ones.
fn ebpf_clippy(root: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain::EBPF_TOOLCHAIN, "cargo", "clippy"])
        .args(["--package", EBPF_CRATE, "--target", BPF_TARGET])
        .args(["-Z", "build-std=core", "--release", "--target-dir"])
        .arg(target_dir(root).join("ebpf-clippy"))
        .args(["--", "-D", "warnings"])
        .current_dir(root);
    // Host settings do not apply to the bpf target; aya-build drops RUSTC and
    // RUSTC_WORKSPACE_WRAPPER for the same reason.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `cargo test` on the host crates. The privileged tests need root, so when
/// xtask is not root the test binaries run through `sudo -E`.
fn cargo_test(root: &Path, extra: Vec<OsString>, workspace: bool) -> Result<Command> {
    let mut cmd = cargo(root);
    cmd.arg("test");
    if workspace {
        // Library, binary and integration tests; no doc-tests (there are none
        // to run), so the last summary line cargo prints is a suite that has
        // tests.
        cmd.args(["--workspace", "--exclude", EBPF_CRATE])
            .args(["--lib", "--bins", "--tests"]);
    }
    cmd.args(extra);
    run_binaries_as_root(root, &mut cmd, "test")?;
    Ok(cmd)
}
