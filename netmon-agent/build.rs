//! Builds the eBPF object (netmon-ebpf's `netmon` binary) with aya-build,
//! which links it with bpf-linker and adds BTF. The result lands in
//! `$OUT_DIR/netmon` and is embedded by `src/ebpf/mod.rs`.
//!
//! Then bundles the web dashboard (`../web`, see `build_web.rs`) into
//! `$OUT_DIR/web`, embedded by `src/api/dashboard.rs`.

use anyhow::{Context as _, anyhow};

#[path = "build_web.rs"]
mod web;

/// The nightly that builds the eBPF object. `cargo xtask` installs it (with
/// rust-src); keep xtask/src/toolchain.rs in step.
const EBPF_TOOLCHAIN: &str = "nightly-2026-07-01";

fn main() -> anyhow::Result<()> {
    web::bundle().context("bundling the web dashboard")?;
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "netmon-ebpf")
        .ok_or_else(|| anyhow!("netmon-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(EBPF_TOOLCHAIN)).context(
        "building the eBPF object failed; `cargo xtask run` or `cargo xtask test` installs \
         the nightly toolchain, rust-src and bpf-linker it needs",
    )
}
