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
            b"lease" | b"authoring-byte-order" | b"server-duid" | b"failover" | b"host"
            | b"ia-na" | b"ia-ta" | b"ia-pd" | b"class" | b"subclass" => Ok(Some(Format::Isc)),
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
        if p.is_empty() || p.len() > 2 {
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
                            b'\\' if j + 3 < line.len()
                                && line[j + 1..j + 4].iter().all(|d| (b'0'..=b'7').contains(d)) =>
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
            lease.ends = Ends::At(
                secs.parse()
                    .map_err(|_| format!("`ends epoch {}` is not a number", excerpt(secs.as_bytes())))?,
            );
        }
        ["ends", _weekday, date, time] => {
            lease.ends = Ends::At(
                isc_time(date, time)
                    .ok_or_else(|| format!("`ends` has a bad date {:?}", excerpt(format!("{date} {time}").as_bytes())))?,
            );
        }
        ["ends", ..] => return Err("`ends` is neither a date, `epoch N` nor `never`".into()),
        _ => {}
    }
    Ok(())
}

/// `YYYY/MM/DD` and `HH:MM:SS` (UTC) as seconds since the epoch.
fn isc_time(date: &str, time: &str) -> Option<u64> {
    let d: Vec<u64> = date.split('/').map(str::parse).collect::<Result<_, _>>().ok()?;
    let t: Vec<u64> = time.split(':').map(str::parse).collect::<Result<_, _>>().ok()?;
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
                format!(
                    "{} field(s), the header names {}",
                    fields.len(),
                    cols.len()
                ),
            );
            continue;
        }
        let field = |c: Option<usize>| c.map(|c| fields[c].trim()).filter(|f| !f.is_empty());
        let row = || -> Result<Lease, String> {
            let ip: IpAddr = fields[address]
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not an IP address", excerpt(fields[address].as_bytes())))?;
            let mac = match field(hwaddr) {
                Some(hw) => Some(parse_hw(hw).ok_or_else(|| {
                    format!("{:?} is not a MAC address", excerpt(hw.as_bytes()))
                })?),
                None => None,
            };
            let number = |c: Option<usize>, what: &str| -> Result<Option<u64>, String> {
                field(c)
                    .map(|f| {
                        f.parse::<u64>()
                            .map_err(|_| format!("{what} {:?} is not a number", excerpt(f.as_bytes())))
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
