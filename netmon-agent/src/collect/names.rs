//! Hostnames for devices: from DHCP lease files when present, else reverse
//! DNS, cached.
//!
//! Skeleton: filled in by its own change.

use std::net::IpAddr;

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
