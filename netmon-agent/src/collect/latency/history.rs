//! The latency collector's history series: one `latency/<address>` per
//! target (round trips and loss), gauges.

use super::Report;
use crate::collect::{Reading, Sample, SampleValues, SeriesFamily, SeriesKind};

/// `latency/<address>`: one probe target.
pub const SERIES: &[SeriesFamily] = &[SeriesFamily {
    name: "latency",
    kind: SeriesKind::Gauge,
    fields: &[
        "rtt_avg_seconds",
        "rtt_min_seconds",
        "rtt_max_seconds",
        "loss_percent",
    ],
}];

pub(super) fn samples(r: &Reading<Report>, out: &mut Vec<Sample>) {
    for target in &r.report.targets {
        let rtt = target.rtt.value();
        let v = |a: Option<f64>| a.unwrap_or(f64::NAN);
        out.push(Sample {
            family: &SERIES[0],
            labels: vec![target.address.to_string()],
            values: SampleValues::Gauge(vec![
                v(rtt.map(|r| r.avg_seconds)),
                v(rtt.map(|r| r.min_seconds)),
                v(rtt.map(|r| r.max_seconds)),
                v(target.loss_percent.value().copied()),
            ]),
        });
    }
}
