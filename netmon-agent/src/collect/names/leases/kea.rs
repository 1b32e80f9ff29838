//! Kea's memfile lease file (`/var/lib/kea/kea-leases4.csv`): CSV whose
//! header names the columns; appended as leases change, so later rows
//! win, and `valid_lifetime` 0 deletes.

use std::net::IpAddr;

use super::{
    Ends, Format, Lease, Parsed,
    text::{excerpt, lines, parse_hw, sanitize, too_long},
};

/// Kea's memfile CSV (v4 or v6). Required columns: `address`; used when
/// present: `hwaddr`, `expire`, `valid_lifetime`, `hostname`, `state`.
/// State 0 is a bound lease; 1 (declined), 2 (expired-reclaimed) and 3
/// (released) are not; `valid_lifetime` 0 marks a deleted lease.
pub fn parse_kea(data: &[u8]) -> Parsed {
    let mut out = Parsed {
        format: Some(Format::Kea),
        ..Parsed::default()
    };
    let mut rows = lines(data).filter(|(_, l)| !l.trim_ascii().is_empty());
    let Some((hn, header)) = rows.next() else {
        return out;
    };
    let header = String::from_utf8_lossy(header);
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let Some(address) = col("address") else {
        out.problem(hn, "the header has no `address` column");
        return out;
    };
    let (hwaddr, expire, lifetime, hostname, state) = (
        col("hwaddr"),
        col("expire"),
        col("valid_lifetime"),
        col("hostname"),
        col("state"),
    );
    for (n, raw) in rows {
        if let Some(what) = too_long(raw) {
            out.problem(n, what);
            continue;
        }
        let line = String::from_utf8_lossy(raw);
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != cols.len() {
            out.problem(
                n,
                format!("{} field(s), the header names {}", fields.len(), cols.len()),
            );
            continue;
        }
        let field = |c: Option<usize>| c.map(|c| fields[c].trim()).filter(|f| !f.is_empty());
        let row = || -> Result<Lease, String> {
            let ip: IpAddr = fields[address].trim().parse().map_err(|_| {
                format!(
                    "{:?} is not an IP address",
                    excerpt(fields[address].as_bytes())
                )
            })?;
            let mac =
                match field(hwaddr) {
                    Some(hw) => Some(parse_hw(hw).ok_or_else(|| {
                        format!("{:?} is not a MAC address", excerpt(hw.as_bytes()))
                    })?),
                    None => None,
                };
            let number = |c: Option<usize>, what: &str| -> Result<Option<u64>, String> {
                field(c)
                    .map(|f| {
                        f.parse::<u64>().map_err(|_| {
                            format!("{what} {:?} is not a number", excerpt(f.as_bytes()))
                        })
                    })
                    .transpose()
            };
            let ends = number(expire, "expire")?.map_or(Ends::Never, Ends::At);
            let deleted = number(lifetime, "valid_lifetime")? == Some(0);
            let state = number(state, "state")?.unwrap_or(0);
            Ok(Lease {
                mac,
                ip,
                name: field(hostname).and_then(|h| sanitize(&h.replace("&#x2c", ","))),
                ends,
                bound: state == 0 && !deleted,
            })
        };
        match row() {
            Ok(lease) => out.leases.push(lease),
            Err(what) => out.problem(n, what),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::names::leases::{
        parse,
        test_support::{fixture, lease, mac},
    };

    #[test]
    fn kea_fixture() {
        let p = parse(&fixture("kea-leases4.csv"));
        assert_eq!(p.format, Some(Format::Kea));
        assert_eq!(p.problems, []);
        assert_eq!(
            p.leases,
            [
                lease(
                    mac("08:00:27:01:02:03"),
                    "10.0.0.70",
                    Some("laptop.lan"),
                    Ends::At(1_900_000_000),
                    true
                ),
                lease(
                    mac("08:00:27:04:05:06"),
                    "10.0.0.71",
                    Some("tv"),
                    Ends::At(1_900_000_000),
                    true
                ),
                lease(
                    mac("08:00:27:07:08:09"),
                    "10.0.0.72",
                    Some("gone"),
                    Ends::At(1_700_000_000),
                    false
                ),
                lease(
                    mac("08:00:27:0a:0b:0c"),
                    "10.0.0.73",
                    Some("smith, john"),
                    Ends::At(1_900_000_000),
                    true
                ),
                lease(
                    mac("08:00:27:04:05:06"),
                    "10.0.0.71",
                    Some("living-room-tv"),
                    Ends::At(1_900_003_600),
                    true
                ),
                lease(
                    mac("08:00:27:0d:0e:0f"),
                    "10.0.0.74",
                    Some("deleted"),
                    Ends::At(1_900_000_000),
                    false
                ),
            ]
        );
    }

    #[test]
    fn kea_columns_come_from_the_header() {
        let p = parse(b"address,hostname,hwaddr\n10.0.0.9,cam,aa:bb:cc:dd:ee:ff\n10.0.0.10,x\n");
        assert_eq!(
            p.leases,
            [lease(
                mac("aa:bb:cc:dd:ee:ff"),
                "10.0.0.9",
                Some("cam"),
                Ends::Never,
                true
            )]
        );
        assert_eq!(p.problems.len(), 1);
        assert_eq!(p.problems[0].line, 3);
        assert!(
            p.problems[0]
                .what
                .contains("2 field(s), the header names 3"),
            "{:?}",
            p.problems
        );
        let p = parse(b"address,hwaddr,expire\n10.0.0.9,zz:bb:cc:dd:ee:ff,1\n10.0.0.9,aa:bb:cc:dd:ee:ff,soon\n");
        assert_eq!(p.leases, []);
        assert!(
            p.problems[0].what.contains("not a MAC address"),
            "{:?}",
            p.problems
        );
        assert!(
            p.problems[1]
                .what
                .contains("expire \"soon\" is not a number"),
            "{:?}",
            p.problems
        );
    }
}
