//! The interfaces collector's history series: per interface
//! (`link/<name>`) the deltas of the kernel's counters since the previous
//! reading recorded.

use std::{collections::HashMap, time::Duration};

use super::{Counters, Report};
use crate::collect::{Avail, Reading, Sample, SampleValues, SeriesFamily, SeriesKind};

/// `link/<name>`: an interface's kernel statistics.
pub const SERIES: &[SeriesFamily] = &[SeriesFamily {
    name: "link",
    kind: SeriesKind::Counter,
    fields: &Counters::FILES,
}];

/// The counters of the previous reading recorded, by interface name.
pub type Previous = HashMap<String, [u64; 8]>;

pub(super) fn samples(
    prev_all: &mut Previous,
    r: &Reading<Report>,
    since: Option<Duration>,
    out: &mut Vec<Sample>,
) {
    let Avail::Value(list) = &r.report.interfaces else {
        return;
    };
    let since = since.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut links = HashMap::with_capacity(list.len());
    for i in list {
        let Avail::Value(c) = &i.counters else {
            continue;
        };
        let now = link_counters(c);
        let prev = prev_all.get(&i.name).copied();
        links.insert(i.name.clone(), now);
        let (Some(prev), Some(since)) = (prev, since) else {
            continue;
        };
        // A counter that went backwards: the interface was re-created,
        // everything it holds is new.
        let reset = now.iter().zip(&prev).any(|(n, p)| n < p);
        let deltas: Vec<u64> = now
            .iter()
            .zip(&prev)
            .map(|(n, p)| if reset { *n } else { n - p })
            .collect();
        if deltas.iter().all(|d| *d == 0) {
            continue;
        }
        out.push(Sample {
            family: &SERIES[0],
            labels: vec![i.name.clone()],
            values: SampleValues::Counter {
                interval_ms: u32::try_from(since).unwrap_or(u32::MAX),
                deltas,
            },
        });
    }
    *prev_all = links;
}

fn link_counters(c: &Counters) -> [u64; 8] {
    [
        c.rx_bytes,
        c.rx_packets,
        c.rx_errors,
        c.rx_dropped,
        c.tx_bytes,
        c.tx_packets,
        c.tx_errors,
        c.tx_dropped,
    ]
}
