//! `GET /health`: liveness without authentication. Says whether the drain
//! loop is running and how the history is doing, never what either counted.

use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;

use super::{AppState, StoreSlot};
use crate::store::status::{self, Report};
use crate::units::time;

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok` once the maps have been read at least once, else `starting`.
    status: &'static str,
    version: &'static str,
    last_update: Option<String>,
    /// `ok`; `degraded` (the history runs, but its file was found damaged
    /// and replaced at start, writes fail and intervals wait in memory, or
    /// a history thread panicked and is being restarted); `off` (no history
    /// file: turned off, or it could not be opened).
    history: status::State,
    /// Why the history is degraded or off; absent when ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    history_reason: Option<String>,
    /// Intervals waiting in memory to be written to the history.
    history_queued_intervals: u64,
    /// Intervals dropped (oldest first) since start because that queue was
    /// full (`--store-queue-intervals`).
    history_dropped_intervals: u64,
    /// Restarts of the history's threads after a panic, since start.
    history_thread_restarts: u64,
}

/// The history's report, `off` with its reason when there is none.
pub fn history_report(store: &StoreSlot) -> Report {
    match store {
        Ok(st) => st.status().report(),
        Err(why) => Report::off(why),
    }
}

#[utoipa::path(get, path = "/health", operation_id = "health", tag = "meta",
    responses((status = 200, description = "Whether the drain loop runs, and how the history is doing.", body = Health)))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    let s = state.snapshot.get();
    let h = history_report(&state.store);
    Json(Health {
        status: if s.updated.is_some() {
            "ok"
        } else {
            "starting"
        },
        version: env!("CARGO_PKG_VERSION"),
        last_update: s.updated.map(time),
        history: h.state,
        history_reason: h.reason,
        history_queued_intervals: h.queued,
        history_dropped_intervals: h.dropped,
        history_thread_restarts: h.restarts.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    /// The OpenAPI document describes the history fields as served.
    #[test]
    fn the_document_describes_the_history_fields() {
        let doc = super::super::openapi::document(false);
        let health = &doc["components"]["schemas"]["Health"];
        let props = &health["properties"];
        for field in [
            "history",
            "history_reason",
            "history_queued_intervals",
            "history_dropped_intervals",
            "history_thread_restarts",
        ] {
            assert!(props[field].is_object(), "{field}: {health:#}");
        }
        let required: Vec<&str> = health["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(required.contains(&"history"), "{health:#}");
        assert!(!required.contains(&"history_reason"), "{health:#}");
        let states = &doc["components"]["schemas"]["HistoryState"]["enum"];
        assert_eq!(
            states,
            &serde_json::json!(["ok", "degraded", "off"]),
            "{doc:#}"
        );
    }
}
