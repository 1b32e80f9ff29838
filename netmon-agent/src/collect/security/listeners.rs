//! New listening sockets: TCP sockets in LISTEN and bound, unconnected UDP
//! sockets, IPv4 and IPv6, read natively with netlink sock_diag
//! (inet_diag; the dump is per network namespace: the agent sees the
//! sockets of its own).
//!
//! The first cycle's sockets are the baseline: what the host listens on
//! when the agent starts is not a finding. A socket that listens later on
//! a protocol, address and port not in the baseline is a `new_listener`
//! finding, listed (with the [`super::Tracker`]'s `first_seen`) every
//! cycle while it listens and gone when it closes; a baseline service that
//! restarts on its own address is not new. The baseline stays as it was
//! taken. Its owning process is looked up once, when it first appears,
//! from the socket's inode in `<proc>/<pid>/fd` (another user's process
//! takes CAP_SYS_PTRACE: without it the owner is left out; the uid comes
//! from sock_diag and is always there). The sockets new in a cycle are
//! looked up together, in one walk of procfs.
//!
//! There is no "unusual port" severity rule: seed 002 names no list of
//! ports, and any port that was not listening at start is the signal;
//! every new listener is a warning.
//!
//! The agent's own sockets are not judged. A program's unconnected UDP
//! socket (a client that sends with `sendto`) is bound too and is listed
//! while it is open.
//!
//! Bounded: `--security-max-listeners` is the most sockets remembered,
//! baseline and new together; listeners beyond it are not judged and are
//! counted in `listeners_untracked` (a full baseline also means that later
//! sockets of the host are left unjudged rather than guessed at).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt, fs, io,
    net::IpAddr,
    os::fd::AsRawFd,
    path::Path,
    time::Duration,
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::{Detail, Found, Kind};

/// A listening socket's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// What identifies a listener across cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub proto: Proto,
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{}/{ip}:{}", self.proto.as_str(), self.port),
            IpAddr::V6(ip) => write!(f, "{}/[{ip}]:{}", self.proto.as_str(), self.port),
        }
    }
}

/// One listening socket as sock_diag gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub addr: Addr,
    pub uid: u32,
    pub inode: u32,
}

/// Dumps the namespace's listening TCP and bound, unconnected UDP sockets,
/// IPv4 and IPv6. `malformed` counts messages that did not parse.
pub fn dump(malformed: &mut u64) -> io::Result<Vec<Listener>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    set_recv_timeout(&socket, Duration::from_secs(2))?;
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for (proto, states) in [
            (Proto::Tcp, StateFlags::LISTEN),
            // An unconnected UDP socket is in TCP_CLOSE; a connected one
            // (ESTABLISHED) is a client's and not asked for.
            (Proto::Udp, StateFlags::CLOSE),
        ] {
            dump_one(&socket, family, proto, states, &mut out, malformed)?;
        }
    }
    Ok(out)
}

fn set_recv_timeout(socket: &Socket, d: Duration) -> io::Result<()> {
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
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn dump_one(
    socket: &Socket,
    family: u8,
    proto: Proto,
    states: StateFlags,
    out: &mut Vec<Listener>,
    malformed: &mut u64,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut req = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: match proto {
                Proto::Tcp => IPPROTO_TCP,
                Proto::Udp => IPPROTO_UDP,
            },
            extensions: ExtensionFlags::empty(),
            states,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    req.finalize();
    let mut buf = vec![0u8; req.header.length as usize];
    req.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0)?;
        if size == 0 {
            return Err(io::Error::other("the sock_diag dump ended without DONE"));
        }
        let mut off = 0;
        while off + 16 <= size {
            // Each message starts with its u32 length: step over it even
            // when the message itself does not parse.
            let len = u32::from_ne_bytes([rx[off], rx[off + 1], rx[off + 2], rx[off + 3]]) as usize;
            if len < 16 || off + len > size {
                *malformed += 1;
                break;
            }
            let bytes = &rx[off..off + len];
            off += len.next_multiple_of(4);
            match NetlinkMessage::<SockDiagMessage>::deserialize(bytes).map(|m| m.payload) {
                Ok(NetlinkPayload::Done(_)) => return Ok(()),
                Ok(NetlinkPayload::Error(e)) => {
                    return Err(io::Error::other(format!("sock_diag: {e}")));
                }
                Ok(NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r))) => {
                    let id = &r.header.socket_id;
                    // A UDP socket bound to a port and connected to none.
                    if id.source_port == 0 || id.destination_port != 0 {
                        continue;
                    }
                    out.push(Listener {
                        addr: Addr {
                            proto,
                            ip: id.source_address,
                            port: id.source_port,
                        },
                        uid: r.header.uid,
                        inode: r.header.inode,
                    });
                }
                Ok(_) => {}
                Err(_) => *malformed += 1,
            }
        }
    }
}

/// The process holding a socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub pid: Option<u32>,
    pub process: Option<String>,
}

/// The processes that hold the sockets `inodes`, from one walk of
/// `<proc>/<pid>/fd` (a socket shared by a parent and its workers names
/// the lowest pid); sockets not found have no owner.
pub fn owners(proc: &Path, inodes: &HashSet<u32>) -> HashMap<u32, Owner> {
    let mut found = HashMap::new();
    if inodes.is_empty() {
        return found;
    }
    let mut pids: Vec<u32> = fs::read_dir(proc)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    for pid in pids {
        let dir = proc.join(pid.to_string());
        let Ok(fds) = fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok());
            let Some(inode) = inode.filter(|i| inodes.contains(i) && !found.contains_key(i)) else {
                continue;
            };
            let process = fs::read_to_string(dir.join("comm"))
                .map(|c| c.trim_end().to_owned())
                .ok();
            found.insert(
                inode,
                Owner {
                    pid: Some(pid),
                    process,
                },
            );
        }
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

/// What the listener check counted this cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Listening sockets seen (distinct protocol, address and port).
    pub listeners: u64,
    /// Listeners beyond `--security-max-listeners`, not judged.
    pub untracked: u64,
}

/// The listener check's state: the baseline and the owners of the new
/// listeners now open.
#[derive(Debug)]
pub struct Listeners {
    max: usize,
    /// The agent's own pid: its own sockets (an unconnected UDP socket of
    /// a probe) are not findings.
    own: Option<u32>,
    baseline: Option<HashSet<Addr>>,
    new: BTreeMap<Addr, (Listener, Owner)>,
}

impl Listeners {
    pub fn new(max: u32, own: Option<u32>) -> Self {
        Listeners {
            max: max as usize,
            own,
            baseline: None,
            new: BTreeMap::new(),
        }
    }

    /// Judges one cycle's sockets: the first call takes the baseline and
    /// finds nothing; later ones find the listeners not in it.
    pub fn judge(&mut self, now: Vec<Listener>, proc: &Path, out: &mut Vec<Found>) -> Counts {
        let mut by_addr: BTreeMap<Addr, Listener> = BTreeMap::new();
        for l in now {
            // SO_REUSEPORT sockets share an address: one listener.
            by_addr.entry(l.addr).or_insert(l);
        }
        let mut counts = Counts {
            listeners: by_addr.len() as u64,
            untracked: 0,
        };
        let Some(baseline) = &self.baseline else {
            let keep = by_addr.len().min(self.max);
            counts.untracked = (by_addr.len() - keep) as u64;
            self.baseline = Some(by_addr.into_keys().take(keep).collect());
            return counts;
        };
        let room = self.max.saturating_sub(baseline.len());
        let mut new = BTreeMap::new();
        for (addr, l) in by_addr {
            if baseline.contains(&addr) {
                continue;
            }
            if new.len() >= room {
                counts.untracked += 1;
                continue;
            }
            // A socket re-bound on the same address by another process
            // (another inode) is looked up again.
            let entry = match self.new.remove(&addr) {
                Some((was, owner)) if was.inode == l.inode => (l, Some(owner)),
                _ => (l, None),
            };
            new.insert(addr, entry);
        }
        // The owners of the sockets new this cycle, in one walk of procfs.
        let want: HashSet<u32> = new
            .values()
            .filter(|(l, o)| o.is_none() && l.inode != 0)
            .map(|(l, _)| l.inode)
            .collect();
        let mut found = owners(proc, &want);
        let new: BTreeMap<Addr, (Listener, Owner)> = new
            .into_iter()
            .map(|(addr, (l, o))| {
                let o = o.unwrap_or_else(|| found.remove(&l.inode).unwrap_or_default());
                (addr, (l, o))
            })
            .collect();
        for (addr, (l, o)) in &new {
            if o.pid.is_some() && o.pid == self.own {
                continue;
            }
            let by = match (&o.process, o.pid) {
                (Some(p), Some(pid)) => format!(" by {p} (pid {pid}, uid {})", l.uid),
                _ => format!(" by uid {}", l.uid),
            };
            out.push(Found {
                kind: Kind::NewListener,
                key: addr.to_string(),
                evidence: format!(
                    "{} listens on {}{by}, not listening when the agent started",
                    addr.proto.as_str().to_uppercase(),
                    match addr.ip {
                        IpAddr::V4(ip) => format!("{ip}:{}", addr.port),
                        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port),
                    },
                ),
                detail: Detail {
                    pid: o.pid,
                    process: o.process.clone(),
                    protocol: Some(addr.proto.as_str()),
                    address: Some(addr.ip),
                    port: Some(addr.port),
                    uid: Some(l.uid),
                    ..Detail::default()
                },
            });
        }
        self.new = new;
        counts
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};

    use super::*;

    fn l(proto: Proto, ip: IpAddr, port: u16, inode: u32) -> Listener {
        Listener {
            addr: Addr { proto, ip, port },
            uid: 0,
            inode,
        }
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    #[test]
    fn the_first_cycle_is_the_baseline_and_later_listeners_are_new_while_they_listen() {
        let proc = tempfile::tempdir().unwrap();
        let mut s = Listeners::new(100, None);
        let base = vec![l(Proto::Tcp, V4, 22, 1), l(Proto::Udp, V4, 53, 2)];
        let mut out = Vec::new();
        assert_eq!(s.judge(base.clone(), proc.path(), &mut out).listeners, 2);
        assert!(out.is_empty());
        // sshd restarts (another inode): still the baseline.
        let mut now = vec![l(Proto::Tcp, V4, 22, 9), l(Proto::Udp, V4, 53, 2)];
        now.push(l(Proto::Tcp, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 4444, 3));
        now.push(l(Proto::Tcp, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 4444, 4));
        s.judge(now.clone(), proc.path(), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].key, "tcp/[::]:4444");
        assert_eq!(
            out[0].evidence,
            "TCP listens on [::]:4444 by uid 0, not listening when the agent started"
        );
        out.clear();
        s.judge(now, proc.path(), &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        s.judge(base, proc.path(), &mut out);
        assert!(out.is_empty());
        assert!(s.new.is_empty());
    }

    #[test]
    fn listeners_beyond_the_cap_are_counted_not_judged() {
        let proc = tempfile::tempdir().unwrap();
        let mut s = Listeners::new(3, None);
        let ports = |r: std::ops::Range<u16>| r.map(|p| l(Proto::Tcp, V4, p, 0)).collect();
        let mut out = Vec::new();
        assert_eq!(s.judge(ports(1..3), proc.path(), &mut out).untracked, 0);
        let c = s.judge(ports(1..6), proc.path(), &mut out);
        assert_eq!((c.listeners, c.untracked, out.len()), (5, 2, 1));
        let mut s = Listeners::new(3, None);
        assert_eq!(s.judge(ports(1..6), proc.path(), &mut out).untracked, 2);
    }

    /// The real sock_diag of the test's namespace, and the owner found in
    /// the real /proc.
    #[test]
    fn a_real_listener_appears_once_and_goes_when_it_closes() {
        let proc = Path::new("/proc");
        let mut s = Listeners::new(100_000, None);
        let mut malformed = 0;
        let mut out = Vec::new();
        s.judge(dump(&mut malformed).unwrap(), proc, &mut out);
        assert!(out.is_empty());
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("[::1]:0").unwrap();
        let (tp, up) = (
            tcp.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port(),
        );
        let tkey = format!("tcp/127.0.0.1:{tp}");
        let ukey = format!("udp/[::1]:{up}");
        for _ in 0..2 {
            out.clear();
            s.judge(dump(&mut malformed).unwrap(), proc, &mut out);
            let mine: Vec<&Found> = out
                .iter()
                .filter(|f| f.key == tkey || f.key == ukey)
                .collect();
            assert_eq!(mine.len(), 2, "{out:?}");
            let t = mine.iter().find(|f| f.key == tkey).unwrap();
            assert_eq!(t.detail.pid, Some(std::process::id()));
            assert_eq!(t.detail.port, Some(tp));
            assert_eq!(t.detail.protocol, Some("tcp"));
        }
        // Its own sockets are not the agent's findings.
        let mut own = Listeners::new(100_000, Some(std::process::id()));
        own.judge(Vec::new(), proc, &mut out);
        out.clear();
        own.judge(dump(&mut malformed).unwrap(), proc, &mut out);
        assert!(
            !out.iter().any(|f| f.key == tkey || f.key == ukey),
            "{out:?}"
        );
        drop((tcp, udp));
        out.clear();
        s.judge(dump(&mut malformed).unwrap(), proc, &mut out);
        assert!(
            !out.iter().any(|f| f.key == tkey || f.key == ukey),
            "{out:?}"
        );
        assert_eq!(malformed, 0);
    }
}
