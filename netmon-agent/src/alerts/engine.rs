//! The alert states, evaluated every interval over [`Values`].
//!
//! Each rule and entity (the sample's labels) is one alert:
//! inactive -> pending (the expression holds) -> firing (it held for `for`)
//! -> resolved (the value no longer passes the rule's `resolve` threshold
//! and `keep_firing_for` has passed). A pending alert whose expression
//! stops holding goes back to inactive. Resolved alerts are kept for
//! [`Options::resolved_retention`] (Alertmanager gets them again if it
//! missed them) and then forgotten; holding again makes a new pending one.
//!
//! Every transition is an [`Event`] (for the log, the stream, the journal);
//! [`Outcome::notify`] is what receivers must get now: alerts that fire or
//! resolve, and firing alerts again every [`Options::resend_every`], as
//! Prometheus does, with `ends_at` a few intervals ahead.
//!
//! Bounded: at most [`Options::max_alerts`] alerts (one more is refused
//! and counted), [`Options::max_known`] entities remembered per `new()`
//! rule (the oldest forgotten, counted), [`MAX_SILENCES`] silences.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, SystemTime},
};

use super::{
    Labels, Values,
    rules::{Kind, Rule},
};

/// An alert's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// The engine's bounds and timings.
#[derive(Clone, Debug)]
pub struct Options {
    /// The evaluation interval (`ends_at` of a firing alert is
    /// `now + 4 * max(interval, resend_every)`).
    pub interval: Duration,
    pub resend_every: Duration,
    pub resolved_retention: Duration,
    pub max_alerts: usize,
    pub max_known: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: Duration::from_secs(1),
            resend_every: Duration::from_secs(60),
            resolved_retention: Duration::from_secs(15 * 60),
            max_alerts: 10_000,
            max_known: 65_536,
        }
    }
}

/// One alert as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub rule: String,
    /// alertname, severity, the rule's labels and the entity's.
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    /// When it became pending.
    pub active_since: SystemTime,
    /// When it fired (Alertmanager's `startsAt`).
    pub fired_at: Option<SystemTime>,
    pub resolved_at: Option<SystemTime>,
    pub value: f64,
    pub silenced: bool,
    entity: Labels,
    last_true: SystemTime,
    last_sent: Option<SystemTime>,
}

/// A transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub from: State,
    pub to: State,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub silenced: bool,
}

/// What one receiver gets for one alert (Alertmanager's v2 alert).
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: SystemTime,
    /// In the future while firing, when it resolved once resolved.
    pub ends_at: SystemTime,
    pub state: State,
    pub value: f64,
}

/// What an evaluation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub notify: Vec<Notice>,
}

/// What a silence covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Rule(String),
    /// A device's MAC (any case).
    Device(String),
    /// One rule's alerts of one device.
    RuleDevice {
        rule: String,
        mac: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Silence {
    pub target: Target,
    pub until: SystemTime,
}

pub const MAX_SILENCES: usize = 256;

/// What the engine refused or forgot because of its bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub alerts_refused: u64,
    pub known_evicted: u64,
}

/// Entities a `new()` rule has seen, oldest first.
#[derive(Default)]
struct Known {
    set: HashSet<String>,
    order: VecDeque<String>,
}

type Key = (usize, Labels);

pub struct Engine {
    rules: Vec<Rule>,
    opts: Options,
    alerts: BTreeMap<Key, Alert>,
    counters: HashMap<Key, (f64, SystemTime)>,
    known: HashMap<usize, Known>,
    /// The first evaluation learns the entities present without firing,
    /// unless [`Engine::remember`] seeded what was seen before.
    learned: bool,
    silences: Vec<Silence>,
    counts: Counts,
}

impl Engine {
    pub fn new(rules: Vec<Rule>, opts: Options) -> Self {
        let rules = rules.into_iter().filter(|r| r.enabled).collect();
        Engine {
            rules,
            opts,
            alerts: BTreeMap::new(),
            counters: HashMap::new(),
            known: HashMap::new(),
            learned: false,
            silences: Vec::new(),
            counts: Counts::default(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Seeds the entities `new(name)` rules have already seen (the
    /// history's devices: their MACs), so that the first evaluation fires
    /// for the others.
    pub fn remember<'a>(&mut self, name: &str, keys: impl IntoIterator<Item = &'a str>) {
        let rules: Vec<usize> = self.new_rules(name);
        for key in keys {
            for &r in &rules {
                self.learn(r, key);
            }
        }
        self.learned = true;
    }

    fn new_rules(&self, name: &str) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| self.rules[i].expr.kind == Kind::New && self.rules[i].expr.name == name)
            .collect()
    }

    /// Remembers `key` for rule `r`; true when it was new.
    fn learn(&mut self, r: usize, key: &str) -> bool {
        let k = self.known.entry(r).or_default();
        if k.set.contains(key) {
            return false;
        }
        let key = key.to_owned();
        if k.order.len() >= self.opts.max_known.max(1)
            && let Some(old) = k.order.pop_front()
        {
            k.set.remove(&old);
            self.counts.known_evicted += 1;
        }
        k.set.insert(key.clone());
        k.order.push_back(key);
        true
    }

    /// Silences a rule or a device until `until` (replacing a silence of
    /// the same target); `Err` when [`MAX_SILENCES`] are in force.
    pub fn silence(&mut self, target: Target, until: SystemTime) -> Result<(), usize> {
        let target = match target {
            Target::Device(m) => Target::Device(m.to_ascii_lowercase()),
            Target::RuleDevice { rule, mac } => Target::RuleDevice {
                rule,
                mac: mac.to_ascii_lowercase(),
            },
            t => t,
        };
        if let Some(s) = self.silences.iter_mut().find(|s| s.target == target) {
            s.until = until;
            return Ok(());
        }
        if self.silences.len() >= MAX_SILENCES {
            return Err(MAX_SILENCES);
        }
        self.silences.push(Silence { target, until });
        Ok(())
    }

    /// Ends a silence; false when there was none.
    pub fn unsilence(&mut self, target: &Target) -> bool {
        let n = self.silences.len();
        self.silences.retain(|s| &s.target != target);
        n != self.silences.len()
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Alerts pending, firing, or resolved and still kept.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Alerts per (alertname, severity, state), for `netmon_alerts`.
    pub fn tally(&self) -> BTreeMap<(String, String, State), usize> {
        let mut t = BTreeMap::new();
        for a in self.alerts.values() {
            let name = a.labels.get("alertname").cloned().unwrap_or_default();
            let sev = a.labels.get("severity").cloned().unwrap_or_default();
            *t.entry((name, sev, a.state)).or_default() += 1;
        }
        t
    }

    fn silenced(&self, rule: &str, entity: &Labels, now: SystemTime) -> bool {
        self.silences.iter().any(|s| {
            s.until > now
                && match &s.target {
                    Target::Rule(r) => r == rule,
                    Target::Device(m) => {
                        entity.get("mac").is_some_and(|v| v.eq_ignore_ascii_case(m))
                    }
                    Target::RuleDevice { rule: r, mac: m } => {
                        r == rule && entity.get("mac").is_some_and(|v| v.eq_ignore_ascii_case(m))
                    }
                }
        })
    }

    /// One evaluation at `now`.
    pub fn evaluate(&mut self, values: &Values, now: SystemTime) -> Outcome {
        self.silences.retain(|s| s.until > now);
        let mut out = Outcome::default();
        let mut seen: HashSet<Key> = HashSet::new();
        for r in 0..self.rules.len() {
            let rule = self.rules[r].clone();
            // The entities this rule has alerts for: any other sample that
            // does not pass the threshold leaves no trace, and needs no key
            // (most samples at most evaluations: measured in the bench).
            let existing: HashSet<Labels> = self
                .alerts
                .range((r, Labels::new())..(r + 1, Labels::new()))
                .map(|(k, _)| k.1.clone())
                .collect();
            for sample in values.get(&rule.expr.name) {
                if rule
                    .expr
                    .matchers
                    .iter()
                    .any(|(k, v)| sample.labels.get(k) != Some(v))
                {
                    continue;
                }
                let value = match rule.expr.kind {
                    Kind::Gauge => Some(sample.value),
                    Kind::Rate => {
                        let key = (r, sample.labels.clone());
                        let prev = self.counters.insert(key, (sample.value, now));
                        prev.and_then(|(v, t)| {
                            let dt = now.duration_since(t).ok()?.as_secs_f64();
                            // A counter that went down was reset: it counted
                            // `sample.value` since.
                            let inc = if sample.value >= v {
                                sample.value - v
                            } else {
                                sample.value
                            };
                            (dt > 0.0).then(|| inc / dt)
                        })
                    }
                    Kind::New => {
                        let fresh = match sample.labels.get("mac") {
                            Some(mac) => self.learn(r, mac),
                            None => self.learn(r, &format!("{:?}", sample.labels)),
                        };
                        Some(if fresh && self.learned { 1.0 } else { 0.0 })
                    }
                };
                let Some(value) = value else { continue };
                // What `step` would do for an entity without an alert whose
                // value does not pass: nothing.
                if !existing.contains(&sample.labels)
                    && !rule.expr.op.holds(value, rule.expr.threshold)
                {
                    continue;
                }
                let key = (r, sample.labels.clone());
                seen.insert(key.clone());
                self.step(&rule, key, Some(value), now, &mut out);
            }
        }
        let absent: Vec<Key> = self
            .alerts
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in absent {
            let rule = self.rules[key.0].clone();
            self.step(&rule, key, None, now, &mut out);
        }
        let retention = self.opts.resolved_retention;
        self.alerts.retain(|_, a| {
            a.state != State::Resolved
                || a.resolved_at
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() < retention)
        });
        self.counters.retain(|k, (_, t)| {
            seen.contains(k) || now.duration_since(*t).unwrap_or_default() < retention
        });
        self.learned = true;
        out
    }

    /// Moves one alert on; `value` is `None` when its entity is absent.
    fn step(
        &mut self,
        rule: &Rule,
        key: Key,
        value: Option<f64>,
        now: SystemTime,
        out: &mut Outcome,
    ) {
        let silenced = self.silenced(&rule.name, &key.1, now);
        let state = self.alerts.get(&key).map_or(State::Inactive, |a| a.state);
        let holds = value.is_some_and(|v| {
            let t = if state == State::Firing {
                rule.resolve
            } else {
                rule.expr.threshold
            };
            rule.expr.op.holds(v, t)
        });
        if !holds && matches!(state, State::Inactive | State::Resolved) {
            return;
        }
        if state == State::Inactive || (state == State::Resolved && holds) {
            if self.alerts.len() >= self.opts.max_alerts && !self.alerts.contains_key(&key) {
                self.counts.alerts_refused += 1;
                return;
            }
            let mut labels = rule.labels.clone();
            labels.extend(key.1.clone());
            labels.insert("alertname".to_owned(), rule.name.clone());
            labels.insert("severity".to_owned(), rule.severity.as_str().to_owned());
            let alert = Alert {
                rule: rule.name.clone(),
                labels,
                annotations: BTreeMap::new(),
                state: State::Inactive,
                active_since: now,
                fired_at: None,
                resolved_at: None,
                value: 0.0,
                silenced,
                entity: key.1.clone(),
                last_true: now,
                last_sent: None,
            };
            self.alerts.insert(key.clone(), alert);
        }
        let interval = self.opts.interval;
        let resend = self.opts.resend_every;
        let a = self.alerts.get_mut(&key).expect("inserted above");
        a.silenced = silenced;
        if let Some(v) = value {
            a.value = v;
            a.annotations = rule
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), rule.render(t, &a.entity, v)))
                .collect();
        }
        let from = a.state;
        let to = match (from, holds) {
            (State::Inactive | State::Resolved | State::Pending, true) => {
                if from != State::Pending {
                    a.active_since = now;
                }
                a.last_true = now;
                if now.duration_since(a.active_since).unwrap_or_default() >= rule.for_ {
                    a.fired_at = Some(now);
                    a.resolved_at = None;
                    a.last_sent = None;
                    State::Firing
                } else {
                    State::Pending
                }
            }
            (State::Firing, true) => {
                a.last_true = now;
                State::Firing
            }
            (State::Firing, false) => {
                if now.duration_since(a.last_true).unwrap_or_default() < rule.keep_firing_for {
                    State::Firing
                } else {
                    a.resolved_at = Some(now);
                    State::Resolved
                }
            }
            (State::Pending, false) => State::Inactive,
            (s, false) => s,
        };
        a.state = to;
        if from != to {
            let ev = Event {
                at: now,
                from,
                to,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                value: a.value,
                silenced,
            };
            log(&ev);
            out.events.push(ev);
        }
        // What receivers get: firing (again every `resend`), and resolved
        // once for an alert they were told fired.
        let ends_ahead = now + 4 * interval.max(resend);
        match to {
            State::Firing if !silenced => {
                let due = a
                    .last_sent
                    .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= resend);
                if due {
                    a.last_sent = Some(now);
                    out.notify.push(notice(a, ends_ahead));
                }
            }
            State::Resolved if from == State::Firing && a.last_sent.is_some() => {
                out.notify.push(notice(a, now));
            }
            _ => {}
        }
        if to == State::Inactive {
            self.alerts.remove(&key);
        }
    }
}

fn notice(a: &Alert, ends_at: SystemTime) -> Notice {
    Notice {
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at: a.fired_at.unwrap_or(a.active_since),
        ends_at,
        state: a.state,
        value: a.value,
    }
}

/// One journal line per firing and resolving.
fn log(ev: &Event) {
    let name = ev.labels.get("alertname").map_or("", String::as_str);
    let labels: Vec<String> = ev
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let labels = labels.join(",");
    let summary = ev.annotations.get("summary").map_or("", String::as_str);
    match ev.to {
        State::Firing => tracing::warn!(
            alertname = name,
            labels,
            value = ev.value,
            silenced = ev.silenced,
            "Alert firing: {summary}"
        ),
        State::Resolved => tracing::info!(
            alertname = name,
            labels,
            value = ev.value,
            silenced = ev.silenced,
            "Alert resolved: {summary}"
        ),
        _ => tracing::debug!(
            alertname = name,
            labels,
            state = ev.to.as_str(),
            "Alert state changed."
        ),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
