//! The collectors' views: `GET /api/v1/<name>` for every registered
//! collector with a view ([`crate::collect::Collector::VIEW`]): its latest
//! reading (the report with the cycle's timing under `collection`) as
//! JSON, or a 503 that says why there is none (turned off, or the first
//! cycle still running). Any part the machine lacks is
//! `{"unavailable": "<why>"}`; any query parameter is a 400. The routes and
//! their OpenAPI operations (`get<Name>`, tag `telemetry`) come from the
//! registry.
//!
//! Also the typed access other resources use ([`latest`]: the devices view
//! reads discovery's report, the interfaces view the interfaces
//! collector's).

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{AppState, error::ApiError, error::ApiQuery};
use crate::collect::{self, Collector, CollectorName, Reading, SOURCES, Telemetry};

/// `GET /api/v1/<name>` for every collector with a view.
pub fn routes() -> Router<AppState> {
    SOURCES
        .iter()
        .filter(|s| s.view().is_some())
        .fold(Router::new(), |router, s| {
            let name = s.name();
            router.route(
                &path(name),
                get(
                    move |State(state): State<AppState>, ApiQuery(Params {}): ApiQuery<Params>| async move {
                        show(name, &state.telemetry)
                    },
                ),
            )
        })
}

/// The path of collector `name`'s view.
pub fn path(name: CollectorName) -> String {
    format!("/api/v1/{name}")
}

/// The OpenAPI operation id of collector `name`'s view: `getSystem`.
pub fn operation_id(name: CollectorName) -> String {
    let n = name.as_str();
    let mut chars = n.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    format!(
        "get{}{}",
        first.map(String::from).unwrap_or_default(),
        chars.as_str()
    )
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

fn show(name: CollectorName, t: &Telemetry) -> Result<Response, ApiError> {
    let reading = match t.slot(name).state() {
        collect::State::Ready(r) => r,
        state => return Err(absent(name, &state)),
    };
    let body = reading.json().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The 503 for a collector without a reading.
fn absent(name: CollectorName, state: &collect::State) -> ApiError {
    ApiError::Unavailable(if matches!(state, collect::State::Disabled) {
        format!("the {name} collector is turned off (--disable {name})")
    } else {
        format!("the {name} collector has not finished its first cycle yet")
    })
}

/// The latest reading of collector `C`, or the 503 explaining its absence.
pub fn latest<C: Collector>(t: &Telemetry) -> Result<Arc<Reading<C::Report>>, ApiError> {
    typed::<C>(t.slot(C::NAME).state())
}

/// Collector `C`'s reading in `state` (its slot's), or the 503 explaining
/// its absence.
pub fn typed<C: Collector>(state: collect::State) -> Result<Arc<Reading<C::Report>>, ApiError> {
    match state {
        collect::State::Ready(r) => r.into_any().downcast().map_err(|_| {
            ApiError::internal(anyhow::anyhow!(
                "the {} reading is not of its collector's type",
                C::NAME
            ))
        }),
        state => Err(absent(C::NAME, &state)),
    }
}
