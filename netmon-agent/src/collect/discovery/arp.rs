//! The ARP sweep: a who-has for every host address of an IPv4 subnet, sent
//! from an `AF_PACKET` socket bound to the interface, paced to a rate, with
//! the replies (and any ARP request heard meanwhile) read from that same
//! socket until a short window after the last request.
//!
//! Frame building and parsing are pure functions; [`sweep`] does the I/O.

use std::{
    collections::HashSet,
    io, mem,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

use super::{DiscoveryError, ser_secs, ser_time};

pub const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// Ethernet header (14) + ARP for IPv4 over Ethernet (28).
pub const FRAME_LEN: usize = 42;

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

/// Why a frame is not an ARP packet this sweep can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is shorter than an ARP packet (42)")]
    Short(usize),
    #[error("ethertype {0:#06x} is not ARP")]
    NotArp(u16),
    #[error(
        "ARP for hardware type {htype}, protocol {ptype:#06x}, lengths {hlen}/{plen}: not IPv4 over Ethernet"
    )]
    Unsupported {
        htype: u16,
        ptype: u16,
        hlen: u8,
        plen: u8,
    },
}

/// A broadcast who-has for `target` from `src_mac`/`src_ip`.
pub fn request(src_mac: [u8; 6], src_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    f[22..28].copy_from_slice(&src_mac);
    f[28..32].copy_from_slice(&src_ip.octets());
    // Target MAC stays zero: unknown.
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// Parses an Ethernet frame carrying ARP for IPv4 over Ethernet. Trailing
/// bytes (padding to 60) are ignored.
pub fn parse(frame: &[u8]) -> Result<Arp, FrameError> {
    if frame.len() < FRAME_LEN {
        return Err(FrameError::Short(frame.len()));
    }
    let be16 = |i: usize| u16::from_be_bytes([frame[i], frame[i + 1]]);
    let ethertype = be16(12);
    if ethertype != ETH_P_ARP {
        return Err(FrameError::NotArp(ethertype));
    }
    let (htype, ptype, hlen, plen) = (be16(14), be16(16), frame[18], frame[19]);
    if htype != 1 || ptype != ETH_P_IP || hlen != 6 || plen != 4 {
        return Err(FrameError::Unsupported {
            htype,
            ptype,
            hlen,
            plen,
        });
    }
    let mac = |i: usize| -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&frame[i..i + 6]);
        m
    };
    let ip = |i: usize| Ipv4Addr::new(frame[i], frame[i + 1], frame[i + 2], frame[i + 3]);
    Ok(Arp {
        op: be16(20),
        sender_mac: mac(22),
        sender_ip: ip(28),
        target_mac: mac(32),
        target_ip: ip(38),
    })
}

/// The host addresses of `addr`/`prefix`: every address but the network and
/// broadcast ones (both kept for /31, RFC 3021; a /32 has only itself).
pub fn hosts(addr: Ipv4Addr, prefix: u8) -> impl Iterator<Item = Ipv4Addr> {
    let prefix = u32::from(prefix.min(32));
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let net = addr.to_bits() & mask;
    let last = net | !mask;
    let (first, last) = if prefix >= 31 {
        (net, last)
    } else {
        (net + 1, last - 1)
    };
    (first..=last).map(Ipv4Addr::from_bits)
}

/// Whether `ip` is in `addr`/`prefix`.
pub fn same_subnet(addr: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    let p = u32::from(prefix.min(32));
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    addr.to_bits() & mask == ip.to_bits() & mask
}

/// `addr`/`prefix` with the host bits cleared, as `a.b.c.d/p`.
pub fn subnet_name(addr: Ipv4Addr, prefix: u8) -> String {
    let p = u32::from(prefix.min(32));
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    format!("{}/{p}", Ipv4Addr::from_bits(addr.to_bits() & mask))
}

/// One sweep of one subnet, as reported.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SweepStats {
    pub interface: String,
    pub subnet: String,
    /// The address the requests were sent from.
    #[schema(value_type = String)]
    pub source: Ipv4Addr,
    /// RFC 3339.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub started: SystemTime,
    #[serde(rename = "wall_seconds", serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub wall: Duration,
    /// Who-has requests sent (every host address but our own).
    pub requests: u64,
    /// Distinct addresses that answered.
    pub replies: u64,
    /// Distinct devices heard asking (ARP requests) during the sweep.
    pub heard: u64,
    /// Frames on the socket that were not usable ARP.
    pub malformed: u64,
}

/// A device the sweep found: `mac` answered for (or asked from) `ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub at: SystemTime,
}

/// What to sweep.
#[derive(Clone, Debug)]
pub struct Target {
    pub ifindex: u32,
    pub interface: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// Opens an `AF_PACKET` socket for ARP bound to `ifindex`.
pub(super) fn open(ifindex: u32) -> Result<OwnedFd, DiscoveryError> {
    let proto = ETH_P_ARP.to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            i32::from(proto),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => DiscoveryError::NoRawSockets,
            _ => DiscoveryError::Io("opening an AF_PACKET socket", e),
        });
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
    // SAFETY: sll is a valid sockaddr_ll and its size is passed with it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(DiscoveryError::Io(
            "binding the AF_PACKET socket",
            io::Error::last_os_error(),
        ));
    }
    Ok(fd)
}

/// Waits up to `timeout` for `fd` to be readable.
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis().max(1)).unwrap_or(i32::MAX);
    // SAFETY: pfd is one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

/// Receives one frame that was not sent by this host; None when no frame
/// is waiting.
pub(super) fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    loop {
        // SAFETY: sockaddr_ll is plain old data.
        let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and from are valid for writes of the sizes given.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&raw mut from).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return None;
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        return usize::try_from(n).ok();
    }
}

/// Sweeps `t`'s subnet at `rate` requests a second, then listens for
/// `window`. Returns what it found and its statistics. Stops sending, and
/// listens no longer, once `stop` is set (the agent is shutting down).
pub fn sweep(
    t: &Target,
    rate: u32,
    window: Duration,
    stop: &super::Stop,
) -> Result<(SweepStats, Vec<Found>), DiscoveryError> {
    let fd = open(t.ifindex)?;
    let started = SystemTime::now();
    let t0 = Instant::now();
    let gap = Duration::from_secs(1) / rate.max(1);
    let subnet = hosts(t.ip, t.prefix);
    let in_subnet = |ip: Ipv4Addr| ip != t.ip && same_subnet(t.ip, t.prefix, ip);
    let (mut found, mut replied, mut heard) = (Vec::new(), HashSet::new(), HashSet::new());
    // Every MAC that answers for an address is found: two answering for
    // one is what the security collector's ARP-spoofing check looks for.
    let mut answers = HashSet::new();
    let mut malformed = 0u64;
    let mut requests = 0u64;
    let mut buf = [0u8; 256];
    let mut read_all = |found: &mut Vec<Found>| {
        while let Some(n) = recv_frame(&fd, &mut buf) {
            let arp = match parse(&buf[..n]) {
                Ok(a) => a,
                Err(_) => {
                    malformed += 1;
                    continue;
                }
            };
            if arp.sender_mac == t.mac || arp.sender_mac[0] & 1 != 0 || !in_subnet(arp.sender_ip) {
                continue;
            }
            let new = match arp.op {
                ARP_REPLY if arp.target_ip == t.ip => {
                    replied.insert(arp.sender_ip);
                    answers.insert((arp.sender_ip, arp.sender_mac))
                }
                ARP_REQUEST => heard.insert((arp.sender_ip, arp.sender_mac)),
                _ => false,
            };
            if new {
                found.push(Found {
                    ip: arp.sender_ip,
                    mac: arp.sender_mac,
                    at: SystemTime::now(),
                });
            }
        }
    };
    for (i, target) in subnet.filter(|&ip| ip != t.ip).enumerate() {
        if stop.stopped() {
            break;
        }
        let due = t0 + gap * u32::try_from(i).unwrap_or(u32::MAX);
        while let Some(left) = due
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            if wait_readable(&fd, left) {
                read_all(&mut found);
            }
        }
        let frame = request(t.mac, t.ip, target);
        // SAFETY: frame is valid for reads of its length.
        let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) {
                // The queue is full: the rate is too high for this link.
                // Skip this address rather than stall the sweep.
                continue;
            }
            return Err(DiscoveryError::Io("sending an ARP request", e));
        }
        requests += 1;
        read_all(&mut found);
    }
    let end = Instant::now() + window;
    while let Some(left) = end
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero() && !stop.stopped())
    {
        // In slices, so that shutdown need not wait out the window.
        if wait_readable(&fd, left.min(Duration::from_millis(100))) {
            read_all(&mut found);
        }
    }
    let stats = SweepStats {
        interface: t.interface.clone(),
        subnet: subnet_name(t.ip, t.prefix),
        source: t.ip,
        started,
        wall: t0.elapsed(),
        requests,
        replies: replied.len() as u64,
        heard: heard.len() as u64,
        malformed,
    };
    Ok((stats, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc];

    #[test]
    fn request_round_trips_and_matches_the_wire_format() {
        let f = request(
            MAC,
            Ipv4Addr::new(10, 0, 0, 254),
            Ipv4Addr::new(10, 0, 0, 7),
        );
        // Broadcast, ethertype 0x0806, Ethernet/IPv4, op 1.
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..22], &[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        let a = parse(&f).unwrap();
        assert_eq!(a.op, 1);
        assert_eq!(a.sender_mac, MAC);
        assert_eq!(a.sender_ip, Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(a.target_mac, [0; 6]);
        assert_eq!(a.target_ip, Ipv4Addr::new(10, 0, 0, 7));
        // Padding to the 60-byte minimum is ignored.
        let mut padded = f.to_vec();
        padded.resize(60, 0);
        assert_eq!(parse(&padded), Ok(a));
    }

    #[test]
    fn parses_a_captured_reply() {
        // A reply from 10.0.0.1 (02:00:00:00:01:01) to 10.0.0.254.
        let hex = "0200000001fe02000000010108060001080006040002\
                   020000000101 0a000001 0200000001fe 0a0000fe";
        let bytes: Vec<u8> = hex
            .split_whitespace()
            .collect::<String>()
            .as_bytes()
            .chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect();
        let a = parse(&bytes).unwrap();
        assert_eq!(a.op, 2);
        assert_eq!(a.sender_mac, [2, 0, 0, 0, 1, 1]);
        assert_eq!(a.sender_ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.target_ip, Ipv4Addr::new(10, 0, 0, 254));
    }

    #[test]
    fn malformed_frames_are_refused_with_the_reason() {
        let good = request(MAC, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(parse(&[]), Err(FrameError::Short(0)));
        assert_eq!(parse(&good[..41]), Err(FrameError::Short(41)));
        let mut ipv4 = good;
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&ipv4), Err(FrameError::NotArp(0x0800)));
        let mut long_hw = good;
        long_hw[18] = 20;
        assert!(matches!(
            parse(&long_hw),
            Err(FrameError::Unsupported { hlen: 20, .. })
        ));
        let mut ipv6 = good;
        ipv6[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert!(matches!(parse(&ipv6), Err(FrameError::Unsupported { .. })));
        // Garbage of every length up to the full size never panics.
        for n in 0..=64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse(&junk);
        }
    }

    #[test]
    fn host_addresses_of_a_subnet() {
        let ip = Ipv4Addr::new(10, 0, 0, 77);
        let h: Vec<_> = hosts(ip, 24).collect();
        assert_eq!(h.len(), 254);
        assert_eq!(h[0], Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(h[253], Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(hosts(ip, 22).count(), 1022);
        assert_eq!(
            hosts(Ipv4Addr::new(10, 0, 0, 4), 31).collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 0, 0, 4), Ipv4Addr::new(10, 0, 0, 5)]
        );
        assert_eq!(hosts(ip, 32).collect::<Vec<_>>(), [ip]);
        assert_eq!(hosts(ip, 30).count(), 2);
        assert_eq!(subnet_name(ip, 22), "10.0.0.0/22");
        assert_eq!(subnet_name(ip, 24), "10.0.0.0/24");
    }
}
