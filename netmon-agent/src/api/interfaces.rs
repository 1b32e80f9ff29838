//! `GET /api/v1/interfaces`: each watched interface's hook and totals, the
//! programs' global counters and the maps' fill levels (the traffic core's
//! view), and under `stats` the interfaces collector's latest reading: every
//! interface of the system with its kernel counters, rates, state and speed.
//! When that collector is off or has not finished a cycle, `stats` is
//! `{"unavailable": "<why>"}` and the rest of the answer is unchanged.

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    error::{ApiError, ApiQuery},
    telemetry,
    views::Traffic,
};
use crate::{
    collect::{self, Avail, CollectorName, Reading, interfaces},
    ebpf::HookMode,
    snapshot::Snapshot,
    traffic::{CacheStats, MapStats, OtherFlows, TableStats},
    units::time,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/interfaces", get(list))
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

#[derive(Serialize, utoipa::ToSchema)]
struct InterfaceView {
    name: String,
    ifindex: u32,
    /// How the ingress program is attached (see `ebpf::HookMode`).
    #[schema(value_type = String)]
    ingress_hook: HookMode,
    /// How the egress program is attached.
    #[schema(value_type = String)]
    egress_hook: HookMode,
    /// Frames received (ingress hook).
    rx: Traffic,
    /// Frames sent (egress hook).
    tx: Traffic,
    /// Flow traffic on this interface that no listed flow holds.
    other_flows: OtherFlowsView,
}

/// Bytes and packets.
#[derive(Serialize, utoipa::ToSchema)]
struct Count {
    bytes: u64,
    packets: u64,
}

impl From<netmon_common::Counter> for Count {
    fn from(c: netmon_common::Counter) -> Self {
        Count {
            bytes: c.bytes,
            packets: c.packets,
        }
    }
}

/// Flow traffic that no listed flow holds: the totals of flows evicted from
/// the agent's flow table (`--max-flows`) and what the datapath counted
/// without a flow.
#[derive(Serialize, utoipa::ToSchema)]
struct OtherFlowsView {
    /// Received (ingress hook).
    rx: Count,
    /// Sent (egress hook).
    tx: Count,
    /// Flows evicted from the agent's table whose totals are in `rx`/`tx`.
    evicted_flows: u64,
}

impl From<OtherFlows> for OtherFlowsView {
    fn from(o: OtherFlows) -> Self {
        OtherFlowsView {
            rx: o.rx.into(),
            tx: o.tx.into(),
            evicted_flows: o.evicted_flows,
        }
    }
}

/// One of the agent's own tables.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TableView {
    entries: u64,
    capacity: u64,
    fill_ratio: f64,
    /// Entries evicted, least recently active first, to make room, since
    /// start.
    evictions: u64,
}

impl From<TableStats> for TableView {
    fn from(t: TableStats) -> Self {
        TableView {
            entries: t.entries,
            capacity: t.capacity,
            fill_ratio: fill(t.entries, t.capacity),
            evictions: t.evictions,
        }
    }
}

/// The agent's tables (`--max-flows`, `--max-devices`).
#[derive(Serialize, utoipa::ToSchema)]
struct Tables {
    flows: TableView,
    devices: TableView,
}

#[derive(Serialize, utoipa::ToSchema)]
struct GlobalsView {
    packets: u64,
    bytes: u64,
    non_ip: u64,
    arp: u64,
    vlan: u64,
    malformed: u64,
    ipv6_ext_limit: u64,
    map_update_failed: u64,
    /// IP frames that found no flow-cache slot (their bucket was full of
    /// other flows) and went to the hash maps or the aggregate.
    cache_misses: u64,
    /// IP frames counted in their MAC pair's aggregate instead of their
    /// flow, because the CPU's flow-map inserts for the interval
    /// (`--flow-insert-budget`) were spent: in device and interface totals,
    /// in no flow.
    flows_aggregated: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct MapView {
    entries: u64,
    capacity: u64,
    fill_ratio: f64,
    inserts: u64,
    deleted_idle: u64,
    evictions: u64,
}

/// `used / capacity`, 0 for no capacity.
fn fill(used: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        0.0
    } else {
        used as f64 / capacity as f64
    }
}

impl From<MapStats> for MapView {
    fn from(m: MapStats) -> Self {
        MapView {
            entries: m.entries,
            capacity: m.capacity,
            fill_ratio: fill(m.entries, m.capacity),
            inserts: m.inserts,
            deleted_idle: m.deleted,
            evictions: m.evictions,
        }
    }
}

/// Use of the flow cache in the last interval.
#[derive(Serialize, utoipa::ToSchema)]
struct CacheView {
    /// Slots (one per flow and CPU) the last interval used.
    slots_used: u64,
    /// Slots per interval, all CPUs (0: the cache is off).
    capacity: u64,
    fill_ratio: f64,
    /// IP frames that found their bucket full of other flows, since load.
    misses: u64,
}

impl From<CacheStats> for CacheView {
    fn from(c: CacheStats) -> Self {
        CacheView {
            slots_used: c.slots_used,
            capacity: c.capacity,
            fill_ratio: fill(c.slots_used, c.capacity),
            misses: c.misses,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Maps {
    mac: MapView,
    flow: MapView,
    flow_cache: CacheView,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Interfaces<'a> {
    updated: Option<String>,
    interval_seconds: f64,
    interfaces: Vec<InterfaceView>,
    /// Frame counters summed over every watched interface and hook.
    globals: GlobalsView,
    maps: Maps,
    tables: Tables,
    /// Every interface as the kernel counts it (the interfaces collector).
    /// The reading, or `{"unavailable": "<why>"}`.
    #[schema(value_type = Avail<Reading<interfaces::Report>>)]
    stats: Avail<&'a Reading<interfaces::Report>>,
}

#[utoipa::path(get, path = "/api/v1/interfaces", operation_id = "listInterfaces", tag = "traffic",
    responses((status = 200, description = "The watched interfaces, the datapath's counters and map fill, and interface statistics.", body = Interfaces)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(Params {}): ApiQuery<Params>,
) -> Result<Response, ApiError> {
    let body = state
        .prebuilt
        .interfaces(
            &state.snapshot.get(),
            state.telemetry.slot(CollectorName::Interfaces).state(),
        )
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The answer for snapshot `s` and the interfaces collector's `state`, as
/// JSON (cached by [`super::prebuilt::Prebuilt`]).
pub(super) fn body(s: &Snapshot, state: &collect::State) -> serde_json::Result<Vec<u8>> {
    let g = s.globals;
    let stats = telemetry::typed::<interfaces::Interfaces>(state.clone());
    let stats = match &stats {
        Ok(reading) => Avail::Value(&**reading),
        Err(ApiError::Unavailable(why)) => Avail::unavailable(why.as_str()),
        Err(e) => Avail::unavailable(e.to_string()),
    };
    serde_json::to_vec(&Interfaces {
        updated: s.updated.map(time),
        interval_seconds: s.interval.as_secs_f64(),
        interfaces: s
            .interfaces
            .iter()
            .map(|i| InterfaceView {
                name: i.name.clone(),
                ifindex: i.ifindex,
                ingress_hook: i.ingress,
                egress_hook: HookMode::Tc,
                rx: (&i.totals.rx).into(),
                tx: (&i.totals.tx).into(),
                other_flows: i.totals.other.into(),
            })
            .collect(),
        globals: GlobalsView {
            packets: g.packets,
            bytes: g.bytes,
            non_ip: g.non_ip,
            arp: g.arp,
            vlan: g.vlan,
            malformed: g.malformed,
            ipv6_ext_limit: g.ipv6_ext_limit,
            map_update_failed: g.map_update_failed,
            cache_misses: g.cache_misses,
            flows_aggregated: g.flows_aggregated,
        },
        maps: Maps {
            mac: s.mac_map.into(),
            flow: s.flow_map.into(),
            flow_cache: s.flow_cache.into(),
        },
        tables: Tables {
            flows: s.flow_table.into(),
            devices: s.device_table.into(),
        },
        stats,
    })
}
