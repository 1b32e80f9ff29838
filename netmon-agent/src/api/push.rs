//! The push queues' counts on `/metrics` (`netmon_push_*{url}`).

use std::sync::atomic::Ordering::Relaxed;

use crate::{metrics::Family, push::Outbox};

/// Each receiver's counters and queue, one sample per `url`.
pub fn encode_metrics(outbox: &Outbox) -> String {
    let mut counters = [
        Family::counter(
            "netmon_push_sent_total",
            &["url"],
            "Snapshots the receiver accepted.",
        ),
        Family::counter(
            "netmon_push_sent_bytes_total",
            &["url"],
            "Bytes of snapshots (gzip) the receiver accepted.",
        ),
        Family::counter(
            "netmon_push_failures_total",
            &["url"],
            "Pushes that failed and will be retried (no connection, timeout, 5xx, 408, 429, 401, 403).",
        ),
        Family::counter(
            "netmon_push_dropped_total",
            &["url"],
            "Snapshots dropped, oldest first, from a full queue (--push-queue-size).",
        ),
        Family::counter(
            "netmon_push_rejected_total",
            &["url"],
            "Snapshots the receiver refused for good (another 4xx), dropped.",
        ),
        Family::counter(
            "netmon_push_spool_errors_total",
            &["url"],
            "Snapshots that could not be written to or read from the queue on disk.",
        ),
    ];
    let mut queued = Family::gauge(
        "netmon_push_queued",
        &["url"],
        "Snapshots waiting in the queue on disk.",
    );
    let mut queued_bytes = Family::gauge(
        "netmon_push_queued_bytes",
        &["url"],
        "Bytes waiting in the queue on disk.",
    );
    for (url, stats, items, bytes) in outbox.stats() {
        let values = [
            &stats.sent,
            &stats.sent_bytes,
            &stats.failures,
            &stats.dropped,
            &stats.rejected,
            &stats.spool_errors,
        ];
        for (family, value) in counters.iter_mut().zip(values) {
            family.int(&[url], value.load(Relaxed));
        }
        queued.int(&[url], items as u64);
        queued_bytes.int(&[url], bytes);
    }
    let mut out = String::new();
    for family in counters.iter().chain([&queued, &queued_bytes]) {
        family.write(&mut out);
    }
    out
}
