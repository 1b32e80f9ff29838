//! Blocking traffic generators and Ethernet/IP frame builders.
//!
//! The generators open ordinary sockets in the calling thread's network
//! namespace, so call them inside [`NetNs::run`](super::netns::NetNs::run):
//!
//! ```ignore
//! let sink = pair.b().ns().run(|| udp_sink("10.0.0.2:9000".parse().unwrap()));
//! pair.a().ns().run(|| udp_send("10.0.0.1:0".parse().unwrap(), sink.local_addr(), 200, 100));
//! assert!(sink.wait_for(100, Duration::from_secs(2)));
//! ```
//!
//! Background threads (the sink's receiver, the TCP server's reader) are
//! started by the thread that calls the constructor and inherit its
//! namespace; the sockets are bound before the constructor returns, so the
//! handle may leave the `run` closure. Every blocking call has a timeout
//! ([`IO_TIMEOUT`], [`ECHO_TIMEOUT`]) and panics with what it was doing
//! rather than hang.
//!
//! The builders are pure: [`eth`], [`vlan`], [`ipv4_udp`], [`ipv6_udp`] (with
//! [`Ipv6Ext`] extension headers) and [`arp_request`] make frames for
//! [`raw_frame_send`], which injects them with an `AF_PACKET` socket.

use std::{
    io::{self, Read, Write},
    mem,
    net::{
        IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener,
        TcpStream, UdpSocket,
    },
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    panic,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::netns::poll_until;

/// Longest any blocking socket call waits (connect, accept, read, write).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`icmp_echo`] waits for each reply.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(1);

/// Receive buffer asked for by [`udp_sink`], so bursts are not dropped by a
/// full socket (SO_RCVBUFFORCE; root may exceed `rmem_max`).
const SINK_RCVBUF: libc::c_int = 8 << 20;

/// A recognisable payload: byte `i` is `i mod 251`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn bind_udp(bind: SocketAddr, what: &str) -> UdpSocket {
    UdpSocket::bind(bind).unwrap_or_else(|err| panic!("{what}: bind UDP {bind}: {err}"))
}

/// Sends `count` UDP datagrams of `payload_len` bytes from host `from` to a
/// sink on host `to` (their IPv4 addresses) and waits up to 10 s until the
/// sink has them all.
pub fn udp_exchange(
    from: &super::netns::Host,
    to: &super::netns::Host,
    payload_len: usize,
    count: usize,
) {
    let sink = to
        .ns()
        .run(|| udp_sink(SocketAddr::new(to.ip4().into(), 0)));
    from.ns().run(|| {
        udp_send(
            SocketAddr::new(from.ip4().into(), 0),
            sink.local_addr(),
            payload_len,
            count,
        )
    });
    assert!(
        sink.wait_for(count as u64, Duration::from_secs(10)),
        "the sink did not receive {count} datagrams"
    );
}

/// Sends exactly `count` UDP datagrams of `payload_len` bytes from a socket
/// bound to `bind` (port 0 for any) to `dst`.
///
/// The kernel queues packets to a neighbour that is still being resolved
/// (ARP/NDP) only up to `unres_qlen_bytes`; on a fresh link the first few
/// hundred small datagrams are safe, larger bursts should follow an
/// [`icmp_echo`] or use static neighbours.
pub fn udp_send(bind: SocketAddr, dst: SocketAddr, payload_len: usize, count: usize) {
    let sock = bind_udp(bind, "udp_send");
    let payload = pattern(payload_len);
    for i in 0..count {
        let sent = sock.send_to(&payload, dst).unwrap_or_else(|err| {
            panic!("udp_send: datagram {i} of {count} from {bind} to {dst}: {err}")
        });
        assert_eq!(
            sent, payload_len,
            "udp_send: datagram {i} to {dst}: short send"
        );
    }
}

/// What [`udp_send_paced`] did.
#[derive(Clone, Copy, Debug)]
pub struct PacedReport {
    /// Datagrams sent: `round(packets_per_sec * duration)`.
    pub sent: u64,
    /// From the first send to the end of the last one.
    pub elapsed: Duration,
}

/// Sends `round(packets_per_sec * duration)` datagrams, datagram `i` not
/// before `start + i / packets_per_sec`. The schedule is absolute, so a late
/// wake-up is made up by sending the next ones without sleeping and the
/// average rate stays exact even when the sleep granularity is coarser than
/// the interval.
pub fn udp_send_paced(
    bind: SocketAddr,
    dst: SocketAddr,
    payload_len: usize,
    packets_per_sec: u64,
    duration: Duration,
) -> PacedReport {
    assert!(packets_per_sec > 0, "udp_send_paced: packets_per_sec is 0");
    let sock = bind_udp(bind, "udp_send_paced");
    let payload = pattern(payload_len);
    let total = (packets_per_sec as f64 * duration.as_secs_f64()).round() as u64;
    let start = Instant::now();
    for i in 0..total {
        let offset_ns = u128::from(i) * 1_000_000_000 / u128::from(packets_per_sec);
        let due = start + Duration::from_nanos(offset_ns as u64);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        sock.send_to(&payload, dst).unwrap_or_else(|err| {
            panic!("udp_send_paced: datagram {i} of {total} from {bind} to {dst}: {err}")
        });
    }
    PacedReport {
        sent: total,
        elapsed: start.elapsed(),
    }
}

/// Totals of a [`UdpSink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub packets: u64,
    /// UDP payload bytes.
    pub bytes: u64,
}

/// A UDP socket drained by a background thread that counts datagrams and
/// payload bytes. Stops on [`UdpSink::stop`] or drop.
#[derive(Debug)]
pub struct UdpSink {
    addr: SocketAddr,
    packets: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `bind` (port 0 picks one; see [`UdpSink::local_addr`]) and starts
/// counting.
pub fn udp_sink(bind: SocketAddr) -> UdpSink {
    let sock = bind_udp(bind, "udp_sink");
    set_rcvbuf_force(&sock, SINK_RCVBUF);
    // Short, so the thread notices `stop` quickly.
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap_or_else(|err| panic!("udp_sink {bind}: set read timeout: {err}"));
    let addr = sock
        .local_addr()
        .unwrap_or_else(|err| panic!("udp_sink {bind}: local_addr: {err}"));
    let packets = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (packets, bytes, stop) = (packets.clone(), bytes.clone(), stop.clone());
        thread::Builder::new()
            .name(format!("udp_sink {addr}"))
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    match sock.recv(&mut buf) {
                        Ok(n) => {
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                            packets.fetch_add(1, Ordering::Release);
                        }
                        Err(err) if is_timeout(&err) => {}
                        Err(err) => panic!("udp_sink {addr}: recv: {err}"),
                    }
                }
            })
            .unwrap_or_else(|err| panic!("udp_sink {addr}: spawn thread: {err}"))
    };
    UdpSink {
        addr,
        packets,
        bytes,
        stop,
        thread: Some(thread),
    }
}

impl UdpSink {
    /// The bound address (with the port the kernel picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Acquire)
    }

    /// Payload bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Waits until at least `packets` datagrams arrived; false on timeout.
    pub fn wait_for(&self, packets: u64, timeout: Duration) -> bool {
        poll_until(timeout, || self.packets() >= packets)
    }

    /// Stops the receiver and returns the totals.
    pub fn stop(mut self) -> SinkStats {
        self.shutdown();
        SinkStats {
            packets: self.packets(),
            bytes: self.bytes(),
        }
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && let Err(payload) = thread.join()
            && !thread::panicking()
        {
            panic::resume_unwind(payload);
        }
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sets SO_RCVBUFFORCE, falling back to SO_RCVBUF when not privileged.
fn set_rcvbuf_force(sock: &UdpSocket, size: libc::c_int) {
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: the value pointer and length describe a live c_int.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const size).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Sends `count` ICMP echo requests (v4 or v6 by `dst`) with `payload_len`
/// payload bytes, one at a time, waiting up to [`ECHO_TIMEOUT`] for each
/// reply; returns the number of matching replies. Unreachable destinations
/// count as lost, never as a panic.
///
/// Uses ICMP datagram ("ping") sockets, which need the caller's group in
/// `net.ipv4.ping_group_range`; [`NetNs::new`](super::netns::NetNs::new) opens
/// it in every namespace it makes.
pub fn icmp_echo(dst: IpAddr, count: usize, payload_len: usize) -> usize {
    icmp_echo_timeout(dst, count, payload_len, ECHO_TIMEOUT)
}

/// [`icmp_echo`] with a chosen per-reply timeout.
pub fn icmp_echo_timeout(
    dst: IpAddr,
    count: usize,
    payload_len: usize,
    per_reply: Duration,
) -> usize {
    let (domain, protocol, request, reply) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128, 129),
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let hint = if err.raw_os_error() == Some(libc::EACCES) {
            " (is the caller's group in net.ipv4.ping_group_range? NetNs::new sets it; \
             call icmp_echo inside ns.run)"
        } else {
            ""
        };
        panic!("icmp_echo {dst}: ICMP datagram socket: {err}{hint}");
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns. A ping
    // socket takes sendto/recvfrom/SO_RCVTIMEO like a UDP socket, which is
    // all UdpSocket is used for here.
    let sock = UdpSocket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let target = SocketAddr::new(dst, 0);
    let mut buf = vec![0u8; payload_len + 8 + 64];
    let mut replies = 0;
    for i in 0..count {
        // Identifier and checksum are filled in by the kernel.
        let seq = i as u16;
        let mut packet = vec![request, 0, 0, 0, 0, 0];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&pattern(payload_len));
        match sock.send_to(&packet, target) {
            Ok(_) => {}
            Err(err) if is_unreachable(&err) => continue,
            Err(err) => panic!("icmp_echo {dst}: send request {i} of {count}: {err}"),
        }
        let deadline = Instant::now() + per_reply;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))
                .unwrap_or_else(|err| panic!("icmp_echo {dst}: set read timeout: {err}"));
            match sock.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[0] == reply && buf[6..8] == seq.to_be_bytes() => {
                    replies += 1;
                    break;
                }
                // A late reply to an earlier request, or another ICMP type.
                Ok(_) => {}
                Err(err) if is_timeout(&err) => {}
                Err(err) if is_unreachable(&err) => break,
                Err(err) => panic!("icmp_echo {dst}: receive reply {i} of {count}: {err}"),
            }
        }
    }
    replies
}

fn is_unreachable(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::ConnectionRefused
    )
}

/// A TCP listener that accepts one connection on a background thread and
/// reads it to EOF.
#[derive(Debug)]
pub struct TcpBulkServer {
    addr: SocketAddr,
    thread: JoinHandle<u64>,
}

impl TcpBulkServer {
    /// Binds `bind` (port 0 picks one) and starts waiting (up to
    /// [`IO_TIMEOUT`]) for one connection.
    pub fn start(bind: SocketAddr) -> TcpBulkServer {
        let listener = TcpListener::bind(bind)
            .unwrap_or_else(|err| panic!("tcp_bulk server: bind {bind}: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("tcp_bulk server {bind}: local_addr: {err}"));
        let thread = thread::Builder::new()
            .name(format!("tcp_bulk server {addr}"))
            .spawn(move || serve_one(&listener, addr))
            .unwrap_or_else(|err| panic!("tcp_bulk server {addr}: spawn thread: {err}"));
        TcpBulkServer { addr, thread }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the connection to end and returns the bytes read. A panic
    /// of the server thread (timeout, error) is resumed here.
    pub fn finish(self) -> u64 {
        self.thread
            .join()
            .unwrap_or_else(|payload| panic::resume_unwind(payload))
    }
}

fn serve_one(listener: &TcpListener, addr: SocketAddr) -> u64 {
    let mut pollfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout_ms = IO_TIMEOUT.as_millis() as libc::c_int;
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        match unsafe { libc::poll(&raw mut pollfd, 1, timeout_ms) } {
            1.. => break,
            0 => panic!("tcp_bulk server {addr}: no connection within {IO_TIMEOUT:?}"),
            _ => {
                let err = io::Error::last_os_error();
                assert!(
                    err.kind() == io::ErrorKind::Interrupted,
                    "tcp_bulk server {addr}: poll: {err}"
                );
            }
        }
    }
    let (mut stream, peer) = listener
        .accept()
        .unwrap_or_else(|err| panic!("tcp_bulk server {addr}: accept: {err}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .unwrap_or_else(|err| panic!("tcp_bulk server {addr}: set read timeout: {err}"));
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                panic!("tcp_bulk server {addr}: read from {peer} after {total} bytes: {err}")
            }
        }
    }
}

/// Connects to `dst`, writes exactly `len` bytes, shuts down its sending
/// side and waits for the server to close, so when this returns the server
/// has read everything. Returns the sender's `tcpi_bytes_sent`: every data
/// byte handed to the device, retransmissions included (a loaded machine
/// may retransmit spuriously).
pub fn tcp_bulk_send(dst: SocketAddr, len: u64) -> u64 {
    let mut stream = TcpStream::connect_timeout(&dst, IO_TIMEOUT)
        .unwrap_or_else(|err| panic!("tcp_bulk_send: connect {dst}: {err}"));
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(IO_TIMEOUT)))
        .unwrap_or_else(|err| panic!("tcp_bulk_send {dst}: set timeouts: {err}"));
    let chunk = pattern(256 << 10);
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n]).unwrap_or_else(|err| {
            panic!(
                "tcp_bulk_send {dst}: write after {} of {len} bytes: {err}",
                len - left
            )
        });
        left -= n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .unwrap_or_else(|err| panic!("tcp_bulk_send {dst}: shutdown: {err}"));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap_or_else(|err| {
        panic!("tcp_bulk_send {dst}: waiting for the server to close: {err}")
    });
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut info_len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the buffer and its length describe a live tcp_info; the kernel
    // writes at most `info_len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut info_len,
        )
    };
    assert_eq!(
        rc,
        0,
        "tcp_bulk_send {dst}: TCP_INFO: {}",
        std::io::Error::last_os_error()
    );
    info.tcpi_bytes_sent
}

/// Sends one Ethernet frame, as is, out of `ifname` (in the calling thread's
/// namespace) through an `AF_PACKET`/`SOCK_RAW` socket. The frame must fit
/// the MTU plus the 14-byte header; the kernel checks nothing else, so
/// malformed payloads go out unchanged.
pub fn raw_frame_send(ifname: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(ifname)
        .unwrap_or_else(|err| panic!("raw_frame_send: interface name {ifname:?}: {err}"));
    // SAFETY: `name` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        panic!(
            "raw_frame_send: no interface {ifname} in this thread's namespace \
             (call it inside ns.run): {}",
            io::Error::last_os_error()
        );
    }
    // Protocol 0: this socket sends only and never receives.
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        panic!(
            "raw_frame_send {ifname}: AF_PACKET socket: {}",
            io::Error::last_os_error()
        );
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };

    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_ifindex = ifindex as libc::c_int;
    if let Some(ethertype) = frame.get(12..14) {
        // Already in network byte order.
        addr.sll_protocol = u16::from_ne_bytes([ethertype[0], ethertype[1]]);
    }
    let dst_len = frame.len().min(6);
    addr.sll_halen = dst_len as u8;
    addr.sll_addr[..dst_len].copy_from_slice(&frame[..dst_len]);

    // SAFETY: the buffer and the address are live for the call and their
    // lengths are given correctly.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        panic!(
            "raw_frame_send {ifname}: sendto ({} bytes): {}",
            frame.len(),
            io::Error::last_os_error()
        );
    }
    assert_eq!(
        sent as usize,
        frame.len(),
        "raw_frame_send {ifname}: short send"
    );
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag (outer tag of QinQ).
pub const TPID_8021AD: u16 = 0x88a8;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// An Ethernet II frame (no FCS, no padding to 60 bytes).
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Inserts a VLAN tag (`tpid`, priority 0, `vid`) right after the source MAC
/// of the Ethernet frame `inner`. Tags nest outward, so
/// `vlan(TPID_8021AD, 100, &vlan(TPID_8021Q, 200, &frame))` is QinQ with
/// service VLAN 100 outside customer VLAN 200.
pub fn vlan(tpid: u16, vid: u16, inner: &[u8]) -> Vec<u8> {
    assert!(vid < 4096, "vlan: VLAN id {vid} does not fit 12 bits");
    assert!(
        inner.len() >= 14,
        "vlan: inner frame is {} bytes, shorter than an Ethernet header",
        inner.len()
    );
    let mut frame = Vec::with_capacity(inner.len() + 4);
    frame.extend_from_slice(&inner[..12]);
    frame.extend_from_slice(&tpid.to_be_bytes());
    frame.extend_from_slice(&vid.to_be_bytes());
    frame.extend_from_slice(&inner[12..]);
    frame
}

/// The Internet checksum (RFC 1071) of `data`: the ones' complement of the
/// ones' complement sum of its big-endian 16-bit words. Summing a header
/// that includes its correct checksum gives 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

fn sum_words(data: &[u8], mut sum: u32) -> u32 {
    let (words, rest) = data.as_chunks::<2>();
    for word in words {
        sum += u32::from(u16::from_be_bytes(*word));
    }
    if let [last] = rest {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A UDP header plus payload whose checksum covers `pseudo` (the IP
/// pseudo-header without the length and protocol words, which are added
/// here).
fn udp(src_port: u16, dst_port: u16, pseudo: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len())
        .unwrap_or_else(|_| panic!("udp: payload of {} bytes is too long", payload.len()));
    let mut datagram = Vec::with_capacity(usize::from(len));
    datagram.extend_from_slice(&src_port.to_be_bytes());
    datagram.extend_from_slice(&dst_port.to_be_bytes());
    datagram.extend_from_slice(&len.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    let sum = sum_words(pseudo, 0) + u32::from(len) + u32::from(IPPROTO_UDP);
    let checksum = match !fold(sum_words(&datagram, sum)) {
        // 0 means "no checksum" in UDP; the same value is sent as 0xffff.
        0 => 0xffff,
        checksum => checksum,
    };
    datagram[6..8].copy_from_slice(&checksum.to_be_bytes());
    datagram
}

/// An IPv4 packet: 20-byte header (TTL 64, DF, id 0, correct header
/// checksum) followed by `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len())
        .unwrap_or_else(|_| panic!("ipv4: payload of {} bytes is too long", payload.len()));
    let mut packet = Vec::with_capacity(usize::from(total));
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let checksum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// An IPv4/UDP packet with correct IP and UDP checksums.
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(8);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    let datagram = udp(src.port(), dst.port(), &pseudo, payload);
    ipv4(*src.ip(), *dst.ip(), IPPROTO_UDP, &datagram)
}

/// An IPv6 extension header, encoded in 8 bytes by [`ipv6`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-hop options holding one PadN option. RFC 8200 wants it first.
    HopByHop,
    /// A routing header of `routing_type` with Segments Left 0, which
    /// receivers skip whatever the type (RFC 8200 section 4.4).
    Routing { routing_type: u8 },
    /// A fragment header; `offset` in 8-byte units. Offset 0 without `more`
    /// is an atomic fragment, which receivers accept as a whole packet.
    Fragment { offset: u16, more: bool, id: u32 },
    /// Destination options holding one PadN option.
    DestOpts,
}

impl Ipv6Ext {
    /// The Next Header value that announces this header.
    pub fn protocol(self) -> u8 {
        match self {
            Ipv6Ext::HopByHop => IPPROTO_HOPOPTS,
            Ipv6Ext::Routing { .. } => IPPROTO_ROUTING,
            Ipv6Ext::Fragment { .. } => IPPROTO_FRAGMENT,
            Ipv6Ext::DestOpts => IPPROTO_DSTOPTS,
        }
    }

    fn encode(self, next_header: u8) -> [u8; 8] {
        // PadN (type 1) with 4 bytes of padding fills an options header.
        const PADN: [u8; 6] = [1, 4, 0, 0, 0, 0];
        let mut out = [0u8; 8];
        out[0] = next_header;
        match self {
            Ipv6Ext::HopByHop | Ipv6Ext::DestOpts => out[2..].copy_from_slice(&PADN),
            Ipv6Ext::Routing { routing_type } => out[2] = routing_type,
            Ipv6Ext::Fragment { offset, more, id } => {
                assert!(
                    offset < 8192,
                    "Ipv6Ext::Fragment: offset {offset} exceeds 13 bits"
                );
                let word = (offset << 3) | u16::from(more);
                out[2..4].copy_from_slice(&word.to_be_bytes());
                out[4..].copy_from_slice(&id.to_be_bytes());
            }
        }
        out
    }
}

/// An IPv6 packet: 40-byte header (hop limit 64), the extension headers
/// `ext` in the given order, then `payload` of protocol `next_header`.
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    ext: &[Ipv6Ext],
    payload: &[u8],
) -> Vec<u8> {
    let payload_len = u16::try_from(ext.len() * 8 + payload.len())
        .unwrap_or_else(|_| panic!("ipv6: payload of {} bytes is too long", payload.len()));
    let first = ext.first().map_or(next_header, |e| e.protocol());
    let mut packet = Vec::with_capacity(40 + usize::from(payload_len));
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    packet.extend_from_slice(&payload_len.to_be_bytes());
    packet.extend_from_slice(&[first, 64]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    for (i, header) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(next_header, |e| e.protocol());
        packet.extend_from_slice(&header.encode(next));
    }
    packet.extend_from_slice(payload);
    packet
}

/// An IPv6/UDP packet with the extension headers `ext` between the IPv6 and
/// UDP headers and a correct UDP checksum.
pub fn ipv6_udp(src: SocketAddrV6, dst: SocketAddrV6, ext: &[Ipv6Ext], payload: &[u8]) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    let datagram = udp(src.port(), dst.port(), &pseudo, payload);
    ipv6(*src.ip(), *dst.ip(), IPPROTO_UDP, ext, &datagram)
}

/// A complete broadcast Ethernet frame carrying an ARP request: who has
/// `target_ip`, tell `src_ip` at `src_mac`. 42 bytes, unpadded.
pub fn arp_request(src_mac: [u8; 6], src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut arp = Vec::with_capacity(28);
    // Ethernet, IPv4, address lengths 6 and 4, operation 1 (request).
    arp.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    arp.extend_from_slice(&src_mac);
    arp.extend_from_slice(&src_ip.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target_ip.octets());
    eth(BROADCAST_MAC, src_mac, ETHERTYPE_ARP, &arp)
}
