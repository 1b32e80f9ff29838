//! `PUT /api/v1/devices/{mac}/label` (admin key): a device's name and note,
//! kept in the history file (`store/labels.rs`) and shown wherever the
//! device is: `name` and `note` in `/api/v1/devices` (and `/{mac}`),
//! `deviceName` in `/api/v1/snapshot`, the `name` label of the device's
//! series in `/metrics` (each instead of the hostname), and the dashboard.
//!
//! The body is `{"name": "...", "note": "..."}`; a name is at most
//! [`MAX_NAME`] characters, a note [`MAX_NOTE`], neither with control
//! characters (a note may hold line breaks and tabs). Both empty or null
//! remove the label. At most `--max-labels` MACs have one: a label for one
//! more is a 400 naming `mac` (counted), while changing or removing one
//! always works. Without a history file the route answers 503 saying why.

use std::collections::{BTreeMap, HashMap};

use axum::{
    Json, Router,
    extract::{State, rejection::JsonRejection},
    middleware,
    routing::put,
};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    auth::{self, Role},
    error::{ApiError, ApiPath, ApiQuery},
    limits::Counters,
    views::DeviceView,
};
use crate::{
    ifaces::{format_mac, parse_mac},
    store::{
        epoch_ms,
        labels::{Label, Outcome},
    },
    units::time,
};

/// Longest name, in characters.
pub const MAX_NAME: usize = 64;
/// Longest note, in characters.
pub const MAX_NOTE: usize = 1000;

/// The route, behind the admin role (the caller adds the key check).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/devices/{mac}/label", put(set))
        .route_layer(middleware::from_fn_with_state(
            Role::Admin,
            auth::require_role,
        ))
}

/// The body of the `PUT`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    /// Shown instead of the hostname; empty or null for none.
    #[schema(max_length = 64)]
    name: Option<String>,
    /// Free text; empty or null for none.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

/// A device's label as stored.
#[derive(Serialize, utoipa::ToSchema)]
struct LabelView {
    mac: String,
    name: Option<String>,
    note: Option<String>,
    /// When it was set; null once removed.
    updated: Option<String>,
}

/// No parameters; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `text` trimmed, or `None` when empty; a 400 naming `param` when it is
/// longer than `max` characters or holds control characters (other than
/// line breaks and tabs where `multiline`).
fn clean(
    param: &str,
    text: Option<String>,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let text = text.trim();
    let chars = text.chars().count();
    if chars > max {
        return Err(ApiError::bad_request(
            param,
            format!("{chars} characters; at most {max} are kept"),
        ));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\t');
    if let Some(c) = text.chars().find(|c| c.is_control() && !allowed(*c)) {
        return Err(ApiError::bad_request(
            param,
            format!("holds the control character U+{:04X}", u32::from(c)),
        ));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

#[utoipa::path(put, path = "/api/v1/devices/{mac}/label", operation_id = "setDeviceLabel", tag = "traffic",
    params(("mac" = String, Path, description = "The MAC address, `aa:bb:cc:dd:ee:ff`, any case.", pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")),
    request_body = LabelBody,
    responses((status = 200, description = "The label as stored (name and note null once removed).", body = LabelView)))]
async fn set(
    State(state): State<AppState>,
    ApiPath(mac): ApiPath<String>,
    ApiQuery(Empty {}): ApiQuery<Empty>,
    body: Result<Json<LabelBody>, JsonRejection>,
) -> Result<Json<LabelView>, ApiError> {
    let mac = format_mac(super::error::mac_param(&mac)?);
    let Json(body) = body?;
    let name = clean("name", body.name, MAX_NAME, false)?;
    let note = clean("note", body.note, MAX_NOTE, true)?;
    let store = state.store.clone().map_err(|why| {
        ApiError::Unavailable(format!(
            "history is off ({why}); labels are kept in the history file"
        ))
    })?;
    let now = std::time::SystemTime::now();
    let label = (name.is_some() || note.is_some()).then(|| Label {
        name,
        note,
        updated_ms: epoch_ms(now),
    });
    let max = state.http.opts.max_labels as usize;
    let (key, stored) = (mac.clone(), label.clone());
    let outcome = tokio::task::spawn_blocking(move || store.set_label(&key, stored.as_ref(), max))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            crate::store::StoreError::Busy => ApiError::Unavailable(e.to_string()),
            other => ApiError::internal(other),
        })?;
    if outcome == Outcome::Full {
        Counters::bump(&state.http.counters.labels_refused);
        return Err(ApiError::bad_request(
            "mac",
            format!("{max} devices have a label, the most --max-labels allows; remove one first"),
        ));
    }
    tracing::info!(%mac, removed = label.is_none(), "Device label set.");
    Ok(Json(match label {
        Some(l) => LabelView {
            mac,
            name: l.name,
            note: l.note,
            updated: Some(time(now)),
        },
        None => LabelView {
            mac,
            name: None,
            note: None,
            updated: None,
        },
    }))
}

/// The labels now, by MAC text; none when the history is off or cannot be
/// read (a small table: read on each request, so every answer is current).
pub(super) fn current(state: &AppState) -> BTreeMap<String, Label> {
    let Ok(store) = &state.store else {
        return BTreeMap::new();
    };
    store.labels().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "Device labels not read.");
        BTreeMap::new()
    })
}

/// Sets `name` and `note` of each view that has a label.
pub(super) fn apply(views: &mut [DeviceView], labels: &BTreeMap<String, Label>) {
    for v in views {
        if let Some(l) = labels.get(&v.mac) {
            v.name.clone_from(&l.name);
            v.note.clone_from(&l.note);
        }
    }
}

/// The labels' names by MAC, for `/metrics`.
pub(super) fn names(labels: &BTreeMap<String, Label>) -> HashMap<[u8; 6], String> {
    labels
        .iter()
        .filter_map(|(mac, l)| Some((parse_mac(mac)?, l.name.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{
        body::Body,
        http::{Request, StatusCode},
    };
    use tower::ServiceExt as _;

    use super::super::{auth::Keyring, limits, router, test_support};
    use super::*;
    use crate::{keys::ApiKey, store::Store};

    const KEY: &str = "0123456789abcdef-test";
    const RO_KEY: &str = "dashboard-key-0123456789";
    const MAC: &str = "02:00:00:00:00:0A";

    async fn put(
        store: crate::api::StoreSlot,
        key: &str,
        mac: &str,
        body: &str,
        max: u32,
    ) -> (StatusCode, serde_json::Value) {
        let opts = limits::Options {
            max_labels: max,
            ..Default::default()
        };
        let http = Arc::new(limits::Http::new(opts, std::time::Duration::from_secs(1)));
        let keys = Keyring::new(ApiKey::new(KEY).unwrap())
            .with(Role::ReadOnly, [ApiKey::new(RO_KEY).unwrap()]);
        let app = router(test_support::state(store, http), Arc::new(keys));
        let req = Request::put(format!("/api/v1/devices/{mac}/label"))
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let r = app.oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_admin_key_labels_a_device_in_the_history_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(
                &dir.path().join("h.redb"),
                crate::store::Retention::default(),
            )
            .unwrap(),
        );
        let slot = || Ok(Arc::clone(&store));
        let body = r#"{"name": " printer ", "note": "2nd floor"}"#;
        let (status, json) = put(slot(), KEY, MAC, body, 1).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["mac"], "02:00:00:00:00:0a");
        assert_eq!(json["name"], "printer");
        assert_eq!(
            store.labels().unwrap()["02:00:00:00:00:0a"].note.as_deref(),
            Some("2nd floor")
        );
        // Read-only keys may not; a full table refuses a new MAC.
        let (status, _) = put(slot(), RO_KEY, MAC, body, 1).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, json) = put(slot(), KEY, "02:00:00:00:00:0b", body, 1).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["param"], "mac", "{json}");
        // Bad input names its field; empty removes.
        let (status, json) = put(slot(), KEY, MAC, r#"{"name": "a\u0000b"}"#, 1).await;
        assert_eq!(
            (status, &json["error"]["param"]),
            (StatusCode::BAD_REQUEST, &"name".into())
        );
        let (status, json) = put(slot(), KEY, MAC, r#"{"nick": "x"}"#, 1).await;
        assert_eq!(
            (status, &json["error"]["param"]),
            (StatusCode::BAD_REQUEST, &"body".into())
        );
        let (status, json) = put(slot(), KEY, "printer", body, 1).await;
        assert_eq!(
            (status, &json["error"]["param"]),
            (StatusCode::BAD_REQUEST, &"mac".into())
        );
        let (status, json) = put(slot(), KEY, MAC, r#"{"name": "", "note": null}"#, 1).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert!(
            json["name"].is_null() && json["updated"].is_null(),
            "{json}"
        );
        assert!(store.labels().unwrap().is_empty());
        // Without a history file: 503 saying why.
        let (status, json) = put(Err("--no-history".into()), KEY, MAC, body, 1).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--no-history"),
            "{json}"
        );
    }

    #[test]
    fn names_and_notes_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            clean("name", Some("  printer ".into()), MAX_NAME, false).unwrap(),
            Some("printer".into())
        );
        assert_eq!(
            clean("name", Some("   ".into()), MAX_NAME, false).unwrap(),
            None
        );
        assert_eq!(clean("name", None, MAX_NAME, false).unwrap(), None);
        let long = "é".repeat(MAX_NAME + 1);
        let err = clean("name", Some(long), MAX_NAME, false).unwrap_err();
        assert!(
            matches!(&err, ApiError::BadRequest { param, .. } if param == "name"),
            "{err}"
        );
        assert!(clean("name", Some("é".repeat(MAX_NAME)), MAX_NAME, false).is_ok());
        assert!(clean("name", Some("a\nb".into()), MAX_NAME, false).is_err());
        assert_eq!(
            clean("note", Some("line 1\nline\t2".into()), MAX_NOTE, true).unwrap(),
            Some("line 1\nline\t2".into())
        );
        let err = clean("note", Some("bell\u{7}".into()), MAX_NOTE, true).unwrap_err();
        assert!(err.to_string().contains("U+0007"), "{err}");
    }
}
