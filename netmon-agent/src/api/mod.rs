//! The HTTP API: one small file per resource, merged by [`router`]; the
//! collectors' own views (`GET /api/v1/<name>`) come from the registry
//! ([`telemetry`]).
//!
//! `/health` and the dashboard ([`dashboard`]: `/`, `/assets/*`) are open;
//! everything under `/api/v1` needs an API key (see [`auth`]), or for the
//! stream a ticket obtained with one ([`tickets`]); admin-only routes
//! (`/api/v1/config`) add [`auth::require_role`]. Unknown paths get
//! a JSON 404, bad parameters a JSON 400. Every request's query string is at
//! most [`MAX_QUERY_BYTES`] (else a JSON 400 naming `query`) and its body at
//! most [`MAX_BODY_BYTES`] (extractors reject more); header sizes are
//! hyper's limits. Every error is the JSON body of [`error`], whatever
//! produced it ([`error::json_errors`]), and a handler that panics is
//! answered a JSON 500 (logged and counted) instead of losing the connection.
//! [`server`] serves the router with the connection limits of [`limits`].

mod alerts;
pub mod auth;
pub mod config;
pub(crate) mod dashboard;
mod devices;
pub mod error;
mod flows;
mod health;
pub(crate) mod history;
mod interfaces;
mod labels;
pub mod limits;
pub mod metrics;
mod openapi;
mod packages;
pub mod prebuilt;
#[cfg(test)]
mod proptests;
mod push;
pub mod server;
pub mod snapshot;
mod stream;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod tickets;
pub mod tls;
pub mod views;

use std::{
    any::Any,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};

use crate::{collect::Telemetry, snapshot::Shared};

/// Longest query string accepted, in bytes (percent-encoded, as sent).
pub const MAX_QUERY_BYTES: usize = 4 * 1024;
/// Largest request body an extractor accepts, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
    /// The history, or why the agent runs without one.
    pub store: StoreSlot,
    /// `/api/v1/config`: the effective configuration, secrets left out.
    pub config: Arc<config::Effective>,
    /// The API's limits and what they refused.
    pub http: Arc<limits::Http>,
    /// The snapshot's receivers (`--push-url`), when there are any.
    pub push: Option<Arc<crate::push::Push>>,
    /// The remote-write endpoints (`--remote-write-url`), when there are any.
    pub remote_write: Option<Arc<crate::push::remote_write::RemoteWrite>>,
    /// The alerts: active ones, silences, recent transitions, receivers.
    pub alerts: crate::alerts::run::Alerts,
    /// The hot endpoints' answers, built once per drain or reading.
    pub prebuilt: Arc<prebuilt::Prebuilt>,
    /// Most flows `/api/v1/snapshot` (and so each push) lists
    /// (`--push-flows`).
    pub snapshot_flows: usize,
    /// When the agent started counting: the snapshot's `agentStartTime`,
    /// which tells a hub whether a host's totals are all new to it.
    pub started: std::time::SystemTime,
}

/// The history store, or the reason it is off.
pub type StoreSlot = Result<Arc<crate::store::Store>, Arc<str>>;

/// The whole API; `keys` are the API keys with their roles.
pub fn router(state: AppState, keys: Arc<auth::Keyring>) -> Router {
    let protected = Router::new()
        .merge(alerts::routes())
        .merge(config::routes())
        .merge(devices::routes())
        .merge(flows::routes())
        .merge(history::routes())
        .merge(interfaces::routes())
        .merge(labels::routes())
        .merge(limits::routes())
        .merge(packages::routes())
        .merge(snapshot::routes())
        .merge(telemetry::routes())
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&keys),
            auth::require_key,
        ));
    let app = Router::new()
        .merge(health::routes())
        .merge(dashboard::routes())
        .merge(openapi::routes())
        .merge(stream::routes(
            Arc::clone(&keys),
            Arc::clone(&state.http.tickets),
        ))
        .merge(metrics::routes(&state.metrics, keys))
        .merge(protected)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_query));
    guarded(app, Arc::clone(&state.http)).with_state(state)
}

/// `app` with the outermost layers every answer goes through: errors made
/// JSON ([`error::json_errors`]) and panics made a JSON 500 (`catch_panic`,
/// counted in `http`).
pub fn guarded<S: Clone + Send + Sync + 'static>(
    app: Router<S>,
    http: Arc<limits::Http>,
) -> Router<S> {
    app.layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn_with_state(http, catch_panic))
}

/// Answers a request whose handler (or any layer inside this one) panicked
/// with a JSON 500, logs the panic and counts it, so the client gets an
/// answer and the connection stays usable.
async fn catch_panic(State(http): State<Arc<limits::Http>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match CatchUnwind(Box::pin(next.run(req))).await {
        Ok(response) => response,
        Err(panic) => {
            limits::Counters::bump(&http.counters.panics);
            let message = panic_message(panic.as_ref());
            tracing::error!(path = %path, panic = message, "An API handler panicked.");
            error::ApiError::internal(anyhow::anyhow!("handler panicked: {message}"))
                .into_response()
        }
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A future that turns a panic while polling its inner future into an error.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is dropped right after a panic and never polled again,
        // so no broken state it may hold is observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Refuses a query string longer than [`MAX_QUERY_BYTES`] before routing,
/// authentication or parsing spend anything on it.
async fn limit_query(req: Request, next: Next) -> Result<Response, error::ApiError> {
    let len = req.uri().query().map_or(0, str::len);
    if len > MAX_QUERY_BYTES {
        return Err(error::ApiError::bad_request(
            "query",
            format!("the query string is {len} bytes long; at most {MAX_QUERY_BYTES} are accepted"),
        ));
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use axum::{
        Json,
        body::Body,
        http::{StatusCode, header},
        routing::{get, post},
    };
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;

    /// A router with [`router`]'s limit layers around a GET and a JSON POST.
    fn limited() -> Router {
        Router::new()
            .route("/q", get(|| async { "ok" }))
            .route(
                "/echo",
                post(
                    |body: Result<Json<Value>, axum::extract::rejection::JsonRejection>| async move {
                        body.map_err(error::ApiError::from)
                    },
                ),
            )
            .fallback(error::not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::from_fn(limit_query))
    }

    async fn send(req: axum::http::Request<Body>) -> (StatusCode, Value) {
        let response = limited().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1024 * 1024)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn get_uri(uri: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn query_at_the_limit_passes_and_one_byte_more_is_400() {
        let at = format!("/q?a={}", "x".repeat(MAX_QUERY_BYTES - 2));
        assert_eq!(send(get_uri(&at)).await.0, StatusCode::OK);
        let over = format!("/q?a={}", "x".repeat(MAX_QUERY_BYTES - 1));
        let (status, body) = send(get_uri(&over)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"error": {
                "code": "bad_request",
                "message": format!("invalid parameter `query`: the query string is {} bytes long; \
                                    at most {MAX_QUERY_BYTES} are accepted", MAX_QUERY_BYTES + 1),
                "param": "query",
            }})
        );
        // Also before the 404 of an unknown path.
        let (status, _) = send(get_uri(&over.replace("/q?", "/nope?"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    fn post_json(body: String) -> axum::http::Request<Body> {
        axum::http::Request::post("/echo")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn body_over_the_limit_is_a_json_400_naming_the_body() {
        let small = json!({"a": "x".repeat(1000)});
        let (status, body) = send(post_json(small.to_string())).await;
        assert_eq!((status, body), (StatusCode::OK, small));
        let big = json!({"a": "x".repeat(MAX_BODY_BYTES)}).to_string();
        let (status, body) = send(post_json(big)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["param"], "body", "{body}");
    }
}
