//! JSON shapes of the API's answers. Times are RFC 3339 (UTC, milliseconds);
//! byte counts are as documented in the README ("What a count includes").

use std::{net::IpAddr, time::SystemTime};

use netmon_common::{direction, proto};
use serde::Serialize;

use crate::{
    ifaces::format_mac,
    rates::Meter,
    snapshot::Snapshot,
    traffic::{Device, Flow, key_ip},
};

/// RFC 3339 with milliseconds, UTC.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Totals and rate of one direction of traffic.
#[derive(Serialize)]
pub struct Traffic {
    pub bytes: u64,
    pub packets: u64,
    pub bits_per_second: f64,
    pub packets_per_second: f64,
}

impl From<&Meter> for Traffic {
    fn from(m: &Meter) -> Self {
        Traffic {
            bytes: m.total.bytes,
            packets: m.total.packets,
            bits_per_second: m.rate.bits_per_second,
            packets_per_second: m.rate.packets_per_second,
        }
    }
}

#[derive(Serialize)]
pub struct DeviceView {
    pub interface: String,
    pub ifindex: u32,
    pub mac: String,
    /// The group bit is set: broadcast or multicast, not one device.
    pub group: bool,
    pub ips: Vec<IpAddr>,
    /// Frames this MAC sent.
    pub tx: Traffic,
    /// Frames sent to this MAC.
    pub rx: Traffic,
    pub first_seen: String,
    pub last_seen: String,
}

impl DeviceView {
    pub fn new(s: &Snapshot, d: &Device) -> Self {
        DeviceView {
            interface: s.iface_name(d.ifindex),
            ifindex: d.ifindex,
            mac: format_mac(d.mac),
            group: d.mac[0] & 1 != 0,
            ips: d.ips.iter().copied().collect(),
            tx: (&d.tx).into(),
            rx: (&d.rx).into(),
            first_seen: time(d.first_seen),
            last_seen: time(d.last_seen),
        }
    }
}

#[derive(Serialize)]
pub struct FlowView {
    pub interface: String,
    pub ifindex: u32,
    /// `ingress` (received by the interface) or `egress` (sent).
    pub direction: &'static str,
    /// tcp, udp, icmp, icmpv6 or other.
    pub protocol: &'static str,
    pub protocol_number: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_mac: String,
    pub dst_mac: String,
    #[serde(flatten)]
    pub traffic: Traffic,
    pub first_seen: String,
    pub last_seen: String,
}

impl FlowView {
    pub fn new(s: &Snapshot, f: &Flow) -> Self {
        let k = &f.key;
        FlowView {
            interface: s.iface_name(k.ifindex),
            ifindex: k.ifindex,
            direction: direction_name(k.direction),
            protocol: protocol_name(k.proto),
            protocol_number: k.proto,
            src: key_ip(k.src),
            dst: key_ip(k.dst),
            src_mac: format_mac(k.src_mac),
            dst_mac: format_mac(k.dst_mac),
            traffic: (&f.meter).into(),
            first_seen: time(f.first_seen),
            last_seen: time(f.last_seen),
        }
    }
}

pub fn direction_name(d: u8) -> &'static str {
    if d == direction::EGRESS {
        "egress"
    } else {
        "ingress"
    }
}

pub fn protocol_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        _ => "other",
    }
}
