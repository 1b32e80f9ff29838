//! Dropping capabilities once the programs are loaded and attached.
//!
//! Loading needs CAP_BPF and CAP_PERFMON (and root may hold much more); from
//! then on the agent needs only:
//! - CAP_BPF and CAP_NET_ADMIN, to attach to interfaces that appear later;
//! - what each enabled collector declares it needs ([`crate::collect::Need`]
//!   in the registry): CAP_NET_RAW while discovery (ARP sweeps) or latency
//!   (raw ICMP) is on; CAP_DAC_READ_SEARCH, when it holds it and discovery
//!   is on, to read DHCP lease files whatever their owner.
//!
//! Capabilities belong to threads, so this runs on the main thread before
//! any other thread exists: every thread spawned later inherits the reduced
//! sets. The bounding set is reduced too when CAP_SETPCAP allows it.

use caps::{CapSet, Capability, CapsHashSet};
use tracing::{info, warn};

use crate::{
    collect::{SOURCES, registry::Cap},
    config::Config,
};

/// What the running agent keeps, given its configuration and what it holds.
pub fn needed(cfg: &Config, held: &CapsHashSet) -> CapsHashSet {
    let mut keep: CapsHashSet = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN]
        .into_iter()
        .collect();
    // What each enabled collector needs (the registry says).
    let enabled = SOURCES.iter().filter(|s| cfg.collect.enabled(s.name()));
    for need in enabled.flat_map(|s| s.needs()) {
        keep.insert(match need.cap {
            Cap::NetRaw => Capability::CAP_NET_RAW,
            Cap::DacReadSearch => Capability::CAP_DAC_READ_SEARCH,
            Cap::SysPtrace => Capability::CAP_SYS_PTRACE,
        });
    }
    // CAP_SYS_ADMIN stands in for CAP_BPF on kernels without it; keep it
    // only when that is how the agent got in.
    if !held.contains(&Capability::CAP_BPF) && held.contains(&Capability::CAP_SYS_ADMIN) {
        keep.insert(Capability::CAP_SYS_ADMIN);
    }
    keep.retain(|c| held.contains(c));
    keep
}

/// Threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// Drops every capability the running agent does not need, from the
/// effective, permitted, inheritable and ambient sets (and the bounding
/// set where allowed). Failures are logged: the agent still works, with
/// more privilege than it needs.
pub fn drop_unneeded(cfg: &Config) {
    let held = match caps::read(None, CapSet::Permitted) {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "Cannot read capabilities; keeping them.");
            return;
        }
    };
    let keep = needed(cfg, &held);
    let dropped: Vec<String> = {
        let mut d: Vec<String> = held.difference(&keep).map(|c| c.to_string()).collect();
        d.sort();
        d
    };
    if dropped.is_empty() {
        return;
    }
    let threads = thread_count();
    if threads > 1 {
        warn!(
            threads,
            "Dropping capabilities with other threads running; they keep theirs."
        );
    }
    if held.contains(&Capability::CAP_SETPCAP) {
        for cap in caps::all().difference(&keep) {
            // Capabilities this kernel does not know fail with EINVAL.
            let _ = caps::drop(None, CapSet::Bounding, *cap);
        }
    }
    let result = caps::clear(None, CapSet::Ambient)
        .and_then(|()| caps::set(None, CapSet::Inheritable, &CapsHashSet::new()))
        .and_then(|()| caps::set(None, CapSet::Effective, &keep))
        .and_then(|()| caps::set(None, CapSet::Permitted, &keep));
    let mut kept: Vec<String> = keep.iter().map(|c| c.to_string()).collect();
    kept.sort();
    match result {
        Ok(()) => info!(
            kept = kept.join(","),
            dropped = dropped.len(),
            "Dropped the capabilities no longer needed."
        ),
        Err(e) => warn!(error = %e, "Dropping capabilities failed; keeping them."),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn cfg(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("netmon-agent").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn root_keeps_only_what_running_needs() {
        let all = caps::all();
        let keep = needed(&cfg(&[]), &all);
        let want: CapsHashSet = [
            Capability::CAP_BPF,
            Capability::CAP_NET_ADMIN,
            Capability::CAP_NET_RAW,
            Capability::CAP_DAC_READ_SEARCH,
            Capability::CAP_SYS_PTRACE,
        ]
        .into_iter()
        .collect();
        assert_eq!(keep, want);
        let keep = needed(&cfg(&["--disable", "discovery,latency,security"]), &all);
        assert_eq!(
            keep,
            [Capability::CAP_BPF, Capability::CAP_NET_ADMIN]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn nothing_is_kept_that_was_not_held() {
        let held: CapsHashSet = [
            Capability::CAP_BPF,
            Capability::CAP_NET_ADMIN,
            Capability::CAP_PERFMON,
        ]
        .into_iter()
        .collect();
        let keep = needed(&cfg(&[]), &held);
        assert_eq!(
            keep,
            [Capability::CAP_BPF, Capability::CAP_NET_ADMIN]
                .into_iter()
                .collect()
        );
    }
}
