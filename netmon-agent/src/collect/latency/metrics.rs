//! The latency collector's families: round trips, loss and probes per
//! target.

use super::{self as latency};
use crate::exposition::Family;

pub(super) fn families(r: &latency::Report, out: &mut Vec<Family>) {
    const T: &[&str] = &["target"];
    let mut rtt = [
        Family::gauge(
            "netmon_latency_rtt_min_seconds",
            T,
            "Shortest ICMP echo round trip of the last latency cycle.",
        ),
        Family::gauge(
            "netmon_latency_rtt_avg_seconds",
            T,
            "Mean ICMP echo round trip of the last latency cycle.",
        ),
        Family::gauge(
            "netmon_latency_rtt_max_seconds",
            T,
            "Longest ICMP echo round trip of the last latency cycle.",
        ),
        Family::gauge(
            "netmon_latency_rtt_stddev_seconds",
            T,
            "Population standard deviation of the last latency cycle's round trips.",
        ),
    ];
    let mut loss = Family::gauge(
        "netmon_latency_loss_ratio",
        T,
        "Share of the last latency cycle's requests without a reply, 0 to 1.",
    );
    let mut sent = Family::gauge(
        "netmon_latency_probes_sent",
        T,
        "Echo requests attempted in the last latency cycle.",
    );
    let mut received = Family::gauge(
        "netmon_latency_probes_received",
        T,
        "Echo replies received in the last latency cycle.",
    );
    for t in &r.targets {
        let target = match &t.interface {
            Some(i) if t.address.is_ipv6() => format!("{}%{i}", t.address),
            _ => t.address.to_string(),
        };
        let l = [target.as_str()];
        if let Some(s) = t.rtt.value() {
            for (f, v) in rtt.iter_mut().zip([
                s.min_seconds,
                s.avg_seconds,
                s.max_seconds,
                s.stddev_seconds,
            ]) {
                f.float(&l, v);
            }
        }
        if let Some(p) = t.loss_percent.value() {
            loss.float(&l, p / 100.0);
        }
        sent.int(&l, u64::from(t.sent));
        received.int(&l, u64::from(t.received));
    }
    out.extend(rtt);
    out.extend([loss, sent, received]);
}
