//! Seed 001's `realtimeSnapshot` as a schema: its documented example, and
//! a check that a document has every key of it with the same JSON type.

use serde_json::Value;

/// Seed 001's documented `realtimeSnapshot` example (its `[...]` lists
/// written as `[]`), the schema every snapshot must match.
pub const EXAMPLE: &str = include_str!("../fixtures/seed001/realtimeSnapshot.json");

/// Paths where the agent may write `null` for a figure the machine cannot
/// give (documented in the README); every other key must have the
/// example's type.
pub const NULLABLE: &[&str] = &[
    "network.connectedDevices[].ip",
    "network.connectedDevices[].deviceName",
    "network.connectedDevices[].bandwidth.utilizationPercent",
];

/// Where `got` differs from the seed's example: a missing key, or another
/// JSON type (an integer where the example has one, a string, an object,
/// a list; a fraction like `25.5` allows any number). Lists are checked
/// element by element against the example's first element.
pub fn seed001_mismatches(got: &Value) -> Vec<String> {
    fn walk(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
        if got.is_null() && NULLABLE.contains(&path) {
            return;
        }
        let same = match want {
            Value::Object(_) => got.is_object(),
            Value::Array(_) => got.is_array(),
            Value::String(_) => got.is_string(),
            Value::Bool(_) => got.is_boolean(),
            Value::Number(n) if n.is_u64() || n.is_i64() => got.is_u64() || got.is_i64(),
            Value::Number(_) => got.is_number(),
            Value::Null => true,
        };
        if !same {
            out.push(format!("{path}: want the type of {want}, got {got}"));
            return;
        }
        match (want, got) {
            (Value::Object(w), Value::Object(g)) => {
                for (key, w) in w {
                    let sub = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match g.get(key) {
                        Some(g) => walk(w, g, &sub, out),
                        None => out.push(format!("{sub}: missing")),
                    }
                }
            }
            (Value::Array(w), Value::Array(g)) => {
                if let Some(w) = w.first() {
                    for g in g {
                        walk(w, g, &format!("{path}[]"), out);
                    }
                }
            }
            // The seed's times: RFC 3339 in UTC with milliseconds.
            (Value::String(w), Value::String(g)) if w.ends_with(".000Z") => {
                let ok =
                    g.len() == w.len() && g.ends_with('Z') && humantime::parse_rfc3339(g).is_ok();
                if !ok {
                    out.push(format!("{path}: {g:?} is not like {w:?}"));
                }
            }
            _ => {}
        }
    }
    let want: Value = serde_json::from_str(EXAMPLE).expect("the seed's example is JSON");
    let mut out = Vec::new();
    walk(&want, got, "", &mut out);
    out
}
