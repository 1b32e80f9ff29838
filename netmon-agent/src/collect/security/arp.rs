//! ARP spoofing, MAC changes and gateway impersonation, judged from what
//! discovery already observes: the MACs that claimed each IPv4 address
//! (sweep replies and requests, the kernel's neighbour table, on-link
//! traffic; see [`crate::collect::discovery::claims`]), which discovery
//! publishes in its reading and this check reads through
//! [`super::super::Context::telemetry`]. The default gateways come from
//! the routing table (`<proc>/net/route`, read as the latency collector
//! does).
//!
//! For each address claimed by more than one MAC, only claims last seen
//! within `--security-arp-window` count:
//! - `gateway_impersonation` (critical): the address is a default
//!   gateway of its interface and a MAC other than the first one seen with
//!   it claims it;
//! - `arp_spoofing` (critical): two MACs claimed it in overlapping
//!   discovery cycles (each seen again after the other first was: both
//!   answer);
//! - `arp_mac_changed` (warning): one MAC after the other, the first not
//!   seen since (a replaced device or a re-assigned address looks the
//!   same: the evidence says so).
//!
//! - `gratuitous_arp_storm` (warning): one MAC announcing (gratuitous ARP:
//!   sender and target address the same) faster than
//!   `--security-garp-rate` a second over discovery's last cycle, from
//!   discovery's passive ARP listening
//!   ([`crate::collect::discovery::listen`]). A host sends a few at boot or
//!   failover; a spoofing tool keeps sending.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::{
    super::{
        Avail, CollectorName, Reading, State, Telemetry,
        discovery::{self, claims::Claim, claims::Contested},
        latency::routes,
        ser_secs,
    },
    Detail, Found, Kind,
};
use crate::{ifaces::format_mac, units};

/// A default gateway of the routing table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = SecurityGateway)]
pub struct Gateway {
    pub interface: String,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
}

/// What the ARP checks looked at.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SecurityArpStats)]
pub struct ArpStats {
    /// IPv4 addresses whose claimants discovery keeps, and the most it
    /// keeps (`--discovery-max-claims`).
    pub addresses: u64,
    pub max_addresses: u64,
    /// Addresses dropped to make room, and MACs dropped from an address
    /// claimed by more than four, since start.
    pub addresses_evicted_total: u64,
    pub macs_evicted_total: u64,
    /// Addresses claimed by more than one MAC (within discovery's forget
    /// time, whether or not within the window).
    pub contested: u64,
    /// `--security-arp-window`.
    #[serde(serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub window_seconds: Duration,
    /// The IPv4 default gateways (the gateway check is skipped when
    /// unavailable).
    pub gateways: Avail<Vec<Gateway>>,
    /// ARP frames discovery heard passively in its last cycle, and the
    /// senders of gratuitous ARP it could not count (beyond
    /// `--discovery-max-claims`); unavailable with the reason (no
    /// CAP_NET_RAW) when it cannot listen.
    pub heard: Avail<u64>,
    pub gratuitous_senders_dropped: u64,
}

/// Discovery's latest reading, or why there is none.
pub fn discovery(t: &Telemetry) -> Result<Arc<Reading<discovery::Report>>, String> {
    match t.slot(CollectorName::Discovery).state() {
        State::Disabled => Err(
            "discovery is turned off (--disable discovery): the ARP checks read its observations"
                .into(),
        ),
        State::Pending => Err("discovery has not finished its first cycle".into()),
        State::Ready(_) => t
            .get::<discovery::Discovery>()
            .ok_or_else(|| "discovery's reading is not of the expected type".into()),
    }
}

/// The IPv4 default gateways from `<proc>/net/route`.
pub fn gateways(proc: &Path) -> Avail<Vec<Gateway>> {
    let (routes, errors) = routes::default_routes(&proc.join("net"));
    if let Some((path, e)) = errors.iter().find(|(p, _)| p.ends_with("/route")) {
        return Avail::unavailable(format!("{path}: {e}"));
    }
    let mut out: Vec<Gateway> = routes
        .into_iter()
        .filter_map(|r| match r.gateway {
            IpAddr::V4(ip) => Some(Gateway {
                interface: r.iface,
                ip,
            }),
            IpAddr::V6(_) => None,
        })
        .collect();
    out.sort_by(|a, b| (&a.interface, a.ip).cmp(&(&b.interface, b.ip)));
    out.dedup();
    Avail::Value(out)
}

/// Runs the checks over discovery's report, adding findings to `out`.
pub fn scan(
    report: &discovery::Report,
    gateways: Avail<Vec<Gateway>>,
    window: Duration,
    garp_rate: f64,
    now: SystemTime,
    out: &mut Vec<Found>,
) -> ArpStats {
    let none = Vec::new();
    let gw = gateways.value().unwrap_or(&none);
    for c in &report.contested {
        judge(c, gw, window, now, out);
    }
    let passive = report.passive.value();
    if let Some(p) = passive {
        storms(p, garp_rate, out);
    }
    let s = report.claims;
    ArpStats {
        addresses: s.addresses as u64,
        max_addresses: s.max_addresses as u64,
        addresses_evicted_total: s.evicted_total,
        macs_evicted_total: s.macs_evicted_total,
        contested: report.contested.len() as u64,
        window_seconds: window,
        gateways,
        heard: match &report.passive {
            Avail::Value(p) => Avail::Value(p.frames),
            Avail::Unavailable { unavailable } => Avail::unavailable(unavailable.clone()),
        },
        gratuitous_senders_dropped: passive.map_or(0, |p| p.senders_dropped),
    }
}

/// A `gratuitous_arp_storm` for each MAC announcing faster than `rate` a
/// second over the cycle `p` covers.
pub fn storms(p: &discovery::listen::Passive, rate: f64, out: &mut Vec<Found>) {
    let Some(seconds) = p.seconds.filter(|s| *s > 0.0) else {
        return;
    };
    for g in &p.gratuitous {
        let r = g.frames as f64 / seconds;
        if r < rate {
            continue;
        }
        let ips: Vec<String> = g.ips.iter().map(ToString::to_string).collect();
        out.push(Found {
            kind: Kind::GratuitousArpStorm,
            key: format!("{}/{}", g.interface, format_mac(g.mac)),
            evidence: format!(
                "{} sent {} gratuitous ARPs on {} in {seconds:.1} s ({r:.1}/s, --security-garp-rate {rate}), announcing {}",
                format_mac(g.mac),
                g.frames,
                g.interface,
                ips.join(", ")
            ),
            detail: Detail {
                ip: ips.first().cloned(),
                macs: Some(vec![format_mac(g.mac)]),
                iface: Some(g.interface.clone()),
                ..Detail::default()
            },
        });
    }
}

/// `02:..:01 (first seen T, last seen T, by arp, neighbour)`.
fn describe(c: &Claim) -> String {
    let by: Vec<&str> = c
        .sources
        .iter()
        .map(|s| match s {
            discovery::inventory::SeenBy::Neighbour => "the neighbour table",
            discovery::inventory::SeenBy::Arp => "ARP",
            discovery::inventory::SeenBy::Ndp => "NDP",
            discovery::inventory::SeenBy::Traffic => "traffic",
        })
        .collect();
    format!(
        "{} (first seen {}, last seen {}, by {})",
        format_mac(c.mac),
        units::time(c.first_seen),
        units::time(c.last_seen),
        by.join(", ")
    )
}

fn overlap(a: &Claim, b: &Claim) -> bool {
    a.first_cycle <= b.last_cycle && b.first_cycle <= a.last_cycle
}

/// The finding one contested address makes, if any.
pub fn judge(
    c: &Contested,
    gateways: &[Gateway],
    window: Duration,
    now: SystemTime,
    out: &mut Vec<Found>,
) {
    let recent: Vec<&Claim> = c
        .claims
        .iter()
        .filter(|cl| now.duration_since(cl.last_seen).unwrap_or_default() < window)
        .collect();
    let found = |kind, macs: Vec<&Claim>, evidence| Found {
        kind,
        key: format!("{}/{}", c.interface, c.ip),
        evidence,
        detail: Detail {
            ip: Some(c.ip.to_string()),
            macs: Some(macs.iter().map(|m| format_mac(m.mac)).collect()),
            iface: Some(c.interface.clone()),
            ..Detail::default()
        },
    };
    let is_gateway = gateways
        .iter()
        .any(|g| g.interface == c.interface && g.ip == c.ip);
    if is_gateway {
        let Some(known) = c.claims.first() else {
            return;
        };
        let others: Vec<&Claim> = recent
            .iter()
            .copied()
            .filter(|cl| cl.mac != known.mac)
            .collect();
        if others.is_empty() {
            return;
        }
        let still = if recent.iter().any(|cl| cl.mac == known.mac) {
            "which still answers"
        } else {
            "which has not been seen within the window: a replaced gateway looks the same"
        };
        let list: Vec<String> = others.iter().map(|cl| describe(cl)).collect();
        let evidence = format!(
            "the default gateway {} of {} is claimed by {} besides {}, the first MAC seen with it, {still}",
            c.ip,
            c.interface,
            list.join(" and "),
            describe(known),
        );
        let macs = std::iter::once(known).chain(others).collect();
        out.push(found(Kind::GatewayImpersonation, macs, evidence));
        return;
    }
    if recent.len() < 2 {
        return;
    }
    let both: Vec<&Claim> = recent
        .iter()
        .copied()
        .filter(|a| recent.iter().any(|b| a.mac != b.mac && overlap(a, b)))
        .collect();
    if both.len() >= 2 {
        let list: Vec<String> = both.iter().map(|cl| describe(cl)).collect();
        let evidence = format!(
            "{} on {} is claimed by {} MACs at once (each seen again after the other appeared): {}",
            c.ip,
            c.interface,
            both.len(),
            list.join("; ")
        );
        out.push(found(Kind::ArpSpoofing, both, evidence));
        return;
    }
    // One after the other: the newest claimant, and the one before it.
    let Some(new) = recent
        .iter()
        .copied()
        .max_by_key(|cl| (cl.first_cycle, cl.first_seen))
    else {
        return;
    };
    let Some(before) = recent
        .iter()
        .copied()
        .filter(|cl| cl.mac != new.mac)
        .max_by_key(|cl| cl.last_seen)
    else {
        return;
    };
    let evidence = format!(
        "{} on {} moved from {} to {}; the earlier MAC has not been seen with it since: \
         a replaced device or a re-assigned address looks the same",
        c.ip,
        c.interface,
        describe(before),
        describe(new),
    );
    out.push(found(Kind::ArpMacChanged, vec![before, new], evidence));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{super::Severity, *};
    use crate::collect::discovery::inventory::SeenBy;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const WINDOW: Duration = Duration::from_secs(900);

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    /// A claim by `02:00:00:00:00:0<mac>` seen from cycle `c0` (at `s0`)
    /// to `c1` (at `s1`).
    fn claim(mac: u8, (c0, s0): (u64, u64), (c1, s1): (u64, u64)) -> Claim {
        Claim {
            mac: [2, 0, 0, 0, 0, mac],
            first_seen: t(s0),
            last_seen: t(s1),
            first_cycle: c0,
            last_cycle: c1,
            sources: BTreeSet::from([SeenBy::Arp]),
        }
    }

    fn contested(claims: Vec<Claim>) -> Contested {
        Contested {
            ifindex: 2,
            interface: "br0".into(),
            ip: IP,
            claims,
        }
    }

    fn judged(claims: Vec<Claim>, gateways: &[Gateway], now: u64) -> Vec<Found> {
        let mut out = Vec::new();
        judge(&contested(claims), gateways, WINDOW, t(now), &mut out);
        out
    }

    fn macs(f: &Found) -> Vec<String> {
        f.detail.macs.clone().unwrap()
    }

    #[test]
    fn two_macs_answering_in_overlapping_cycles_are_spoofing() {
        // The owner since cycle 1 and still answering at cycle 7; the
        // second appeared at cycle 5.
        let f = judged(
            vec![claim(1, (1, 0), (7, 70)), claim(2, (5, 50), (7, 70))],
            &[],
            80,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::ArpSpoofing);
        assert_eq!(f[0].kind.severity(), Severity::Critical);
        assert_eq!(macs(&f[0]), ["02:00:00:00:00:01", "02:00:00:00:00:02"]);
        assert_eq!(f[0].detail.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(f[0].detail.iface.as_deref(), Some("br0"));
        assert_eq!(f[0].key, "br0/10.0.0.1");
        assert!(
            f[0].evidence.starts_with(
                "10.0.0.1 on br0 is claimed by 2 MACs at once (each seen again after the other appeared): \
                 02:00:00:00:00:01 (first seen 2023-11-14T22:13:20.000Z, last seen 2023-11-14T22:14:30.000Z, by ARP); \
                 02:00:00:00:00:02 (first seen"
            ),
            "{}",
            f[0].evidence
        );
    }

    #[test]
    fn one_mac_after_the_other_is_a_change_not_spoofing() {
        let f = judged(
            vec![claim(1, (1, 0), (4, 40)), claim(2, (5, 50), (9, 90))],
            &[],
            95,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::ArpMacChanged);
        assert_eq!(f[0].kind.severity(), Severity::Warning);
        assert_eq!(macs(&f[0]), ["02:00:00:00:00:01", "02:00:00:00:00:02"]);
        assert!(
            f[0].evidence
                .contains("a replaced device or a re-assigned address looks the same"),
            "{}",
            f[0].evidence
        );
        // The owner answering again later: both answer, spoofing.
        let f = judged(
            vec![claim(1, (1, 0), (10, 100)), claim(2, (5, 50), (9, 90))],
            &[],
            105,
        );
        assert_eq!(f[0].kind, Kind::ArpSpoofing);
    }

    #[test]
    fn claims_older_than_the_window_do_not_count() {
        // The old MAC last seen 1000 s ago (window 900 s): old news.
        let f = judged(
            vec![claim(1, (1, 0), (4, 40)), claim(2, (5, 50), (99, 1040))],
            &[],
            1040,
        );
        assert!(f.is_empty(), "{f:?}");
        // Both old: nothing either, even overlapping.
        let f = judged(
            vec![claim(1, (1, 0), (7, 70)), claim(2, (5, 50), (7, 70))],
            &[],
            2000,
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn another_mac_on_the_gateway_s_address_is_impersonation() {
        let gw = [Gateway {
            interface: "br0".into(),
            ip: IP,
        }];
        let f = judged(
            vec![claim(1, (1, 0), (7, 70)), claim(2, (5, 50), (7, 70))],
            &gw,
            80,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::GatewayImpersonation);
        assert_eq!(f[0].kind.severity(), Severity::Critical);
        assert_eq!(macs(&f[0]), ["02:00:00:00:00:01", "02:00:00:00:00:02"]);
        assert!(
            f[0].evidence.starts_with(
                "the default gateway 10.0.0.1 of br0 is claimed by 02:00:00:00:00:02 (first seen"
            ) && f[0]
                .evidence
                .ends_with("the first MAC seen with it, which still answers"),
            "{}",
            f[0].evidence
        );
        // The gateway's own MAC gone quiet: still impersonation, said so.
        let f = judged(
            vec![claim(1, (1, 0), (1, 0)), claim(2, (5, 950), (7, 970))],
            &gw,
            1000,
        );
        assert_eq!(f[0].kind, Kind::GatewayImpersonation);
        assert!(f[0].evidence.ends_with("a replaced gateway looks the same"));
        // Only the gateway's own MAC recent: nothing.
        let f = judged(
            vec![claim(1, (1, 0), (9, 990)), claim(2, (5, 50), (5, 50))],
            &gw,
            1000,
        );
        assert!(f.is_empty(), "{f:?}");
        // The same address on another interface is not that gateway.
        let other = [Gateway {
            interface: "eth1".into(),
            ip: IP,
        }];
        let f = judged(
            vec![claim(1, (1, 0), (7, 70)), claim(2, (5, 50), (7, 70))],
            &other,
            80,
        );
        assert_eq!(f[0].kind, Kind::ArpSpoofing);
    }

    #[test]
    fn the_scan_reports_discovery_s_table_and_says_why_when_it_cannot() {
        let report = discovery::Report {
            contested: vec![contested(vec![
                claim(1, (1, 0), (7, 70)),
                claim(2, (5, 50), (7, 70)),
            ])],
            claims: discovery::claims::ClaimStats {
                addresses: 12,
                max_addresses: 8192,
                evicted_total: 3,
                macs_evicted_total: 1,
                cycle: 7,
            },
            ..discovery::Report::default()
        };
        let mut out = Vec::new();
        let s = scan(
            &report,
            Avail::Value(Vec::new()),
            WINDOW,
            1.0,
            t(80),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            (
                s.addresses,
                s.max_addresses,
                s.addresses_evicted_total,
                s.macs_evicted_total,
                s.contested
            ),
            (12, 8192, 3, 1, 1)
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["window_seconds"], 900.0);
        assert_eq!(json["gateways"], serde_json::json!([]));
        // Discovery off: the reason, not an empty result.
        let t = Telemetry::default();
        assert!(discovery(&t).unwrap_err().contains("--disable discovery"));
        t.slot(CollectorName::Discovery).set(State::Pending);
        assert_eq!(
            discovery(&t).unwrap_err(),
            "discovery has not finished its first cycle"
        );
    }

    #[test]
    fn a_mac_announcing_faster_than_the_rate_is_a_storm() {
        use discovery::listen::{Gratuitous, Passive};
        let g = |mac: u8, frames| Gratuitous {
            ifindex: 2,
            interface: "br0".into(),
            mac: [2, 0, 0, 0, 0, mac],
            ips: vec![IP, Ipv4Addr::new(10, 0, 0, 2)],
            frames,
        };
        let p = Passive {
            frames: 60,
            malformed: 0,
            gratuitous: vec![g(1, 3), g(2, 50)],
            senders_dropped: 0,
            seconds: Some(10.0),
        };
        let mut out = Vec::new();
        storms(&p, 1.0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let f = &out[0];
        assert_eq!(f.kind, Kind::GratuitousArpStorm);
        assert_eq!(f.kind.severity(), Severity::Warning);
        assert_eq!(f.key, "br0/02:00:00:00:00:02");
        assert_eq!(
            f.evidence,
            "02:00:00:00:00:02 sent 50 gratuitous ARPs on br0 in 10.0 s (5.0/s, \
             --security-garp-rate 1), announcing 10.0.0.1, 10.0.0.2"
        );
        assert_eq!(f.detail.ip.as_deref(), Some("10.0.0.1"));
        // The first cycle (no span yet) judges nothing.
        let mut out = Vec::new();
        storms(&Passive { seconds: None, ..p }, 1.0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn gateways_are_read_from_the_route_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(gateways(dir.path()).value().is_none());
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(
            dir.path().join("net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             br0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             br0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        )
        .unwrap();
        assert_eq!(
            gateways(dir.path()).value().unwrap(),
            &[Gateway {
                interface: "br0".into(),
                ip: IP
            }]
        );
    }
}
