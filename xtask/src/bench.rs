//! `cargo xtask bench`: netmon's benchmark (`netmon-agent/benches/datapath/`)
//! as root: the programs' cost per packet at each hook, the receiver's packet
//! rate with and without them, the agent's CPU per drain and per packet, and
//! its peak memory. It prints one table per part and a markdown summary.

use std::{ffi::OsString, path::Path, process::ExitCode};

use anyhow::{Context as _, Result};

use crate::{cargo, display, run_binaries_as_root, status, toolchain};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Extra arguments for `cargo bench`, after `--` (a second `--` passes
    /// arguments on to the benchmark: `--seconds S` per phase, `--rounds N`,
    /// `--senders N`).
    #[arg(last = true, value_name = "CARGO BENCH ARGS")]
    cargo_bench_args: Vec<OsString>,
}

pub fn run(root: &Path, args: BenchArgs) -> Result<ExitCode> {
    toolchain::ensure_all(root)?;

    let mut cmd = cargo(root);
    cmd.args(["bench", "--package", "netmon-agent", "--bench", "datapath"])
        .args(args.cargo_bench_args);
    run_binaries_as_root(root, &mut cmd, "bench")?;
    eprintln!("xtask bench: running {}", display(&cmd));
    status(&mut cmd).context("xtask bench: the benchmark failed")?;
    Ok(ExitCode::SUCCESS)
}
