//! The collectors' own health: up, cycle times, cycles and failures.

use super::{Family, Inputs, Source};
use crate::collect::{CollectorName, Cycle};

pub(super) fn families(t: &Inputs<'_>, out: &mut Vec<Family>) {
    const C: &[&str] = &["collector"];
    let mut up = Family::gauge(
        "netmon_collector_up",
        C,
        "1 when an enabled collector has a reading, 0 while its first cycle runs.",
    );
    let mut cpu = Family::gauge(
        "netmon_collector_cycle_cpu_seconds",
        C,
        "CPU time of a collector's last cycle.",
    );
    let mut wall = Family::gauge(
        "netmon_collector_cycle_duration_seconds",
        C,
        "Wall time of a collector's last cycle.",
    );
    let mut cycles = Family::counter(
        "netmon_collector_cycles_total",
        C,
        "Cycles a collector completed, failed ones included.",
    );
    let mut failures = Family::counter(
        "netmon_collector_failures_total",
        C,
        "Cycles of a collector that panicked.",
    );
    let mut cpu_total = Family::counter(
        "netmon_collector_cpu_seconds_total",
        C,
        "CPU time of all of a collector's cycles.",
    );
    fn state<R>(s: Source<'_, R>) -> Option<Option<Cycle>> {
        match s {
            Source::Disabled => None,
            Source::Pending => Some(None),
            Source::Ready(r) => Some(Some(r.collection)),
        }
    }
    for (name, state) in [
        (CollectorName::System, state(t.system)),
        (CollectorName::Interfaces, state(t.interfaces)),
        (CollectorName::Discovery, state(t.discovery)),
        (CollectorName::Latency, state(t.latency)),
    ] {
        let Some(cycle) = state else { continue };
        let l = [name.as_str()];
        up.int(&l, u64::from(cycle.is_some()));
        if let Some(c) = cycle {
            cpu.float(&l, c.cpu.as_secs_f64());
            wall.float(&l, c.wall.as_secs_f64());
            cycles.int(&l, c.cycles);
            failures.int(&l, c.failures);
            cpu_total.float(&l, c.cpu_total.as_secs_f64());
        }
    }
    out.extend([up, cpu, wall, cycles, failures, cpu_total]);
}
