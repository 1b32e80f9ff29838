//! dnsmasq's lease file (`/var/lib/misc/dnsmasq.leases`, OpenWrt's
//! `/tmp/dhcp.leases`): one lease a line, `expiry mac ip hostname
//! clientid`, `*` for no name; a `duid ...` line starts the DHCPv6 leases,
//! whose second field is an IAID instead of a MAC (they name an IP only).

use std::net::IpAddr;

use super::{
    Ends, Format, Lease, Parsed,
    text::{excerpt, lines, parse_hw, sanitize, too_long},
};

/// dnsmasq's lease file. Expiry 0 means an infinite lease. dnsmasq removes
/// a lease from the file when it ends, so every listed lease is bound.
pub fn parse_dnsmasq(data: &[u8]) -> Parsed {
    let mut out = Parsed {
        format: Some(Format::Dnsmasq),
        ..Parsed::default()
    };
    // After the `duid` line, the second field is an IAID, not a MAC.
    let mut v6 = false;
    for (n, raw) in lines(data) {
        if let Some(what) = too_long(raw) {
            out.problem(n, what);
            continue;
        }
        let line = String::from_utf8_lossy(raw);
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            ["duid", ..] => v6 = true,
            [expiry, hw, ip, name, ..] => match dnsmasq_lease(expiry, hw, ip, name, v6) {
                Ok(Some(lease)) => out.leases.push(lease),
                Ok(None) => {}
                Err(what) => out.problem(n, what),
            },
            _ => out.problem(
                n,
                format!(
                    "expected `expiry mac ip hostname clientid`, got {} field(s)",
                    fields.len()
                ),
            ),
        }
    }
    out
}

fn dnsmasq_lease(
    expiry: &str,
    hw: &str,
    ip: &str,
    name: &str,
    v6: bool,
) -> Result<Option<Lease>, String> {
    let expiry: u64 = expiry
        .parse()
        .map_err(|_| format!("expiry {:?} is not a number", excerpt(expiry.as_bytes())))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{:?} is not an IP address", excerpt(ip.as_bytes())))?;
    let mac = if v6 {
        None
    } else {
        match parse_hw(hw) {
            Some(mac) => Some(mac),
            // dnsmasq writes `type-addr` for hardware other than Ethernet
            // (InfiniBand, ...): a lease, but not one a MAC can find.
            None if hw.contains('-') => None,
            None => return Err(format!("{:?} is not a MAC address", excerpt(hw.as_bytes()))),
        }
    };
    if !v6 && mac.is_none() && !ip.is_ipv4() {
        return Ok(None);
    }
    Ok(Some(Lease {
        mac,
        ip,
        name: if name == "*" { None } else { sanitize(name) },
        ends: if expiry == 0 {
            Ends::Never
        } else {
            Ends::At(expiry)
        },
        bound: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::names::leases::{
        MAX_LINE, parse,
        test_support::{fixture, lease, mac},
    };

    #[test]
    fn dnsmasq_fixture() {
        let p = parse(&fixture("dnsmasq.leases"));
        assert_eq!(p.format, Some(Format::Dnsmasq));
        assert_eq!(p.problems, []);
        assert_eq!(
            p.leases,
            [
                lease(
                    mac("3c:22:fb:10:20:30"),
                    "10.0.0.21",
                    Some("Johns-MacBook-Pro"),
                    Ends::At(1_900_000_000),
                    true
                ),
                lease(
                    mac("b8:27:eb:aa:bb:cc"),
                    "10.0.0.22",
                    Some("raspberrypi"),
                    Ends::At(1_900_000_100),
                    true
                ),
                lease(
                    mac("00:11:32:01:02:03"),
                    "10.0.0.2",
                    Some("nas"),
                    Ends::Never,
                    true
                ),
                lease(
                    mac("f0:9f:c2:00:00:01"),
                    "10.0.0.30",
                    Some("old-phone"),
                    Ends::At(1_000_000_000),
                    true
                ),
                lease(
                    mac("dc:a6:32:12:34:56"),
                    "10.0.0.23",
                    None,
                    Ends::At(1_900_000_200),
                    true
                ),
                // InfiniBand: no MAC, named by its IP only.
                lease(
                    None,
                    "10.0.0.40",
                    Some("ib-node"),
                    Ends::At(1_900_000_300),
                    true
                ),
                lease(
                    None,
                    "fd00::21",
                    Some("Johns-MacBook-Pro"),
                    Ends::At(1_900_000_400),
                    true
                ),
                lease(
                    None,
                    "fd00::99",
                    Some("printer-v6"),
                    Ends::At(1_900_000_500),
                    true
                ),
            ]
        );
        assert!(!p.leases[3].active(1_500_000_000), "expiry in the past");
        assert!(p.leases[0].active(1_500_000_000));
        assert!(p.leases[2].active(u64::MAX - 1), "expiry 0 never ends");
    }

    #[test]
    fn dnsmasq_bad_lines_are_reported_and_skipped() {
        let long = format!("1 aa:bb:cc:dd:ee:01 10.0.0.1 {} *", "x".repeat(MAX_LINE));
        let mut data = b"1900000000 aa:bb:cc:dd:ee:ff 10.0.0.5 good *\n".to_vec();
        data.extend_from_slice(b"1900000000 aa:bb:cc:dd:ee:ff 10.0.0.\n"); // truncated
        data.extend_from_slice(b"soon aa:bb:cc:dd:ee:ff 10.0.0.6 a *\n");
        data.extend_from_slice(b"1 aa:bb:cc:dd:ee 10.0.0.7 b *\n");
        data.extend_from_slice(b"1 aa:bb:cc:dd:ee:ff 10.0.0.300 c *\n");
        data.extend_from_slice(long.as_bytes());
        data.extend_from_slice(b"\n1900000000 aa:bb:cc:dd:ee:02 10.0.0.8 caf\xe9\xff\n");
        data.extend_from_slice(b"1900000000 aa:bb:cc:dd:ee:03 10.0.0.9 ok-again *");
        let p = parse(&data);
        let lines: Vec<usize> = p.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6], "{:#?}", p.problems);
        assert!(p.problems[0].what.contains("3 field(s)"));
        assert!(
            p.problems[1]
                .what
                .contains("expiry \"soon\" is not a number")
        );
        assert!(p.problems[2].what.contains("not a MAC address"));
        assert!(p.problems[3].what.contains("not an IP address"));
        assert!(p.problems[4].what.contains("over the 4096-byte limit"));
        let names: Vec<Option<&str>> = p.leases.iter().map(|l| l.name.as_deref()).collect();
        // The invalid UTF-8 bytes are dropped from the name.
        assert_eq!(names, [Some("good"), Some("caf"), Some("ok-again")]);
    }
}
