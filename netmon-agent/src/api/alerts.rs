//! The alerts (see [`crate::alerts`]):
//!
//! - `GET /api/v1/alerts`: the alerts pending, firing, or resolved within
//!   the last 15 minutes, each with its name, severity, state, labels,
//!   annotations, `since` (when it became pending), `fired_at` and the
//!   value that made it;
//! - `GET /api/v1/alerts/history?from=&to=&limit=`: the alert log (firing
//!   and resolved transitions, kept in the history file), oldest first;
//!   `from` and `to` as in the other history endpoints (RFC 3339, `now` or
//!   a duration before now; an hour before `to` and now by default), at
//!   most `limit` entries ([`MAX_LOG_ENTRIES`]; `truncated` says when more
//!   were there);
//! - `POST /api/v1/alerts/silences` (admin): silences a rule, a device
//!   (MAC), or one rule of one device for a duration (at most
//!   [`MAX_SILENCE`]; at most `--alerts-max-silences` at once, more is a
//!   400 naming `rule` or `mac`); `"duration": "0s"` ends one (404 when
//!   there was none). Silenced alerts still change state and are logged,
//!   but receivers are not told. The silences in force are listed in
//!   `GET /api/v1/alerts`. (One method a path, as everywhere in this API.)
//!
//! Each transition is also an `alert` event on `/api/v1/stream`
//! ([`stream_events`]), and [`encode_metrics`] writes `netmon_alerts` and
//! the receivers' counts for `/metrics`.

use std::time::{Duration, SystemTime};

use axum::{
    Json, Router,
    extract::{State, rejection::JsonRejection},
    middleware,
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    auth::{self, Role},
    error::{ApiError, ApiQuery},
};
use crate::{
    alerts::{
        engine::{Alert, Event, Silence, State as AlertState, Target},
        run::{Alerts, SilenceError},
    },
    ifaces::format_mac,
    metrics::Family,
    store::alert_log::Entry,
    units::time,
};

/// Most log entries one answer holds.
pub const MAX_LOG_ENTRIES: usize = 10_000;
/// Longest silence.
pub const MAX_SILENCE: Duration = Duration::from_secs(30 * 86_400);

pub fn routes() -> Router<AppState> {
    let admin = Router::new()
        .route("/api/v1/alerts/silences", axum::routing::post(silence))
        .route_layer(middleware::from_fn_with_state(
            Role::Admin,
            auth::require_role,
        ));
    Router::new()
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/history", get(history))
        .merge(admin)
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// One alert.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Alert)]
pub struct AlertView {
    /// The rule's name (`alertname`).
    name: String,
    #[schema(pattern = "^(info|warning|critical)$")]
    severity: String,
    #[schema(pattern = "^(pending|firing|resolved)$")]
    state: String,
    /// alertname, severity, the rule's labels and the entity's (mac, ip,
    /// interface, mountpoint...).
    labels: std::collections::BTreeMap<String, String>,
    /// The rule's annotations with the figures filled in.
    annotations: std::collections::BTreeMap<String, String>,
    /// When it became pending (RFC 3339).
    since: String,
    /// When it fired; null while pending.
    fired_at: Option<String>,
    /// When it resolved; null unless resolved.
    resolved_at: Option<String>,
    /// The value that made it (the last one evaluated).
    value: f64,
    /// Whether a silence keeps it from the receivers.
    silenced: bool,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        AlertView {
            name: a.rule.clone(),
            severity: a.labels.get("severity").cloned().unwrap_or_default(),
            state: a.state.as_str().to_owned(),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            since: time(a.active_since),
            fired_at: a.fired_at.map(time),
            resolved_at: a.resolved_at.map(time),
            value: finite(a.value),
            silenced: a.silenced,
        }
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// The body of `GET /api/v1/alerts`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertList)]
struct AlertsView {
    /// False with `--no-alerts`.
    enabled: bool,
    /// When the rules were last evaluated; null before the first time.
    evaluated: Option<String>,
    /// Rules in force.
    rules: usize,
    /// Firing first, then pending, then resolved; by name within each.
    alerts: Vec<AlertView>,
    /// The silences in force.
    silences: Vec<SilenceView>,
}

#[utoipa::path(get, path = "/api/v1/alerts", operation_id = "listAlerts", tag = "alerts",
    responses((status = 200, description = "The alerts pending, firing or recently resolved.", body = AlertsView)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Json<AlertsView> {
    let a = &state.alerts;
    let mut alerts = a.active();
    let rank = |s: AlertState| match s {
        AlertState::Firing => 0,
        AlertState::Pending => 1,
        _ => 2,
    };
    alerts.sort_by(|x, y| {
        (rank(x.state), &x.rule, &x.labels).cmp(&(rank(y.state), &y.rule, &y.labels))
    });
    Json(AlertsView {
        enabled: a.enabled(),
        evaluated: a.evaluated().map(time),
        rules: a.rules().len(),
        alerts: alerts.iter().map(AlertView::from).collect(),
        silences: silences_now(a),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogParams {
    /// `now`, an RFC 3339 time or a duration before now (`1h`, `30m`); an
    /// hour before `to` when not given.
    from: Option<String>,
    /// `now`, an RFC 3339 time or a duration before now; now when not given.
    to: Option<String>,
    /// Most entries (1 to 10000, default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// One logged transition.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertLogEntry)]
struct LogEntryView {
    /// When it happened (RFC 3339).
    time: String,
    name: String,
    severity: String,
    /// The state before (`pending`, or `firing` for a resolution).
    from: String,
    /// `firing` or `resolved`.
    #[schema(pattern = "^(firing|resolved)$")]
    to: String,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
    value: f64,
    silenced: bool,
}

impl From<Entry> for LogEntryView {
    fn from(e: Entry) -> Self {
        LogEntryView {
            time: time(SystemTime::UNIX_EPOCH + Duration::from_millis(e.at_ms)),
            name: e.labels.get("alertname").cloned().unwrap_or_default(),
            severity: e.labels.get("severity").cloned().unwrap_or_default(),
            from: e.from,
            to: e.to,
            labels: e.labels,
            annotations: e.annotations,
            value: finite(e.value),
            silenced: e.silenced,
        }
    }
}

/// The body of `GET /api/v1/alerts/history`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertLog)]
struct LogView {
    from: String,
    to: String,
    /// Oldest first.
    entries: Vec<LogEntryView>,
    /// More entries were in the range than `limit`.
    truncated: bool,
}

#[utoipa::path(get, path = "/api/v1/alerts/history", operation_id = "alertHistory", tag = "alerts", params(LogParams),
    responses((status = 200, description = "The alert log: firing and resolved transitions in the range.", body = LogView)))]
async fn history(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> Result<Json<LogView>, ApiError> {
    let limit = p.limit.unwrap_or(1000);
    if !(1..=MAX_LOG_ENTRIES).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            format!("{limit} is not between 1 and {MAX_LOG_ENTRIES}"),
        ));
    }
    let (from_ms, to_ms, _) = super::history::range(p.from.as_deref(), p.to.as_deref())?;
    let store = state
        .store
        .clone()
        .map_err(|why| ApiError::Unavailable(format!("history is off: {why}")))?;
    let (entries, truncated) = super::history::blocking(&state.http, store, move |st| {
        st.alert_log(from_ms, to_ms, limit)
    })
    .await?;
    let ms = |m: u64| time(SystemTime::UNIX_EPOCH + Duration::from_millis(m));
    Ok(Json(LogView {
        from: ms(from_ms),
        to: ms(to_ms),
        entries: entries.into_iter().map(LogEntryView::from).collect(),
        truncated,
    }))
}

/// A silence in force.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AlertSilence)]
struct SilenceView {
    /// The rule silenced; null when every rule of the device is.
    rule: Option<String>,
    /// The device silenced; null when the rule is silenced for every
    /// entity.
    mac: Option<String>,
    /// When it ends (RFC 3339).
    until: String,
}

impl From<&Silence> for SilenceView {
    fn from(s: &Silence) -> Self {
        let (rule, mac) = match &s.target {
            Target::Rule(r) => (Some(r.clone()), None),
            Target::Device(m) => (None, Some(m.clone())),
            Target::RuleDevice { rule, mac } => (Some(rule.clone()), Some(mac.clone())),
        };
        SilenceView {
            rule,
            mac,
            until: time(s.until),
        }
    }
}

fn silences_now(alerts: &Alerts) -> Vec<SilenceView> {
    let now = SystemTime::now();
    alerts
        .silences()
        .iter()
        .filter(|s| s.until > now)
        .map(SilenceView::from)
        .collect()
}

/// The body of `POST /api/v1/alerts/silences`: a rule, a device, or both.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AlertSilenceBody)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    /// A rule in force (`cpu_high`, `new_device`...).
    rule: Option<String>,
    /// A device's MAC, `aa:bb:cc:dd:ee:ff`, any case.
    #[schema(pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]
    mac: Option<String>,
    /// How long (`30m`, `2h`, `1d`; at most 30 days); `0s` ends the
    /// silence.
    duration: String,
}

/// Which silence `rule` and `mac` name, checked.
fn target(state: &AppState, rule: Option<String>, mac: Option<&str>) -> Result<Target, ApiError> {
    let mac = mac
        .map(super::error::mac_param)
        .transpose()?
        .map(format_mac);
    if let Some(r) = &rule
        && !state.alerts.rules().iter().any(|x| &x.name == r)
    {
        return Err(ApiError::bad_request(
            "rule",
            format!("no rule named {r:?} is in force"),
        ));
    }
    match (rule, mac) {
        (Some(rule), Some(mac)) => Ok(Target::RuleDevice { rule, mac }),
        (Some(rule), None) => Ok(Target::Rule(rule)),
        (None, Some(mac)) => Ok(Target::Device(mac)),
        (None, None) => Err(ApiError::bad_request(
            "rule",
            "name a rule, a device's mac, or both",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/alerts/silences", operation_id = "silenceAlerts", tag = "alerts",
    description = "Keeps a rule's alerts, a device's, or one rule's of one device from the receivers \
                   for a while (they still change state and are logged). Setting one that exists \
                   changes its end; a duration of `0s` ends it. Needs the admin key.",
    request_body = SilenceBody,
    responses((status = 200, description = "The silence as set.", body = SilenceView)))]
async fn silence(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    body: Result<Json<SilenceBody>, JsonRejection>,
) -> Result<Json<SilenceView>, ApiError> {
    let Json(body) = body?;
    let d = crate::units::parse_duration(&body.duration)
        .map_err(|e| ApiError::bad_request("duration", e))?;
    if d > MAX_SILENCE {
        return Err(ApiError::bad_request(
            "duration",
            format!("{:?} is more than 30 days", body.duration),
        ));
    }
    let param = if body.rule.is_some() { "rule" } else { "mac" };
    let t = target(&state, body.rule, body.mac.as_deref())?;
    let until = SystemTime::now() + d;
    if d.is_zero() {
        if !state.alerts.unsilence(&t) {
            return Err(ApiError::NotFound("no such silence".to_owned()));
        }
        tracing::info!(target = ?t, "Silence ended.");
        return Ok(Json(SilenceView::from(&Silence { target: t, until })));
    }
    state
        .alerts
        .silence(t.clone(), until)
        .map_err(|e| match e {
            SilenceError::Off => ApiError::Unavailable(e.to_string()),
            SilenceError::Full(_) => ApiError::bad_request(param, e.to_string()),
        })?;
    let view = SilenceView::from(&Silence { target: t, until });
    tracing::info!(
        rule = view.rule,
        mac = view.mac,
        until = view.until,
        "Alerts silenced."
    );
    Ok(Json(view))
}

/// One transition as the stream's `alert` event carries it.
#[derive(Serialize)]
struct EventView<'a> {
    time: String,
    name: &'a str,
    severity: &'a str,
    from: &'a str,
    to: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
    annotations: &'a std::collections::BTreeMap<String, String>,
    value: f64,
    silenced: bool,
}

/// The stream's `alert` events after transition `after` (at most 16 at a
/// time), and the number of the last one returned.
pub(super) fn stream_events(alerts: &Alerts, after: u64) -> (Vec<axum::response::sse::Event>, u64) {
    let mut last = after;
    let events = alerts
        .recent_after(after, 16)
        .into_iter()
        .map(|r| {
            last = r.seq;
            sse(&r.event)
        })
        .collect();
    (events, last)
}

fn sse(e: &Event) -> axum::response::sse::Event {
    let get = |k: &str| e.labels.get(k).map_or("", String::as_str);
    let view = EventView {
        time: time(e.at),
        name: get("alertname"),
        severity: get("severity"),
        from: e.from.as_str(),
        to: e.to.as_str(),
        labels: &e.labels,
        annotations: &e.annotations,
        value: finite(e.value),
        silenced: e.silenced,
    };
    axum::response::sse::Event::default()
        .event("alert")
        .json_data(view)
        .unwrap_or_else(|e| {
            axum::response::sse::Event::default()
                .event("error")
                .data(e.to_string())
        })
}

/// `netmon_alerts{alertname,severity,state}` (every rule in force, each
/// state, 0 when none) and the evaluator's and receivers' counters.
pub(super) fn encode_metrics(alerts: &Alerts) -> String {
    let mut out = String::new();
    if !alerts.enabled() {
        return out;
    }
    let mut by_state = Family::gauge(
        "netmon_alerts",
        &["alertname", "severity", "state"],
        "Alerts by rule, severity and state (resolved: within the last 15 minutes).",
    );
    let tally = alerts.tally();
    for r in alerts.rules() {
        for s in [
            AlertState::Pending,
            AlertState::Firing,
            AlertState::Resolved,
        ] {
            let key = (r.name.clone(), r.severity.as_str().to_owned(), s);
            let n = tally.get(&key).copied().unwrap_or(0);
            by_state.int(&[&r.name, r.severity.as_str(), s.as_str()], n as u64);
        }
    }
    by_state.write(&mut out);
    let c = alerts.counts();
    for (name, help, v) in [
        (
            "netmon_alerts_evaluations_total",
            "Evaluations of the alert rules.",
            c.evaluations,
        ),
        (
            "netmon_alerts_refused_total",
            "Alerts refused because --alerts-max-active were held.",
            c.engine.alerts_refused,
        ),
        (
            "netmon_alerts_known_devices_evicted_total",
            "Device MACs new(device) forgot because --alerts-max-known-devices were remembered.",
            c.engine.known_evicted,
        ),
        (
            "netmon_alerts_log_failures_total",
            "Transitions the alert log in the history file could not store.",
            c.log_failures,
        ),
    ] {
        let mut f = Family::counter(name, &[], help);
        f.int(&[], v);
        f.write(&mut out);
    }
    const R: &[&str] = &["receiver", "kind"];
    let mut sent = Family::counter("netmon_alerts_sent_total", R, "Alerts a receiver accepted.");
    let mut failed = Family::counter(
        "netmon_alerts_send_failures_total",
        R,
        "Posts to a receiver that failed and were retried.",
    );
    let mut dropped = Family::counter(
        "netmon_alerts_dropped_total",
        R,
        "Alerts dropped from a receiver's full queue (--alerts-queue-capacity).",
    );
    let mut rejected = Family::counter(
        "netmon_alerts_rejected_total",
        R,
        "Alerts in batches a receiver refused (a 4xx other than 429).",
    );
    let mut queued = Family::gauge("netmon_alerts_queued", R, "Alerts waiting for a receiver.");
    for r in alerts.receivers() {
        let l = [r.url.as_str(), r.kind];
        sent.int(&l, r.sent);
        failed.int(&l, r.failed);
        dropped.int(&l, r.dropped);
        rejected.int(&l, r.rejected);
        queued.int(&l, r.queued);
    }
    for f in [sent, failed, dropped, rejected, queued] {
        f.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{
        body::Body,
        http::{Request, StatusCode},
    };
    use serde_json::{Value, json};
    use tower::ServiceExt as _;

    use super::super::{limits::Http, router, test_support};
    use crate::keys::ApiKey;

    const KEY: &str = "0123456789abcdef-test";
    const RO_KEY: &str = "dashboard-key-0123456789";

    fn app(alerts: crate::alerts::run::Alerts) -> axum::Router {
        let http = Arc::new(Http::default());
        let keys = crate::api::auth::Keyring::new(ApiKey::new(KEY).unwrap())
            .with(
                crate::api::auth::Role::ReadOnly,
                [ApiKey::new(RO_KEY).unwrap()],
            )
            .limited(&http.opts, Arc::clone(&http.counters));
        let mut state = test_support::state(Err("off".into()), http);
        state.alerts = alerts;
        router(state, Arc::new(keys))
    }

    async fn send(
        app: &axum::Router,
        method: &str,
        uri: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap();
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn silences_are_admin_only_validated_and_listed() {
        let alerts = crate::alerts::run::Alerts::for_tests(2);
        let app = app(alerts.clone());
        let (s, b) = send(&app, "GET", "/api/v1/alerts", RO_KEY, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["enabled"], true);
        assert_eq!(b["rules"], 19, "the default rules but device_gone (off)");
        assert_eq!(b["alerts"], json!([]));
        let body = json!({"rule": "cpu_high", "duration": "1h"});
        let (s, _) = send(
            &app,
            "POST",
            "/api/v1/alerts/silences",
            RO_KEY,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, b) = send(&app, "POST", "/api/v1/alerts/silences", KEY, Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["rule"], "cpu_high");
        assert_eq!(b["mac"], Value::Null);
        for (body, param) in [
            (json!({"rule": "cpu_hi", "duration": "1h"}), "rule"),
            (json!({"mac": "02:00:00:00:00", "duration": "1h"}), "mac"),
            (json!({"duration": "1h"}), "rule"),
            (json!({"rule": "cpu_high", "duration": "40d"}), "duration"),
            (json!({"rule": "cpu_high", "duration": "soon"}), "duration"),
        ] {
            let (s, b) = send(
                &app,
                "POST",
                "/api/v1/alerts/silences",
                KEY,
                Some(body.clone()),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
            assert_eq!(b["error"]["param"], param, "{body}: {b}");
        }
        let dev = json!({"rule": "new_device", "mac": "02:AA:00:00:00:01", "duration": "30m"});
        let (s, b) = send(&app, "POST", "/api/v1/alerts/silences", KEY, Some(dev)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["mac"], "02:aa:00:00:00:01");
        // The bound (2 here).
        let third = json!({"mac": "02:00:00:00:00:03", "duration": "1h"});
        let (s, b) = send(&app, "POST", "/api/v1/alerts/silences", KEY, Some(third)).await;
        assert_eq!(
            (s, &b["error"]["param"]),
            (StatusCode::BAD_REQUEST, &json!("mac")),
            "{b}"
        );
        let (_, b) = send(&app, "GET", "/api/v1/alerts", RO_KEY, None).await;
        assert_eq!(b["silences"].as_array().unwrap().len(), 2, "{b}");
        let end = json!({"rule": "new_device", "mac": "02:aa:00:00:00:01", "duration": "0s"});
        let uri = "/api/v1/alerts/silences";
        assert_eq!(
            send(&app, "POST", uri, KEY, Some(end.clone())).await.0,
            StatusCode::OK
        );
        assert_eq!(
            send(&app, "POST", uri, KEY, Some(end)).await.0,
            StatusCode::NOT_FOUND
        );
        let (_, b) = send(&app, "GET", "/api/v1/alerts", RO_KEY, None).await;
        assert_eq!(b["silences"].as_array().unwrap().len(), 1, "{b}");
        // The history needs the history file.
        let (s, _) = send(&app, "GET", "/api/v1/alerts/history?from=1h", RO_KEY, None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        let (s, b) = send(&app, "GET", "/api/v1/alerts/history?limit=0", RO_KEY, None).await;
        assert_eq!(
            (s, &b["error"]["param"]),
            (StatusCode::BAD_REQUEST, &json!("limit"))
        );
        // Metrics: every rule, each state.
        let text = super::encode_metrics(&alerts);
        assert!(
            text.contains(
                "netmon_alerts{alertname=\"cpu_high\",severity=\"warning\",state=\"firing\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("netmon_alerts_evaluations_total 0\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn transitions_are_alert_events_on_the_stream() {
        use futures_util::StreamExt as _;
        let alerts = crate::alerts::run::Alerts::for_tests(1);
        let event = |name: &str, to| crate::alerts::engine::Event {
            at: std::time::SystemTime::UNIX_EPOCH,
            from: crate::alerts::engine::State::Pending,
            to,
            labels: [
                ("alertname".to_owned(), name.to_owned()),
                ("severity".to_owned(), "warning".to_owned()),
            ]
            .into(),
            annotations: Default::default(),
            value: 91.5,
            silenced: false,
        };
        // Before the connection: not sent.
        alerts.publish(&[event("old", crate::alerts::engine::State::Firing)]);
        let app = app(alerts.clone());
        let req = Request::get("/api/v1/stream")
            .header("x-api-key", RO_KEY)
            .body(Body::empty())
            .unwrap();
        let r = app.oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        alerts.publish(&[event("cpu_high", crate::alerts::engine::State::Firing)]);
        let mut body = r.into_body().into_data_stream();
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on")
                .unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(text.starts_with("event: alert\n"), "{text}");
        let data: Value = serde_json::from_str(
            text.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("a data line"),
        )
        .unwrap();
        assert_eq!(data["name"], "cpu_high");
        assert_eq!(data["to"], "firing");
        assert_eq!(data["from"], "pending");
        assert_eq!(data["value"], 91.5);
        assert_eq!(data["time"], "1970-01-01T00:00:00.000Z");
    }
}
