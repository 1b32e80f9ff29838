//! Devices on the watched networks: neighbour tables (netlink), the MACs the eBPF counters saw, ARP sweeps and IPv6 all-nodes probes.
//!
//! Skeleton: filled in by the collector's own change.

use std::time::Duration;

use serde::Serialize;

use super::{CollectorName, Context};

/// Options of the discovery collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "discovery-options")]
pub struct Options {
    /// How often the discovery collector runs.
    #[arg(long, default_value = "10s", value_parser = crate::config::parse_interval, env = "NETMON_DISCOVERY_INTERVAL")]
    pub discovery_interval: Duration,
}

/// One cycle's report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {}

pub struct Discovery {}

impl Discovery {
    pub fn new(_opts: &Options) -> Self {
        Discovery {}
    }
}

impl super::Collector for Discovery {
    const NAME: CollectorName = CollectorName::Discovery;
    type Report = Report;

    fn collect(&mut self, _ctx: &Context) -> Report {
        Report {}
    }
}
