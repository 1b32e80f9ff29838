//! `GET /api/v1/devices`: every device on the watched interfaces: the union
//! of the discovery inventory and the MACs the traffic core counted, merged
//! by (interface, MAC), with vendor, hostname, status and addresses from
//! discovery and the traffic totals from the core; plus discovery's own
//! figures (sweeps, neighbour reads, inventory size) under `discovery`.
//!
//! `GET /api/v1/devices/{mac}`: the entries of one MAC (case-insensitive
//! `aa:bb:cc:dd:ee:ff`), one per interface it was seen on.

use std::{collections::BTreeMap, ops::Range, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    error::{ApiError, ApiPath, ApiQuery},
    telemetry,
    views::DeviceView,
};
use crate::{
    collect::{
        self, Avail, CollectorName, Cycle, Reading,
        discovery::{
            self, DeviceReport, InventoryStats, NeighbourStats, Report, SweepReport,
            inventory::Status, ndp::ProbeStats,
        },
    },
    ifaces::format_mac,
    snapshot::Snapshot,
    store::labels::Label,
    traffic::Device,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/devices", get(list))
        .route("/api/v1/devices/{mac}", get(one))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Only devices on this interface.
    interface: Option<String>,
    /// Only devices with this status (active, idle, gone).
    #[param(pattern = "^(active|idle|gone)$")]
    status: Option<String>,
}

/// Discovery's figures beside the devices.
#[derive(Serialize, utoipa::ToSchema)]
struct DiscoverySummary<'a> {
    collection: &'a Cycle,
    inventory: &'a InventoryStats,
    neighbours: &'a Avail<NeighbourStats>,
    sweep: &'a Avail<SweepReport>,
    ipv6_probe: &'a Avail<Vec<ProbeStats>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Devices<'a> {
    updated: Option<String>,
    interval_seconds: f64,
    devices: Vec<DeviceView>,
    /// The traffic core's device table (`--max-devices`): devices tracked,
    /// capacity, evictions.
    table: super::interfaces::TableView,
    /// Discovery's figures, or `{"unavailable": "<why>"}` when the
    /// discovery collector is off or has not finished a cycle.
    discovery: Avail<DiscoverySummary<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct OneMac {
    mac: String,
    devices: Vec<DeviceView>,
}

/// Both sources' entries, merged by (ifindex, MAC), in that order.
pub(super) fn merge(s: &Snapshot, reading: Option<&Reading<Report>>) -> Vec<DeviceView> {
    type Pair<'a> = (Option<&'a Device>, Option<&'a DeviceReport>);
    let mut by_key: BTreeMap<(u32, [u8; 6]), Pair> = BTreeMap::new();
    for d in &s.devices {
        by_key.entry((d.ifindex, d.mac)).or_default().0 = Some(d);
    }
    let report = reading.map(|r| &r.report);
    for f in report.iter().flat_map(|r| &r.devices) {
        by_key.entry((f.ifindex, f.mac_bytes)).or_default().1 = Some(f);
    }
    let own: Vec<(u32, String)> = report
        .iter()
        .flat_map(|r| &r.own_macs)
        .map(|o| (o.ifindex, o.mac.clone()))
        .collect();
    by_key
        .into_iter()
        .map(|((ifindex, mac), (t, f))| {
            // Discovery's list, or the watched interface's own MAC (known
            // from the first drain, before discovery's first cycle).
            let own = own
                .iter()
                .any(|(i, m)| *i == ifindex && *m == format_mac(mac))
                || s.interfaces
                    .iter()
                    .any(|i| i.ifindex == ifindex && i.mac == Some(mac));
            DeviceView::merged(s, t, f, own)
        })
        .collect()
}

pub(super) fn parse_status(s: &str) -> Result<Status, ApiError> {
    match s {
        "active" => Ok(Status::Active),
        "idle" => Ok(Status::Idle),
        "gone" => Ok(Status::Gone),
        _ => Err(ApiError::bad_request(
            "status",
            format!("{s:?} is not a status (active, idle or gone)"),
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/devices", operation_id = "listDevices", tag = "traffic", params(Params),
    responses((status = 200, description = "Every device on the watched interfaces, and discovery's figures.", body = Devices)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Response, ApiError> {
    let status = p.status.as_deref().map(parse_status).transpose()?;
    let answer = state
        .prebuilt
        .devices(
            &state.snapshot.get(),
            state.telemetry.slot(CollectorName::Discovery).state(),
            super::labels::current(&state),
        )
        .map_err(ApiError::internal)?;
    let body = if p.interface.is_none() && status.is_none() {
        answer.body.clone()
    } else {
        answer.filtered(|d| {
            p.interface.as_ref().is_none_or(|i| *i == d.interface)
                && status.is_none_or(|st| d.status == Some(st))
        })
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The answer's body around `devices`.
fn body<'a>(
    s: &Snapshot,
    reading: &'a Result<Arc<Reading<Report>>, ApiError>,
    devices: Vec<DeviceView>,
) -> Devices<'a> {
    let discovery = match reading {
        Ok(r) => Avail::Value(DiscoverySummary {
            collection: &r.collection,
            inventory: &r.report.inventory,
            neighbours: &r.report.neighbours,
            sweep: &r.report.sweep,
            ipv6_probe: &r.report.ipv6_probe,
        }),
        Err(e) => Avail::unavailable(e.to_string()),
    };
    Devices {
        updated: s.updated.map(crate::units::time),
        interval_seconds: s.interval.as_secs_f64(),
        devices,
        table: s.device_table.into(),
        discovery,
    }
}

/// The body as the handler serialized it on each request before the
/// answers were prebuilt (through a `serde_json::Value`): what
/// [`Answer`] must reproduce.
#[cfg(test)]
pub(super) fn reference_body(
    s: &Snapshot,
    reading: &Result<Arc<Reading<Report>>, ApiError>,
    devices: Vec<DeviceView>,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::to_value(body(s, reading, devices)).unwrap()).unwrap()
}

/// The answer to `GET /api/v1/devices` without parameters, as bytes, and
/// where each device is in them, so a filtered answer is a join of ranges
/// (built by [`super::prebuilt::Prebuilt`]).
pub(super) struct Answer {
    /// The whole answer.
    pub(super) body: Bytes,
    /// The bytes before the first device (`...,"devices":[`).
    head: Range<usize>,
    /// The bytes after the last device (`],...`).
    tail: Range<usize>,
    devices: Vec<Placed>,
}

/// One device's place in [`Answer::body`] and what the filters look at.
pub(super) struct Placed {
    range: Range<usize>,
    pub(super) interface: String,
    pub(super) status: Option<Status>,
}

/// Stands for the devices while the rest of the answer is serialized.
const PLACEHOLDER: &str = "netmon-devices-placeholder";
/// The placeholder as serialized: only a `devices` field whose value is the
/// placeholder can write it (quotes inside strings are escaped).
const DEVICES_MARK: &str = "\"devices\":\"netmon-devices-placeholder\"";

impl Answer {
    /// The answer from the snapshot `s`, discovery's `state` and the
    /// devices' `labels`, byte for byte what serializing [`Devices`] as a
    /// `serde_json::Value` gives.
    pub(super) fn build(
        s: &Snapshot,
        state: &collect::State,
        labels: &BTreeMap<String, Label>,
    ) -> serde_json::Result<Answer> {
        let reading = telemetry::typed::<discovery::Discovery>(state.clone());
        let mut devices = merge(s, reading.as_deref().ok());
        super::labels::apply(&mut devices, labels);
        let mut value = serde_json::to_value(body(s, &reading, Vec::new()))?;
        value["devices"] = PLACEHOLDER.into();
        let rest = serde_json::to_string(&value)?;
        let at = match rest.match_indices(DEVICES_MARK).collect::<Vec<_>>()[..] {
            [(at, _)] => at,
            _ => {
                return Err(serde::ser::Error::custom(
                    "the devices' place in the answer is not unique",
                ));
            }
        };
        let mut body = Vec::with_capacity(rest.len() + 800 * devices.len());
        body.extend_from_slice(&rest.as_bytes()[..at]);
        body.extend_from_slice(b"\"devices\":[");
        let head = 0..body.len();
        let mut placed = Vec::with_capacity(devices.len());
        for (i, d) in devices.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let start = body.len();
            serde_json::to_writer(&mut body, &serde_json::to_value(&d)?)?;
            placed.push(Placed {
                range: start..body.len(),
                interface: d.interface,
                status: d.status,
            });
        }
        body.push(b']');
        let tail_start = body.len() - 1;
        body.extend_from_slice(&rest.as_bytes()[at + DEVICES_MARK.len()..]);
        let tail = tail_start..body.len();
        Ok(Answer {
            body: body.into(),
            head,
            tail,
            devices: placed,
        })
    }

    /// The answer with only the devices `keep` takes.
    pub(super) fn filtered(&self, keep: impl Fn(&Placed) -> bool) -> Bytes {
        let mut out = Vec::with_capacity(self.body.len());
        out.extend_from_slice(&self.body[self.head.clone()]);
        let mut first = true;
        for d in self.devices.iter().filter(|d| keep(d)) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&self.body[d.range.clone()]);
        }
        out.extend_from_slice(&self.body[self.tail.clone()]);
        out.into()
    }
}

#[utoipa::path(get, path = "/api/v1/devices/{mac}", operation_id = "getDevice", tag = "traffic",
    params(("mac" = String, Path, description = "The MAC address, `aa:bb:cc:dd:ee:ff`, any case.", pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")),
    responses((status = 200, description = "The MAC's entries, one per interface it was seen on.", body = OneMac)))]
async fn one(
    State(state): State<AppState>,
    ApiPath(mac): ApiPath<String>,
    ApiQuery(Empty {}): ApiQuery<Empty>,
) -> Result<Json<OneMac>, ApiError> {
    let wanted = mac_param(&mac)?;
    let s = state.snapshot.get();
    let reading = telemetry::latest::<discovery::Discovery>(&state.telemetry).ok();
    let text = format_mac(wanted);
    let mut devices: Vec<DeviceView> = merge(&s, reading.as_deref())
        .into_iter()
        .filter(|d| d.mac == text)
        .collect();
    super::labels::apply(&mut devices, &super::labels::current(&state));
    if devices.is_empty() {
        return Err(ApiError::NotFound(format!("no device with MAC {text}")));
    }
    Ok(Json(OneMac { mac: text, devices }))
}

pub(super) use super::error::mac_param;

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}
