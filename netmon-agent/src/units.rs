//! How values are written and read: durations, intervals and sizes on the
//! command line and in the config file, RFC 3339 times and the names of
//! directions and protocols in the API and `/metrics`.
//!
//! A leaf: it uses nothing of the crate, so every layer may use it (see
//! docs/design.md, "Layering").

use std::time::{Duration, SystemTime};

use netmon_common::{direction, proto};

/// A duration such as `500ms`, `1s`, `5m` or `30days`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 1s, 5m)"))
}

/// A collection or maintenance interval: a duration from 100ms to 1h.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("{s} is outside 100ms..=1h"));
    }
    Ok(d)
}

/// `1GiB`, `512MiB`, `64KiB`, `1G`, `10M` or plain bytes; binary units; at
/// least 1MiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 1GiB, 512MiB, 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit (use B, KiB, MiB, GiB, TiB)")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!("`{s}` is below the 1MiB minimum"));
    }
    Ok(bytes)
}

/// RFC 3339 with milliseconds, UTC.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `ingress` or `egress`.
pub fn direction_name(d: u8) -> &'static str {
    if d == direction::EGRESS {
        "egress"
    } else {
        "ingress"
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6` or `other`.
pub fn protocol_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("1KiB").unwrap_err().contains("minimum"));
        assert!(parse_size("12 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("GiB").is_err());
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
