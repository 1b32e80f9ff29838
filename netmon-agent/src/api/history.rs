//! The history endpoints, answered from the redb store:
//!
//! - `GET /latest?limit=N`: the newest stored intervals, newest first, each
//!   with the host's figures and every watched interface's totals (the
//!   original platform's endpoint, kept for its users);
//! - `GET /api/v1/history?series=S&from=&to=&step=`: one series over a range;
//! - `GET /api/v1/devices/{mac}/history?from=&to=&step=[&interface=]`;
//! - `GET /api/v1/top?window=1h&by=bytes[&family=device|flow][&limit=N]`;
//! - `GET /api/v1/series[?family=F]`: the series names there are.
//!
//! `from` and `to` are RFC 3339 times or durations before now (`1h`,
//! `30m`); `to` defaults to now and `from` to an hour before `to`. `step` is
//! `raw`, `1m` or `1h`; without it the tier is the finest that still holds
//! `from`, coarsened until the answer holds at most `--history-max-points`
//! points a series; an explicit `step` whose answer would hold more is a 400
//! naming `step` (the tiers are the history's own downsampling, so the
//! server never invents a step the store does not keep, and a client that
//! named one learns why it cannot have it). Times before 1970 or after 9999
//! are a 400 naming the parameter. Store calls run on the blocking pool, at
//! most `--history-max-queries` at once (more get 503 with `Retry-After`),
//! beside the store's maintenance (which never holds the file exclusively:
//! see `store/retention.rs`). A store that is off, or busy re-opening its
//! file after an I/O error, answers 503 with the reason.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    error::{ApiError, ApiPath, ApiQuery},
    limits::{Counters, Http},
};
use crate::{
    ifaces::format_mac,
    store::{self, Family, FieldValue, History, Point, Store, StoreError, Tier, epoch_ms},
    units::time,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/latest", get(latest))
        .route("/api/v1/history", get(history))
        .route("/api/v1/devices/{mac}/history", get(device_history))
        .route("/api/v1/top", get(top))
        .route("/api/v1/series", get(series))
}

/// The store, or a 503 saying why there is none.
fn store(state: &AppState) -> Result<Arc<Store>, ApiError> {
    state
        .store
        .clone()
        .map_err(|why| ApiError::Unavailable(format!("history is off: {why}")))
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Busy => ApiError::Unavailable(e.to_string()),
        StoreError::UnknownSeries(name) => {
            ApiError::NotFound(format!("no series named `{name}` in the history"))
        }
        other => ApiError::internal(other),
    }
}

/// Runs `f` on the store on the blocking pool, in one of the
/// `--history-max-queries` slots (503 when none is free).
pub(super) async fn blocking<T: Send + 'static>(
    http: &Http,
    st: Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let slot = http.store_slot()?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(&st)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(store_error)
}

/// The latest time an answer can show: 9999-12-31T23:59:59.999Z.
const LATEST_MS: u64 = 253_402_300_799_999;

/// A time parameter: RFC 3339, `now`, or a duration before now; between
/// 1970 and the end of 9999.
pub(super) fn parse_time(param: &str, text: &str, now: SystemTime) -> Result<SystemTime, ApiError> {
    let t = parse_any_time(param, text, now)?;
    let in_range = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .is_ok_and(|d| d.as_millis() <= u128::from(LATEST_MS));
    if !in_range {
        return Err(ApiError::bad_request(
            param,
            format!("{text:?} is outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59.999Z"),
        ));
    }
    Ok(t)
}

fn parse_any_time(param: &str, text: &str, now: SystemTime) -> Result<SystemTime, ApiError> {
    if text == "now" {
        return Ok(now);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(text) {
        return now
            .checked_sub(d)
            .ok_or_else(|| ApiError::bad_request(param, format!("{text} reaches before 1970")));
    }
    Err(ApiError::bad_request(
        param,
        format!(
            "{text:?} is neither an RFC 3339 time (2026-11-23T12:00:00Z), `now`, nor a duration before now (1h, 30m)"
        ),
    ))
}

fn parse_step(text: Option<&str>) -> Result<Option<Tier>, ApiError> {
    match text {
        None | Some("auto") => Ok(None),
        Some("raw") => Ok(Some(Tier::Raw)),
        Some("1m") => Ok(Some(Tier::Minute)),
        Some("1h") => Ok(Some(Tier::Hour)),
        Some(other) => Err(ApiError::bad_request(
            "step",
            format!("{other:?} is not a step (raw, 1m, 1h or auto)"),
        )),
    }
}

/// `[from, to)` in ms, checked.
pub(super) fn range(from: Option<&str>, to: Option<&str>) -> Result<(u64, u64, u64), ApiError> {
    let now = SystemTime::now();
    let to_t = to.map_or(Ok(now), |t| parse_time("to", t, now))?;
    let from_t = match from {
        Some(f) => parse_time("from", f, now)?,
        None => to_t
            .checked_sub(Duration::from_secs(3600))
            .filter(|t| *t >= SystemTime::UNIX_EPOCH)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    };
    let (from_ms, to_ms) = (epoch_ms(from_t), epoch_ms(to_t));
    if from_ms >= to_ms {
        return Err(ApiError::bad_request(
            "from",
            format!("from ({}) must be before to ({})", time(from_t), time(to_t)),
        ));
    }
    Ok((from_ms, to_ms, epoch_ms(now)))
}

/// The tier to query `[from_ms, to_ms)` at: `asked`, or without one the
/// finest that holds `from_ms` and answers at most `--history-max-points`
/// points; a 400 naming `step` (or `from`, when even hours are too many)
/// when that cannot be.
fn pick_tier(
    http: &Http,
    st: &Store,
    asked: Option<Tier>,
    (from_ms, to_ms, now_ms): (u64, u64, u64),
) -> Result<Tier, ApiError> {
    let max = u64::from(http.opts.history_max_points);
    let raw_ms = store::as_ms(http.raw_step).max(1);
    let points = |tier: Tier| (to_ms - from_ms).div_ceil(tier.step_ms().unwrap_or(raw_ms)) + 1;
    let too_many = |param: &str, tier: Tier| {
        Counters::bump(&http.counters.history_too_many_points);
        ApiError::bad_request(
            param,
            format!(
                "the range at step {} is about {} points a series; at most {max} are answered \
                 (--history-max-points): ask for a coarser step or a shorter range",
                step_name(tier),
                points(tier)
            ),
        )
    };
    if let Some(tier) = asked {
        return if points(tier) <= max {
            Ok(tier)
        } else {
            Err(too_many("step", tier))
        };
    }
    let finest = Tier::for_range(from_ms, now_ms, st.retention());
    Tier::ALL
        .into_iter()
        .skip_while(|t| *t != finest)
        .find(|t| points(*t) <= max)
        .ok_or_else(|| too_many("from", Tier::Hour))
}

fn step_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Raw => "raw",
        Tier::Minute => "1m",
        Tier::Hour => "1h",
    }
}

/// A 400 when a query answered more points than the limit (raw points
/// recorded at a shorter interval than today's).
fn check_points(http: &Http, h: &History) -> Result<(), ApiError> {
    let max = http.opts.history_max_points as usize;
    if h.points.len() <= max {
        return Ok(());
    }
    Counters::bump(&http.counters.history_too_many_points);
    Err(ApiError::bad_request(
        "step",
        format!(
            "the range holds {} points of {} at step {}; at most {max} are answered \
             (--history-max-points): ask for a coarser step or a shorter range",
            h.points.len(),
            h.series,
            step_name(h.tier)
        ),
    ))
}

fn ms_time(ms: u64) -> String {
    time(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

#[derive(Serialize, utoipa::ToSchema)]
struct PointView {
    time: String,
    #[serde(flatten)]
    point: Point,
}

#[derive(Serialize, utoipa::ToSchema)]
struct HistoryView {
    series: String,
    family: Family,
    kind: store::Kind,
    tier: Tier,
    #[serde(skip_serializing_if = "Option::is_none")]
    step_seconds: Option<f64>,
    from: String,
    to: String,
    /// Oldest first.
    points: Vec<PointView>,
    /// Stored values that could not be decoded, skipped.
    skipped: u32,
}

fn view(h: History, from_ms: u64, to_ms: u64) -> HistoryView {
    HistoryView {
        series: h.series,
        family: h.family,
        kind: h.kind,
        tier: h.tier,
        step_seconds: h.step_seconds,
        from: ms_time(from_ms),
        to: ms_time(to_ms),
        points: h
            .points
            .into_iter()
            .map(|p| PointView {
                time: ms_time(p.at_ms),
                point: p,
            })
            .collect(),
        skipped: h.skipped,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    /// A series name, as listed by `/api/v1/series`.
    #[param(
        pattern = "^(system|(interface|link|temperature|latency|device|flow)/[0-9a-z:./-]{1,48})$"
    )]
    series: String,
    /// `now`, an RFC 3339 time or a duration before now (`1h`, `30m`); an hour
    /// before `to` when not given. Between 1970 and 9999.
    #[param(
        pattern = "^(now|[1-9][0-9]{0,3}(ms|s|m|h|d|days)|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?Z)$"
    )]
    from: Option<String>,
    /// `now`, an RFC 3339 time or a duration before now; now when not given.
    #[param(
        pattern = "^(now|[1-9][0-9]{0,3}(ms|s|m|h|d|days)|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?Z)$"
    )]
    to: Option<String>,
    /// The tier: `raw`, `1m`, `1h`, or `auto` (the default: the finest
    /// tier that still holds `from`).
    #[param(pattern = "^(auto|raw|1m|1h)$")]
    step: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/history", operation_id = "getHistory", tag = "history", params(HistoryParams),
    responses((status = 200, description = "One series over the range.", body = HistoryView)))]
async fn history(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryView>, ApiError> {
    let (from_ms, to_ms, now_ms) = range(p.from.as_deref(), p.to.as_deref())?;
    let tier = parse_step(p.step.as_deref())?;
    if store::SeriesKey::parse(&p.series).is_none() {
        return Err(ApiError::bad_request(
            "series",
            format!("{:?} is not a series name (see /api/v1/series)", p.series),
        ));
    }
    let st = store(&state)?;
    let tier = pick_tier(&state.http, &st, tier, (from_ms, to_ms, now_ms))?;
    let h = blocking(&state.http, st, move |s| {
        s.query(&p.series, from_ms, to_ms, Some(tier), now_ms)
    })
    .await?;
    check_points(&state.http, &h)?;
    Ok(Json(view(h, from_ms, to_ms)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeviceParams {
    /// Only the series of this interface.
    interface: Option<String>,
    /// `now`, an RFC 3339 time or a duration before now (`1h`, `30m`); an hour
    /// before `to` when not given. Between 1970 and 9999.
    #[param(
        pattern = "^(now|[1-9][0-9]{0,3}(ms|s|m|h|d|days)|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?Z)$"
    )]
    from: Option<String>,
    /// `now`, an RFC 3339 time or a duration before now; now when not given.
    #[param(
        pattern = "^(now|[1-9][0-9]{0,3}(ms|s|m|h|d|days)|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?Z)$"
    )]
    to: Option<String>,
    /// The tier: `raw`, `1m`, `1h`, or `auto` (the default: the finest
    /// tier that still holds `from`).
    #[param(pattern = "^(auto|raw|1m|1h)$")]
    step: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeviceHistory {
    mac: String,
    /// One series per interface the device was seen on.
    series: Vec<HistoryView>,
}

#[utoipa::path(get, path = "/api/v1/devices/{mac}/history", operation_id = "getDeviceHistory", tag = "history",
    params(("mac" = String, Path, description = "The MAC address, `aa:bb:cc:dd:ee:ff`, any case.", pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"), DeviceParams),
    responses((status = 200, description = "The device's stored series over the range.", body = DeviceHistory)))]
async fn device_history(
    State(state): State<AppState>,
    ApiPath(mac): ApiPath<String>,
    ApiQuery(p): ApiQuery<DeviceParams>,
) -> Result<Json<DeviceHistory>, ApiError> {
    let wanted = super::devices::mac_param(&mac)?;
    let (from_ms, to_ms, now_ms) = range(p.from.as_deref(), p.to.as_deref())?;
    let tier = parse_step(p.step.as_deref())?;
    let text = format_mac(wanted);
    let st = store(&state)?;
    let tier = pick_tier(&state.http, &st, tier, (from_ms, to_ms, now_ms))?;
    let histories = blocking(&state.http, st, move |s| {
        let suffix = format!("/{text}");
        let names: Vec<String> = s
            .series(Some(Family::Device))?
            .into_iter()
            .filter(|n| n.ends_with(&suffix))
            .filter(|n| {
                p.interface
                    .as_ref()
                    .is_none_or(|i| *n == format!("device/{i}/{text}"))
            })
            .collect();
        names
            .iter()
            .map(|n| s.query(n, from_ms, to_ms, Some(tier), now_ms))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    for h in &histories {
        check_points(&state.http, h)?;
    }
    if histories.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no history for {}",
            format_mac(wanted)
        )));
    }
    Ok(Json(DeviceHistory {
        mac: format_mac(wanted),
        series: histories
            .into_iter()
            .map(|h| view(h, from_ms, to_ms))
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TopParams {
    /// How far back from now to rank (`5m`, `1h`, `7days`); 1h when not
    /// given.
    #[param(pattern = "^[1-9][0-9]{0,3}(s|m|h|d|days)$")]
    window: Option<String>,
    /// `bytes` (the default), `packets`, or one of the family's fields
    /// (devices: `tx_bytes`, `tx_packets`, `rx_bytes`, `rx_packets`).
    #[param(pattern = "^(bytes|packets|tx_bytes|tx_packets|rx_bytes|rx_packets)$")]
    by: Option<String>,
    /// Rank devices (the default) or flows.
    #[param(pattern = "^(device|flow)$")]
    family: Option<String>,
    /// How many to return (10 when not given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Top {
    family: Family,
    by: &'static str,
    from: String,
    to: String,
    top: Vec<store::Ranked>,
}

#[utoipa::path(get, path = "/api/v1/top", operation_id = "getTop", tag = "history", params(TopParams),
    responses((status = 200, description = "The top devices or flows over the window.", body = Top)))]
async fn top(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<TopParams>,
) -> Result<Json<Top>, ApiError> {
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
            ));
        }
    };
    // `bytes`/`packets` rank what a device sent (a talker); the fields
    // themselves may be named too.
    let by = p.by.as_deref().unwrap_or("bytes");
    let field = top_field(family, by)?;
    let limit = p.limit.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            format!("{limit} is outside 1..=1000"),
        ));
    }
    let now = SystemTime::now();
    let (to_ms, now_ms) = (epoch_ms(now), epoch_ms(now));
    let from_ms = to_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
    let st = store(&state)?;
    let ranked = blocking(&state.http, st, move |s| {
        s.top(family, field, from_ms, to_ms, limit, now_ms)
    })
    .await?;
    Ok(Json(Top {
        family,
        by: field,
        from: ms_time(from_ms),
        to: ms_time(to_ms),
        top: ranked,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SeriesParams {
    /// Only the series of this family.
    // The document's pattern lists the registry's families (set by
    // `openapi::Sources`).
    #[param(pattern = "^(device|flow|interface|link|system|temperature|latency)$")]
    family: Option<String>,
}

/// The body of `/api/v1/series`.
#[derive(Serialize, utoipa::ToSchema)]
struct SeriesList {
    /// Series names, sorted.
    series: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/series", operation_id = "listSeries", tag = "history", params(SeriesParams),
    responses((status = 200, description = "The stored series names, under `series`.", body = SeriesList)))]
async fn series(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<SeriesParams>,
) -> Result<Json<SeriesList>, ApiError> {
    let family = match p.family.as_deref() {
        None => None,
        Some(f) => Some(Family::all().find(|x| x.as_str() == f).ok_or_else(|| {
            ApiError::bad_request(
                "family",
                format!(
                    "{f:?} is not a family ({})",
                    Family::all()
                        .map(Family::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?),
    };
    let st = store(&state)?;
    let names = blocking(&state.http, st, move |s| s.series(family)).await?;
    Ok(Json(SeriesList { series: names }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LatestParams {
    /// How many intervals to return (10 when not given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct LatestRow {
    time: String,
    interval_seconds: f64,
    /// Samples stored for the interval.
    samples: u32,
    /// The system collector's figures, when it had a new reading then.
    #[schema(value_type = Option<BTreeMap<String, FieldValue>>)]
    system: Option<BTreeMap<&'static str, FieldValue>>,
    /// Each watched interface's frames counted in the interval.
    #[schema(value_type = BTreeMap<String, BTreeMap<String, FieldValue>>)]
    interfaces: BTreeMap<String, BTreeMap<&'static str, FieldValue>>,
}

/// The body of `/latest`.
#[derive(Serialize, utoipa::ToSchema)]
struct LatestList {
    /// Newest first.
    latest: Vec<LatestRow>,
}

#[utoipa::path(get, path = "/latest", operation_id = "latest", tag = "history", params(LatestParams),
    responses((status = 200, description = "The newest stored intervals, newest first, under `latest`.", body = LatestList)))]
async fn latest(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<LatestParams>,
) -> Result<Json<LatestList>, ApiError> {
    let limit = p.limit.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            format!("{limit} is outside 1..=1000"),
        ));
    }
    let st = store(&state)?;
    let rows = blocking(&state.http, st, move |s| {
        let rows = s.latest(limit)?;
        let (Some(newest), Some(oldest)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        let (from, to, now) = (oldest.at_ms, newest.at_ms + 1, epoch_ms(SystemTime::now()));
        let by_time = |h: History| -> BTreeMap<u64, BTreeMap<&'static str, FieldValue>> {
            h.points.into_iter().map(|p| (p.at_ms, p.values)).collect()
        };
        let system = match s.query("system", from, to, Some(Tier::Raw), now) {
            Ok(h) => by_time(h),
            Err(StoreError::UnknownSeries(_)) => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let mut interfaces = Vec::new();
        for name in s.series(Some(Family::Interface))? {
            let h = s.query(&name, from, to, Some(Tier::Raw), now)?;
            let iface = name.strip_prefix("interface/").unwrap_or(&name).to_owned();
            interfaces.push((iface, by_time(h)));
        }
        Ok(rows
            .into_iter()
            .map(|r| LatestRow {
                time: ms_time(r.at_ms),
                interval_seconds: f64::from(r.length_ms) / 1000.0,
                samples: r.samples,
                system: system.get(&r.at_ms).cloned(),
                interfaces: interfaces
                    .iter()
                    .filter_map(|(i, pts)| pts.get(&r.at_ms).map(|v| (i.clone(), v.clone())))
                    .collect(),
            })
            .collect())
    })
    .await?;
    Ok(Json(LatestList { latest: rows }))
}

/// The store field `by` names for `family`, as `/api/v1/top` (and the
/// hub's per-host top) reads it: `bytes` and `packets` rank what a device
/// sent (a talker); the fields themselves may be named too.
pub(crate) fn top_field(family: Family, by: &str) -> Result<&'static str, ApiError> {
    Ok(match (family, by) {
        (Family::Device, "bytes") => "tx_bytes",
        (Family::Device, "packets") => "tx_packets",
        (Family::Flow, "bytes") => "bytes",
        (Family::Flow, "packets") => "packets",
        (f, named) => f
            .fields()
            .iter()
            .find(|x| **x == named)
            .copied()
            .ok_or_else(|| {
                ApiError::bad_request(
                    "by",
                    format!(
                        "{named:?}: rank by bytes, packets or one of {}",
                        f.fields().join(", ")
                    ),
                )
            })?,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::{Arc, Mutex},
    };

    use serde_json::Value;

    use super::*;
    use crate::{
        api::{auth::Keyring, router},
        keys::ApiKey,
        store::{Interval, Retention, SeriesKey, Values},
    };

    const KEY: &str = "history-test-key-0123456789";
    const STEP_MS: u64 = 10_000;

    /// Interval `i` of `n` device series, [`STEP_MS`] apart from `t0`: series
    /// `d` sent `i + 1` bytes in it.
    fn interval(t0: u64, i: u64, n: usize) -> Interval {
        Interval {
            at_ms: t0 + i * STEP_MS,
            length_ms: STEP_MS as u32,
            samples: (0..n)
                .map(|d| {
                    (
                        SeriesKey::new(Family::Device, &["eth0", &format!("{d:03}")]),
                        Values::Counter {
                            interval_ms: STEP_MS as u32,
                            deltas: vec![i + 1, 1, 2 * (i + 1), 2],
                        },
                    )
                })
                .collect(),
        }
    }

    /// Serves the whole API for `store` on a real socket on loopback, on a
    /// runtime of its own; the runtime ends with the returned value.
    fn serve(store: Arc<Store>) -> (SocketAddr, tokio::runtime::Runtime) {
        serve_with(store, Arc::default())
    }

    /// [`serve`] under the limits of `http`.
    fn serve_with(store: Arc<Store>, http: Arc<Http>) -> (SocketAddr, tokio::runtime::Runtime) {
        let state = crate::api::test_support::state(Ok(store), Arc::clone(&http));
        let app = router(state, Arc::new(Keyring::new(ApiKey::new(KEY).unwrap())));
        crate::api::test_support::serve_on_loopback(app, http)
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
        let (status, _, body) = get_with_headers(addr, path);
        (status, body)
    }

    /// [`get`] with the `Retry-After` header.
    fn get_with_headers(addr: SocketAddr, path: &str) -> (u16, Option<String>, Value) {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        let mut reply = ureq::Agent::new_with_config(config)
            .get(format!("http://{addr}{path}"))
            .header("X-API-KEY", KEY)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = reply.status().as_u16();
        let retry = reply
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = reply.body_mut().read_to_string().unwrap();
        (
            status,
            retry,
            serde_json::from_str(&body).unwrap_or(Value::Null),
        )
    }

    /// A store holding `n` intervals of 2 device series, the newest ending
    /// now; with the time of the first.
    fn small_store(dir: &std::path::Path, n: u64) -> (Arc<Store>, u64) {
        let store = Arc::new(Store::open(&dir.join("h.redb"), Retention::default()).unwrap());
        let now = epoch_ms(SystemTime::now());
        let t0 = now - n * STEP_MS;
        for i in 0..n {
            store.write(&interval(t0, i, 2)).unwrap();
        }
        (store, t0)
    }

    /// With every `--history-max-queries` slot taken, each history endpoint
    /// answers a JSON 503 with `Retry-After`, counted; once a slot is free
    /// the same request is answered.
    #[test]
    fn history_queries_over_the_cap_get_503_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = small_store(dir.path(), 30);
        let http = Arc::new(Http::new(
            crate::api::limits::Options {
                history_max_queries: 2,
                ..Default::default()
            },
            Duration::from_millis(STEP_MS),
        ));
        let (addr, _runtime) = serve_with(store, Arc::clone(&http));
        let paths = [
            "/api/v1/history?series=device/eth0/000",
            "/api/v1/devices/02:00:00:00:00:01/history",
            "/api/v1/top",
            "/api/v1/series",
            "/latest",
        ];
        let held = http.hold_store_slots();
        for path in paths {
            let (status, retry, body) = get_with_headers(addr, path);
            assert_eq!(status, 503, "{path}: {body}");
            assert_eq!(retry.as_deref(), Some("1"), "{path}");
            assert_eq!(body["error"]["code"], "unavailable", "{path}: {body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("--history-max-queries"), "{message}");
        }
        assert_eq!(Counters::get(&http.counters.history_refused), 5);
        drop(held);
        let (status, body) = get(addr, paths[0]);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["points"].as_array().unwrap().len(), 30, "{body}");
    }

    /// An explicit step whose answer would exceed `--history-max-points` is a
    /// 400 naming `step` and the limit; without a step the tier is coarsened
    /// until it fits.
    #[test]
    fn history_point_cap_refuses_an_explicit_step_and_coarsens_auto() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = small_store(dir.path(), 400);
        let http = Arc::new(Http::new(
            crate::api::limits::Options {
                history_max_points: 100,
                ..Default::default()
            },
            Duration::from_millis(STEP_MS),
        ));
        let (addr, _runtime) = serve_with(store, Arc::clone(&http));
        // An hour at 10 s is 361 raw points.
        let (status, body) = get(
            addr,
            "/api/v1/history?series=device/eth0/001&step=raw&from=1h",
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], "step", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("361 points") && message.contains("at most 100"),
            "{message}"
        );
        let (status, body) = get(
            addr,
            "/api/v1/devices/00:00:00:00:00:01/history?step=raw&from=1h",
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], "step", "{body}");
        // Without a step: minutes (61 points at most).
        let (status, body) = get(addr, "/api/v1/history?series=device/eth0/001&from=1h");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tier"], "minute", "{body}");
        assert!(body["points"].as_array().unwrap().len() <= 100, "{body}");
        // Ten minutes of raw points fit.
        let (status, body) = get(addr, "/api/v1/history?series=device/eth0/001&from=10m");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tier"], "raw", "{body}");
        // A range even hours cannot answer in 100 points names `from`.
        let (status, body) = get(addr, "/api/v1/history?series=device/eth0/001&from=300h");
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], "from", "{body}");
        assert_eq!(Counters::get(&http.counters.history_too_many_points), 3);
    }

    /// Times before 1970 or after 9999, however written, are a JSON 400
    /// naming the parameter (they used to panic while formatting).
    #[test]
    fn times_outside_1970_to_9999_are_400_naming_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = small_store(dir.path(), 3);
        let (addr, _runtime) = serve(store);
        for (path, param) in [
            ("/api/v1/history?series=system&to=100years", "to"),
            ("/api/v1/history?series=system&from=100years", "from"),
            (
                "/api/v1/devices/02:00:00:00:00:01/history?from=100years&to=99years",
                "to",
            ),
            (
                "/api/v1/history?series=system&to=1969-12-31T23:59:59Z",
                "to",
            ),
            (
                "/api/v1/history?series=system&from=10000-01-01T00:00:00Z",
                "from",
            ),
            (
                "/api/v1/history?series=system&to=99999999999999999years",
                "to",
            ),
        ] {
            let (status, body) = get(addr, path);
            assert_eq!(status, 400, "{path}: {body}");
            assert_eq!(body["error"]["param"], param, "{path}: {body}");
        }
        // The edges themselves are fine (a range at the epoch's start).
        let (status, body) = get(
            addr,
            "/api/v1/history?series=device/eth0/000&to=1970-01-01T00:00:01Z",
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["from"], "1970-01-01T00:00:00.000Z", "{body}");
    }

    /// Maintenance over a file that the old maintenance would have
    /// compacted (more than 10 % over budget after the budget step), with a
    /// query over real HTTP at every step of the run, inside each of its
    /// write transactions and where compaction ran: every query is answered
    /// 200 with exactly what was written.
    #[test]
    fn history_queries_are_answered_while_maintenance_runs() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 1 << 20;
        let retention = Retention {
            size_budget: budget,
            ..Retention::default()
        };
        let store = Arc::new(Store::open(&dir.path().join("h.redb"), retention).unwrap());
        // 40 minutes of 100 series: about twice the budget. They start on a
        // 6-hour boundary (a block of the 1-minute tier's chunks, and of
        // the raw tier's 30-minute ones) in the past, so how much of them
        // maintenance seals, and so the file's size, does not depend on the
        // time of day the test runs (from 40 minutes before a 6-hour
        // boundary on, the data used to straddle it, and the budget did
        // not bite).
        let n = 240;
        let t0 = {
            const SIX_HOURS: u64 = 6 * 3_600_000;
            let now = epoch_ms(SystemTime::now());
            now - now % SIX_HOURS - SIX_HOURS
        };
        for i in 0..n {
            store.write(&interval(t0, i, 100)).unwrap();
        }
        let now = t0 + n * STEP_MS;
        assert!(store.usage().unwrap().used_bytes > budget);
        let (addr, _runtime) = serve(Arc::clone(&store));

        // The last five minutes of one series, per minute: the budget
        // deletes the raw samples first (they are folded), the minutes stay.
        let first = n - 30;
        let path = format!(
            "/api/v1/history?series=device/eth0/042&step=1m&from={}&to={}",
            ms_time(t0 + first * STEP_MS),
            ms_time(now),
        );
        let check = move |when: &str| {
            let (status, body) = get(addr, &path);
            assert_eq!(status, 200, "{when}: {body}");
            let points = body["points"].as_array().unwrap();
            let got: Vec<(u64, u64, u64)> = points
                .iter()
                .map(|p| {
                    (
                        p["at_ms"].as_u64().unwrap(),
                        p["values"]["tx_bytes"].as_u64().unwrap(),
                        p["values"]["rx_bytes"].as_u64().unwrap(),
                    )
                })
                .collect();
            let per_minute = 60_000 / STEP_MS;
            let want: Vec<(u64, u64, u64)> = (first / per_minute..n / per_minute)
                .map(|m| {
                    let tx: u64 = (m * per_minute..(m + 1) * per_minute).map(|i| i + 1).sum();
                    (t0 + m * 60_000, tx, 2 * tx)
                })
                .collect();
            assert_eq!(got, want, "{when}");
        };
        check("before maintenance");
        let steps = Arc::new(Mutex::new(Vec::new()));
        {
            let steps = Arc::clone(&steps);
            let check = check.clone();
            store.on_maintenance_step(move |step| {
                check(step);
                steps.lock().unwrap().push(step);
            });
        }
        let report = store.maintain(now).unwrap();
        let usage = report.usage.unwrap();
        assert!(report.over_budget > 0, "{report:?}");
        assert!(usage.used_bytes <= budget, "{report:?}");
        // The old maintenance compacted here, holding the file: queries
        // answered 503 until it was done.
        assert!(usage.file_bytes > budget + budget / 10, "{report:?}");
        let steps = steps.lock().unwrap().clone();
        for step in ["fold", "expire", "budget", "end"] {
            assert!(steps.contains(&step), "no query during {step}: {steps:?}");
        }
        check("after maintenance");
    }
}
