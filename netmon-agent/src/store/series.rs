//! Series identity and sample encoding.
//!
//! A series is named `<family>/<labels>` (e.g. `device/eth0/02:00:00:00:00:01`,
//! `flow/eth0/ingress/6/10.0.0.1/10.0.0.2`, `system`); the family fixes its kind
//! and fields ([`Family::fields`]). The file stores each name once, in the
//! series table, and samples under the name's `u32` id.
//!
//! Two kinds, and what each tier keeps of them:
//! - **counters** (bytes, packets, errors, drops): a raw sample is the
//!   interval's length and each field's *delta* over it; an aggregate keeps
//!   the sum of the deltas and the time covered (so a rate is `sum /
//!   covered`). A counter with nothing to add in an interval has no sample:
//!   absence means zero.
//! - **gauges** (CPU %, memory, load, temperatures, RTT, loss): a raw sample
//!   is each field's value, NaN where the source was unavailable; an
//!   aggregate keeps per field min / avg (sum and count) / max / last over
//!   the available values, and "no value" when none was.
//!
//! Encodings are fixed-width little-endian:
//! - raw counter: `interval_ms: u32`, then `n × u64`;
//! - raw gauge: `n × f64`;
//! - aggregate counter: `covered_ms: u64`, `samples: u32`, then `n × u64`;
//! - aggregate gauge: `samples: u32`, then `n × (count: u32, min, sum, max,
//!   last: f64)`.
//!
//! Decoding checks every length, so a damaged or foreign value is reported
//! (and skipped by the caller), never misread.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::collect::{self, SeriesFamily, SeriesKind};

/// Counter or gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Counter,
    Gauge,
}

/// What a series measures; the first component of its name. The traffic
/// core's families are the store's own ([`Family::Device`],
/// [`Family::Flow`], [`Family::Interface`]); the collectors declare theirs
/// ([`crate::collect::Collector::SERIES`]) and the store knows them
/// through the registry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Family(&'static SeriesFamily);

/// The traffic core's families.
const TRAFFIC: &[SeriesFamily] = &[
    SeriesFamily {
        name: "device",
        kind: SeriesKind::Counter,
        fields: &["tx_bytes", "tx_packets", "rx_bytes", "rx_packets"],
    },
    SeriesFamily {
        name: "flow",
        kind: SeriesKind::Counter,
        fields: &["bytes", "packets"],
    },
    SeriesFamily {
        name: "interface",
        kind: SeriesKind::Counter,
        fields: &["rx_bytes", "rx_packets", "tx_bytes", "tx_packets"],
    },
];

/// The hub's family (`netmon-agent hub`): one host's pushed snapshot,
/// summed up. The hub keeps each host in a history file of its own, so the
/// series has no labels: `host`.
const HUB: &[SeriesFamily] = &[SeriesFamily {
    name: "host",
    kind: SeriesKind::Gauge,
    fields: &[
        "cpu_percent",
        "memory_used_bytes",
        "memory_total_bytes",
        "memory_percent",
        "disk_percent",
        "rx_bits_per_second",
        "tx_bits_per_second",
        "devices",
        "devices_active",
        "ping_seconds",
    ],
}];

// The names of an enum's variants, which the families were.
#[allow(non_upper_case_globals)]
impl Family {
    /// One MAC on one interface (eBPF counters): `device/<iface>/<mac>`.
    pub const Device: Family = Family(&TRAFFIC[0]);
    /// One IP conversation (eBPF counters), only the interval's top N by
    /// bytes: `flow/<iface>/<ingress|egress>/<proto>/<src>/<dst>`.
    pub const Flow: Family = Family(&TRAFFIC[1]);
    /// A watched interface's frames (eBPF counters): `interface/<iface>`.
    pub const Interface: Family = Family(&TRAFFIC[2]);
    /// An interface's kernel statistics (interfaces collector): `link/<iface>`.
    pub const Link: Family = Family(&collect::interfaces::SERIES[0]);
    /// The host (system collector): `system`.
    pub const System: Family = Family(&collect::system::SERIES[0]);
    /// One sensor (system collector): `temperature/<label>`.
    pub const Temperature: Family = Family(&collect::system::SERIES[1]);
    /// One probe target (latency collector): `latency/<address>`.
    pub const Latency: Family = Family(&collect::latency::SERIES[0]);
    /// One host's pushed snapshot, in a hub's history file of that host.
    pub const Host: Family = Family(&HUB[0]);
}

impl Family {
    /// Every family: the traffic core's, the hub's, then each registered
    /// source's.
    pub fn all() -> impl Iterator<Item = Family> {
        TRAFFIC
            .iter()
            .chain(HUB)
            .chain(collect::SOURCES.iter().flat_map(|s| s.series()))
            .map(Family)
    }

    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    pub fn kind(self) -> Kind {
        match self.0.kind {
            SeriesKind::Counter => Kind::Counter,
            SeriesKind::Gauge => Kind::Gauge,
        }
    }

    /// The fields of every sample of this family, in stored order.
    pub fn fields(self) -> &'static [&'static str] {
        self.0.fields
    }

    /// The family of a series name, from its first component.
    pub fn of(name: &str) -> Option<Family> {
        let head = name.split('/').next().unwrap_or(name);
        Family::all().find(|f| f.as_str() == head)
    }
}

impl From<&'static SeriesFamily> for Family {
    fn from(f: &'static SeriesFamily) -> Self {
        Family(f)
    }
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for Family {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some(
                "What a series measures; the first component of its name.",
            ))
            .enum_values(Some(Family::all().map(Family::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for Family {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Family")
    }
}

/// A series' canonical name; its family is always known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey(String);

impl SeriesKey {
    /// `family/label/label...`; labels are used as given (they may contain
    /// anything but must not be empty to be told apart).
    pub fn new(family: Family, labels: &[&str]) -> SeriesKey {
        let mut s = family.as_str().to_owned();
        for l in labels {
            s.push('/');
            s.push_str(l);
        }
        SeriesKey(s)
    }

    /// A stored or requested name; `None` unless its family is known.
    pub fn parse(name: &str) -> Option<SeriesKey> {
        Family::of(name).map(|_| SeriesKey(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn family(&self) -> Family {
        // Invariant: constructed only by `new` or `parse`.
        Family::of(&self.0).unwrap_or(Family::System)
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One interval's values of one series.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Deltas over an interval of `interval_ms`.
    Counter { interval_ms: u32, deltas: Vec<u64> },
    /// Values; NaN where unavailable.
    Gauge(Vec<f64>),
}

impl Values {
    pub fn kind(&self) -> Kind {
        match self {
            Values::Counter { .. } => Kind::Counter,
            Values::Gauge(_) => Kind::Gauge,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Counter { deltas, .. } => deltas.len(),
            Values::Gauge(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Values::Counter {
                interval_ms,
                deltas,
            } => {
                let mut b = Vec::with_capacity(4 + 8 * deltas.len());
                b.extend_from_slice(&interval_ms.to_le_bytes());
                for d in deltas {
                    b.extend_from_slice(&d.to_le_bytes());
                }
                b
            }
            Values::Gauge(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Decodes a raw sample of a series of `kind` with `n` fields.
    pub fn decode(kind: Kind, n: usize, b: &[u8]) -> Result<Values, DecodeError> {
        match kind {
            Kind::Counter => {
                check_len(b, 4 + 8 * n)?;
                Ok(Values::Counter {
                    interval_ms: u32_at(b, 0),
                    deltas: (0..n).map(|i| u64_at(b, 4 + 8 * i)).collect(),
                })
            }
            Kind::Gauge => {
                check_len(b, 8 * n)?;
                Ok(Values::Gauge((0..n).map(|i| f64_at(b, 8 * i)).collect()))
            }
        }
    }
}

/// A stored value whose length does not fit its series.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored value is {got} bytes, expected {expected}")]
pub struct DecodeError {
    pub got: usize,
    pub expected: usize,
}

fn check_len(b: &[u8], expected: usize) -> Result<(), DecodeError> {
    if b.len() == expected {
        Ok(())
    } else {
        Err(DecodeError {
            got: b.len(),
            expected,
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn f64_at(b: &[u8], at: usize) -> f64 {
    f64::from_bits(u64_at(b, at))
}

/// One gauge field over a bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaugeField {
    /// Samples in which the field had a value.
    pub count: u32,
    pub min: f64,
    pub sum: f64,
    pub max: f64,
    pub last: f64,
}

impl GaugeField {
    const EMPTY: GaugeField = GaugeField {
        count: 0,
        min: f64::NAN,
        sum: 0.0,
        max: f64::NAN,
        last: f64::NAN,
    };

    fn merge(&mut self, o: &GaugeField) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        // Merged in time order: the later bucket's last wins.
        self.last = o.last;
    }
}

/// A bucket (a minute, an hour) of one series, or a raw sample seen as a
/// bucket of one.
#[derive(Clone, Debug, PartialEq)]
pub enum Agg {
    Counter {
        /// Sum of the covered intervals' lengths.
        covered_ms: u64,
        samples: u32,
        sums: Vec<u64>,
    },
    Gauge {
        samples: u32,
        fields: Vec<GaugeField>,
    },
}

impl Agg {
    /// A raw sample as a bucket of one.
    pub fn of(v: &Values) -> Agg {
        match v {
            Values::Counter {
                interval_ms,
                deltas,
            } => Agg::Counter {
                covered_ms: u64::from(*interval_ms),
                samples: 1,
                sums: deltas.clone(),
            },
            Values::Gauge(vals) => Agg::Gauge {
                samples: 1,
                fields: vals
                    .iter()
                    .map(|&x| {
                        if x.is_nan() {
                            GaugeField::EMPTY
                        } else {
                            GaugeField {
                                count: 1,
                                min: x,
                                sum: x,
                                max: x,
                                last: x,
                            }
                        }
                    })
                    .collect(),
            },
        }
    }

    /// Folds a later bucket of the same series into this one. Buckets of a
    /// different kind or width (a damaged file) are ignored; returns whether
    /// `o` was merged.
    pub fn merge(&mut self, o: &Agg) -> bool {
        match (self, o) {
            (
                Agg::Counter {
                    covered_ms,
                    samples,
                    sums,
                },
                Agg::Counter {
                    covered_ms: c2,
                    samples: s2,
                    sums: o2,
                },
            ) if sums.len() == o2.len() => {
                *covered_ms += c2;
                *samples += s2;
                for (a, b) in sums.iter_mut().zip(o2) {
                    *a = a.saturating_add(*b);
                }
                true
            }
            (
                Agg::Gauge { samples, fields },
                Agg::Gauge {
                    samples: s2,
                    fields: f2,
                },
            ) if fields.len() == f2.len() => {
                *samples += s2;
                for (a, b) in fields.iter_mut().zip(f2) {
                    a.merge(b);
                }
                true
            }
            _ => false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Agg::Counter {
                covered_ms,
                samples,
                sums,
            } => {
                b.extend_from_slice(&covered_ms.to_le_bytes());
                b.extend_from_slice(&samples.to_le_bytes());
                for s in sums {
                    b.extend_from_slice(&s.to_le_bytes());
                }
            }
            Agg::Gauge { samples, fields } => {
                b.extend_from_slice(&samples.to_le_bytes());
                for f in fields {
                    b.extend_from_slice(&f.count.to_le_bytes());
                    for x in [f.min, f.sum, f.max, f.last] {
                        b.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
        }
        b
    }

    pub fn decode(kind: Kind, n: usize, b: &[u8]) -> Result<Agg, DecodeError> {
        match kind {
            Kind::Counter => {
                check_len(b, 12 + 8 * n)?;
                Ok(Agg::Counter {
                    covered_ms: u64_at(b, 0),
                    samples: u32_at(b, 8),
                    sums: (0..n).map(|i| u64_at(b, 12 + 8 * i)).collect(),
                })
            }
            Kind::Gauge => {
                check_len(b, 4 + 36 * n)?;
                Ok(Agg::Gauge {
                    samples: u32_at(b, 0),
                    fields: (0..n)
                        .map(|i| {
                            let at = 4 + 36 * i;
                            GaugeField {
                                count: u32_at(b, at),
                                min: f64_at(b, at + 4),
                                sum: f64_at(b, at + 12),
                                max: f64_at(b, at + 20),
                                last: f64_at(b, at + 28),
                            }
                        })
                        .collect(),
                })
            }
        }
    }

    /// Field `i` as one number for ranking: a counter's sum, a gauge's
    /// average (`None` without a value).
    pub fn score(&self, i: usize) -> Option<f64> {
        match self {
            Agg::Counter { sums, .. } => sums.get(i).map(|&s| s as f64),
            Agg::Gauge { fields, .. } => fields
                .get(i)
                .filter(|f| f.count > 0)
                .map(|f| f.sum / f64::from(f.count)),
        }
    }
}

/// One field of a [`Point`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum FieldValue {
    /// A counter: the sum of the deltas over the point.
    Sum(u64),
    /// A gauge over the point.
    Stats {
        min: f64,
        avg: f64,
        max: f64,
        last: f64,
    },
    /// A gauge with no value over the point (serialized as `null`).
    Unavailable,
}

/// One point of a history answer: a raw sample or a bucket.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Start of the bucket (or the raw sample's time), ms since the epoch.
    pub at_ms: u64,
    /// Raw samples folded into this point.
    pub samples: u32,
    /// Counters: the time the deltas cover, in seconds (for rates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered_seconds: Option<f64>,
    #[schema(value_type = BTreeMap<String, FieldValue>)]
    pub values: BTreeMap<&'static str, FieldValue>,
}

impl Point {
    pub fn new(family: Family, at_ms: u64, agg: &Agg) -> Point {
        let names = family.fields();
        match agg {
            Agg::Counter {
                covered_ms,
                samples,
                sums,
            } => Point {
                at_ms,
                samples: *samples,
                covered_seconds: Some(*covered_ms as f64 / 1000.0),
                values: names
                    .iter()
                    .zip(sums)
                    .map(|(n, s)| (*n, FieldValue::Sum(*s)))
                    .collect(),
            },
            Agg::Gauge { samples, fields } => Point {
                at_ms,
                samples: *samples,
                covered_seconds: None,
                values: names
                    .iter()
                    .zip(fields)
                    .map(|(n, f)| {
                        let v = if f.count == 0 {
                            FieldValue::Unavailable
                        } else {
                            FieldValue::Stats {
                                min: f.min,
                                avg: f.sum / f64::from(f.count),
                                max: f.max,
                                last: f.last,
                            }
                        };
                        (*n, v)
                    })
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_samples_round_trip_and_reject_wrong_lengths() {
        let c = Values::Counter {
            interval_ms: 1000,
            deltas: vec![1, u64::MAX, 0, 7],
        };
        let b = c.encode();
        assert_eq!(b.len(), 4 + 32);
        assert_eq!(Values::decode(Kind::Counter, 4, &b), Ok(c));
        assert_eq!(
            Values::decode(Kind::Counter, 2, &b),
            Err(DecodeError {
                got: 36,
                expected: 20
            })
        );
        let g = Values::Gauge(vec![1.5, -3.0]);
        assert_eq!(Values::decode(Kind::Gauge, 2, &g.encode()), Ok(g));
        let nan = Values::decode(Kind::Gauge, 1, &Values::Gauge(vec![f64::NAN]).encode());
        assert!(matches!(nan, Ok(Values::Gauge(v)) if v[0].is_nan()));
    }

    #[test]
    fn counter_aggregates_sum_deltas_and_time() {
        let mut a = Agg::of(&Values::Counter {
            interval_ms: 1000,
            deltas: vec![10, 1],
        });
        assert!(a.merge(&Agg::of(&Values::Counter {
            interval_ms: 2000,
            deltas: vec![5, 2],
        })));
        assert_eq!(
            a,
            Agg::Counter {
                covered_ms: 3000,
                samples: 2,
                sums: vec![15, 3]
            }
        );
        assert_eq!(Agg::decode(Kind::Counter, 2, &a.encode()), Ok(a.clone()));
        // A different width is refused, not misread.
        assert!(!a.merge(&Agg::of(&Values::Counter {
            interval_ms: 1,
            deltas: vec![1]
        })));
    }

    #[test]
    fn gauge_aggregates_keep_min_avg_max_last_and_skip_unavailable() {
        let mut a = Agg::of(&Values::Gauge(vec![3.0, f64::NAN]));
        for v in [[1.0, f64::NAN], [8.0, f64::NAN], [4.0, f64::NAN]] {
            a.merge(&Agg::of(&Values::Gauge(v.to_vec())));
        }
        let p = Point::new(Family::Temperature, 0, &a);
        assert_eq!(p.samples, 4);
        let Agg::Gauge { fields, .. } = &a else {
            panic!("gauge expected")
        };
        assert_eq!(fields[1].count, 0);
        assert_eq!(
            p.values["celsius"],
            FieldValue::Stats {
                min: 1.0,
                avg: 4.0,
                max: 8.0,
                last: 4.0
            }
        );
        let back = Agg::decode(Kind::Gauge, 2, &a.encode()).unwrap();
        assert_eq!(back.score(0), Some(4.0));
        assert_eq!(back.score(1), None);
    }

    #[test]
    fn names_carry_their_family() {
        let k = SeriesKey::new(Family::Device, &["eth0", "02:00:00:00:00:01"]);
        assert_eq!(k.as_str(), "device/eth0/02:00:00:00:00:01");
        assert_eq!(SeriesKey::parse(k.as_str()), Some(k.clone()));
        assert_eq!(k.family(), Family::Device);
        assert_eq!(
            SeriesKey::parse("system").map(|k| k.family()),
            Some(Family::System)
        );
        assert_eq!(SeriesKey::parse("bogus/x"), None);
        assert_eq!(SeriesKey::parse(""), None);
    }
}
