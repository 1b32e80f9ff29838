//! The prebuilt answers are byte for byte what building them per request
//! gives, and are rebuilt when any of their inputs changes.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use netmon_common::{Counter, MacKey, direction};
use tower::ServiceExt as _;

use super::super::{AppState, auth::Keyring, devices, labels, limits, router, test_support};
use crate::{
    collect::{
        CollectorName, Cycle, Reading, State,
        discovery::{self, DeviceReport, inventory},
    },
    ifaces::{Subnets, format_mac},
    keys::ApiKey,
    snapshot::Snapshot,
    store::{Store, labels::Label},
    traffic::{MapCounts, Traffic},
};

const KEY: &str = "0123456789abcdef-test";

/// A snapshot in which devices `0..n` on ifindex 1 or 2 each sent a frame.
fn snapshot(n: u8, bytes: u64) -> Snapshot {
    let mut traffic = Traffic::new(Duration::from_secs(300));
    let reading = MapCounts {
        macs: (0..n)
            .map(|i| {
                (
                    MacKey {
                        ifindex: 1 + u32::from(i % 2),
                        direction: direction::EGRESS,
                        _pad0: 0,
                        src: [2, 0, 0, 0, 0, i],
                        dst: [2, 0, 0, 0, 0, 0xee],
                        _pad1: [0; 2],
                    },
                    Counter {
                        bytes: bytes + u64::from(i),
                        packets: 1,
                    },
                )
            })
            .collect(),
        mac_capacity: 4096,
        flow_capacity: 65536,
        ..MapCounts::default()
    };
    traffic.update(
        Instant::now(),
        SystemTime::now(),
        &reading,
        &Subnets::default(),
    );
    Snapshot {
        updated: Some(SystemTime::now()),
        interval: Duration::from_secs(1),
        devices: traffic.devices.values().cloned().collect(),
        device_table: traffic.device_table,
        names: [(1, "eth0".to_owned()), (2, "eth\"1".to_owned())].into(),
        ..Snapshot::default()
    }
}

/// Discovery's reading: devices `0..n` on ifindex 1, every third gone.
fn discovery_state(n: u8) -> State {
    let devices = (0..n)
        .map(|i| DeviceReport {
            interface: "eth0".into(),
            ifindex: 1,
            mac: format_mac([2, 0, 0, 0, 0, i]),
            mac_bytes: [2, 0, 0, 0, 0, i],
            vendor: None,
            locally_administered: true,
            hostname: Some(format!("host-{i}")),
            addresses: vec![inventory::Address {
                ip: IpAddr::V4(Ipv4Addr::new(10, 9, 0, i)),
                last_seen: SystemTime::now(),
            }],
            first_seen: SystemTime::now(),
            last_seen: SystemTime::now(),
            status: if i % 3 == 0 {
                inventory::Status::Gone
            } else {
                inventory::Status::Active
            },
            sources: vec![inventory::SeenBy::Arp],
        })
        .collect();
    State::Ready(Arc::new(Reading {
        collection: Cycle {
            started: SystemTime::now(),
            finished: SystemTime::now(),
            wall: Duration::from_millis(20),
            cpu: Duration::from_millis(5),
            cycles: 3,
            cpu_total: Duration::from_millis(15),
            failures: 0,
        },
        report: discovery::Report {
            devices,
            ..discovery::Report::default()
        },
    }))
}

/// The answer as the handler built it on each request before: merged,
/// filtered, labelled, then serialized through a `serde_json::Value`.
fn per_request(state: &AppState, interface: Option<&str>, status: Option<&str>) -> Vec<u8> {
    let s = state.snapshot.get();
    let reading = super::super::telemetry::latest::<discovery::Discovery>(&state.telemetry);
    let mut views: Vec<_> = devices::merge(&s, reading.as_deref().ok())
        .into_iter()
        .filter(|d| interface.is_none_or(|i| i == d.interface))
        .filter(|d| status.is_none_or(|st| d.status == devices::parse_status(st).ok()))
        .collect();
    labels::apply(&mut views, &labels::current(state));
    devices::reference_body(&s, &reading, views)
}

async fn get(state: &AppState, uri: &str) -> Vec<u8> {
    let keys = Keyring::new(ApiKey::new(KEY).unwrap());
    let app = router(state.clone(), Arc::new(keys));
    let req = Request::get(uri)
        .header("x-api-key", KEY)
        .body(Body::empty())
        .unwrap();
    let r = app.oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{uri}");
    axum::body::to_bytes(r.into_body(), 1 << 24)
        .await
        .unwrap()
        .to_vec()
}

async fn check_devices(state: &AppState) {
    for (uri, interface, status) in [
        ("/api/v1/devices", None, None),
        ("/api/v1/devices?interface=eth0", Some("eth0"), None),
        ("/api/v1/devices?interface=eth%221", Some("eth\"1"), None),
        ("/api/v1/devices?status=gone", None, Some("gone")),
        ("/api/v1/devices?status=idle", None, Some("idle")),
        (
            "/api/v1/devices?interface=eth0&status=active",
            Some("eth0"),
            Some("active"),
        ),
        ("/api/v1/devices?interface=none", Some("none"), None),
    ] {
        let got = get(state, uri).await;
        let want = per_request(state, interface, status);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn the_devices_answer_is_what_a_request_built_and_follows_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("h.redb"), Default::default()).unwrap());
    let http = Arc::new(limits::Http::new(
        limits::Options::default(),
        Duration::from_secs(1),
    ));
    let state = test_support::state(Ok(Arc::clone(&store)), http);
    // Nothing yet, then a drain, then discovery, then a label, then a new
    // drain: each answer as a request would have built it.
    check_devices(&state).await;
    state.snapshot.set(snapshot(40, 100));
    check_devices(&state).await;
    state
        .telemetry
        .slot(CollectorName::Discovery)
        .set(State::Pending);
    check_devices(&state).await;
    state
        .telemetry
        .slot(CollectorName::Discovery)
        .set(discovery_state(50));
    check_devices(&state).await;
    let label = Label {
        name: Some("printer".into()),
        note: Some("2nd \"floor\"".into()),
        updated_ms: 1,
    };
    store
        .set_label(&format_mac([2, 0, 0, 0, 0, 4]), Some(&label), 10)
        .unwrap();
    check_devices(&state).await;
    // As the drain does: built first, then published.
    let next = Arc::new(snapshot(60, 5000));
    super::Prebuilt::warm(&state, &next);
    check_devices(&state).await;
    state.snapshot.publish(next);
    check_devices(&state).await;
}

#[test]
fn the_metrics_parts_concatenate_to_the_whole_exposition() {
    let http = Arc::new(limits::Http::new(
        limits::Options::default(),
        Duration::from_secs(1),
    ));
    let state = test_support::state(Err("off".into()), http);
    let check = |names: &crate::metrics::Names| {
        let snapshot = state.snapshot.get();
        let states: Vec<_> = state.telemetry.states().collect();
        let got = state
            .prebuilt
            .metrics(&snapshot, &states, &state.metrics.limits, names.clone());
        let want =
            crate::metrics::encode(&snapshot, &state.telemetry, &state.metrics.limits, names);
        assert_eq!(String::from_utf8_lossy(&got), want);
        want
    };
    let empty = BTreeMap::new();
    let no_names = labels::names(&empty);
    check(&no_names);
    state.snapshot.set(snapshot(30, 100));
    let first = check(&no_names);
    assert_eq!(check(&no_names), first, "the same inputs, the same text");
    state
        .telemetry
        .slot(CollectorName::Discovery)
        .set(discovery_state(30));
    let with_discovery = check(&no_names);
    assert_ne!(with_discovery, first);
    let mut names = no_names.clone();
    names.insert([2, 0, 0, 0, 0, 29], "named".into());
    assert!(check(&names).contains("name=\"named\""));
    state.snapshot.set(snapshot(30, 900));
    assert!(check(&names).contains(" 929\n"));
    state
        .telemetry
        .slot(CollectorName::Discovery)
        .set(State::Disabled);
    check(&names);
}

#[tokio::test]
async fn the_interfaces_and_flows_answers_follow_the_snapshot() {
    let http = Arc::new(limits::Http::new(
        limits::Options::default(),
        Duration::from_secs(1),
    ));
    let state = test_support::state(Err("off".into()), http);
    let check = |state: AppState| async move {
        let s = state.snapshot.get();
        let stats = state.telemetry.slot(CollectorName::Interfaces).state();
        assert_eq!(
            get(&state, "/api/v1/interfaces").await,
            super::super::interfaces::body(&s, &stats).unwrap()
        );
        assert_eq!(
            get(&state, "/api/v1/flows").await,
            super::super::flows::default_body(&s).unwrap()
        );
        get(&state, "/api/v1/interfaces").await
    };
    let before = check(state.clone()).await;
    state.snapshot.set(snapshot(10, 100));
    let after = check(state.clone()).await;
    assert_ne!(before, after, "a new snapshot, a new answer");
    state
        .telemetry
        .slot(CollectorName::Interfaces)
        .set(State::Pending);
    let pending = check(state.clone()).await;
    assert_ne!(after, pending, "the collector's state is in the answer");
}
