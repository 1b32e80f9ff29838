//! The vendor of a MAC address, from the IEEE registries (MA-L, MA-M, MA-S,
//! CID and IAB, bundled at build time by the `oui-data` crate: no network
//! lookup, ever).
//!
//! A locally administered address (bit 0x02 of the first octet set: VMs,
//! containers, phones' randomised "private" addresses) was not assigned by
//! the IEEE to anyone, so it has no vendor even when its first three octets
//! happen to match a registered prefix. Group (multicast) addresses have
//! none either.

/// Whether `mac` is locally administered (not from an IEEE assignment).
pub fn locally_administered(mac: [u8; 6]) -> bool {
    mac[0] & 0x02 != 0
}

/// The organization the IEEE assigned `mac`'s prefix to, if any. The
/// longest registered prefix wins (MA-S 36 bits, then MA-M 28, then 24).
pub fn vendor(mac: [u8; 6]) -> Option<&'static str> {
    if locally_administered(mac) || mac[0] & 0x01 != 0 {
        return None;
    }
    let hex: String = mac.iter().map(|b| format!("{b:02X}")).collect();
    let org = oui_data::lookup(&hex)?.organization().trim();
    // The registry has a few placeholder rows ("Private") that name nobody.
    (!org.is_empty() && !org.eq_ignore_ascii_case("private")).then_some(org)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_prefixes() {
        assert_eq!(
            vendor([0x00, 0x00, 0x00, 1, 2, 3]),
            Some("XEROX CORPORATION")
        );
        assert_eq!(vendor([0x50, 0xa6, 0xd8, 0, 0, 0]), Some("Apple, Inc."));
        // 52:54:00 (QEMU) is locally administered: no vendor.
        assert_eq!(vendor([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]), None);
        assert!(vendor([0x00, 0x1b, 0x21, 0, 0, 1]).is_some_and(|v| v.contains("Intel")));
    }

    #[test]
    fn longer_prefixes_win() {
        // B8:4C:87:4 is an MA-M block inside a prefix registered as a whole.
        assert_eq!(
            vendor([0xb8, 0x4c, 0x87, 0x40, 0, 0]),
            Some("Blum Novotest GmbH")
        );
    }

    #[test]
    fn local_and_group_addresses_have_none() {
        assert!(locally_administered([0x02, 0, 0, 0, 0, 1]));
        assert!(!locally_administered([0x00, 0x1b, 0x21, 0, 0, 1]));
        assert_eq!(vendor([0x02, 0x1b, 0x21, 0, 0, 1]), None);
        assert_eq!(vendor([0x01, 0x00, 0x5e, 0, 0, 1]), None);
        assert_eq!(vendor([0xff; 6]), None);
    }
}
