//! Checks made before loading anything, so that a missing privilege or
//! kernel feature is reported by name instead of as a bare EPERM.

use std::{fs, path::Path};

/// A Linux capability the agent may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub bit: u32,
    /// What it is needed for, for the error message.
    pub why: &'static str,
}

pub const CAP_NET_ADMIN: Capability = Capability {
    name: "CAP_NET_ADMIN",
    bit: 12,
    why: "attach XDP and TC programs to interfaces",
};
pub const CAP_SYS_ADMIN: Capability = Capability {
    name: "CAP_SYS_ADMIN",
    bit: 21,
    why: "",
};
pub const CAP_PERFMON: Capability = Capability {
    name: "CAP_PERFMON",
    bit: 38,
    why: "load programs without Spectre-hardening rewrites and read program statistics",
};
pub const CAP_BPF: Capability = Capability {
    name: "CAP_BPF",
    bit: 39,
    why: "create maps and load eBPF programs",
};

/// What traffic counting needs. CAP_SYS_ADMIN stands in for CAP_BPF and
/// CAP_PERFMON (as on kernels before 5.8), not for CAP_NET_ADMIN.
pub const REQUIRED: [Capability; 3] = [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON];

/// The effective capability set, from `/proc/self/status`.
pub fn effective_caps() -> std::io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    parse_cap_eff(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no CapEff line in /proc/self/status",
        )
    })
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// The required capabilities missing from `effective`.
pub fn missing(effective: u64) -> Vec<Capability> {
    let has = |c: Capability| effective & (1u64 << c.bit) != 0;
    REQUIRED
        .into_iter()
        .filter(|&c| !has(c) && !(c != CAP_NET_ADMIN && has(CAP_SYS_ADMIN)))
        .collect()
}

/// Where the kernel publishes its BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Whether the kernel has BTF (CONFIG_DEBUG_INFO_BTF).
pub fn kernel_has_btf() -> bool {
    Path::new(KERNEL_BTF).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn names_each_missing_capability() {
        let all = (1 << 12) | (1 << 38) | (1 << 39);
        assert!(missing(all).is_empty());
        assert_eq!(missing(all & !(1 << 39)), vec![CAP_BPF]);
        assert_eq!(missing(0), vec![CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]);
        // CAP_SYS_ADMIN covers BPF and PERFMON but not NET_ADMIN.
        assert_eq!(missing(1 << 21), vec![CAP_NET_ADMIN]);
    }
}
