//! The push and remote-write queues' counts on `/metrics`
//! (`netmon_push_*{url}`, `netmon_remote_write_*{url}`).

use std::sync::atomic::Ordering::Relaxed;

use crate::{metrics::Family, push::Outbox};

/// The family names and help of one kind of outbox.
pub struct Names {
    sent: &'static str,
    sent_bytes: &'static str,
    failures: &'static str,
    dropped: &'static str,
    rejected: &'static str,
    spool_errors: &'static str,
    queued: &'static str,
    queued_bytes: &'static str,
}

pub const PUSH: Names = Names {
    sent: "netmon_push_sent_total",
    sent_bytes: "netmon_push_sent_bytes_total",
    failures: "netmon_push_failures_total",
    dropped: "netmon_push_dropped_total",
    rejected: "netmon_push_rejected_total",
    spool_errors: "netmon_push_spool_errors_total",
    queued: "netmon_push_queued",
    queued_bytes: "netmon_push_queued_bytes",
};

pub const REMOTE_WRITE: Names = Names {
    sent: "netmon_remote_write_sent_total",
    sent_bytes: "netmon_remote_write_sent_bytes_total",
    failures: "netmon_remote_write_failures_total",
    dropped: "netmon_remote_write_dropped_total",
    rejected: "netmon_remote_write_rejected_total",
    spool_errors: "netmon_remote_write_spool_errors_total",
    queued: "netmon_remote_write_queued",
    queued_bytes: "netmon_remote_write_queued_bytes",
};

/// Each receiver's counters and queue, one sample per `url`.
pub fn encode_metrics(outbox: &Outbox, names: &Names) -> String {
    let mut counters = [
        Family::counter(names.sent, &["url"], "Bodies the receiver accepted."),
        Family::counter(
            names.sent_bytes,
            &["url"],
            "Bytes (compressed) the receiver accepted.",
        ),
        Family::counter(
            names.failures,
            &["url"],
            "Posts that failed and will be retried (no connection, timeout, 5xx, 408, 429, 401, 403).",
        ),
        Family::counter(
            names.dropped,
            &["url"],
            "Bodies dropped, oldest first, from a full queue.",
        ),
        Family::counter(
            names.rejected,
            &["url"],
            "Bodies the receiver refused for good (another 4xx), dropped.",
        ),
        Family::counter(
            names.spool_errors,
            &["url"],
            "Bodies that could not be written to or read from the queue on disk.",
        ),
    ];
    let mut queued = Family::gauge(
        names.queued,
        &["url"],
        "Bodies waiting in the queue on disk.",
    );
    let mut queued_bytes = Family::gauge(
        names.queued_bytes,
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
