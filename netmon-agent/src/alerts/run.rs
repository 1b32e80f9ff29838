//! The alerts runner: every drain interval it fills [`super::Values`] from the
//! agent's latest telemetry ([`super::values`]), evaluates the rules,
//! queues what receivers must get ([`super::deliver`]), writes firing and
//! resolved transitions to the alert log (through [`History`], which the
//! store implements) and publishes the alerts, the recent transitions and
//! the receivers' counts in [`Alerts`] for the API, the event stream and
//! `/metrics`. It runs on a thread of its own and stops with the agent's
//! [`Stop`].
//!
//! The first evaluation waits until every enabled collector has published
//! once (at most [`FIRST_WAIT`]), so that `new(device)` learns the devices
//! present at start instead of calling each of them new; the devices the
//! alert log remembers from earlier runs are known from the start.
//!
//! Bounded: transitions kept for the stream and the API
//! ([`RECENT_EVENTS`]), the engine's alerts and known devices
//! (`--alerts-max-active`, `--alerts-max-known-devices`), each receiver's
//! queue (`--alerts-queue-capacity`); what they drop is counted.

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use super::{
    deliver::{self, Delivery, Kind, Receiver},
    engine::{self, Alert, Engine, Event, Silence, State, Target},
    rules::{self, Rule},
    values::{self, Health, Intervals},
};
use crate::{collect::Telemetry, shutdown::Stop, snapshot::Shared};

/// How long the first evaluation waits for the collectors' first readings.
pub const FIRST_WAIT: Duration = Duration::from_secs(60);
/// Transitions kept for the event stream and the API.
pub const RECENT_EVENTS: usize = 1024;

/// The alerts' options, grouped on the command line.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "alerts-options")]
pub struct Options {
    /// Turn the alert rules off: nothing is evaluated or sent.
    #[arg(long, env = "NETMON_NO_ALERTS")]
    pub no_alerts: bool,

    /// An Alertmanager to send alerts to, its base URL
    /// (http://host:9093; repeatable). Firing alerts are re-sent every
    /// --alerts-resend-interval, resolved ones sent once.
    #[arg(long = "alertmanager-url", value_name = "URL", value_parser = parse_url, value_delimiter = ',', env = "NETMON_ALERTMANAGER_URL")]
    pub alertmanager_urls: Vec<String>,

    /// A URL to POST alerts to as JSON (repeatable), signed with
    /// --webhook-secret-file when set.
    #[arg(long = "webhook-url", value_name = "URL", value_parser = parse_url, value_delimiter = ',', env = "NETMON_WEBHOOK_URL")]
    pub webhook_urls: Vec<String>,

    /// File holding the webhook secret (its first line): each webhook body
    /// is signed with HMAC-SHA256 in `X-Netmon-Signature: sha256=<hex>`.
    #[arg(long, value_name = "PATH", env = "NETMON_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Alerts each receiver queues while it is down; beyond it the oldest
    /// are dropped and counted (netmon_alerts_dropped_total).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_ALERTS_QUEUE_CAPACITY")]
    pub alerts_queue_capacity: u32,

    /// How often a firing alert is sent again (Alertmanager forgets one
    /// not re-sent).
    #[arg(long, default_value = "1m", value_parser = crate::units::parse_interval, env = "NETMON_ALERTS_RESEND_INTERVAL")]
    pub alerts_resend_interval: Duration,

    /// Most alerts (pending, firing, recently resolved) held at once; more
    /// are refused and counted.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_ALERTS_MAX_ACTIVE")]
    pub alerts_max_active: u32,

    /// Most device MACs new(device) remembers (and the alert log keeps);
    /// beyond it the oldest are forgotten and counted.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(16..=16_777_216), env = "NETMON_ALERTS_MAX_KNOWN_DEVICES")]
    pub alerts_max_known_devices: u32,

    /// Most transitions the alert log in the history file keeps (oldest
    /// dropped first); it keeps them for the longest history retention.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(16..=100_000_000), env = "NETMON_ALERTS_LOG_MAX")]
    pub alerts_log_max: u32,

    /// On a first start (no device known from an earlier run), the devices
    /// that show up this long after the first evaluation are learned
    /// without a new_device alert: a LAN's devices appear as they talk. 0
    /// turns it off.
    #[arg(long, default_value = "10m", value_parser = crate::units::parse_duration, env = "NETMON_ALERTS_LEARN_DEVICES")]
    pub alerts_learn_devices: Duration,

    /// Most silences in force at once (POST /api/v1/alerts/silences).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=256), env = "NETMON_ALERTS_MAX_SILENCES")]
    pub alerts_max_silences: u32,
}

fn parse_url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").ok_or_else(|| {
        format!("`{s}`: only http:// URLs are supported (no TLS client is built in)")
    })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{s}` has no host"));
    }
    Ok(s.to_owned())
}

/// The rules in force: the defaults and the config file's `[alerts]`
/// section (validated when the configuration is loaded).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules(pub Vec<Rule>);

impl Default for Rules {
    fn default() -> Self {
        Rules(rules::defaults())
    }
}

/// What the runner needs of the history file (the store implements it in
/// `store/alert_log.rs`).
pub trait History: Send + Sync {
    /// Whether the history is degraded.
    fn degraded(&self) -> bool;
    /// Appends firing and resolved transitions to the alert log.
    fn record(&self, events: &[Event]) -> Result<(), String>;
    /// The device MACs `new(device)` has seen before.
    fn known_devices(&self) -> Result<Vec<String>, String>;
    /// Remembers device MACs seen now (at most `max`, oldest forgotten).
    fn remember_devices(&self, macs: &[String], max: usize) -> Result<(), String>;
}

/// The history as the runner sees it.
#[derive(Clone)]
pub enum HistorySlot {
    /// `--no-history`.
    Off,
    /// The file could not be opened: the history is degraded.
    Failed,
    Open(Arc<dyn History>),
}

/// Everything start-up prepares (read while the agent may still read
/// root-only files: the webhook secret).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub rules: Vec<Rule>,
    pub receivers: Vec<Receiver>,
}

/// Why the alerts cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the webhook secret file {}", path.display())]
pub struct SecretError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Prepared {
    pub fn new(opts: &Options, rules: &Rules) -> Result<Prepared, SecretError> {
        let secret = match &opts.webhook_secret_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SecretError {
                    path: path.clone(),
                    source,
                })?;
                Some(
                    text.lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .as_bytes()
                        .to_vec(),
                )
            }
        };
        let mut receivers: Vec<Receiver> = opts
            .alertmanager_urls
            .iter()
            .map(|u| Receiver {
                url: u.clone(),
                kind: Kind::Alertmanager,
            })
            .collect();
        receivers.extend(opts.webhook_urls.iter().map(|u| Receiver {
            url: u.clone(),
            kind: Kind::Webhook {
                secret: secret.clone(),
            },
        }));
        Ok(Prepared {
            rules: rules.0.clone(),
            receivers,
        })
    }
}

/// One transition as the stream and the API show it, numbered.
#[derive(Clone, Debug)]
pub struct Recent {
    pub seq: u64,
    pub event: Event,
}

/// One receiver's counts, copied each interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverCounts {
    /// The URL without user info.
    pub url: String,
    /// `alertmanager` or `webhook`.
    pub kind: &'static str,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub queued: u64,
}

/// Counts of the runner itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunnerCounts {
    pub evaluations: u64,
    /// Transitions the alert log could not store.
    pub log_failures: u64,
    pub engine: engine::Counts,
}

#[derive(Default)]
struct Inner {
    /// `None` when alerts are off.
    engine: Option<Engine>,
    max_silences: usize,
    recent: VecDeque<Recent>,
    next_seq: u64,
    receivers: Vec<ReceiverCounts>,
    evaluated: Option<SystemTime>,
    counts: RunnerCounts,
}

/// The alerts as the API sees them; cheap to clone.
#[derive(Clone, Default)]
pub struct Alerts(Arc<Mutex<Inner>>);

/// Why a silence was not set.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("alerts are off (--no-alerts)")]
    Off,
    #[error("{0} silences are in force, the most --alerts-max-silences allows")]
    Full(usize),
}

impl Alerts {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the rules are evaluated.
    pub fn enabled(&self) -> bool {
        self.lock().engine.is_some()
    }

    /// Alerts pending, firing, or resolved and still kept.
    pub fn active(&self) -> Vec<Alert> {
        self.lock()
            .engine
            .as_ref()
            .map(|e| e.alerts().cloned().collect())
            .unwrap_or_default()
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<Rule> {
        self.lock()
            .engine
            .as_ref()
            .map(|e| e.rules().to_vec())
            .unwrap_or_default()
    }

    /// Alerts per (alertname, severity, state).
    pub fn tally(&self) -> BTreeMap<(String, String, State), usize> {
        self.lock()
            .engine
            .as_ref()
            .map(Engine::tally)
            .unwrap_or_default()
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.lock()
            .engine
            .as_ref()
            .map(|e| e.silences().to_vec())
            .unwrap_or_default()
    }

    /// Silences `target` until `until` (replacing its silence, if any).
    pub fn silence(&self, target: Target, until: SystemTime) -> Result<(), SilenceError> {
        let mut inner = self.lock();
        let max = inner.max_silences;
        let engine = inner.engine.as_mut().ok_or(SilenceError::Off)?;
        let exists = engine.silences().iter().any(|s| s.target == target);
        if !exists && engine.silences().len() >= max {
            return Err(SilenceError::Full(max));
        }
        engine
            .silence(target, until)
            .map_err(|n| SilenceError::Full(n.min(max)))
    }

    /// Ends the silence of `target`; false when there was none.
    pub fn unsilence(&self, target: &Target) -> bool {
        self.lock()
            .engine
            .as_mut()
            .is_some_and(|e| e.unsilence(target))
    }

    /// Transitions numbered above `after`, oldest first, at most `max`.
    pub fn recent_after(&self, after: u64, max: usize) -> Vec<Recent> {
        self.lock()
            .recent
            .iter()
            .filter(|r| r.seq > after)
            .take(max)
            .cloned()
            .collect()
    }

    /// The number of the newest transition (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq
    }

    pub fn receivers(&self) -> Vec<ReceiverCounts> {
        self.lock().receivers.clone()
    }

    pub fn counts(&self) -> RunnerCounts {
        self.lock().counts
    }

    /// When the rules were last evaluated.
    pub fn evaluated(&self) -> Option<SystemTime> {
        self.lock().evaluated
    }

    /// Numbers `events` into the recent transitions (the runner; tests).
    pub(crate) fn publish(&self, events: &[Event]) {
        let mut inner = self.lock();
        for event in events {
            inner.next_seq += 1;
            let seq = inner.next_seq;
            if inner.recent.len() >= RECENT_EVENTS {
                inner.recent.pop_front();
            }
            inner.recent.push_back(Recent {
                seq,
                event: event.clone(),
            });
        }
    }
}

#[cfg(test)]
impl Alerts {
    /// Alerts on, with the default rules and at most `max_silences`.
    pub(crate) fn for_tests(max_silences: usize) -> Alerts {
        let a = Alerts::default();
        {
            let mut inner = a.lock();
            inner.engine = Some(Engine::new(rules::defaults(), engine::Options::default()));
            inner.max_silences = max_silences;
        }
        a
    }
}

/// What the runner reads each interval.
pub struct Inputs {
    pub snapshot: Shared,
    pub telemetry: Telemetry,
    pub intervals: Intervals,
    pub history: HistorySlot,
}

/// Starts the runner (unless alerts are off) on its own thread; it
/// evaluates every `interval` until `stop`.
pub fn spawn(
    opts: &Options,
    prepared: Prepared,
    interval: Duration,
    alerts: &Alerts,
    inputs: Inputs,
    stop: Stop,
) -> std::io::Result<Option<JoinHandle<()>>> {
    if opts.no_alerts {
        tracing::info!("Alerts are off (--no-alerts).");
        return Ok(None);
    }
    let mut engine = Engine::new(
        prepared.rules,
        engine::Options {
            interval,
            resend_every: opts.alerts_resend_interval,
            resolved_retention: engine::Options::default().resolved_retention,
            max_alerts: opts.alerts_max_active as usize,
            max_known: opts.alerts_max_known_devices as usize,
        },
    );
    let mut first_start = true;
    if let HistorySlot::Open(h) = &inputs.history {
        match h.known_devices() {
            Ok(macs) if !macs.is_empty() => {
                tracing::debug!(devices = macs.len(), "Devices known from the alert log.");
                engine.remember("device", macs.iter().map(String::as_str));
                first_start = false;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = e,
                "Cannot read the known devices from the alert log."
            ),
        }
    }
    tracing::info!(
        rules = engine.rules().len(),
        receivers = prepared.receivers.len(),
        "Alert rules loaded."
    );
    {
        let mut inner = alerts.lock();
        inner.engine = Some(engine);
        inner.max_silences = opts.alerts_max_silences as usize;
    }
    let delivery = Delivery::start(
        prepared.receivers,
        deliver::Options {
            queue_capacity: opts.alerts_queue_capacity as usize,
            ..deliver::Options::default()
        },
    )?;
    let alerts = alerts.clone();
    let max_known = opts.alerts_max_known_devices as usize;
    let opts = opts.clone();
    let handle = thread::Builder::new()
        .name("netmon-alerts".into())
        .spawn(move || {
            let mut runner = Runner {
                alerts,
                inputs,
                delivery,
                known: std::collections::HashSet::new(),
                max_known,
                learn_for: if first_start {
                    opts.alerts_learn_devices
                } else {
                    Duration::ZERO
                },
                learn_until: None,
            };
            runner.run(interval, &stop);
        })?;
    Ok(Some(handle))
}

struct Runner {
    alerts: Alerts,
    inputs: Inputs,
    delivery: Delivery,
    /// Device MACs the alert log was told of this run.
    known: std::collections::HashSet<String>,
    max_known: usize,
    /// `--alerts-learn-devices` on a first start, else zero.
    learn_for: Duration,
    /// The end of the learning, set at the first evaluation.
    learn_until: Option<Instant>,
}

impl Runner {
    fn run(&mut self, interval: Duration, stop: &Stop) {
        let start = Instant::now();
        // Wait for every enabled collector's first reading.
        while !self.ready() && start.elapsed() < FIRST_WAIT {
            if stop.wait_until(Instant::now() + interval.min(Duration::from_millis(200))) {
                return;
            }
        }
        let mut next = Instant::now();
        self.learn_until = Some(next + self.learn_for);
        if !self.learn_for.is_zero() {
            tracing::info!(
                learn_for = ?self.learn_for,
                "First start: devices showing up meanwhile are learned without a new_device alert."
            );
        }
        loop {
            self.tick(SystemTime::now());
            next += interval;
            let now = Instant::now();
            if next < now {
                next = now + interval;
            }
            if stop.wait_until(next) {
                break;
            }
        }
    }

    fn ready(&self) -> bool {
        let t = &self.inputs.telemetry;
        self.inputs.snapshot.get().updated.is_some()
            && t.states()
                .all(|(_, state)| !matches!(state, crate::collect::State::Pending))
    }

    fn tick(&mut self, now: SystemTime) {
        let health = Health {
            history_degraded: match &self.inputs.history {
                HistorySlot::Off => None,
                HistorySlot::Failed => Some(true),
                HistorySlot::Open(h) => Some(h.degraded()),
            },
        };
        let snapshot = self.inputs.snapshot.get();
        let values = values::fill(
            &snapshot,
            &self.inputs.telemetry,
            &self.inputs.intervals,
            health,
            now,
        );
        let learning = self.learn_until.is_some_and(|t| Instant::now() < t);
        let outcome = {
            let mut inner = self.alerts.lock();
            let Some(engine) = inner.engine.as_mut() else {
                return;
            };
            if learning {
                let macs = values
                    .get("device")
                    .iter()
                    .filter_map(|s| s.labels.get("mac"));
                engine.remember("device", macs.map(String::as_str));
            }
            let out = engine.evaluate(&values, now);
            let counts = engine.counts();
            inner.counts.engine = counts;
            inner.counts.evaluations += 1;
            inner.evaluated = Some(now);
            out
        };
        let logged: Vec<Event> = outcome
            .events
            .into_iter()
            .filter(|e| matches!(e.to, State::Firing | State::Resolved))
            .collect();
        if let HistorySlot::Open(h) = &self.inputs.history {
            let mut failed = 0;
            if !logged.is_empty()
                && let Err(e) = h.record(&logged)
            {
                tracing::warn!(
                    error = e,
                    transitions = logged.len(),
                    "Cannot write the alert log."
                );
                failed += logged.len() as u64;
            }
            let new: Vec<String> = values
                .get("device")
                .iter()
                .filter_map(|s| s.labels.get("mac"))
                .filter(|m| !self.known.contains(*m))
                .cloned()
                .collect();
            if !new.is_empty() {
                match h.remember_devices(&new, self.max_known) {
                    Ok(()) => {
                        if self.known.len() + new.len() > self.max_known {
                            self.known.clear();
                        }
                        self.known.extend(new);
                    }
                    Err(e) => tracing::debug!(error = e, "Cannot remember devices."),
                }
            }
            self.alerts.lock().counts.log_failures += failed;
        }
        // The log first: whoever hears of a transition finds it there.
        self.alerts.publish(&logged);
        self.delivery.send(&outcome.notify);
        let receivers = self
            .delivery
            .stats()
            .map(|(r, s, queued)| {
                use std::sync::atomic::Ordering::Relaxed;
                ReceiverCounts {
                    url: display_url(&r.url),
                    kind: match r.kind {
                        Kind::Alertmanager => "alertmanager",
                        Kind::Webhook { .. } => "webhook",
                    },
                    sent: s.sent.load(Relaxed),
                    failed: s.failures.load(Relaxed),
                    dropped: s.dropped.load(Relaxed),
                    rejected: s.rejected.load(Relaxed),
                    queued: queued as u64,
                }
            })
            .collect();
        self.alerts.lock().receivers = receivers;
    }
}

/// `url` without user info (`http://user:pw@host` shows as `http://host`).
pub fn display_url(url: &str) -> String {
    let Some(rest) = url.strip_prefix("http://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("http://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_host_and_shown_without_user_info() {
        assert!(parse_url("http://127.0.0.1:9093").is_ok());
        assert!(
            parse_url("https://am:9093")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_url("http:///x").unwrap_err().contains("no host"));
        assert_eq!(
            display_url("http://u:secret@am.lan:9093/x"),
            "http://am.lan:9093/x"
        );
        assert_eq!(display_url("http://am.lan"), "http://am.lan");
    }

    #[test]
    fn silences_are_bounded_by_the_option() {
        let alerts = Alerts::default();
        let t = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(
            alerts.silence(Target::Rule("cpu_high".into()), t),
            Err(SilenceError::Off)
        );
        {
            let mut inner = alerts.lock();
            inner.engine = Some(Engine::new(rules::defaults(), engine::Options::default()));
            inner.max_silences = 2;
        }
        alerts.silence(Target::Rule("a".into()), t).unwrap();
        alerts
            .silence(Target::Device("02:00:00:00:00:01".into()), t)
            .unwrap();
        assert_eq!(
            alerts.silence(Target::Rule("b".into()), t),
            Err(SilenceError::Full(2))
        );
        // Replacing one in force is no new one.
        alerts.silence(Target::Rule("a".into()), t).unwrap();
        assert!(alerts.unsilence(&Target::Rule("a".into())));
        assert_eq!(alerts.silences().len(), 1);
    }

    #[test]
    fn recent_transitions_are_numbered_and_bounded() {
        let alerts = Alerts::default();
        let ev = Event {
            at: SystemTime::UNIX_EPOCH,
            from: State::Pending,
            to: State::Firing,
            labels: Default::default(),
            annotations: Default::default(),
            value: 1.0,
            silenced: false,
        };
        alerts.publish(&vec![ev; RECENT_EVENTS + 5]);
        assert_eq!(alerts.last_seq(), (RECENT_EVENTS + 5) as u64);
        let all = alerts.recent_after(0, usize::MAX);
        assert_eq!(all.len(), RECENT_EVENTS);
        assert_eq!(all[0].seq, 6);
        assert_eq!(alerts.recent_after(alerts.last_seq() - 2, 10).len(), 2);
    }
}
