//! What the parts share: the counting allocator, the flood frame and the
//! socket that sends frames fast, clocks, medians and verdicts.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    fs, io, mem,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::Duration,
};

use crate::common::{ETHERTYPE_IPV4, Pair, eth, ipv4_udp};

/// Counts live heap bytes, so part 3 can weigh the flow table (one atomic
/// add per allocation: no measurable cost to the other parts).
struct Counting;

pub static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counter
// only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Frames a `sendmmsg` call sends in a flood.
pub const BATCH: usize = 64;
/// The UDP port the flood goes to. A socket in `b` is bound there and never
/// read, with the smallest receive buffer: each datagram goes through `b`'s
/// whole receive path, socket lookup included, and is dropped at the socket
/// (`Udp: RcvbufErrors`, part of `InErrors`). A closed port would make `b`
/// look up a route for an ICMP error for every datagram (only the sending
/// is rate-limited), a cost no real receiver has.
pub const SINK_PORT: u16 = 9;
/// UDP payload that makes the frame 60 bytes: 14 + 20 + 8 + 18.
pub const FLOOD_PAYLOAD: usize = 18;

pub fn cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

pub fn clock_time(clock: libc::clockid_t) -> Duration {
    // SAFETY: timespec is plain old data; all zeroes is valid.
    let mut ts: libc::timespec = unsafe { mem::zeroed() };
    // SAFETY: `ts` is a live timespec for the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `part` as a percentage of `whole` (0 for an empty whole).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// A `VmXxx:` line of `/proc/<pid>/status`, in KiB.
pub fn vm_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// A 60-byte frame (64 on the wire) from `src` to b's closed UDP port.
pub fn flood_frame(src: Ipv4Addr) -> Vec<u8> {
    let ip = ipv4_udp(
        SocketAddrV4::new(src, 4000),
        SocketAddrV4::new(Pair::IP4_B, SINK_PORT),
        &[0x5a; FLOOD_PAYLOAD],
    );
    eth(Pair::MAC_B, Pair::MAC_A, ETHERTYPE_IPV4, &ip)
}

/// An `AF_PACKET` socket that sends whole Ethernet frames out of one
/// interface, `sendmmsg` batches at a time. Without PACKET_QDISC_BYPASS, so
/// frames take the normal transmit path (TC egress included).
pub struct RawSocket {
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
}

impl RawSocket {
    /// Opens the socket in the calling thread's namespace.
    pub fn open(ifname: &str) -> RawSocket {
        let name = std::ffi::CString::new(ifname).expect("an interface name");
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(
            ifindex != 0,
            "no interface {ifname}: {}",
            io::Error::last_os_error()
        );
        // Protocol 0: send only, never receive.
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_ifindex = ifindex as libc::c_int;
        addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&Pair::MAC_B);
        RawSocket { fd, addr }
    }

    /// Sends `frames` with one `sendmmsg`; returns how many the kernel took.
    pub fn send(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr().cast_mut().cast(),
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain old data; all zeroes is valid.
                let mut m: libc::mmsghdr = unsafe { mem::zeroed() };
                m.msg_hdr.msg_name = (&raw const self.addr).cast_mut().cast();
                m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: every pointer in `msgs` (address, iovec, frame) is live for
        // the call and the kernel only reads through them.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }

    /// [`RawSocket::send`] that treats a full queue (ENOBUFS, EAGAIN) as
    /// zero frames sent and panics on anything else.
    pub fn send_or_skip(&self, frames: &[&[u8]]) -> usize {
        match self.send(frames) {
            Ok(n) => n,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => 0,
            Err(e) => panic!("sendmmsg: {e}"),
        }
    }
}

/// The summary table's title and header, before the parts' rows.
pub fn summary_header() {
    println!("\n## Summary (markdown)\n");
    println!("| measure | result | target | verdict |");
    println!("|---|---|---|---|");
}
