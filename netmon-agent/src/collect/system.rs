//! CPU, load, memory, filesystems, temperatures, uptime and host info (sysinfo).
//!
//! Skeleton: filled in by the collector's own change.

use std::time::Duration;

use serde::Serialize;

use super::{CollectorName, Context};

/// Options of the system collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "system-options")]
pub struct Options {
    /// How often the system collector runs.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_interval, env = "NETMON_SYSTEM_INTERVAL")]
    pub system_interval: Duration,
}

/// One cycle's report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {}

pub struct System {}

impl System {
    pub fn new(_opts: &Options) -> Self {
        System {}
    }
}

impl super::Collector for System {
    const NAME: CollectorName = CollectorName::System;
    type Report = Report;

    fn collect(&mut self, _ctx: &Context) -> Report {
        Report {}
    }
}
