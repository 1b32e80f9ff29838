//! Names for devices: the vendor of a MAC from the IEEE registries (bundled,
//! no network lookup) and a hostname from DHCP lease files or reverse DNS.
//!
//! Skeleton: filled in by its own change.

use std::net::IpAddr;

/// The organization the IEEE assigned `mac`'s prefix to, if any.
pub fn vendor(_mac: [u8; 6]) -> Option<&'static str> {
    None
}

/// Hostnames of devices, cached.
#[derive(Debug, Default)]
pub struct Hostnames {}

impl Hostnames {
    /// The hostname known for `mac`/`ip`, without blocking: a lookup that
    /// is not cached yet is started in the background and answered later.
    pub fn lookup(&mut self, _mac: [u8; 6], _ip: Option<IpAddr>) -> Option<String> {
        None
    }
}
