//! DHCP lease files: pure parsers for the three formats a Linux gateway
//! writes (one file each), the format found from the content, and the
//! hostname sanitiser (`text.rs`, with the other handling of untrusted
//! lease text).
//!
//! - `dnsmasq.rs`: dnsmasq (`/var/lib/misc/dnsmasq.leases`, OpenWrt's
//!   `/tmp/dhcp.leases`): one lease a line, `expiry mac ip hostname
//!   clientid`, `*` for no name; a `duid ...` line starts the DHCPv6
//!   leases, whose second field is an IAID instead of a MAC (they name an
//!   IP only).
//! - `isc.rs`: ISC dhcpd (`/var/lib/dhcp/dhcpd.leases`): `lease IP { ... }`
//!   blocks, appended as they change, so a later block for an address
//!   overrides an earlier one.
//! - `kea.rs`: Kea (`/var/lib/kea/kea-leases4.csv`): CSV whose header
//!   names the columns; appended too, later rows win, `valid_lifetime` 0
//!   deletes.
//!
//! Parsing never fails as a whole: every record that cannot be used becomes
//! a [`Problem`] (line number and what was wrong) and the good records are
//! still returned. Input is bytes, not `str`: a non-UTF-8 line is a problem
//! of that line only (names are decoded lossily).

mod dnsmasq;
mod isc;
mod kea;
mod text;

use std::{
    fmt,
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use self::text::{excerpt, lines};
pub use self::{
    dnsmasq::parse_dnsmasq,
    isc::parse_isc,
    kea::parse_kea,
    text::{MAX_LINE, MAX_NAME, parse_hw, sanitize},
};

/// The format of a lease file, found from its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Dnsmasq,
    Isc,
    Kea,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Dnsmasq => "dnsmasq",
            Format::Isc => "ISC dhcpd",
            Format::Kea => "Kea CSV",
        })
    }
}

/// When a lease ends. `Never` sorts after every time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ends {
    /// Seconds since the Unix epoch.
    At(u64),
    Never,
}

/// One lease as the file states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client's Ethernet address (absent for DHCPv6 leases).
    pub mac: Option<[u8; 6]>,
    pub ip: IpAddr,
    /// Sanitised (see [`sanitize`]); `None` when the lease names nothing.
    pub name: Option<String>,
    pub ends: Ends,
    /// False when the server marked the lease free, released, expired,
    /// declined or deleted, whatever its end time.
    pub bound: bool,
}

impl Lease {
    /// Whether the lease is still held at `now` (seconds since the epoch).
    pub fn active(&self, now: u64) -> bool {
        self.bound && self.ends > Ends::At(now)
    }
}

/// A record that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    pub what: String,
}

/// What a lease file held.
#[derive(Debug, Default)]
pub struct Parsed {
    /// `None` for an empty file.
    pub format: Option<Format>,
    /// In file order: a later lease for the same address overrides an
    /// earlier one.
    pub leases: Vec<Lease>,
    pub problems: Vec<Problem>,
}

impl Parsed {
    fn problem(&mut self, line: usize, what: impl Into<String>) {
        self.problems.push(Problem {
            line,
            what: what.into(),
        });
    }
}

/// Parses a lease file of any supported format, found from its content.
pub fn parse(data: &[u8]) -> Parsed {
    match detect(data) {
        Ok(None) => Parsed::default(),
        Ok(Some(Format::Dnsmasq)) => parse_dnsmasq(data),
        Ok(Some(Format::Isc)) => parse_isc(data),
        Ok(Some(Format::Kea)) => parse_kea(data),
        Err(problem) => Parsed {
            problems: vec![problem],
            ..Parsed::default()
        },
    }
}

/// The format of `data`, from its first line that is neither blank nor a
/// comment (only ISC files have comments). `Ok(None)` for an empty file.
pub fn detect(data: &[u8]) -> Result<Option<Format>, Problem> {
    let mut comments = false;
    for (n, line) in lines(data) {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"#") {
            comments = true;
            continue;
        }
        let first = line
            .split(|b| b.is_ascii_whitespace() || *b == b',')
            .next()
            .unwrap_or_default();
        return match first {
            b"address" if line.contains(&b',') => Ok(Some(Format::Kea)),
            b"lease"
            | b"authoring-byte-order"
            | b"server-duid"
            | b"failover"
            | b"host"
            | b"ia-na"
            | b"ia-ta"
            | b"ia-pd"
            | b"class"
            | b"subclass" => Ok(Some(Format::Isc)),
            b"duid" => Ok(Some(Format::Dnsmasq)),
            _ if !first.is_empty() && first.iter().all(u8::is_ascii_digit) => {
                Ok(Some(Format::Dnsmasq))
            }
            _ if comments => Ok(Some(Format::Isc)),
            _ => Err(Problem {
                line: n,
                what: format!(
                    "not a dnsmasq, ISC dhcpd or Kea lease file (starts with {:?})",
                    excerpt(line)
                ),
            }),
        };
    }
    Ok(comments.then_some(Format::Isc))
}

/// Seconds since the epoch, for lease expiry.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Helpers the formats' tests share.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/leases/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub(super) fn mac(s: &str) -> Option<[u8; 6]> {
        Some(parse_hw(s).unwrap())
    }

    pub(super) fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    pub(super) fn lease(
        m: Option<[u8; 6]>,
        a: &str,
        name: Option<&str>,
        ends: Ends,
        bound: bool,
    ) -> Lease {
        Lease {
            mac: m,
            ip: ip(a),
            name: name.map(str::to_owned),
            ends,
            bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{test_support::ip, *};

    #[test]
    fn formats_are_detected_from_content() {
        assert_eq!(detect(b""), Ok(None));
        assert_eq!(detect(b"\n\n"), Ok(None));
        assert_eq!(detect(b"# only a comment\n"), Ok(Some(Format::Isc)));
        assert_eq!(detect(b"lease 10.0.0.1 {\n}\n"), Ok(Some(Format::Isc)));
        assert_eq!(detect(b"duid 00:01\n"), Ok(Some(Format::Dnsmasq)));
        assert_eq!(detect(b"address,hwaddr\n"), Ok(Some(Format::Kea)));
        let e = detect(b"\n<html>\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.what
                .contains("not a dnsmasq, ISC dhcpd or Kea lease file"),
            "{e:?}"
        );
        assert!(e.what.contains("<html>"), "{e:?}");
    }

    #[test]
    fn garbage_bytes_are_problems_not_panics() {
        // A deterministic byte soup (xorshift), tried as every format.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let soup: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for p in [
            parse(&soup),
            parse_dnsmasq(&soup),
            parse_isc(&soup),
            parse_kea(&soup),
        ] {
            assert!(!p.problems.is_empty());
            for l in &p.leases {
                if let Some(n) = &l.name {
                    assert_eq!(sanitize(n).as_deref(), Some(n.as_str()));
                }
            }
        }
        assert_eq!(parse(b"\0\0\0\xff\xfe").leases, []);
    }

    #[test]
    fn a_100k_line_file_is_read_whole() {
        let mut data = String::new();
        for i in 0..100_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            data.push_str(&format!(
                "1900000000 02:00:00:{a:02x}:{b:02x}:{c:02x} 10.{a}.{b}.{c} host-{i} *\n"
            ));
        }
        let p = parse(data.as_bytes());
        assert_eq!(p.problems, []);
        assert_eq!(p.leases.len(), 100_000);
        assert_eq!(p.leases[99_999].name.as_deref(), Some("host-99999"));
        assert_eq!(p.leases[99_999].ip, ip("10.1.134.159"));
    }
}
