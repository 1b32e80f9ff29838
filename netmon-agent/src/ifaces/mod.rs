//! The system's network interfaces, from `/sys/class/net`, and their
//! addresses (for tying IPs to devices, and for the collectors that report
//! them), and [`Subnets`], the networks each interface is on; the kernel's
//! route tables are read in `routes.rs`.

mod routes;

use std::{
    collections::BTreeMap,
    fs, io,
    net::IpAddr,
    os::fd::AsRawFd as _,
    path::Path,
    time::{Duration, Instant},
};

use network_interface::{Addr, NetworkInterface, NetworkInterfaceConfig as _};
use tracing::{debug, warn};

pub use self::routes::{RTF_GATEWAY, RTF_REJECT, RTF_UP, RouteLine, ipv6_route_lines, route_lines};

/// Where the kernel lists interfaces (of the process's network namespace).
pub const SYS_CLASS_NET: &str = "/sys/class/net";

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub up: bool,
    pub loopback: bool,
    /// None for interfaces without an Ethernet-style address (tun, wireguard).
    pub mac: Option<[u8; 6]>,
}

impl Iface {
    /// Watched when no interface is named: up, not loopback, with a MAC.
    pub fn watched_by_default(&self) -> bool {
        self.up && !self.loopback && self.mac.is_some_and(|m| m != [0; 6])
    }
}

/// Lists the interfaces under `root` (normally [`SYS_CLASS_NET`]). An
/// interface that vanishes while being read is skipped.
pub fn list(root: &Path) -> io::Result<Vec<Iface>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let read = |file: &str| fs::read_to_string(dir.join(file));
        let (Ok(ifindex), Ok(flags)) = (read("ifindex"), read("flags")) else {
            debug!(iface = name, "Interface vanished while listing.");
            continue;
        };
        let (Some(ifindex), Some(flags)) = (ifindex.trim().parse().ok(), parse_hex(&flags)) else {
            debug!(iface = name, "Unreadable ifindex or flags; skipped.");
            continue;
        };
        let mac = read("address").ok().and_then(|a| parse_mac(a.trim()));
        out.push(Iface {
            name,
            ifindex,
            up: flags & IFF_UP != 0,
            loopback: flags & IFF_LOOPBACK != 0,
            mac,
        });
    }
    out.sort_by_key(|i| i.ifindex);
    Ok(out)
}

fn parse_hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// Parses `aa:bb:cc:dd:ee:ff`; anything else (longer hardware addresses,
/// empty files) is not a MAC.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// rtnetlink multicast groups (linux/rtnetlink.h): link and address changes.
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

/// Tells the drain loop when interfaces or their addresses may have
/// changed, so that it lists them (a dozen system calls an interface) only
/// then instead of on every drain: a netlink socket subscribed to the
/// kernel's link and address notifications, read without blocking.
///
/// It also answers "changed" every [`Changes::RECHECK`] (attach failures
/// are retried then) and on a notification overflow; without a socket it
/// always does.
pub struct Changes {
    sock: Option<netlink_sys::Socket>,
    buf: Vec<u8>,
    last: Option<Instant>,
}

impl Changes {
    /// Full re-check at least this often, whatever the notifications say.
    pub const RECHECK: Duration = Duration::from_secs(10);

    pub fn new() -> Changes {
        let sock = (|| -> io::Result<netlink_sys::Socket> {
            let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
            s.bind(&netlink_sys::SocketAddr::new(0, 0))?;
            for group in [RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR] {
                s.add_membership(group)?;
            }
            s.set_non_blocking(true)?;
            Ok(s)
        })();
        let sock = match sock {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "No netlink link notifications; listing interfaces on every drain.");
                None
            }
        };
        Changes {
            sock,
            buf: vec![0; 64 * 1024],
            last: None,
        }
    }

    /// Whether anything may have changed since the previous call (always
    /// true on the first). Drains the pending notifications.
    pub fn changed(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= Self::RECHECK);
        let Some(sock) = &self.sock else {
            self.last = Some(now);
            return true;
        };
        let mut any = due;
        loop {
            // SAFETY: the buffer is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    sock.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => {}
                    // Notifications were lost: assume anything changed.
                    Some(libc::ENOBUFS) => {
                        any = true;
                        continue;
                    }
                    Some(libc::EINTR) => continue,
                    _ => {
                        debug!(error = %e, "Reading link notifications failed.");
                        any = true;
                    }
                }
            }
            break;
        }
        if any {
            self.last = Some(now);
        }
        any
    }
}

impl Default for Changes {
    fn default() -> Self {
        Changes::new()
    }
}

/// The connected networks of every interface.
pub fn subnets() -> Subnets {
    let mut subnets = Subnets::default();
    match NetworkInterface::show() {
        Ok(ifaces) => {
            for iface in ifaces {
                for addr in &iface.addr {
                    let (ip, mask) = match addr {
                        Addr::V4(a) => (IpAddr::V4(a.ip), a.netmask.map(IpAddr::V4)),
                        Addr::V6(a) => (IpAddr::V6(a.ip), a.netmask.map(IpAddr::V6)),
                    };
                    if defines_network(ip) {
                        let prefix = mask.map_or(if ip.is_ipv4() { 32 } else { 128 }, prefix_len);
                        subnets.add(iface.index, ip, prefix);
                    }
                }
            }
        }
        Err(e) => debug!(error = %e, "Cannot list interface addresses."),
    }
    subnets
}

/// Whether an interface address says which networks are on its link.
/// Link-local addresses do not: the kernel gives one to nearly every
/// interface, bridge ports included, and link-local IPs count as on-link
/// anyway (`Subnets::is_local`).
fn defines_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_unicast_link_local(),
    }
}

fn prefix_len(mask: IpAddr) -> u8 {
    match mask {
        IpAddr::V4(m) => m.to_bits().count_ones() as u8,
        IpAddr::V6(m) => m.to_bits().count_ones() as u8,
    }
}

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IfAddr {
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// What `network-interface` knows of one interface.
#[derive(Clone, Debug, Default)]
pub struct NamedAddrs {
    pub loopback: bool,
    pub addresses: Vec<IfAddr>,
}

/// Every interface's addresses, by name.
pub fn addresses_by_name() -> Result<BTreeMap<String, NamedAddrs>, String> {
    let ifaces = NetworkInterface::show().map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, NamedAddrs> = BTreeMap::new();
    for i in ifaces {
        let entry = out.entry(i.name.clone()).or_default();
        entry.loopback |= i.internal;
        for a in &i.addr {
            let (address, prefix_len) = match a {
                Addr::V4(a) => (
                    IpAddr::V4(a.ip),
                    a.netmask.map_or(32, |m| m.to_bits().count_ones() as u8),
                ),
                Addr::V6(a) => (
                    IpAddr::V6(a.ip),
                    a.netmask.map_or(128, |m| m.to_bits().count_ones() as u8),
                ),
            };
            let addr = IfAddr {
                address,
                prefix_len,
            };
            if !entry.addresses.contains(&addr) {
                entry.addresses.push(addr);
            }
        }
    }
    Ok(out)
}

/// Addresses of each watched interface's connected networks, used to decide
/// which IPs belong to a device (on a gateway, the router's MAC carries every
/// remote address; only addresses on the link describe the device).
#[derive(Clone, Debug, Default)]
pub struct Subnets {
    /// Sorted by interface index: a few interfaces, searched once per flow
    /// of each drain (a SipHash map lookup was about a fifth of the fold's
    /// samples at 100,000 flows).
    by_ifindex: Vec<(u32, Vec<(IpAddr, u8)>)>,
}

impl Subnets {
    /// Records that `ifindex` has address `addr` with prefix length `prefix`.
    pub fn add(&mut self, ifindex: u32, addr: IpAddr, prefix: u8) {
        let at = match self.by_ifindex.binary_search_by_key(&ifindex, |e| e.0) {
            Ok(at) => at,
            Err(at) => {
                self.by_ifindex.insert(at, (ifindex, Vec::new()));
                at
            }
        };
        self.by_ifindex[at].1.push((addr, prefix));
    }

    /// Whether `ip` is on one of `ifindex`'s networks. Link-local addresses
    /// always are; on an interface with no addresses (a bridge port, an L2
    /// tap) every address is.
    pub fn is_local(&self, ifindex: u32, ip: IpAddr) -> bool {
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        if link_local {
            return true;
        }
        match self.by_ifindex.binary_search_by_key(&ifindex, |e| e.0) {
            Err(_) => true,
            Ok(at) => {
                let nets = &self.by_ifindex[at].1;
                nets.is_empty() || nets.iter().any(|&(net, prefix)| in_prefix(ip, net, prefix))
            }
        }
    }
}

fn in_prefix(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (a, b, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            u128::from(a.to_bits()) << 96,
            u128::from(b.to_bits()) << 96,
            32,
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        _ => return false,
    };
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - prefix);
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link appearing in this namespace is noticed; nothing else is, until
    /// the periodic re-check. Runs in a private network namespace (root).
    #[test]
    fn notices_link_changes_and_nothing_else() {
        if crate::test_root::skip_privileged() {
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: unshare on this thread only; it exits afterwards.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let mut c = Changes::new();
            assert!(c.sock.is_some());
            assert!(c.changed(), "the first call always says changed");
            assert!(!c.changed(), "nothing happened");
            // A veth pair, created by `ip`, which runs in this thread's
            // namespace (a child inherits the forking thread's).
            let ok = std::process::Command::new("ip")
                .args([
                    "link", "add", "nmt0", "type", "veth", "peer", "name", "nmt1",
                ])
                .status()
                .expect("running ip")
                .success();
            assert!(ok, "creating a veth pair");
            let deadline = Instant::now() + Duration::from_secs(5);
            while !c.changed() {
                assert!(Instant::now() < deadline, "the new link was not noticed");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!c.changed(), "one change, reported once");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 0xa]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:0a:ff"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:0a"), None);
        assert_eq!(parse_mac(""), None);
        assert_eq!(
            parse_mac("+a:00:00:00:00:0a"),
            None,
            "a sign is not a hex digit"
        );
        assert_eq!(format_mac([2, 0, 0, 0, 0, 0xa]), "02:00:00:00:00:0a");
    }

    #[test]
    fn lists_a_fake_sysfs() {
        let root = std::env::temp_dir().join(format!("netmon-sysfs-{}", std::process::id()));
        let mk = |name: &str, ifindex: &str, flags: &str, addr: &str| {
            let d = root.join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("ifindex"), ifindex).unwrap();
            fs::write(d.join("flags"), flags).unwrap();
            fs::write(d.join("address"), addr).unwrap();
        };
        mk("lo", "1\n", "0x9\n", "00:00:00:00:00:00\n");
        mk("eth0", "2\n", "0x1003\n", "02:00:00:00:00:0a\n");
        mk("eth1", "3\n", "0x1002\n", "02:00:00:00:00:0b\n");
        mk("wg0", "4\n", "0x91\n", "\n");
        fs::create_dir_all(root.join("broken")).unwrap();
        let ifaces = list(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        let names: Vec<_> = ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "eth1", "wg0"]);
        let watched: Vec<_> = ifaces
            .iter()
            .filter(|i| i.watched_by_default())
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(watched, ["eth0"], "up, not loopback, with a MAC");
    }

    #[test]
    fn link_local_addresses_do_not_define_networks() {
        assert!(!defines_network("fe80::1".parse().unwrap()));
        assert!(!defines_network("169.254.3.4".parse().unwrap()));
        assert!(defines_network("10.0.0.1".parse().unwrap()));
        assert!(defines_network("fd00::1".parse().unwrap()));
    }

    #[test]
    fn prefix_lengths() {
        assert_eq!(prefix_len("255.255.255.0".parse().unwrap()), 24);
        assert_eq!(prefix_len("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
    }

    #[test]
    fn prefix_matching() {
        use std::net::Ipv4Addr;

        let net = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 0));
        assert!(in_prefix(
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 77)),
            net,
            24
        ));
        assert!(!in_prefix(
            IpAddr::V4(Ipv4Addr::new(192, 168, 2, 1)),
            net,
            24
        ));
        assert!(in_prefix(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), net, 0));
        let v6: IpAddr = "fd00::".parse().unwrap();
        assert!(in_prefix("fd00::5".parse().unwrap(), v6, 64));
        assert!(!in_prefix("fd01::5".parse().unwrap(), v6, 64));
        assert!(!in_prefix(IpAddr::V4(Ipv4Addr::new(253, 0, 0, 5)), v6, 8));
    }
}
