//! Parts 1-2's traffic and its receiver: the loads (flows or the
//! random-source flood), the flood threads, `b`'s sink socket and NAPI
//! thread, and `b`'s UDP counters.

use std::{
    collections::HashMap,
    fs, io, mem,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use crate::{
    common::{NetNs, Pair, internet_checksum},
    harness::{BATCH, RawSocket, SINK_PORT, flood_frame},
};

/// The traffic of a phase: 60-byte UDP frames from `a` to `b`'s sink, their
/// sources chosen so that each frame belongs to one of a known number of
/// flows (netmon's flow key has no ports: a source address is a flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Load {
    /// From `n` sources (10.64.0.0 onwards) sent round-robin: `n`
    /// concurrent flows, each sending every `n`-th frame.
    Flows(usize),
    /// Every frame from a source not seen before in the phase: 10.128.0.0/9
    /// walked in a scrambled order (the random-source flood).
    Flood,
}

impl Load {
    pub const ALL: [Load; 6] = [
        Load::Flows(1),
        Load::Flows(200),
        Load::Flows(2_000),
        Load::Flows(10_000),
        Load::Flows(100_000),
        Load::Flood,
    ];

    pub fn label(self) -> String {
        match self {
            Load::Flows(1) => "1 flow".to_owned(),
            Load::Flows(n) => format!("{n} flows"),
            Load::Flood => "random-source flood".to_owned(),
        }
    }

    /// The cost target: netmon / pass-only floor at most this.
    pub fn max_cost_ratio(self) -> f64 {
        match self {
            Load::Flows(n) if n <= 10_000 => 2.0,
            Load::Flows(_) => 3.0,
            Load::Flood => 4.0,
        }
    }

    pub fn parse(text: &str) -> Option<Load> {
        match text {
            "flood" => Some(Load::Flood),
            n => n.parse().ok().filter(|&n| n > 0).map(Load::Flows),
        }
    }
}

/// The first source of [`Load::Flows`]: 10.64.0.0.
const FLOWS_FIRST_SOURCE: u32 = 0x0a40_0000;
/// [`Load::Flood`]'s sources: 10.128.0.0/9.
const FLOOD_NET: u32 = 0x0a80_0000;
const FLOOD_BITS: u32 = 23;

/// The `i`-th source of the flood: a bijection of the low [`FLOOD_BITS`]
/// bits (odd multiplies and a xorshift), so no source repeats within 2^23
/// frames and consecutive ones land far apart.
fn flood_source(i: u64) -> Ipv4Addr {
    const MASK: u32 = (1 << FLOOD_BITS) - 1;
    let mut x = (i as u32) & MASK;
    x = x.wrapping_mul(0x0054_5f4d) & MASK;
    x ^= x >> 12;
    x = x.wrapping_mul(0x0036_9dea | 1) & MASK;
    Ipv4Addr::from(FLOOD_NET | x)
}

/// Frames of [`FLOOD_FRAME_LEN`] bytes, back to back, that senders cycle
/// through; for [`Load::Flood`] a template whose source each sender
/// rewrites in its own copy.
pub struct Frames {
    bytes: Vec<u8>,
    load: Load,
}

/// 14 + 20 + 8 + [`FLOOD_PAYLOAD`].
const FLOOD_FRAME_LEN: usize = 60;
/// Offsets in a frame: the IPv4 header, its checksum and source.
const IP_OFF: usize = 14;

impl Frames {
    pub fn new(load: Load) -> Frames {
        let sources: Vec<Ipv4Addr> = match load {
            Load::Flows(n) => (0..n as u32)
                .map(|i| Ipv4Addr::from(FLOWS_FIRST_SOURCE + i))
                .collect(),
            Load::Flood => vec![flood_source(0)],
        };
        let mut bytes = Vec::with_capacity(sources.len() * FLOOD_FRAME_LEN);
        for src in sources {
            bytes.extend_from_slice(&flood_frame(src));
        }
        Frames { bytes, load }
    }

    fn count(&self) -> usize {
        self.bytes.len() / FLOOD_FRAME_LEN
    }

    fn get(&self, i: usize) -> &[u8] {
        let at = (i % self.count()) * FLOOD_FRAME_LEN;
        &self.bytes[at..at + FLOOD_FRAME_LEN]
    }
}

/// Sets `frame`'s IPv4 source and header checksum, and its UDP checksum
/// to 0 (none, as IPv4 allows).
fn set_source(frame: &mut [u8], src: Ipv4Addr) {
    // UDP checksum: none.
    frame[IP_OFF + 26..IP_OFF + 28].copy_from_slice(&[0, 0]);
    let ip = &mut frame[IP_OFF..IP_OFF + 20];
    ip[12..16].copy_from_slice(&src.octets());
    ip[10..12].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// What a flood thread did: frames the kernel took, and frames it dropped
/// in the transmit path after TC egress (veth's ring to b was full: the
/// send fails with ENOBUFS, and `sendmmsg` stops at that frame).
#[derive(Clone, Copy, Default)]
pub struct Flooded {
    pub sent: u64,
    pub dropped: u64,
}

/// Sends `frames` as fast as possible until `stop`, round-robin from a
/// place of its own (for a flood: each batch with fresh sources, numbered
/// from `flood_next`); adds every frame that went down the transmit path
/// (sent or dropped) to `offered` as it goes.
pub fn flood(
    sock: &RawSocket,
    frames: &Frames,
    flood_next: &AtomicU64,
    stop: &AtomicBool,
    offered: &AtomicU64,
) -> Flooded {
    let mut own: Vec<u8> = (0..BATCH).flat_map(|_| frames.get(0).to_vec()).collect();
    let mut next = 0usize;
    let mut done = Flooded::default();
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<&[u8]> = if frames.load == Load::Flood {
            let first = flood_next.fetch_add(BATCH as u64, Ordering::Relaxed);
            for (i, frame) in own
                .as_chunks_mut::<FLOOD_FRAME_LEN>()
                .0
                .iter_mut()
                .enumerate()
            {
                set_source(frame, flood_source(first + i as u64));
            }
            own.as_chunks::<FLOOD_FRAME_LEN>()
                .0
                .iter()
                .map(|f| &f[..])
                .collect()
        } else {
            (next..next + BATCH).map(|i| frames.get(i)).collect()
        };
        let (sent, dropped) = match sock.send(&batch) {
            Ok(n) if n < batch.len() => (n as u64, 1),
            Ok(n) => (n as u64, 0),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => (0, 1),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => (0, 0),
            Err(e) => panic!("sendmmsg: {e}"),
        };
        // Frames not taken are sent next time, so the round-robin order
        // holds.
        next = (next + (sent + dropped) as usize) % frames.count();
        done.sent += sent;
        done.dropped += dropped;
        offered.fetch_add(sent + dropped, Ordering::Relaxed);
    }
    done
}

/// A UDP socket on b's [`SINK_PORT`] with the smallest receive buffer, in
/// the calling thread's namespace; never read, so it fills at once.
pub fn full_sink() -> UdpSocket {
    let sock = UdpSocket::bind(SocketAddrV4::new(Pair::IP4_B, SINK_PORT))
        .unwrap_or_else(|e| panic!("binding the UDP sink: {e}"));
    let size: libc::c_int = 0;
    // SAFETY: the value pointer and length describe a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
    sock
}

/// The kernel thread that runs an interface's NAPI polling once NAPI is
/// threaded. On veth it does all of the receiver's work: XDP, building the
/// skb, GRO, TC ingress, IP and UDP; so its CPU time per packet is the
/// receive path's cost, whatever else the machine is doing.
pub struct NapiThread {
    pid: u32,
    comm: String,
}

impl NapiThread {
    /// Makes the veth pair deliver to b through NAPI as a NIC driver does,
    /// with or without XDP, and threads b's NAPI; returns its thread. veth
    /// uses NAPI without XDP when the receiver has GRO on and the sender no
    /// TSO (`veth_skb_is_eligible_for_gro`).
    pub fn enable(pair: &Pair) -> NapiThread {
        let (ns, ifname) = (pair.b().ns(), Pair::IFNAME);
        let before = napi_threads(ifname);
        pair.a()
            .ns()
            .run(|| set_offload(ifname, ETHTOOL_STSO, false));
        ns.run(|| set_offload(ifname, ETHTOOL_SGRO, true));
        ns.exec(&[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{ifname}/threaded"),
        ]);
        let new: Vec<(u32, String)> = napi_threads(ifname)
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        let [(pid, comm)] = &new[..] else {
            panic!(
                "expected one new NAPI thread for {ifname} in {}, found {new:?}",
                ns.name()
            );
        };
        NapiThread {
            pid: *pid,
            comm: comm.clone(),
        }
    }

    /// The thread's CPU time so far (`/proc/PID/schedstat`, ns). Panics if
    /// the thread is gone (NAPI re-created), which would void the window.
    pub fn cpu(&self) -> Duration {
        let comm = fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
        assert_eq!(
            comm.trim(),
            self.comm,
            "NAPI thread {} went away",
            self.comm
        );
        let path = format!("/proc/{}/schedstat", self.pid);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let ns = text.split_whitespace().next().and_then(|f| f.parse().ok());
        Duration::from_nanos(ns.unwrap_or_else(|| panic!("{path}: {text:?}")))
    }
}

/// The `napi/IFNAME-ID` kernel threads on the machine, as (pid, name).
fn napi_threads(ifname: &str) -> Vec<(u32, String)> {
    let prefix = format!("napi/{ifname}-");
    fs::read_dir("/proc")
        .expect("listing /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            comm.starts_with(&prefix).then(|| (pid, comm.to_owned()))
        })
        .collect()
}

/// `ethtool -K IFNAME tso off`.
const ETHTOOL_STSO: u32 = 0x1f;
/// `ethtool -K IFNAME gro on`.
const ETHTOOL_SGRO: u32 = 0x2c;

/// Sets one offload of `ifname` in the calling thread's namespace with a
/// legacy ethtool ioctl (`cmd`: [`ETHTOOL_STSO`], [`ETHTOOL_SGRO`]).
fn set_offload(ifname: &str, cmd: u32, on: bool) {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd,
        data: u32::from(on),
    };
    // SAFETY: ifreq is plain old data; all zeroes is valid.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifr` names the interface and points at `value`, both live
    // for the call, as SIOCETHTOOL expects.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL, &raw mut ifr) };
    assert_eq!(
        rc,
        0,
        "ethtool command {cmd:#x} on {ifname}: {}",
        io::Error::last_os_error()
    );
}

/// The calling thread's CPU clock, which other threads can read.
pub fn own_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a live clockid_t for the call.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    assert_eq!(
        rc,
        0,
        "pthread_getcpuclockid: {}",
        io::Error::from_raw_os_error(rc)
    );
    clock
}

/// `b`'s UDP receive counters from `/proc/net/snmp`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpRx {
    in_datagrams: u64,
    no_ports: u64,
    in_errors: u64,
}

impl UdpRx {
    /// Every datagram the UDP layer finished with (InErrors includes
    /// RcvbufErrors and InCsumErrors).
    pub fn total(&self) -> u64 {
        self.in_datagrams + self.no_ports + self.in_errors
    }

    /// Parses the two `Udp:` lines (names, then values).
    pub fn parse(snmp: &str) -> Option<UdpRx> {
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let names = lines.next()?.split_whitespace().skip(1);
        let values = lines.next()?.split_whitespace().skip(1);
        let fields: HashMap<&str, u64> = names
            .zip(values)
            .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
            .collect();
        Some(UdpRx {
            in_datagrams: *fields.get("InDatagrams")?,
            no_ports: *fields.get("NoPorts")?,
            in_errors: *fields.get("InErrors")?,
        })
    }
}

pub fn udp_rx(ns: &NetNs) -> UdpRx {
    // /proc/thread-self/net follows the thread's namespace.
    let text = ns.run(|| fs::read_to_string("/proc/thread-self/net/snmp"));
    let text = text.unwrap_or_else(|e| panic!("reading /proc/net/snmp in {}: {e}", ns.name()));
    UdpRx::parse(&text).unwrap_or_else(|| panic!("no Udp lines in /proc/net/snmp:\n{text}"))
}
