//! ICMP echo on the wire: building requests, parsing replies, and the two
//! kinds of socket that can carry them.
//!
//! An ICMP *datagram* socket (`SOCK_DGRAM`, "ping socket") needs no
//! privilege beyond the process's group being inside
//! `net.ipv4.ping_group_range` (the same sysctl governs IPv6). The kernel
//! rewrites the echo identifier to the socket's port and delivers only the
//! replies that carry it, without the IP header. A *raw* socket needs
//! `CAP_NET_RAW`; it sees every ICMP message to the host, so it gets a filter
//! that lets only echo replies through and the caller matches the identifier
//! itself; IPv4 raw sockets deliver the IP header too.
//!
//! Parsing is pure ([`parse_reply`]) so it is tested on literal packets.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub const ICMP4_ECHO_REQUEST: u8 = 8;
pub const ICMP4_ECHO_REPLY: u8 = 0;
pub const ICMP6_ECHO_REQUEST: u8 = 128;
pub const ICMP6_ECHO_REPLY: u8 = 129;

/// `ICMP_FILTER` (level `SOL_RAW`) and `ICMP6_FILTER` (level
/// `IPPROTO_ICMPV6`) from `<linux/icmp.h>`/`<linux/icmpv6.h>`; not in libc.
const ICMP_FILTER: libc::c_int = 1;
const ICMP6_FILTER: libc::c_int = 1;

/// Size of the ICMP echo header (type, code, checksum, identifier, sequence).
pub const ECHO_HEADER: usize = 8;

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Which kind of ICMP socket a family ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    /// `SOCK_DGRAM` ping socket (needs `ping_group_range`).
    Datagram,
    /// `SOCK_RAW` socket (needs `CAP_NET_RAW`).
    Raw,
}

impl SocketKind {
    fn ty(self) -> Type {
        match self {
            SocketKind::Datagram => Type::DGRAM,
            SocketKind::Raw => Type::RAW,
        }
    }

    /// What the kernel checks before it lets a process open this kind.
    pub fn requirement(self) -> &'static str {
        match self {
            SocketKind::Datagram => {
                "an ICMP datagram socket needs the process's group inside net.ipv4.ping_group_range"
            }
            SocketKind::Raw => "a raw ICMP socket needs CAP_NET_RAW",
        }
    }
}

/// The RFC 1071 Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let (pairs, rest) = data.as_chunks::<2>();
    for pair in pairs {
        sum += u32::from(u16::from_be_bytes(*pair));
    }
    if let [last] = rest {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request. The IPv4 checksum is filled in; for IPv6 the kernel
/// computes it (it needs the pseudo-header, which only the kernel knows for
/// sure), so the field is left zero.
pub fn echo_request(family: Family, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let kind = match family {
        Family::V4 => ICMP4_ECHO_REQUEST,
        Family::V6 => ICMP6_ECHO_REQUEST,
    };
    let mut packet = Vec::with_capacity(ECHO_HEADER + payload.len());
    packet.extend_from_slice(&[kind, 0, 0, 0]);
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(payload);
    if family == Family::V4 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// An echo reply, borrowed from the received packet.
#[derive(Debug, PartialEq, Eq)]
pub struct EchoReply<'a> {
    pub ident: u16,
    pub seq: u16,
    pub payload: &'a [u8],
}

/// Why a received packet is not an echo reply we can use.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the headers it must carry.
    #[error("truncated ICMP packet ({0} bytes)")]
    Truncated(usize),
    /// The IPv4 header in front of it is malformed (raw sockets only).
    #[error("malformed IPv4 header (version {version}, header length {header_len})")]
    BadIpHeader { version: u8, header_len: usize },
    /// Another ICMP message (the filter should not let these through).
    #[error("ICMP type {0} is not an echo reply")]
    NotEchoReply(u8),
    /// The IPv4 ICMP checksum does not add up.
    #[error("bad ICMP checksum")]
    BadChecksum,
}

/// Parses what a socket of `kind` and `family` received. IPv4 raw sockets
/// deliver the IP header first; the others start at the ICMP header. IPv4
/// checksums are verified here (the kernel hands raw sockets packets before
/// checking them); IPv6 ones are verified by the kernel for both kinds.
pub fn parse_reply(
    family: Family,
    kind: SocketKind,
    packet: &[u8],
) -> Result<EchoReply<'_>, ParseError> {
    let icmp = if family == Family::V4 && kind == SocketKind::Raw {
        let first = *packet.first().ok_or(ParseError::Truncated(0))?;
        let version = first >> 4;
        let header_len = usize::from(first & 0x0f) * 4;
        if version != 4 || header_len < 20 {
            return Err(ParseError::BadIpHeader {
                version,
                header_len,
            });
        }
        packet
            .get(header_len..)
            .ok_or(ParseError::Truncated(packet.len()))?
    } else {
        packet
    };
    if icmp.len() < ECHO_HEADER {
        return Err(ParseError::Truncated(icmp.len()));
    }
    let expected = match family {
        Family::V4 => ICMP4_ECHO_REPLY,
        Family::V6 => ICMP6_ECHO_REPLY,
    };
    if icmp[0] != expected {
        return Err(ParseError::NotEchoReply(icmp[0]));
    }
    if family == Family::V4 && checksum(icmp) != 0 {
        return Err(ParseError::BadChecksum);
    }
    Ok(EchoReply {
        ident: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        payload: &icmp[ECHO_HEADER..],
    })
}

/// Why no ICMP socket of a kind could be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {kind:?} ICMP socket for {family}: {source}", family = .family.name())]
pub struct OpenError {
    pub family: Family,
    pub kind: SocketKind,
    #[source]
    pub source: io::Error,
}

impl OpenError {
    /// Whether the kernel refused for lack of permission (rather than, say,
    /// the family being absent), so another kind may still work.
    pub fn denied(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(libc::EACCES | libc::EPERM))
    }
}

/// A non-blocking ICMP socket of one family.
#[derive(Debug)]
pub struct EchoSocket {
    socket: Socket,
    pub family: Family,
    pub kind: SocketKind,
}

impl EchoSocket {
    /// Opens a socket of `kind` for `family`; raw sockets get a filter that
    /// passes echo replies only.
    pub fn open(family: Family, kind: SocketKind) -> Result<EchoSocket, OpenError> {
        let err = |source| OpenError {
            family,
            kind,
            source,
        };
        let (domain, protocol) = match family {
            Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
            Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
        };
        let socket = Socket::new(domain, kind.ty(), Some(protocol)).map_err(err)?;
        socket.set_nonblocking(true).map_err(err)?;
        if kind == SocketKind::Raw {
            match family {
                // Bit n set = ICMP type n dropped.
                Family::V4 => {
                    let mask: u32 = !(1 << ICMP4_ECHO_REPLY);
                    setsockopt(&socket, libc::SOL_RAW, ICMP_FILTER, &mask).map_err(err)?;
                }
                Family::V6 => {
                    let mut filter = [u32::MAX; 8];
                    let t = usize::from(ICMP6_ECHO_REPLY);
                    filter[t >> 5] &= !(1 << (t & 31));
                    setsockopt(&socket, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
                        .map_err(err)?;
                }
            }
        }
        Ok(EchoSocket {
            socket,
            family,
            kind,
        })
    }

    /// Sends one echo request to `dst`.
    pub fn send(&self, dst: SocketAddr, packet: &[u8]) -> io::Result<()> {
        self.socket.send_to(packet, &SockAddr::from(dst)).map(drop)
    }

    /// Receives one packet into `buf` if one is waiting; its sender and
    /// length. `Ok(None)` when nothing is queued.
    pub fn try_recv(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<Option<(IpAddr, usize)>> {
        match self.socket.recv_from(buf) {
            Ok((len, from)) => match from.as_socket() {
                Some(from) => Ok(Some((from.ip(), len))),
                // Not an IP sender: cannot be a reply; skip it.
                None => Ok(Some((IpAddr::from([0u8; 4]), 0))),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn raw_fd(&self) -> libc::c_int {
        self.socket.as_raw_fd()
    }
}

fn setsockopt<T>(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` points to `len` readable bytes for the call's duration.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits up to `timeout` for any of `sockets` to become readable; the
/// indexes of those that are. An interrupted wait returns no index.
pub fn wait_readable(sockets: &[&EchoSocket], timeout: Duration) -> io::Result<Vec<usize>> {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up so a sub-millisecond wait does not spin.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    let nfds = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
    // SAFETY: `fds` is a valid array of `nfds` pollfd structs.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, fd)| fd.revents != 0)
        .map(|(i, _)| i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is ddf2, so the
        // checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        // Odd length: the last byte is padded with zero.
        assert_eq!(checksum(&[0x12]), !0x1200);
    }

    #[test]
    fn request_v4_has_a_valid_checksum_and_fields() {
        let p = echo_request(Family::V4, 0x1234, 7, b"netmon");
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(&p[8..], b"netmon");
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn request_v6_leaves_the_checksum_to_the_kernel() {
        let p = echo_request(Family::V6, 1, 2, b"x");
        assert_eq!(p, [128, 0, 0, 0, 0, 1, 0, 2, b'x']);
    }

    /// The request turned into the reply a host would send.
    fn reply_v4(ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = echo_request(Family::V4, ident, seq, payload);
        p[0] = ICMP4_ECHO_REPLY;
        p[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
        p
    }

    #[test]
    fn parses_a_datagram_v4_reply() {
        let p = reply_v4(9, 300, b"abc");
        assert_eq!(
            parse_reply(Family::V4, SocketKind::Datagram, &p),
            Ok(EchoReply {
                ident: 9,
                seq: 300,
                payload: b"abc"
            })
        );
    }

    #[test]
    fn parses_a_raw_v4_reply_after_its_ip_header_with_options() {
        // 24-byte IPv4 header (IHL 6), contents other than the first byte
        // are not looked at.
        let mut p = vec![0x46];
        p.extend_from_slice(&[0; 23]);
        p.extend(reply_v4(1, 2, b""));
        let r = parse_reply(Family::V4, SocketKind::Raw, &p).unwrap();
        assert_eq!((r.ident, r.seq, r.payload), (1, 2, &b""[..]));
    }

    #[test]
    fn rejects_malformed_packets() {
        use ParseError::*;
        let good = reply_v4(1, 2, b"xy");
        fn parse4(p: &[u8]) -> Result<EchoReply<'_>, ParseError> {
            parse_reply(Family::V4, SocketKind::Datagram, p)
        }
        assert_eq!(parse4(&good[..7]), Err(Truncated(7)));
        assert_eq!(parse4(&[]), Err(Truncated(0)));
        let mut bad = good.clone();
        bad[9] ^= 0xff;
        assert_eq!(parse4(&bad), Err(BadChecksum));
        let request = echo_request(Family::V4, 1, 2, b"xy");
        assert_eq!(parse4(&request), Err(NotEchoReply(8)));

        fn raw4(p: &[u8]) -> Result<EchoReply<'_>, ParseError> {
            parse_reply(Family::V4, SocketKind::Raw, p)
        }
        assert_eq!(raw4(&[]), Err(Truncated(0)));
        assert_eq!(
            raw4(&[0x45, 0, 0]),
            Err(Truncated(3)),
            "header length beyond the packet"
        );
        assert_eq!(
            raw4(&[0x44; 40]),
            Err(BadIpHeader {
                version: 4,
                header_len: 16
            })
        );
        assert_eq!(
            raw4(&[0x65; 40]),
            Err(BadIpHeader {
                version: 6,
                header_len: 20
            })
        );

        fn parse6(p: &[u8]) -> Result<EchoReply<'_>, ParseError> {
            parse_reply(Family::V6, SocketKind::Raw, p)
        }
        assert_eq!(parse6(&[129, 0, 0, 0, 0, 5]), Err(Truncated(6)));
        assert_eq!(parse6(&[1, 0, 0, 0, 0, 5, 0, 6]), Err(NotEchoReply(1)));
        assert_eq!(
            parse6(&[129, 0, 0xde, 0xad, 0, 5, 0, 6, 42]),
            Ok(EchoReply {
                ident: 5,
                seq: 6,
                payload: &[42]
            }),
            "IPv6 checksums are the kernel's to verify"
        );
    }
}
