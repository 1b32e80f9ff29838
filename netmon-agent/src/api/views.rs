//! JSON shapes of the API's answers. Times are RFC 3339 (UTC, milliseconds);
//! byte counts are as documented in the README ("What a count includes").

use std::{net::IpAddr, time::SystemTime};

use serde::Serialize;

use crate::{
    collect::{
        discovery::{
            DeviceReport,
            inventory::{Address, SeenBy, Status},
        },
        vendor,
    },
    ifaces::format_mac,
    rates::Meter,
    snapshot::Snapshot,
    traffic::{Device, Flow, key_ip},
    units::{direction_name, protocol_name, time},
};

/// Totals and rate of one direction of traffic.
#[derive(Serialize, utoipa::ToSchema)]
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

/// One device: what the traffic core counted for it (zero when it sent and
/// received nothing the programs saw) merged with what discovery knows of
/// it (null or empty when discovery has no entry for it).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub interface: String,
    pub ifindex: u32,
    pub mac: String,
    /// The group bit is set: broadcast or multicast, not one device.
    pub group: bool,
    /// The MAC is one of this host's own interfaces.
    #[serde(rename = "self")]
    pub own: bool,
    /// The IEEE registrant of the MAC's prefix; null when unregistered or
    /// locally administered.
    pub vendor: Option<&'static str>,
    pub locally_administered: bool,
    pub hostname: Option<String>,
    /// The name an admin gave it (`PUT /api/v1/devices/{mac}/label`),
    /// shown instead of the hostname; null when none.
    pub name: Option<String>,
    /// The admin's note about it; null when none.
    pub note: Option<String>,
    /// active, idle or gone; null when discovery has no entry for it.
    pub status: Option<Status>,
    /// Every address known for it: the traffic core's first (most recent
    /// first), then discovery's.
    #[schema(value_type = Vec<String>)]
    pub ips: Vec<IpAddr>,
    /// Discovery's addresses, each with when it was last seen.
    pub addresses: Vec<Address>,
    /// Where it was seen: neighbour, arp, ndp, traffic.
    pub sources: Vec<SeenBy>,
    /// Frames this MAC sent.
    pub tx: Traffic,
    /// Frames sent to this MAC.
    pub rx: Traffic,
    pub first_seen: String,
    pub last_seen: String,
}

impl DeviceView {
    /// Merges the traffic core's and discovery's view of one (interface,
    /// MAC); at least one of them is present.
    pub fn merged(
        s: &Snapshot,
        traffic: Option<&Device>,
        found: Option<&DeviceReport>,
        own: bool,
    ) -> Self {
        let (ifindex, mac) = match (traffic, found) {
            (Some(d), _) => (d.ifindex, d.mac),
            (None, Some(f)) => (f.ifindex, f.mac_bytes),
            (None, None) => (0, [0; 6]),
        };
        let mut ips: Vec<IpAddr> = traffic
            .map(|d| d.ips.iter().copied().collect())
            .unwrap_or_default();
        let mut sources: Vec<SeenBy> = found.map(|f| f.sources.clone()).unwrap_or_default();
        if traffic.is_some() && !sources.contains(&SeenBy::Traffic) {
            sources.push(SeenBy::Traffic);
            sources.sort();
        }
        let addresses = found.map(|f| f.addresses.clone()).unwrap_or_default();
        for a in &addresses {
            if !ips.contains(&a.ip) {
                ips.push(a.ip);
            }
        }
        let times = traffic
            .map(|d| (d.first_seen, d.last_seen))
            .into_iter()
            .chain(found.map(|f| (f.first_seen, f.last_seen)));
        let first_seen = times
            .clone()
            .map(|t| t.0)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let last_seen = times.map(|t| t.1).max().unwrap_or(SystemTime::UNIX_EPOCH);
        let zero = Meter::default();
        DeviceView {
            interface: s.iface_name(ifindex),
            ifindex,
            mac: format_mac(mac),
            group: mac[0] & 1 != 0,
            own,
            vendor: found.map_or_else(|| vendor::vendor(mac), |f| f.vendor),
            locally_administered: vendor::locally_administered(mac),
            hostname: found.and_then(|f| f.hostname.clone()),
            name: None,
            note: None,
            status: found.map(|f| f.status),
            ips,
            addresses,
            sources,
            tx: traffic.map_or(&zero, |d| &d.tx).into(),
            rx: traffic.map_or(&zero, |d| &d.rx).into(),
            first_seen: time(first_seen),
            last_seen: time(last_seen),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowView {
    pub interface: String,
    pub ifindex: u32,
    /// `ingress` (received by the interface) or `egress` (sent).
    pub direction: &'static str,
    /// tcp, udp, icmp, icmpv6 or other.
    pub protocol: &'static str,
    pub protocol_number: u8,
    #[schema(value_type = String)]
    pub src: IpAddr,
    #[schema(value_type = String)]
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
