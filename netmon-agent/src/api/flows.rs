//! `GET /api/v1/flows?limit=N&sort=rate|bytes|packets`: the top IP flows,
//! from the snapshot's listed flows (the top [`MAX_LIMIT`] or more by each
//! order), with the flow table's size, capacity and evictions.

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{AppState, error::ApiError, error::ApiQuery, views::FlowView};
use crate::{snapshot::Snapshot, traffic::Flow};

/// Flows returned when no limit is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest limit accepted.
pub const MAX_LIMIT: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/flows", get(list))
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Sort {
    /// Bits per second over the last interval.
    #[default]
    Rate,
    /// Total bytes.
    Bytes,
    /// Total packets.
    Packets,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Params {
    /// How many flows to return (100 when not given).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// The order: `rate` (the default), `bytes` or `packets`.
    #[serde(default)]
    #[param(inline)]
    sort: Sort,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Flows {
    updated: Option<String>,
    interval_seconds: f64,
    /// Flows the agent tracks in all; `flows` holds the top `limit` of them.
    total: u64,
    /// Most flows the agent tracks (`--max-flows`).
    capacity: u64,
    /// Flows evicted (least recently active first) to make room, since
    /// start; their totals are in each interface's `other_flows`
    /// (`/api/v1/interfaces`).
    evictions: u64,
    /// The history's hourly cap on flow series.
    history: HistoryFlows,
    flows: Vec<FlowView>,
}

/// The history writes at most `series_per_hour` distinct flow series an
/// hour; the flows beyond go to `flow/<iface>/<ingress|egress>/other`.
#[derive(Serialize, utoipa::ToSchema)]
struct HistoryFlows {
    /// `--store-flow-series-per-hour` (0 until the history has started).
    series_per_hour: u64,
    /// Distinct flow series written this hour.
    series_this_hour: u64,
    /// Flow samples added to an `other` series because the hour's cap was
    /// reached, since start.
    aggregated: u64,
}

#[utoipa::path(get, path = "/api/v1/flows", operation_id = "listFlows", tag = "traffic", params(Params),
    responses((status = 200, description = "The top IP flows.", body = Flows)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Response, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let s = state.snapshot.get();
    let body = if limit == DEFAULT_LIMIT && p.sort == Sort::default() {
        state.prebuilt.flows(&s)
    } else {
        body(&s, limit, p.sort).map(Bytes::from)
    }
    .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The answer without parameters (cached by
/// [`super::prebuilt::Prebuilt`]).
pub(super) fn default_body(s: &Snapshot) -> serde_json::Result<Vec<u8>> {
    body(s, DEFAULT_LIMIT, Sort::default())
}

/// The top `limit` flows by `sort` of snapshot `s`, as JSON.
fn body(s: &Snapshot, limit: usize, sort: Sort) -> serde_json::Result<Vec<u8>> {
    let top = top_n(&s.flows, limit, sort);
    serde_json::to_vec(&Flows {
        updated: s.updated.map(crate::units::time),
        interval_seconds: s.interval.as_secs_f64(),
        total: s.flow_table.entries,
        capacity: s.flow_table.capacity,
        evictions: s.flow_table.evictions,
        history: HistoryFlows {
            series_per_hour: s.flow_series.cap,
            series_this_hour: s.flow_series.this_hour,
            aggregated: s.flow_series.aggregated,
        },
        flows: top.into_iter().map(|f| FlowView::new(s, f)).collect(),
    })
}

/// The flows a snapshot (and so a push) carries: `/api/v1/flows`' body
/// for the top `limit` by rate (`--push-flows`), with how many were left
/// out, so a hub serves a host's flows as the host itself would.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SnapshotFlows)]
pub(super) struct SnapshotFlows {
    updated: Option<String>,
    interval_seconds: f64,
    /// Flows the agent tracks in all.
    total: u64,
    /// Most flows the agent tracks (`--max-flows`).
    capacity: u64,
    /// Flows evicted to make room, since start.
    evictions: u64,
    /// Most flows listed (`--push-flows`).
    limit: u64,
    /// Flows tracked but not listed (`total` minus those listed).
    omitted: u64,
    /// The busiest by the last interval's rate, as `/api/v1/flows` lists
    /// them (field for field).
    flows: Vec<FlowView>,
}

/// [`SnapshotFlows`] of snapshot `s`.
pub(super) fn for_snapshot(s: &Snapshot, limit: usize) -> SnapshotFlows {
    let top = if limit == 0 {
        Vec::new()
    } else {
        top_n(&s.flows, limit, Sort::Rate)
    };
    SnapshotFlows {
        updated: s.updated.map(crate::units::time),
        interval_seconds: s.interval.as_secs_f64(),
        total: s.flow_table.entries,
        capacity: s.flow_table.capacity,
        evictions: s.flow_table.evictions,
        limit: limit as u64,
        omitted: s.flow_table.entries.saturating_sub(top.len() as u64),
        flows: top.into_iter().map(|f| FlowView::new(s, f)).collect(),
    }
}

/// The `limit` largest flows by `sort`, largest first; ties broken by key
/// so the order is stable between requests.
fn top_n(flows: &[Flow], limit: usize, sort: Sort) -> Vec<&Flow> {
    let metric = |f: &Flow| -> (f64, u64) {
        match sort {
            Sort::Rate => (f.meter.rate.bits_per_second, f.meter.total.bytes),
            Sort::Bytes => (f.meter.total.bytes as f64, f.meter.total.packets),
            Sort::Packets => (f.meter.total.packets as f64, f.meter.total.bytes),
        }
    };
    let cmp = |a: &&Flow, b: &&Flow| {
        let (ma, mb) = (metric(a), metric(b));
        mb.0.total_cmp(&ma.0).then(mb.1.cmp(&ma.1)).then_with(|| {
            (a.key.ifindex, a.key.src, a.key.dst).cmp(&(b.key.ifindex, b.key.src, b.key.dst))
        })
    };
    let mut all: Vec<&Flow> = flows.iter().collect();
    if all.len() > limit {
        all.select_nth_unstable_by(limit - 1, cmp);
        all.truncate(limit);
    }
    all.sort_by(cmp);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::views::Traffic;

    /// What `--push-flows` adds to each push: 100 flows (the default) of
    /// distinct IPv4 addresses, counters and rates as a busy host has
    /// them, gzip-compressed as push sends them. Printed for the README;
    /// the bound holds the size to what the option promises.
    #[test]
    fn the_pushed_flows_are_bounded_in_size() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut sizes = Vec::new();
        for n in [0usize, 1, 100] {
            let flows: Vec<FlowView> = (0..n)
                .map(|_| {
                    let r = next();
                    let ip = |x: u64| {
                        std::net::IpAddr::from([10, (x >> 8) as u8, (x >> 16) as u8, x as u8])
                    };
                    let mac = |x: u64| {
                        crate::ifaces::format_mac([
                            2,
                            0,
                            0,
                            (x >> 8) as u8,
                            (x >> 16) as u8,
                            x as u8,
                        ])
                    };
                    let bytes = next() % 50_000_000_000;
                    FlowView {
                        interface: "eth0".into(),
                        ifindex: 2,
                        direction: if r & 1 == 0 { "ingress" } else { "egress" },
                        protocol: "tcp",
                        protocol_number: 6,
                        src: ip(r),
                        dst: ip(r >> 24),
                        src_mac: mac(r >> 5),
                        dst_mac: mac(r >> 29),
                        traffic: Traffic {
                            bytes,
                            packets: bytes / 900,
                            bits_per_second: (next() % 1_000_000_000) as f64 / 7.0,
                            packets_per_second: (next() % 100_000) as f64 / 3.0,
                        },
                        first_seen: "2026-12-07T19:54:20.954Z".into(),
                        last_seen: format!(
                            "2026-12-07T20:{:02}:{:02}.{:03}Z",
                            r % 60,
                            (r >> 6) % 60,
                            (r >> 12) % 1000
                        ),
                    }
                })
                .collect();
            let body = SnapshotFlows {
                updated: Some("2026-12-07T20:00:00.000Z".into()),
                interval_seconds: 1.0,
                total: 25_000,
                capacity: 131_072,
                evictions: 0,
                limit: 100,
                omitted: 25_000 - n as u64,
                flows,
            };
            let json = serde_json::to_vec(&body).unwrap();
            let gz = crate::push::gzip(&json).len();
            eprintln!(
                "{n} flows: {} B of JSON, {gz} B gzip-compressed",
                json.len()
            );
            sizes.push(gz);
        }
        let per_flow = (sizes[2] - sizes[0]) / 100;
        eprintln!("{per_flow} B gzip-compressed per flow");
        assert!(per_flow < 256, "{per_flow} B a flow");
    }
}
