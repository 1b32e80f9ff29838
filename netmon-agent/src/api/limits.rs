//! The API's limits: the options that bound what clients can hold (connections,
//! time, stream clients, store queries, points, failed authentications) and
//! the counters of what was refused or closed because of them.
//!
//! Every limit is an option with a default ([`Options`], defined with the
//! other options in [`crate::config::api_limits`]); [`Http`] holds them at
//! run time with the semaphores that enforce the per-endpoint caps, and
//! [`Counters`] counts each refusal. The counters are served in `/metrics`
//! (`netmon_http_*`, see [`encode_http`]).
//!
//! What happens at each limit:
//! - connections over `--http-max-connections` are accepted, answered
//!   `503` (plain HTTP) or closed (TLS, before the handshake) and counted;
//!   those admitted keep being served;
//! - a request head not complete within `--http-header-timeout` of the
//!   connection opening (or of its first byte on a keep-alive connection),
//!   a keep-alive connection without a request for `--http-idle-timeout`,
//!   and a response the client stops reading for `--http-idle-timeout` close
//!   the connection;
//! - a TLS handshake longer than `--tls-handshake-timeout` closes it;
//! - `/api/v1/stream` clients over `--sse-max-clients` get `503`, and a
//!   stream whose client leaves more than `--sse-max-backlog` bytes unread
//!   is ended;
//! - history queries over `--history-max-queries` at once get `503` with
//!   `Retry-After`; an explicit `step` whose answer would exceed
//!   `--history-max-points` points a series gets `400` naming `step` (without
//!   `step`, the tier is chosen so that it does not);
//! - an address with `--auth-max-failures` failed authentications within
//!   `--auth-failure-window` gets `429` with `Retry-After` until the window
//!   ends (a correct key still works; see [`super::auth`]);
//! - a stream ticket asked for while `--stream-max-tickets` wait unused
//!   gets `503` (see [`super::tickets`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    AppState,
    error::{ApiError, ApiQuery},
    tickets::Tickets,
};
pub use crate::config::api_limits::Options;
use crate::metrics::Family;

/// What the limits refused or closed, and what is open now. Counters only
/// grow; `*_open` are gauges.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections refused over `--http-max-connections`.
    pub connections_refused: AtomicU64,
    /// Connections closed: request head not complete in time.
    pub closed_header_timeout: AtomicU64,
    /// Connections closed: kept alive without a request for too long.
    pub closed_idle: AtomicU64,
    /// Connections closed: the client read nothing of a response for too long.
    pub closed_stalled: AtomicU64,
    /// Connections closed: TLS handshake failed or timed out.
    pub closed_tls_handshake: AtomicU64,
    /// Handlers that panicked (answered 500).
    pub panics: AtomicU64,
    /// Stream clients connected now.
    pub sse_open: AtomicU64,
    /// Stream requests refused over `--sse-max-clients`.
    pub sse_refused: AtomicU64,
    /// Streams ended because their client fell behind.
    pub sse_dropped: AtomicU64,
    /// History requests refused over `--history-max-queries`.
    pub history_refused: AtomicU64,
    /// History requests refused over `--history-max-points`.
    pub history_too_many_points: AtomicU64,
    /// Failed authentications (missing or wrong key).
    pub auth_failures: AtomicU64,
    /// Requests answered 429: their address failed too often.
    pub auth_rate_limited: AtomicU64,
    /// Addresses forgotten from the failure table because it was full.
    pub auth_sources_evicted: AtomicU64,
    /// argon2 verifications run.
    pub argon2_verifications: AtomicU64,
    /// argon2 results forgotten because the cache was full.
    pub auth_cache_evicted: AtomicU64,
    /// Device labels refused over `--max-labels`.
    pub labels_refused: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `counter`'s value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The limits in force and their counters, shared by the server, the
/// handlers and the key check.
#[derive(Debug)]
pub struct Http {
    /// The options in force.
    pub opts: Options,
    /// What was refused or closed.
    pub counters: Arc<Counters>,
    /// How often the history records a raw point (the drain interval), for
    /// estimating a raw answer's size.
    pub raw_step: Duration,
    /// The stream tickets waiting to be used (`--stream-max-tickets`).
    pub tickets: Arc<Tickets>,
    sse: Arc<Semaphore>,
    store_queries: Arc<Semaphore>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new(Options::default(), Duration::from_secs(1))
    }
}

impl Http {
    /// The limits of `opts`; `raw_step` is the drain interval.
    pub fn new(opts: Options, raw_step: Duration) -> Self {
        Self {
            sse: Arc::new(Semaphore::new(opts.sse_max_clients as usize)),
            store_queries: Arc::new(Semaphore::new(opts.history_max_queries as usize)),
            tickets: Arc::new(Tickets::new(opts.stream_max_tickets, super::tickets::TTL)),
            counters: Arc::new(Counters::default()),
            raw_step,
            opts,
        }
    }

    /// A stream client's slot, or a 503 (counted) when all are taken.
    pub fn sse_slot(&self) -> Result<SseSlot, ApiError> {
        match Arc::clone(&self.sse).try_acquire_owned() {
            Ok(permit) => {
                Counters::bump(&self.counters.sse_open);
                Ok(SseSlot {
                    _permit: permit,
                    counters: Arc::clone(&self.counters),
                })
            }
            Err(_) => {
                Counters::bump(&self.counters.sse_refused);
                Err(ApiError::Unavailable(format!(
                    "{} stream clients are connected, the most --sse-max-clients allows; retry later",
                    self.opts.sse_max_clients
                )))
            }
        }
    }

    /// A slot for one history query, or a 503 (counted) when
    /// `--history-max-queries` are running.
    pub fn store_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.store_queries)
            .try_acquire_owned()
            .map_err(|_| {
                Counters::bump(&self.counters.history_refused);
                ApiError::Unavailable(format!(
                    "{} history queries are running, the most --history-max-queries allows; retry later",
                    self.opts.history_max_queries
                ))
            })
    }

    /// Takes every history slot (tests: a store that is fully busy).
    #[cfg(test)]
    pub fn hold_store_slots(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.store_queries)
            .try_acquire_many_owned(self.opts.history_max_queries)
            .expect("no history query is running")
    }
}

/// Refusals (writing the 503, then closing) in progress at once; more
/// connections over the cap are closed without an answer (see
/// [`super::server`]).
pub const MAX_REFUSING: usize = 64;

/// File descriptors the agent needs besides API connections (maps, netlink
/// and probe sockets, the history file, collectors' reads), with margin.
const FD_RESERVE: u64 = 256;

/// Open files the agent needs with `opts`: the connections, the refusals in
/// progress and the rest of the agent.
pub fn fds_needed(opts: &Options) -> u64 {
    u64::from(opts.http_max_connections) + MAX_REFUSING as u64 + FD_RESERVE
}

/// Warns when the open-file limit cannot hold `--http-max-connections`
/// connections (and the refusals in progress) besides what the rest of the
/// agent needs: the units set `LimitNOFILE=`.
pub fn check_fd_limit(opts: &Options) {
    let need = fds_needed(opts);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < need {
        tracing::warn!(
            limit = limit.rlim_cur,
            need,
            max_connections = opts.http_max_connections,
            "The open-file limit (RLIMIT_NOFILE) is below what --http-max-connections needs; \
             raise it (LimitNOFILE= in the unit) or lower the option."
        );
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/limits", get(show))
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

/// The body of `/api/v1/limits`.
#[derive(Serialize, utoipa::ToSchema)]
struct LimitsView {
    /// The limits in force (the options' values; times in seconds).
    limits: LimitValues,
    /// What is open now.
    open: OpenNow,
    /// What the limits refused or closed since the start.
    refused: Refused,
}

#[derive(Serialize, utoipa::ToSchema)]
struct LimitValues {
    http_max_connections: u32,
    http_header_timeout_seconds: f64,
    http_idle_timeout_seconds: f64,
    tls_handshake_timeout_seconds: f64,
    sse_max_clients: u32,
    sse_max_backlog_bytes: u32,
    history_max_queries: u32,
    history_max_points: u32,
    auth_max_failures: u32,
    auth_failure_window_seconds: f64,
    auth_max_sources: u32,
    auth_cache_entries: u32,
    stream_max_tickets: u32,
    max_labels: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
struct OpenNow {
    connections: u64,
    sse_clients: u64,
    /// Stream tickets issued and not used yet.
    stream_tickets: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Refused {
    /// Connections over `http_max_connections`.
    connections: u64,
    /// Connections closed: request head not complete in time.
    header_timeouts: u64,
    /// Kept-alive connections closed for idleness.
    idle_closed: u64,
    /// Connections closed: the client read nothing of a response.
    stalled_closed: u64,
    /// TLS handshakes that failed or timed out.
    tls_handshakes: u64,
    /// Stream requests over `sse_max_clients`.
    sse_clients: u64,
    /// Streams ended: the client fell behind.
    sse_dropped: u64,
    /// History requests over `history_max_queries`.
    history_queries: u64,
    /// History requests over `history_max_points`.
    history_points: u64,
    /// Requests with a missing or wrong key.
    auth_failures: u64,
    /// Requests answered 429.
    auth_rate_limited: u64,
    /// Addresses forgotten from the failure table.
    auth_sources_evicted: u64,
    /// Wrong keys forgotten from the argon2 cache.
    auth_cache_evicted: u64,
    /// argon2 verifications run.
    argon2_verifications: u64,
    /// Handlers that panicked.
    panics: u64,
    /// Stream tickets refused over `stream_max_tickets`.
    stream_tickets: u64,
    /// Stream tickets presented that were unknown, used or expired (each
    /// also counts as an authentication failure).
    stream_tickets_rejected: u64,
    /// Stream tickets that expired unused.
    stream_tickets_expired: u64,
    /// Device labels refused over `max_labels`.
    labels: u64,
}

#[utoipa::path(get, path = "/api/v1/limits", operation_id = "getLimits", tag = "meta",
    responses((status = 200, description = "The API's limits in force and what they refused.", body = LimitsView)))]
async fn show(
    State(state): State<AppState>,
    ApiQuery(Params {}): ApiQuery<Params>,
) -> Json<LimitsView> {
    let (o, c, t) = (&state.http.opts, &state.http.counters, &state.http.tickets);
    let g = Counters::get;
    Json(LimitsView {
        limits: LimitValues {
            http_max_connections: o.http_max_connections,
            http_header_timeout_seconds: o.http_header_timeout.as_secs_f64(),
            http_idle_timeout_seconds: o.http_idle_timeout.as_secs_f64(),
            tls_handshake_timeout_seconds: o.tls_handshake_timeout.as_secs_f64(),
            sse_max_clients: o.sse_max_clients,
            sse_max_backlog_bytes: o.sse_max_backlog,
            history_max_queries: o.history_max_queries,
            history_max_points: o.history_max_points,
            auth_max_failures: o.auth_max_failures,
            auth_failure_window_seconds: o.auth_failure_window.as_secs_f64(),
            auth_max_sources: o.auth_max_sources,
            auth_cache_entries: o.auth_cache_entries,
            stream_max_tickets: o.stream_max_tickets,
            max_labels: o.max_labels,
        },
        open: OpenNow {
            connections: g(&c.connections_open),
            sse_clients: g(&c.sse_open),
            stream_tickets: t.live() as u64,
        },
        refused: Refused {
            connections: g(&c.connections_refused),
            header_timeouts: g(&c.closed_header_timeout),
            idle_closed: g(&c.closed_idle),
            stalled_closed: g(&c.closed_stalled),
            tls_handshakes: g(&c.closed_tls_handshake),
            sse_clients: g(&c.sse_refused),
            sse_dropped: g(&c.sse_dropped),
            history_queries: g(&c.history_refused),
            history_points: g(&c.history_too_many_points),
            auth_failures: g(&c.auth_failures),
            auth_rate_limited: g(&c.auth_rate_limited),
            auth_sources_evicted: g(&c.auth_sources_evicted),
            auth_cache_evicted: g(&c.auth_cache_evicted),
            argon2_verifications: g(&c.argon2_verifications),
            panics: g(&c.panics),
            stream_tickets: g(&t.refused),
            stream_tickets_rejected: g(&t.rejected),
            stream_tickets_expired: g(&t.expired),
            labels: g(&c.labels_refused),
        },
    })
}

/// A stream client's place under `--sse-max-clients`; freed when dropped.
#[derive(Debug)]
pub struct SseSlot {
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        self.counters.sse_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The API's limits: what they refused or closed, and what is open now
/// (`netmon_http_*`), with the stream tickets' figures; appended to every
/// scrape.
pub fn encode_http(c: &Counters, t: &Tickets) -> String {
    use Counters as C;
    let mut families = Vec::new();
    let mut gauge = |name, help, v| {
        let mut f = Family::gauge(name, &[], help);
        f.int(&[], v);
        families.push(f);
    };
    gauge(
        "netmon_http_connections_open",
        "API connections open now.",
        C::get(&c.connections_open),
    );
    gauge(
        "netmon_http_sse_clients",
        "Event stream clients connected now.",
        C::get(&c.sse_open),
    );
    gauge(
        "netmon_http_stream_tickets_waiting",
        "Stream tickets issued and not used yet (at most --stream-max-tickets).",
        t.live() as u64,
    );
    let mut counter = |name, help, v| {
        let mut f = Family::counter(name, &[], help);
        f.int(&[], v);
        families.push(f);
    };
    counter(
        "netmon_http_connections_refused_total",
        "API connections refused over --http-max-connections.",
        C::get(&c.connections_refused),
    );
    counter(
        "netmon_http_panics_total",
        "API handlers that panicked (answered 500).",
        C::get(&c.panics),
    );
    counter(
        "netmon_http_sse_dropped_total",
        "Event streams ended because their client fell behind (--sse-max-backlog).",
        C::get(&c.sse_dropped),
    );
    counter(
        "netmon_http_auth_failures_total",
        "Requests with a missing or wrong API key.",
        C::get(&c.auth_failures),
    );
    counter(
        "netmon_http_auth_sources_evicted_total",
        "Addresses forgotten from the failed-authentication table because it was full (--auth-max-sources).",
        C::get(&c.auth_sources_evicted),
    );
    counter(
        "netmon_http_auth_argon2_verifications_total",
        "argon2 verifications of presented keys.",
        C::get(&c.argon2_verifications),
    );
    counter(
        "netmon_http_auth_cache_evicted_total",
        "Wrong keys forgotten from the argon2 result cache because it was full (--auth-cache-entries).",
        C::get(&c.auth_cache_evicted),
    );
    let mut tickets = Family::counter(
        "netmon_http_stream_tickets_total",
        &["outcome"],
        "Stream tickets by outcome: issued, redeemed (opened a stream), rejected (presented unknown, used or expired), expired (never used).",
    );
    for (outcome, v) in [
        ("issued", &t.issued),
        ("redeemed", &t.redeemed),
        ("rejected", &t.rejected),
        ("expired", &t.expired),
    ] {
        tickets.int(&[outcome], C::get(v));
    }
    families.push(tickets);
    let mut closed = Family::counter(
        "netmon_http_connections_closed_total",
        &["reason"],
        "API connections closed by a limit: header_timeout (--http-header-timeout), idle and stalled (--http-idle-timeout), tls_handshake (failed or over --tls-handshake-timeout).",
    );
    for (reason, v) in [
        ("header_timeout", &c.closed_header_timeout),
        ("idle", &c.closed_idle),
        ("stalled", &c.closed_stalled),
        ("tls_handshake", &c.closed_tls_handshake),
    ] {
        closed.int(&[reason], C::get(v));
    }
    families.push(closed);
    let mut refused = Family::counter(
        "netmon_http_requests_refused_total",
        &["reason"],
        "API requests refused by a limit: sse_clients (503, --sse-max-clients), history_queries (503, --history-max-queries), history_points (400, --history-max-points), auth_rate_limited (429, --auth-max-failures), stream_tickets (503, --stream-max-tickets), labels (400, --max-labels).",
    );
    for (reason, v) in [
        ("sse_clients", &c.sse_refused),
        ("history_queries", &c.history_refused),
        ("history_points", &c.history_too_many_points),
        ("auth_rate_limited", &c.auth_rate_limited),
        ("stream_tickets", &t.refused),
        ("labels", &c.labels_refused),
    ] {
        refused.int(&[reason], C::get(v));
    }
    families.push(refused);
    let mut out = String::new();
    for f in &families {
        f.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_counted_and_given_back() {
        let http = Http::new(
            Options {
                sse_max_clients: 2,
                history_max_queries: 1,
                ..Options::default()
            },
            Duration::from_secs(1),
        );
        let a = http.sse_slot().unwrap();
        let b = http.sse_slot().unwrap();
        assert_eq!(Counters::get(&http.counters.sse_open), 2);
        let err = http.sse_slot().unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.to_string().contains("--sse-max-clients"), "{err}");
        assert_eq!(Counters::get(&http.counters.sse_refused), 1);
        drop(a);
        assert_eq!(Counters::get(&http.counters.sse_open), 1);
        let _c = http.sse_slot().unwrap();
        drop(b);

        let q = http.store_slot().unwrap();
        assert!(http.store_slot().is_err());
        assert_eq!(Counters::get(&http.counters.history_refused), 1);
        drop(q);
        assert!(http.store_slot().is_ok());
    }
}
