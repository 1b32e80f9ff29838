//! The traffic core's families: devices, watched interfaces, the kernel
//! maps, the agent's tables, the datapath's counters and (with
//! `--metrics-flows`) flows.

use std::{collections::HashMap, net::IpAddr};

use super::{Family, Limits, Names};
use crate::{
    collect::{
        Reading,
        discovery::{self, inventory::Status},
    },
    ifaces::format_mac,
    snapshot::Snapshot,
    traffic::key_ip,
    units::{direction_name, protocol_name},
};

/// The address a device's series are labelled with: its first IPv4, else
/// its first address, else "".
fn device_ip(ips: impl IntoIterator<Item = IpAddr> + Clone) -> String {
    ips.clone()
        .into_iter()
        .find(IpAddr::is_ipv4)
        .or_else(|| ips.into_iter().next())
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

pub(super) fn families(
    s: &Snapshot,
    discovery: Option<&Reading<discovery::Report>>,
    limits: &Limits,
    names: &Names,
    out: &mut Vec<Family>,
) {
    const DEV: &[&str] = &["interface", "mac", "ip", "name"];
    let found: HashMap<(u32, [u8; 6]), &discovery::DeviceReport> = discovery
        .iter()
        .flat_map(|r| &r.report.devices)
        .map(|d| ((d.ifindex, d.mac_bytes), d))
        .collect();
    let mut devices: Vec<_> = s
        .devices
        .iter()
        .map(|d| (d, found.get(&(d.ifindex, d.mac)).copied()))
        .filter(|(_, f)| f.is_none_or(|f| f.status != Status::Gone))
        .collect();
    let listed = devices.len();
    // Busiest first; ties in a stable order so the kept set does not flap.
    devices.sort_by_key(|(d, _)| {
        (
            std::cmp::Reverse(d.rx.total.bytes.saturating_add(d.tx.total.bytes)),
            d.ifindex,
            d.mac,
        )
    });
    devices.truncate(limits.max_devices);

    let mut rx_bytes = Family::counter(
        "netmon_device_receive_bytes_total",
        DEV,
        "Bytes of frames sent to the device (destination MAC), as the eBPF programs counted them.",
    );
    let mut rx_packets = Family::counter(
        "netmon_device_receive_packets_total",
        DEV,
        "Frames sent to the device (destination MAC).",
    );
    let mut tx_bytes = Family::counter(
        "netmon_device_transmit_bytes_total",
        DEV,
        "Bytes of frames the device sent (source MAC).",
    );
    let mut tx_packets = Family::counter(
        "netmon_device_transmit_packets_total",
        DEV,
        "Frames the device sent (source MAC).",
    );
    for (d, f) in &devices {
        let iface = s.iface_name(d.ifindex);
        let mac = format_mac(d.mac);
        let ip = if d.ips.is_empty() {
            device_ip(f.iter().flat_map(|f| f.addresses.iter().map(|a| a.ip)))
        } else {
            device_ip(d.ips.iter().copied())
        };
        let name = names
            .get(&d.mac)
            .map(String::as_str)
            .or_else(|| f.and_then(|f| f.hostname.as_deref()))
            .unwrap_or("");
        let labels = [iface.as_str(), mac.as_str(), ip.as_str(), name];
        rx_bytes.int(&labels, d.rx.total.bytes);
        rx_packets.int(&labels, d.rx.total.packets);
        tx_bytes.int(&labels, d.tx.total.bytes);
        tx_packets.int(&labels, d.tx.total.packets);
    }
    out.extend([rx_bytes, rx_packets, tx_bytes, tx_packets]);

    let mut count = Family::gauge(
        "netmon_devices",
        &[],
        "Devices (interface, MAC) the traffic core currently tracks, gone ones excluded.",
    );
    let mut dropped = Family::gauge(
        "netmon_device_series_dropped",
        &[],
        "Devices left out of the device series by --metrics-max-devices.",
    );
    if s.updated.is_some() {
        count.int(&[], listed as u64);
        dropped.int(&[], (listed - devices.len()) as u64);
    }
    out.extend([count, dropped]);

    const IF: &[&str] = &["interface"];
    let mut f = [
        Family::counter(
            "netmon_interface_receive_bytes_total",
            IF,
            "Bytes of frames received on a watched interface, as netmon's ingress hook counted them.",
        ),
        Family::counter(
            "netmon_interface_receive_packets_total",
            IF,
            "Frames received on a watched interface (ingress hook).",
        ),
        Family::counter(
            "netmon_interface_transmit_bytes_total",
            IF,
            "Bytes of frames sent on a watched interface, as netmon's egress hook counted them.",
        ),
        Family::counter(
            "netmon_interface_transmit_packets_total",
            IF,
            "Frames sent on a watched interface (egress hook).",
        ),
    ];
    for i in &s.interfaces {
        let l = [i.name.as_str()];
        f[0].int(&l, i.totals.rx.total.bytes);
        f[1].int(&l, i.totals.rx.total.packets);
        f[2].int(&l, i.totals.tx.total.bytes);
        f[3].int(&l, i.totals.tx.total.packets);
    }
    out.extend(f);

    if s.updated.is_some() {
        const MAP: &[&str] = &["map"];
        let mut entries = Family::gauge("netmon_map_entries", MAP, "Entries in a kernel map.");
        let mut capacity = Family::gauge(
            "netmon_map_capacity_entries",
            MAP,
            "A kernel map's max_entries.",
        );
        let mut inserts = Family::counter(
            "netmon_map_inserts_total",
            MAP,
            "Entries the eBPF programs created in a kernel map.",
        );
        let mut deleted = Family::counter(
            "netmon_map_idle_deletions_total",
            MAP,
            "Entries the agent deleted from a kernel map because they were idle.",
        );
        let mut evictions = Family::counter(
            "netmon_map_evictions_total",
            MAP,
            "Entries the kernel evicted from a full LRU map.",
        );
        for (name, m) in [("mac", s.mac_map), ("flow", s.flow_map)] {
            entries.int(&[name], m.entries);
            capacity.int(&[name], m.capacity);
            inserts.int(&[name], m.inserts);
            deleted.int(&[name], m.deleted);
            evictions.int(&[name], m.evictions);
        }
        out.extend([entries, capacity, inserts, deleted, evictions]);
        let mut used = Family::gauge(
            "netmon_datapath_cache_slots_used",
            &[],
            "Flow-cache slots (one per flow and CPU) the last interval used.",
        );
        used.int(&[], s.flow_cache.slots_used);
        let mut slots = Family::gauge(
            "netmon_datapath_cache_slots",
            &[],
            "Flow-cache slots per interval, all CPUs (0: the cache is off).",
        );
        slots.int(&[], s.flow_cache.capacity);
        out.extend([used, slots]);

        const TABLE: &[&str] = &["table"];
        let mut entries = Family::gauge(
            "netmon_table_entries",
            TABLE,
            "Entries in one of the agent's tables (flows, devices).",
        );
        let mut capacity = Family::gauge(
            "netmon_table_capacity_entries",
            TABLE,
            "Most entries the table holds (--max-flows, --max-devices).",
        );
        let mut evictions = Family::counter(
            "netmon_table_evictions_total",
            TABLE,
            "Entries evicted from a full table, least recently active first.",
        );
        for (name, t) in [("flows", s.flow_table), ("devices", s.device_table)] {
            entries.int(&[name], t.entries);
            capacity.int(&[name], t.capacity);
            evictions.int(&[name], t.evictions);
        }
        out.extend([entries, capacity, evictions]);

        let mut other = [
            Family::counter(
                "netmon_interface_other_flows_receive_bytes_total",
                IF,
                "Bytes received in flows no longer listed: evicted from the full flow table, or counted by the datapath without a flow.",
            ),
            Family::counter(
                "netmon_interface_other_flows_receive_packets_total",
                IF,
                "Packets received in flows no longer listed.",
            ),
            Family::counter(
                "netmon_interface_other_flows_transmit_bytes_total",
                IF,
                "Bytes sent in flows no longer listed.",
            ),
            Family::counter(
                "netmon_interface_other_flows_transmit_packets_total",
                IF,
                "Packets sent in flows no longer listed.",
            ),
            Family::counter(
                "netmon_interface_evicted_flows_total",
                IF,
                "Flows on the interface evicted from the full flow table.",
            ),
        ];
        for i in &s.interfaces {
            let (l, o) = ([i.name.as_str()], i.totals.other);
            other[0].int(&l, o.rx.bytes);
            other[1].int(&l, o.rx.packets);
            other[2].int(&l, o.tx.bytes);
            other[3].int(&l, o.tx.packets);
            other[4].int(&l, o.evicted_flows);
        }
        out.extend(other);

        let mut written = Family::gauge(
            "netmon_history_flow_series_this_hour",
            &[],
            "Distinct flow series the history wrote this hour (at most --store-flow-series-per-hour).",
        );
        written.int(&[], s.flow_series.this_hour);
        let mut aggregated = Family::counter(
            "netmon_history_flow_samples_aggregated_total",
            &[],
            "Flow samples the history added to an interface's `other` flow series because the hour's series cap was reached.",
        );
        aggregated.int(&[], s.flow_series.aggregated);
        out.extend([written, aggregated]);

        let g = s.globals;
        for (name, help, v) in [
            (
                "netmon_frames_total",
                "Frames the eBPF programs saw, on every watched interface and hook.",
                g.packets,
            ),
            (
                "netmon_frame_bytes_total",
                "Bytes of the frames the eBPF programs saw.",
                g.bytes,
            ),
            (
                "netmon_frames_non_ip_total",
                "Frames whose EtherType is neither IPv4 nor IPv6 (ARP included).",
                g.non_ip,
            ),
            ("netmon_frames_arp_total", "ARP frames.", g.arp),
            (
                "netmon_frames_vlan_total",
                "Frames with one or two VLAN tags.",
                g.vlan,
            ),
            (
                "netmon_frames_malformed_total",
                "Frames too short for a header they announce, or with an impossible header field.",
                g.malformed,
            ),
            (
                "netmon_frames_ipv6_ext_limit_total",
                "IPv6 packets whose extension-header chain was longer than the programs walk.",
                g.ipv6_ext_limit,
            ),
            (
                "netmon_map_update_failures_total",
                "Kernel map updates the eBPF programs could not make.",
                g.map_update_failed,
            ),
            (
                "netmon_datapath_cache_misses_total",
                "IP frames that found no flow-cache slot (their bucket was full of other flows).",
                g.cache_misses,
            ),
            (
                "netmon_datapath_flows_aggregated_total",
                "IP frames counted in their MAC pair's aggregate, not their flow: the CPU's flow-map inserts for the interval were spent.",
                g.flows_aggregated,
            ),
        ] {
            let mut f = Family::counter(name, &[], help);
            f.int(&[], v);
            out.push(f);
        }
    }

    if limits.flows {
        flow_families(s, limits.max_flows, out);
    }
}

fn flow_families(s: &Snapshot, max: usize, out: &mut Vec<Family>) {
    const FLOW: &[&str] = &["interface", "direction", "protocol", "src", "dst"];
    // The snapshot lists the top flows by bytes (at least LISTED_FLOWS of
    // them); the rest are counted as dropped.
    let mut flows: Vec<_> = s.flows.iter().collect();
    flows.sort_by_key(|f| (std::cmp::Reverse(f.meter.total.bytes), f.key.ifindex));
    let listed = (s.flow_table.entries as usize).max(flows.len());
    flows.truncate(max);
    let kept = flows.len();
    let mut bytes = Family::counter(
        "netmon_flow_bytes_total",
        FLOW,
        "Bytes of one IP conversation (only with --metrics-flows).",
    );
    let mut packets = Family::counter(
        "netmon_flow_packets_total",
        FLOW,
        "Packets of one IP conversation (only with --metrics-flows).",
    );
    for f in flows {
        let k = &f.key;
        let iface = s.iface_name(k.ifindex);
        let (src, dst) = (key_ip(k.src).to_string(), key_ip(k.dst).to_string());
        let l = [
            iface.as_str(),
            direction_name(k.direction),
            protocol_name(k.proto),
            src.as_str(),
            dst.as_str(),
        ];
        bytes.int(&l, f.meter.total.bytes);
        packets.int(&l, f.meter.total.packets);
    }
    let mut dropped = Family::gauge(
        "netmon_flow_series_dropped",
        &[],
        "Flows left out of the flow series by --metrics-max-flows.",
    );
    dropped.int(&[], (listed - kept) as u64);
    out.extend([bytes, packets, dropped]);
}
