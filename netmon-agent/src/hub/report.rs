//! What agents send the hub, read into one [`Report`]: netmon's (and seed
//! 001's) `realtimeSnapshot`, gzip-compressed or plain, and seed 000's
//! `/ingest` body.
//!
//! Seed 000's body, field for field as its server validates it: `host`
//! (1 to 128 characters), `cpu_pct`, `mem_pct`, `disk_pct` (0 to 100),
//! `rx_kbps`, `tx_kbps` (at least 0) and `ping_ms` (optional, at least 0);
//! other fields are ignored, as there. Its answer is `{"ingested": true,
//! "ts": "<RFC 3339>"}`.
//!
//! From a snapshot the hub takes: `serverId` (the host), `snapshotTime`
//! (the sample's time, so a queued snapshot delivered late lands at its own
//! time), `metrics.cpu.percent`, `metrics.memory`, the fullest filesystem
//! of `metrics.disk`, the sum of `network.interfaces[]`' rates (bits/s),
//! `network.connectedDevices` (all, and those `active`), and `alerts` when
//! the document carries them. A figure missing or of the wrong type is
//! unknown (null), never 0; a body without `messageType:
//! "realtimeSnapshot"` and a `serverId` is refused.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tokens;
use crate::store::FieldValue;

/// Which body it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Snapshot,
    Seed000,
}

/// The figures the hub keeps of a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_percent: Option<f64>,
    /// The fullest filesystem's `percentUsed`.
    pub disk_percent: Option<f64>,
    /// Bits per second, summed over the interfaces.
    pub rx_bps: Option<f64>,
    pub tx_bps: Option<f64>,
    pub devices: Option<u64>,
    pub devices_active: Option<u64>,
    pub ping_ms: Option<f64>,
}

impl Figures {
    /// The `host` series' values, in the family's field order; NaN where
    /// unknown.
    pub fn values(&self) -> Vec<f64> {
        let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let u = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
        vec![
            f(self.cpu_percent),
            u(self.memory_used_bytes),
            u(self.memory_total_bytes),
            f(self.memory_percent),
            f(self.disk_percent),
            f(self.rx_bps),
            f(self.tx_bps),
            u(self.devices),
            u(self.devices_active),
            f(self.ping_ms.map(|ms| ms / 1000.0)),
        ]
    }
}

impl Figures {
    /// The figures of a stored `host` sample (the family's fields by name;
    /// a field not stored or unavailable is unknown).
    pub fn from_stored(values: &std::collections::BTreeMap<&'static str, FieldValue>) -> Figures {
        let f = |k: &str| match values.get(k) {
            Some(FieldValue::Stats { last, .. }) if last.is_finite() => Some(*last),
            _ => None,
        };
        let u = |k: &str| f(k).map(|v| v as u64);
        Figures {
            cpu_percent: f("cpu_percent"),
            memory_used_bytes: u("memory_used_bytes"),
            memory_total_bytes: u("memory_total_bytes"),
            memory_percent: f("memory_percent"),
            disk_percent: f("disk_percent"),
            rx_bps: f("rx_bits_per_second"),
            tx_bps: f("tx_bits_per_second"),
            devices: u("devices"),
            devices_active: u("devices_active"),
            ping_ms: f("ping_seconds").map(|s| s * 1000.0),
        }
    }
}

/// One body, read.
#[derive(Clone, Debug)]
pub struct Report {
    pub kind: Kind,
    pub host: String,
    /// The sample's time, ms since the epoch.
    pub at_ms: u64,
    pub figures: Figures,
    /// Active alerts, when the document carries them.
    pub alerts: Option<Value>,
    /// The document as received.
    pub doc: Value,
}

/// Why a body was refused (a 400 naming `field`).
#[derive(Debug, PartialEq)]
pub struct BadBody {
    pub field: String,
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> BadBody {
    BadBody {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(k))
}

fn num(v: &Value, keys: &[&str]) -> Option<f64> {
    path(v, keys)
        .and_then(Value::as_f64)
        .filter(|x| x.is_finite())
}

/// A snapshot (`/api/v1/ingest`) received at `now`.
pub fn snapshot(doc: Value, now: SystemTime) -> Result<Report, BadBody> {
    if !doc.is_object() {
        return Err(bad("body", "expected a JSON object (a realtimeSnapshot)"));
    }
    match doc.get("messageType").and_then(Value::as_str) {
        Some("realtimeSnapshot") => {}
        Some(other) => {
            return Err(bad(
                "messageType",
                format!("{other:?} is not \"realtimeSnapshot\""),
            ));
        }
        None => return Err(bad("messageType", "missing; expected \"realtimeSnapshot\"")),
    }
    let host = doc
        .get("serverId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("serverId", "missing or not a string"))?
        .to_owned();
    tokens::check_name(&host).map_err(|e| bad("serverId", e.to_string()))?;
    let at_ms = match doc.get("snapshotTime").and_then(Value::as_str) {
        Some(t) => humantime::parse_rfc3339_weak(t).map(ms).map_err(|e| {
            bad(
                "snapshotTime",
                format!("{t:?} is not an RFC 3339 time: {e}"),
            )
        })?,
        None => ms(now),
    };
    let m = |k: &[&str]| num(&doc, k);
    let disk_percent = path(&doc, &["metrics", "disk"])
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .filter_map(|fs| num(fs, &["percentUsed"]))
                .reduce(f64::max)
        });
    let ifaces = path(&doc, &["network", "interfaces"]).and_then(Value::as_array);
    let rate = |k: &str| ifaces.map(|l| l.iter().filter_map(|i| num(i, &[k])).sum::<f64>());
    let devices = path(&doc, &["network", "connectedDevices"]).and_then(Value::as_array);
    let figures = Figures {
        cpu_percent: m(&["metrics", "cpu", "percent"]),
        memory_used_bytes: m(&["metrics", "memory", "usedBytes"]).map(|v| v as u64),
        memory_total_bytes: m(&["metrics", "memory", "totalBytes"]).map(|v| v as u64),
        memory_percent: m(&["metrics", "memory", "percentUsed"]),
        disk_percent,
        rx_bps: rate("rxRateBps"),
        tx_bps: rate("txRateBps"),
        devices: devices.map(|d| d.len() as u64),
        devices_active: devices.map(|d| {
            d.iter()
                .filter(|x| x.get("status").and_then(Value::as_str) == Some("active"))
                .count() as u64
        }),
        ping_ms: None,
    };
    let alerts = doc.get("alerts").cloned();
    Ok(Report {
        kind: Kind::Snapshot,
        host,
        at_ms,
        figures,
        alerts,
        doc,
    })
}

/// Seed 000's `/ingest` body.
#[derive(Deserialize)]
struct Seed000 {
    host: String,
    cpu_pct: f64,
    mem_pct: f64,
    disk_pct: f64,
    rx_kbps: f64,
    tx_kbps: f64,
    #[serde(default)]
    ping_ms: Option<f64>,
}

/// A seed-000 body received at `now` (its time: seed 000's server stamps
/// the arrival).
pub fn seed000(doc: Value, now: SystemTime) -> Result<Report, BadBody> {
    let b: Seed000 = serde_json::from_value(doc.clone())
        .map_err(|e| bad("body", format!("not seed 000's /ingest body: {e}")))?;
    tokens::check_name(&b.host).map_err(|e| bad("host", e.to_string()))?;
    for (name, v) in [
        ("cpu_pct", b.cpu_pct),
        ("mem_pct", b.mem_pct),
        ("disk_pct", b.disk_pct),
    ] {
        if !(0.0..=100.0).contains(&v) {
            return Err(bad(name, format!("{v} is not between 0 and 100")));
        }
    }
    for (name, v) in [
        ("rx_kbps", Some(b.rx_kbps)),
        ("tx_kbps", Some(b.tx_kbps)),
        ("ping_ms", b.ping_ms),
    ] {
        if let Some(v) = v
            && !(v >= 0.0 && v.is_finite())
        {
            return Err(bad(name, format!("{v} is negative")));
        }
    }
    Ok(Report {
        kind: Kind::Seed000,
        host: b.host,
        at_ms: ms(now),
        figures: Figures {
            cpu_percent: Some(b.cpu_pct),
            memory_percent: Some(b.mem_pct),
            disk_percent: Some(b.disk_pct),
            rx_bps: Some(b.rx_kbps * 1000.0),
            tx_bps: Some(b.tx_kbps * 1000.0),
            ping_ms: b.ping_ms,
            ..Figures::default()
        },
        alerts: None,
        doc,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn snapshot_figures() {
        let doc = json!({
            "messageType": "realtimeSnapshot",
            "serverId": "web01",
            "snapshotTime": "2024-01-01T12:00:00.000Z",
            "metrics": {
                "cpu": {"percent": 25.5},
                "memory": {"totalBytes": 8, "usedBytes": 4, "freeBytes": 4, "percentUsed": 50.0},
                "disk": [{"percentUsed": 10.0}, {"percentUsed": 70.5}, {"percentUsed": null}]
            },
            "network": {
                "interfaces": [{"rxRateBps": 1000, "txRateBps": 5}, {"rxRateBps": 24, "txRateBps": null}],
                "connectedDevices": [{"status": "active"}, {"status": "idle"}]
            }
        });
        let r = snapshot(doc, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(r.host, "web01");
        assert_eq!(r.at_ms, 1_704_110_400_000);
        let f = &r.figures;
        assert_eq!(f.cpu_percent, Some(25.5));
        assert_eq!(
            (f.memory_used_bytes, f.memory_total_bytes),
            (Some(4), Some(8))
        );
        assert_eq!(f.disk_percent, Some(70.5));
        assert_eq!((f.rx_bps, f.tx_bps), (Some(1024.0), Some(5.0)));
        assert_eq!((f.devices, f.devices_active), (Some(2), Some(1)));
        assert_eq!(f.values().len(), crate::store::Family::Host.fields().len());
        // Back from the store's field names, as a restarted hub reads them.
        let stored = crate::store::Family::Host
            .fields()
            .iter()
            .zip(f.values())
            .map(|(k, v)| {
                let v = if v.is_nan() {
                    FieldValue::Unavailable
                } else {
                    FieldValue::Stats {
                        min: v,
                        avg: v,
                        max: v,
                        last: v,
                    }
                };
                (*k, v)
            })
            .collect();
        assert_eq!(&Figures::from_stored(&stored), f);
    }

    #[test]
    fn bad_snapshots_name_the_field() {
        let t = SystemTime::UNIX_EPOCH;
        let field = |d: Value| snapshot(d, t).unwrap_err().field;
        assert_eq!(field(json!([1])), "body");
        assert_eq!(field(json!({"serverId": "a"})), "messageType");
        assert_eq!(
            field(json!({"messageType": "x", "serverId": "a"})),
            "messageType"
        );
        assert_eq!(
            field(json!({"messageType": "realtimeSnapshot"})),
            "serverId"
        );
        assert_eq!(
            field(json!({"messageType": "realtimeSnapshot", "serverId": "../x"})),
            "serverId"
        );
        assert_eq!(
            field(
                json!({"messageType": "realtimeSnapshot", "serverId": "a", "snapshotTime": "soon"})
            ),
            "snapshotTime"
        );
    }

    #[test]
    fn seed000_body() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5);
        let ok = json!({"host": "pi", "cpu_pct": 1.5, "mem_pct": 2.0, "disk_pct": 3.0,
            "rx_kbps": 4.0, "tx_kbps": 5.0, "ping_ms": 6.0, "extra": 1});
        let r = seed000(ok, t).unwrap();
        assert_eq!((r.host.as_str(), r.at_ms), ("pi", 5000));
        assert_eq!(r.figures.rx_bps, Some(4000.0));
        assert_eq!(r.figures.values()[9], 0.006);
        let field = |d: Value| seed000(d, t).unwrap_err().field;
        assert_eq!(field(json!({"host": "pi"})), "body");
        assert_eq!(
            field(
                json!({"host": "pi", "cpu_pct": 101, "mem_pct": 2, "disk_pct": 3, "rx_kbps": 4, "tx_kbps": 5})
            ),
            "cpu_pct"
        );
        assert_eq!(
            field(
                json!({"host": "pi", "cpu_pct": 1, "mem_pct": 2, "disk_pct": 3, "rx_kbps": -4, "tx_kbps": 5})
            ),
            "rx_kbps"
        );
    }
}
