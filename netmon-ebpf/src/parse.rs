//! Header parsing over a packet's linear bytes (`start..end`), shared by the
//! XDP and TC programs.
//!
//! The parser never fails: it reports what it could read. A frame shorter
//! than an Ethernet header yields `None`; anything else yields a [`Frame`]
//! whose `malformed` flag says whether a header it announces was cut short or
//! impossible. Offsets are capped at [`MAX_HDR_OFF`] so the verifier can bound
//! every packet access.

use netmon_common::{FlowKey, MacKey, proto};

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still sent by some switches.
const ETH_P_QINQ1: u16 = 0x9100;
/// ARP for Ethernet and IPv4: 8-byte fixed part plus two (MAC, IPv4) pairs.
const ARP_ETH_IPV4_LEN: usize = 28;

/// IPv6 extension headers walked before giving up (`Globals::ipv6_ext_limit`).
const MAX_IPV6_EXT: usize = 8;
/// No header is looked for past this offset; real header stacks end far
/// sooner, and the bound lets the verifier prove every access in range.
pub const MAX_HDR_OFF: usize = 512;

/// What the parser learned about one frame.
///
/// Lives in a per-CPU scratch map ([`crate::maps::SCRATCH`]), not on the
/// stack: zero-initialising or moving a struct this size makes LLVM emit
/// calls to compiler-builtins' byte-at-a-time `memset`/`memcpy`, which cost
/// more than all the parsing. Map memory starts zeroed and the programs
/// never write the keys' padding, so it stays zero; [`Frame::reset`] clears
/// the rest that must start at zero. For the same reason addresses are
/// copied with 4- and 2-byte loads and stores, never `copy_nonoverlapping`.
#[repr(C)]
pub struct Frame {
    /// The MAC-pair key, filled by the caller (from `flow`'s MACs) when the
    /// frame goes to the MAC-pair map.
    pub mac: MacKey,
    /// MACs always; addresses and L4 protocol when `flags` has [`HAS_IP`].
    /// The caller sets interface and direction.
    pub flow: FlowKey,
    /// [`HAS_IP`], [`VLAN`], [`NON_IP`], [`ARP`], [`MALFORMED`], [`EXT_LIMIT`].
    pub flags: u32,
    /// Offset just past the L4 header (or the last header read); the header
    /// bytes each GSO segment repeats.
    pub hdr_end: u32,
    /// Offset just past the IP packet, from its length field; 0 when unknown
    /// (no IP header, or a GSO aggregate or jumbogram whose length field is
    /// 0). The caller checks it against the frame's length ([`Frame::fits`]).
    pub ip_end: u32,
    pub _pad: u32,
}

/// The IP header could be read: `flow` holds its addresses.
pub const HAS_IP: u32 = 1;
/// One or two VLAN tags were present in the frame's bytes.
pub const VLAN: u32 = 2;
/// EtherType is neither IPv4 nor IPv6.
pub const NON_IP: u32 = 4;
/// EtherType is ARP.
pub const ARP: u32 = 8;
/// A header was truncated or impossible.
pub const MALFORMED: u32 = 16;
/// The IPv6 extension-header chain was longer than the parser walks.
pub const EXT_LIMIT: u32 = 32;

impl Frame {
    /// Prepares the scratch frame for the next packet.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.flags = 0;
        self.hdr_end = ETH_HLEN as u32;
        self.ip_end = 0;
    }

    /// Marks the frame malformed when its IP packet claims more bytes than
    /// the frame's `len` holds.
    #[inline(always)]
    pub fn fits(&mut self, len: u64) {
        if u64::from(self.ip_end) > len {
            self.set(MALFORMED);
        }
    }

    #[inline(always)]
    fn set(&mut self, flag: u32) {
        self.flags |= flag;
    }
}

/// Bounds-checked access to the packet bytes `start..end`. Each header is
/// checked once ([`Bytes::at`]) and its fields read through the returned
/// pointer, the shape the verifier proves best.
#[derive(Clone, Copy)]
struct Bytes {
    start: usize,
    end: usize,
}

/// A checked pointer to `N` packet bytes.
#[derive(Clone, Copy)]
struct Hdr<const N: usize>(*const u8);

impl<const N: usize> Hdr<N> {
    #[inline(always)]
    fn u8(self, i: usize) -> u8 {
        debug_assert!(i < N);
        // SAFETY: `Bytes::at` checked that N bytes from `self.0` lie in the
        // packet, and every caller passes a constant `i < N`.
        unsafe { *self.0.add(i) }
    }

    #[inline(always)]
    fn be16(self, i: usize) -> u16 {
        u16::from_be_bytes([self.u8(i), self.u8(i + 1)])
    }

    /// Four raw bytes at `i`, to copy as they are.
    #[inline(always)]
    fn raw32(self, i: usize) -> u32 {
        debug_assert!(i + 4 <= N);
        // SAFETY: as in `u8`, for bytes i..i + 4.
        unsafe { core::ptr::read_unaligned(self.0.add(i).cast::<u32>()) }
    }

    /// Two raw bytes at `i`, to copy as they are.
    #[inline(always)]
    fn raw16(self, i: usize) -> u16 {
        debug_assert!(i + 2 <= N);
        // SAFETY: as in `u8`, for bytes i..i + 2.
        unsafe { core::ptr::read_unaligned(self.0.add(i).cast::<u16>()) }
    }

    /// Copies the MAC at `i` into `dst`.
    #[inline(always)]
    fn mac(self, i: usize, dst: &mut [u8; 6]) {
        let p = dst.as_mut_ptr();
        // SAFETY: `dst` is 6 bytes: 4 at 0 and 2 at 4.
        unsafe {
            core::ptr::write_unaligned(p.cast::<u32>(), self.raw32(i));
            core::ptr::write_unaligned(p.add(4).cast::<u16>(), self.raw16(i + 4));
        }
    }

    /// Copies the IPv6 address at `i` into `dst`.
    #[inline(always)]
    fn ipv6_addr(self, i: usize, dst: &mut [u8; 16]) {
        let p = dst.as_mut_ptr().cast::<u32>();
        // SAFETY: `dst` is 16 bytes: four 4-byte words.
        unsafe {
            for w in 0..4 {
                core::ptr::write_unaligned(p.add(w), self.raw32(i + 4 * w));
            }
        }
    }

    /// Stores the IPv4 address at `i` into `dst` IPv4-mapped (`::ffff:a.b.c.d`).
    #[inline(always)]
    fn ipv4_mapped(self, i: usize, dst: &mut [u8; 16]) {
        let p = dst.as_mut_ptr();
        // SAFETY: `dst` is 16 bytes: 8 zero bytes, then two 4-byte words.
        // Volatile, or LLVM merges the zeros into a `memset` call.
        unsafe {
            core::ptr::write_volatile(p.cast::<[u8; 8]>(), [0; 8]);
            core::ptr::write_unaligned(
                p.add(8).cast::<u32>(),
                u32::from_ne_bytes([0, 0, 0xff, 0xff]),
            );
            core::ptr::write_unaligned(p.add(12).cast::<u32>(), self.raw32(i));
        }
    }
}

impl Bytes {
    #[inline(always)]
    fn has(&self, off: usize, len: usize) -> bool {
        off <= MAX_HDR_OFF && self.start + off + len <= self.end
    }

    #[inline(always)]
    fn at<const N: usize>(&self, off: usize) -> Option<Hdr<N>> {
        if !self.has(off, N) {
            return None;
        }
        Some(Hdr((self.start + off) as *const u8))
    }
}

/// Parses the frame in `start..end` (the linear packet bytes) into `f`,
/// which must have been [`Frame::reset`]. Returns false when the frame is
/// shorter than an Ethernet header (then `f` holds nothing of it). `gso`
/// says the frame is a GSO/GRO aggregate, whose IP length fields may be
/// zero. The caller then checks the IP length against the whole frame's
/// with [`Frame::fits`], to spot truncated IP packets.
#[inline(always)]
pub fn parse(start: usize, end: usize, gso: bool, f: &mut Frame) -> bool {
    let b = Bytes { start, end };
    let Some(eth) = b.at::<ETH_HLEN>(0) else {
        return false;
    };
    // Into the flow key, which the fast path uses; the MAC-pair key gets
    // them only when the frame goes to the MAC-pair map.
    eth.mac(0, &mut f.flow.dst_mac);
    eth.mac(6, &mut f.flow.src_mac);
    let mut ethertype = eth.be16(12);
    let mut off = ETH_HLEN;
    for _ in 0..2 {
        if !matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1) {
            break;
        }
        f.set(VLAN);
        // A tag is TCI (2 bytes) then the inner EtherType (2 bytes).
        let Some(tag) = b.at::<4>(off) else {
            f.set(MALFORMED);
            return true;
        };
        ethertype = tag.be16(2);
        off += 4;
    }
    f.hdr_end = off as u32;
    match ethertype {
        ETH_P_IPV4 => ipv4(&b, off, gso, f),
        ETH_P_IPV6 => ipv6(&b, off, gso, f),
        ETH_P_ARP => {
            f.set(NON_IP | ARP);
            if !b.has(off, ARP_ETH_IPV4_LEN) {
                f.set(MALFORMED);
            }
        }
        _ => f.set(NON_IP),
    }
    true
}

#[inline(always)]
fn ipv4(b: &Bytes, off: usize, gso: bool, f: &mut Frame) {
    let Some(h) = b.at::<20>(off) else {
        f.set(MALFORMED);
        return;
    };
    let vihl = h.u8(0);
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        f.set(MALFORMED);
        return;
    }
    let total_len = usize::from(h.be16(2));
    // GSO aggregates of more than 64 KiB (BIG TCP) carry a total length of 0.
    if !(gso && total_len == 0) {
        if total_len < ihl {
            f.set(MALFORMED);
        }
        f.ip_end = (off + total_len) as u32;
    }
    f.set(HAS_IP);
    h.ipv4_mapped(12, &mut f.flow.src);
    h.ipv4_mapped(16, &mut f.flow.dst);
    let protocol = h.u8(9);
    f.flow.proto = protocol;
    if !b.has(off, ihl) {
        f.set(MALFORMED);
        f.hdr_end = (off + 20) as u32;
        return;
    }
    // Only the first fragment carries the L4 header.
    l4(b, off + ihl, protocol, h.be16(6) & 0x1fff == 0, f);
}

#[inline(always)]
fn ipv6(b: &Bytes, off: usize, gso: bool, f: &mut Frame) {
    let Some(h) = b.at::<40>(off) else {
        f.set(MALFORMED);
        return;
    };
    if h.u8(0) >> 4 != 6 {
        f.set(MALFORMED);
        return;
    }
    let payload_len = usize::from(h.be16(4));
    // Jumbograms and BIG TCP aggregates carry a payload length of 0.
    if payload_len != 0 && !gso {
        f.ip_end = (off + 40 + payload_len) as u32;
    }
    h.ipv6_addr(8, &mut f.flow.src);
    h.ipv6_addr(24, &mut f.flow.dst);
    f.set(HAS_IP);

    let mut next = h.u8(6);
    let mut pos = off + 40;
    let mut first_fragment = true;
    let mut done = false;
    for _ in 0..MAX_IPV6_EXT {
        let step = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6:
            // length in 8-octet units, not counting the first 8.
            0 | 43 | 60 | 135 | 139 | 140 => match b.at::<2>(pos) {
                Some(e) => {
                    next = e.u8(0);
                    (usize::from(e.u8(1)) + 1) * 8
                }
                None => {
                    f.set(MALFORMED);
                    break;
                }
            },
            // Fragment: fixed 8 bytes; a non-zero offset means no L4 header.
            44 => match b.at::<4>(pos) {
                Some(e) => {
                    next = e.u8(0);
                    first_fragment = e.be16(2) >> 3 == 0;
                    8
                }
                None => {
                    f.set(MALFORMED);
                    break;
                }
            },
            // Authentication header: length in 4-octet units, minus 2.
            51 => match b.at::<2>(pos) {
                Some(e) => {
                    next = e.u8(0);
                    (usize::from(e.u8(1)) + 2) * 4
                }
                None => {
                    f.set(MALFORMED);
                    break;
                }
            },
            _ => {
                done = true;
                break;
            }
        };
        pos += step;
        if pos > MAX_HDR_OFF {
            break;
        }
    }
    f.flow.proto = next;
    if !done {
        if f.flags & MALFORMED == 0 {
            f.set(EXT_LIMIT);
        }
        f.hdr_end = pos.min(MAX_HDR_OFF) as u32;
        return;
    }
    l4(b, pos, next, first_fragment, f);
}

/// Checks the L4 header is whole and records where it ends.
#[inline(always)]
fn l4(b: &Bytes, off: usize, protocol: u8, first_fragment: bool, f: &mut Frame) {
    f.hdr_end = off as u32;
    if !first_fragment {
        return;
    }
    let len = match protocol {
        proto::TCP => match b.at::<13>(off) {
            // Data offset: the TCP header length in 32-bit words.
            Some(t) => usize::from(t.u8(12) >> 4) * 4,
            None => 20,
        },
        proto::UDP => 8,
        proto::ICMP | proto::ICMPV6 => 4,
        _ => 0,
    };
    if (protocol == proto::TCP && len < 20) || !b.has(off, len) {
        f.set(MALFORMED);
        return;
    }
    f.hdr_end = (off + len) as u32;
}
