//! The HTTP API: one small file per resource, merged by [`router`].
//!
//! `/health` is open; everything under `/api/v1` needs the API key (see
//! [`auth`]). Unknown paths get a JSON 404, bad parameters a JSON 400.

pub mod auth;
mod devices;
pub mod error;
mod flows;
mod health;
mod interfaces;
mod latency;
mod metrics;
mod snapshot;
mod system;
pub mod telemetry;
pub mod views;

use std::sync::Arc;

use axum::{Router, middleware};

use crate::{collect::Telemetry, snapshot::Shared};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The traffic core's latest drain.
    pub snapshot: Shared,
    /// The collectors' latest readings.
    pub telemetry: Telemetry,
    /// `serverId` in `/api/v1/snapshot` (`--server-id`); the hostname when
    /// not set.
    pub server_id: Option<String>,
    /// `/metrics`: whether it needs the key, and its series limits.
    pub metrics: crate::metrics::Settings,
}

/// The whole API.
pub fn router(state: AppState, key: Arc<auth::ApiKey>) -> Router {
    let protected = Router::new()
        .merge(devices::routes())
        .merge(flows::routes())
        .merge(interfaces::routes())
        .merge(latency::routes())
        .merge(snapshot::routes())
        .merge(system::routes())
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&key),
            auth::require_key,
        ));
    Router::new()
        .merge(health::routes())
        .merge(metrics::routes(&state.metrics, key))
        .merge(protected)
        .fallback(error::not_found)
        .with_state(state)
}
