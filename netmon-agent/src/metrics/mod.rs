//! Prometheus metrics: the traffic core's [`Snapshot`] and the collectors'
//! [`Telemetry`] as the Prometheus text exposition format (version 0.0.4),
//! served at `GET /metrics` (see `api/metrics.rs`).
//!
//! [`encode`] is pure: it reads one snapshot and the latest readings and
//! returns the text, so every rule below is unit-tested on hand-built data.
//!
//! Parts: [`options`] (the endpoint's options and the encoder's limits),
//! [`inputs`] (the collectors' slots for one scrape), one builder file per
//! source of families (`traffic`, `interfaces`, `system`, `latency`,
//! `discovery`, `collectors` for the collectors' own health), all written
//! through [`crate::exposition`]. The history's and the API's own families
//! are built beside them (`store::status`, `api::limits`).
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
mod discovery;
pub mod inputs;
mod interfaces;
mod latency;
pub mod options;
mod system;
#[cfg(test)]
mod tests;
mod traffic;

use std::collections::HashMap;

pub use self::{
    inputs::{Inputs, Source},
    options::{Limits, MetricsAuth, Options, Settings},
};
pub use crate::exposition::{CONTENT_TYPE, Family, escape_label};
use crate::{collect::Telemetry, snapshot::Snapshot};

/// Names an admin gave devices, by MAC: the `name` label of their series
/// (else the hostname).
pub type Names = HashMap<[u8; 6], String>;

/// The whole exposition for one scrape of the live state.
pub fn encode(s: &Snapshot, t: &Telemetry, limits: &Limits, names: &Names) -> String {
    let (sys, ifs, disc, lat) = (
        t.system.get(),
        t.interfaces.get(),
        t.discovery.get(),
        t.latency.get(),
    );
    let inputs = Inputs {
        system: Source::of(&t.system, &sys),
        interfaces: Source::of(&t.interfaces, &ifs),
        discovery: Source::of(&t.discovery, &disc),
        latency: Source::of(&t.latency, &lat),
    };
    encode_named(s, &inputs, limits, names)
}

/// The whole exposition for one scrape: pure, from one snapshot and the
/// collectors' readings.
pub fn encode_inputs(s: &Snapshot, t: &Inputs<'_>, limits: &Limits) -> String {
    encode_named(s, t, limits, &Names::new())
}

fn encode_named(s: &Snapshot, t: &Inputs<'_>, limits: &Limits, names: &Names) -> String {
    let mut families = Vec::new();
    let discovery = t.discovery.reading();
    traffic::families(s, discovery, limits, names, &mut families);
    if let Some(r) = t.interfaces.reading() {
        interfaces::families(&r.report, &mut families);
    }
    if let Some(r) = t.system.reading() {
        system::families(&r.report, &mut families);
    }
    if let Some(r) = t.latency.reading() {
        latency::families(&r.report, &mut families);
    }
    if let Some(r) = discovery {
        discovery::families(&r.report, &mut families);
    }
    collectors::families(t, &mut families);

    let mut out = String::with_capacity(64 * families.iter().map(|f| f.len() + 2).sum::<usize>());
    for f in &families {
        f.write(&mut out);
    }
    out
}
