//! Sending alerts: to Alertmanager (`POST /api/v2/alerts`) and to generic
//! webhooks (a JSON body signed with HMAC-SHA256).
//!
//! Each receiver has its own thread and its own queue of
//! [`Options::queue_capacity`] alerts. [`Delivery::send`] never blocks: it
//! queues, and when the queue is full it drops the oldest queued alerts and
//! counts them ([`Stats::dropped`]), as Prometheus's notifier does. The
//! thread posts batches of at most [`Options::batch_max`] in order; a
//! failed post (no connection, a timeout, a 5xx or a 429) is retried with
//! exponential backoff from [`Options::backoff_min`] to
//! [`Options::backoff_max`] until it succeeds, so a receiver that is down
//! loses nothing until more than the queue holds has piled up. Another 4xx
//! means the receiver refuses the body: the batch is dropped and counted in
//! [`Stats::rejected`].
//!
//! For Alertmanager only the newest notice of each alert (same labels)
//! matters: a queued one is replaced by a newer one, so a long outage
//! costs one queue slot per alert, not one per re-send. Webhooks get every
//! notice, in order.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::Duration,
};

use ring::hmac;
use serde_json::{Value, json};

use super::engine::{Notice, State};
use crate::http_post::{Backoff, Client, Posted, pause};
use crate::units;

/// Where alerts go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An Alertmanager's base URL (`http://host:9093`); alerts are posted
    /// to `<url>/api/v2/alerts`.
    Alertmanager,
    /// Any URL; the body is signed when a secret is set.
    Webhook { secret: Option<Vec<u8>> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receiver {
    pub url: String,
    pub kind: Kind,
}

/// The signature header of webhook posts: `sha256=<hex HMAC-SHA256 of the
/// body>`.
pub const SIGNATURE_HEADER: &str = "X-Netmon-Signature";

#[derive(Clone, Debug)]
pub struct Options {
    pub queue_capacity: usize,
    pub batch_max: usize,
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue_capacity: 10_000,
            batch_max: 64,
            timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// One receiver's counts since the start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Alerts the receiver accepted.
    pub sent: AtomicU64,
    /// Posts that failed and were retried.
    pub failures: AtomicU64,
    /// Alerts dropped from a full queue.
    pub dropped: AtomicU64,
    /// Alerts in batches the receiver refused (a 4xx other than 429).
    pub rejected: AtomicU64,
}

struct Inner {
    items: VecDeque<Notice>,
    closed: bool,
}

struct Queue {
    receiver: Receiver,
    inner: Mutex<Inner>,
    cond: Condvar,
    stats: Stats,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::http_post::lock(&self.inner)
    }
}

/// The receivers' threads and queues; dropping it (or [`Delivery::stop`])
/// ends the threads, abandoning what is queued.
pub struct Delivery {
    queues: Vec<Arc<Queue>>,
    threads: Vec<JoinHandle<()>>,
    capacity: usize,
}

impl Delivery {
    pub fn start(receivers: Vec<Receiver>, opts: Options) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for receiver in receivers {
            let q = Arc::new(Queue {
                receiver,
                inner: Mutex::new(Inner {
                    items: VecDeque::new(),
                    closed: false,
                }),
                cond: Condvar::new(),
                stats: Stats::default(),
            });
            let (q2, o) = (q.clone(), opts.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("netmon-alerts".into())
                    .spawn(move || sender(&q2, &o))?,
            );
            queues.push(q);
        }
        Ok(Delivery {
            queues,
            threads,
            capacity: opts.queue_capacity.max(1),
        })
    }

    /// Queues `notices` for every receiver.
    pub fn send(&self, notices: &[Notice]) {
        if notices.is_empty() {
            return;
        }
        for q in &self.queues {
            let mut inner = q.lock();
            for n in notices {
                if q.receiver.kind == Kind::Alertmanager
                    && let Some(old) = inner.items.iter_mut().find(|o| o.labels == n.labels)
                {
                    *old = n.clone();
                    continue;
                }
                if inner.items.len() >= self.capacity {
                    inner.items.pop_front();
                    q.stats.dropped.fetch_add(1, Relaxed);
                }
                inner.items.push_back(n.clone());
            }
            drop(inner);
            q.cond.notify_all();
        }
    }

    /// Each receiver's URL, counts and queued alerts.
    pub fn stats(&self) -> impl Iterator<Item = (&Receiver, &Stats, usize)> {
        self.queues
            .iter()
            .map(|q| (&q.receiver, &q.stats, q.lock().items.len()))
    }

    pub fn stop(mut self) {
        self.close();
    }

    fn close(&mut self) {
        for q in &self.queues {
            q.lock().closed = true;
            q.cond.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.close();
    }
}

fn sender(q: &Queue, opts: &Options) {
    // A 401 or 403 is a refusal of the batch here (the receiver's
    // configuration, not a token the agent could send again).
    let client = Client::new(opts.timeout, false);
    let url = match q.receiver.kind {
        Kind::Alertmanager => format!("{}/api/v2/alerts", q.receiver.url.trim_end_matches('/')),
        Kind::Webhook { .. } => q.receiver.url.clone(),
    };
    let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
    loop {
        // The batch stays queued while it is posted: a newer notice of
        // the same alert replaces it there and is what goes out next.
        let batch: Vec<Notice> = {
            let mut inner = q.lock();
            while inner.items.is_empty() && !inner.closed {
                inner = q.cond.wait(inner).unwrap_or_else(|e| e.into_inner());
            }
            if inner.closed {
                return;
            }
            inner
                .items
                .iter()
                .take(opts.batch_max.max(1))
                .cloned()
                .collect()
        };
        let body = match &q.receiver.kind {
            Kind::Alertmanager => alertmanager_body(&batch),
            Kind::Webhook { .. } => webhook_body(&batch),
        };
        let signature = match &q.receiver.kind {
            Kind::Webhook { secret: Some(s) } => Some(signature(s, body.as_bytes())),
            _ => None,
        };
        let headers = [("Content-Type", "application/json")]
            .into_iter()
            .chain(signature.as_deref().map(|s| (SIGNATURE_HEADER, s)));
        match client.post(&url, headers, body.as_bytes()) {
            Posted::Ok => {
                q.stats.sent.fetch_add(batch.len() as u64, Relaxed);
                backoff.reset();
            }
            Posted::Refused(why) => {
                tracing::warn!(url = %q.receiver.url, alerts = batch.len(), "The alert receiver refused a batch: {why}");
                q.stats.rejected.fetch_add(batch.len() as u64, Relaxed);
            }
            Posted::Retry(why) => {
                q.stats.failures.fetch_add(1, Relaxed);
                let wait = backoff.step();
                tracing::warn!(url = %q.receiver.url, retry_in = ?wait, "Sending alerts failed: {why}");
                drop(pause(q.lock(), &q.cond, wait, |i| i.closed));
                continue;
            }
        }
        // Remove what was sent: the queue's front, unless dropped or
        // replaced meanwhile (then the newer notice stays to be sent).
        let mut inner = q.lock();
        for n in &batch {
            if inner.items.front() == Some(n) {
                inner.items.pop_front();
            } else if let Some(i) = inner.items.iter().position(|o| o == n) {
                inner.items.remove(i);
            }
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, body);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn alert_json(n: &Notice) -> Value {
    json!({
        "labels": n.labels,
        "annotations": n.annotations,
        "startsAt": units::time(n.starts_at),
        "endsAt": units::time(n.ends_at),
    })
}

/// Alertmanager's v2 `postableAlerts`.
pub fn alertmanager_body(batch: &[Notice]) -> String {
    Value::Array(batch.iter().map(alert_json).collect()).to_string()
}

/// The webhook body: `{"version": "1", "alerts": [{status, labels,
/// annotations, startsAt, endsAt, value}]}`.
pub fn webhook_body(batch: &[Notice]) -> String {
    let alerts: Vec<Value> = batch
        .iter()
        .map(|n| {
            let mut a = alert_json(n);
            a["status"] = json!(if n.state == State::Resolved {
                "resolved"
            } else {
                "firing"
            });
            a["value"] = json!(n.value);
            a
        })
        .collect();
    json!({"version": "1", "alerts": alerts}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
