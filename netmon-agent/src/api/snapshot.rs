//! `GET /api/v1/snapshot`: everything current in one document, in the shape
//! the earlier per-device bandwidth agent POSTed (`messageType:
//! "realtimeSnapshot"`), so its consumers keep working, plus netmon's own
//! fields beside the original ones.
//!
//! The seed's fields, field for field with its units and JSON types (a test
//! holds its documented example as a schema):
//! - `metrics.cpu {percent}` (all cores), `metrics.memory {totalBytes,
//!   usedBytes, freeBytes, percentUsed}` (psutil's meaning: `freeBytes` is
//!   MemFree, `percentUsed` counts available memory as free),
//!   `metrics.disk [...]` one entry per filesystem in the same style
//!   (`mountpoint`, `device`, `fstype`, `totalBytes`, `usedBytes`,
//!   `freeBytes`, `percentUsed`), `metrics.uptimeSeconds`. A figure the
//!   machine cannot give is `null`, never 0.
//! - `network.collectionStartTime`/`EndTime`, and `collectionDurationSeconds`
//!   as the seed types it, a whole number of seconds (rounded; netmon adds
//!   `collectionDurationMs` with the fraction): the traffic core's last
//!   drain interval, which the rates cover.
//! - `connectedDevices[]`: every device on a watched interface (not
//!   broadcast/multicast groups, not this host's own MACs): `ip` (its first
//!   IPv4, else its first address), `mac`, `deviceName` (the name an admin
//!   gave it, else its hostname from DHCP leases or reverse DNS, else null), `status` (active, idle or gone from
//!   discovery; `active` for a device only the traffic counters know),
//!   `timeChecked` (last seen), and `bandwidth`: totals in bytes, rates in
//!   bits per second as whole numbers (`Bps` as the seed uses it: its
//!   example's 3,276,800 is 3.28% of a 100 Mbit/s link),
//!   `utilizationPercent` the busier direction's share of the interface's
//!   link speed (null when the speed is unknown, as on virtual links).
//!   `network.interfaces[]` carries the same fields per interface.
//!
//! netmon's additions beside them: `latency`, `alerts`, `agentVersion`,
//! `agentStartTime`, packet totals in each device's `bandwidth`, and
//! `flows`: the top `--push-flows` flows by rate exactly as `/api/v1/flows`
//! lists them, so a hub shows a host's flows and ranks its top talkers.

use std::collections::HashMap;

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    error::{ApiError, ApiQuery},
    telemetry,
    views::DeviceView,
};
use crate::{
    collect::{Avail, discovery, interfaces, latency, latency::TargetReport, system},
    units::time,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/snapshot", get(show))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    message_type: &'static str,
    server_id: String,
    snapshot_time: String,
    metrics: Metrics,
    network: Network,
    /// netmon's addition: the latency probes' last cycle, one entry per
    /// target, or `{"unavailable": "<why>"}` when the latency collector is
    /// off or has not finished a cycle.
    latency: Avail<Vec<TargetReport>>,
    /// netmon's addition: the alerts pending or firing now (what a hub
    /// lists per host), or `{"unavailable": "<why>"}` with `--no-alerts`.
    alerts: Avail<SnapshotAlerts>,
    /// netmon's addition: the agent's version.
    agent_version: &'static str,
    /// netmon's addition: when the agent started counting (its devices'
    /// and flows' totals are since then).
    agent_start_time: String,
    /// netmon's addition: the busiest flows (`--push-flows`, 100 by
    /// default), as `/api/v1/flows` lists them, and how many were left out.
    flows: super::flows::SnapshotFlows,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SnapshotMetrics)]
struct Metrics {
    cpu: Option<Cpu>,
    memory: Option<Memory>,
    /// Every mounted filesystem (empty when the machine gives none).
    disk: Vec<Disk>,
    uptime_seconds: Option<u64>,
    // netmon's additions.
    cpu_per_core: Option<Vec<f64>>,
    load_average: Option<[f64; 3]>,
    memory_total_bytes: Option<u64>,
    memory_used_bytes: Option<u64>,
    hottest_cpu_celsius: Option<f64>,
}

/// Seed 001's `metrics.cpu`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SnapshotCpu)]
struct Cpu {
    /// Busy share of all cores over the collector's last cycle.
    percent: f64,
}

/// Seed 001's `metrics.memory`, with psutil's meanings.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SnapshotMemory)]
struct Memory {
    total_bytes: u64,
    /// `total - available`.
    used_bytes: u64,
    /// MemFree: memory nothing uses, not even the page cache.
    free_bytes: u64,
    /// `used / total`.
    percent_used: f64,
}

/// One entry of seed 001's `metrics.disk`, in the style of its memory
/// object (psutil's `disk_usage` plus the partition's names).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SnapshotDisk)]
struct Disk {
    mountpoint: String,
    device: String,
    fstype: String,
    total_bytes: u64,
    used_bytes: u64,
    /// Space unprivileged users may still take.
    free_bytes: u64,
    /// `used / total`; null for a filesystem of size 0.
    percent_used: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SnapshotNetwork)]
struct Network {
    collection_start_time: Option<String>,
    collection_end_time: Option<String>,
    /// Whole seconds, as the seed types it.
    collection_duration_seconds: u64,
    /// netmon's addition: the interval to the millisecond's fraction.
    collection_duration_ms: f64,
    interfaces: Vec<Interface>,
    connected_devices: Vec<ConnectedDevice>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SnapshotInterface)]
struct Interface {
    name: String,
    mac: Option<String>,
    ip_addresses: Vec<String>,
    oper_state: String,
    speed_mbps: Option<u64>,
    watched: bool,
    rx_bytes_total: Option<u64>,
    tx_bytes_total: Option<u64>,
    /// Bits per second.
    rx_rate_bps: Option<u64>,
    /// Bits per second.
    tx_rate_bps: Option<u64>,
    utilization_percent: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectedDevice {
    ip: Option<String>,
    mac: String,
    device_name: Option<String>,
    status: String,
    time_checked: String,
    bandwidth: Bandwidth,
    // netmon's additions.
    interface: String,
    vendor: Option<&'static str>,
    ips: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Bandwidth {
    rx_bytes_total: u64,
    tx_bytes_total: u64,
    /// Bits per second, rounded to a whole number as in the seed.
    rx_rate_bps: u64,
    /// Bits per second, rounded to a whole number as in the seed.
    tx_rate_bps: u64,
    utilization_percent: Option<f64>,
    // netmon's additions.
    rx_packets_total: u64,
    tx_packets_total: u64,
}

/// Most alerts a snapshot lists; the rest are counted in `omitted`.
const MAX_SNAPSHOT_ALERTS: usize = 100;

/// The alerts pending or firing when the snapshot was taken.
#[derive(Serialize, utoipa::ToSchema)]
struct SnapshotAlerts {
    firing: u64,
    pending: u64,
    /// Firing first, then by rule; at most 100.
    active: Vec<SnapshotAlert>,
    /// Active alerts beyond the 100 listed.
    omitted: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SnapshotAlert {
    name: String,
    severity: String,
    /// `pending` or `firing`.
    state: &'static str,
    silenced: bool,
    /// Since when it has been pending (RFC 3339).
    since: String,
    /// The labels that tell its entity apart (alertname and severity left
    /// out).
    labels: std::collections::BTreeMap<String, String>,
    summary: Option<String>,
}

fn snapshot_alerts(alerts: &crate::alerts::run::Alerts) -> Avail<SnapshotAlerts> {
    use crate::alerts::engine::State;
    if !alerts.enabled() {
        return Avail::unavailable("alerts are off (--no-alerts)");
    }
    let mut active: Vec<_> = alerts
        .active()
        .into_iter()
        .filter(|a| matches!(a.state, State::Pending | State::Firing))
        .collect();
    active.sort_by(|a, b| {
        b.state
            .cmp(&a.state)
            .then_with(|| (&a.rule, &a.labels).cmp(&(&b.rule, &b.labels)))
    });
    let firing = active.iter().filter(|a| a.state == State::Firing).count() as u64;
    let pending = active.len() as u64 - firing;
    let omitted = active.len().saturating_sub(MAX_SNAPSHOT_ALERTS) as u64;
    active.truncate(MAX_SNAPSHOT_ALERTS);
    Avail::Value(SnapshotAlerts {
        firing,
        pending,
        omitted,
        active: active
            .into_iter()
            .map(|a| {
                let mut labels = a.labels;
                let severity = labels.remove("severity").unwrap_or_default();
                labels.remove("alertname");
                SnapshotAlert {
                    name: a.rule,
                    severity,
                    state: a.state.as_str(),
                    silenced: a.silenced,
                    since: time(a.active_since),
                    labels,
                    summary: a.annotations.get("summary").cloned(),
                }
            })
            .collect(),
    })
}

/// A rate in bits per second as the seed writes it: a whole number.
fn whole_bits(bits_per_second: f64) -> u64 {
    // `as` saturates: NaN is 0, a negative rate (never produced) is 0.
    bits_per_second.round() as u64
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/snapshot", operation_id = "getSnapshot", tag = "telemetry",
    responses((status = 200, description = "Host metrics, interfaces and connected devices in one body.", body = Snapshot)))]
async fn show(
    State(state): State<AppState>,
    ApiQuery(Params {}): ApiQuery<Params>,
) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(build(&state)))
}

/// The snapshot document as JSON, as `GET /api/v1/snapshot` answers it:
/// what `--push-url` sends.
pub fn json(state: &AppState) -> Vec<u8> {
    // Serializing plain structs to a Vec cannot fail.
    serde_json::to_vec(&build(state)).unwrap_or_default()
}

fn build(state: &AppState) -> Snapshot {
    let s = state.snapshot.get();
    let t = &state.telemetry;
    let system = t.get::<system::System>();
    let sys = system.as_deref().map(|r| &r.report);
    let stats = t.get::<interfaces::Interfaces>();
    let ifs = stats
        .as_deref()
        .and_then(|r| r.report.interfaces.value().cloned())
        .unwrap_or_default();
    let speeds: HashMap<u32, u64> = ifs
        .iter()
        .filter_map(|i| i.speed_mbps.value().map(|s| (i.ifindex, *s)))
        .collect();

    let metrics = Metrics {
        cpu: sys.and_then(|r| r.cpu.value()).map(|c| Cpu {
            percent: c.usage_percent,
        }),
        memory: sys.and_then(|r| r.memory.value()).map(|m| Memory {
            total_bytes: m.total_bytes,
            used_bytes: m.used_bytes,
            free_bytes: m.free_bytes,
            percent_used: m.used_percent,
        }),
        disk: sys
            .and_then(|r| r.filesystems.value())
            .map(|fs| {
                fs.iter()
                    .map(|f| Disk {
                        mountpoint: f.mount_point.clone(),
                        device: f.device.clone(),
                        fstype: f.fs_type.clone(),
                        total_bytes: f.total_bytes,
                        used_bytes: f.used_bytes,
                        free_bytes: f.free_bytes,
                        percent_used: f.used_percent.value().copied(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        uptime_seconds: sys.and_then(|r| r.uptime_seconds.value().copied()),
        cpu_per_core: sys
            .and_then(|r| r.cpu.value())
            .map(|c| c.cores.iter().map(|c| c.usage_percent).collect()),
        load_average: sys
            .and_then(|r| r.load_average.value())
            .map(|l| [l.one, l.five, l.fifteen]),
        memory_total_bytes: sys.and_then(|r| r.memory.value()).map(|m| m.total_bytes),
        memory_used_bytes: sys.and_then(|r| r.memory.value()).map(|m| m.used_bytes),
        hottest_cpu_celsius: sys
            .and_then(|r| r.temperatures.value())
            .and_then(|t| t.hottest_cpu_celsius.value().copied()),
    };

    let interfaces = ifs
        .iter()
        .map(|i| {
            let counters = i.counters.value();
            let rates = i.rates.value();
            Interface {
                name: i.name.clone(),
                mac: i.mac.value().cloned(),
                ip_addresses: i
                    .addresses
                    .value()
                    .map(|a| a.iter().map(|a| a.address.to_string()).collect())
                    .unwrap_or_default(),
                oper_state: i.oper_state.clone(),
                speed_mbps: i.speed_mbps.value().copied(),
                watched: i.watched,
                rx_bytes_total: counters.map(|c| c.rx_bytes),
                tx_bytes_total: counters.map(|c| c.tx_bytes),
                rx_rate_bps: rates.map(|r| whole_bits(r.rx_bits_per_second)),
                tx_rate_bps: rates.map(|r| whole_bits(r.tx_bits_per_second)),
                utilization_percent: i
                    .utilization
                    .value()
                    .map(|u| u.rx_percent.max(u.tx_percent)),
            }
        })
        .collect();

    let discovery = telemetry::latest::<discovery::Discovery>(t).ok();
    let mut devices = super::devices::merge(&s, discovery.as_deref());
    super::labels::apply(&mut devices, &super::labels::current(state));
    let connected_devices = devices
        .into_iter()
        .filter(|d| !d.group && !d.own)
        .map(|d| connected(d, &speeds))
        .collect();

    let end = s.updated;
    let latency = match telemetry::latest::<latency::Latency>(t) {
        Ok(r) => Avail::Value(r.report.targets.clone()),
        Err(e) => Avail::unavailable(e.to_string()),
    };
    Snapshot {
        message_type: "realtimeSnapshot",
        server_id: state.server_id.clone().unwrap_or_else(hostname),
        snapshot_time: time(std::time::SystemTime::now()),
        metrics,
        network: Network {
            collection_start_time: end.map(|e| time(e - s.interval)),
            collection_end_time: end.map(time),
            collection_duration_seconds: s.interval.as_secs_f64().round() as u64,
            collection_duration_ms: s.interval.as_secs_f64() * 1e3,
            interfaces,
            connected_devices,
        },
        latency,
        alerts: snapshot_alerts(&state.alerts),
        agent_version: env!("CARGO_PKG_VERSION"),
        agent_start_time: time(state.started),
        flows: super::flows::for_snapshot(&s, state.snapshot_flows),
    }
}

fn connected(d: DeviceView, speeds: &HashMap<u32, u64>) -> ConnectedDevice {
    let ip = d
        .ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(d.ips.first())
        .map(ToString::to_string);
    let busier_bits = d.rx.bits_per_second.max(d.tx.bits_per_second);
    ConnectedDevice {
        ip,
        device_name: d.name.clone().or_else(|| d.hostname.clone()),
        status: d
            .status
            .map_or_else(|| "active".to_owned(), |s| s.as_str().to_owned()),
        time_checked: d.last_seen.clone(),
        bandwidth: Bandwidth {
            rx_bytes_total: d.rx.bytes,
            tx_bytes_total: d.tx.bytes,
            rx_rate_bps: whole_bits(d.rx.bits_per_second),
            tx_rate_bps: whole_bits(d.tx.bits_per_second),
            utilization_percent: speeds
                .get(&d.ifindex)
                .filter(|s| **s > 0)
                .map(|s| busier_bits * 100.0 / (*s as f64 * 1e6)),
            rx_packets_total: d.rx.packets,
            tx_packets_total: d.tx.packets,
        },
        interface: d.interface,
        vendor: d.vendor,
        ips: d.ips.iter().map(ToString::to_string).collect(),
        mac: d.mac,
    }
}
