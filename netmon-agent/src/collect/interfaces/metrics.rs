//! The interfaces collector's families: the kernel's per-interface
//! counters, state, MTU and speed.

use super::{self as interfaces};
use crate::exposition::Family;

pub(super) fn families(r: &interfaces::Report, out: &mut Vec<Family>) {
    const DEV: &[&str] = &["device"];
    let Some(ifaces) = r.interfaces.value() else {
        return;
    };
    let mut c = [
        Family::counter(
            "netmon_network_receive_bytes_total",
            DEV,
            "Bytes received, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_receive_packets_total",
            DEV,
            "Packets received, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_receive_errs_total",
            DEV,
            "Receive errors, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_receive_drop_total",
            DEV,
            "Received packets dropped, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_bytes_total",
            DEV,
            "Bytes sent, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_packets_total",
            DEV,
            "Packets sent, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_errs_total",
            DEV,
            "Transmit errors, as the kernel counts them.",
        ),
        Family::counter(
            "netmon_network_transmit_drop_total",
            DEV,
            "Packets dropped on transmit, as the kernel counts them.",
        ),
    ];
    let mut up = Family::gauge(
        "netmon_network_up",
        DEV,
        "1 when the interface's operstate is up, else 0.",
    );
    let mut operstate = Family::gauge(
        "netmon_network_operstate",
        &["device", "operstate"],
        "1, labelled with the interface's operstate (up, down, unknown, dormant...).",
    );
    let mut mtu = Family::gauge("netmon_network_mtu_bytes", DEV, "The interface's MTU.");
    let mut speed = Family::gauge(
        "netmon_network_speed_bytes",
        DEV,
        "The link speed in bytes per second.",
    );
    for i in ifaces {
        let l = [i.name.as_str()];
        if let Some(k) = i.counters.value() {
            for (f, v) in c.iter_mut().zip([
                k.rx_bytes,
                k.rx_packets,
                k.rx_errors,
                k.rx_dropped,
                k.tx_bytes,
                k.tx_packets,
                k.tx_errors,
                k.tx_dropped,
            ]) {
                f.int(&l, v);
            }
        }
        up.int(&l, u64::from(i.oper_state == "up"));
        operstate.int(&[i.name.as_str(), i.oper_state.as_str()], 1);
        if let Some(m) = i.mtu.value() {
            mtu.int(&l, u64::from(*m));
        }
        if let Some(s) = i.speed_mbps.value() {
            speed.int(&l, s.saturating_mul(1_000_000) / 8);
        }
    }
    out.extend(c);
    out.extend([up, operstate, mtu, speed]);
}
