//! Prometheus metrics: the traffic core's [`Snapshot`] and the collectors'
//! [`Telemetry`] as the Prometheus text exposition format (version 0.0.4),
//! served at `GET /metrics` (see `api/metrics.rs`).
//!
//! [`encode`] is pure: it reads one snapshot and the latest readings and
//! returns the text, so every rule below is unit-tested on hand-built data.
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

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    time::SystemTime,
};

use crate::{
    collect::{
        CollectorName, Cycle, Latest, Reading, Telemetry,
        discovery::{self, inventory::Status},
        latency, netstats, system,
    },
    ifaces::format_mac,
    snapshot::Snapshot,
    traffic::key_ip,
    units::{direction_name, protocol_name},
};

/// The Content-Type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether `/metrics` needs the API key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAuth {
    /// Off when `--listen` is a loopback address, else on.
    #[default]
    Auto,
    /// Always needs the key.
    On,
    /// Never needs the key.
    Off,
}

/// Options of the Prometheus endpoint.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "metrics-options")]
pub struct Options {
    /// Whether GET /metrics needs the API key: auto (off when --listen is a
    /// loopback address, else on), on or off.
    #[arg(long, value_enum, default_value = "auto", env = "NETMON_METRICS_AUTH")]
    pub metrics_auth: MetricsAuth,

    /// Most devices with series in /metrics; beyond it the busiest by bytes
    /// are kept and netmon_device_series_dropped counts the others.
    #[arg(long, default_value_t = 1000, env = "NETMON_METRICS_MAX_DEVICES")]
    pub metrics_max_devices: usize,

    /// Export one series per flow (off by default: flows are many and short-lived).
    #[arg(long, env = "NETMON_METRICS_FLOWS")]
    pub metrics_flows: bool,

    /// Most flows with series in /metrics when --metrics-flows is on; the
    /// busiest by bytes are kept.
    #[arg(long, default_value_t = 1000, env = "NETMON_METRICS_MAX_FLOWS")]
    pub metrics_max_flows: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            metrics_auth: MetricsAuth::Auto,
            metrics_max_devices: 1000,
            metrics_flows: false,
            metrics_max_flows: 1000,
        }
    }
}

impl Options {
    /// Whether `/metrics` needs the key when the API listens on `listen`.
    pub fn needs_key(&self, listen: SocketAddr) -> bool {
        match self.metrics_auth {
            MetricsAuth::On => true,
            MetricsAuth::Off => false,
            MetricsAuth::Auto => !listen.ip().is_loopback(),
        }
    }
}

/// The encoder's settings (from [`Options`]).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_devices: usize,
    pub flows: bool,
    pub max_flows: usize,
}

impl From<&Options> for Limits {
    fn from(o: &Options) -> Self {
        Limits {
            max_devices: o.metrics_max_devices,
            flows: o.metrics_flows,
            max_flows: o.metrics_max_flows,
        }
    }
}

/// Settings of the `/metrics` route, fixed at start-up (they live in
/// `api::AppState`): whether it needs the key (resolved against the listen
/// address) and the encoder's limits.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub needs_key: bool,
    pub limits: Limits,
}

impl Settings {
    pub fn new(opts: &Options, listen: SocketAddr) -> Self {
        Settings {
            needs_key: opts.needs_key(listen),
            limits: opts.into(),
        }
    }
}

/// One sample value: counters stay integers so large totals keep every digit.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Int(u64),
    Float(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family being built: its samples keyed by label values (in
/// the order of `labels`), so each label set appears once.
pub(crate) struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    samples: BTreeMap<Vec<String>, Value>,
}

impl Family {
    fn new(
        kind: Kind,
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        Family {
            name,
            help,
            kind,
            labels,
            samples: BTreeMap::new(),
        }
    }

    pub(crate) fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Family::new(Kind::Counter, name, labels, help)
    }

    pub(crate) fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Family::new(Kind::Gauge, name, labels, help)
    }

    /// Adds a sample; a counter with the same labels is summed, a gauge
    /// keeps its first value.
    fn add(&mut self, labels: Vec<String>, v: Value) {
        debug_assert_eq!(labels.len(), self.labels.len(), "{}", self.name);
        match self.samples.entry(labels) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if self.kind == Kind::Counter {
                    let sum = match (*e.get(), v) {
                        (Value::Int(a), Value::Int(b)) => Value::Int(a.saturating_add(b)),
                        (a, b) => Value::Float(as_f64(a) + as_f64(b)),
                    };
                    e.insert(sum);
                }
            }
        }
    }

    pub(crate) fn int(&mut self, labels: &[&str], v: u64) {
        self.add(
            labels.iter().map(|s| (*s).to_owned()).collect(),
            Value::Int(v),
        );
    }

    fn float(&mut self, labels: &[&str], v: f64) {
        self.add(
            labels.iter().map(|s| (*s).to_owned()).collect(),
            Value::Float(v),
        );
    }

    pub(crate) fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        for (values, v) in &self.samples {
            out.push_str(self.name);
            if !values.is_empty() {
                out.push('{');
                for (i, (name, value)) in self.labels.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                    out.push_str("=\"");
                    escape_label_into(value, out);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(*v, out);
            out.push('\n');
        }
    }
}

fn as_f64(v: Value) -> f64 {
    match v {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
    }
}

fn write_value(v: Value, out: &mut String) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => out.push_str("-Inf"),
        // Display never uses an exponent and round-trips exactly.
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and
/// line feed escaped.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_label_into(s, &mut out);
    out
}

fn escape_label_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and line feed escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// One collector's slot as the encoder sees it.
#[derive(Debug)]
pub enum Source<'a, R> {
    /// Turned off: no series at all.
    Disabled,
    /// Enabled, first cycle still running: `netmon_collector_up` 0.
    Pending,
    Ready(&'a Reading<R>),
}

impl<R> Clone for Source<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Source<'_, R> {}

impl<'a, R> Source<'a, R> {
    fn of(slot: &Latest<R>, held: &'a Option<std::sync::Arc<Reading<R>>>) -> Self {
        match held {
            Some(r) => Source::Ready(r),
            None if slot.disabled() => Source::Disabled,
            None => Source::Pending,
        }
    }

    fn reading(self) -> Option<&'a Reading<R>> {
        match self {
            Source::Ready(r) => Some(r),
            Source::Disabled | Source::Pending => None,
        }
    }
}

/// Every collector's slot for one scrape.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub system: Source<'a, system::Report>,
    pub interfaces: Source<'a, netstats::Report>,
    pub discovery: Source<'a, discovery::Report>,
    pub latency: Source<'a, latency::Report>,
}

/// The whole exposition for one scrape of the live state.
/// Names an admin gave devices, by MAC: the `name` label of their series
/// (else the hostname).
pub type Names = HashMap<[u8; 6], String>;

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
    traffic_families(s, discovery, limits, names, &mut families);
    if let Some(r) = t.interfaces.reading() {
        interfaces_families(&r.report, &mut families);
    }
    if let Some(r) = t.system.reading() {
        system_families(&r.report, &mut families);
    }
    if let Some(r) = t.latency.reading() {
        latency_families(&r.report, &mut families);
    }
    if let Some(r) = discovery {
        discovery_families(&r.report, &mut families);
    }
    collector_families(t, &mut families);

    let mut out =
        String::with_capacity(64 * families.iter().map(|f| f.samples.len() + 2).sum::<usize>());
    for f in &families {
        f.write(&mut out);
    }
    out
}

/// The address a device's series are labelled with: its first IPv4, else
/// its first address, else "".
fn device_ip(ips: impl IntoIterator<Item = IpAddr> + Clone) -> String {
    ips.clone()
        .into_iter()
        .find(IpAddr::is_ipv4)
        .or_else(|| ips.into_iter().next())
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

fn traffic_families(
    s: &Snapshot,
    discovery: Option<&Reading<discovery::Report>>,
    limits: &Limits,
    names: &Names,
    out: &mut Vec<Family>,
) {
    const DEV: &[&str] = &["interface", "mac", "ip", "name"];
    let found: HashMap<(u32, [u8; 6]), &discovery::DeviceReport> = discovery
        .iter()
        .flat_map(|r| &r.report.devices)
        .map(|d| ((d.ifindex, d.mac_bytes), d))
        .collect();
    let mut devices: Vec<_> = s
        .devices
        .iter()
        .map(|d| (d, found.get(&(d.ifindex, d.mac)).copied()))
        .filter(|(_, f)| f.is_none_or(|f| f.status != Status::Gone))
        .collect();
    let listed = devices.len();
    // Busiest first; ties in a stable order so the kept set does not flap.
    devices.sort_by_key(|(d, _)| {
        (
            std::cmp::Reverse(d.rx.total.bytes.saturating_add(d.tx.total.bytes)),
            d.ifindex,
            d.mac,
        )
    });
    devices.truncate(limits.max_devices);

    let mut rx_bytes = Family::counter(
        "netmon_device_receive_bytes_total",
        DEV,
        "Bytes of frames sent to the device (destination MAC), as the eBPF programs counted them.",
    );
    let mut rx_packets = Family::counter(
        "netmon_device_receive_packets_total",
        DEV,
        "Frames sent to the device (destination MAC).",
    );
    let mut tx_bytes = Family::counter(
        "netmon_device_transmit_bytes_total",
        DEV,
        "Bytes of frames the device sent (source MAC).",
    );
    let mut tx_packets = Family::counter(
        "netmon_device_transmit_packets_total",
        DEV,
        "Frames the device sent (source MAC).",
    );
    for (d, f) in &devices {
        let iface = s.iface_name(d.ifindex);
        let mac = format_mac(d.mac);
        let ip = if d.ips.is_empty() {
            device_ip(f.iter().flat_map(|f| f.addresses.iter().map(|a| a.ip)))
        } else {
            device_ip(d.ips.iter().copied())
        };
        let name = names
            .get(&d.mac)
            .map(String::as_str)
            .or_else(|| f.and_then(|f| f.hostname.as_deref()))
            .unwrap_or("");
        let labels = [iface.as_str(), mac.as_str(), ip.as_str(), name];
        rx_bytes.int(&labels, d.rx.total.bytes);
        rx_packets.int(&labels, d.rx.total.packets);
        tx_bytes.int(&labels, d.tx.total.bytes);
        tx_packets.int(&labels, d.tx.total.packets);
    }
    out.extend([rx_bytes, rx_packets, tx_bytes, tx_packets]);

    let mut count = Family::gauge(
        "netmon_devices",
        &[],
        "Devices (interface, MAC) the traffic core currently tracks, gone ones excluded.",
    );
    let mut dropped = Family::gauge(
        "netmon_device_series_dropped",
        &[],
        "Devices left out of the device series by --metrics-max-devices.",
    );
    if s.updated.is_some() {
        count.int(&[], listed as u64);
        dropped.int(&[], (listed - devices.len()) as u64);
    }
    out.extend([count, dropped]);

    const IF: &[&str] = &["interface"];
    let mut f = [
        Family::counter(
            "netmon_interface_receive_bytes_total",
            IF,
            "Bytes of frames received on a watched interface, as netmon's ingress hook counted them.",
        ),
        Family::counter(
            "netmon_interface_receive_packets_total",
            IF,
            "Frames received on a watched interface (ingress hook).",
        ),
        Family::counter(
            "netmon_interface_transmit_bytes_total",
            IF,
            "Bytes of frames sent on a watched interface, as netmon's egress hook counted them.",
        ),
        Family::counter(
            "netmon_interface_transmit_packets_total",
            IF,
            "Frames sent on a watched interface (egress hook).",
        ),
    ];
    for i in &s.interfaces {
        let l = [i.name.as_str()];
        f[0].int(&l, i.totals.rx.total.bytes);
        f[1].int(&l, i.totals.rx.total.packets);
        f[2].int(&l, i.totals.tx.total.bytes);
        f[3].int(&l, i.totals.tx.total.packets);
    }
    out.extend(f);

    if s.updated.is_some() {
        const MAP: &[&str] = &["map"];
        let mut entries = Family::gauge("netmon_map_entries", MAP, "Entries in a kernel map.");
        let mut capacity = Family::gauge(
            "netmon_map_capacity_entries",
            MAP,
            "A kernel map's max_entries.",
        );
        let mut inserts = Family::counter(
            "netmon_map_inserts_total",
            MAP,
            "Entries the eBPF programs created in a kernel map.",
        );
        let mut deleted = Family::counter(
            "netmon_map_idle_deletions_total",
            MAP,
            "Entries the agent deleted from a kernel map because they were idle.",
        );
        let mut evictions = Family::counter(
            "netmon_map_evictions_total",
            MAP,
            "Entries the kernel evicted from a full LRU map.",
        );
        for (name, m) in [("mac", s.mac_map), ("flow", s.flow_map)] {
            entries.int(&[name], m.entries);
            capacity.int(&[name], m.capacity);
            inserts.int(&[name], m.inserts);
            deleted.int(&[name], m.deleted);
            evictions.int(&[name], m.evictions);
        }
        out.extend([entries, capacity, inserts, deleted, evictions]);
        let mut used = Family::gauge(
            "netmon_datapath_cache_slots_used",
            &[],
            "Flow-cache slots (one per flow and CPU) the last interval used.",
        );
        used.int(&[], s.flow_cache.slots_used);
        let mut slots = Family::gauge(
            "netmon_datapath_cache_slots",
            &[],
            "Flow-cache slots per interval, all CPUs (0: the cache is off).",
        );
        slots.int(&[], s.flow_cache.capacity);
        out.extend([used, slots]);

        const TABLE: &[&str] = &["table"];
        let mut entries = Family::gauge(
            "netmon_table_entries",
            TABLE,
            "Entries in one of the agent's tables (flows, devices).",
        );
        let mut capacity = Family::gauge(
            "netmon_table_capacity_entries",
            TABLE,
            "Most entries the table holds (--max-flows, --max-devices).",
        );
        let mut evictions = Family::counter(
            "netmon_table_evictions_total",
            TABLE,
            "Entries evicted from a full table, least recently active first.",
        );
        for (name, t) in [("flows", s.flow_table), ("devices", s.device_table)] {
            entries.int(&[name], t.entries);
            capacity.int(&[name], t.capacity);
            evictions.int(&[name], t.evictions);
        }
        out.extend([entries, capacity, evictions]);

        let mut other = [
            Family::counter(
                "netmon_interface_other_flows_receive_bytes_total",
                IF,
                "Bytes received in flows no longer listed: evicted from the full flow table, or counted by the datapath without a flow.",
            ),
            Family::counter(
                "netmon_interface_other_flows_receive_packets_total",
                IF,
                "Packets received in flows no longer listed.",
            ),
            Family::counter(
                "netmon_interface_other_flows_transmit_bytes_total",
                IF,
                "Bytes sent in flows no longer listed.",
            ),
            Family::counter(
                "netmon_interface_other_flows_transmit_packets_total",
                IF,
                "Packets sent in flows no longer listed.",
            ),
            Family::counter(
                "netmon_interface_evicted_flows_total",
                IF,
                "Flows on the interface evicted from the full flow table.",
            ),
        ];
        for i in &s.interfaces {
            let (l, o) = ([i.name.as_str()], i.totals.other);
            other[0].int(&l, o.rx.bytes);
            other[1].int(&l, o.rx.packets);
            other[2].int(&l, o.tx.bytes);
            other[3].int(&l, o.tx.packets);
            other[4].int(&l, o.evicted_flows);
        }
        out.extend(other);

        let mut written = Family::gauge(
            "netmon_history_flow_series_this_hour",
            &[],
            "Distinct flow series the history wrote this hour (at most --store-flow-series-per-hour).",
        );
        written.int(&[], s.flow_series.this_hour);
        let mut aggregated = Family::counter(
            "netmon_history_flow_samples_aggregated_total",
            &[],
            "Flow samples the history added to an interface's `other` flow series because the hour's series cap was reached.",
        );
        aggregated.int(&[], s.flow_series.aggregated);
        out.extend([written, aggregated]);

        let g = s.globals;
        for (name, help, v) in [
            (
                "netmon_frames_total",
                "Frames the eBPF programs saw, on every watched interface and hook.",
                g.packets,
            ),
            (
                "netmon_frame_bytes_total",
                "Bytes of the frames the eBPF programs saw.",
                g.bytes,
            ),
            (
                "netmon_frames_non_ip_total",
                "Frames whose EtherType is neither IPv4 nor IPv6 (ARP included).",
                g.non_ip,
            ),
            ("netmon_frames_arp_total", "ARP frames.", g.arp),
            (
                "netmon_frames_vlan_total",
                "Frames with one or two VLAN tags.",
                g.vlan,
            ),
            (
                "netmon_frames_malformed_total",
                "Frames too short for a header they announce, or with an impossible header field.",
                g.malformed,
            ),
            (
                "netmon_frames_ipv6_ext_limit_total",
                "IPv6 packets whose extension-header chain was longer than the programs walk.",
                g.ipv6_ext_limit,
            ),
            (
                "netmon_map_update_failures_total",
                "Kernel map updates the eBPF programs could not make.",
                g.map_update_failed,
            ),
            (
                "netmon_datapath_cache_misses_total",
                "IP frames that found no flow-cache slot (their bucket was full of other flows).",
                g.cache_misses,
            ),
            (
                "netmon_datapath_flows_aggregated_total",
                "IP frames counted in their MAC pair's aggregate, not their flow: the CPU's flow-map inserts for the interval were spent.",
                g.flows_aggregated,
            ),
        ] {
            let mut f = Family::counter(name, &[], help);
            f.int(&[], v);
            out.push(f);
        }
    }

    if limits.flows {
        flow_families(s, limits.max_flows, out);
    }
}

fn flow_families(s: &Snapshot, max: usize, out: &mut Vec<Family>) {
    const FLOW: &[&str] = &["interface", "direction", "protocol", "src", "dst"];
    // The snapshot lists the top flows by bytes (at least LISTED_FLOWS of
    // them); the rest are counted as dropped.
    let mut flows: Vec<_> = s.flows.iter().collect();
    flows.sort_by_key(|f| (std::cmp::Reverse(f.meter.total.bytes), f.key.ifindex));
    let listed = (s.flow_table.entries as usize).max(flows.len());
    flows.truncate(max);
    let kept = flows.len();
    let mut bytes = Family::counter(
        "netmon_flow_bytes_total",
        FLOW,
        "Bytes of one IP conversation (only with --metrics-flows).",
    );
    let mut packets = Family::counter(
        "netmon_flow_packets_total",
        FLOW,
        "Packets of one IP conversation (only with --metrics-flows).",
    );
    for f in flows {
        let k = &f.key;
        let iface = s.iface_name(k.ifindex);
        let (src, dst) = (key_ip(k.src).to_string(), key_ip(k.dst).to_string());
        let l = [
            iface.as_str(),
            direction_name(k.direction),
            protocol_name(k.proto),
            src.as_str(),
            dst.as_str(),
        ];
        bytes.int(&l, f.meter.total.bytes);
        packets.int(&l, f.meter.total.packets);
    }
    let mut dropped = Family::gauge(
        "netmon_flow_series_dropped",
        &[],
        "Flows left out of the flow series by --metrics-max-flows.",
    );
    dropped.int(&[], (listed - kept) as u64);
    out.extend([bytes, packets, dropped]);
}

fn interfaces_families(r: &netstats::Report, out: &mut Vec<Family>) {
    const DEV: &[&str] = &["device"];
    let Some(ifaces) = r.interfaces.value() else {
        return;
    };
    let mut c = [
        Family::counter(
            "netmon_network_receive_bytes_total",
            DEV,
            "Bytes received, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_receive_packets_total",
            DEV,
            "Packets received, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_receive_errs_total",
            DEV,
            "Receive errors, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_receive_drop_total",
            DEV,
            "Received packets dropped, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_bytes_total",
            DEV,
            "Bytes sent, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_packets_total",
            DEV,
            "Packets sent, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_errs_total",
            DEV,
            "Transmit errors, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_drop_total",
            DEV,
            "Packets dropped on transmit, as the kernel counts them.",
        ),
    ];
    let mut up = Family::gauge(
        "netmon_network_up",
        DEV,
        "1 when the interface's operstate is up, else 0.",
    );
    let mut mtu = Family::gauge("netmon_network_mtu_bytes", DEV, "The interface's MTU.");
    let mut speed = Family::gauge(
        "netmon_network_speed_bytes",
        DEV,
        "The link speed in bytes per second.",
    );
    for i in ifaces {
        let l = [i.name.as_str()];
        if let Some(k) = i.counters.value() {
            for (f, v) in c.iter_mut().zip([
                k.rx_bytes,
                k.rx_packets,
                k.rx_errors,
                k.rx_dropped,
                k.tx_bytes,
                k.tx_packets,
                k.tx_errors,
                k.tx_dropped,
            ]) {
                f.int(&l, v);
            }
        }
        up.int(&l, u64::from(i.oper_state == "up"));
        if let Some(m) = i.mtu.value() {
            mtu.int(&l, u64::from(*m));
        }
        if let Some(s) = i.speed_mbps.value() {
            speed.int(&l, s.saturating_mul(1_000_000) / 8);
        }
    }
    out.extend(c);
    out.extend([up, mtu, speed]);
}

fn system_families(r: &system::Report, out: &mut Vec<Family>) {
    let mut usage = Family::gauge(
        "netmon_cpu_usage_ratio",
        &[],
        "CPU busy time over the last system cycle, 0 to 1, all cores.",
    );
    let mut core = Family::gauge(
        "netmon_cpu_core_usage_ratio",
        &["cpu"],
        "One core's busy time over the last system cycle, 0 to 1.",
    );
    if let Some(c) = r.cpu.value() {
        usage.float(&[], c.usage_percent / 100.0);
        for k in &c.cores {
            core.float(&[k.name.as_str()], k.usage_percent / 100.0);
        }
    }
    out.extend([usage, core]);

    if let Some(l) = r.load_average.value() {
        for (name, help, v) in [
            ("netmon_load1", "1-minute load average.", l.one),
            ("netmon_load5", "5-minute load average.", l.five),
            ("netmon_load15", "15-minute load average.", l.fifteen),
        ] {
            let mut f = Family::gauge(name, &[], help);
            f.float(&[], v);
            out.push(f);
        }
    }

    let mut mem = Vec::new();
    if let Some(m) = r.memory.value() {
        mem.push((
            "netmon_memory_total_bytes",
            "Physical memory.",
            Some(m.total_bytes),
        ));
        mem.push((
            "netmon_memory_used_bytes",
            "Memory in use (total minus available).",
            Some(m.used_bytes),
        ));
        mem.push((
            "netmon_memory_available_bytes",
            "Memory available for new work without swapping (MemAvailable).",
            Some(m.available_bytes),
        ));
        mem.push((
            "netmon_memory_free_bytes",
            "Unused memory (MemFree).",
            Some(m.free_bytes),
        ));
        mem.push((
            "netmon_memory_cached_bytes",
            "Page cache (Cached).",
            m.cached_bytes.value().copied(),
        ));
    }
    if let Some(s) = r.swap.value() {
        mem.push((
            "netmon_swap_total_bytes",
            "Swap space.",
            Some(s.total_bytes),
        ));
        mem.push(("netmon_swap_used_bytes", "Swap in use.", Some(s.used_bytes)));
        mem.push(("netmon_swap_free_bytes", "Swap unused.", Some(s.free_bytes)));
    }
    for (name, help, v) in mem {
        if let Some(v) = v {
            let mut f = Family::gauge(name, &[], help);
            f.int(&[], v);
            out.push(f);
        }
    }

    const FS: &[&str] = &["mountpoint", "fstype", "device"];
    let mut size = Family::gauge("netmon_filesystem_size_bytes", FS, "Filesystem size.");
    let mut avail = Family::gauge(
        "netmon_filesystem_avail_bytes",
        FS,
        "Filesystem space available to unprivileged users.",
    );
    let mut ro = Family::gauge(
        "netmon_filesystem_readonly",
        FS,
        "1 when the filesystem is mounted read-only.",
    );
    for fs in r.filesystems.value().into_iter().flatten() {
        let l = [
            fs.mount_point.as_str(),
            fs.fs_type.as_str(),
            fs.device.as_str(),
        ];
        size.int(&l, fs.total_bytes);
        avail.int(&l, fs.free_bytes);
        ro.int(&l, u64::from(fs.read_only));
    }
    out.extend([size, avail, ro]);

    let mut temp = Family::gauge(
        "netmon_hwmon_temp_celsius",
        &["chip", "sensor"],
        "A temperature sensor's reading.",
    );
    let mut crit = Family::gauge(
        "netmon_hwmon_temp_crit_celsius",
        &["chip", "sensor"],
        "A temperature sensor's critical threshold.",
    );
    for s in r.temperatures.value().into_iter().flat_map(|t| &t.sensors) {
        // Labels are "<driver> <sensor>" ("coretemp Package id 0").
        let (chip, sensor) = s.label.split_once(' ').unwrap_or((&s.label, ""));
        if let Some(c) = s.celsius.value() {
            temp.float(&[chip, sensor], *c);
        }
        if let Some(c) = s.critical_celsius {
            crit.float(&[chip, sensor], c);
        }
    }
    out.extend([temp, crit]);

    if let Some(boot) = r
        .host
        .boot_time
        .value()
        .and_then(|b| humantime::parse_rfc3339(b).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
    {
        let mut f = Family::gauge(
            "netmon_boot_time_seconds",
            &[],
            "When the system booted, in seconds since the Unix epoch.",
        );
        f.float(&[], boot.as_secs_f64());
        out.push(f);
    }
    if let Some(u) = r.uptime_seconds.value() {
        let mut f = Family::gauge("netmon_uptime_seconds", &[], "Time since boot.");
        f.int(&[], *u);
        out.push(f);
    }
}

fn latency_families(r: &latency::Report, out: &mut Vec<Family>) {
    const T: &[&str] = &["target"];
    let mut rtt = [
        Family::gauge(
            "netmon_latency_rtt_min_seconds",
            T,
            "Shortest ICMP echo round trip of the last latency cycle.",
        ),
        Family::gauge(
            "netmon_latency_rtt_avg_seconds",
            T,
            "Mean ICMP echo round trip of the last latency cycle.",
        ),
        Family::gauge(
            "netmon_latency_rtt_max_seconds",
            T,
            "Longest ICMP echo round trip of the last latency cycle.",
        ),
        Family::gauge(
            "netmon_latency_rtt_stddev_seconds",
            T,
            "Population standard deviation of the last latency cycle's round trips.",
        ),
    ];
    let mut loss = Family::gauge(
        "netmon_latency_loss_ratio",
        T,
        "Share of the last latency cycle's requests without a reply, 0 to 1.",
    );
    let mut sent = Family::gauge(
        "netmon_latency_probes_sent",
        T,
        "Echo requests attempted in the last latency cycle.",
    );
    let mut received = Family::gauge(
        "netmon_latency_probes_received",
        T,
        "Echo replies received in the last latency cycle.",
    );
    for t in &r.targets {
        let target = match &t.interface {
            Some(i) if t.address.is_ipv6() => format!("{}%{i}", t.address),
            _ => t.address.to_string(),
        };
        let l = [target.as_str()];
        if let Some(s) = t.rtt.value() {
            for (f, v) in rtt.iter_mut().zip([
                s.min_seconds,
                s.avg_seconds,
                s.max_seconds,
                s.stddev_seconds,
            ]) {
                f.float(&l, v);
            }
        }
        if let Some(p) = t.loss_percent.value() {
            loss.float(&l, p / 100.0);
        }
        sent.int(&l, u64::from(t.sent));
        received.int(&l, u64::from(t.received));
    }
    out.extend(rtt);
    out.extend([loss, sent, received]);
}

fn discovery_families(r: &discovery::Report, out: &mut Vec<Family>) {
    let mut f = Family::gauge(
        "netmon_discovery_devices",
        &["status"],
        "Devices in discovery's inventory by status.",
    );
    let i = &r.inventory;
    for (status, n) in [
        (Status::Active, i.active),
        (Status::Idle, i.idle),
        (Status::Gone, i.gone),
    ] {
        f.int(&[status.as_str()], n as u64);
    }
    out.push(f);
}

fn collector_families(t: &Inputs<'_>, out: &mut Vec<Family>) {
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

#[cfg(test)]
mod tests {
    use std::{
        collections::HashSet,
        net::Ipv4Addr,
        time::{Duration, Instant},
    };

    use netmon_common::{Counter, MacKey, direction};

    use super::*;
    use crate::{
        collect::{
            Avail,
            discovery::{DeviceReport, inventory::Source as Seen},
            netstats::{Counters, InterfaceStats},
            system::{Cpu, Filesystem, Host, Memory, Sensor, Temperatures},
        },
        ifaces::Subnets,
        traffic::{Reading as MapReading, Traffic},
    };

    const ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 0xee];

    fn mac(n: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, n]
    }

    /// A snapshot after one drain in which each `(ifindex, src, bytes)`
    /// sent `bytes` in one frame to [`ROUTER`].
    fn snapshot(sent: &[(u32, [u8; 6], u64)], names: &[(u32, &str)]) -> Snapshot {
        let mut traffic = Traffic::new(Duration::from_secs(300));
        let reading = MapReading {
            macs: sent
                .iter()
                .map(|&(ifindex, src, bytes)| {
                    (
                        MacKey {
                            ifindex,
                            direction: direction::EGRESS,
                            _pad0: 0,
                            src,
                            dst: ROUTER,
                            _pad1: [0; 2],
                        },
                        Counter { bytes, packets: 1 },
                    )
                })
                .collect(),
            mac_capacity: 4096,
            flow_capacity: 65536,
            ..MapReading::default()
        };
        let now = Instant::now();
        traffic.update(now, SystemTime::now(), &reading, &Subnets::default());
        Snapshot {
            updated: Some(SystemTime::now()),
            devices: traffic.devices.values().cloned().collect(),
            flows: traffic.flows.values().cloned().collect(),
            globals: traffic.globals,
            mac_map: traffic.mac_map,
            flow_map: traffic.flow_map,
            flow_cache: traffic.flow_cache,
            names: names.iter().map(|&(i, n)| (i, n.to_owned())).collect(),
            ..Snapshot::default()
        }
    }

    fn cycle() -> Cycle {
        Cycle {
            started: SystemTime::now(),
            finished: SystemTime::now(),
            wall: Duration::from_millis(20),
            cpu: Duration::from_millis(5),
            cycles: 7,
            cpu_total: Duration::from_millis(35),
            failures: 0,
        }
    }

    fn reading<R>(report: R) -> Reading<R> {
        Reading {
            collection: cycle(),
            report,
        }
    }

    fn found(ifindex: u32, m: [u8; 6], hostname: Option<&str>, status: Status) -> DeviceReport {
        DeviceReport {
            interface: String::new(),
            ifindex,
            mac: format_mac(m),
            mac_bytes: m,
            vendor: None,
            locally_administered: true,
            hostname: hostname.map(str::to_owned),
            addresses: vec![discovery::inventory::Address {
                ip: IpAddr::V4(Ipv4Addr::new(10, 9, 0, m[5])),
                last_seen: SystemTime::now(),
            }],
            first_seen: SystemTime::now(),
            last_seen: SystemTime::now(),
            status,
            sources: vec![Seen::Arp],
        }
    }

    fn none<'a>() -> Inputs<'a> {
        Inputs {
            system: Source::Disabled,
            interfaces: Source::Disabled,
            discovery: Source::Disabled,
            latency: Source::Disabled,
        }
    }

    const LIMITS: Limits = Limits {
        max_devices: 1000,
        flows: false,
        max_flows: 1000,
    };

    /// The samples of the exposition, as (name{labels}, value) text pairs,
    /// after checking its shape: every family has one HELP and one TYPE
    /// line before its samples, samples of a family are contiguous, counters
    /// (and only they) end in `_total`, and no series appears twice.
    fn samples(text: &str) -> Vec<(String, String)> {
        let mut helped = HashSet::new();
        let mut typed: HashMap<String, String> = HashMap::new();
        let mut done = HashSet::new();
        let mut current: Option<String> = None;
        let mut series = HashSet::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(helped.insert(name.clone()), "two HELP lines for {name}");
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(
                    typed.insert(name.into(), kind.into()).is_none(),
                    "two TYPE lines for {name}"
                );
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                current = Some(name.into());
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert_eq!(
                current.as_deref(),
                Some(name),
                "sample out of its family: {line}"
            );
            assert!(!done.contains(name), "family {name} split");
            let value_at = line.rfind(' ').unwrap();
            let (key, value) = (&line[..value_at], &line[value_at + 1..]);
            assert!(value.parse::<f64>().is_ok() || value == "NaN", "{line}");
            assert!(series.insert(key.to_owned()), "duplicate series {key}");
            out.push((key.to_owned(), value.to_owned()));
        }
        out
    }

    fn value(text: &str, key: &str) -> Option<String> {
        samples(text)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn device_counters_carry_interface_mac_ip_and_name() {
        let s = snapshot(&[(3, mac(1), 1500)], &[(3, "eth0")]);
        let disc = reading(discovery::Report {
            devices: vec![found(3, mac(1), Some("printer"), Status::Active)],
            ..discovery::Report::default()
        });
        let inputs = Inputs {
            discovery: Source::Ready(&disc),
            ..none()
        };
        let text = encode_inputs(&s, &inputs, &LIMITS);
        let labels = r#"{interface="eth0",mac="02:00:00:00:00:01",ip="10.9.0.1",name="printer"}"#;
        assert_eq!(
            value(
                &text,
                &format!("netmon_device_transmit_bytes_total{labels}")
            )
            .as_deref(),
            Some("1500")
        );
        assert_eq!(
            value(
                &text,
                &format!("netmon_device_transmit_packets_total{labels}")
            )
            .as_deref(),
            Some("1")
        );
        // The router received it; discovery does not know it: no ip, no name.
        let router = r#"{interface="eth0",mac="02:00:00:00:00:ee",ip="",name=""}"#;
        assert_eq!(
            value(&text, &format!("netmon_device_receive_bytes_total{router}")).as_deref(),
            Some("1500")
        );
        assert_eq!(value(&text, "netmon_devices").as_deref(), Some("2"));
        assert_eq!(
            value(&text, "netmon_device_series_dropped").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, r#"netmon_map_capacity_entries{map="mac"}"#).as_deref(),
            Some("4096")
        );
        assert_eq!(
            value(&text, r#"netmon_discovery_devices{status="active"}"#).as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, r#"netmon_collector_up{collector="discovery"}"#).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(
                &text,
                r#"netmon_collector_cycles_total{collector="discovery"}"#
            )
            .as_deref(),
            Some("7")
        );
    }

    #[test]
    fn odd_hostnames_and_interface_names_are_escaped() {
        let s = snapshot(&[(3, mac(1), 100)], &[(3, "we\"ird\\if")]);
        let disc = reading(discovery::Report {
            devices: vec![found(
                3,
                mac(1),
                Some("evil\"} 1\nnetmon_fake 9\\"),
                Status::Active,
            )],
            ..discovery::Report::default()
        });
        let inputs = Inputs {
            discovery: Source::Ready(&disc),
            ..none()
        };
        let text = encode_inputs(&s, &inputs, &LIMITS);
        let want = r#"netmon_device_transmit_bytes_total{interface="we\"ird\\if",mac="02:00:00:00:00:01",ip="10.9.0.1",name="evil\"} 1\nnetmon_fake 9\\"} 100"#;
        assert!(text.lines().any(|l| l == want), "{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("netmon_fake")),
            "{text}"
        );
        samples(&text);
        assert_eq!(escape_label("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
    }

    #[test]
    fn device_cap_keeps_the_busiest_and_counts_the_rest() {
        let s = snapshot(
            &[(3, mac(1), 100), (3, mac(2), 300), (3, mac(3), 200)],
            &[(3, "eth0")],
        );
        let limits = Limits {
            max_devices: 2,
            ..LIMITS
        };
        let text = encode_inputs(&s, &none(), &limits);
        let macs: HashSet<String> = samples(&text)
            .into_iter()
            .filter(|(k, _)| k.starts_with("netmon_device_receive_bytes_total{"))
            .map(|(k, _)| k[k.find("mac=\"").unwrap() + 5..][..17].to_owned())
            .collect();
        // The router (600 bytes received) and mac 2 (300 sent).
        let want: HashSet<String> = [format_mac(ROUTER), format_mac(mac(2))].into();
        assert_eq!(macs, want);
        assert_eq!(value(&text, "netmon_devices").as_deref(), Some("4"));
        assert_eq!(
            value(&text, "netmon_device_series_dropped").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn gone_devices_have_no_series() {
        let s = snapshot(&[(3, mac(1), 100), (3, mac(2), 100)], &[(3, "eth0")]);
        let disc = reading(discovery::Report {
            devices: vec![
                found(3, mac(1), None, Status::Gone),
                found(3, mac(2), None, Status::Idle),
            ],
            ..discovery::Report::default()
        });
        let inputs = Inputs {
            discovery: Source::Ready(&disc),
            ..none()
        };
        let text = encode_inputs(&s, &inputs, &LIMITS);
        assert!(!text.contains(&format_mac(mac(1))), "{text}");
        assert!(text.contains(&format_mac(mac(2))), "{text}");
        assert_eq!(value(&text, "netmon_devices").as_deref(), Some("2"));
    }

    #[test]
    fn same_labels_on_two_interfaces_are_summed_once() {
        // An interface re-created under the same name has a new ifindex.
        let s = snapshot(
            &[(3, mac(1), 100), (4, mac(1), 50)],
            &[(3, "eth0"), (4, "eth0")],
        );
        let text = encode_inputs(&s, &none(), &LIMITS);
        let key = r#"netmon_device_transmit_bytes_total{interface="eth0",mac="02:00:00:00:00:01",ip="",name=""}"#;
        assert_eq!(value(&text, key).as_deref(), Some("150"));
    }

    #[test]
    fn counters_keep_every_digit() {
        let s = snapshot(&[(3, mac(1), u64::MAX - 1)], &[(3, "eth0")]);
        let text = encode_inputs(&s, &none(), &LIMITS);
        assert!(
            text.contains(&format!("name=\"\"}} {}\n", u64::MAX - 1)),
            "{text}"
        );
    }

    fn system_report(cpu: Avail<Cpu>, cached: Avail<u64>, celsius: Avail<f64>) -> system::Report {
        system::Report {
            cpu,
            load_average: Avail::unavailable("test"),
            memory: Avail::Value(Memory {
                total_bytes: 1000,
                used_bytes: 400,
                available_bytes: 600,
                free_bytes: 300,
                cached_bytes: cached,
                used_percent: 40.0,
            }),
            swap: Avail::unavailable("test"),
            filesystems: Avail::Value(vec![Filesystem {
                mount_point: "/".into(),
                device: "/dev/vda1".into(),
                fs_type: "ext4".into(),
                total_bytes: 5000,
                used_bytes: 1000,
                free_bytes: 4000,
                used_percent: Avail::Value(20.0),
                read_only: false,
            }]),
            temperatures: Avail::Value(Temperatures {
                sensors: vec![Sensor {
                    label: "coretemp Package id 0".into(),
                    cpu: true,
                    celsius,
                    critical_celsius: None,
                }],
                hottest_cpu_celsius: Avail::unavailable("test"),
            }),
            uptime_seconds: Avail::Value(3600),
            host: Host {
                hostname: Avail::unavailable("test"),
                os_name: Avail::unavailable("test"),
                os_version: Avail::unavailable("test"),
                os_long_version: Avail::unavailable("test"),
                kernel: Avail::unavailable("test"),
                boot_time: Avail::Value("2026-01-01T00:00:00.000Z".into()),
                primary_addresses: Avail::unavailable("test"),
            },
        }
    }

    fn iface(name: &str, speed: Avail<u64>, counters: Avail<Counters>) -> InterfaceStats {
        InterfaceStats {
            name: name.into(),
            ifindex: 2,
            watched: true,
            mac: Avail::unavailable("test"),
            addresses: Avail::unavailable("test"),
            oper_state: "up".into(),
            mtu: Avail::Value(1500),
            speed_mbps: speed,
            counters,
            rates: Avail::unavailable("test"),
            utilization: Avail::unavailable("test"),
        }
    }

    #[test]
    fn unavailable_values_have_no_series() {
        let s = Snapshot::default();
        let sys_missing = reading(system_report(
            Avail::unavailable("no /proc/stat"),
            Avail::unavailable("no Cached line"),
            Avail::unavailable("sensor fault"),
        ));
        let counters = Counters {
            rx_bytes: 10,
            tx_bytes: 20,
            ..Counters::default()
        };
        let ifs = reading(netstats::Report {
            interfaces: Avail::Value(vec![
                iface(
                    "veth0",
                    Avail::unavailable("virtual"),
                    Avail::Value(counters),
                ),
                iface(
                    "eth1",
                    Avail::Value(1000),
                    Avail::unavailable("no statistics"),
                ),
            ]),
        });
        let inputs = Inputs {
            system: Source::Ready(&sys_missing),
            interfaces: Source::Ready(&ifs),
            ..none()
        };
        let text = encode_inputs(&s, &inputs, &LIMITS);
        samples(&text);
        for absent in [
            "netmon_cpu_usage_ratio",
            "netmon_memory_cached_bytes",
            "netmon_hwmon_temp_celsius",
            "netmon_load1",
            "netmon_swap_total_bytes",
            "netmon_network_speed_bytes{device=\"veth0\"}",
            "netmon_network_receive_bytes_total{device=\"eth1\"}",
            // No drain yet: no traffic-core gauges either.
            "netmon_devices",
            "netmon_map_entries",
        ] {
            assert!(!text.contains(absent), "{absent} present:\n{text}");
        }
        assert_eq!(
            value(&text, "netmon_memory_total_bytes").as_deref(),
            Some("1000")
        );
        assert_eq!(
            value(
                &text,
                r#"netmon_network_transmit_bytes_total{device="veth0"}"#
            )
            .as_deref(),
            Some("20")
        );
        assert_eq!(
            value(&text, r#"netmon_network_speed_bytes{device="eth1"}"#).as_deref(),
            Some("125000000")
        );
        assert_eq!(
            value(&text, r#"netmon_network_up{device="eth1"}"#).as_deref(),
            Some("1")
        );

        let sys = reading(system_report(
            Avail::Value(Cpu {
                usage_percent: 25.0,
                cores: vec![system::Core {
                    name: "cpu0".into(),
                    usage_percent: 50.0,
                }],
            }),
            Avail::Value(77),
            Avail::Value(45.5),
        ));
        let inputs = Inputs {
            system: Source::Ready(&sys),
            ..none()
        };
        let text = encode_inputs(&s, &inputs, &LIMITS);
        assert_eq!(
            value(&text, "netmon_cpu_usage_ratio").as_deref(),
            Some("0.25")
        );
        assert_eq!(
            value(&text, r#"netmon_cpu_core_usage_ratio{cpu="cpu0"}"#).as_deref(),
            Some("0.5")
        );
        assert_eq!(
            value(&text, "netmon_memory_cached_bytes").as_deref(),
            Some("77")
        );
        assert_eq!(
            value(
                &text,
                r#"netmon_hwmon_temp_celsius{chip="coretemp",sensor="Package id 0"}"#
            )
            .as_deref(),
            Some("45.5")
        );
        assert_eq!(
            value(&text, "netmon_boot_time_seconds").as_deref(),
            Some("1767225600")
        );
        assert_eq!(
            value(
                &text,
                r#"netmon_filesystem_avail_bytes{mountpoint="/",fstype="ext4",device="/dev/vda1"}"#
            )
            .as_deref(),
            Some("4000")
        );
    }

    #[test]
    fn latency_reports_gauges_per_target() {
        let lat = reading(latency::Report {
            sockets: latency::Sockets {
                ipv4: Avail::unavailable("test"),
                ipv6: Avail::unavailable("test"),
            },
            target_selection: "configured",
            probes_per_cycle: 4,
            targets: vec![
                latency::TargetReport {
                    address: "10.0.0.1".parse().unwrap(),
                    interface: None,
                    source: "configured".into(),
                    sent: 4,
                    received: 3,
                    loss_percent: Avail::Value(25.0),
                    rtt: Avail::Value(latency::RttStats {
                        min_seconds: 0.001,
                        avg_seconds: 0.002,
                        max_seconds: 0.003,
                        stddev_seconds: 0.0005,
                    }),
                    last_reply: None,
                    last_error: None,
                },
                latency::TargetReport {
                    address: "fe80::1".parse().unwrap(),
                    interface: Some("eth0".into()),
                    source: "configured".into(),
                    sent: 4,
                    received: 0,
                    loss_percent: Avail::Value(100.0),
                    rtt: Avail::unavailable("no replies"),
                    last_reply: None,
                    last_error: None,
                },
            ],
        });
        let inputs = Inputs {
            latency: Source::Ready(&lat),
            system: Source::Pending,
            ..none()
        };
        let text = encode_inputs(&Snapshot::default(), &inputs, &LIMITS);
        let t = r#"{target="10.0.0.1"}"#;
        assert_eq!(
            value(&text, &format!("netmon_latency_rtt_avg_seconds{t}")).as_deref(),
            Some("0.002")
        );
        assert_eq!(
            value(&text, &format!("netmon_latency_loss_ratio{t}")).as_deref(),
            Some("0.25")
        );
        assert_eq!(
            value(&text, r#"netmon_latency_loss_ratio{target="fe80::1%eth0"}"#).as_deref(),
            Some("1")
        );
        assert!(!text.contains(r#"netmon_latency_rtt_avg_seconds{target="fe80::1%eth0"}"#));
        assert_eq!(
            value(&text, &format!("netmon_latency_probes_received{t}")).as_deref(),
            Some("3")
        );
        // Pending: up 0 and no cycle figures; disabled: nothing.
        assert_eq!(
            value(&text, r#"netmon_collector_up{collector="system"}"#).as_deref(),
            Some("0")
        );
        assert!(!text.contains(r#"netmon_collector_cycles_total{collector="system"}"#));
        assert!(!text.contains(r#"collector="interfaces""#));
    }

    #[test]
    fn flows_only_when_asked_and_capped() {
        let s = Snapshot {
            updated: Some(SystemTime::now()),
            ..Snapshot::default()
        };
        let text = encode_inputs(&s, &none(), &LIMITS);
        assert!(!text.contains("netmon_flow_"), "{text}");
        let on = Limits {
            flows: true,
            max_flows: 0,
            ..LIMITS
        };
        let text = encode_inputs(&s, &none(), &on);
        assert_eq!(
            value(&text, "netmon_flow_series_dropped").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn auth_auto_is_off_only_on_loopback() {
        let o = Options::default();
        assert!(!o.needs_key("127.0.0.1:9713".parse().unwrap()));
        assert!(!o.needs_key("[::1]:9713".parse().unwrap()));
        assert!(o.needs_key("0.0.0.0:9713".parse().unwrap()));
        assert!(o.needs_key("10.1.2.3:9713".parse().unwrap()));
        let on = Options {
            metrics_auth: MetricsAuth::On,
            ..Options::default()
        };
        assert!(on.needs_key("127.0.0.1:9713".parse().unwrap()));
        let off = Options {
            metrics_auth: MetricsAuth::Off,
            ..Options::default()
        };
        assert!(!off.needs_key("0.0.0.0:9713".parse().unwrap()));
    }
}
