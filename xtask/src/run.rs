//! `cargo xtask run`: build netmon-agent and run it as root, with its state in
//! `target/netmon-state` rather than /var/lib (the history file too).

use std::{
    ffi::OsString,
    fs,
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, ExitCode, ExitStatus},
};

use anyhow::{Context as _, Result};

use crate::{cargo, display, is_root, status, target_dir, toolchain};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Build and run the release profile.
    #[arg(long)]
    release: bool,

    /// Arguments for netmon-agent, after `--`; none means the agent's defaults.
    #[arg(last = true, value_name = "AGENT ARGS")]
    agent_args: Vec<OsString>,
}

/// Builds and runs the agent, and exits with its exit code.
pub fn run(root: &Path, args: RunArgs) -> Result<ExitCode> {
    toolchain::ensure_all(root)?;

    let mut build = cargo(root);
    build.args(["build", "--package", "netmon-agent"]);
    if args.release {
        build.arg("--release");
    }
    status(&mut build)?;

    let target = target_dir(root);
    let agent = target
        .join(if args.release { "release" } else { "debug" })
        .join("netmon-agent");
    // Created here, not by the agent, so that when it runs under sudo the
    // directory still belongs to the user and `cargo clean` can remove it.
    let state_dir = target.join("netmon-state");
    fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;

    // Loading eBPF programs needs CAP_BPF, CAP_NET_ADMIN and more; root has them.
    // Through sudo, `env` sets the state directory whatever sudo's policy keeps
    // of the environment; -E keeps the rest (RUST_LOG and the like) where allowed.
    // The history file lives there too, not in /var/lib.
    let store_path = state_dir.join("netmon.redb");
    let mut cmd = if is_root() {
        let mut cmd = Command::new(&agent);
        cmd.env("NETMON_STATE_DIR", &state_dir)
            .env("NETMON_STORE_PATH", &store_path);
        cmd
    } else {
        let mut assignment = OsString::from("NETMON_STATE_DIR=");
        assignment.push(&state_dir);
        let mut store = OsString::from("NETMON_STORE_PATH=");
        store.push(&store_path);
        let mut cmd = Command::new("sudo");
        cmd.args(["-E", "env"]).arg(assignment).arg(store).arg(&agent);
        cmd
    };
    cmd.args(&args.agent_args);
    eprintln!("xtask: running {}", display(&cmd));

    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", display(&cmd)))?;
    // Ctrl-C goes to the whole foreground process group: the agent shuts down
    // cleanly on it, and xtask must outlive it to pass on its exit code. Set
    // after the spawn so the agent does not inherit the ignored disposition.
    // SAFETY: SIG_IGN installs no handler; nothing else in xtask uses signals.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let exit = child
        .wait()
        .with_context(|| format!("waiting for `{}`", display(&cmd)))?;
    Ok(ExitCode::from(exit_code(exit)))
}

/// The exit code a shell would report: the agent's own, or 128 + the signal
/// that killed it.
fn exit_code(exit: ExitStatus) -> u8 {
    let code = exit
        .code()
        .or_else(|| exit.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    u8::try_from(code).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_those_a_shell_reports() {
        // Raw wait statuses: exit code in the second byte, signal in the first.
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGINT)), 130);
    }
}
