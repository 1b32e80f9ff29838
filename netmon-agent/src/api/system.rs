//! `GET /api/v1/system`: the system collector's latest reading: CPU, memory, filesystems, temperatures, uptime and host information.
//!
//! The body is the [`crate::collect::system::Report`] with the cycle's timing
//! under `collection`: `cpu`, `load_average`, `memory`, `swap`,
//! `filesystems`, `temperatures`, `uptime_seconds` and `host`. Any part the
//! machine lacks is `{"unavailable": "<why>"}` (e.g. `temperatures` on a VM
//! without sensors). 503 with the JSON error when the collector is turned
//! off or its first cycle is still running; 400 for any query parameter.

use axum::{Router, extract::State, response::Response, routing::get};
use serde::Deserialize;

use super::{AppState, error::ApiError, error::ApiQuery, telemetry};
use crate::collect::{CollectorName, Reading, system::Report};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/system", get(show))
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

#[utoipa::path(get, path = "/api/v1/system", operation_id = "getSystem", tag = "telemetry",
    responses((status = 200, description = "The system collector's latest reading.", body = Reading<Report>)))]
async fn show(
    State(state): State<AppState>,
    ApiQuery(Params {}): ApiQuery<Params>,
) -> Result<Response, ApiError> {
    telemetry::reading_response(CollectorName::System, &state.telemetry.system)
}
