//! The IPv6 all-nodes probe: one ICMPv6 echo request to `ff02::1` on an
//! interface, from each of its IPv6 addresses. Every node on the link
//! answers, and to answer it first resolves this host's address with a
//! neighbour solicitation, which puts it in the kernel's neighbour table
//! (as STALE); the next neighbour dump picks it up. Sending from each of
//! the interface's addresses (link-local and global) makes the nodes
//! answer from their matching address, so both kinds are learnt.
//!
//! An ICMP datagram ("ping") socket is used when `ping_group_range` allows
//! it (no privilege needed), a raw one otherwise (CAP_NET_RAW).

use std::net::{Ipv6Addr, SocketAddrV6};

use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::DiscoveryError;

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ECHO_REQUEST: u8 = 128;

/// One interface's probe, as reported.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Ipv6ProbeStats)]
pub struct ProbeStats {
    pub interface: String,
    /// The addresses probes were sent from.
    #[schema(value_type = Vec<String>)]
    pub sources: Vec<Ipv6Addr>,
    /// `datagram` or `raw`.
    pub socket: &'static str,
}

/// An echo request: type, code, checksum (the kernel computes it for
/// ICMPv6 sockets), identifier (replaced by the kernel for datagram
/// sockets), sequence, and a payload naming the sender.
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![ECHO_REQUEST, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"netmon discovery");
    m
}

fn open() -> Result<(Socket, &'static str), DiscoveryError> {
    match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::ICMPV6)) {
        Ok(s) => return Ok((s, "datagram")),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {}
        Err(e) => return Err(DiscoveryError::Io("opening an ICMPv6 socket", e)),
    }
    match Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)) {
        Ok(s) => Ok((s, "raw")),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
            Err(DiscoveryError::NoRawSockets)
        }
        Err(e) => Err(DiscoveryError::Io("opening a raw ICMPv6 socket", e)),
    }
}

/// Sends the all-nodes probe on `ifindex` from each of `sources`. A source
/// that cannot be used (an address removed meanwhile) is skipped; the
/// error is returned only when no probe could be sent.
pub fn probe(
    ifindex: u32,
    interface: &str,
    sources: &[Ipv6Addr],
) -> Result<ProbeStats, DiscoveryError> {
    let mut sent = Vec::new();
    let mut last_err = None;
    let mut kind = "datagram";
    for (seq, &src) in sources.iter().enumerate() {
        let (socket, k) = open()?;
        kind = k;
        let scope = if src.is_unicast_link_local() {
            ifindex
        } else {
            0
        };
        let result = socket
            .bind(&SockAddr::from(SocketAddrV6::new(src, 0, 0, scope)))
            .map_err(|e| DiscoveryError::Io("binding the ICMPv6 socket", e))
            .and_then(|()| {
                let dst = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, ifindex));
                let msg = echo_request(std::process::id() as u16, seq as u16);
                socket
                    .send_to(&msg, &dst)
                    .map_err(|e| DiscoveryError::Io("sending the all-nodes echo request", e))
            });
        match result {
            Ok(_) => sent.push(src),
            Err(e) => last_err = Some(e),
        }
    }
    if sent.is_empty()
        && let Some(e) = last_err
    {
        return Err(e);
    }
    Ok(ProbeStats {
        interface: interface.to_owned(),
        sources: sent,
        socket: kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_layout() {
        let m = echo_request(0x1234, 7);
        assert_eq!(&m[..8], &[128, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert!(m.len() > 8);
    }
}
