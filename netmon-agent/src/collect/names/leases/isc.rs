//! ISC dhcpd's lease file (`/var/lib/dhcp/dhcpd.leases`): `lease IP { ... }`
//! blocks, appended as they change, so a later block for an address
//! overrides an earlier one. The text is split into tokens, then the
//! `lease` blocks are read and every other statement or block skipped.

use std::net::IpAddr;

use super::{
    Ends, Format, Lease, Parsed,
    text::{excerpt, lines, parse_hw, sanitize, too_long},
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::names::leases::{
        parse,
        test_support::{fixture, ip, lease, mac},
    };

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
}
