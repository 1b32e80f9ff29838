//! `GET /api/v1/latency`: the latency collector's latest reading: round-trip times and loss per probe target.

use axum::{Router, extract::State, response::Response, routing::get};
use serde::Deserialize;

use super::{AppState, error::ApiError, error::ApiQuery, telemetry};
use crate::collect::{CollectorName, Reading, latency::Report};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/latency", get(show))
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

#[utoipa::path(get, path = "/api/v1/latency", operation_id = "getLatency", tag = "telemetry",
    responses((status = 200, description = "The latency collector's latest reading.", body = Reading<Report>)))]
async fn show(
    State(state): State<AppState>,
    ApiQuery(Params {}): ApiQuery<Params>,
) -> Result<Response, ApiError> {
    telemetry::reading_response(CollectorName::Latency, &state.telemetry.latency)
}
