//! The packages collector in the registry: its `/metrics` families and
//! its history series (the inventory's size and the changes seen).

use std::time::{Duration, SystemTime};

use super::{ChangeKind, Options, Packages, Report};
use crate::{
    collect::{CollectorName, Context, Reading, Sample, SampleValues, SeriesFamily, SeriesKind},
    exposition::Family,
    shutdown::Stop,
};

/// `packages`: the packages dpkg lists, and the changes seen since the
/// agent started, by kind, gauges.
pub const SERIES: &[SeriesFamily] = &[SeriesFamily {
    name: "packages",
    kind: SeriesKind::Gauge,
    fields: &["count", "installed", "removed", "upgraded", "downgraded"],
}];

const KINDS: [ChangeKind; 4] = [
    ChangeKind::Installed,
    ChangeKind::Removed,
    ChangeKind::Upgraded,
    ChangeKind::Downgraded,
];

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Installed => "installed",
        ChangeKind::Removed => "removed",
        ChangeKind::Upgraded => "upgraded",
        ChangeKind::Downgraded => "downgraded",
    }
}

/// Changes kept, by kind, in [`KINDS`]' order.
fn changes_by_kind(r: &Report) -> [u64; 4] {
    let mut n = [0; 4];
    for c in &r.changes {
        if let Some(i) = KINDS.iter().position(|k| *k == c.kind) {
            n[i] += 1;
        }
    }
    n
}

impl crate::collect::Collector for Packages {
    const NAME: CollectorName = CollectorName::Packages;
    type Report = Report;
    type Options = Options;
    type History = ();
    const SERIES: &'static [SeriesFamily] = SERIES;
    // Served by api/packages.rs, which takes `?changed_since=`.

    fn new(opts: &Options, _: &Stop) -> Self {
        Packages::new(opts)
    }

    fn interval(opts: &Options) -> Duration {
        opts.packages_interval
    }

    fn collect(&mut self, _: &Context) -> Report {
        self.scan(SystemTime::now())
    }

    fn metrics(r: &Report, out: &mut Vec<Family>) {
        if let Some(inv) = r.inventory.value() {
            let mut count = Family::gauge(
                "netmon_packages",
                &[],
                "Packages in dpkg's database (any status), as of the last parse.",
            );
            count.int(&[], inv.count as u64 + inv.omitted);
            out.push(count);
        }
        let mut changes = Family::gauge(
            "netmon_package_changes",
            &["kind"],
            "Package changes seen since the agent started and kept (at most --packages-max-changes), by kind.",
        );
        for (k, n) in KINDS.iter().zip(changes_by_kind(r)) {
            changes.int(&[kind_name(*k)], n);
        }
        out.push(changes);
    }

    fn history(_: &mut (), r: &Reading<Report>, _: Option<Duration>, out: &mut Vec<Sample>) {
        let count = r
            .report
            .inventory
            .value()
            .map_or(f64::NAN, |inv| (inv.count as u64 + inv.omitted) as f64);
        let mut values = vec![count];
        values.extend(changes_by_kind(&r.report).iter().map(|n| *n as f64));
        out.push(Sample {
            family: &SERIES[0],
            labels: Vec::new(),
            values: SampleValues::Gauge(values),
        });
    }
}
