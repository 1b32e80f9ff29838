//! `GET /metrics`: the Prometheus text exposition (see [`crate::metrics`]).
//!
//! Whether it needs the API key is fixed at start-up (`--metrics-auth`):
//! when it does, the route carries the same key check as `/api/v1`; when it
//! does not, it is open like `/health`. Query parameters are refused (400).

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Router,
    body::{Body, Bytes},
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
    let (head, tail) = parts(&state);
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        Body::new(Chunks::new([head, Bytes::from(tail)])),
    )
        .into_response()
}

/// The whole exposition, as a scrape gets it: what remote-write sends.
pub fn text(state: &AppState) -> String {
    let (head, tail) = parts(state);
    let mut body = String::from_utf8_lossy(&head).into_owned();
    body.push_str(&tail);
    body
}

/// The exposition in two parts: the prebuilt one (the traffic core's and
/// the collectors' families, shared between requests) and the families
/// written per request (the history's, the alerts', the API's, push's).
fn parts(state: &AppState) -> (Bytes, String) {
    let snapshot = state.snapshot.get();
    let names = super::labels::names(&super::labels::current(state));
    let states: Vec<_> = state.telemetry.states().collect();
    let head = state
        .prebuilt
        .metrics(&snapshot, &states, &state.metrics.limits, names);
    let mut body = super::health::history_report(&state.store).encode_metrics();
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
    (head, body)
}

/// A response body of a few shared buffers, sent one after the other with
/// their total length announced (`Content-Length`, as for one buffer): the
/// prebuilt part is not copied per request.
struct Chunks {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    fn new(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|b| !b.is_empty()).collect();
        let remaining = parts.iter().map(|b| b.len() as u64).sum();
        Chunks { parts, remaining }
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let next = self.parts.pop_front();
        if let Some(b) = &next {
            self.remaining -= b.len() as u64;
        }
        Poll::Ready(next.map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
