//! Default gateways from the kernel's routing tables.
//!
//! Read from `/proc/net/route` and `/proc/net/ipv6_route` rather than over
//! rtnetlink: they are the kernel's own stable text interfaces, they follow
//! the reading thread's network namespace like netlink does, and reading
//! them needs no dependency or privilege. Their limit is that they show the
//! main table only, which is where default routes live on the hosts netmon
//! watches (policy routing tables are out of scope). The text is read by
//! [`crate::ifaces::route_lines`], as for the system collector; this keeps
//! the routes that are up and go through a gateway.

use std::{fs, io, net::IpAddr, path::Path};

use crate::ifaces::{RTF_GATEWAY, RTF_REJECT, RTF_UP, RouteLine, ipv6_route_lines, route_lines};

/// A default route through a gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub iface: String,
    pub gateway: IpAddr,
}

/// Default routes of both families, read from `proc_net` (normally
/// `/proc/net`). A family whose file cannot be read yields an error for it
/// and the other family's routes still come back.
pub fn default_routes(proc_net: &Path) -> (Vec<DefaultRoute>, Vec<(String, io::Error)>) {
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    for (file, parse) in [
        ("route", parse_route as fn(&str) -> Vec<DefaultRoute>),
        ("ipv6_route", parse_ipv6_route),
    ] {
        let path = proc_net.join(file);
        match fs::read_to_string(&path) {
            Ok(text) => routes.extend(parse(&text)),
            Err(e) => errors.push((path.display().to_string(), e)),
        }
    }
    (routes, errors)
}

fn usable(flags: u32) -> bool {
    flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY && flags & RTF_REJECT == 0
}

/// A default route that is up, not a reject route, and goes through a
/// gateway; lines that are malformed or not that are skipped.
fn default_via_gateway(line: Result<RouteLine<'_>, &str>) -> Option<DefaultRoute> {
    let l = line.ok()?;
    let gateway = l.gateway.filter(|g| !g.is_unspecified())?;
    (l.is_default() && l.flags.is_some_and(usable)).then(|| DefaultRoute {
        iface: l.iface.to_owned(),
        gateway,
    })
}

/// Default IPv4 routes from `/proc/net/route` (see [`route_lines`]).
pub fn parse_route(text: &str) -> Vec<DefaultRoute> {
    route_lines(text).filter_map(default_via_gateway).collect()
}

/// Default IPv6 routes from `/proc/net/ipv6_route` (see [`ipv6_route_lines`]).
pub fn parse_ipv6_route(text: &str) -> Vec<DefaultRoute> {
    ipv6_route_lines(text)
        .filter_map(default_via_gateway)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As read on a little-endian host with a default route via 10.0.0.2
    /// on eth0, a down default route, and a host route.
    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0200000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t00000000\t0100A8C0\t0002\t0\t0\t100\t00000000\t0\t0\t0
eth2\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0
garbage line
eth3\tzz\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
";

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv4_default_routes_via_a_gateway_only() {
        assert_eq!(
            parse_route(ROUTE),
            vec![DefaultRoute {
                iface: "eth0".into(),
                gateway: "10.0.0.2".parse().unwrap()
            }]
        );
        assert_eq!(parse_route(""), vec![]);
    }

    /// A default route via fe80::1 on eth0, one via fd00::fe on eth1, the
    /// kernel's unreachable default in lo (RTF_REJECT), and a connected
    /// prefix.
    const IPV6_ROUTE: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd0000000000000000000000000000fe 00000400 00000001 00000000 00450003     eth1
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000000000000000002 00000400 00000001 00000000 00000003     eth2
";

    #[test]
    fn ipv6_default_routes_via_a_gateway_only() {
        assert_eq!(
            parse_ipv6_route(IPV6_ROUTE),
            vec![
                DefaultRoute {
                    iface: "eth0".into(),
                    gateway: "fe80::1".parse().unwrap()
                },
                DefaultRoute {
                    iface: "eth1".into(),
                    gateway: "fd00::fe".parse().unwrap()
                },
            ],
            "the lo reject route and the 31-digit address are skipped"
        );
    }

    #[test]
    fn reads_both_files_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ipv6_route"), IPV6_ROUTE).unwrap();
        let (routes, errors) = default_routes(dir.path());
        assert_eq!(routes.len(), 2);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].0.ends_with("/route"), "{errors:?}");
    }
}
