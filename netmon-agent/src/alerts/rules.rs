//! Alert rules: the expression, thresholds, `for`, severity, labels and
//! annotations; the default set; the `[alerts]` section of the config file.
//!
//! An expression compares one named value (see [`super::NAMES`]) with a
//! number: `cpu_percent > 80`, `interface_up{interface="eth0"} < 1`,
//! `rate(interface_errors_total) > 0` (a counter's increase per second
//! between two evaluations), or `new(device)`: true once for each entity
//! (device MAC) never seen before. A rule fires after its expression has
//! held for `for`, and resolves when the value no longer passes the
//! `resolve` threshold (hysteresis: `cpu_percent > 80` with `resolve = 75`
//! fires above 80 and resolves at 75 or below).

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Deserialize;

use super::{Labels, NAMES, known_name};
use crate::units::parse_duration;

/// How urgent an alert is; the `severity` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!("`{s}` is not info, warning or critical")),
        }
    }
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    /// True for `>` and `>=`: the alert is about a value being high.
    pub fn upward(self) -> bool {
        matches!(self, Op::Gt | Op::Ge)
    }
}

/// What the expression reads of its named value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The value itself.
    Gauge,
    /// A counter's increase per second since the previous evaluation.
    Rate,
    /// An entity (label set) never seen before: true at one evaluation.
    New,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: Kind,
    pub name: String,
    /// Only samples with these labels (equality).
    pub matchers: Labels,
    pub op: Op,
    pub threshold: f64,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sel = self.name.clone();
        if !self.matchers.is_empty() {
            let m: Vec<String> = self
                .matchers
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            sel = format!("{sel}{{{}}}", m.join(","));
        }
        match self.kind {
            Kind::Gauge => write!(f, "{sel} {} {}", self.op.as_str(), self.threshold),
            Kind::Rate => write!(f, "rate({sel}) {} {}", self.op.as_str(), self.threshold),
            Kind::New => write!(f, "new({sel})"),
        }
    }
}

/// Parses `NAME[{l="v",...}] OP N`, `rate(NAME[{...}]) OP N` or
/// `new(NAME[{...}])`.
pub fn parse_expr(s: &str) -> Result<Expr, String> {
    let t = s.trim();
    let (kind, inner, rest) = if let Some(r) = t.strip_prefix("rate(") {
        let (inner, rest) = r
            .split_once(')')
            .ok_or_else(|| format!("`{s}`: `rate(` without `)`"))?;
        (Kind::Rate, inner.trim(), rest.trim())
    } else if let Some(r) = t.strip_prefix("new(") {
        let (inner, rest) = r
            .split_once(')')
            .ok_or_else(|| format!("`{s}`: `new(` without `)`"))?;
        if !rest.trim().is_empty() {
            return Err(format!("`{s}`: nothing may follow `new(...)`"));
        }
        (Kind::New, inner.trim(), "")
    } else {
        let end = t
            .find(['<', '>'])
            .ok_or_else(|| format!("`{s}`: no comparison (>, >=, <, <=)"))?;
        (Kind::Gauge, t[..end].trim(), t[end..].trim())
    };
    let (name, matchers) = parse_selector(inner).map_err(|e| format!("`{s}`: {e}"))?;
    if !known_name(&name) {
        let names: Vec<&str> = NAMES.iter().map(|(n, _, _)| *n).collect();
        return Err(format!(
            "`{s}`: unknown value `{name}` (known: {})",
            names.join(", ")
        ));
    }
    let allowed = labels_of(&name);
    if let Some(l) = matchers.keys().find(|l| !allowed.contains(&l.as_str())) {
        return Err(format!("`{s}`: `{name}` has no label `{l}`"));
    }
    if kind == Kind::New {
        return Ok(Expr {
            kind,
            name,
            matchers,
            op: Op::Gt,
            threshold: 0.0,
        });
    }
    let (op, num) = if let Some(n) = rest.strip_prefix(">=") {
        (Op::Ge, n)
    } else if let Some(n) = rest.strip_prefix("<=") {
        (Op::Le, n)
    } else if let Some(n) = rest.strip_prefix('>') {
        (Op::Gt, n)
    } else if let Some(n) = rest.strip_prefix('<') {
        (Op::Lt, n)
    } else {
        return Err(format!("`{s}`: expected >, >=, < or <= after the value"));
    };
    let threshold: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("`{s}`: `{}` is not a number", num.trim()))?;
    Ok(Expr {
        kind,
        name,
        matchers,
        op,
        threshold,
    })
}

fn parse_selector(s: &str) -> Result<(String, Labels), String> {
    let (name, body) = match s.split_once('{') {
        Some((n, b)) => (
            n.trim(),
            Some(b.strip_suffix('}').ok_or("`{` without `}`")?),
        ),
        None => (s.trim(), None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{name}` is not a value name"));
    }
    let mut matchers = Labels::new();
    for part in body.into_iter().flat_map(|b| b.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not label=\"value\""))?;
        let v = v
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| format!("`{part}`: the value needs double quotes"))?;
        matchers.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok((name.to_owned(), matchers))
}

/// The labels a named value carries.
pub fn labels_of(name: &str) -> &'static [&'static str] {
    NAMES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or(&[], |(_, l, _)| l)
}

/// One rule, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub expr: Expr,
    /// Resolves when the value no longer passes `op resolve`; equal to the
    /// threshold unless set.
    pub resolve: f64,
    pub for_: Duration,
    /// Stays firing this long after the expression stopped holding.
    pub keep_firing_for: Duration,
    pub severity: Severity,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub enabled: bool,
}

impl Rule {
    /// Fills `{{ value }}`, `{{ threshold }}`, `{{ resolve }}`,
    /// `{{ alertname }}`, `{{ severity }}` and `{{ LABEL }}` in `template`.
    pub fn render(&self, template: &str, labels: &Labels, value: f64) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find("}}") else {
                out.push_str(&rest[start..]);
                return out;
            };
            let key = rest[start + 2..start + end].trim();
            match key {
                "value" => out.push_str(&figure(value)),
                "threshold" => out.push_str(&figure(self.expr.threshold)),
                "resolve" => out.push_str(&figure(self.resolve)),
                "alertname" => out.push_str(&self.name),
                "severity" => out.push_str(self.severity.as_str()),
                k => out.push_str(
                    labels
                        .get(k)
                        .or_else(|| self.labels.get(k))
                        .map_or("", String::as_str),
                ),
            }
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// A figure for humans: at most two decimals, no trailing zeros.
pub fn figure(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A default rule, written the way a user writes one.
struct Default {
    name: &'static str,
    expr: &'static str,
    resolve: Option<f64>,
    for_: &'static str,
    severity: Severity,
    summary: &'static str,
    enabled: bool,
}

const fn d(
    name: &'static str,
    expr: &'static str,
    resolve: Option<f64>,
    for_: &'static str,
    severity: Severity,
    summary: &'static str,
) -> Default {
    Default {
        name,
        expr,
        resolve,
        for_,
        severity,
        summary,
        enabled: true,
    }
}

use Severity::{Critical, Info, Warning};

/// The default rules; host thresholds are the earlier agent's (CPU 80 %,
/// memory 85 %, disk 90 %, temperature 70 °C, load 2.0).
const DEFAULTS: &[Default] = &[
    d(
        "cpu_high",
        "cpu_percent > 80",
        Some(75.0),
        "2m",
        Warning,
        "CPU at {{ value }}% (above {{ threshold }}%)",
    ),
    d(
        "memory_high",
        "memory_percent > 85",
        Some(80.0),
        "2m",
        Warning,
        "memory at {{ value }}% (above {{ threshold }}%)",
    ),
    d(
        "disk_full",
        "filesystem_used_percent > 90",
        Some(88.0),
        "5m",
        Warning,
        "{{ mountpoint }} at {{ value }}% used (above {{ threshold }}%)",
    ),
    d(
        "temperature_high",
        "temperature_celsius > 70",
        Some(65.0),
        "1m",
        Warning,
        "{{ sensor }} at {{ value }} °C (above {{ threshold }} °C)",
    ),
    d(
        "load_high",
        "load_per_core > 2",
        Some(1.5),
        "5m",
        Warning,
        "load {{ value }} per core (above {{ threshold }})",
    ),
    d(
        "new_device",
        "new(device)",
        None,
        "0s",
        Info,
        "new device {{ mac }} ({{ vendor }}, {{ ip }}) on {{ interface }}",
    ),
    Default {
        enabled: false,
        ..d(
            "device_gone",
            "device_gone > 0",
            None,
            "0s",
            Info,
            "device {{ mac }} on {{ interface }} is gone",
        )
    },
    d(
        "device_rx_high",
        "device_rx_bps > 500000000",
        Some(400_000_000.0),
        "5m",
        Info,
        "{{ mac }} on {{ interface }} receives {{ value }} bit/s",
    ),
    d(
        "device_tx_high",
        "device_tx_bps > 500000000",
        Some(400_000_000.0),
        "5m",
        Info,
        "{{ mac }} on {{ interface }} sends {{ value }} bit/s",
    ),
    d(
        "interface_saturated",
        "interface_utilization_percent > 90",
        Some(80.0),
        "5m",
        Warning,
        "{{ interface }} at {{ value }}% of its link speed",
    ),
    d(
        "interface_down",
        "interface_up < 1",
        None,
        "1m",
        Critical,
        "{{ interface }} is down",
    ),
    d(
        "interface_errors",
        "rate(interface_errors_total) > 0",
        None,
        "1m",
        Warning,
        "{{ interface }}: {{ value }} errors/s",
    ),
    d(
        "interface_drops",
        "rate(interface_drops_total) > 10",
        Some(1.0),
        "2m",
        Warning,
        "{{ interface }}: {{ value }} drops/s",
    ),
    d(
        "latency_high",
        "latency_rtt_ms > 200",
        Some(150.0),
        "1m",
        Warning,
        "{{ target }}: round trip {{ value }} ms",
    ),
    d(
        "latency_loss",
        "latency_loss_percent > 20",
        Some(5.0),
        "1m",
        Warning,
        "{{ target }}: {{ value }}% loss",
    ),
    d(
        "map_full",
        "map_fill_percent > 90",
        Some(85.0),
        "1m",
        Warning,
        "{{ map }} at {{ value }}% of its capacity",
    ),
    d(
        "map_evictions",
        "rate(map_evictions_total) > 0",
        None,
        "1m",
        Info,
        "{{ map }} evicts {{ value }} entries/s",
    ),
    d(
        "history_degraded",
        "history_degraded > 0",
        None,
        "0s",
        Critical,
        "the history is degraded",
    ),
    d(
        "collector_failing",
        "collector_up < 1",
        None,
        "1m",
        Warning,
        "collector {{ collector }} is failing",
    ),
    d(
        "security_critical",
        "security_finding{severity=\"critical\"} > 0",
        None,
        "0s",
        Critical,
        "security finding {{ kind }} ({{ subject }})",
    ),
];

/// How long `new_device` stays firing by default (Alertmanager gets it
/// once and keeps it visible for this long).
const NEW_KEEP_FIRING: Duration = Duration::from_secs(3600);

/// The default rules, validated.
pub fn defaults() -> Vec<Rule> {
    DEFAULTS
        .iter()
        .map(|d| {
            let expr = parse_expr(d.expr).expect("default rules parse");
            let keep = if expr.kind == Kind::New {
                NEW_KEEP_FIRING
            } else {
                Duration::ZERO
            };
            Rule {
                name: d.name.to_owned(),
                resolve: d.resolve.unwrap_or(expr.threshold),
                expr,
                for_: parse_duration(d.for_).expect("default durations parse"),
                keep_firing_for: keep,
                severity: d.severity,
                labels: Labels::new(),
                annotations: [("summary".to_owned(), d.summary.to_owned())].into(),
                enabled: d.enabled,
            }
        })
        .collect()
}

/// The `[alerts]` section as written. `rules` stays raw so that each error
/// can name its rule's index.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Start from the default rules (true) or from none.
    #[serde(default = "yes")]
    pub defaults: bool,
    #[serde(default)]
    pub rules: Vec<toml::Value>,
}

fn yes() -> bool {
    true
}

/// One `[[alerts.rules]]` entry. A `name` of a default rule changes only
/// the fields given (`enabled = false` turns it off); another name is a
/// new rule and needs `expr`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    name: String,
    expr: Option<String>,
    resolve: Option<f64>,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    severity: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
}

/// A rule that does not validate: `field` is its path in the file.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

/// At most this many rules (each evaluated every interval).
pub const MAX_RULES: usize = 256;

impl Section {
    /// Parses the section from the text of a whole config file (its
    /// `[alerts]` table; none: the defaults).
    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| RuleError {
            field: "alerts".to_owned(),
            message: e.message().to_owned(),
        })?;
        match table.get("alerts") {
            None => Ok(Section {
                defaults: true,
                rules: Vec::new(),
            }),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| RuleError {
                    field: "alerts".to_owned(),
                    message: e.message().to_owned(),
                }),
        }
    }

    /// The rules in force: the defaults (unless `defaults = false`) with
    /// the entries applied in order.
    pub fn rules(&self) -> Result<Vec<Rule>, RuleError> {
        let mut rules = if self.defaults {
            defaults()
        } else {
            Vec::new()
        };
        if self.rules.len() > MAX_RULES {
            return Err(err("alerts.rules", format!("more than {MAX_RULES} rules")));
        }
        for (i, raw) in self.rules.iter().enumerate() {
            let at = format!("alerts.rules[{i}]");
            let entry: RuleEntry = raw
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| err(&at, e.message().to_owned()))?;
            let pos = rules.iter().position(|r| r.name == entry.name);
            let rule = apply(&at, entry, pos.map(|p| &rules[p]))?;
            match pos {
                Some(p) => rules[p] = rule,
                None => rules.push(rule),
            }
        }
        Ok(rules)
    }
}

fn err(field: &str, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn apply(at: &str, e: RuleEntry, base: Option<&Rule>) -> Result<Rule, RuleError> {
    let f = |name: &str| format!("{at}.{name}");
    if e.name.is_empty()
        || e.name.len() > 64
        || !e
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(err(&f("name"), "1 to 64 characters: letters, digits, `_`"));
    }
    let expr = match (&e.expr, base) {
        (Some(x), _) => parse_expr(x).map_err(|m| err(&f("expr"), m))?,
        (None, Some(b)) => b.expr.clone(),
        (None, None) => return Err(err(&f("expr"), "missing (a new rule needs one)")),
    };
    // A changed expression takes its own threshold as the default resolve.
    let resolve = match (e.resolve, base) {
        (Some(r), _) => r,
        (None, Some(b)) if e.expr.is_none() => b.resolve,
        _ => expr.threshold,
    };
    if !resolve.is_finite() {
        return Err(err(&f("resolve"), "not a finite number"));
    }
    if expr.kind != Kind::New {
        let wrong_side = if expr.op.upward() {
            resolve > expr.threshold
        } else {
            resolve < expr.threshold
        };
        if wrong_side {
            return Err(err(
                &f("resolve"),
                format!(
                    "{resolve} is on the firing side of `{expr}`: it must be {} {}",
                    if expr.op.upward() {
                        "at most"
                    } else {
                        "at least"
                    },
                    expr.threshold
                ),
            ));
        }
    }
    let dur = |v: &Option<String>, name: &str, dflt: Duration| -> Result<Duration, RuleError> {
        match v {
            None => Ok(dflt),
            Some(s) => {
                let d = parse_duration(s).map_err(|m| err(&f(name), m))?;
                if d > Duration::from_secs(7 * 86400) {
                    return Err(err(&f(name), format!("{s} is over 7 days")));
                }
                Ok(d)
            }
        }
    };
    let for_ = dur(&e.for_, "for", base.map_or(Duration::ZERO, |b| b.for_))?;
    let keep_firing_for = dur(
        &e.keep_firing_for,
        "keep_firing_for",
        base.map_or(Duration::ZERO, |b| b.keep_firing_for),
    )?;
    let severity = match (&e.severity, base) {
        (Some(s), _) => Severity::parse(s).map_err(|m| err(&f("severity"), m))?,
        (None, Some(b)) => b.severity,
        (None, None) => Severity::Warning,
    };
    let labels = match (e.labels, base) {
        (Some(l), _) => l,
        (None, Some(b)) => b.labels.clone(),
        (None, None) => Labels::new(),
    };
    let reserved = ["alertname", "severity"];
    for k in labels.keys() {
        if reserved.contains(&k.as_str()) || labels_of(&expr.name).contains(&k.as_str()) {
            return Err(err(
                &format!("{at}.labels.{k}"),
                "set by the alert itself; choose another name",
            ));
        }
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(
                &format!("{at}.labels.{k}"),
                "letters, digits, `_` only",
            ));
        }
    }
    let annotations = match (e.annotations, base) {
        (Some(a), _) => a,
        (None, Some(b)) => b.annotations.clone(),
        (None, None) => BTreeMap::new(),
    };
    for (k, v) in &annotations {
        check_template(v, &expr.name, &labels)
            .map_err(|m| err(&format!("{at}.annotations.{k}"), m))?;
    }
    Ok(Rule {
        name: e.name,
        expr,
        resolve,
        for_,
        keep_firing_for,
        severity,
        labels,
        annotations,
        enabled: e.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
    })
}

fn check_template(t: &str, name: &str, labels: &Labels) -> Result<(), String> {
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").ok_or("`{{` without `}}`")?;
        let key = rest[start + 2..start + end].trim();
        let fixed = ["value", "threshold", "resolve", "alertname", "severity"];
        if !fixed.contains(&key) && !labels_of(name).contains(&key) && !labels.contains_key(key) {
            let mut known: Vec<&str> = fixed.to_vec();
            known.extend(labels_of(name));
            known.extend(labels.keys().map(String::as_str));
            return Err(format!(
                "unknown placeholder `{{{{ {key} }}}}` (known: {})",
                known.join(", ")
            ));
        }
        rest = &rest[start + end + 2..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Vec<Rule>, RuleError> {
        Section::from_toml(text)?.rules()
    }

    #[test]
    fn defaults_hold_the_earlier_agents_thresholds() {
        let r = defaults();
        let t = |n: &str| r.iter().find(|r| r.name == n).unwrap().expr.threshold;
        assert_eq!(t("cpu_high"), 80.0);
        assert_eq!(t("memory_high"), 85.0);
        assert_eq!(t("disk_full"), 90.0);
        assert_eq!(t("temperature_high"), 70.0);
        assert_eq!(t("load_high"), 2.0);
        let nd = r.iter().find(|r| r.name == "new_device").unwrap();
        assert!(nd.enabled);
        assert_eq!(nd.expr.kind, Kind::New);
        assert_eq!(rules("").unwrap(), r);
    }

    #[test]
    fn parses_expressions() {
        let e = parse_expr(r#"rate(interface_errors_total{interface="eth0"}) >= 2.5"#).unwrap();
        assert_eq!(e.kind, Kind::Rate);
        assert_eq!(e.op, Op::Ge);
        assert_eq!(e.threshold, 2.5);
        assert_eq!(e.matchers["interface"], "eth0");
        assert_eq!(
            e.to_string(),
            r#"rate(interface_errors_total{interface="eth0"}) >= 2.5"#
        );
        for (bad, why) in [
            ("cpu > 80", "unknown value `cpu`"),
            ("cpu_percent 80", "no comparison"),
            ("cpu_percent > x", "`x` is not a number"),
            (r#"cpu_percent{mac="a"} > 1"#, "has no label `mac`"),
            (r#"device_gone{mac=a} > 0"#, "double quotes"),
            ("new(device) > 1", "nothing may follow"),
        ] {
            let e = parse_expr(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn user_rules_override_add_and_name_the_field() {
        let r = rules(
            r#"
            [[alerts.rules]]
            name = "cpu_high"
            expr = "cpu_percent > 95"
            [[alerts.rules]]
            name = "new_device"
            enabled = false
            [[alerts.rules]]
            name = "wan_down"
            expr = 'interface_up{interface="wan0"} < 1'
            for = "30s"
            severity = "critical"
            labels = { team = "net" }
            annotations = { summary = "{{ interface }} down ({{ team }})" }
            "#,
        )
        .unwrap();
        let get = |n: &str| r.iter().find(|r| r.name == n).unwrap();
        assert_eq!(get("cpu_high").expr.threshold, 95.0);
        assert_eq!(get("cpu_high").resolve, 95.0, "a new expr resets resolve");
        assert_eq!(get("cpu_high").for_, Duration::from_secs(120));
        assert!(!get("new_device").enabled);
        let w = get("wan_down");
        assert_eq!(w.severity, Severity::Critical);
        assert_eq!(w.for_, Duration::from_secs(30));
        let labels: Labels = [("interface".to_owned(), "wan0".to_owned())].into();
        assert_eq!(
            w.render(&w.annotations["summary"], &labels, 0.0),
            "wan0 down (net)"
        );

        for (text, field, why) in [
            (
                "[[alerts.rules]]\nname = \"x\"\nfro = \"1m\"",
                "alerts.rules[0]",
                "unknown field `fro`",
            ),
            (
                "[[alerts.rules]]\nname = \"cpu_high\"\n[[alerts.rules]]\nname = \"y\"\nexpr = \"cpu_percent > 1\"\nfor = \"soon\"",
                "alerts.rules[1].for",
                "",
            ),
            (
                "[[alerts.rules]]\nname = \"z\"",
                "alerts.rules[0].expr",
                "missing",
            ),
            (
                "[[alerts.rules]]\nname = \"cpu_high\"\nresolve = 90",
                "alerts.rules[0].resolve",
                "firing side",
            ),
            (
                "[[alerts.rules]]\nname = \"cpu_high\"\nseverity = \"page\"",
                "alerts.rules[0].severity",
                "not info",
            ),
            (
                "[[alerts.rules]]\nname = \"disk_full\"\nlabels = { mountpoint = \"/\" }",
                "alerts.rules[0].labels.mountpoint",
                "set by the alert",
            ),
            (
                "[[alerts.rules]]\nname = \"cpu_high\"\nannotations = { s = \"{{ mac }}\" }",
                "alerts.rules[0].annotations.s",
                "unknown placeholder",
            ),
            ("[alerts]\nrule = []", "alerts", "unknown field `rule`"),
            (
                "[[alerts.rules]]\nname = \"bad name\"\nexpr = \"cpu_percent > 1\"",
                "alerts.rules[0].name",
                "letters",
            ),
        ] {
            let e = rules(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.message.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn templates_and_figures() {
        let r = &defaults()[0];
        assert_eq!(
            r.render(
                "{{value}}/{{ threshold }}/{{resolve}} {{ alertname }} {{ severity }}",
                &Labels::new(),
                81.256
            ),
            "81.26/80/75 cpu_high warning"
        );
        assert_eq!(figure(2.0), "2");
        assert_eq!(figure(0.001), "0");
        assert_eq!(figure(-1.5), "-1.5");
        assert_eq!(
            r.render("open {{ value", &Labels::new(), 1.0),
            "open {{ value"
        );
    }
}
