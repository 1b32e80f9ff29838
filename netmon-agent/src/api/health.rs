//! `GET /health`: liveness without authentication. Says only whether the
//! drain loop is running, never what it counted.

use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;

use super::{AppState, views::time};

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok` once the maps have been read at least once, else `starting`.
    status: &'static str,
    version: &'static str,
    last_update: Option<String>,
}

#[utoipa::path(get, path = "/health", operation_id = "health", tag = "meta",
    responses((status = 200, description = "Whether the drain loop runs.", body = Health)))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    let s = state.snapshot.get();
    Json(Health {
        status: if s.updated.is_some() {
            "ok"
        } else {
            "starting"
        },
        version: env!("CARGO_PKG_VERSION"),
        last_update: s.updated.map(time),
    })
}
