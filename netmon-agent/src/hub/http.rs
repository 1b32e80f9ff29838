//! The hub's endpoints. Every one but `/health` needs a token from the
//! token file, in `X-API-KEY`, `Authorization: Bearer`, or seed 003's
//! `X-Auth-Token`/`X-Dashboard-Token`: a host's token pushes as that host
//! only (a body naming another host gets 403) and reads; a read-only token
//! reads; an admin token reads and removes hosts. Errors are the agent's
//! JSON body, `{"error": {"code", "message", "param"?}}`.
//!
//! - `POST /api/v1/ingest`: a `realtimeSnapshot`, plain or `Content-Encoding:
//!   gzip`; `POST /ingest`: seed 000's body (or a snapshot), seed 000's answer;
//! - `GET /api/v1/hosts`, `/api/v1/hosts/{host}` (its summary, latest
//!   snapshot and devices), `/api/v1/hosts/{host}/history?since=1h&tier=`,
//!   `series=` (one of the host's series, as its own `/api/v1/series` names
//!   them: `device/<iface>/<mac>`, `flow/...`; default `host`; 404 for one
//!   it never stored), `/api/v1/hosts/{host}/series?family=` (those names),
//!   `/api/v1/hosts/{host}/flows` (its latest push's flows, as its own
//!   `/api/v1/flows` lists them), `/api/v1/hosts/{host}/top?window=1h&
//!   family=device|flow&by=bytes|packets&limit=10` (its top talkers from its
//!   history, as its own `/api/v1/top` ranks them);
//! - `DELETE /api/v1/hosts/{host}` (an admin token): the host's token
//!   revoked, its latest report and history file gone;
//! - seed 004's `GET /hosts` (the host names, a JSON list) and
//!   `GET /latest?hostname=X` (the host's latest report as received);
//! - `GET /api/v1/hub`: hosts, limits and the refusals counted;
//! - `GET /` and `/assets/{name}`: the agent's web dashboard (no token:
//!   the page signs in itself), which shows the hosts on a hub.

use std::{
    io::Read,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, SystemTime},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, State as Axum},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    hosts::{Hosts, Refusal},
    limit::{self, Limiter},
    report::{self, BadBody, Report},
    tokens::{Grant, Tokens},
};
use crate::{
    api::error::{ApiError, ApiPath, ApiQuery},
    store::{Tier, epoch_ms},
};

#[derive(Clone)]
pub struct State {
    pub tokens: Arc<Tokens>,
    pub hosts: Arc<Hosts>,
    pub limiter: Arc<Limiter>,
    pub max_body: usize,
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/api/v1/ingest", post(ingest_snapshot))
        .route("/ingest", post(ingest_seed000))
        .route("/api/v1/hosts", get(list_hosts))
        .route("/api/v1/hosts/{host}", get(one_host).delete(remove_host))
        .route("/api/v1/hosts/{host}/history", get(host_history))
        .route("/api/v1/hosts/{host}/series", get(host_series))
        .route("/api/v1/hosts/{host}/flows", get(host_flows))
        .route("/api/v1/hosts/{host}/top", get(host_top))
        .route("/api/v1/hub", get(hub))
        .route("/hosts", get(seed004_hosts))
        .route("/latest", get(seed004_latest))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit::limit))
        .route("/health", get(health))
        .merge(crate::api::dashboard::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// An error answer, in the agent's JSON error shape.
#[derive(Debug)]
pub struct Fail {
    status: StatusCode,
    code: &'static str,
    message: String,
    param: Option<String>,
}

impl Fail {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Fail {
        Fail {
            status,
            code,
            message: message.into(),
            param: None,
        }
    }
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Fail {
        let param = match &e {
            ApiError::BadRequest { param, .. } => Some(param.clone()),
            _ => None,
        };
        Fail {
            status: e.status(),
            code: e.code(),
            message: e.to_string(),
            param,
        }
    }
}

impl From<BadBody> for Fail {
    fn from(b: BadBody) -> Fail {
        Fail {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: format!("invalid `{}`: {}", b.field, b.reason),
            param: Some(b.field),
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(p) = self.param {
            error["param"] = Value::String(p);
        }
        let mut r = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="netmon-hub""#),
            );
        }
        r
    }
}

async fn not_found() -> Fail {
    Fail::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn health() -> Json<Value> {
    // `hub` tells the dashboard it talks to a hub, not an agent.
    Json(json!({"status": "ok", "hub": true}))
}

/// The token a request presents, if any.
pub(super) fn presented(headers: &HeaderMap) -> Option<&str> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    h("x-api-key")
        .or_else(|| h("authorization").and_then(|a| a.strip_prefix("Bearer ")))
        .or_else(|| h("x-auth-token"))
        .or_else(|| h("x-dashboard-token"))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl State {
    fn grant(&self, headers: &HeaderMap) -> Result<Grant, Fail> {
        let unauthorized = || {
            self.hosts.counters.unauthorized.fetch_add(1, Relaxed);
            Fail::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing, unknown or revoked token",
            )
        };
        let token = presented(headers).ok_or_else(unauthorized)?;
        self.tokens.check(token).ok_or_else(unauthorized)
    }

    /// The host a pushing request's token belongs to.
    fn pusher(&self, headers: &HeaderMap) -> Result<String, Fail> {
        match self.grant(headers)? {
            Grant::Host(h) => Ok(h),
            Grant::ReadOnly(_) | Grant::Admin(_) => {
                self.hosts.counters.forbidden.fetch_add(1, Relaxed);
                Err(Fail::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "a read-only or admin token cannot push",
                ))
            }
        }
    }

    /// The admin token's name, or 403 for any other token.
    fn admin(&self, headers: &HeaderMap) -> Result<String, Fail> {
        match self.grant(headers)? {
            Grant::Admin(name) => Ok(name),
            other => {
                self.hosts.counters.forbidden.fetch_add(1, Relaxed);
                Err(Fail::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "only an admin token removes hosts (`hub token add --admin NAME`); this one is {:?}'s",
                        other.name()
                    ),
                ))
            }
        }
    }

    /// The body as JSON: at most `max_body` bytes, gunzipped if it says
    /// so, again at most `max_body` bytes.
    async fn json_body(&self, headers: &HeaderMap, body: Body) -> Result<Value, Fail> {
        let c = &self.hosts.counters;
        let too_large = || {
            c.too_large.fetch_add(1, Relaxed);
            Fail::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {} bytes (--max-body-size)", self.max_body),
            )
        };
        let gzip = match headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                c.bad_encoding.fetch_add(1, Relaxed);
                return Err(Fail::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_encoding",
                    format!("Content-Encoding {other:?}: only gzip or none"),
                ));
            }
        };
        let raw = axum::body::to_bytes(body, self.max_body)
            .await
            .map_err(|_| too_large())?;
        let bad_body = |reason: String| {
            c.bad_body.fetch_add(1, Relaxed);
            Fail::from(BadBody {
                field: "body".into(),
                reason,
            })
        };
        let plain = if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(self.max_body as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad_body(format!("not gzip: {e}")))?;
            if out.len() > self.max_body {
                return Err(too_large());
            }
            out
        } else {
            raw.to_vec()
        };
        serde_json::from_slice(&plain).map_err(|e| bad_body(format!("not JSON: {e}")))
    }

    /// Checks that `report` is `host`'s, then records it.
    async fn take(
        &self,
        headers: &HeaderMap,
        host: &str,
        report: Result<Report, BadBody>,
    ) -> Result<Report, Fail> {
        let report = report.inspect_err(|_| {
            self.hosts.counters.bad_body.fetch_add(1, Relaxed);
        })?;
        if report.host != host {
            self.hosts.counters.forbidden.fetch_add(1, Relaxed);
            return Err(Fail::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this token is {host:?}'s: it cannot push as {:?}",
                    report.host
                ),
            ));
        }
        // Checked again after the body was read: a host removed meanwhile
        // (its token revoked) is not written back.
        match self.grant(headers)? {
            Grant::Host(h) if h == host => {}
            _ => {
                return Err(Fail::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the token changed while the body was read",
                ));
            }
        }
        let hosts = Arc::clone(&self.hosts);
        let now = epoch_ms(SystemTime::now());
        let kept = report.clone();
        let done = tokio::task::spawn_blocking(move || hosts.ingest(report, now))
            .await
            .map_err(|e| Fail::from(ApiError::internal(e)))?;
        match done {
            Ok(()) => Ok(kept),
            Err(Refusal::TooManyHosts(n)) => {
                self.hosts.counters.too_many_hosts.fetch_add(1, Relaxed);
                Err(Fail::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_hosts",
                    format!("the hub holds its most hosts ({n}, --max-hosts)"),
                ))
            }
            Err(Refusal::Store(e)) => Err(Fail::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot write the host's history: {e}"),
            )),
        }
    }
}

async fn ingest_snapshot(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Fail> {
    let host = s.pusher(&headers)?;
    let doc = s.json_body(&headers, body).await?;
    let r = s
        .take(&headers, &host, report::snapshot(doc, SystemTime::now()))
        .await?;
    Ok(Json(
        json!({"ingested": true, "host": r.host, "atMs": r.at_ms}),
    ))
}

/// Seed 000's `/ingest`: its body (a snapshot is taken too), its answer.
async fn ingest_seed000(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Fail> {
    let host = s.pusher(&headers)?;
    let doc = s.json_body(&headers, body).await?;
    let now = SystemTime::now();
    let parsed = if doc.get("messageType").is_some() {
        report::snapshot(doc, now)
    } else {
        report::seed000(doc, now)
    };
    s.take(&headers, &host, parsed).await?;
    Ok(Json(
        json!({"ingested": true, "ts": crate::units::time(now)}),
    ))
}

async fn list_hosts(Axum(s): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, Fail> {
    s.grant(&headers)?;
    Ok(Json(json!({
        "staleAfterSeconds": s.hosts.limits.stale_after().as_secs_f64(),
        "hosts": s.hosts.summaries(),
    })))
}

fn unknown_host(host: &str) -> Fail {
    Fail::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no host {host:?} has pushed to this hub"),
    )
}

async fn one_host(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    ApiPath(host): ApiPath<String>,
) -> Result<Json<Value>, Fail> {
    s.grant(&headers)?;
    let (summary, doc) = s.hosts.one(&host).ok_or_else(|| unknown_host(&host))?;
    let devices = doc
        .as_ref()
        .and_then(|d| d.pointer("/network/connectedDevices").cloned());
    Ok(Json(json!({
        "summary": summary,
        "devices": devices,
        "snapshot": doc.as_deref(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    /// A series name as the agent's `/api/v1/series` lists them; the
    /// host's own `host` series when not given.
    series: Option<String>,
    since: Option<String>,
    tier: Option<String>,
}

/// The agent's `/api/v1/history` answers for a store error: an unknown
/// series is 404, a busy store 503.
fn store_fail(e: crate::store::StoreError) -> Fail {
    use crate::store::StoreError;
    match e {
        StoreError::UnknownSeries(name) => Fail::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no series named `{name}` in this host's history"),
        ),
        other => Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            other.to_string(),
        ),
    }
}

async fn host_history(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    ApiPath(host): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryParams>,
) -> Result<Json<Value>, Fail> {
    s.grant(&headers)?;
    if let Some(name) = q.series.as_deref()
        && crate::store::SeriesKey::parse(name).is_none()
    {
        return Err(ApiError::bad_request(
            "series",
            format!("{name:?} is not a series name (see /api/v1/hosts/{{host}}/series)"),
        )
        .into());
    }
    let since = match q.since.as_deref() {
        None => Duration::from_secs(3600),
        Some(t) => humantime::parse_duration(t).map_err(|e| {
            ApiError::bad_request("since", format!("{t:?} is not a duration (1h, 30m): {e}"))
        })?,
    };
    let tier = match q.tier.as_deref() {
        None => None,
        Some("raw") => Some(Tier::Raw),
        Some("minute") => Some(Tier::Minute),
        Some("hour") => Some(Tier::Hour),
        Some(t) => {
            return Err(
                ApiError::bad_request("tier", format!("{t:?}: raw, minute or hour")).into(),
            );
        }
    };
    let from = epoch_ms(
        SystemTime::now()
            .checked_sub(since)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    let hosts = Arc::clone(&s.hosts);
    let name = host.clone();
    let h =
        tokio::task::spawn_blocking(move || hosts.history(&name, q.series.as_deref(), from, tier))
            .await
            .map_err(|e| Fail::from(ApiError::internal(e)))?
            .ok_or_else(|| unknown_host(&host))?
            .map_err(store_fail)?;
    Ok(Json(json!({"host": host, "history": h})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesParams {
    family: Option<String>,
}

/// `GET /api/v1/hosts/{host}/series[?family=F]`: the host's stored series
/// names, sorted, as the agent's `/api/v1/series` answers.
async fn host_series(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    ApiPath(host): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeriesParams>,
) -> Result<Json<Value>, Fail> {
    use crate::store::Family;
    s.grant(&headers)?;
    let family = match q.family.as_deref() {
        None => None,
        Some(f) => Some(Family::all().find(|x| x.as_str() == f).ok_or_else(|| {
            let all: Vec<_> = Family::all().map(Family::as_str).collect();
            ApiError::bad_request(
                "family",
                format!("{f:?} is not a family ({})", all.join(", ")),
            )
        })?),
    };
    let hosts = Arc::clone(&s.hosts);
    let name = host.clone();
    let names = tokio::task::spawn_blocking(move || hosts.series(&name, family))
        .await
        .map_err(|e| Fail::from(ApiError::internal(e)))?
        .ok_or_else(|| unknown_host(&host))?
        .map_err(store_fail)?;
    Ok(Json(json!({"host": host, "series": names})))
}

/// `DELETE /api/v1/hosts/{host}`: the host's token revoked first (its
/// next push gets 401), then its latest report and history file removed.
async fn remove_host(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    ApiPath(host): ApiPath<String>,
) -> Result<Json<Value>, Fail> {
    let by = s.admin(&headers)?;
    if s.hosts.one(&host).is_none() {
        return Err(unknown_host(&host));
    }
    let internal = |what: String| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", what);
    let path = s.tokens.path().to_owned();
    let revoked = {
        let host = host.clone();
        tokio::task::spawn_blocking(move || super::tokens::revoke_host(&path, &host))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| internal(e.to_string()))?
    };
    let hosts = Arc::clone(&s.hosts);
    let name = host.clone();
    let bytes = tokio::task::spawn_blocking(move || hosts.remove(&name))
        .await
        .map_err(|e| internal(e.to_string()))?
        .ok_or_else(|| unknown_host(&host))?
        .map_err(|e| internal(format!("cannot delete the host's history file: {e}")))?;
    tracing::info!(host = %host, by = %by, token_revoked = revoked, "Host removed.");
    Ok(Json(json!({
        "removed": host,
        "tokenRevoked": revoked,
        "historyBytes": bytes,
    })))
}

/// A host's latest push's flows: the agent's `/api/v1/flows` body for the
/// top `--push-flows` by rate, plus `host`; `unavailable` when its pushes
/// carry none.
async fn host_flows(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    ApiPath(host): ApiPath<String>,
) -> Result<Json<Value>, Fail> {
    s.grant(&headers)?;
    let (_, doc) = s.hosts.one(&host).ok_or_else(|| unknown_host(&host))?;
    let doc = doc.ok_or_else(|| not_since_start(&host))?;
    let mut body = match doc.get("flows") {
        Some(f @ Value::Object(_)) => f.clone(),
        _ => json!({"unavailable":
            "this host's pushes carry no flows (seed 000's body, or an agent that sends none)"}),
    };
    body["host"] = json!(host);
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopParams {
    window: Option<String>,
    family: Option<String>,
    by: Option<String>,
    limit: Option<usize>,
}

/// A host's top talkers over `window` from its history, as its own
/// `/api/v1/top` answers (among the devices and flows its pushes listed).
async fn host_top(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    ApiPath(host): ApiPath<String>,
    ApiQuery(p): ApiQuery<TopParams>,
) -> Result<Json<Value>, Fail> {
    use crate::store::Family;
    s.grant(&headers)?;
    let window = match p.window.as_deref() {
        None => Duration::from_secs(3600),
        Some(w) => humantime::parse_duration(w)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ApiError::bad_request("window", format!("{w:?} is not a duration (5m, 1h, 7days)"))
            })?,
    };
    let family = match p.family.as_deref().unwrap_or("device") {
        "device" => Family::Device,
        "flow" => Family::Flow,
        other => {
            return Err(ApiError::bad_request(
                "family",
                format!("{other:?}: top talkers are ranked among device or flow series"),
            )
            .into());
        }
    };
    let field = crate::api::history::top_field(family, p.by.as_deref().unwrap_or("bytes"))?;
    let limit = p.limit.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", format!("{limit} is outside 1..=1000")).into());
    }
    let to_ms = epoch_ms(SystemTime::now());
    let from_ms = to_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
    let hosts = Arc::clone(&s.hosts);
    let name = host.clone();
    let ranked = tokio::task::spawn_blocking(move || {
        hosts.top(&name, family, field, (from_ms, to_ms), limit)
    })
    .await
    .map_err(|e| Fail::from(ApiError::internal(e)))?
    .ok_or_else(|| unknown_host(&host))?
    .map_err(|e| {
        Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let t = |ms: u64| crate::units::time(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    Ok(Json(json!({
        "host": host,
        "family": family,
        "by": field,
        "from": t(from_ms),
        "to": t(to_ms),
        "top": ranked,
    })))
}

fn not_since_start(host: &str) -> Fail {
    Fail::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{host:?} has not pushed since the hub started"),
    )
}

async fn hub(Axum(s): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, Fail> {
    s.grant(&headers)?;
    let auth = s.limiter.view();
    let mut counters = json!(s.hosts.counters());
    counters["refused"]["rateLimited"] = json!(auth.rate_limited);
    Ok(Json(json!({
        "tokens": s.tokens.len(),
        "counters": counters,
        "auth": auth,
    })))
}

/// Seed 004's `GET /hosts`: every monitored host name.
async fn seed004_hosts(Axum(s): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, Fail> {
    s.grant(&headers)?;
    Ok(Json(json!(s.hosts.names())))
}

#[derive(Deserialize)]
struct LatestParams {
    hostname: Option<String>,
}

/// Seed 004's `GET /latest?hostname=X`: the host's latest report.
async fn seed004_latest(
    Axum(s): Axum<State>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<LatestParams>,
) -> Result<Json<Value>, Fail> {
    s.grant(&headers)?;
    let host = q
        .hostname
        .ok_or_else(|| ApiError::bad_request("hostname", "missing: /latest?hostname=X"))?;
    let (_, doc) = s.hosts.one(&host).ok_or_else(|| unknown_host(&host))?;
    let doc = doc.ok_or_else(|| not_since_start(&host))?;
    Ok(Json((*doc).clone()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::{
        hub::{
            hosts::Limits,
            tokens::{self, Grant},
        },
        store::Retention,
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        app: Router,
        host: String,
        read: String,
    }

    fn fixture(max_body: usize, max_hosts: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(tokens::FILE_NAME);
        let host = tokens::add(&file, "web01", false).unwrap();
        let read = tokens::add(&file, "dash", true).unwrap();
        let limits = Limits {
            max_hosts,
            retention: Retention {
                size_budget: 4 << 20,
                ..Retention::default()
            },
            push_interval: Duration::from_secs(5),
            stale_intervals: 3,
        };
        let state = State {
            tokens: Arc::new(Tokens::open(file).unwrap()),
            hosts: Arc::new(Hosts::open(dir.path(), limits).unwrap()),
            limiter: Arc::new(Limiter::new(limit::AuthLimits {
                max_failures: 3,
                window: Duration::from_secs(60),
                max_sources: 16,
            })),
            max_body,
        };
        Fixture {
            _dir: dir,
            app: router(state),
            host,
            read,
        }
    }

    async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn post(path: &str, token: &str, gzip: bool, body: Vec<u8>) -> Request<Body> {
        let mut b = Request::post(path).header("x-api-key", token);
        if gzip {
            b = b.header("content-encoding", "gzip");
        }
        b.body(Body::from(body)).unwrap()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn snap(host: &str) -> Vec<u8> {
        json!({"messageType": "realtimeSnapshot", "serverId": host,
            "metrics": {"cpu": {"percent": 3.0}}})
        .to_string()
        .into_bytes()
    }

    #[tokio::test]
    async fn limits_and_refusals_are_json_and_counted() {
        let f = fixture(4096, 1);
        let app = &f.app;
        let (s, b) = send(
            app,
            post("/api/v1/ingest", &f.host, true, gz(&snap("web01"))),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        // Over the limit as sent, and a gzip bomb over it once inflated.
        let big = vec![b' '; 8192];
        let (s, b) = send(app, post("/api/v1/ingest", &f.host, false, big.clone())).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (StatusCode::PAYLOAD_TOO_LARGE, &json!("too_large"))
        );
        let (s, _) = send(app, post("/api/v1/ingest", &f.host, true, gz(&big))).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        let (s, b) = send(
            app,
            post("/api/v1/ingest", &f.host, true, b"not gzip".to_vec()),
        )
        .await;
        assert_eq!(
            (s, &b["error"]["param"]),
            (StatusCode::BAD_REQUEST, &json!("body"))
        );
        let (s, b) = send(app, post("/api/v1/ingest", "", false, snap("web01"))).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
        );
        // A second host is over --max-hosts 1 (its token added while running).
        let file = f._dir.path().join(tokens::FILE_NAME);
        let other = tokens::add(&file, "web02", false).unwrap();
        let (s, b) = send(app, post("/api/v1/ingest", &other, false, snap("web02"))).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (StatusCode::TOO_MANY_REQUESTS, &json!("too_many_hosts"))
        );
        let req = Request::get("/api/v1/hub")
            .header("authorization", format!("Bearer {}", f.read))
            .body(Body::empty())
            .unwrap();
        let (s, b) = send(app, req).await;
        assert_eq!(s, StatusCode::OK);
        let c = &b["counters"];
        assert_eq!(c["ingested"], 1, "{b}");
        assert_eq!(c["refused"]["tooLarge"], 2, "{b}");
        assert_eq!(c["refused"]["badBody"], 1, "{b}");
        assert_eq!(c["refused"]["unauthorized"], 1, "{b}");
        assert_eq!(c["refused"]["tooManyHosts"], 1, "{b}");
        // Unknown paths and hosts: JSON 404s; /health needs no token.
        let get = |p: &str| {
            Request::get(p)
                .header("x-dashboard-token", f.read.as_str())
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(send(app, get("/nope")).await.0, StatusCode::NOT_FOUND);
        let (s, b) = send(app, get("/api/v1/hosts/web09")).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (StatusCode::NOT_FOUND, &json!("not_found"))
        );
        let (s, b) = send(app, get("/api/v1/hosts/web01/history?tier=day")).await;
        assert_eq!(
            (s, &b["error"]["param"]),
            (StatusCode::BAD_REQUEST, &json!("tier"))
        );
        let (s, b) = send(app, get("/api/v1/hosts/web01/history?since=1h")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            b["history"]["points"].as_array().map(Vec::len),
            Some(1),
            "{b}"
        );
        let health = Request::get("/health").body(Body::empty()).unwrap();
        assert_eq!(send(app, health).await.0, StatusCode::OK);
    }

    /// From one address, 3 failures (a wrong token, none, a revoked one)
    /// within the window: then 429 with Retry-After for reads and pushes
    /// without a correct token, while correct tokens still work and other
    /// addresses are not limited; 17 more sources overflow the table of 16.
    #[tokio::test]
    async fn failed_authentications_are_limited_per_source() {
        use axum::extract::ConnectInfo;
        let f = fixture(4096, 8);
        let app = &f.app;
        let from = |ip: &str, mut req: Request<Body>| {
            let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
            req
        };
        let read = |token: &str| {
            Request::get("/api/v1/hosts")
                .header("x-api-key", token)
                .body(Body::empty())
                .unwrap()
        };
        let file = f._dir.path().join(tokens::FILE_NAME);
        let revoked = tokens::add(&file, "old", false).unwrap();
        tokens::revoke(&file, "old").unwrap();
        let a = "192.0.2.7";
        for token in ["wrong-token-0123456789", "", &revoked] {
            let (s, _) = send(app, from(a, read(token))).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED);
        }
        let r = app
            .clone()
            .oneshot(from(a, read("wrong-token-0123456789")))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let b: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(b["error"]["code"], "rate_limited", "{b}");
        let (s, _) = send(
            app,
            from(a, post("/api/v1/ingest", &revoked, false, snap("old"))),
        )
        .await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "a push is limited too");
        // Correct tokens from the same address, and another address.
        let (s, b) = send(
            app,
            from(a, post("/api/v1/ingest", &f.host, false, snap("web01"))),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(send(app, from(a, read(&f.read))).await.0, StatusCode::OK);
        let (s, _) = send(app, from("192.0.2.8", read("wrong-token-0123456789"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        // /health is outside the limit.
        let health = Request::get("/health").body(Body::empty()).unwrap();
        assert_eq!(send(app, from(a, health)).await.0, StatusCode::OK);
        // The table holds 16 sources: 17 new ones (after a and .8) evict.
        for i in 0..17 {
            let ip = format!("198.51.100.{i}");
            send(app, from(&ip, read("wrong-token-0123456789"))).await;
        }
        let (s, b) = send(app, from("192.0.2.9", read(&f.read))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let req = Request::get("/api/v1/hub")
            .header("x-api-key", f.read.as_str())
            .body(Body::empty())
            .unwrap();
        let (s, b) = send(app, req).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["counters"]["refused"]["rateLimited"], 2, "{b}");
        assert_eq!(b["counters"]["refused"]["unauthorized"], 21, "{b}");
        assert_eq!(b["auth"]["rateLimited"], 2, "{b}");
        assert_eq!(b["auth"]["sourcesEvicted"], 3, "{b}");
        assert_eq!(b["auth"]["maxFailures"], 3, "{b}");
        assert_eq!(b["auth"]["maxSources"], 16, "{b}");
    }

    /// A host's flows as pushed, its top talkers from the deltas of two
    /// pushes, and its removal: only by an admin token, its file gone, its
    /// token refused after, counted.
    #[tokio::test]
    async fn flows_top_and_removal() {
        let f = fixture(1 << 20, 8);
        let app = &f.app;
        let file = f._dir.path().join(tokens::FILE_NAME);
        let admin = tokens::add_grant(&file, Grant::Admin("ops".into())).unwrap();
        let flow = |bytes: u64| {
            json!({"interface": "eth0", "direction": "egress", "protocol": "udp",
                "protocol_number": 17, "src": "10.0.0.1", "dst": "10.0.0.2",
                "src_mac": "02:00:00:00:00:01", "dst_mac": "02:00:00:00:00:02",
                "bytes": bytes, "packets": bytes / 100, "bits_per_second": 8000.0,
                "packets_per_second": 10.0, "first_seen": "2026-01-01T00:00:00Z",
                "last_seen": "2026-01-01T00:00:01Z"})
        };
        let now = SystemTime::now() - Duration::from_secs(5);
        // The device's totals grow with the flow's: tx by `bytes`, rx by
        // a fifth of it.
        let device = |bytes: u64| {
            json!({"interface": "eth0", "mac": "02:00:00:00:00:01", "bandwidth": {
                "txBytesTotal": bytes, "txPacketsTotal": bytes / 100,
                "rxBytesTotal": bytes / 5, "rxPacketsTotal": bytes / 500}})
        };
        let push = |bytes: u64, at: SystemTime| {
            let t = crate::units::time(at);
            json!({"messageType": "realtimeSnapshot", "serverId": "web01",
                "snapshotTime": t, "agentStartTime": crate::units::time(now),
                "network": {"collectionEndTime": t, "connectedDevices": [device(bytes)]},
                "flows": {"interval_seconds": 1.0, "total": 1, "omitted": 0, "flows": [flow(bytes)]}})
            .to_string()
            .into_bytes()
        };
        for (bytes, at) in [(1000, now), (1500, now + Duration::from_secs(1))] {
            let (s, b) = send(app, post("/api/v1/ingest", &f.host, false, push(bytes, at))).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        let get = |p: &str, token: &str| {
            Request::get(p)
                .header("x-api-key", token)
                .body(Body::empty())
                .unwrap()
        };
        let (s, b) = send(app, get("/api/v1/hosts/web01/flows", &f.read)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["flows"], json!([flow(1500)]), "{b}");
        assert_eq!(b["host"], "web01");
        let (s, b) = send(
            app,
            get("/api/v1/hosts/web01/top?family=flow&window=1h", &f.read),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            b["top"][0]["series"], "flow/eth0/egress/17/10.0.0.1/10.0.0.2",
            "{b}"
        );
        assert_eq!(b["top"][0]["value"], 1500.0, "{b}");
        // The device's history: the hub's first sight of an agent that
        // ran before it is a baseline, so what it stored is the second
        // push's totals minus the first's.
        let dev = "device/eth0/02:00:00:00:00:01";
        let (s, b) = send(
            app,
            get(
                &format!("/api/v1/hosts/web01/history?series={dev}&tier=raw"),
                &f.read,
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["history"]["series"], dev, "{b}");
        let points = b["history"]["points"].as_array().unwrap();
        assert_eq!(points.len(), 1, "{b}");
        assert_eq!(
            points[0]["values"],
            json!({"tx_bytes": 500, "tx_packets": 5, "rx_bytes": 100, "rx_packets": 1}),
            "{b}"
        );
        let (s, b) = send(
            app,
            get("/api/v1/hosts/web01/series?family=device", &f.read),
        )
        .await;
        assert_eq!((s, &b["series"]), (StatusCode::OK, &json!([dev])), "{b}");
        let (s, b) = send(app, get("/api/v1/hosts/web01/series", &f.read)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            b["series"],
            json!([dev, "flow/eth0/egress/17/10.0.0.1/10.0.0.2", "host"]),
            "{b}"
        );
        for (q, status, param) in [
            ("series=nope", StatusCode::BAD_REQUEST, json!("series")),
            ("series=", StatusCode::BAD_REQUEST, json!("series")),
            ("series=device/eth9/x", StatusCode::NOT_FOUND, Value::Null),
        ] {
            let (s, b) = send(
                app,
                get(&format!("/api/v1/hosts/web01/history?{q}"), &f.read),
            )
            .await;
            assert_eq!((s, &b["error"]["param"]), (status, &param), "{q}: {b}");
        }
        let (s, b) = send(app, get("/api/v1/hosts/web01/series?family=x", &f.read)).await;
        assert_eq!(
            (s, &b["error"]["param"]),
            (StatusCode::BAD_REQUEST, &json!("family"))
        );
        let (s, _) = send(
            app,
            get(
                &format!("/api/v1/hosts/web09/history?series={dev}"),
                &f.read,
            ),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, b) = send(app, get("/api/v1/hosts/web01/top?by=nope", &f.read)).await;
        assert_eq!(
            (s, &b["error"]["param"]),
            (StatusCode::BAD_REQUEST, &json!("by"))
        );

        let delete = |p: &str, token: &str| {
            Request::delete(p)
                .header("x-api-key", token)
                .body(Body::empty())
                .unwrap()
        };
        for token in [&f.read, &f.host] {
            let (s, b) = send(app, delete("/api/v1/hosts/web01", token)).await;
            assert_eq!(
                (s, &b["error"]["code"]),
                (StatusCode::FORBIDDEN, &json!("forbidden"))
            );
        }
        let (s, b) = send(app, delete("/api/v1/hosts/web09", &admin)).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (StatusCode::NOT_FOUND, &json!("not_found"))
        );
        let path = f._dir.path().join("hosts/web01.redb");
        assert!(path.exists());
        let (s, b) = send(app, delete("/api/v1/hosts/web01", &admin)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            (&b["removed"], &b["tokenRevoked"]),
            (&json!("web01"), &json!(true))
        );
        assert!(b["historyBytes"].as_u64().unwrap() > 0, "{b}");
        assert!(!path.exists());
        let (s, _) = send(app, get("/api/v1/hosts/web01", &f.read)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = send(app, post("/api/v1/ingest", &f.host, false, push(2000, now))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(!path.exists());
        let (s, b) = send(app, get("/api/v1/hub", &admin)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["counters"]["removed"], 1, "{b}");
    }

    /// The dashboard at `/` with its security headers and no token;
    /// `/health` tells the page it talks to a hub.
    #[tokio::test]
    async fn the_dashboard_is_served_and_health_says_hub() {
        let f = fixture(4096, 8);
        let r = f
            .app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        let health = Request::get("/health").body(Body::empty()).unwrap();
        let (s, b) = send(&f.app, health).await;
        assert_eq!((s, &b["hub"]), (StatusCode::OK, &json!(true)));
        let asset = Request::get("/assets/nope.js").body(Body::empty()).unwrap();
        assert_eq!(send(&f.app, asset).await.0, StatusCode::NOT_FOUND);
    }
}
