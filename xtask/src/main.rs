//! Developer tasks for netmon, run as `cargo xtask <command>` from anywhere in
//! the workspace.
//!
//! Every command first makes sure the tools the build needs are present and
//! installs what is missing ([`toolchain::ensure_all`]): the userspace toolchain
//! pinned in `rust-toolchain.toml`, the nightly (with `rust-src`) that
//! `netmon-agent/build.rs` builds the eBPF object with, `bpf-linker`, and
//! Node.js with the web dashboard's npm packages (`web.rs`).
//!
//! - `run` builds the agent and runs it as root, keeping its state under `target/`.
//! - `test` is what CI runs (`.ci/run`): rustfmt, clippy on the host crates and
//!   on the eBPF crate, then `cargo test`.
//! - `bench` runs `netmon-agent/benches/datapath/` as root and prints its
//!   tables (the README's benchmark section comes from it).
//!
//! One module a command. Each has a `clap::Args` struct and
//! `pub fn run(root: &Path, args) -> anyhow::Result<ExitCode>`; adding a
//! command is that file plus one line in `commands!` below.

use std::{
    env,
    path::{Path, PathBuf},
    process::{self, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;

mod toolchain;
mod web;

/// Declares the subcommands, one `module::Variant(ArgsType)` line each (with
/// its doc comment, which becomes its help): the module, the `Command` variant
/// and the dispatch to `module::run`.
macro_rules! commands {
    ($($(#[$doc:meta])* $module:ident::$variant:ident($args:ident),)*) => {
        $(mod $module;)*

        #[derive(clap::Subcommand)]
        enum Command {
            $($(#[$doc])* $variant($module::$args),)*
        }

        impl Command {
            fn run(self, root: &Path) -> Result<ExitCode> {
                match self {
                    $(Self::$variant(args) => $module::run(root, args),)*
                }
            }
        }
    };
}

commands! {
    /// Build netmon-agent and run it as root (through sudo if needed).
    run::Run(RunArgs),
    /// Check formatting, run clippy (host and eBPF) and the test suite, as CI does.
    test::Test(TestArgs),
    /// Benchmark the datapath and the agent as root (per-packet cost, packet rate, CPU, memory).
    bench::Bench(BenchArgs),
    /// Install the agent, its systemd units, the example config and the netmon user.
    install::Install(InstallArgs),
    /// Remove exactly what `install` added (its manifest says what).
    uninstall::Uninstall(UninstallArgs),
    /// Build the Debian package (cargo-deb); --install-test installs, checks and purges it.
    deb::Deb(DebArgs),
}

/// netmon developer tasks. Each installs missing toolchains and bpf-linker first.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Printed here rather than returned so that RUST_BACKTRACE, which CI sets
    // for test panics, does not bury the message under xtask's backtrace.
    cli.command.run(&workspace_root()).unwrap_or_else(|err| {
        eprintln!("Error: {err:#}");
        ExitCode::FAILURE
    })
}

/// The workspace root, where every cargo command runs.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits directly below the workspace root")
        .to_path_buf()
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` if set, else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// `cargo` (the rustup proxy, so `rust-toolchain.toml` picks the toolchain),
/// run in the workspace root.
fn cargo(root: &Path) -> process::Command {
    let mut cmd = process::Command::new("cargo");
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd` with inherited stdio; the error names the command.
fn status(cmd: &mut process::Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; the error names the command and quotes
/// its stderr.
fn output(cmd: &mut process::Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// `cmd` as a shell line: the variables it sets, the program, its arguments.
/// A PATH that extends xtask's own shows as `PATH=<prefix>:$PATH`.
fn display(cmd: &process::Command) -> String {
    let own_path = env::var("PATH").map_or_else(|_| String::new(), |path| format!(":{path}"));
    let vars = cmd.get_envs().filter_map(|(key, value)| {
        let value = value?.to_string_lossy();
        Some(match value.strip_suffix(own_path.as_str()) {
            Some(prefix) if key == "PATH" && !own_path.is_empty() => {
                format!("PATH={}:$PATH", quote(prefix))
            }
            _ => format!("{}={}", key.display(), quote(&value)),
        })
    });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| quote(&word.to_string_lossy()));
    vars.chain(words).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Whether xtask runs as root: the agent and the privileged tests need it.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Makes the binaries `cmd` (a `cargo test` or `cargo bench`) runs go
/// through `sudo -E` when xtask is not root: they create namespaces and load
/// programs, while cargo builds them as the user. `what` names the caller in
/// the message.
fn run_binaries_as_root(root: &Path, cmd: &mut process::Command, what: &str) -> Result<()> {
    if !is_root() {
        let host = toolchain::host_triple(root)?;
        let runner = format!(
            "CARGO_TARGET_{}_RUNNER",
            host.to_uppercase().replace(['-', '.'], "_")
        );
        eprintln!("xtask {what}: not root; the binaries run through `sudo -E`");
        cmd.env(runner, "sudo -E");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn display_quotes_what_the_shell_would_split() {
        let mut cmd = process::Command::new("sudo");
        cmd.args(["-E", "a b", "it's", ""]).env("X", "1 2");
        assert_eq!(display(&cmd), r"X='1 2' sudo -E 'a b' 'it'\''s' ''");

        let mut path = OsString::from("/opt/llvm/bin:");
        path.push(env::var_os("PATH").expect("PATH is set"));
        let mut cmd = process::Command::new("cargo");
        cmd.arg("install").env("PATH", path);
        assert_eq!(display(&cmd), "PATH=/opt/llvm/bin:$PATH cargo install");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
