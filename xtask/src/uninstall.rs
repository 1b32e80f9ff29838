//! `cargo xtask uninstall`: removes exactly what `cargo xtask install`
//! recorded in its manifest (see install.rs).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Result, bail};

use crate::{
    install::{Layout, uninstall_files},
    is_root,
};

#[derive(clap::Args)]
pub struct UninstallArgs {
    /// The prefix given to install.
    #[arg(long, default_value = "/usr/local")]
    prefix: PathBuf,
    /// The destdir given to install.
    #[arg(long, value_name = "DIR")]
    destdir: Option<PathBuf>,
}

pub fn run(root: &Path, args: UninstallArgs) -> Result<ExitCode> {
    let layout = Layout {
        destdir: args.destdir.unwrap_or_else(|| PathBuf::from("/")),
        prefix: args.prefix,
    };
    if !layout.staged() && !is_root() {
        bail!("uninstalling from / needs root: run `sudo cargo xtask uninstall`");
    }
    for line in uninstall_files(root, &layout)? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

