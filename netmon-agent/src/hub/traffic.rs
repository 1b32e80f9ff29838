//! A host's devices and flows in the hub's history: from the cumulative
//! totals each snapshot carries (`network.connectedDevices[].bandwidth`,
//! `flows.flows[]`) to the per-interval deltas the store keeps, under the
//! agent's own series names (`device/<iface>/<mac>`, `flow/<iface>/
//! <ingress|egress>/<proto>/<src>/<dst>`), so the store's top-talker query
//! ranks them as the agent's `/api/v1/top` does.
//!
//! A series' delta is its total minus the total of the host's previous
//! report (a total that went down was reset: all of it is new). One
//! without a previous total is new when it cannot have been counted
//! before: a device the previous report did not list, a flow first seen
//! after the previous report's interval, or anything in the first report
//! of an agent that started while this hub ran (its totals are all since
//! then). Otherwise (the first report after the hub started, a flow back
//! among the listed ones, even of an agent the hub saw start: its total
//! was taken while it was listed) only its last interval is taken, from
//! its rate. Reports older
//! than the newest taken add nothing here: the newer totals include them.

use std::collections::HashMap;

use serde_json::Value;

use crate::store::{Family, SeriesKey, Values};

/// What a host's next report is compared with.
#[derive(Clone, Default)]
pub struct Totals {
    /// The previous report's interval end (ms), if one was taken.
    end_ms: Option<u64>,
    devices: HashMap<String, [u64; 4]>,
    flows: HashMap<String, [u64; 2]>,
}

fn ms(doc: &Value, pointer: &str) -> Option<u64> {
    let t = doc.pointer(pointer)?.as_str()?;
    let t = humantime::parse_rfc3339_weak(t).ok()?;
    Some(crate::store::epoch_ms(t))
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// `now - prev` per field; all of `now` when any field went down.
fn delta<const N: usize>(prev: Option<[u64; N]>, now: [u64; N]) -> [u64; N] {
    match prev {
        Some(p) if now.iter().zip(&p).all(|(n, p)| n >= p) => {
            std::array::from_fn(|i| now[i] - p[i])
        }
        _ => now,
    }
}

impl Totals {
    /// The device and flow samples of `doc`, a report newer than every
    /// one taken before; `hub_started_ms` is when this hub started.
    pub fn samples(
        &mut self,
        doc: &Value,
        interval_ms: u32,
        hub_started_ms: u64,
    ) -> Vec<(SeriesKey, Values)> {
        let counter = |deltas: Vec<u64>| Values::Counter {
            interval_ms,
            deltas,
        };
        let end_ms = ms(doc, "/network/collectionEndTime");
        // Everything the agent counted is new to a hub that ran before it.
        let all_new = ms(doc, "/agentStartTime").is_some_and(|s| s >= hub_started_ms);
        let first = self.end_ms.is_none();
        let mut out = Vec::new();

        let mut devices = HashMap::new();
        for d in doc
            .pointer("/network/connectedDevices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let b = &d["bandwidth"];
            let now = [
                u(b, "txBytesTotal"),
                u(b, "txPacketsTotal"),
                u(b, "rxBytesTotal"),
                u(b, "rxPacketsTotal"),
            ];
            let name = SeriesKey::new(Family::Device, &[s(d, "interface"), s(d, "mac")]);
            let prev = self.devices.get(name.as_str()).copied();
            devices.insert(name.as_str().to_owned(), now);
            let d = match prev {
                Some(_) => delta(prev, now),
                None if all_new || !first => now,
                // The hub's first sight of a host running for long: its
                // totals were counted before; only what comes is new.
                None => [0; 4],
            };
            if d.iter().any(|x| *x > 0) {
                out.push((name, counter(d.to_vec())));
            }
        }
        self.devices = devices;

        let interval_s = doc
            .pointer("/flows/interval_seconds")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let mut flows = HashMap::new();
        let mut by_name: HashMap<String, [u64; 2]> = HashMap::new();
        for f in doc
            .pointer("/flows/flows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let now = [u(f, "bytes"), u(f, "packets")];
            // The flow's identity as the agent keys it (its MACs too).
            let id = format!(
                "{}/{}/{}/{}/{}/{}/{}",
                s(f, "interface"),
                s(f, "direction"),
                u(f, "protocol_number"),
                s(f, "src"),
                s(f, "dst"),
                s(f, "src_mac"),
                s(f, "dst_mac")
            );
            let prev = self.flows.get(&id).copied();
            flows.insert(id, now);
            let new_since = |end: Option<u64>| {
                ms(f, "/first_seen").is_some_and(|seen| end.is_none_or(|e| seen > e))
            };
            let d = match prev {
                Some(_) => delta(prev, now),
                // New: in the first report of an agent this hub saw
                // start, or first seen since the previous report.
                None if (first && all_new) || (!first && new_since(self.end_ms)) => now,
                // Listed again (its total was taken before it left the
                // listed ones, whatever the agent's start), or first seen
                // by this hub: its last interval, from the rate.
                None => {
                    let of = |k: &str, per: f64| {
                        let r = f.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                        (r * interval_s / per).round() as u64
                    };
                    [of("bits_per_second", 8.0), of("packets_per_second", 1.0)]
                }
            };
            if d == [0, 0] {
                continue;
            }
            let proto = u(f, "protocol_number").to_string();
            let name = SeriesKey::new(
                Family::Flow,
                &[
                    s(f, "interface"),
                    s(f, "direction"),
                    &proto,
                    s(f, "src"),
                    s(f, "dst"),
                ],
            );
            let e = by_name.entry(name.as_str().to_owned()).or_default();
            e[0] += d[0];
            e[1] += d[1];
        }
        self.flows = flows;
        let mut by_name: Vec<_> = by_name.into_iter().collect();
        by_name.sort();
        for (name, d) in by_name {
            if let Some(key) = SeriesKey::parse(&name) {
                out.push((key, counter(d.to_vec())));
            }
        }
        self.end_ms = end_ms.or(self.end_ms);
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(end: &str, started: &str, dev_tx: u64, flow: u64, first_seen: &str) -> Value {
        json!({
            "agentStartTime": started,
            "network": {"collectionEndTime": end, "connectedDevices": [
                {"interface": "eth0", "mac": "02:00:00:00:00:01", "bandwidth":
                    {"txBytesTotal": dev_tx, "txPacketsTotal": 2, "rxBytesTotal": 5, "rxPacketsTotal": 1}}]},
            "flows": {"interval_seconds": 1.0, "flows": [
                {"interface": "eth0", "direction": "egress", "protocol_number": 17,
                 "src": "10.0.0.1", "dst": "10.0.0.2", "src_mac": "a", "dst_mac": "b",
                 "bytes": flow, "packets": 3, "bits_per_second": 800.0, "packets_per_second": 1.0,
                 "first_seen": first_seen}]}
        })
    }

    fn deltas(samples: &[(SeriesKey, Values)]) -> Vec<(String, Vec<u64>)> {
        samples
            .iter()
            .map(|(k, v)| match v {
                Values::Counter { deltas, .. } => (k.as_str().to_owned(), deltas.clone()),
                Values::Gauge(_) => unreachable!(),
            })
            .collect()
    }

    const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn totals_become_deltas() {
        let mut t = Totals::default();
        // An agent that started after the hub: all of it counts.
        let d = doc(
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:01Z",
            100,
            1000,
            "2026-01-01T00:00:01.5Z",
        );
        let got = deltas(&t.samples(&d, 1000, T0));
        assert_eq!(
            got,
            [
                ("device/eth0/02:00:00:00:00:01".into(), vec![100, 2, 5, 1]),
                (
                    "flow/eth0/egress/17/10.0.0.1/10.0.0.2".into(),
                    vec![1000, 3]
                ),
            ]
        );
        let d = doc(
            "2026-01-01T00:00:03Z",
            "2026-01-01T00:00:01Z",
            150,
            1400,
            "2026-01-01T00:00:01.5Z",
        );
        let got = deltas(&t.samples(&d, 1000, T0));
        assert_eq!(
            got,
            [
                ("device/eth0/02:00:00:00:00:01".into(), vec![50, 0, 0, 0]),
                ("flow/eth0/egress/17/10.0.0.1/10.0.0.2".into(), vec![400, 0]),
            ]
        );
        // A hub that started after the agent: the first report is a
        // baseline, a flow's last interval taken from its rate.
        let mut t = Totals::default();
        let got = deltas(&t.samples(&d, 1000, T0 + 10_000));
        assert_eq!(
            got,
            [("flow/eth0/egress/17/10.0.0.1/10.0.0.2".into(), vec![100, 1])]
        );
        // A reset total counts in full.
        let d = doc(
            "2026-01-01T00:00:04Z",
            "2026-01-01T00:00:01Z",
            10,
            1400,
            "2026-01-01T00:00:01.5Z",
        );
        let got = deltas(&t.samples(&d, 1000, T0 + 10_000));
        assert_eq!(
            got,
            [("device/eth0/02:00:00:00:00:01".into(), vec![10, 2, 5, 1])]
        );
    }

    #[test]
    fn a_flow_back_among_the_listed_ones_is_not_counted_again() {
        // An agent that started after the hub lists a flow, leaves it out
        // of one report (it fell out of the top --push-flows) and lists it
        // again with the same total: only its last interval, from its
        // rate, is new, never the whole total again.
        let mut t = Totals::default();
        let started = "2026-01-01T00:00:01Z";
        let seen = "2026-01-01T00:00:01.5Z";
        let d = doc("2026-01-01T00:00:02Z", started, 100, 1000, seen);
        let got = deltas(&t.samples(&d, 1000, T0));
        assert_eq!(got[1].1, vec![1000, 3]);
        let mut d = doc("2026-01-01T00:00:03Z", started, 100, 1000, seen);
        d["flows"]["flows"] = json!([]);
        assert!(deltas(&t.samples(&d, 1000, T0)).is_empty());
        let d = doc("2026-01-01T00:00:04Z", started, 100, 1000, seen);
        let got = deltas(&t.samples(&d, 1000, T0));
        assert_eq!(
            got,
            [("flow/eth0/egress/17/10.0.0.1/10.0.0.2".into(), vec![100, 1])]
        );
        // A flow first seen after the previous report is new in full.
        let d = doc(
            "2026-01-01T00:00:05Z",
            started,
            100,
            700,
            "2026-01-01T00:00:04.5Z",
        );
        let mut t2 = t.clone();
        t2.flows.clear();
        let got = deltas(&t2.samples(&d, 1000, T0));
        assert_eq!(
            got,
            [("flow/eth0/egress/17/10.0.0.1/10.0.0.2".into(), vec![700, 3])]
        );
    }
}
