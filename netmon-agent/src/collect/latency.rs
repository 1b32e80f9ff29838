//! ICMP echo probes: RTT min/avg/max/stddev and loss per target.
//!
//! Skeleton: filled in by the collector's own change.

use std::time::Duration;

use serde::Serialize;

use super::{CollectorName, Context};

/// Options of the latency collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "latency-options")]
pub struct Options {
    /// How often the latency collector runs.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_interval, env = "NETMON_LATENCY_INTERVAL")]
    pub latency_interval: Duration,
}

/// One cycle's report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {}

pub struct Latency {}

impl Latency {
    pub fn new(_opts: &Options) -> Self {
        Latency {}
    }
}

impl super::Collector for Latency {
    const NAME: CollectorName = CollectorName::Latency;
    type Report = Report;

    fn collect(&mut self, _ctx: &Context) -> Report {
        Report {}
    }
}
