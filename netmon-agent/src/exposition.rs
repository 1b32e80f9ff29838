//! The Prometheus text exposition format (version 0.0.4): a metric
//! [`Family`] collects its samples, keyed by label values, and writes them
//! with one `# HELP` and one `# TYPE` line.
//!
//! The vocabulary every contributor to `/metrics` writes in (the traffic
//! core's builders in [`crate::metrics`], each collector's families, the
//! API's own counters); a leaf: it uses nothing of the crate.
//!
//! Rules a family keeps: families without samples are left out; no two
//! samples have the same label set (counters whose labels coincide are
//! summed, gauges keep the first value); only counters end in `_total`.

use std::{collections::BTreeMap, fmt::Write as _};

/// The Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample value: counters stay integers so large totals keep every digit.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Int(u64),
    Float(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family being built: its samples keyed by label values (in
/// the order of `labels`), so each label set appears once.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    samples: BTreeMap<Vec<String>, Value>,
}

impl Family {
    fn new(
        kind: Kind,
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        Family {
            name,
            help,
            kind,
            labels,
            samples: BTreeMap::new(),
        }
    }

    pub fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Family::new(Kind::Counter, name, labels, help)
    }

    pub fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Self {
        Family::new(Kind::Gauge, name, labels, help)
    }

    /// Adds a sample; a counter with the same labels is summed, a gauge
    /// keeps its first value.
    fn add(&mut self, labels: Vec<String>, v: Value) {
        debug_assert_eq!(labels.len(), self.labels.len(), "{}", self.name);
        match self.samples.entry(labels) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if self.kind == Kind::Counter {
                    let sum = match (*e.get(), v) {
                        (Value::Int(a), Value::Int(b)) => Value::Int(a.saturating_add(b)),
                        (a, b) => Value::Float(as_f64(a) + as_f64(b)),
                    };
                    e.insert(sum);
                }
            }
        }
    }

    pub fn int(&mut self, labels: &[&str], v: u64) {
        self.add(
            labels.iter().map(|s| (*s).to_owned()).collect(),
            Value::Int(v),
        );
    }

    pub fn float(&mut self, labels: &[&str], v: f64) {
        self.add(
            labels.iter().map(|s| (*s).to_owned()).collect(),
            Value::Float(v),
        );
    }

    /// Samples so far (distinct label sets).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        for (values, v) in &self.samples {
            out.push_str(self.name);
            if !values.is_empty() {
                out.push('{');
                for (i, (name, value)) in self.labels.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                    out.push_str("=\"");
                    escape_label_into(value, out);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(*v, out);
            out.push('\n');
        }
    }
}

fn as_f64(v: Value) -> f64 {
    match v {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
    }
}

fn write_value(v: Value, out: &mut String) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => out.push_str("-Inf"),
        // Display never uses an exponent and round-trips exactly.
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and
/// line feed escaped.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_label_into(s, &mut out);
    out
}

fn escape_label_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and line feed escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
    }
}
