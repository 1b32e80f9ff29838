//! `GET /api/v1/stream`: Server-Sent Events, one `interval` event per drain
//! with that interval's summary, for live dashboards, and an `alert` event
//! per alert firing or resolving (see `alerts.rs`). Each event's data is
//! JSON: the drain's time and length, each watched interface's totals and
//! rates, the device and flow counts, and the five devices that sent the
//! most in the interval. A comment line every 15 s (or half
//! `--http-idle-timeout`, when shorter) keeps proxies and the server's own
//! idle limit from closing a quiet stream.
//!
//! At most `--sse-max-clients` streams run at once (more get 503). Each
//! event carries the newest summary, so a slow client skips intervals rather
//! than queueing them; a client that leaves more than `--sse-max-backlog`
//! bytes unacknowledged has fallen behind: its stream is ended and counted
//! (`netmon_http_sse_dropped_total`). One that reads nothing at all is cut
//! by the server's stalled-write limit.
//!
//! Authentication: the key in a header, as everywhere, or `?ticket=` with
//! a stream ticket (see [`super::tickets`]): `POST /api/v1/stream/ticket`
//! with a key answers one, good for one stream connection within 30 s.
//! Browsers' `EventSource` cannot send headers; the ticket keeps the key
//! out of URLs. A wrong, used or expired ticket is a 401 and counts as a
//! failed authentication of its address (the same 429 limit applies).

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::State,
    extract::{ConnectInfo, Request},
    middleware::{self, Next},
    response::{
        Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    auth::{self, Keyring, Role},
    error::{ApiError, ApiQuery},
    limits::{Counters, SseSlot},
    server::ConnSocket,
    tickets::Tickets,
    views::Traffic,
};
use crate::{ifaces::format_mac, snapshot::Snapshot, units::time};

/// The stream (behind a key or a ticket) and the ticket route (behind a
/// key).
pub fn routes(keys: Arc<Keyring>, tickets: Arc<Tickets>) -> Router<AppState> {
    let ticket = Router::new()
        .route("/api/v1/stream/ticket", post(issue_ticket))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&keys),
            auth::require_key,
        ));
    Router::new()
        .route("/api/v1/stream", get(stream))
        .route_layer(middleware::from_fn_with_state(
            (keys, tickets),
            key_or_ticket,
        ))
        .merge(ticket)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A stream ticket from `POST /api/v1/stream/ticket`, instead of a key
    /// in a header (for browsers' `EventSource`, which cannot send one).
    #[param(pattern = "^[0-9a-f]{64}$")]
    #[allow(dead_code, reason = "read by `key_or_ticket` before the handler")]
    ticket: Option<String>,
}

/// The answer to `POST /api/v1/stream/ticket`.
#[derive(Serialize, utoipa::ToSchema)]
struct TicketView {
    /// Pass it as `?ticket=` to `/api/v1/stream`; good for one connection.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    ticket: String,
    /// How long it may wait for its connection.
    expires_in_seconds: f64,
    /// The role of the key it was obtained with (`admin` or `read-only`),
    /// so a client knows what it may do; the ticket itself opens the
    /// stream only.
    #[schema(pattern = "^(admin|read-only)$")]
    role: String,
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[utoipa::path(post, path = "/api/v1/stream/ticket", operation_id = "streamTicket", tag = "traffic",
    responses((status = 200, description = "A single-use ticket for `/api/v1/stream?ticket=`, good for 30 s.", body = TicketView)))]
async fn issue_ticket(
    State(state): State<AppState>,
    role: Option<Extension<Role>>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Json<TicketView>, ApiError> {
    let issued = state.http.tickets.issue()?;
    Ok(Json(TicketView {
        ticket: issued.ticket,
        expires_in_seconds: issued.ttl.as_secs_f64(),
        role: role.map_or(Role::ReadOnly, |Extension(r)| r).to_string(),
    }))
}

/// The stream's authentication: a `ticket` query parameter is redeemed
/// (and nothing else is looked at); without one, the key as on every route.
async fn key_or_ticket(
    State((keys, tickets)): State<(Arc<Keyring>, Arc<Tickets>)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ticket = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("ticket="))
            .map(str::to_owned)
    });
    let Some(ticket) = ticket else {
        return auth::require_key(State(keys), req, next).await;
    };
    if tickets.redeem(&ticket) {
        req.extensions_mut().insert(Role::ReadOnly);
        return Ok(next.run(req).await);
    }
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    tracing::debug!(
        remote = remote.map(tracing::field::display),
        "Rejected a stream ticket: unknown, used or expired."
    );
    // Counted as a failed authentication of the address (429 past the
    // limit); the answer is that refusal.
    match keys.check(None, remote).await {
        Ok(_) => Err(ApiError::Unauthorized),
        Err(e) => Err(e),
    }
}

/// How often the handler looks for a new drain.
const POLL: Duration = Duration::from_millis(100);
/// Devices listed in each summary.
const TOP: usize = 5;
/// Longest pause between two writes on a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Serialize)]
struct Summary {
    time: String,
    interval_seconds: f64,
    interfaces: Vec<InterfaceSummary>,
    devices: usize,
    flows: usize,
    top_senders: Vec<Sender>,
}

#[derive(Serialize)]
struct InterfaceSummary {
    name: String,
    rx: Traffic,
    tx: Traffic,
}

#[derive(Serialize)]
struct Sender {
    interface: String,
    mac: String,
    tx: Traffic,
}

fn summary(s: &Snapshot) -> Summary {
    let mut senders: Vec<_> = s.devices.iter().collect();
    senders.sort_by(|a, b| {
        b.tx.rate
            .bits_per_second
            .total_cmp(&a.tx.rate.bits_per_second)
    });
    Summary {
        time: s.updated.map(time).unwrap_or_default(),
        interval_seconds: s.interval.as_secs_f64(),
        interfaces: s
            .interfaces
            .iter()
            .map(|i| InterfaceSummary {
                name: i.name.clone(),
                rx: (&i.totals.rx).into(),
                tx: (&i.totals.tx).into(),
            })
            .collect(),
        devices: s.devices.len(),
        flows: s.flow_table.entries as usize,
        top_senders: senders
            .into_iter()
            .take(TOP)
            .map(|d| Sender {
                interface: s.iface_name(d.ifindex),
                mac: format_mac(d.mac),
                tx: (&d.tx).into(),
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/api/v1/stream", operation_id = "stream", tag = "traffic", params(Params),
    responses((status = 200, description = "Server-sent events: a summary every interval.",
        content_type = "text/event-stream", body = String)))]
async fn stream(
    State(state): State<AppState>,
    socket: Option<Extension<ConnSocket>>,
    ApiQuery(_): ApiQuery<Params>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let client = Client {
        _slot: state.http.sse_slot()?,
        socket: socket.map(|Extension(s)| s),
        max_backlog: u64::from(state.http.opts.sse_max_backlog),
    };
    let keep_alive = KEEP_ALIVE.min(state.http.opts.http_idle_timeout / 2);
    // The first event is the drain current at connection time; `alert`
    // events are the transitions after it (see `alerts.rs`).
    let seq = state.alerts.last_seq();
    let events = stream::unfold(
        (state, None::<Arc<Snapshot>>, client, (seq, Vec::new())),
        |(state, last, client, (mut seq, mut alerts))| async move {
            loop {
                if alerts.is_empty() {
                    (alerts, seq) = super::alerts::stream_events(&state.alerts, seq);
                    alerts.reverse();
                }
                if let Some(event) = alerts.pop() {
                    return Some((Ok(event), (state, last, client, (seq, alerts))));
                }
                let s = state.snapshot.get();
                let new =
                    s.updated.is_some() && last.as_ref().is_none_or(|l| l.updated != s.updated);
                if new {
                    if client.behind() {
                        Counters::bump(&state.http.counters.sse_dropped);
                        return None;
                    }
                    let event = Event::default()
                        .event("interval")
                        .json_data(summary(&s))
                        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
                    return Some((Ok(event), (state, Some(s), client, (seq, alerts))));
                }
                tokio::time::sleep(POLL).await;
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive)))
}

/// One stream's client: its place under `--sse-max-clients` and how to see
/// whether it keeps up.
struct Client {
    _slot: SseSlot,
    socket: Option<ConnSocket>,
    max_backlog: u64,
}

impl Client {
    /// Whether the client left more than `--sse-max-backlog` bytes unread.
    fn behind(&self) -> bool {
        let backlog = self.socket.and_then(ConnSocket::unacknowledged);
        let behind = backlog.is_some_and(|b| b > self.max_backlog);
        if behind {
            tracing::debug!(
                backlog,
                max = self.max_backlog,
                "Ended an event stream: its client fell behind."
            );
        }
        behind
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{
        body::Body,
        http::{Request, StatusCode, header},
    };
    use tower::ServiceExt as _;

    use super::super::{limits::Http, router, test_support};
    use crate::keys::ApiKey;

    const KEY: &str = "0123456789abcdef-test";
    const RO_KEY: &str = "dashboard-key-0123456789";

    fn app(http: &Arc<Http>) -> axum::Router {
        let keys = super::Keyring::new(ApiKey::new(KEY).unwrap())
            .with(super::Role::ReadOnly, [ApiKey::new(RO_KEY).unwrap()])
            .limited(&http.opts, Arc::clone(&http.counters));
        let state = test_support::state(Err("off".into()), Arc::clone(http));
        router(state, Arc::new(keys))
    }

    async fn send(app: &axum::Router, req: Request<Body>) -> axum::response::Response {
        app.clone().oneshot(req).await.unwrap()
    }

    async fn ticket(app: &axum::Router, key: &str) -> serde_json::Value {
        let req = Request::post("/api/v1/stream/ticket")
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap();
        let r = send(app, req).await;
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn stream(query: &str) -> Request<Body> {
        Request::get(format!("/api/v1/stream{query}"))
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_ticket_opens_the_stream_once_and_nothing_else() {
        let http = Arc::new(Http::default());
        let app = app(&http);
        let t = ticket(&app, RO_KEY).await;
        assert_eq!(t["role"], "read-only");
        assert_eq!(t["expires_in_seconds"], 30.0);
        assert_eq!(ticket(&app, KEY).await["role"], "admin");
        let id = t["ticket"].as_str().unwrap();
        // Good once.
        let r = send(&app, stream(&format!("?ticket={id}"))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        drop(r);
        let r = send(&app, stream(&format!("?ticket={id}"))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // A made-up ticket, or none and no key: 401, counted as failures.
        let r = send(&app, stream(&format!("?ticket={}", "0".repeat(64)))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            send(&app, stream("")).await.status(),
            StatusCode::UNAUTHORIZED
        );
        // No other route takes a ticket.
        let fresh = ticket(&app, RO_KEY).await["ticket"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = send(
            &app,
            Request::get(format!("/api/v1/limits?ticket={fresh}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // The key still opens the stream without a ticket.
        let r = send(
            &app,
            Request::get("/api/v1/stream")
                .header("x-api-key", RO_KEY)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let t = &http.tickets;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            (get(&t.issued), get(&t.redeemed), get(&t.rejected)),
            (3, 1, 2)
        );
        assert_eq!(super::Counters::get(&http.counters.auth_failures), 4);
        // Tickets need a key.
        let r = send(
            &app,
            Request::post("/api/v1/stream/ticket")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}
