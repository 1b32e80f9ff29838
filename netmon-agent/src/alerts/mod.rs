//! Alerts: rules over the values the agent has, their states, and their
//! delivery to Alertmanager and webhooks (issue 16).
//!
//! - [`rules`]: a rule (an expression such as `cpu_percent > 80`, a resolve
//!   threshold, `for`, severity, labels, annotations), the default rule set
//!   and the `[alerts]` TOML section, validated with the offending field
//!   named (`alerts.rules[2].for: ...`).
//! - [`engine`]: evaluates the rules over [`Values`] every interval:
//!   inactive -> pending -> firing -> resolved, with `for`, hysteresis,
//!   `keep_firing_for` and silences; each transition is an [`engine::Event`].
//! - [`deliver`]: Alertmanager's v2 API and signed JSON webhooks, one
//!   thread and one bounded queue per receiver, retries with backoff.
//! - [`prom`]: the same default rules as a Prometheus rules file over
//!   netmon's `/metrics` names (`netmon-agent rules`);
//! - [`values`]: the one adapter, filling [`Values`] from the agent's
//!   snapshot and collectors' readings;
//! - [`run`]: the runner thread (every drain interval: values, evaluation,
//!   delivery, the alert log) and [`run::Alerts`], what the API, the event
//!   stream and `/metrics` read; its options (`--alertmanager-url`...).
//!
//! The engine reads nothing of the agent directly: the adapter fills a
//! [`Values`] from the telemetry each interval. The names it knows, and the
//! labels each carries, are listed in [`NAMES`]. The alert log lives in the
//! history file (`store/alert_log.rs`), reached through [`run::History`]
//! (alerts sit below the store).

pub mod deliver;
pub mod engine;
pub mod prom;
pub mod rules;
pub mod run;
pub mod values;

use std::collections::BTreeMap;

/// Labels of one entity (a filesystem, an interface, a device...), sorted.
pub type Labels = BTreeMap<String, String>;

/// The named values a rule's expression may use, with the labels that tell
/// their entities apart and what they mean. The adapter that fills
/// [`Values`] must use these names; a rule naming another is refused.
pub const NAMES: &[(&str, &[&str], &str)] = &[
    ("cpu_percent", &[], "CPU busy, all cores, percent"),
    (
        "memory_percent",
        &[],
        "memory used (total - available), percent",
    ),
    (
        "filesystem_used_percent",
        &["mountpoint", "device"],
        "a filesystem's space used, percent",
    ),
    (
        "temperature_celsius",
        &["sensor"],
        "the hottest CPU sensor, degrees Celsius",
    ),
    (
        "load_per_core",
        &[],
        "1-minute load average divided by the cores",
    ),
    (
        "device",
        &["interface", "mac", "ip", "vendor", "hostname"],
        "1 for each device on a watched interface (for new(device))",
    ),
    (
        "device_gone",
        &["interface", "mac"],
        "1 when a device is gone, else 0",
    ),
    (
        "device_rx_bps",
        &["interface", "mac"],
        "a device's receive rate, bits per second",
    ),
    (
        "device_tx_bps",
        &["interface", "mac"],
        "a device's transmit rate, bits per second",
    ),
    (
        "interface_utilization_percent",
        &["interface"],
        "the busier direction's share of the link speed, percent",
    ),
    (
        "interface_up",
        &["interface"],
        "1 when the link is up, else 0",
    ),
    (
        "interface_errors_total",
        &["interface"],
        "receive and transmit errors since boot (a counter: use rate())",
    ),
    (
        "interface_drops_total",
        &["interface"],
        "receive and transmit drops since boot (a counter: use rate())",
    ),
    (
        "latency_rtt_ms",
        &["target"],
        "a probe target's average round trip, ms",
    ),
    (
        "latency_loss_percent",
        &["target"],
        "a probe target's loss, percent",
    ),
    (
        "map_fill_percent",
        &["map"],
        "an eBPF map's, the flow cache's or a table's fill, percent",
    ),
    (
        "map_evictions_total",
        &["map"],
        "evictions since start (a counter: use rate())",
    ),
    (
        "history_degraded",
        &[],
        "1 when the history is degraded, else 0",
    ),
    (
        "collector_up",
        &["collector"],
        "1 when a collector's last cycle worked",
    ),
    (
        "security_finding",
        &["kind", "severity", "subject"],
        "1 for each security finding now (subject: an address on its interface, a process)",
    ),
];

/// One value of one entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// What the engine reads each interval: for each name of [`NAMES`], the
/// samples present now. A name with no samples (a machine without
/// sensors, a collector turned off) makes its rules' alerts resolve.
#[derive(Clone, Debug, Default)]
pub struct Values {
    by_name: BTreeMap<String, Vec<Sample>>,
}

impl Values {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; non-finite values are skipped (a figure the machine
    /// cannot give has no sample).
    pub fn push<'a>(
        &mut self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
    ) -> &mut Self {
        if value.is_finite() {
            let labels = labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            self.by_name
                .entry(name.to_owned())
                .or_default()
                .push(Sample { labels, value });
        }
        self
    }

    /// The samples of `name` (none when absent).
    pub fn get(&self, name: &str) -> &[Sample] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }
}

/// True when `name` is one of [`NAMES`].
pub fn known_name(name: &str) -> bool {
    NAMES.iter().any(|(n, _, _)| *n == name)
}
