//! `GET /metrics`: the Prometheus text exposition (see [`crate::metrics`]).
//!
//! Whether it needs the API key is fixed at start-up (`--metrics-auth`):
//! when it does, the route carries the same key check as `/api/v1`; when it
//! does not, it is open like `/health`. Query parameters are refused (400).

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::header,
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{AppState, auth, error::ApiQuery};
use crate::metrics;

/// The `/metrics` route, behind `key` when `settings` say so.
pub fn routes(settings: &metrics::Settings, keys: Arc<auth::Keyring>) -> Router<AppState> {
    let router = Router::new().route("/metrics", get(scrape));
    if settings.needs_key {
        router.route_layer(middleware::from_fn_with_state(keys, auth::require_key))
    } else {
        router
    }
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "meta",
    responses((status = 200, description = "The Prometheus text exposition.",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
async fn scrape(State(state): State<AppState>, ApiQuery(Params {}): ApiQuery<Params>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        text(&state),
    )
        .into_response()
}

/// The whole exposition, as a scrape gets it: what remote-write sends.
pub fn text(state: &AppState) -> String {
    let snapshot = state.snapshot.get();
    let names = super::labels::names(&super::labels::current(state));
    let states: Vec<_> = state.telemetry.states().collect();
    let mut body = state
        .prebuilt
        .metrics(&snapshot, &states, &state.metrics.limits, names);
    body.push_str(&super::health::history_report(&state.store).encode_metrics());
    body.push_str(&super::alerts::encode_metrics(&state.alerts));
    body.push_str(&super::limits::encode_http(
        &state.http.counters,
        &state.http.tickets,
    ));
    if let Some(push) = &state.push {
        body.push_str(&super::push::encode_metrics(
            push.outbox(),
            &super::push::PUSH,
        ));
    }
    if let Some(rw) = &state.remote_write {
        body.push_str(&super::push::encode_metrics(
            rw.outbox(),
            &super::push::REMOTE_WRITE,
        ));
    }
    body
}
