//! The eBPF parser and counters, run in the kernel on crafted frames with
//! BPF_PROG_TEST_RUN (privileged: needs root, as `cargo xtask test` runs it).
//!
//! Each test loads its own copy of the object, so its maps start empty, runs
//! frames through the real programs and reads the real maps back. Every
//! frame must get the pass verdict and land in exactly the right counters.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use common::{
    Ipv6Ext, arp_request, eth, ipv4_udp, ipv6_udp, require_root,
    traffic::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, TPID_8021AD, TPID_8021Q, ipv4, ipv6},
    vlan,
};
use netmon_agent::{
    ebpf::{IngressHook, Kernel, MapSizes},
    traffic::{MapCounts, key_ip},
};
use netmon_common::{
    Counter, FlowKey, Globals, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP, direction, proto,
};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1): "continue", netmon's TC verdict.
const TC_CONTINUE: u32 = u32::MAX;
const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
/// test_run delivers frames as if on the loopback interface.
const LO: u32 = 1;

fn kernel() -> Kernel {
    kernel_with_cache(MapSizes::default().flow_cache_slots)
}

/// Runs `frame` through `program` once (as `gso_segs` segments at TC) and
/// checks the verdict is pass.
fn run(k: &mut Kernel, program: &str, frame: &[u8], gso_segs: u32) {
    let (verdict, _) = k.test_run(program, frame, gso_segs, 1).unwrap_or_else(|e| {
        panic!(
            "BPF_PROG_TEST_RUN of {program} on {} bytes failed: {:#}",
            frame.len(),
            anyhow::Error::from(e)
        )
    });
    let pass = if program == PROG_XDP {
        XDP_PASS
    } else {
        TC_CONTINUE
    };
    assert_eq!(verdict, pass, "{program} must pass every frame");
}

/// Reads the maps; `macs` and `flows` of the result hold everything counted
/// (the flow cache's counts merged in).
fn read(k: &mut Kernel) -> MapCounts {
    raw_read(k).merged()
}

fn udp4(payload_len: usize) -> Vec<u8> {
    let ip = ipv4_udp(
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4000),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000),
        &vec![0x5a; payload_len],
    );
    eth(DST_MAC, SRC_MAC, ETHERTYPE_IPV4, &ip)
}

fn udp6(ext: &[Ipv6Ext], payload_len: usize) -> Vec<u8> {
    let ip = ipv6_udp(
        SocketAddrV6::new("fd00::1".parse().unwrap(), 4000, 0, 0),
        SocketAddrV6::new("fd00::2".parse().unwrap(), 5000, 0, 0),
        ext,
        &vec![0x5a; payload_len],
    );
    eth(DST_MAC, SRC_MAC, ETHERTYPE_IPV6, &ip)
}

/// An Ethernet/IPv4/TCP frame with a 32-byte TCP header (timestamps).
fn tcp4(payload_len: usize) -> Vec<u8> {
    let mut tcp = vec![0u8; 32 + payload_len];
    tcp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    tcp[12] = 8 << 4; // data offset: 8 words
    tcp[13] = 0x10; // ACK
    let ip = ipv4(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        proto::TCP,
        &tcp,
    );
    eth(DST_MAC, SRC_MAC, ETHERTYPE_IPV4, &ip)
}

fn c(bytes: usize, packets: u64) -> Counter {
    Counter {
        bytes: bytes as u64,
        packets,
    }
}

fn only_flow(r: &MapCounts) -> (FlowKey, Counter) {
    assert_eq!(r.flows.len(), 1, "expected one flow, got {:?}", r.flows);
    r.flows[0]
}

#[test]
fn ipv4_udp_is_counted_at_every_hook() {
    skip_unless_root!();
    let mut k = kernel();
    let frame = udp4(100);
    assert_eq!(frame.len(), 142);
    for program in [PROG_XDP, PROG_TC_INGRESS, PROG_TC_EGRESS] {
        run(&mut k, program, &frame, 1);
    }
    let r = read(&mut k);
    assert_eq!(r.globals.packets, 3);
    assert_eq!(r.globals.bytes, 3 * 142);
    assert_eq!(r.globals.malformed, 0);
    assert_eq!(r.globals.non_ip, 0);
    let mut macs = r.macs.clone();
    macs.sort_by_key(|(k, _)| k.direction);
    assert_eq!(macs.len(), 2, "ingress (XDP + TC) and egress: {macs:?}");
    let (ingress, egress) = (macs[0], macs[1]);
    assert_eq!(
        (
            ingress.0.ifindex,
            ingress.0.direction,
            ingress.0.src,
            ingress.0.dst
        ),
        (LO, direction::INGRESS, SRC_MAC, DST_MAC)
    );
    assert_eq!(ingress.1, c(2 * 142, 2));
    assert_eq!(egress.0.direction, direction::EGRESS);
    assert_eq!(egress.1, c(142, 1));
    let mut flows = r.flows.clone();
    flows.sort_by_key(|(k, _)| k.direction);
    assert_eq!(flows.len(), 2);
    let (key, value) = flows[0];
    assert_eq!(key.proto, proto::UDP);
    assert_eq!(key_ip(key.src).to_string(), "10.0.0.1");
    assert_eq!(key_ip(key.dst).to_string(), "10.0.0.2");
    assert_eq!((key.src_mac, key.dst_mac), (SRC_MAC, DST_MAC));
    assert_eq!(value, c(2 * 142, 2));
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_l4_protocol() {
    skip_unless_root!();
    let mut k = kernel();
    let chain = [
        Ipv6Ext::HopByHop,
        Ipv6Ext::Routing { routing_type: 4 },
        Ipv6Ext::Fragment {
            offset: 0,
            more: false,
            id: 7,
        },
        Ipv6Ext::DestOpts,
    ];
    let frame = udp6(&chain, 64);
    run(&mut k, PROG_XDP, &frame, 1);
    run(&mut k, PROG_TC_EGRESS, &frame, 1);
    let r = read(&mut k);
    assert_eq!(r.globals.malformed, 0);
    assert_eq!(r.globals.ipv6_ext_limit, 0);
    assert_eq!(r.flows.len(), 2);
    for (key, value) in &r.flows {
        assert_eq!(key.proto, proto::UDP, "{key:?}");
        assert_eq!(key_ip(key.src), "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(key_ip(key.dst), "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(*value, c(frame.len(), 1));
    }
}

#[test]
fn ipv6_later_fragment_counts_under_its_protocol_without_an_l4_header() {
    skip_unless_root!();
    let mut k = kernel();
    // A non-first fragment carries payload bytes where the UDP header would
    // be; it must not be taken for a (truncated) UDP header.
    let ip = ipv6(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        proto::UDP,
        &[Ipv6Ext::Fragment {
            offset: 100,
            more: false,
            id: 9,
        }],
        &[1, 2, 3],
    );
    let frame = eth(DST_MAC, SRC_MAC, ETHERTYPE_IPV6, &ip);
    run(&mut k, PROG_XDP, &frame, 1);
    let r = read(&mut k);
    assert_eq!(r.globals.malformed, 0);
    assert_eq!(only_flow(&r).0.proto, proto::UDP);
}

#[test]
fn too_long_an_ipv6_extension_chain_is_counted_as_such() {
    skip_unless_root!();
    let mut k = kernel();
    let chain = [Ipv6Ext::DestOpts; 12];
    let frame = udp6(&chain, 8);
    run(&mut k, PROG_XDP, &frame, 1);
    let r = read(&mut k);
    assert_eq!(r.globals.ipv6_ext_limit, 1);
    assert_eq!(r.globals.malformed, 0);
    let (key, value) = only_flow(&r);
    assert_eq!(key.proto, 60, "counted under the last header reached");
    assert_eq!(value, c(frame.len(), 1));
}

#[test]
fn one_and_two_vlan_tags() {
    skip_unless_root!();
    let mut k = kernel();
    let inner = udp4(50);
    let one = vlan(TPID_8021Q, 10, &inner);
    let two = vlan(TPID_8021AD, 100, &vlan(TPID_8021Q, 200, &inner));
    assert_eq!((one.len(), two.len()), (inner.len() + 4, inner.len() + 8));
    for frame in [&one, &two] {
        run(&mut k, PROG_XDP, frame, 1);
        run(&mut k, PROG_TC_EGRESS, frame, 1);
    }
    let r = read(&mut k);
    assert_eq!(r.globals.vlan, 4);
    assert_eq!(r.globals.malformed, 0);
    assert_eq!(r.globals.bytes as usize, 2 * (one.len() + two.len()));
    for (key, value) in &r.flows {
        assert_eq!(key.proto, proto::UDP);
        assert_eq!(key_ip(key.dst).to_string(), "10.0.0.2");
        assert_eq!(
            *value,
            c(one.len() + two.len(), 2),
            "tags are counted bytes"
        );
    }
}

#[test]
fn arp_is_non_ip_and_counted_by_mac_only() {
    skip_unless_root!();
    let mut k = kernel();
    let frame = arp_request(
        SRC_MAC,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
    );
    run(&mut k, PROG_XDP, &frame, 1);
    let r = read(&mut k);
    assert_eq!(
        (r.globals.arp, r.globals.non_ip, r.globals.malformed),
        (1, 1, 0)
    );
    assert!(r.flows.is_empty());
    assert_eq!(r.macs.len(), 1);
    assert_eq!((r.macs[0].0.src, r.macs[0].0.dst), (SRC_MAC, [0xff; 6]));
    assert_eq!(r.macs[0].1, c(42, 1));
}

#[test]
fn truncated_and_malformed_frames_pass_and_are_counted_as_such() {
    skip_unless_root!();
    let good = udp4(20);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44; // IHL 4: shorter than the fixed header
    let mut bad_version = good.clone();
    bad_version[14] = 0x55;
    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&1000u16.to_be_bytes());
    let short_tcp = {
        let mut f = tcp4(0);
        // Keep the IP header consistent but cut the TCP header to 10 bytes.
        f.truncate(14 + 20 + 10);
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        f
    };
    let arp_cut = arp_request(SRC_MAC, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)[..30].to_vec();
    // name, frame, counted in the MAC map, counted in the flow map, also
    // run at TC. The kernel's skb test run refuses frames without a whole
    // network header (EINVAL), so those run at XDP only; the parser is the
    // same code at both hooks.
    let cases: [(&str, Vec<u8>, bool, bool, bool); 8] = [
        (
            "Ethernet header only",
            good[..14].to_vec(),
            true,
            false,
            false,
        ),
        (
            "IPv4 header cut",
            good[..14 + 12].to_vec(),
            true,
            false,
            false,
        ),
        ("IPv4 IHL < 5", bad_ihl, true, false, true),
        (
            "IP version 5 in an IPv4 frame",
            bad_version,
            true,
            false,
            true,
        ),
        (
            "IPv4 total length beyond the frame",
            long_total,
            true,
            true,
            true,
        ),
        ("TCP header cut", short_tcp, true, true, true),
        (
            "IPv6 header cut",
            udp6(&[], 8)[..14 + 30].to_vec(),
            true,
            false,
            false,
        ),
        ("ARP cut", arp_cut, true, false, true),
    ];
    for (name, frame, in_mac, in_flow, at_tc) in cases {
        let mut k = kernel();
        let programs: &[&str] = if at_tc {
            &[PROG_XDP, PROG_TC_INGRESS]
        } else {
            &[PROG_XDP]
        };
        for program in programs {
            run(&mut k, program, &frame, 1);
        }
        let runs = programs.len() as u64;
        let r = read(&mut k);
        let expect = Globals {
            packets: runs,
            bytes: runs * frame.len() as u64,
            malformed: runs,
            ..r.globals
        };
        assert_eq!(r.globals, expect, "{name}");
        let mac_bytes: u64 = r.macs.iter().map(|(_, v)| v.bytes).sum();
        let flow_bytes: u64 = r.flows.iter().map(|(_, v)| v.bytes).sum();
        let want = |counted: bool| {
            if counted {
                runs * frame.len() as u64
            } else {
                0
            }
        };
        assert_eq!(mac_bytes, want(in_mac), "{name}: MAC map bytes");
        assert_eq!(flow_bytes, want(in_flow), "{name}: flow map bytes");
    }
}

/// XDP sees a jumbo frame whole (multi-buffer). TC test runs are capped at
/// about a page by the kernel; TC jumbo frames are covered end to end.
#[test]
fn jumbo_frames_count_whole_at_xdp() {
    skip_unless_root!();
    let mut k = kernel();
    let frame = udp4(9000 - 42);
    assert_eq!(frame.len(), 9000);
    run(&mut k, PROG_XDP, &frame, 1);
    let r = read(&mut k);
    assert_eq!(r.globals.bytes, 9000);
    assert_eq!(r.globals.malformed, 0);
    assert_eq!(only_flow(&r).1, c(9000, 1));
}

#[test]
fn gso_aggregates_count_as_their_segments() {
    skip_unless_root!();
    let mut k = kernel();
    // Four 500-byte segments in one skb: each segment on the wire repeats
    // the 66 bytes of Ethernet, IPv4 and TCP (with timestamps) headers.
    let frame = tcp4(4 * 500);
    let header = 14 + 20 + 32;
    run(&mut k, PROG_TC_EGRESS, &frame, 4);
    run(&mut k, PROG_TC_INGRESS, &frame, 4);
    let r = read(&mut k);
    let wire = frame.len() + 3 * header;
    assert_eq!(wire, 4 * (500 + header));
    assert_eq!(r.globals.packets, 8);
    assert_eq!(r.globals.bytes as usize, 2 * wire);
    assert_eq!(r.globals.malformed, 0);
    assert_eq!(r.flows.len(), 2);
    for (key, value) in &r.flows {
        assert_eq!(key.proto, proto::TCP);
        assert_eq!(*value, c(wire, 4), "{key:?}");
    }
}

/// A kernel whose flow cache has `slots` slots per CPU (0: off).
fn kernel_with_cache(slots: u32) -> Kernel {
    kernel_with_budget(slots, MapSizes::default().flow_insert_budget)
}

/// A kernel whose flow cache has `slots` slots per CPU and whose CPUs may
/// each create `budget` flow-map entries per interval.
fn kernel_with_budget(slots: u32, budget: u32) -> Kernel {
    require_root();
    pin_to_one_cpu();
    Kernel::load(
        IngressHook::Auto,
        MapSizes {
            mac_entries: 1024,
            flow_entries: 1024,
            flow_cache_slots: slots,
            flow_insert_budget: budget,
        },
    )
    .unwrap_or_else(|e| panic!("loading the eBPF object: {:#}", anyhow::Error::from(e)))
}

/// Keeps the calling test's thread on the CPU it runs on: test runs count
/// on the running CPU, and the flow cache and insert budget are per CPU.
fn pin_to_one_cpu() {
    // SAFETY: sched_getcpu takes nothing; cpu_set_t is plain old data,
    // all zeroes is valid, and sched_setaffinity reads `size_of` bytes.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(
            cpu >= 0,
            "sched_getcpu: {}",
            std::io::Error::last_os_error()
        );
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        let rc = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A UDP frame from 10.1.0.`host` to 10.0.0.2 with `payload_len` bytes.
fn udp4_from(host: u8, payload_len: usize) -> Vec<u8> {
    let ip = ipv4_udp(
        SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, host), 4000),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000),
        &vec![0x5a; payload_len],
    );
    eth(DST_MAC, SRC_MAC, ETHERTYPE_IPV4, &ip)
}

fn raw_read(k: &mut Kernel) -> MapCounts {
    let mut r = MapCounts::default();
    k.read(&mut r).expect("reading the maps");
    r
}

#[test]
fn frames_the_flow_cache_cannot_hold_are_counted_in_the_hash_maps() {
    skip_unless_root!();
    // One bucket of four slots per CPU: at most four flows fit, the rest
    // must fall back to the hash maps without losing or double-counting a
    // frame.
    let mut k = kernel_with_cache(4);
    let flows = 12u8;
    for host in 1..=flows {
        let frame = udp4_from(host, usize::from(host));
        for _ in 0..u64::from(host) {
            run(&mut k, PROG_XDP, &frame, 1);
        }
    }
    let r = raw_read(&mut k);
    let sent: u64 = (1..=u64::from(flows)).sum();
    assert_eq!(r.globals.packets, sent);
    assert_eq!(r.cached.len(), 4, "one bucket, one CPU: {:?}", r.cached);
    let cached: u64 = r.cached.iter().map(|(_, c)| c.packets).sum();
    assert_eq!(
        r.globals.cache_misses,
        sent - cached,
        "every frame not in the cache is a miss"
    );
    let MapCounts {
        macs,
        flows: per_flow,
        ..
    } = r.merged();
    assert_eq!(per_flow.len(), usize::from(flows));
    for (key, value) in &per_flow {
        let host = key_ip(key.src).to_string();
        let n: u64 = host.rsplit('.').next().unwrap().parse().unwrap();
        let len = udp4_from(n as u8, n as usize).len() as u64;
        assert_eq!(
            *value,
            Counter {
                bytes: n * len,
                packets: n
            },
            "{host}"
        );
    }
    assert_eq!(macs.len(), 1);
    assert_eq!(macs[0].1.packets, sent);
    assert_eq!(macs[0].1.bytes, r.globals.bytes);
}

#[test]
fn each_read_gets_the_cache_counts_of_its_own_interval() {
    skip_unless_root!();
    let mut k = kernel_with_cache(64);
    let frame = udp4(10);
    let len = frame.len() as u64;
    for _ in 0..3 {
        run(&mut k, PROG_XDP, &frame, 1);
    }
    let first = raw_read(&mut k);
    assert_eq!(first.cached.len(), 1);
    assert_eq!(
        first.cached[0].1,
        Counter {
            bytes: 3 * len,
            packets: 3
        }
    );
    assert!(first.flows.is_empty() && first.macs.is_empty());
    for _ in 0..2 {
        run(&mut k, PROG_XDP, &frame, 1);
    }
    let second = raw_read(&mut k);
    assert_eq!(second.cached.len(), 1);
    assert_eq!(
        second.cached[0].1,
        Counter {
            bytes: 2 * len,
            packets: 2
        },
        "only what came since the last read"
    );
    // Nothing since: the half read next holds only older generations.
    assert!(raw_read(&mut k).cached.is_empty());
    assert!(raw_read(&mut k).cached.is_empty());
    run(&mut k, PROG_TC_EGRESS, &frame, 1);
    let later = raw_read(&mut k);
    assert_eq!(later.cached.len(), 1);
    assert_eq!(later.cached[0].0.direction, direction::EGRESS);
    assert_eq!(later.globals.cache_misses, 0);
}

#[test]
fn with_the_flow_cache_off_every_frame_goes_to_the_hash_maps() {
    skip_unless_root!();
    let mut k = kernel_with_cache(0);
    let frame = udp4(10);
    run(&mut k, PROG_XDP, &frame, 1);
    run(&mut k, PROG_TC_EGRESS, &frame, 1);
    let r = raw_read(&mut k);
    assert!(r.cached.is_empty());
    assert_eq!(r.flows.len(), 2);
    assert_eq!(r.macs.len(), 2);
    assert_eq!(
        r.globals.cache_misses, 0,
        "a cache that is off misses nothing"
    );
    for (_, value) in &r.flows {
        assert_eq!(*value, c(frame.len(), 1));
    }
}

/// Frames from hosts 1..=`hosts` of [`udp4_from`], host `h` sending `h`
/// frames of `h` payload bytes one after the other.
fn send_hosts(k: &mut Kernel, hosts: std::ops::RangeInclusive<u8>) {
    for host in hosts {
        let frame = udp4_from(host, usize::from(host));
        for _ in 0..host {
            run(k, PROG_XDP, &frame, 1);
        }
    }
}

/// What hosts `hosts` sent in [`send_hosts`]: (bytes, packets).
fn sent_by(hosts: std::ops::RangeInclusive<u8>) -> Counter {
    let mut sum = Counter::default();
    for host in hosts {
        let n = u64::from(host);
        sum.packets += n;
        sum.bytes += n * udp4_from(host, usize::from(host)).len() as u64;
    }
    sum
}

#[test]
fn flows_beyond_the_insert_budget_are_counted_in_their_mac_pairs_aggregate() {
    skip_unless_root!();
    // One bucket per CPU, two flow-map inserts per interval: hosts 1-4 get
    // the slots, 5 and 6 flow-map entries. That spends the budget: host 6's
    // later frames, and hosts 7-12, go to the aggregate (with the budget
    // spent, the programs no longer look flows up in the flow map).
    let mut k = kernel_with_budget(4, 2);
    send_hosts(&mut k, 1..=12);
    let r = raw_read(&mut k);
    let all = sent_by(1..=12);
    assert_eq!(r.globals.packets, all.packets);
    let (aggregates, flows): (Vec<_>, Vec<_>) = r.cached.iter().partition(|(k, _)| k.other != 0);
    assert_eq!(flows.len(), 4, "{flows:?}");
    let [(agg, value)] = aggregates[..] else {
        panic!("one aggregate: {aggregates:?}")
    };
    let host6 = udp4_from(6, 6).len() as u64;
    let aggregated = Counter {
        bytes: sent_by(7..=12).bytes + 5 * host6,
        packets: sent_by(7..=12).packets + 5,
    };
    assert_eq!(value, aggregated, "hosts 7-12 and 6 after its first frame");
    assert_eq!(r.globals.flows_aggregated, value.packets);
    assert_eq!(
        (
            agg.ifindex,
            agg.direction,
            agg.proto,
            agg.src_mac,
            agg.dst_mac
        ),
        (LO, direction::INGRESS, proto::UDP, SRC_MAC, DST_MAC)
    );
    assert_eq!((agg.src, agg.dst), ([0; 16], [0; 16]));
    assert_eq!(r.globals.cache_misses, sent_by(5..=12).packets);
    assert_eq!(r.globals.flow_inserts, 2);
    assert_eq!(r.flows.len(), 2, "hosts 5 and 6: {:?}", r.flows);

    let MapCounts {
        macs,
        flows: per_flow,
        ..
    } = r.merged();
    // Every frame in exactly one counter: the MAC pair has them all; each
    // flow that got a slot or an entry has exactly its own.
    assert_eq!(macs.len(), 1);
    assert_eq!(macs[0].1, all);
    assert_eq!(per_flow.len(), 6);
    for (key, value) in &per_flow {
        let host: u8 = key_ip(key.src)
            .to_string()
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let expected = match host {
            1..=5 => sent_by(host..=host),
            6 => Counter {
                bytes: host6,
                packets: 1,
            },
            _ => panic!("{key:?}"),
        };
        assert_eq!(*value, expected, "host {host}");
    }
}

#[test]
fn each_interval_has_its_own_insert_budget() {
    skip_unless_root!();
    let mut k = kernel_with_budget(4, 1);
    // Hosts 1-4 fill the bucket, 5 takes the interval's one insert; host
    // 5's later frames and host 6 go to the aggregate.
    send_hosts(&mut k, 1..=6);
    let first = raw_read(&mut k);
    assert_eq!(first.globals.flow_inserts, 1);
    assert_eq!(first.globals.flows_aggregated, 4 + 6);
    // The next interval: the bucket fills again, and host 7 gets an entry.
    send_hosts(&mut k, 1..=4);
    run(&mut k, PROG_XDP, &udp4_from(7, 7), 1);
    let second = raw_read(&mut k);
    assert_eq!(second.globals.flow_inserts, 2);
    assert_eq!(
        second.globals.flows_aggregated, 10,
        "nothing more aggregated"
    );
    assert!(second.cached.iter().all(|(k, _)| k.other == 0));
    let hosts: Vec<String> = second
        .flows
        .iter()
        .map(|(k, _)| key_ip(k.src).to_string())
        .collect();
    assert!(hosts.contains(&"10.1.0.7".to_owned()), "{hosts:?}");
}

#[test]
fn with_no_insert_budget_a_flood_costs_no_flow_map_entry() {
    skip_unless_root!();
    let mut k = kernel_with_budget(4, 0);
    send_hosts(&mut k, 1..=20);
    let r = raw_read(&mut k);
    assert!(r.flows.is_empty(), "{:?}", r.flows);
    assert_eq!(r.globals.flow_inserts, 0);
    assert_eq!(r.globals.flows_aggregated, sent_by(5..=20).packets);
    let MapCounts { macs, .. } = r.merged();
    assert_eq!(macs.len(), 1);
    assert_eq!(macs[0].1, sent_by(1..=20), "the MAC pair has every frame");
}

#[test]
fn every_flow_of_a_busy_interval_gets_a_slot() {
    skip_unless_root!();
    // 2,000 flows, each sending three frames in turn, in two intervals:
    // the default cache holds them all, so nothing misses, and the index
    // sized from the first interval still finds them in the second.
    let mut k = kernel_with_cache(MapSizes::default().flow_cache_slots);
    let frames: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let ip = ipv4_udp(
                SocketAddrV4::new(Ipv4Addr::from(0x0a40_0000 + i), 4000),
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000),
                &[0x5a; 18],
            );
            eth(DST_MAC, SRC_MAC, ETHERTYPE_IPV4, &ip)
        })
        .collect();
    for interval in 0..3 {
        for _ in 0..3 {
            for frame in &frames {
                run(&mut k, PROG_XDP, frame, 1);
            }
        }
        let r = raw_read(&mut k);
        assert_eq!(r.globals.cache_misses, 0, "interval {interval}");
        assert_eq!(r.cached.len(), frames.len(), "interval {interval}");
        assert!(r.cached.iter().all(|(_, c)| c.packets == 3));
    }
}
