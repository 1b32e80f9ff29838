//! Prometheus metrics: the traffic core's [`Snapshot`] and the collectors'
//! [`Telemetry`] as the Prometheus text exposition format (version 0.0.4),
//! served at `GET /metrics` (see `api/metrics.rs`).
//!
//! [`encode`] is pure: it reads one snapshot and the latest readings and
//! returns the text, so every rule below is unit-tested on hand-built data.
//!
//! Parts: [`options`] (the endpoint's options and the encoder's limits),
//! `traffic` (the traffic core's families) and `collectors` (the
//! collectors' own health), all written through [`crate::exposition`].
//! Each collector writes its own families (`collect/<name>/metrics.rs`,
//! through the registry: [`crate::collect::Source::metrics`]). The
//! history's and the API's own families are built beside them
//! (`store::status`, `api::limits`).
//!
//! Naming follows Prometheus practice and node_exporter: base units
//! (`_bytes`, `_seconds`, `_celsius`, `_ratio`), `_total` on counters and
//! only on counters. Rules the output keeps:
//! - every family has one `# HELP` and one `# TYPE` line, followed by all of
//!   its samples; families without samples are left out;
//! - no two samples of a family have the same label set: counters whose
//!   labels coincide (an interface re-created under the same name while the
//!   old entries live on) are summed, gauges keep the first value;
//! - a value the machine cannot provide ([`crate::collect::Avail::Unavailable`]) has no
//!   series, never a 0;
//! - label cardinality is bounded: device series are capped at
//!   `--metrics-max-devices` (the busiest by bytes are kept, the rest counted
//!   in `netmon_device_series_dropped`), per-flow series exist only with
//!   `--metrics-flows` and are capped the same way; devices discovery marks
//!   `gone`, and those the traffic core expired, have no series.
//!
//! Latency probe counts are per cycle, so they are gauges
//! (`netmon_latency_probes_sent`), not counters.

mod collectors;
pub mod options;
#[cfg(test)]
mod tests;
mod traffic;

use std::collections::HashMap;

pub use self::options::{Limits, MetricsAuth, Options, Settings};
pub use crate::exposition::{CONTENT_TYPE, Family, escape_label};
use crate::{
    collect::{CollectorName, Published, Reading, Source, State, Telemetry, discovery},
    snapshot::Snapshot,
};

/// Names an admin gave devices, by MAC: the `name` label of their series
/// (else the hostname).
pub type Names = HashMap<[u8; 6], String>;

/// The whole exposition for one scrape of the live state: the traffic
/// core's families, then each enabled collector's (registry order), then
/// the collectors' own health. The concatenation of [`encode_traffic`],
/// [`encode_source`] for each reading and [`encode_health`], which the API
/// caches apart (each changes at its own pace).
pub fn encode(s: &Snapshot, t: &Telemetry, limits: &Limits, names: &Names) -> String {
    let states: Vec<(&'static dyn Source, State)> = t.states().collect();
    let mut out = encode_traffic(s, discovery_of(&states), limits, names);
    for (src, st) in &states {
        if let Some(r) = st.reading() {
            out.push_str(&encode_source(*src, r));
        }
    }
    out.push_str(&encode_health(&states));
    out
}

/// Discovery's reading among `states`, when it has one (the device series'
/// addresses, names and statuses).
pub fn discovery_of<'a>(
    states: &'a [(&'static dyn Source, State)],
) -> Option<&'a Reading<discovery::Report>> {
    states
        .iter()
        .find(|(src, _)| src.name() == CollectorName::Discovery)
        .and_then(|(_, st)| st.reading())
        .and_then(|r| r.as_any().downcast_ref::<Reading<discovery::Report>>())
}

/// The traffic core's families: what changes with each drain (and with
/// discovery's reading and the devices' names).
pub fn encode_traffic(
    s: &Snapshot,
    discovery: Option<&Reading<discovery::Report>>,
    limits: &Limits,
    names: &Names,
) -> String {
    let mut families = Vec::new();
    traffic::families(s, discovery, limits, names, &mut families);
    write(&families)
}

/// One collector's families from its reading `r`.
pub fn encode_source(src: &dyn Source, r: &dyn Published) -> String {
    let mut families = Vec::new();
    src.metrics(r, &mut families);
    write(&families)
}

/// The collectors' own health (up, cycle times, cycles, failures).
pub fn encode_health(states: &[(&'static dyn Source, State)]) -> String {
    let mut families = Vec::new();
    collectors::families(states, &mut families);
    write(&families)
}

fn write(families: &[Family]) -> String {
    let mut out = String::with_capacity(64 * families.iter().map(|f| f.len() + 2).sum::<usize>());
    for f in families {
        f.write(&mut out);
    }
    out
}
