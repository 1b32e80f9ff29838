//! Lease files as untrusted text: their numbered lines, the line-length
//! limit, short excerpts for messages, hardware addresses, and the
//! hostname sanitiser (also used for reverse-DNS names).

/// Longest line accepted, in bytes; a longer one is a problem of its own
/// (no lease format comes near it: an ISC line is a keyword and a value).
pub const MAX_LINE: usize = 4096;
/// Longest hostname kept, in bytes (the DNS limit for a full name).
pub const MAX_NAME: usize = 253;

/// The lines of `data` with their 1-based numbers, without `\n` or `\r`.
pub(super) fn lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !data.is_empty() || !l.is_empty())
}

/// A short, printable rendering of untrusted bytes for log lines.
pub(super) fn excerpt(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
    let mut out: String = s.chars().filter(|c| !c.is_control()).collect();
    if bytes.len() > 40 {
        out.push('…');
    }
    out
}

pub(super) fn too_long(line: &[u8]) -> Option<String> {
    (line.len() > MAX_LINE).then(|| {
        format!(
            "line is {} bytes long, over the {MAX_LINE}-byte limit",
            line.len()
        )
    })
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
