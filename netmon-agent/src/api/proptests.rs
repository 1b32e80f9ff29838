//! Property tests of every parser that reads what a client or an operator
//! types: durations, intervals and sizes (`units.rs`), times (the history's
//! `from`/`to`) and MAC addresses (the `{mac}` path parameter). Each must
//! never panic on any input, accept what it documents and give back what
//! was written.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::{devices::mac_param, history::parse_time};
use crate::{
    ifaces::format_mac,
    units::{parse_duration, parse_interval, parse_size, time},
};

/// 9999-12-31T23:59:59.999Z in ms.
const LATEST_MS: u64 = 253_402_300_799_999;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn durations_never_panic(text in any::<String>()) {
        let _ = parse_duration(&text);
        let _ = parse_interval(&text);
    }

    #[test]
    fn durations_in_their_words_read_back(ms in 0u64..=10 * 365 * 86_400_000) {
        let d = Duration::from_millis(ms);
        let text = humantime::format_duration(d).to_string();
        prop_assert_eq!(parse_duration(&text), Ok(d), "{}", text);
    }

    #[test]
    fn intervals_are_100ms_to_1h(ms in 0u64..=7_200_000) {
        let text = format!("{ms}ms");
        let parsed = parse_interval(&text);
        let inside = (100..=3_600_000).contains(&ms);
        prop_assert_eq!(parsed.is_ok(), inside, "{}: {:?}", text, parsed);
        if inside {
            prop_assert_eq!(parsed.unwrap(), Duration::from_millis(ms));
        }
    }

    #[test]
    fn sizes_never_panic(text in any::<String>()) {
        let _ = parse_size(&text);
    }

    #[test]
    fn sizes_are_the_number_times_the_unit(
        n in any::<u64>(),
        (unit, mult) in prop::sample::select(vec![
            ("", 1u64), ("B", 1), ("k", 1 << 10), ("KiB", 1 << 10), ("kb", 1 << 10),
            ("M", 1 << 20), ("MiB", 1 << 20), ("G", 1 << 30), ("GiB", 1 << 30),
            ("T", 1 << 40), ("TiB", 1 << 40),
        ]),
        space in any::<bool>(),
    ) {
        let text = format!("{n}{}{unit}", if space { " " } else { "" });
        let parsed = parse_size(&text);
        match n.checked_mul(mult) {
            Some(bytes) if bytes >= 1 << 20 => prop_assert_eq!(parsed, Ok(bytes), "{}", text),
            _ => prop_assert!(parsed.is_err(), "{}: {:?}", text, parsed),
        }
    }

    #[test]
    fn times_never_panic_and_stay_in_1970_to_9999(text in any::<String>(), now_s in 0u64..=LATEST_MS / 1000) {
        let now = UNIX_EPOCH + Duration::from_secs(now_s);
        if let Ok(t) = parse_time("from", &text, now) {
            let ms = t.duration_since(UNIX_EPOCH).expect("after 1970").as_millis();
            prop_assert!(ms <= u128::from(LATEST_MS), "{}", text);
            // What the answer shows must format.
            let _ = time(t);
        }
    }

    #[test]
    fn durations_before_now_are_now_minus_them(
        ago in any::<u64>(), unit in prop::sample::select(vec!["s", "m", "h", "days", "years"]),
    ) {
        let now = SystemTime::now();
        let text = format!("{ago}{unit}");
        let parsed = parse_time("to", &text, now);
        match humantime::parse_duration(&text).ok().and_then(|d| now.checked_sub(d)) {
            Some(t) if t >= UNIX_EPOCH => prop_assert_eq!(parsed.ok(), Some(t), "{}", text),
            _ => {
                let err = parsed.expect_err("a time before 1970 was accepted");
                prop_assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
                prop_assert!(err.to_string().contains("`to`"), "{}", err);
            }
        }
    }

    #[test]
    fn rfc3339_times_read_back(ms in 0u64..=LATEST_MS) {
        let t = UNIX_EPOCH + Duration::from_millis(ms);
        let text = time(t);
        prop_assert_eq!(parse_time("from", &text, SystemTime::now()).ok(), Some(t), "{}", text);
    }

    #[test]
    fn macs_never_panic(text in any::<String>()) {
        if let Ok(mac) = mac_param(&text) {
            prop_assert_eq!(format_mac(mac), text.to_ascii_lowercase());
        }
    }

    #[test]
    fn macs_read_back_in_either_case(mac in any::<[u8; 6]>(), upper in any::<bool>()) {
        let text = format_mac(mac);
        let text = if upper { text.to_ascii_uppercase() } else { text };
        prop_assert_eq!(mac_param(&text).ok(), Some(mac), "{}", text);
    }

    #[test]
    fn near_macs_are_refused_naming_mac(mac in any::<[u8; 6]>(), cut in 0usize..17, extra in "[+ -g-z:]") {
        let text = format_mac(mac);
        let mut broken = text.clone();
        broken.insert_str(cut, &extra);
        let err = mac_param(&broken).expect_err("a malformed MAC was accepted");
        prop_assert!(err.to_string().starts_with("invalid parameter `mac`"), "{}", err);
        let mut short = text;
        short.remove(cut);
        prop_assert!(mac_param(&short).is_err(), "{}", short);
    }
}

/// Every byte percent-encoded but ASCII letters and digits.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(*b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The whole router with a key, no history and no readings yet.
fn whole_router(http: std::sync::Arc<super::limits::Http>) -> axum::Router {
    let state = super::test_support::state(Err(std::sync::Arc::from("off in this test")), http);
    let keys = super::auth::Keyring::new(crate::keys::ApiKey::new(ROUTER_KEY).unwrap());
    super::router(state, std::sync::Arc::new(keys))
}

const ROUTER_KEY: &str = "proptest-key-0123456789";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any path segment and any query string on any route is answered, and
    /// every error is the JSON body; nothing panics (a panic would be a
    /// counted 500).
    #[test]
    fn any_request_gets_an_answer_and_errors_are_json(
        route in prop::sample::select(vec![
            "/api/v1/devices/{}", "/api/v1/devices/{}/history", "/api/v1/history",
            "/api/v1/top", "/api/v1/series", "/latest", "/api/v1/flows",
            "/api/v1/devices", "/api/v1/interfaces", "/api/v1/snapshot", "/api/v1/system",
            "/api/v1/latency", "/api/v1/config", "/api/v1/limits", "/metrics", "/health",
            "/api/v1/openapi.json", "/{}",
        ]),
        segment in prop::collection::vec(any::<u8>(), 1..24),
        query in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "from", "to", "step", "series", "window", "by", "family", "limit",
                    "sort", "interface", "status", "x",
                ]),
                prop::collection::vec(any::<u8>(), 0..24),
            ),
            0..4,
        ),
    ) {
        let http = std::sync::Arc::new(super::limits::Http::default());
        let app = whole_router(std::sync::Arc::clone(&http));
        let path = route.replace("{}", &encode(&segment));
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        let uri = if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) };
        let request = axum::http::Request::get(&uri)
            .header("x-api-key", ROUTER_KEY)
            .body(axum::body::Body::empty())
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, content_type, body) = runtime.block_on(async {
            use tower::ServiceExt as _;
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let body = axum::body::to_bytes(response.into_body(), 4 << 20).await.unwrap();
            (status, content_type, body)
        });
        prop_assert_eq!(super::limits::Counters::get(&http.counters.panics), 0, "{}", uri);
        prop_assert_ne!(status.as_u16(), 500, "{}", uri);
        if !status.is_success() {
            prop_assert!(content_type.starts_with("application/json"), "{} {}: {}", uri, status, content_type);
            let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error body");
            prop_assert!(json["error"]["code"].is_string(), "{}: {}", uri, json);
        }
    }
}
