//! End to end: real traffic between network namespaces, counted by the real
//! agent binary (`tests/common/agent.rs`) and read back over its HTTP API.
//!
//! What is checked, and against what:
//! - a flow with no background traffic (UDP, ICMP echo, TCP between the two
//!   test addresses) must hold exactly the frames the test sent, each of the
//!   length the README's counting rules give (L2 frame without FCS, VLAN tags
//!   included, GSO aggregates as their wire segments);
//! - an interface's `rx`/`tx` must grow exactly as the kernel's counters in
//!   `/sys/class/net/IF/statistics` grow. Both count since different moments
//!   (attach, link creation), so growth is compared from a baseline taken
//!   while the link is quiet ([`quiet_baseline`]), and the comparison polls
//!   until the two agree or a deadline passes ([`assert_growth_matches`]).
//!   Background frames (IPv6 MLD/ND) are on both sides and need no special
//!   care as long as the link goes quiet. veth's byte counters leave out the
//!   Ethernet header of frames that reach an end with an XDP program; the
//!   comparison restores it ([`Port`]);
//! - where veth itself counts otherwise by design (GSO aggregates handed to
//!   a receiver without XDP), the exact difference the README gives.
//!
//! No assertion depends on timing except the rate check, whose 5% bound is
//! the specification's. Privileged (root): each test builds its own
//! namespaces and starts its own agents inside them.

mod common;

use std::{
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd as _,
    sync::{Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// Longest wait for traffic to arrive and be counted.
const WAIT: Duration = Duration::from_secs(10);
/// Longest wait for a link to have no traffic for two drain intervals.
const QUIET_TIMEOUT: Duration = Duration::from_secs(15);

const INTERFACES: &str = "/api/v1/interfaces";
const FLOWS: &str = "/api/v1/flows?limit=10000&sort=bytes";
const DEVICES: &str = "/api/v1/devices";

/// Ethernet + IPv4 + UDP headers.
const UDP4_OVERHEAD: u64 = 14 + 20 + 8;
/// Ethernet + IPv6 + UDP headers.
const UDP6_OVERHEAD: u64 = 14 + 40 + 8;
/// Ethernet + IPv4 + TCP with the timestamp option: what every data segment
/// of a bulk transfer repeats.
const TCP4_TS_HEADER: u64 = 14 + 20 + 32;
const VLAN_TAG: u64 = 4;

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// A [`Pair`] with static neighbour entries: no ARP or NDP precedes or
/// follows the test's packets.
fn quiet_pair(mtu: Option<u32>) -> Pair {
    Pair::with_options(PairOptions {
        mtu,
        static_neighbors: true,
        ..PairOptions::default()
    })
}

/// Serialises the tests that load the machine (TCP bulk transfers) with the
/// one that measures a rate, so the paced sender keeps its schedule when the
/// tests run in parallel.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    // A failed test that held the lock says nothing about the others.
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes and packets, as the API and the kernel's counters give them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Count {
    bytes: u64,
    packets: u64,
}

impl Count {
    /// `packets` frames of `frame_len` bytes each.
    fn frames(packets: u64, frame_len: u64) -> Count {
        Count {
            bytes: packets * frame_len,
            packets,
        }
    }

    /// Reads `{"bytes": .., "packets": ..}`.
    fn of(v: &Value) -> Count {
        let field = |name: &str| {
            v[name]
                .as_u64()
                .unwrap_or_else(|| panic!("no integer {name:?} in {v}"))
        };
        Count {
            bytes: field("bytes"),
            packets: field("packets"),
        }
    }

    fn since(self, earlier: Count) -> Count {
        Count {
            bytes: self.bytes.wrapping_sub(earlier.bytes),
            packets: self.packets.wrapping_sub(earlier.packets),
        }
    }
}

/// Received and sent totals of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RxTx {
    rx: Count,
    tx: Count,
}

impl RxTx {
    fn kernel(s: &IfStats) -> RxTx {
        RxTx {
            rx: Count {
                bytes: s.rx_bytes,
                packets: s.rx_packets,
            },
            tx: Count {
                bytes: s.tx_bytes,
                packets: s.tx_packets,
            },
        }
    }

    fn since(self, earlier: RxTx) -> RxTx {
        RxTx {
            rx: self.rx.since(earlier.rx),
            tx: self.tx.since(earlier.tx),
        }
    }
}

/// The entry for `name` in an `/interfaces` answer.
fn interface<'v>(answer: &'v Value, name: &str) -> &'v Value {
    answer["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| {
            panic!("interface {name} not watched; /interfaces answered:\n{answer:#}")
        })
}

/// The agent's totals of `name` in an `/interfaces` answer.
fn agent_totals(answer: &Value, name: &str) -> RxTx {
    let i = interface(answer, name);
    RxTx {
        rx: Count::of(&i["rx"]),
        tx: Count::of(&i["tx"]),
    }
}

/// One of the programs' global counters (`globals.NAME`).
fn global(answer: &Value, name: &str) -> u64 {
    answer["globals"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no globals.{name} in:\n{answer:#}"))
}

/// A map statistic (`maps.MAP.NAME`).
fn map_stat(answer: &Value, map: &str, name: &str) -> u64 {
    answer["maps"][map][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no maps.{map}.{name} in:\n{answer:#}"))
}

/// Waits until the agent has published two snapshots after this call, and
/// returns the `/interfaces` answer of the second: it comes from a read of
/// the maps that started after the call, so it includes every frame the
/// hooks had seen when this was called.
fn fresh_interfaces(agent: &Agent) -> Value {
    let mut answer = agent.get(INTERFACES);
    for _ in 0..2 {
        let seen = answer["updated"].clone();
        answer = agent.wait_for(INTERFACES, WAIT, |v| v["updated"] != seen);
    }
    answer
}

/// Bytes veth leaves out of a frame it counts on its NAPI path (see
/// [`Port`]): the Ethernet header.
const VETH_NAPI_SHORTFALL: u64 = 14;

/// A veth interface whose totals are compared with the kernel's counters,
/// and how those counters must be read.
///
/// veth counts a frame in one of two ways (drivers/net/veth.c). Handed
/// straight to the peer's stack (`veth_xmit` -> `__netif_rx`), it is counted
/// with its full length. Queued to the peer's NAPI ring, which happens to
/// every frame once the receiving end has an XDP program, it is counted in
/// `veth_xdp_rcv` as `skb->len` after `__dev_forward_skb` -> `eth_type_trans`
/// pulled the Ethernet header: 14 bytes short. Both ends report that count
/// (the rx of the XDP end, the tx of its peer), so with netmon's native XDP
/// program on an end the kernel's byte counters there are not L2 lengths;
/// the packet counts are unaffected.
#[derive(Clone, Copy, Debug)]
struct Port<'a> {
    name: &'a str,
    /// This end has an XDP program: the kernel's `rx_bytes` miss 14 bytes
    /// a frame.
    xdp_here: bool,
    /// The peer end has an XDP program: the kernel's `tx_bytes` miss 14
    /// bytes a frame.
    xdp_peer: bool,
}

impl Port<'_> {
    /// Kernel counter growth restated as L2 lengths, which is what netmon
    /// counts.
    fn l2_growth(&self, growth: RxTx) -> RxTx {
        let restore = |c: Count, short: bool| Count {
            bytes: c.bytes
                + if short {
                    VETH_NAPI_SHORTFALL * c.packets
                } else {
                    0
                },
            packets: c.packets,
        };
        RxTx {
            rx: restore(growth.rx, self.xdp_here),
            tx: restore(growth.tx, self.xdp_peer),
        }
    }
}

/// `eth0` of a [`Pair`] end; `xdp_here`/`xdp_peer` as in [`Port`].
fn eth0(xdp_here: bool, xdp_peer: bool) -> Port<'static> {
    Port {
        name: "eth0",
        xdp_here,
        xdp_peer,
    }
}

/// Agent and kernel totals of some interfaces at one moment.
struct Baseline {
    agent: Vec<RxTx>,
    kernel: Vec<RxTx>,
    /// The `/interfaces` answer the agent totals come from (for globals and
    /// map statistics at the same moment).
    answer: Value,
}

fn kernel_totals(ns: &NetNs, ports: &[Port]) -> Vec<RxTx> {
    ports
        .iter()
        .map(|p| RxTx::kernel(&ns.if_stats(p.name)))
        .collect()
}

/// Takes agent and kernel totals of `ports` (in `ns`) at a moment when no
/// frame crossed any of them for at least two drain intervals, so both sides
/// include exactly the same frames. Panics if the links do not go quiet
/// within [`QUIET_TIMEOUT`].
fn quiet_baseline(agent: &Agent, ns: &NetNs, ports: &[Port]) -> Baseline {
    let deadline = Instant::now() + QUIET_TIMEOUT;
    loop {
        let before = kernel_totals(ns, ports);
        let answer = fresh_interfaces(agent);
        let after = kernel_totals(ns, ports);
        if before == after {
            return Baseline {
                agent: ports
                    .iter()
                    .map(|p| agent_totals(&answer, p.name))
                    .collect(),
                kernel: before,
                answer,
            };
        }
        assert!(
            Instant::now() < deadline,
            "{ports:?} in {} never went quiet for two drain intervals in {QUIET_TIMEOUT:?}; \
             kernel counters went from {before:?} to {after:?}",
            ns.name()
        );
    }
}

/// Agent growth and kernel growth (as L2 lengths) of each port since `base`.
fn growths(agent: &Agent, ns: &NetNs, ports: &[Port], base: &Baseline) -> Vec<(RxTx, RxTx)> {
    let answer = agent.get(INTERFACES);
    let kernel = kernel_totals(ns, ports);
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let agent = agent_totals(&answer, p.name).since(base.agent[i]);
            (agent, p.l2_growth(kernel[i].since(base.kernel[i])))
        })
        .collect()
}

fn report(ports: &[Port], growths: &[(RxTx, RxTx)]) -> String {
    ports
        .iter()
        .zip(growths)
        .map(|(p, (agent, kernel))| {
            format!(
                "  {p:?}:\n    agent growth              {agent:?}\n    \
                 kernel growth (L2 bytes)  {kernel:?}"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls until each port's agent totals grew exactly as the kernel's
/// counters did since `base`; panics with both growths after [`WAIT`].
fn assert_growth_matches(agent: &Agent, ns: &NetNs, ports: &[Port], base: &Baseline) {
    let mut last = Vec::new();
    let matched = poll_until(WAIT, || {
        last = growths(agent, ns, ports, base);
        last.iter().all(|(agent, kernel)| agent == kernel)
    });
    assert!(
        matched,
        "interface totals did not grow as the kernel's counters within {WAIT:?} (netns {}):\n{}",
        ns.name(),
        report(ports, &last)
    );
}

/// Which flow: interface, direction, protocol and addresses.
#[derive(Clone, Copy, Debug)]
struct FlowSel<'a> {
    iface: &'a str,
    direction: &'a str,
    protocol: &'a str,
    src: IpAddr,
    dst: IpAddr,
}

impl FlowSel<'_> {
    fn matches(&self, flow: &Value) -> bool {
        flow["interface"] == self.iface
            && flow["direction"] == self.direction
            && flow["protocol"] == self.protocol
            && flow["src"] == self.src.to_string().as_str()
            && flow["dst"] == self.dst.to_string().as_str()
    }
}

/// Shorthand for a [`FlowSel`].
fn flow<'a>(
    iface: &'a str,
    direction: &'a str,
    protocol: &'a str,
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
) -> FlowSel<'a> {
    FlowSel {
        iface,
        direction,
        protocol,
        src: src.into(),
        dst: dst.into(),
    }
}

/// The selected flow in a `/flows` answer, if listed.
fn find_flow<'v>(answer: &'v Value, sel: &FlowSel) -> Option<&'v Value> {
    answer["flows"]
        .as_array()
        .and_then(|all| all.iter().find(|f| sel.matches(f)))
}

/// Polls until the selected flow has at least `packets` packets and returns
/// its count; panics with every listed flow after [`WAIT`].
fn wait_flow(agent: &Agent, sel: &FlowSel, packets: u64) -> Count {
    let answer = agent.wait_for(FLOWS, WAIT, |v| {
        find_flow(v, sel).is_some_and(|f| Count::of(f).packets >= packets)
    });
    Count::of(find_flow(&answer, sel).expect("matched above"))
}

/// The device `mac` on `iface` in a `/devices` answer.
fn find_device<'v>(answer: &'v Value, iface: &str, mac: [u8; 6]) -> Option<&'v Value> {
    let mac = format_mac(mac);
    answer["devices"].as_array().and_then(|all| {
        all.iter()
            .find(|d| d["interface"] == iface && d["mac"] == mac.as_str())
    })
}

/// Polls until device `mac` on `iface` has sent at least `at_least` and
/// returns its `tx`.
fn wait_device_tx(agent: &Agent, iface: &str, mac: [u8; 6], at_least: Count) -> Count {
    let answer = agent.wait_for(DEVICES, WAIT, |v| {
        find_device(v, iface, mac).is_some_and(|d| {
            let tx = Count::of(&d["tx"]);
            tx.bytes >= at_least.bytes && tx.packets >= at_least.packets
        })
    });
    Count::of(&find_device(&answer, iface, mac).expect("matched above")["tx"])
}

/// Asserts the ingress hook the agent reports for `iface`.
fn assert_hook(agent: &Agent, iface: &str, hook: &str) {
    let answer = agent.get(INTERFACES);
    assert_eq!(
        interface(&answer, iface)["ingress_hook"],
        hook,
        "ingress hook of {iface}:\n{answer:#}"
    );
}

/// Whether TCP segmentation offload is on for `ifname` (ETHTOOL_GTSO), in
/// the calling thread's namespace: call it inside [`NetNs::run`].
fn tso_enabled(ifname: &str) -> bool {
    const ETHTOOL_GTSO: u32 = 0x1e;
    /// `struct ethtool_value`.
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("tso_enabled {ifname}: socket: {err}"));
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GTSO,
        data: 0,
    };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    assert!(ifname.len() < req.ifr_name.len(), "{ifname}: name too long");
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL with a valid ifreq whose data points at a live
    // ethtool_value, as ETHTOOL_GTSO expects.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &raw mut req) };
    assert_eq!(
        rc,
        0,
        "tso_enabled {ifname}: ETHTOOL_GTSO: {}",
        io::Error::last_os_error()
    );
    value.data != 0
}

// ---------------------------------------------------------------------------
// UDP and ICMP: exact flows and interface totals.

/// Sends 1000 UDP datagrams of 200 bytes from a to b, with an agent in b
/// started with `args` whose ingress hook must be `hook`, and checks the
/// flow, a's device and b's totals.
fn udp_exact(args: &[&str], hook: &str, v6: bool) {
    const COUNT: u64 = 1000;
    const PAYLOAD: u64 = 200;
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let (src, dst, overhead): (IpAddr, IpAddr, u64) = if v6 {
        (a.ip6().into(), b.ip6().into(), UDP6_OVERHEAD)
    } else {
        (a.ip4().into(), b.ip4().into(), UDP4_OVERHEAD)
    };
    let mut agent_args = vec!["--iface", "eth0"];
    agent_args.extend_from_slice(args);
    let agent = Agent::start(b.ns(), &agent_args);
    assert_hook(&agent, "eth0", hook);
    let port = [eth0(hook == "xdp-native", false)];
    let sink = b.ns().run(|| udp_sink(sock(dst, 0)));
    let base = quiet_baseline(&agent, b.ns(), &port);

    a.ns().run(|| {
        udp_send(
            sock(src, 0),
            sink.local_addr(),
            PAYLOAD as usize,
            COUNT as usize,
        )
    });
    assert!(
        sink.wait_for(COUNT, WAIT),
        "b received {} of {COUNT} datagrams",
        sink.packets()
    );

    let expected = Count::frames(COUNT, PAYLOAD + overhead);
    let got = wait_flow(&agent, &flow("eth0", "ingress", "udp", src, dst), COUNT);
    assert_eq!(got, expected, "UDP flow {src} -> {dst} on b's eth0 ingress");
    wait_device_tx(&agent, "eth0", a.mac(), expected);
    assert_growth_matches(&agent, b.ns(), &port, &base);
}

#[test]
fn udp_v4_exact_at_native_xdp() {
    skip_unless_root!();
    udp_exact(&[], "xdp-native", false);
}

#[test]
fn udp_v4_exact_at_tc_ingress() {
    skip_unless_root!();
    udp_exact(&["--ingress", "tc"], "tc", false);
}

/// Generic (SKB-mode) XDP, used only when asked for. It runs after veth
/// has counted the frame, so the kernel's counters are the plain ones.
#[test]
fn udp_v4_exact_at_generic_xdp() {
    skip_unless_root!();
    udp_exact(&["--ingress", "xdp-generic"], "xdp-generic", false);
}

#[test]
fn udp_v6_exact_at_native_xdp() {
    skip_unless_root!();
    udp_exact(&[], "xdp-native", true);
}

#[test]
fn udp_v6_exact_at_tc_ingress() {
    skip_unless_root!();
    udp_exact(&["--ingress", "tc"], "tc", true);
}

/// 20 echo requests and replies each over IPv4 and IPv6 (56-byte payload):
/// requests on b's ingress, replies on b's egress, each frame exact.
#[test]
fn icmp_echo_v4_and_v6_exact_both_directions() {
    skip_unless_root!();
    const COUNT: u64 = 20;
    const PAYLOAD: usize = 56;
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let agent = Agent::start(b.ns(), &["--iface", "eth0"]);
    let port = [eth0(true, false)];
    let base = quiet_baseline(&agent, b.ns(), &port);

    let (v4, v6) = a.ns().run(|| {
        (
            icmp_echo(b.ip4().into(), COUNT as usize, PAYLOAD),
            icmp_echo(b.ip6().into(), COUNT as usize, PAYLOAD),
        )
    });
    assert_eq!((v4, v6), (COUNT as usize, COUNT as usize), "echo replies");

    let echo4 = Count::frames(COUNT, 14 + 20 + 8 + PAYLOAD as u64);
    let echo6 = Count::frames(COUNT, 14 + 40 + 8 + PAYLOAD as u64);
    assert_eq!(echo4, Count::frames(COUNT, 98));
    assert_eq!(echo6, Count::frames(COUNT, 118));
    for (sel, expected) in [
        (flow("eth0", "ingress", "icmp", a.ip4(), b.ip4()), echo4),
        (flow("eth0", "egress", "icmp", b.ip4(), a.ip4()), echo4),
        (flow("eth0", "ingress", "icmpv6", a.ip6(), b.ip6()), echo6),
        (flow("eth0", "egress", "icmpv6", b.ip6(), a.ip6()), echo6),
    ] {
        assert_eq!(wait_flow(&agent, &sel, COUNT), expected, "{sel:?}");
    }
    assert_growth_matches(&agent, b.ns(), &port, &base);
}

// ---------------------------------------------------------------------------
// TCP bulk transfers: GSO aggregates count as their segments.

const BULK: u64 = 20 << 20;

/// What a bulk transfer from a to b that sent `data_bytes` (see
/// [`tcp_bulk_send`]) puts on the wire in the data direction,
/// `packets` frames in all: every frame repeats the 66-byte header (pure
/// ACKs and the FIN carry no data), and the SYN's options take 8 bytes more
/// than the timestamp option of the others.
fn bulk_bytes(data_bytes: u64, packets: u64) -> u64 {
    const SYN_EXTRA: u64 = 8;
    data_bytes + TCP4_TS_HEADER * packets + SYN_EXTRA
}

/// Polls until the data direction's flow is the same on a's egress and b's
/// ingress (each agent publishes on its own schedule) and returns it.
fn same_flow_both_ends(agent_a: &Agent, agent_b: &Agent, a: &Host, b: &Host) -> Count {
    let egress = flow("eth0", "egress", "tcp", a.ip4(), b.ip4());
    let ingress = flow("eth0", "ingress", "tcp", a.ip4(), b.ip4());
    let mut last = (None, None);
    let same = poll_until(WAIT, || {
        let get = |agent: &Agent, sel: &FlowSel| find_flow(&agent.get(FLOWS), sel).map(Count::of);
        last = (get(agent_a, &egress), get(agent_b, &ingress));
        last.0.is_some() && last.0 == last.1
    });
    assert!(
        same,
        "TCP flow {} -> {}: a's egress {:?} != b's ingress {:?}",
        a.ip4(),
        b.ip4(),
        last.0,
        last.1
    );
    last.0.expect("checked above")
}

/// Sends [`BULK`] bytes of TCP from a to `server` on b, then checks both
/// agents count the data flow alike and that every segment carries its own
/// 66-byte header: bytes = data sent (retransmissions included) + headers.
/// Returns that flow's count, or `None` when veth dropped frames on the way
/// (its ring towards an XDP end holds 256 frames; a loaded machine fills
/// it): a dropped segment was rightly counted at a's egress and never
/// reached b, so the two ends and the kernel's counters cannot agree.
fn bulk_transfer_counted_alike(
    agent_a: &Agent,
    agent_b: &Agent,
    a: &Host,
    b: &Host,
    server: TcpBulkServer,
) -> Option<Count> {
    let (a_before, b_before) = (a.if_stats(), b.if_stats());
    let sent = a.ns().run(|| tcp_bulk_send(server.local_addr(), BULK));
    assert_eq!(server.finish(), BULK);
    assert!(sent >= BULK, "tcpi_bytes_sent {sent} < {BULK}");
    let (a_after, b_after) = (a.if_stats(), b.if_stats());
    let dropped =
        (a_after.tx_dropped - a_before.tx_dropped) + (b_after.rx_dropped - b_before.rx_dropped);
    if dropped > 0 {
        eprintln!("veth dropped {dropped} frames during the transfer; trying again");
        return None;
    }

    let data = same_flow_both_ends(agent_a, agent_b, a, b);
    assert_eq!(
        data.bytes,
        bulk_bytes(sent, data.packets),
        "every segment of {data:?} must carry its own 66-byte header \
         ({sent} data bytes sent, {} retransmitted)",
        sent - BULK
    );
    Some(data)
}

/// Runs a TCP bulk test, on a fresh pair each time, until one transfer
/// crosses the link without drops (at most three tries).
fn without_link_drops(attempt: impl Fn() -> Option<()>) {
    const TRIES: usize = 3;
    for _ in 0..TRIES {
        if attempt().is_some() {
            return;
        }
    }
    panic!("veth dropped frames in all {TRIES} transfers: the machine is too loaded to compare");
}

/// Native XDP on both ends: veth turns software GSO off on the peer of an
/// XDP end, so a segments after its TC egress hook, which sees aggregates;
/// netmon must count them as the segments veth then carries.
#[test]
fn tcp_bulk_with_gso_to_an_xdp_receiver() {
    skip_unless_root!();
    let _heavy = heavy();
    without_link_drops(tcp_bulk_with_gso_to_an_xdp_receiver_once);
}

fn tcp_bulk_with_gso_to_an_xdp_receiver_once() -> Option<()> {
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let agent_a = Agent::start(a.ns(), &["--iface", "eth0"]);
    let agent_b = Agent::start(b.ns(), &["--iface", "eth0"]);
    assert_hook(&agent_a, "eth0", "xdp-native");
    assert_hook(&agent_b, "eth0", "xdp-native");
    assert!(
        !a.ns().run(|| tso_enabled("eth0")),
        "XDP on b should have turned TSO off on a (veth_fix_features)"
    );
    let port = [eth0(true, true)];
    let server = b.ns().run(|| TcpBulkServer::start(sock(b.ip4(), 0)));
    let base_a = quiet_baseline(&agent_a, a.ns(), &port);
    let base_b = quiet_baseline(&agent_b, b.ns(), &port);

    let data = bulk_transfer_counted_alike(&agent_a, &agent_b, a, b, server)?;
    assert!(
        data.packets >= BULK / 1448,
        "{data:?}: fewer packets than MSS-sized segments need"
    );
    assert_growth_matches(&agent_a, a.ns(), &port, &base_a);
    assert_growth_matches(&agent_b, b.ns(), &port, &base_b);
    Some(())
}

/// TC ingress on b, native XDP on a: a keeps TSO, veth hands b the
/// aggregates whole and counts each as one packet of its length, while
/// netmon counts wire segments on both ends. The difference must be
/// exactly the headers of the extra segments.
#[test]
fn tcp_bulk_aggregates_to_a_tc_receiver() {
    skip_unless_root!();
    let _heavy = heavy();
    without_link_drops(tcp_bulk_aggregates_to_a_tc_receiver_once);
}

fn tcp_bulk_aggregates_to_a_tc_receiver_once() -> Option<()> {
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let agent_a = Agent::start(a.ns(), &["--iface", "eth0"]);
    let agent_b = Agent::start(b.ns(), &["--iface", "eth0", "--ingress", "tc"]);
    assert_hook(&agent_a, "eth0", "xdp-native");
    assert_hook(&agent_b, "eth0", "tc");
    assert!(
        a.ns().run(|| tso_enabled("eth0")),
        "a should keep TSO: b has no XDP program"
    );
    let (port_a, port_b) = ([eth0(true, false)], [eth0(false, true)]);
    let server = b.ns().run(|| TcpBulkServer::start(sock(b.ip4(), 0)));
    let base_a = quiet_baseline(&agent_a, a.ns(), &port_a);
    let base_b = quiet_baseline(&agent_b, b.ns(), &port_b);

    bulk_transfer_counted_alike(&agent_a, &agent_b, a, b, server)?;

    // The data direction (a's tx, b's rx): netmon counts segments, veth
    // aggregates; everything else (ACKs, background) is counted alike.
    let identity = |agent: Count, kernel: Count| {
        agent.packets > kernel.packets
            && agent.bytes - kernel.bytes == (agent.packets - kernel.packets) * TCP4_TS_HEADER
    };
    let mut last = (Vec::new(), Vec::new());
    let holds = poll_until(WAIT, || {
        last = (
            growths(&agent_a, a.ns(), &port_a, &base_a),
            growths(&agent_b, b.ns(), &port_b, &base_b),
        );
        let ((a_agent, a_kernel), (b_agent, b_kernel)) = (last.0[0], last.1[0]);
        identity(a_agent.tx, a_kernel.tx)
            && identity(b_agent.rx, b_kernel.rx)
            && a_agent.rx == a_kernel.rx
            && b_agent.tx == b_kernel.tx
    });
    assert!(
        holds,
        "data direction: agent - kernel must be the headers of the extra segments \
         ({TCP4_TS_HEADER} bytes each), the ACK direction equal:\na:\n{}\nb:\n{}",
        report(&port_a, &last.0),
        report(&port_b, &last.1)
    );
    Some(())
}

// ---------------------------------------------------------------------------
// Jumbo frames: multi-buffer XDP sees them whole.

const JUMBO_MTU: u32 = 9000;
const JUMBO_PAYLOAD: u64 = 8000;
const JUMBO_COUNT: u64 = 100;

/// Sends [`JUMBO_COUNT`] datagrams of [`JUMBO_PAYLOAD`] from a to b.
fn send_jumbo(pair: &Pair) {
    let (a, b) = (pair.a(), pair.b());
    let sink = b.ns().run(|| udp_sink(sock(b.ip4(), 0)));
    a.ns().run(|| {
        udp_send(
            sock(a.ip4(), 0),
            sink.local_addr(),
            JUMBO_PAYLOAD as usize,
            JUMBO_COUNT as usize,
        )
    });
    assert!(
        sink.wait_for(JUMBO_COUNT, WAIT),
        "b received {} of {JUMBO_COUNT} jumbo datagrams",
        sink.packets()
    );
}

#[test]
fn jumbo_udp_exact_at_native_xdp_and_egress() {
    skip_unless_root!();
    let pair = quiet_pair(Some(JUMBO_MTU));
    let (a, b) = (pair.a(), pair.b());
    let agent_a = Agent::start(a.ns(), &["--iface", "eth0"]);
    let agent_b = Agent::start(b.ns(), &["--iface", "eth0"]);
    assert_hook(&agent_b, "eth0", "xdp-native");
    let port = [eth0(true, true)];
    let base_a = quiet_baseline(&agent_a, a.ns(), &port);
    let base_b = quiet_baseline(&agent_b, b.ns(), &port);

    send_jumbo(&pair);
    let expected = Count::frames(JUMBO_COUNT, JUMBO_PAYLOAD + UDP4_OVERHEAD);
    assert_eq!(expected.bytes / JUMBO_COUNT, 8042);
    let egress = flow("eth0", "egress", "udp", a.ip4(), b.ip4());
    let ingress = flow("eth0", "ingress", "udp", a.ip4(), b.ip4());
    assert_eq!(
        wait_flow(&agent_a, &egress, JUMBO_COUNT),
        expected,
        "a egress"
    );
    assert_eq!(
        wait_flow(&agent_b, &ingress, JUMBO_COUNT),
        expected,
        "b XDP"
    );
    assert_growth_matches(&agent_a, a.ns(), &port, &base_a);
    assert_growth_matches(&agent_b, b.ns(), &port, &base_b);
}

#[test]
fn jumbo_udp_exact_at_tc_ingress() {
    skip_unless_root!();
    let pair = quiet_pair(Some(JUMBO_MTU));
    let (a, b) = (pair.a(), pair.b());
    let agent = Agent::start(b.ns(), &["--iface", "eth0", "--ingress", "tc"]);
    assert_hook(&agent, "eth0", "tc");
    let port = [eth0(false, false)];
    let base = quiet_baseline(&agent, b.ns(), &port);

    send_jumbo(&pair);
    let ingress = flow("eth0", "ingress", "udp", a.ip4(), b.ip4());
    assert_eq!(
        wait_flow(&agent, &ingress, JUMBO_COUNT),
        Count::frames(JUMBO_COUNT, JUMBO_PAYLOAD + UDP4_OVERHEAD)
    );
    assert_growth_matches(&agent, b.ns(), &port, &base);
}

// ---------------------------------------------------------------------------
// Crafted frames: VLAN tags, malformed headers, many addresses.

/// An IPv4/UDP frame from `src_mac` and `src` port 4000 to b's MAC and
/// address, port 9 (discard), with `payload_len` bytes of payload.
fn udp4_frame(pair: &Pair, src_mac: [u8; 6], src: Ipv4Addr, payload_len: usize) -> Vec<u8> {
    let b = pair.b();
    eth(
        b.mac(),
        src_mac,
        ETHERTYPE_IPV4,
        &ipv4_udp(
            SocketAddrV4::new(src, 4000),
            SocketAddrV4::new(b.ip4(), 9),
            &pattern(payload_len),
        ),
    )
}

/// Sends every frame out of a's eth0.
fn send_frames(pair: &Pair, frames: &[Vec<u8>]) {
    pair.a().ns().run(|| {
        for frame in frames {
            raw_frame_send("eth0", frame);
        }
    });
}

/// 50 single-tagged (802.1Q) and 50 double-tagged (802.1ad outside 802.1Q)
/// frames from a to b, from two addresses so each kind has its own flow.
fn vlan_tags_counted(args: &[&str], hook: &str) {
    const EACH: u64 = 50;
    const PAYLOAD: usize = 100;
    let single_src = Ipv4Addr::new(10, 0, 0, 11);
    let double_src = Ipv4Addr::new(10, 0, 0, 12);
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let mut agent_args = vec!["--iface", "eth0"];
    agent_args.extend_from_slice(args);
    let agent = Agent::start(b.ns(), &agent_args);
    assert_hook(&agent, "eth0", hook);
    let port = [eth0(hook == "xdp-native", false)];
    let base = quiet_baseline(&agent, b.ns(), &port);

    let single = vlan(
        TPID_8021Q,
        100,
        &udp4_frame(&pair, a.mac(), single_src, PAYLOAD),
    );
    let double = vlan(
        TPID_8021AD,
        10,
        &vlan(
            TPID_8021Q,
            20,
            &udp4_frame(&pair, a.mac(), double_src, PAYLOAD),
        ),
    );
    let untagged = PAYLOAD as u64 + UDP4_OVERHEAD;
    assert_eq!(single.len() as u64, untagged + VLAN_TAG);
    assert_eq!(double.len() as u64, untagged + 2 * VLAN_TAG);
    let mut frames = Vec::new();
    for _ in 0..EACH {
        frames.push(single.clone());
        frames.push(double.clone());
    }
    send_frames(&pair, &frames);

    let single_flow = flow("eth0", "ingress", "udp", single_src, b.ip4());
    let double_flow = flow("eth0", "ingress", "udp", double_src, b.ip4());
    assert_eq!(
        wait_flow(&agent, &single_flow, EACH),
        Count::frames(EACH, single.len() as u64),
        "single-tagged: the tag counts"
    );
    assert_eq!(
        wait_flow(&agent, &double_flow, EACH),
        Count::frames(EACH, double.len() as u64),
        "double-tagged: both tags count"
    );
    let vlan0 = global(&base.answer, "vlan");
    let answer = agent.wait_for(INTERFACES, WAIT, |v| global(v, "vlan") >= vlan0 + 2 * EACH);
    assert_eq!(global(&answer, "vlan") - vlan0, 2 * EACH, "globals.vlan");
    assert_growth_matches(&agent, b.ns(), &port, &base);
}

#[test]
fn vlan_tags_counted_at_native_xdp() {
    skip_unless_root!();
    vlan_tags_counted(&[], "xdp-native");
}

/// At TC ingress the kernel has moved the (outer) tag into skb metadata;
/// netmon must add its 4 bytes back.
#[test]
fn vlan_tags_counted_at_tc_ingress() {
    skip_unless_root!();
    vlan_tags_counted(&["--ingress", "tc"], "tc");
}

/// Truncated and impossible headers pass untouched (the link keeps working)
/// and each counts once in `globals.malformed`.
#[test]
fn malformed_frames_pass_and_are_counted() {
    skip_unless_root!();
    const EACH: u64 = 10;
    const IPPROTO_TCP: u8 = 6;
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let agent = Agent::start(b.ns(), &["--iface", "eth0"]);
    let port = [eth0(true, false)];
    let sink = b.ns().run(|| udp_sink(sock(b.ip4(), 0)));
    let base = quiet_baseline(&agent, b.ns(), &port);

    // An IPv4 header cut off after 10 bytes.
    let truncated_ip = eth(
        b.mac(),
        a.mac(),
        ETHERTYPE_IPV4,
        &ipv4(a.ip4(), b.ip4(), 17, &[])[..10],
    );
    // A whole IPv4 header announcing a 12-byte one (IHL 3).
    let mut bad_ihl = udp4_frame(&pair, a.mac(), a.ip4(), 16);
    bad_ihl[14] = 0x43;
    // A TCP header cut off after 8 bytes, in an otherwise consistent packet.
    let truncated_tcp = eth(
        b.mac(),
        a.mac(),
        ETHERTYPE_IPV4,
        &ipv4(
            a.ip4(),
            b.ip4(),
            IPPROTO_TCP,
            &[0x0f, 0xa0, 0, 9, 0, 0, 0, 1],
        ),
    );
    let mut frames = Vec::new();
    for _ in 0..EACH {
        frames.extend([truncated_ip.clone(), bad_ihl.clone(), truncated_tcp.clone()]);
    }
    send_frames(&pair, &frames);

    let malformed0 = global(&base.answer, "malformed");
    let sent = frames.len() as u64;
    agent.wait_for(INTERFACES, WAIT, |v| {
        global(v, "malformed") >= malformed0 + sent
    });
    // Counted as far as the headers could be read: the TCP one has its
    // addresses, so it has a flow.
    let tcp = flow("eth0", "ingress", "tcp", a.ip4(), b.ip4());
    assert_eq!(
        wait_flow(&agent, &tcp, EACH),
        Count::frames(EACH, truncated_tcp.len() as u64),
        "truncated TCP"
    );

    a.ns()
        .run(|| udp_send(sock(a.ip4(), 0), sink.local_addr(), 100, 10));
    assert!(
        sink.wait_for(10, WAIT),
        "after the malformed frames b received {} of 10 datagrams",
        sink.packets()
    );
    assert_growth_matches(&agent, b.ns(), &port, &base);
    // Nothing else was malformed: not the datagrams after them, nor any
    // background frame.
    assert_eq!(
        global(&agent.get(INTERFACES), "malformed") - malformed0,
        sent,
        "globals.malformed"
    );
}

/// A flow map of 16 entries and traffic from 64 source addresses: the map
/// evicts, yet the MAC-pair counts (device and interface totals) stay exact.
#[test]
fn full_flow_map_evicts_but_device_totals_stay_exact() {
    skip_unless_root!();
    const SOURCES: u8 = 64;
    const ROUNDS: u64 = 5;
    const PAYLOAD: usize = 64;
    /// A MAC nothing else uses, so its device total is exactly these frames.
    const SENDER: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
    let pair = quiet_pair(None);
    let b = pair.b();
    // A flow cache of one bucket (four slots) per CPU, so most of the 64
    // flows go to the flow map (as on a busy gateway, where flows outnumber
    // slots).
    let agent = Agent::start(
        b.ns(),
        &[
            "--iface",
            "eth0",
            "--flow-entries",
            "16",
            "--flow-cache-slots",
            "4",
        ],
    );
    let port = [eth0(true, false)];
    let base = quiet_baseline(&agent, b.ns(), &port);

    let mut frames = Vec::new();
    for _ in 0..ROUNDS {
        for i in 1..=SOURCES {
            frames.push(udp4_frame(
                &pair,
                SENDER,
                Ipv4Addr::new(10, 0, 1, i),
                PAYLOAD,
            ));
        }
    }
    send_frames(&pair, &frames);

    let sent = Count::frames(frames.len() as u64, PAYLOAD as u64 + UDP4_OVERHEAD);
    let tx = wait_device_tx(&agent, "eth0", SENDER, sent);
    assert_eq!(tx, sent, "device {} tx", format_mac(SENDER));
    let answer = agent.get(INTERFACES);
    assert!(
        map_stat(&answer, "flow", "evictions") > 0,
        "64 flows in a map of 16 must evict:\n{answer:#}"
    );
    assert!(
        map_stat(&answer, "flow_cache", "misses") > 0,
        "64 flows in a cache of 2 slots per CPU must miss:\n{answer:#}"
    );
    assert_growth_matches(&agent, b.ns(), &port, &base);
}

/// eth0's received flow traffic: the listed ingress flows on eth0 plus
/// eth0's `other_flows.rx` (flows evicted from the agent's table), from one
/// `/flows` and one `/interfaces` answer.
fn eth0_flow_rx(flows: &Value, interfaces: &Value) -> Count {
    let mut sum = Count::of(&interface(interfaces, "eth0")["other_flows"]["rx"]);
    for f in flows["flows"].as_array().expect("a flow list") {
        if f["interface"] == "eth0" && f["direction"] == "ingress" {
            let c = Count::of(f);
            sum.bytes += c.bytes;
            sum.packets += c.packets;
        }
    }
    sum
}

/// An agent flow table of 64 (`--max-flows`) and 1,000 flows, each sent
/// twice, most through the kernel's flow map (a flow cache of four slots per
/// CPU): the table stays at its cap and evicts, and what it evicts moves to
/// eth0's `other_flows`, so listed flows plus other, the device and the
/// interface all hold exactly what was sent, and still do over later
/// drains (evicted flows whose kernel entries live on are not counted
/// again).
#[test]
fn full_flow_table_evicts_into_other_and_totals_stay_exact() {
    skip_unless_root!();
    const SOURCES: u32 = 1000;
    const ROUNDS: u64 = 2;
    const CAP: u64 = 64;
    const PAYLOAD: usize = 64;
    /// A MAC nothing else uses, so its device total is exactly these frames.
    const SENDER: [u8; 6] = [0x02, 0, 0, 0, 0, 0xab];
    let pair = quiet_pair(None);
    let b = pair.b();
    let cap = CAP.to_string();
    let agent = Agent::start(
        b.ns(),
        &[
            "--iface",
            "eth0",
            "--max-flows",
            &cap,
            "--flow-cache-slots",
            "4",
            // Their probes draw answers from a: IP flows besides the test's.
            "--disable",
            "discovery,latency",
        ],
    );
    let port = [eth0(true, false)];
    let base = quiet_baseline(&agent, b.ns(), &port);
    let flows0 = eth0_flow_rx(&agent.get(FLOWS), &base.answer);

    let mut frames = Vec::new();
    for _ in 0..ROUNDS {
        for i in 0..SOURCES {
            let src = Ipv4Addr::from(0x0a02_0000 + i);
            frames.push(udp4_frame(&pair, SENDER, src, PAYLOAD));
        }
    }
    // In bursts the receiver's ring takes whole.
    for chunk in frames.chunks(100) {
        send_frames(&pair, chunk);
        thread::sleep(Duration::from_millis(20));
    }
    let sent = Count::frames(frames.len() as u64, PAYLOAD as u64 + UDP4_OVERHEAD);

    let tx = wait_device_tx(&agent, "eth0", SENDER, sent);
    assert_eq!(tx, sent, "device {} tx", format_mac(SENDER));
    assert_growth_matches(&agent, b.ns(), &port, &base);
    let mut last = Count::default();
    let exact = poll_until(WAIT, || {
        last = eth0_flow_rx(&agent.get(FLOWS), &agent.get(INTERFACES)).since(flows0);
        last == sent
    });
    assert!(
        exact,
        "listed flows + other on eth0 grew by {last:?}, sent {sent:?}"
    );
    // Later drains re-read the kernel's entries of evicted flows: nothing
    // is counted twice, and the totals hold still.
    for _ in 0..3 {
        let interfaces = fresh_interfaces(&agent);
        let flows = agent.get(FLOWS);
        assert_eq!(
            eth0_flow_rx(&flows, &interfaces).since(flows0),
            sent,
            "listed flows + other, a later drain"
        );
        assert_eq!(
            agent_totals(&interfaces, "eth0").rx.since(base.agent[0].rx),
            sent,
            "eth0 rx, a later drain"
        );
        assert!(
            flows["total"].as_u64() == Some(CAP),
            "the table holds {CAP} flows:\n{flows:#}"
        );
        assert!(
            flows["evictions"].as_u64().unwrap() >= u64::from(SOURCES) - CAP,
            "1,000 flows in a table of {CAP} evict at least {}:\n{flows:#}",
            u64::from(SOURCES) - CAP
        );
        let tables = &interfaces["tables"]["flows"];
        assert_eq!(tables["entries"].as_u64(), Some(CAP), "{tables}");
        assert_eq!(tables["capacity"].as_u64(), Some(CAP), "{tables}");
        let other = &interface(&interfaces, "eth0")["other_flows"];
        assert_eq!(
            other["evicted_flows"].as_u64(),
            tables["evictions"].as_u64(),
            "every eviction was on eth0: {other}"
        );
    }
    assert_eq!(
        wait_device_tx(&agent, "eth0", SENDER, sent),
        sent,
        "device tx, after later drains"
    );
    assert_growth_matches(&agent, b.ns(), &port, &base);
    let metrics = http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    for needle in [
        "netmon_table_evictions_total{table=\"flows\"}",
        "netmon_interface_other_flows_receive_bytes_total{interface=\"eth0\"}",
    ] {
        assert!(metrics.contains(needle), "no {needle} in /metrics");
    }
}

// ---------------------------------------------------------------------------
// A bridged LAN watched on its ports.

#[test]
fn lan_bridge_ports_flows_devices_and_totals() {
    skip_unless_root!();
    const UDP_COUNT: u64 = 300;
    const PAYLOAD: u64 = 200;
    const PINGS: u64 = 10;
    let lan = Lan::new(3);
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let agent = Agent::start(
        lan.gw(),
        &["--iface", "p1", "--iface", "p2", "--iface", "p3"],
    );
    let ports: Vec<Port> = ["p1", "p2", "p3"]
        .into_iter()
        .map(|name| Port {
            name,
            xdp_here: true,
            xdp_peer: false,
        })
        .collect();
    for p in &ports {
        assert_hook(&agent, p.name, "xdp-native");
    }
    // Resolve h1 <-> h2 and let the bridge learn both, before the baseline.
    assert_eq!(h1.ns().run(|| icmp_echo(h2.ip4().into(), 1, 8)), 1);
    let sink = h2.ns().run(|| udp_sink(sock(h2.ip4(), 0)));
    let base = quiet_baseline(&agent, lan.gw(), &ports);

    h1.ns().run(|| {
        udp_send(
            sock(h1.ip4(), 0),
            sink.local_addr(),
            PAYLOAD as usize,
            UDP_COUNT as usize,
        )
    });
    assert!(sink.wait_for(UDP_COUNT, WAIT), "h2 got {}", sink.packets());
    let replies = h3
        .ns()
        .run(|| icmp_echo(h1.ip4().into(), PINGS as usize, 56));
    assert_eq!(replies, PINGS as usize);

    let udp = Count::frames(UDP_COUNT, PAYLOAD + UDP4_OVERHEAD);
    let echo = Count::frames(PINGS, 98);
    for (sel, expected) in [
        (flow("p1", "ingress", "udp", h1.ip4(), h2.ip4()), udp),
        (flow("p2", "egress", "udp", h1.ip4(), h2.ip4()), udp),
        (flow("p3", "ingress", "icmp", h3.ip4(), h1.ip4()), echo),
        (flow("p1", "egress", "icmp", h3.ip4(), h1.ip4()), echo),
        (flow("p1", "ingress", "icmp", h1.ip4(), h3.ip4()), echo),
    ] {
        assert_eq!(
            wait_flow(&agent, &sel, expected.packets),
            expected,
            "{sel:?}"
        );
    }

    wait_device_tx(&agent, "p1", h1.mac(), udp);
    assert_growth_matches(&agent, lan.gw(), &ports, &base);
    let devices = agent.get(DEVICES);
    let h1_dev = find_device(&devices, "p1", h1.mac()).expect("waited for above");
    let h1_ip = h1.ip4().to_string();
    assert!(
        h1_dev["ips"]
            .as_array()
            .is_some_and(|ips| ips.iter().any(|ip| ip == h1_ip.as_str())),
        "h1's device on p1 (a bridge port with no configured address) must list {h1_ip}:\n{h1_dev:#}"
    );
}

// ---------------------------------------------------------------------------
// Rates and expiry.

/// The specification: a steady 2000 packets/s of 542-byte frames is
/// reported within 5%.
#[test]
fn rate_of_a_paced_flow_is_within_five_percent() {
    skip_unless_root!();
    const PPS: u64 = 2000;
    const PAYLOAD: u64 = 500;
    const FRAME: u64 = PAYLOAD + UDP4_OVERHEAD;
    const RUN: Duration = Duration::from_secs(5);
    const SAMPLE_AT: Duration = Duration::from_secs(3);
    let _heavy = heavy();
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let agent = Agent::start(b.ns(), &["--iface", "eth0"]);
    let sink = b.ns().run(|| udp_sink(sock(b.ip4(), 0)));
    let sel = flow("eth0", "ingress", "udp", a.ip4(), b.ip4());

    let (report, sample) = thread::scope(|scope| {
        let sender = scope.spawn(|| {
            a.ns().run(|| {
                udp_send_paced(
                    sock(a.ip4(), 0),
                    sink.local_addr(),
                    PAYLOAD as usize,
                    PPS,
                    RUN,
                )
            })
        });
        // Three readings, one interval apart: the median is judged, so one
        // interval in which a sender starved of CPU caught up on its
        // schedule (a burst above the pace, seen on a loaded machine) does
        // not decide the result.
        thread::sleep(SAMPLE_AT - Duration::from_secs(1));
        let mut samples: Vec<Value> = (0..3)
            .map(|i| {
                if i > 0 {
                    thread::sleep(Duration::from_secs(1));
                }
                let answer = agent.get(FLOWS);
                find_flow(&answer, &sel)
                    .unwrap_or_else(|| panic!("no flow {sel:?} in the run:\n{answer:#}"))
                    .clone()
            })
            .collect();
        samples.sort_by(|x, y| {
            let pps = |v: &Value| v["packets_per_second"].as_f64().unwrap_or(0.0);
            pps(x).total_cmp(&pps(y))
        });
        (
            sender.join().expect("the paced sender panicked"),
            samples.swap_remove(1),
        )
    });
    let achieved = report.sent as f64 / report.elapsed.as_secs_f64();
    // The schedule is absolute, so the sender only falls behind when it is
    // starved of CPU for long; then its achieved rate is the reference.
    let expected_pps = if achieved < PPS as f64 * 0.99 {
        eprintln!("the paced sender fell behind: {report:?} = {achieved:.0} packets/s");
        achieved
    } else {
        PPS as f64
    };
    let pps = sample["packets_per_second"]
        .as_f64()
        .expect("packets_per_second");
    let bps = sample["bits_per_second"].as_f64().expect("bits_per_second");
    let within = |got: f64, want: f64| (got - want).abs() <= want * 0.05;
    assert!(
        within(pps, expected_pps) && within(bps, expected_pps * (FRAME * 8) as f64),
        "rate {SAMPLE_AT:?} into a paced run of {expected_pps:.0} packets/s of {FRAME}-byte \
         frames: {pps:.1} packets/s, {bps:.0} bits/s (want {expected_pps:.0} and {:.0}, +-5%); \
         sender {report:?}; flow:\n{sample:#}",
        expected_pps * (FRAME * 8) as f64
    );
    assert!(
        sink.wait_for(report.sent, WAIT),
        "b received {} of {}",
        sink.packets(),
        report.sent
    );
}

/// With a 1 s idle expiry a finished flow is deleted from the kernel and
/// forgotten, while the interface totals keep everything.
#[test]
fn idle_flow_expires_but_interface_totals_remain() {
    skip_unless_root!();
    idle_flow_expires(&[]);
}

/// As above with the flow cache off: the flow lives in the kernel's flow
/// map, and the agent deletes the idle entry.
#[test]
fn idle_flow_map_entry_is_deleted_but_interface_totals_remain() {
    skip_unless_root!();
    idle_flow_expires(&["--flow-cache-slots", "0"]);
}

fn idle_flow_expires(extra: &[&str]) {
    const COUNT: u64 = 100;
    let pair = quiet_pair(None);
    let (a, b) = (pair.a(), pair.b());
    let mut args = vec!["--iface", "eth0", "--idle-expiry", "1s"];
    args.extend_from_slice(extra);
    let agent = Agent::start(b.ns(), &args);
    let port = [eth0(true, false)];
    let sink = b.ns().run(|| udp_sink(sock(b.ip4(), 0)));
    let base = quiet_baseline(&agent, b.ns(), &port);
    let deleted0 = map_stat(&base.answer, "flow", "deleted_idle");

    a.ns()
        .run(|| udp_send(sock(a.ip4(), 0), sink.local_addr(), 200, COUNT as usize));
    let sel = flow("eth0", "ingress", "udp", a.ip4(), b.ip4());
    assert_eq!(
        wait_flow(&agent, &sel, COUNT),
        Count::frames(COUNT, 200 + UDP4_OVERHEAD)
    );
    let counted = agent_totals(&agent.get(INTERFACES), "eth0");

    agent.wait_for(FLOWS, WAIT, |v| find_flow(v, &sel).is_none());
    let answer = if extra.is_empty() {
        agent.get(INTERFACES)
    } else {
        agent.wait_for(INTERFACES, WAIT, |v| {
            map_stat(v, "flow", "deleted_idle") > deleted0
        })
    };
    let after = agent_totals(&answer, "eth0");
    assert!(
        after.rx.bytes >= counted.rx.bytes && after.rx.packets >= counted.rx.packets,
        "interface totals went back from {counted:?} to {after:?} when entries expired"
    );
    assert_growth_matches(&agent, b.ns(), &port, &base);
}

/// Multicast and broadcast this host sends on a bridge, which the kernel
/// loops back to its own stack (`dev_loopback_xmit`: `PACKET_LOOPBACK`, the
/// data starting at the network header). TC ingress sees those copies with
/// no Ethernet header; read as Ethernet, their IP header bytes made devices
/// such as `11:01:fd:00:00:00` (UDP, hop limit 1, from fd00::). They are not
/// received from the wire and the kernel's counters leave them out, so
/// netmon must too, while the wire copies stay counted once at egress.
#[test]
fn looped_back_multicast_is_not_counted_at_tc_ingress() {
    skip_unless_root!();
    const COUNT: u64 = 5;
    const PAYLOAD: usize = 100;
    let lan = Lan::new(1);
    let gw = lan.gw();
    let br = Lan::BRIDGE;
    let agent = Agent::start(gw, &["--iface=br0", "--disable=discovery,latency"]);
    // A bridge has no native XDP: ingress falls back to TC.
    assert_hook(&agent, br, "tc");
    // A bridge counts a frame it passes up to its own stack
    // (`br_pass_frame_up`) after the Ethernet header was pulled: its
    // `rx_bytes` miss 14 bytes a frame, as a veth end with XDP does (10
    // 128-byte IP packets from h1 grew br0's rx_bytes by 1280), so
    // `xdp_here` restores them.
    let port = [Port {
        name: br,
        xdp_here: true,
        xdp_peer: false,
    }];
    let base = quiet_baseline(&agent, gw, &port);

    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let broadcast = Ipv4Addr::new(10, 0, 0, 255);
    let br_index = gw.ifindex(br);
    gw.run(|| {
        let v6 = std::net::UdpSocket::bind(sock(Lan::GW_IP6, 0)).unwrap();
        let to6 = SocketAddrV6::new(all_nodes, 9, 0, br_index);
        let v4 = std::net::UdpSocket::bind(sock(Lan::GW_IP4, 0)).unwrap();
        v4.set_broadcast(true).unwrap();
        for _ in 0..COUNT {
            v6.send_to(&[0u8; PAYLOAD], to6).unwrap();
            v4.send_to(&[0u8; PAYLOAD], sock(broadcast, 9)).unwrap();
        }
    });

    let sel6 = flow(br, "egress", "udp", Lan::GW_IP6, all_nodes);
    let sel4 = flow(br, "egress", "udp", Lan::GW_IP4, broadcast);
    let frame6 = PAYLOAD as u64 + UDP6_OVERHEAD;
    let frame4 = PAYLOAD as u64 + UDP4_OVERHEAD;
    assert_eq!(
        wait_flow(&agent, &sel6, COUNT),
        Count::frames(COUNT, frame6)
    );
    assert_eq!(
        wait_flow(&agent, &sel4, COUNT),
        Count::frames(COUNT, frame4)
    );
    // The looped-back copies would grow the agent's rx and not the kernel's.
    assert_growth_matches(&agent, gw, &port, &base);

    // Every device is one of the LAN's, or a multicast or broadcast group
    // address the LAN's frames are sent to; none is made of IP header bytes.
    let real = [Lan::GW_MAC, Lan::host_mac(1), Lan::port_mac(1)].map(format_mac);
    let group = |mac: &str| {
        mac.starts_with("33:33:") || mac.starts_with("01:00:5e:") || mac == "ff:ff:ff:ff:ff:ff"
    };
    let answer = agent.get(DEVICES);
    let devices = answer["devices"].as_array().expect("a device list");
    let odd: Vec<&Value> = devices
        .iter()
        .filter(|d| {
            let mac = d["mac"].as_str().unwrap_or_default();
            !real.iter().any(|r| r == mac) && !group(mac)
        })
        .collect();
    assert!(odd.is_empty(), "devices that are no LAN station: {odd:#?}");
    assert!(
        find_device(&answer, br, Lan::GW_MAC).is_some(),
        "the gateway is a device: {answer:#}"
    );
}
