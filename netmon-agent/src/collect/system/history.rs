//! The system collector's history series: `system` (CPU, load, memory,
//! swap) and one `temperature/<label>` per sensor, gauges.

use super::Report;
use crate::collect::{Avail, Reading, Sample, SampleValues, SeriesFamily, SeriesKind};

/// `system` (the host) and `temperature/<label>` (one sensor).
pub const SERIES: &[SeriesFamily] = &[
    SeriesFamily {
        name: "system",
        kind: SeriesKind::Gauge,
        fields: &[
            "cpu_percent",
            "load_one",
            "load_five",
            "load_fifteen",
            "memory_used_bytes",
            "memory_available_bytes",
            "swap_used_bytes",
        ],
    },
    SeriesFamily {
        name: "temperature",
        kind: SeriesKind::Gauge,
        fields: &["celsius"],
    },
];

pub(super) fn samples(r: &Reading<Report>, out: &mut Vec<Sample>) {
    let rep = &r.report;
    let v = |a: Option<f64>| a.unwrap_or(f64::NAN);
    let load = rep.load_average.value();
    let mem = rep.memory.value();
    out.push(Sample {
        family: &SERIES[0],
        labels: Vec::new(),
        values: SampleValues::Gauge(vec![
            v(rep.cpu.value().map(|c| c.usage_percent)),
            v(load.map(|l| l.one)),
            v(load.map(|l| l.five)),
            v(load.map(|l| l.fifteen)),
            v(mem.map(|m| m.used_bytes as f64)),
            v(mem.map(|m| m.available_bytes as f64)),
            v(rep.swap.value().map(|s| s.used_bytes as f64)),
        ]),
    });
    if let Avail::Value(temps) = &rep.temperatures {
        for s in &temps.sensors {
            out.push(Sample {
                family: &SERIES[1],
                labels: vec![s.label.clone()],
                values: SampleValues::Gauge(vec![v(s.celsius.value().copied())]),
            });
        }
    }
}
