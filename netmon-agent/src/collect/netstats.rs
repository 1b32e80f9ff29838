//! Per-interface kernel statistics from /sys/class/net, link state, speed and utilization.
//!
//! Skeleton: filled in by the collector's own change.

use std::time::Duration;

use serde::Serialize;

use super::{CollectorName, Context};

/// Options of the interfaces collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "interfaces-options")]
pub struct Options {
    /// How often the interfaces collector runs.
    #[arg(long, default_value = "1s", value_parser = crate::config::parse_interval, env = "NETMON_INTERFACES_INTERVAL")]
    pub interfaces_interval: Duration,
}

/// One cycle's report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {}

pub struct NetStats {}

impl NetStats {
    pub fn new(_opts: &Options) -> Self {
        NetStats {}
    }
}

impl super::Collector for NetStats {
    const NAME: CollectorName = CollectorName::Interfaces;
    type Report = Report;

    fn collect(&mut self, _ctx: &Context) -> Report {
        Report {}
    }
}
