//! `GET /api/v1/devices`: every MAC seen on the watched interfaces, with the
//! IPs seen with it, what it sent and received, and when.

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};

use super::{AppState, error::ApiQuery, views::DeviceView};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/devices", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Only devices on this interface.
    interface: Option<String>,
}

#[derive(Serialize)]
struct Devices {
    updated: Option<String>,
    interval_seconds: f64,
    devices: Vec<DeviceView>,
}

async fn list(State(state): State<AppState>, ApiQuery(p): ApiQuery<Params>) -> Json<Devices> {
    let s = state.snapshot.get();
    let mut devices: Vec<_> = s
        .devices
        .iter()
        .filter(|d| {
            p.interface
                .as_ref()
                .is_none_or(|i| *i == s.iface_name(d.ifindex))
        })
        .collect();
    devices.sort_by_key(|d| (d.ifindex, d.mac));
    Json(Devices {
        updated: s.updated.map(super::views::time),
        interval_seconds: s.interval.as_secs_f64(),
        devices: devices
            .into_iter()
            .map(|d| DeviceView::new(&s, d))
            .collect(),
    })
}
