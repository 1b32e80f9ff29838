//! The vendor of a MAC address, from the IEEE registries (bundled, no
//! network lookup).
//!
//! Skeleton: filled in by the discovery change.

/// The organization the IEEE assigned `mac`'s prefix to, if any.
pub fn vendor(_mac: [u8; 6]) -> Option<&'static str> {
    None
}
