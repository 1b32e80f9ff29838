//! The collectors' own health: up, cycle times, cycles and failures.

use super::Family;
use crate::collect::{Source, State};

pub(super) fn families(states: &[(&'static dyn Source, State)], out: &mut Vec<Family>) {
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
    for (src, state) in states {
        let cycle = match state {
            State::Disabled => continue,
            State::Pending => None,
            State::Ready(r) => Some(*r.collection()),
        };
        let name = src.name();
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
