//! The kernel's IPv4 (ARP) and IPv6 (NDP) neighbour tables, read with an
//! `RTM_GETNEIGH` netlink dump.
//!
//! [`dump`] does the I/O; [`neighbour`] turns one message into a
//! [`Neighbour`] and is tested on literal messages.
//!
//! When a neighbour was last active: the kernel reports, per entry, how long
//! ago it was last *confirmed* (a reply or upper-layer confirmation) and
//! last *updated* (a state change). A STALE entry that is a day old is not
//! activity, so the age of an entry is its confirmation age, except:
//! - STALE: the smaller of the two. The kernel creates entries from a
//!   neighbour's own solicitation (ARP request, NDP NS) as STALE with a
//!   confirmation time set in the past, and a REACHABLE entry turns STALE
//!   (an update) at most one reachable time after its last confirmation.
//! - PERMANENT and NOARP (configured by hand): seen now.
//! - DELAY and PROBE: the confirmation age only (their updates are this
//!   host sending to the neighbour, not the neighbour being alive).
//!
//! INCOMPLETE, FAILED and entries without a 6-byte link-layer address are
//! skipped.

use std::{io, net::IpAddr, os::fd::AsRawFd, time::Duration};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::DiscoveryError;

/// Most entries one dump keeps; the rest are counted and dropped (the
/// kernel's tables are bounded by gc_thresh3, but permanent entries are not).
pub const MAX_DUMP_ENTRIES: usize = 65_536;

/// One usable neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: [u8; 6],
    /// How long ago the neighbour was last active (see the module docs).
    pub age: Duration,
    /// How long ago the kernel last confirmed the entry (zero for
    /// PERMANENT and NOARP): what the ARP claims use, since a STALE
    /// entry's update (the REACHABLE -> STALE turn) is no answer.
    pub confirmed: Duration,
}

/// Why an entry was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Unresolved, failed or without a link-layer address: not a device.
    Unresolved,
    /// A link-layer address that is not 6 bytes, a missing destination or
    /// cache info: not something this collector can use.
    Unusable,
}

/// The length of one clock tick of the kernel's `nda_cacheinfo` ages.
fn clock_tick() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Duration::from_nanos(1_000_000_000 / hz)
}

/// Turns one neighbour message into a [`Neighbour`]; `tick` is the length
/// of the cache info's clock tick.
pub fn neighbour(msg: &NeighbourMessage, tick: Duration) -> Result<Neighbour, Skip> {
    let state = msg.header.state;
    if matches!(
        state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return Err(Skip::Unresolved);
    }
    let (mut ip, mut lladdr, mut cache) = (None, None, None);
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::LinkLayerAddress(l) => lladdr = Some(l.as_slice()),
            NeighbourAttribute::CacheInfo(c) => cache = Some(*c),
            _ => {}
        }
    }
    let lladdr = lladdr.ok_or(Skip::Unresolved)?;
    let mac: [u8; 6] = lladdr.try_into().map_err(|_| Skip::Unusable)?;
    if mac == [0; 6] {
        return Err(Skip::Unresolved);
    }
    let ip = ip.ok_or(Skip::Unusable)?;
    let ticks = |t: u32| tick * t;
    let (age, confirmed) = match state {
        NeighbourState::Permanent | NeighbourState::Noarp => (Duration::ZERO, Duration::ZERO),
        _ => {
            let c = cache.ok_or(Skip::Unusable)?;
            let age = match state {
                NeighbourState::Stale => ticks(c.confirmed.min(c.updated)),
                _ => ticks(c.confirmed),
            };
            (age, ticks(c.confirmed))
        }
    };
    Ok(Neighbour {
        ifindex: msg.header.ifindex,
        ip,
        mac,
        age,
        confirmed,
    })
}

/// What one dump of both tables gave.
#[derive(Debug, Default)]
pub struct Dump {
    pub neighbours: Vec<Neighbour>,
    /// Entries in the tables (both families), used or not.
    pub entries: u64,
    pub unresolved: u64,
    pub unusable: u64,
    /// Messages that did not parse.
    pub malformed: u64,
    /// Entries beyond [`MAX_DUMP_ENTRIES`].
    pub dropped: u64,
}

/// Dumps the IPv4 and IPv6 neighbour tables.
pub fn dump() -> Result<Dump, DiscoveryError> {
    let io = |what| move |e: io::Error| DiscoveryError::Io(what, e);
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(io("opening a netlink socket"))?;
    socket.bind_auto().map_err(io("binding a netlink socket"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(io("connecting a netlink socket"))?;
    set_recv_timeout(&socket, Duration::from_secs(2))?;
    let tick = clock_tick();
    let mut out = Dump::default();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        dump_family(&socket, family, tick, &mut out)?;
    }
    Ok(out)
}

fn set_recv_timeout(socket: &Socket, d: Duration) -> Result<(), DiscoveryError> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(d.subsec_micros() as i32),
    };
    // SAFETY: tv is a valid timeval and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    if rc != 0 {
        return Err(DiscoveryError::Io(
            "setting the netlink socket's timeout",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn dump_family(
    socket: &Socket,
    family: AddressFamily,
    tick: Duration,
    out: &mut Dump,
) -> Result<(), DiscoveryError> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_DUMP | NLM_F_REQUEST;
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    let mut req = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetNeighbour(msg)),
    );
    req.finalize();
    let mut buf = vec![0u8; req.header.length as usize];
    req.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map_err(|e| DiscoveryError::Io("sending a neighbour dump request", e))?;

    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let size = socket
            .recv(&mut &mut rx[..], 0)
            .map_err(|e| DiscoveryError::Io("reading the neighbour dump", e))?;
        let mut off = 0;
        while off + 16 <= size {
            // Each message starts with its u32 length: step over it even
            // when the message itself does not parse.
            let len = u32::from_ne_bytes([rx[off], rx[off + 1], rx[off + 2], rx[off + 3]]) as usize;
            if len < 16 || off + len > size {
                out.malformed += 1;
                break;
            }
            let bytes = &rx[off..off + len];
            off += len.next_multiple_of(4);
            let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes);
            match parsed.map(|m| m.payload) {
                Ok(NetlinkPayload::Done(_)) => return Ok(()),
                Ok(NetlinkPayload::Error(e)) => {
                    return Err(DiscoveryError::Netlink(e.to_string()));
                }
                Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m))) => {
                    out.entries += 1;
                    match neighbour(&m, tick) {
                        Ok(n) if out.neighbours.len() < MAX_DUMP_ENTRIES => out.neighbours.push(n),
                        Ok(_) => out.dropped += 1,
                        Err(Skip::Unresolved) => out.unresolved += 1,
                        Err(Skip::Unusable) => out.unusable += 1,
                    }
                }
                Ok(_) => {}
                Err(_) => out.malformed += 1,
            }
        }
        if size == 0 {
            return Err(DiscoveryError::Netlink(
                "the dump ended without DONE".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netlink_packet_core::{Emitable, Parseable};
    use netlink_packet_route::neighbour::NeighbourCacheInfo;

    use super::*;

    const TICK: Duration = Duration::from_millis(10);
    const MAC: [u8; 6] = [0x00, 0x1b, 0x21, 1, 2, 3];

    /// A message as the kernel would send it, emitted to bytes and parsed
    /// back, so the test goes through the same decoder as [`dump`].
    fn msg(state: NeighbourState, attrs: Vec<NeighbourAttribute>) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        let v6 = attrs.iter().any(|a| {
            matches!(
                a,
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(_))
            )
        });
        m.header.family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        m.header.ifindex = 7;
        m.header.state = state;
        m.attributes = attrs;
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        NeighbourMessage::parse(&buf[..]).expect("round trip")
    }

    fn cache(confirmed: u32, updated: u32) -> NeighbourAttribute {
        // struct nda_cacheinfo in host byte order, as the kernel sends it.
        let raw: Vec<u8> = [confirmed, 0, updated, 1]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        NeighbourAttribute::CacheInfo(NeighbourCacheInfo::parse(&raw).unwrap())
    }

    fn v4() -> NeighbourAttribute {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 9)))
    }

    #[test]
    fn reachable_entry_ages_by_confirmation() {
        let m = msg(
            NeighbourState::Reachable,
            vec![
                v4(),
                NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
                cache(150, 20),
            ],
        );
        let n = neighbour(&m, TICK).unwrap();
        assert_eq!(n.ifindex, 7);
        assert_eq!(n.ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(n.mac, MAC);
        assert_eq!(n.age, Duration::from_millis(1500));
    }

    #[test]
    fn stale_takes_the_newer_of_confirmed_and_updated_delay_does_not() {
        let attrs = || {
            vec![
                v4(),
                NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
                cache(6000, 300),
            ]
        };
        let stale = neighbour(&msg(NeighbourState::Stale, attrs()), TICK).unwrap();
        assert_eq!(stale.age, Duration::from_secs(3));
        assert_eq!(stale.confirmed, Duration::from_secs(60));
        let delay = neighbour(&msg(NeighbourState::Delay, attrs()), TICK).unwrap();
        assert_eq!(delay.age, Duration::from_secs(60));
        // A day-old stale entry stays a day old.
        let old = msg(
            NeighbourState::Stale,
            vec![
                v4(),
                NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
                cache(8_640_000, 8_640_000),
            ],
        );
        assert_eq!(
            neighbour(&old, TICK).unwrap().age,
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn permanent_is_seen_now_even_without_cache_info() {
        let m = msg(
            NeighbourState::Permanent,
            vec![
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(Ipv6Addr::new(
                    0xfd00, 0, 0, 0, 0, 0, 0, 5,
                ))),
                NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
            ],
        );
        let n = neighbour(&m, TICK).unwrap();
        assert_eq!(n.age, Duration::ZERO);
        assert!(n.ip.is_ipv6());
    }

    #[test]
    fn unresolved_and_unusable_entries_are_skipped() {
        let ll = || NeighbourAttribute::LinkLayerAddress(MAC.to_vec());
        assert_eq!(
            neighbour(
                &msg(NeighbourState::Incomplete, vec![v4(), cache(1, 1)]),
                TICK
            ),
            Err(Skip::Unresolved)
        );
        assert_eq!(
            neighbour(
                &msg(NeighbourState::Failed, vec![v4(), ll(), cache(1, 1)]),
                TICK
            ),
            Err(Skip::Unresolved)
        );
        assert_eq!(
            neighbour(&msg(NeighbourState::Stale, vec![v4(), cache(1, 1)]), TICK),
            Err(Skip::Unresolved)
        );
        // An InfiniBand-sized (20-byte) link-layer address.
        assert_eq!(
            neighbour(
                &msg(
                    NeighbourState::Reachable,
                    vec![
                        v4(),
                        NeighbourAttribute::LinkLayerAddress(vec![1; 20]),
                        cache(1, 1)
                    ]
                ),
                TICK
            ),
            Err(Skip::Unusable)
        );
        assert_eq!(
            neighbour(
                &msg(NeighbourState::Reachable, vec![ll(), cache(1, 1)]),
                TICK
            ),
            Err(Skip::Unusable)
        );
        assert_eq!(
            neighbour(&msg(NeighbourState::Reachable, vec![v4(), ll()]), TICK),
            Err(Skip::Unusable)
        );
    }

    #[test]
    fn clock_tick_is_sane() {
        let t = clock_tick();
        assert!(
            t >= Duration::from_micros(100) && t <= Duration::from_millis(100),
            "{t:?}"
        );
    }
}
