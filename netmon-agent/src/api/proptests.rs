//! Property tests of every parser that reads what a client or an operator
//! types: durations and intervals (`config.rs`), sizes (the store's
//! options), times (the history's `from`/`to`) and MAC addresses (the
//! `{mac}` path parameter). Each must never panic on any input, accept what
//! it documents and give back what was written.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::{devices::mac_param, history::parse_time, views::time};
use crate::{
    config::{parse_duration, parse_interval},
    ifaces::format_mac,
    store::parse_size,
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
