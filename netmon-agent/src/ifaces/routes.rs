//! The kernel's route tables as text, `/proc/net/route` and
//! `/proc/net/ipv6_route`: one reader of their columns for every caller
//! (the system collector's primary interfaces, the latency collector's
//! gateways), each of which chooses which routes count.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `RTF_UP`, `RTF_GATEWAY` and `RTF_REJECT` from `<linux/route.h>`.
pub const RTF_UP: u32 = 0x0001;
pub const RTF_GATEWAY: u32 = 0x0002;
pub const RTF_REJECT: u32 = 0x0200;

/// One line of `/proc/net/route` or `/proc/net/ipv6_route`: the columns
/// callers use, each `None` when it is not the number the kernel prints.
/// Callers choose which routes count; this only reads the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLine<'a> {
    /// The line as read, for messages.
    pub line: &'a str,
    pub iface: &'a str,
    pub dest: Option<IpAddr>,
    /// The prefix length (IPv6), or the number of bits set in the mask
    /// (IPv4).
    pub prefix_len: Option<u8>,
    pub gateway: Option<IpAddr>,
    pub flags: Option<u32>,
}

impl RouteLine<'_> {
    /// Destination `0.0.0.0/0` or `::/0`.
    pub fn is_default(&self) -> bool {
        self.dest.is_some_and(|d| d.is_unspecified()) && self.prefix_len == Some(0)
    }
}

/// The lines of `/proc/net/route` after its header, blank ones skipped; a
/// line with fewer than its 8 first columns (Iface Destination Gateway
/// Flags RefCnt Use Metric Mask) is `Err(line)`. Addresses are the
/// `__be32` printed as a host-order hex number, so their native-endian
/// bytes are the address.
pub fn route_lines(text: &str) -> impl Iterator<Item = Result<RouteLine<'_>, &str>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [iface, dest, gateway, flags, _, _, _, mask, ..] = f.as_slice() else {
                return Err(line);
            };
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            let v4 = |s: &str| hex(s).map(|a| IpAddr::V4(Ipv4Addr::from(a.to_ne_bytes())));
            Ok(RouteLine {
                line,
                iface,
                dest: v4(dest),
                prefix_len: hex(mask).map(|m| m.count_ones() as u8),
                gateway: v4(gateway),
                flags: hex(flags),
            })
        })
}

/// The lines of `/proc/net/ipv6_route` (no header), blank ones skipped; a
/// line with fewer than its 10 columns (dest dest_prefix src src_prefix
/// next_hop metric refcnt use flags iface, addresses as 32 hex digits) is
/// `Err(line)`.
pub fn ipv6_route_lines(text: &str) -> impl Iterator<Item = Result<RouteLine<'_>, &str>> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dest, prefix, _, _, next_hop, _, _, _, flags, iface, ..] = f.as_slice() else {
            return Err(line);
        };
        let v6 = |s: &str| ipv6_hex(s).map(IpAddr::V6);
        Ok(RouteLine {
            line,
            iface,
            dest: v6(dest),
            prefix_len: u8::from_str_radix(prefix, 16).ok(),
            gateway: v6(next_hop),
            flags: u32::from_str_radix(flags, 16).ok(),
        })
    })
}

fn ipv6_hex(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn route_lines_read_columns_and_name_short_lines() {
        let text = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
eth0\t00000000\t0200000A\t0003\t0\t0\t0\t00000000\n\
\n\
eth1\t0000000A\tzz\t0001\t0\t0\t0\t00FFFFFF\n\
short line\n";
        let lines: Vec<_> = route_lines(text).collect();
        assert_eq!(lines.len(), 3);
        let eth0 = lines[0].unwrap();
        assert!(eth0.is_default());
        assert_eq!(eth0.gateway, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(eth0.flags, Some(RTF_UP | RTF_GATEWAY));
        let eth1 = lines[1].unwrap();
        assert_eq!((eth1.prefix_len, eth1.gateway), (Some(24), None));
        assert!(!eth1.is_default());
        assert_eq!(lines[2], Err("short line"));

        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\nx y z\n";
        let lines: Vec<_> = ipv6_route_lines(v6).collect();
        let wlan0 = lines[0].unwrap();
        assert!(wlan0.is_default());
        assert_eq!(wlan0.gateway, Some("fe80::1".parse().unwrap()));
        assert_eq!(lines[1], Err("x y z"));
    }

    /// What the callers meet besides plain default routes: the header
    /// alone, a reject route, extra columns, and IPv6 lines whose next hop
    /// or flags are not what the kernel prints (the latency collector skips
    /// them, the system collector reports bad flags).
    #[test]
    #[cfg(target_endian = "little")]
    fn odd_lines_read_as_what_they_are() {
        assert_eq!(route_lines("Iface\tDestination\n").count(), 0);
        assert_eq!(route_lines("").count(), 0);
        let text = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
eth0\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n\
eth1\t0\t0100A8C0\t0003\t0\t0\t100\t0\t1500\t0\t0\n";
        let lines: Vec<_> = route_lines(text).map(Result::unwrap).collect();
        assert!(lines[0].is_default());
        assert_eq!(lines[0].flags, Some(RTF_UP | RTF_REJECT));
        assert_eq!(lines[0].gateway, Some("0.0.0.0".parse().unwrap()));
        assert!(lines[1].is_default(), "short hex is still a number");
        assert_eq!(lines[1].gateway, Some("192.168.0.1".parse().unwrap()));

        let v6 = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000000000000000002 00000400 00000001 00000000 00000003 eth2
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 zz eth3
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
";
        let lines: Vec<_> = ipv6_route_lines(v6).map(Result::unwrap).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].gateway, None, "31 hex digits are no address");
        assert!(lines[0].is_default());
        assert_eq!((lines[1].iface, lines[1].flags), ("eth3", None));
        assert_eq!(lines[2].flags.map(|f| f & RTF_REJECT != 0), Some(true));
        assert!(!lines[3].is_default());
        assert_eq!(lines[3].prefix_len, Some(64));
    }
}
