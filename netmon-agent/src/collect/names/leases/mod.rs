//! DHCP lease files: pure parsers for the three formats a Linux gateway
//! writes, and the hostname sanitiser.
//!
//! - dnsmasq (`/var/lib/misc/dnsmasq.leases`, OpenWrt's `/tmp/dhcp.leases`):
//!   one lease a line, `expiry mac ip hostname clientid`, `*` for no name;
//!   a `duid ...` line starts the DHCPv6 leases, whose second field is an
//!   IAID instead of a MAC (they name an IP only).
//! - ISC dhcpd (`/var/lib/dhcp/dhcpd.leases`): `lease IP { ... }` blocks,
//!   appended as they change, so a later block for an address overrides an
//!   earlier one.
//! - Kea (`/var/lib/kea/kea-leases4.csv`): CSV whose header names the
//!   columns; appended too, later rows win, `valid_lifetime` 0 deletes.
//!
//! Parsing never fails as a whole: every record that cannot be used becomes
//! a [`Problem`] (line number and what was wrong) and the good records are
//! still returned. Input is bytes, not `str`: a non-UTF-8 line is a problem
//! of that line only (names are decoded lossily).

use std::{
    fmt,
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

/// Longest line accepted, in bytes; a longer one is a problem of its own
/// (no lease format comes near it: an ISC line is a keyword and a value).
pub const MAX_LINE: usize = 4096;
/// Longest hostname kept, in bytes (the DNS limit for a full name).
pub const MAX_NAME: usize = 253;

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

/// The lines of `data` with their 1-based numbers, without `\n` or `\r`.
fn lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !data.is_empty() || !l.is_empty())
}

/// A short, printable rendering of untrusted bytes for log lines.
fn excerpt(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
    let mut out: String = s.chars().filter(|c| !c.is_control()).collect();
    if bytes.len() > 40 {
        out.push('…');
    }
    out
}

fn too_long(line: &[u8]) -> Option<String> {
    (line.len() > MAX_LINE).then(|| {
        format!(
            "line is {} bytes long, over the {MAX_LINE}-byte limit",
            line.len()
        )
    })
}

/// Seconds since the epoch, for lease expiry.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------
// dnsmasq

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

/// A MAC written as six hex bytes separated by `:` or `-`, each one or two
/// digits (ISC dhcpd writes `0:1b:...`).
pub fn parse_hw(s: &str) -> Option<[u8; 6]> {
    let sep = if s.contains(':') { ':' } else { '-' };
    let mut mac = [0u8; 6];
    let mut parts = s.split(sep);
    for byte in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

// ---------------------------------------------------------------------------
// ISC dhcpd

/// A token of the ISC lease syntax, with the line it starts on.
#[derive(Debug, PartialEq)]
enum Token {
    Open,
    Close,
    Semi,
    Word(String),
    /// A quoted string, escapes resolved; bytes because `\ooo` escapes can
    /// make anything.
    Str(Vec<u8>),
}

/// ISC dhcpd's lease file: `lease` blocks are read; every other statement
/// or block (`server-duid`, `failover peer`, `host`, DHCPv6 `ia-na`, ...)
/// is skipped. Times are UTC (`ends 4 2024/03/14 12:00:00;`) or, with
/// `db-time-format local`, `ends epoch 1710417600; # ...`.
pub fn parse_isc(data: &[u8]) -> Parsed {
    let mut out = Parsed {
        format: Some(Format::Isc),
        ..Parsed::default()
    };
    let tokens = isc_tokens(data, &mut out);
    let mut i = 0;
    while i < tokens.len() {
        let (line, ref tok) = tokens[i];
        match tok {
            Token::Word(w) if w == "lease" => {
                let (lease, next) = isc_lease(&tokens, i, &mut out);
                if let Some(lease) = lease {
                    out.leases.push(lease);
                }
                i = next;
            }
            Token::Close => {
                out.problem(line, "unmatched `}`");
                i += 1;
            }
            _ => i = skip_statement(&tokens, i),
        }
    }
    // Tokenizer problems were found first; report in file order.
    out.problems.sort_by_key(|p| p.line);
    out
}

/// Splits ISC lease syntax into tokens. Comments run from `#` to the end of
/// the line; an unterminated string or an over-long line is a problem and
/// ends the tokens of that line.
fn isc_tokens(data: &[u8], out: &mut Parsed) -> Vec<(usize, Token)> {
    let mut tokens = Vec::new();
    for (n, line) in lines(data) {
        if let Some(what) = too_long(line) {
            out.problem(n, what);
            // Keep the structure: a dropped `}` would swallow the next lease.
            tokens.push((n, Token::Semi));
            continue;
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            match b {
                b'#' => break,
                b'{' => tokens.push((n, Token::Open)),
                b'}' => tokens.push((n, Token::Close)),
                b';' => tokens.push((n, Token::Semi)),
                b'"' => {
                    let mut s = Vec::new();
                    let mut j = i + 1;
                    let mut closed = false;
                    while j < line.len() {
                        match line[j] {
                            b'"' => {
                                closed = true;
                                break;
                            }
                            b'\\'
                                if j + 3 < line.len()
                                    && line[j + 1..j + 4]
                                        .iter()
                                        .all(|d| (b'0'..=b'7').contains(d)) =>
                            {
                                let v = line[j + 1..j + 4]
                                    .iter()
                                    .fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                                s.push(v as u8);
                                j += 3;
                            }
                            b'\\' if j + 1 < line.len() => {
                                s.push(line[j + 1]);
                                j += 1;
                            }
                            c => s.push(c),
                        }
                        j += 1;
                    }
                    if !closed {
                        out.problem(n, "unterminated string");
                        tokens.push((n, Token::Semi));
                        break;
                    }
                    tokens.push((n, Token::Str(s)));
                    i = j;
                }
                b if b.is_ascii_whitespace() => {}
                _ => {
                    let end = line[i..]
                        .iter()
                        .position(|c| c.is_ascii_whitespace() || b"{};\"#".contains(c))
                        .map_or(line.len(), |p| i + p);
                    tokens.push((
                        n,
                        Token::Word(String::from_utf8_lossy(&line[i..end]).into_owned()),
                    ));
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
    }
    tokens
}

/// The index after the statement or block starting at `i`.
fn skip_statement(tokens: &[(usize, Token)], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < tokens.len() {
        match tokens[i].1 {
            Token::Open => depth += 1,
            Token::Close => {
                if depth <= 1 {
                    return i + 1;
                }
                depth -= 1;
            }
            Token::Semi if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The `lease IP { ... }` block at `start`, and the index after it. A block
/// without a usable address or not closed before the end is a problem.
fn isc_lease(tokens: &[(usize, Token)], start: usize, out: &mut Parsed) -> (Option<Lease>, usize) {
    let line = tokens[start].0;
    let ip = match tokens.get(start + 1) {
        Some((_, Token::Word(w))) => w.parse::<IpAddr>().ok(),
        _ => None,
    };
    let Some(ip) = ip else {
        out.problem(line, "`lease` is not followed by an IP address");
        return (None, skip_statement(tokens, start));
    };
    if !matches!(tokens.get(start + 2), Some((_, Token::Open))) {
        out.problem(line, format!("`lease {ip}` is not followed by `{{`"));
        return (None, skip_statement(tokens, start));
    }
    let mut lease = Lease {
        mac: None,
        ip,
        name: None,
        ends: Ends::Never,
        bound: true,
    };
    let mut i = start + 3;
    let mut stmt: Vec<&(usize, Token)> = Vec::new();
    while i < tokens.len() {
        match &tokens[i].1 {
            Token::Close => return (Some(lease), i + 1),
            Token::Semi => {
                if let Err(what) = isc_statement(&stmt, &mut lease) {
                    out.problem(stmt.first().map_or(tokens[i].0, |t| t.0), what);
                }
                stmt.clear();
            }
            Token::Open => {
                // A nested block (`on expiry { ... }`): not ours.
                stmt.clear();
                i = skip_statement(tokens, i);
                continue;
            }
            _ => stmt.push(&tokens[i]),
        }
        i += 1;
    }
    out.problem(
        line,
        format!("`lease {ip}` is cut off: the file ends before its `}}`"),
    );
    (None, i)
}

/// Applies one statement of a lease block; unknown statements are ignored.
fn isc_statement(stmt: &[&(usize, Token)], lease: &mut Lease) -> Result<(), String> {
    let words: Vec<&str> = stmt
        .iter()
        .map(|(_, t)| match t {
            Token::Word(w) => w.as_str(),
            _ => "",
        })
        .collect();
    match words.as_slice() {
        ["hardware", "ethernet", mac] => {
            lease.mac =
                Some(parse_hw(mac).ok_or_else(|| {
                    format!("{:?} is not a MAC address", excerpt(mac.as_bytes()))
                })?);
        }
        ["client-hostname", ""] => {
            if let Some((_, Token::Str(s))) = stmt.get(1) {
                lease.name = sanitize(&String::from_utf8_lossy(s));
            }
        }
        ["binding", "state", state] => {
            lease.bound = matches!(*state, "active" | "bootp" | "reserved");
        }
        ["ends", "never"] => lease.ends = Ends::Never,
        ["ends", "epoch", secs, ..] => {
            lease.ends = Ends::At(secs.parse().map_err(|_| {
                format!("`ends epoch {}` is not a number", excerpt(secs.as_bytes()))
            })?);
        }
        ["ends", _weekday, date, time] => {
            lease.ends = Ends::At(isc_time(date, time).ok_or_else(|| {
                format!(
                    "`ends` has a bad date {:?}",
                    excerpt(format!("{date} {time}").as_bytes())
                )
            })?);
        }
        ["ends", ..] => return Err("`ends` is neither a date, `epoch N` nor `never`".into()),
        _ => {}
    }
    Ok(())
}

/// `YYYY/MM/DD` and `HH:MM:SS` (UTC) as seconds since the epoch.
fn isc_time(date: &str, time: &str) -> Option<u64> {
    let d: Vec<u64> = date
        .split('/')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let t: Vec<u64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    if !(1970..=9999).contains(y) || !(1..=12).contains(m) || !(1..=31).contains(day) {
        return None;
    }
    if *hh > 23 || *mm > 59 || *ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), y >= 1970.
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

// ---------------------------------------------------------------------------
// Kea

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

// ---------------------------------------------------------------------------
// Names

/// A hostname fit for output, or `None` when nothing printable is left.
///
/// The rule: control characters and invisible formatting characters
/// (zero-width, bidirectional overrides, byte-order mark) and U+FFFD (what
/// an invalid UTF-8 byte decodes to) are dropped; runs of whitespace become
/// one space; leading and trailing spaces and dots are trimmed; the result
/// is cut to [`MAX_NAME`] bytes at a character boundary.
pub fn sanitize(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if c.is_control()
            || c == '\u{FFFD}'
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
        {
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        if out.len() + c.len_utf8() > MAX_NAME {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches(|c| c == ' ' || c == '.');
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/leases/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn mac(s: &str) -> Option<[u8; 6]> {
        Some(parse_hw(s).unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn lease(m: Option<[u8; 6]>, a: &str, name: Option<&str>, ends: Ends, bound: bool) -> Lease {
        Lease {
            mac: m,
            ip: ip(a),
            name: name.map(str::to_owned),
            ends,
            bound,
        }
    }

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
    fn isc_fixture() {
        let p = parse(&fixture("dhcpd.leases"));
        assert_eq!(p.format, Some(Format::Isc));
        assert_eq!(p.problems, []);
        let m = mac("00:1b:21:aa:bb:cc");
        assert_eq!(
            p.leases,
            [
                lease(
                    m,
                    "10.0.0.50",
                    Some("desk-old"),
                    Ends::At(1_704_916_800),
                    false
                ),
                lease(m, "10.0.0.51", Some("desk"), Ends::At(1_894_305_600), true),
                lease(
                    mac("52:54:00:de:ad:01"),
                    "10.0.0.52",
                    Some("kitchen tablet"),
                    Ends::At(1_893_456_000),
                    true
                ),
                lease(
                    mac("52:54:00:de:ad:02"),
                    "10.0.0.53",
                    None,
                    Ends::Never,
                    true
                ),
                lease(
                    mac("52:54:00:de:ad:01"),
                    "10.0.0.52",
                    Some("kitchen-tablet"),
                    Ends::At(1_893_456_000),
                    true
                ),
            ]
        );
    }

    #[test]
    fn isc_dates_match_their_epoch() {
        // dhcpd's own comment: `starts epoch 1704873600; # Wed Jan 10 08:00:00 2024`.
        assert_eq!(isc_time("2024/01/10", "08:00:00"), Some(1_704_873_600));
        assert_eq!(isc_time("1970/01/01", "00:00:00"), Some(0));
        assert_eq!(isc_time("2000/02/29", "23:59:59"), Some(951_868_799));
        assert_eq!(isc_time("2024/13/01", "00:00:00"), None);
        assert_eq!(isc_time("2024/01/01", "24:00:00"), None);
        assert_eq!(isc_time("99999999999999999999/1/1", "0:0:0"), None);
        assert_eq!(isc_time("2024-01-01", "00:00:00"), None);
    }

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

    #[test]
    fn isc_truncated_and_broken_blocks() {
        let data = b"lease 10.0.0.1 {\n  hardware ethernet 00:11:22:33:44:55;\n  client-hostname \"one\";\n}\n\
lease 10.0.0.2 {\n  hardware ethernet 00:11:22:33:44:zz;\n  client-hostname \"two\";\n}\n\
lease nonsense {\n  client-hostname \"x\";\n}\n\
lease 10.0.0.3 {\n  ends 4 2024/99/99 00:00:00;\n  client-hostname \"three\n}\n\
lease 10.0.0.4 {\n  client-hostname \"four\";\n}\n\
}\n\
lease 10.0.0.5 {\n  hardware ethernet 00:11:22:33:44:56;\n  client-hostname \"cut";
        let p = parse(data);
        let got: Vec<(IpAddr, Option<&str>)> =
            p.leases.iter().map(|l| (l.ip, l.name.as_deref())).collect();
        assert_eq!(
            got,
            [
                (ip("10.0.0.1"), Some("one")),
                // A bad MAC loses the MAC, not the lease.
                (ip("10.0.0.2"), Some("two")),
                (ip("10.0.0.3"), None),
                (ip("10.0.0.4"), Some("four")),
            ]
        );
        assert_eq!(p.leases[1].mac, None);
        let problems: Vec<(usize, &str)> = p
            .problems
            .iter()
            .map(|p| (p.line, p.what.as_str()))
            .collect();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert_eq!(problems[0].0, 6);
        assert!(problems[0].1.contains("not a MAC address"));
        assert_eq!(problems[1], (9, "`lease` is not followed by an IP address"));
        assert_eq!(problems[2].0, 13);
        assert!(problems[2].1.contains("bad date"));
        assert_eq!(problems[3], (14, "unterminated string"));
        assert_eq!(problems[4], (19, "unmatched `}`"));
        assert_eq!(problems[5].0, 20);
        assert!(problems[5].1.contains("cut off"));
        assert_eq!(problems[6], (22, "unterminated string"));
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

    #[test]
    fn names_are_sanitised() {
        assert_eq!(sanitize("nas"), Some("nas".into()));
        assert_eq!(sanitize("*"), Some("*".into()));
        assert_eq!(
            sanitize("  John's\t\tiPhone \n"),
            Some("John's iPhone".into())
        );
        assert_eq!(sanitize("printer.lan."), Some("printer.lan".into()));
        assert_eq!(sanitize("Müller-PC"), Some("Müller-PC".into()));
        assert_eq!(
            sanitize("evil\u{202E}gpj.exe\x1b[31m"),
            Some("evilgpj.exe[31m".into())
        );
        assert_eq!(sanitize("a\u{200B}b\u{FEFF}c\u{FFFD}"), Some("abc".into()));
        assert_eq!(sanitize("\x00\x07 \u{2066}"), None);
        assert_eq!(sanitize(""), None);
        let long = sanitize(&"é".repeat(1000)).unwrap();
        assert!(long.len() <= MAX_NAME && long.len() >= MAX_NAME - 1);
        assert!(long.chars().all(|c| c == 'é'));
    }

    #[test]
    fn hardware_addresses() {
        assert_eq!(
            parse_hw("0:1b:21:a:bb:c"),
            Some([0, 0x1b, 0x21, 0xa, 0xbb, 0xc])
        );
        assert_eq!(
            parse_hw("00-1B-21-0A-BB-0C"),
            Some([0, 0x1b, 0x21, 0xa, 0xbb, 0xc])
        );
        assert_eq!(parse_hw("00:1b:21:0a:bb"), None);
        assert_eq!(parse_hw("00:1b:21:0a:bb:0c:01"), None);
        assert_eq!(parse_hw("00:1b:21:0a:bb:100"), None);
        assert_eq!(parse_hw("00:1b:21::bb:0c"), None);
        assert_eq!(parse_hw("+0:1b:21:0a:bb:0c"), None);
    }
}
