//! `GET /api/v1/packages[?changed_since=]`: the packages collector's latest
//! reading (dpkg's inventory, the changes seen since the agent started, and
//! the cycle's timing under `collection`), with only the changes at or
//! after `changed_since` when it is given. Its own route rather than the
//! registry's generic view because of that parameter.

use axum::{Json, Router, extract::State, routing::get};
use serde::Deserialize;
use serde_json::Value;

use super::{AppState, error::ApiError, error::ApiQuery, history::parse_time, telemetry};
use crate::collect::packages::{Packages, Report};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/packages", get(show))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Params {
    /// Only the changes seen at or after this time: `now`, an RFC 3339
    /// time or a duration before now (`1h`, `7d`). All when not given.
    #[param(
        pattern = "^(now|[1-9][0-9]{0,3}(ms|s|m|h|d|days)|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?Z)$"
    )]
    changed_since: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/packages", operation_id = "getPackages", tag = "telemetry", params(Params),
    responses(
        (status = 200, description = "dpkg's inventory and its changes (the packages collector's latest reading, its cycle under `collection`).", body = Report),
        (status = 503, description = "The packages collector is off or has not finished its first cycle.", body = super::error::ErrorBody)))]
pub(super) async fn show(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let since = p
        .changed_since
        .as_deref()
        .map(|t| parse_time("changed_since", t, std::time::SystemTime::now()))
        .transpose()?;
    let reading = telemetry::latest::<Packages>(&state.telemetry)?;
    let mut body = serde_json::to_value(&*reading).map_err(ApiError::internal)?;
    if let Some(since) = since {
        let changes: Vec<_> = reading.report.changes_since(since).collect();
        body["changes"] = serde_json::to_value(changes).map_err(ApiError::internal)?;
    }
    Ok(Json(body))
}
