//! Tests of the namespace harness itself (`tests/common`): topologies come up
//! and carry traffic, guards clean up (also when a test panics), processes
//! and closures run in the right namespace, and the frame builders produce
//! well-formed bytes. Privileged: needs root, like every test that uses the
//! harness; the pure builder tests at the end do not.

mod common;

use std::{
    cell::RefCell,
    net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6},
    panic::{self, AssertUnwindSafe},
    process::Command,
    time::Duration,
};

use common::*;

const WAIT: Duration = Duration::from_secs(5);

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Panics unless none of `names` is in `ip netns list`.
fn assert_gone(names: &[String]) {
    let listed = list_netns();
    for name in names {
        assert!(
            !listed.contains(name),
            "namespace {name} still exists: {listed:?}"
        );
    }
}

#[test]
fn pair_icmp_echo_both_ways_v4_and_v6() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    for (from, to) in [(a, b), (b, a)] {
        let (v4, v6) = from.ns().run(|| {
            (
                icmp_echo(to.ip4().into(), 3, 56),
                icmp_echo(to.ip6().into(), 3, 56),
            )
        });
        assert_eq!(v4, 3, "{} -> {}: IPv4 echo replies", from.ip4(), to.ip4());
        assert_eq!(v6, 3, "{} -> {}: IPv6 echo replies", from.ip6(), to.ip6());
    }
}

#[test]
fn icmp_echo_to_missing_host_returns_zero() {
    skip_unless_root!();
    let pair = Pair::new();
    let dst = "10.0.0.99".parse().unwrap();
    let replies = pair
        .a()
        .ns()
        .run(|| icmp_echo_timeout(dst, 1, 8, Duration::from_millis(200)));
    assert_eq!(replies, 0);
}

#[test]
fn pair_udp_datagrams_counted_by_sink_and_sysfs() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let sink = b.ns().run(|| udp_sink(sock(b.ip4(), 0)));
    let before = b.if_stats();
    a.ns()
        .run(|| udp_send(sock(a.ip4(), 0), sink.local_addr(), 200, 100));
    assert!(
        sink.wait_for(100, WAIT),
        "sink got {} of 100 datagrams",
        sink.packets()
    );
    let grown = b.if_stats().since(&before);
    let stats = sink.stop();
    assert_eq!(
        stats,
        SinkStats {
            packets: 100,
            bytes: 100 * 200
        }
    );
    assert!(
        grown.rx_packets >= 100,
        "b eth0 rx_packets grew by {grown:?}"
    );
    assert!(grown.rx_bytes >= 100 * (200 + 8 + 20 + 14), "{grown:?}");
}

#[test]
fn pair_udp_over_ipv6() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let sink = b.ns().run(|| udp_sink(sock(b.ip6(), 0)));
    a.ns()
        .run(|| udp_send(sock(a.ip6(), 0), sink.local_addr(), 1000, 20));
    assert!(sink.wait_for(20, WAIT), "got {} of 20", sink.packets());
    assert_eq!(sink.stop().bytes, 20 * 1000);
}

#[test]
fn pair_tcp_bulk_10mb_arrives_exactly() {
    skip_unless_root!();
    const LEN: u64 = 10 << 20;
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let server = b.ns().run(|| TcpBulkServer::start(sock(b.ip4(), 0)));
    a.ns().run(|| tcp_bulk_send(server.local_addr(), LEN));
    assert_eq!(server.finish(), LEN);
}

#[test]
fn paced_sender_keeps_schedule() {
    skip_unless_root!();
    let pair = Pair::with_options(PairOptions {
        static_neighbors: true,
        ..PairOptions::default()
    });
    let (a, b) = (pair.a(), pair.b());
    let sink = b.ns().run(|| udp_sink(sock(b.ip4(), 0)));
    let report = a.ns().run(|| {
        udp_send_paced(
            sock(a.ip4(), 0),
            sink.local_addr(),
            100,
            2000,
            Duration::from_millis(300),
        )
    });
    assert_eq!(report.sent, 600);
    // The last datagram is due at 599/2000 s. The upper bound only catches
    // gross errors: shared CI machines delay wake-ups.
    assert!(
        report.elapsed >= Duration::from_micros(299_500) && report.elapsed < Duration::from_secs(1),
        "{report:?}"
    );
    assert!(sink.wait_for(600, WAIT), "got {} of 600", sink.packets());
}

#[test]
fn pair_addresses_macs_and_jumbo_mtu() {
    skip_unless_root!();
    let pair = Pair::with_mtu(9000);
    let (a, b) = (pair.a(), pair.b());
    assert_eq!(a.ns().mac("eth0"), Pair::MAC_A);
    assert_eq!(b.ns().mac("eth0"), Pair::MAC_B);
    assert_eq!(b.ns().sysfs("eth0", "mtu"), "9000");
    let addrs = a.ns().ip(&["-br", "addr", "show", "eth0"]);
    assert!(
        addrs.contains("10.0.0.1/24") && addrs.contains("fd00::1/64"),
        "{addrs}"
    );
    // 8000-byte echoes only come back unfragmented on a 9000 MTU link.
    let before = b.if_stats();
    let replies = a.ns().run(|| icmp_echo(b.ip4().into(), 2, 8000));
    assert_eq!(replies, 2);
    assert!(b.if_stats().since(&before).rx_packets < 10);
}

#[test]
fn run_is_inside_the_namespace_and_propagates_panics() {
    skip_unless_root!();
    let pair = Pair::new();
    let a = pair.a();
    let index = a.ns().run(|| {
        let name = std::ffi::CString::new("eth0").unwrap();
        // SAFETY: a valid NUL-terminated name.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    });
    assert_ne!(index, 0, "eth0 not visible inside run");
    assert_eq!(index, a.ifindex());

    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        a.ns().run(|| panic!("inner failure 42"));
    }));
    let payload = result.expect_err("the panic inside run must reach the caller");
    let message = payload.downcast_ref::<&str>().copied().unwrap_or_default();
    assert_eq!(message, "inner failure 42");
}

#[test]
fn exec_reports_failures() {
    skip_unless_root!();
    let ns = NetNs::new("exec");
    assert!(ns.exec(&["ip", "-br", "link"]).contains("lo"));
    let err = ns
        .try_exec(&["ip", "link", "show", "nosuchdev"])
        .expect_err("showing a missing device fails");
    let text = err.to_string();
    assert!(text.contains(ns.name()), "{text}");
    assert!(text.contains("nosuchdev"), "{text}");
    assert!(err.status.is_some_and(|s| !s.success()), "{text}");
    assert!(!err.stderr.is_empty(), "{text}");
}

#[test]
fn spawned_process_runs_inside_and_is_terminated() {
    skip_unless_root!();
    let pair = Pair::new();
    let ns = pair.b().ns();
    let mut child = ns.spawn(Command::new("sh").args([
        "-c",
        "cat /sys/class/net/eth0/address; echo ready >&2; exec sleep 30",
    ]));
    child.wait_for_stderr("ready", WAIT);
    // /sys inside the child is this namespace's.
    assert_eq!(child.stdout_text().trim(), "02:00:00:00:00:0b");
    assert_eq!(child.try_status(), None);
    let status = child.terminate();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGTERM)
    );

    let mut quick = ns.spawn(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]));
    let status = quick.wait_with_timeout(WAIT).expect("sh exits at once");
    assert_eq!(status.code(), Some(3));
    assert_eq!(quick.stderr_text(), "oops\n");
    let log_dir = quick.stderr_path().parent().unwrap().to_owned();
    drop(quick);
    assert!(!log_dir.exists(), "{} kept after drop", log_dir.display());
}

#[test]
fn pair_namespaces_removed_on_drop() {
    skip_unless_root!();
    let pair = Pair::new();
    let names = pair.netns_names();
    let listed = list_netns();
    assert!(names.iter().all(|n| listed.contains(n)), "{listed:?}");
    drop(pair);
    assert_gone(&names);
}

#[test]
fn namespaces_removed_when_test_body_panics() {
    skip_unless_root!();
    let names = RefCell::new(Vec::new());
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let pair = Pair::new();
        names.borrow_mut().extend(pair.netns_names());
        let lan = Lan::new(2);
        names.borrow_mut().extend(lan.netns_names());
        panic!("deliberate panic with live namespaces");
    }));
    assert!(result.is_err());
    let names = names.into_inner();
    assert_eq!(names.len(), 5);
    assert_gone(&names);
}

#[test]
fn sweep_removes_only_namespaces_of_dead_processes() {
    skip_unless_root!();
    let live = NetNs::new("live");
    // A pid that just exited: reuse within this test is vanishingly unlikely.
    let mut exited = Command::new("true").spawn().unwrap();
    let dead_pid = exited.id();
    exited.wait().unwrap();
    let stale = format!("{NAME_PREFIX}-{dead_pid}-0-stale");
    // Test binaries running in parallel sweep too and may remove the name
    // while `ip netns add` is still mounting it; then add it again.
    let add = || {
        let out = Command::new("ip")
            .args(["netns", "add", &stale])
            .output()
            .unwrap();
        out.status.success()
    };
    assert!(poll_until(WAIT, add), "ip netns add {stale} kept failing");
    assert_eq!(harness_pid(&stale), Some(dead_pid));

    sweep_stale();
    let listed = list_netns();
    assert!(!listed.contains(&stale), "{stale} survived: {listed:?}");
    assert!(
        listed.iter().any(|n| n == live.name()),
        "{} was swept: {listed:?}",
        live.name()
    );
}

#[test]
fn harness_pid_parses_only_harness_names() {
    assert_eq!(harness_pid("nmh-1234-7-a"), Some(1234));
    assert_eq!(harness_pid("nmh-1234-7-h10"), Some(1234));
    assert_eq!(harness_pid("nmh-1234-a"), None);
    assert_eq!(harness_pid("nmhx-1234-7-a"), None);
    assert_eq!(harness_pid("other-1234-7-a"), None);
    assert_eq!(harness_pid("nmh-12a4-7-a"), None);
}

#[test]
fn lan_hosts_reach_the_bridge_and_each_other() {
    skip_unless_root!();
    let lan = Lan::new(3);
    for host in lan.hosts() {
        let (v4, v6) = host.ns().run(|| {
            (
                icmp_echo(Lan::GW_IP4.into(), 2, 56),
                icmp_echo(Lan::GW_IP6.into(), 2, 56),
            )
        });
        assert_eq!((v4, v6), (2, 2), "{} to the gateway", host.ns().name());
    }
    let (h1, h3) = (lan.host(1), lan.host(3));
    assert_eq!(h3.ip4().octets(), [10, 0, 0, 3]);
    assert_eq!(h1.ns().mac("eth0"), Lan::host_mac(1));
    assert_eq!(h1.ns().run(|| icmp_echo(h3.ip4().into(), 1, 56)), 1);
    let ports = lan.gw().ip(&["-br", "link", "show", "master", Lan::BRIDGE]);
    for port in ["p1", "p2", "p3"] {
        assert!(ports.contains(port), "{port} not on br0: {ports}");
    }
}

#[test]
fn raw_frames_reach_the_peer() {
    skip_unless_root!();
    let pair = Pair::new();
    let (a, b) = (pair.a(), pair.b());
    let sink4 = b.ns().run(|| udp_sink(sock(b.ip4(), 0)));
    let sink6 = b.ns().run(|| udp_sink(sock(b.ip6(), 0)));
    let SocketAddr::V4(dst4) = sink4.local_addr() else {
        unreachable!()
    };
    let SocketAddr::V6(dst6) = sink6.local_addr() else {
        unreachable!()
    };
    let udp4 = eth(
        b.mac(),
        a.mac(),
        ETHERTYPE_IPV4,
        &ipv4_udp(SocketAddrV4::new(a.ip4(), 4000), dst4, b"crafted v4"),
    );
    let chain = [
        Ipv6Ext::HopByHop,
        Ipv6Ext::Routing { routing_type: 0 },
        Ipv6Ext::Fragment {
            offset: 0,
            more: false,
            id: 7,
        },
        Ipv6Ext::DestOpts,
    ];
    let udp6 = eth(
        b.mac(),
        a.mac(),
        ETHERTYPE_IPV6,
        &ipv6_udp(
            SocketAddrV6::new(a.ip6(), 4000, 0, 0),
            dst6,
            &chain,
            b"crafted v6",
        ),
    );
    let frames = [
        udp4.clone(),
        udp6,
        vlan(TPID_8021Q, 100, &udp4),
        vlan(TPID_8021AD, 10, &vlan(TPID_8021Q, 20, &udp4)),
        arp_request(a.mac(), a.ip4(), b.ip4()),
        // Truncated IPv4 header: the stack drops it, the link counts it.
        eth(b.mac(), a.mac(), ETHERTYPE_IPV4, &[0x45, 0, 0]),
    ];

    let before = b.if_stats();
    a.ns().run(|| {
        for frame in &frames {
            raw_frame_send("eth0", frame);
        }
    });
    assert!(sink4.wait_for(1, WAIT), "crafted IPv4/UDP never arrived");
    assert!(
        sink6.wait_for(1, WAIT),
        "crafted IPv6/UDP with extension headers never arrived"
    );
    assert!(
        poll_until(WAIT, || b.if_stats().since(&before).rx_packets >= 6),
        "b eth0 rx_packets grew by {:?}",
        b.if_stats().since(&before)
    );
    // The tagged copies have no VLAN device to go to, so only the untagged
    // datagram is delivered.
    assert_eq!(sink4.stop().bytes, 10);
    assert_eq!(sink6.stop().bytes, 10);
}

// Pure builder tests: no namespaces, no root.

#[test]
fn checksum_matches_rfc1071_example() {
    assert_eq!(
        internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        0x220d
    );
    // An odd byte counts as the high half of a word.
    assert_eq!(internet_checksum(&[0x01]), !0x0100);
}

#[test]
fn ipv4_header_matches_known_packet() {
    let payload = vec![0u8; 0x73 - 20];
    let packet = ipv4(
        "192.168.0.1".parse().unwrap(),
        "192.168.0.199".parse().unwrap(),
        IPPROTO_UDP,
        &payload,
    );
    assert_eq!(
        packet[..20],
        [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7
        ]
    );
    assert_eq!(internet_checksum(&packet[..20]), 0);
}

#[test]
fn ipv4_udp_lengths_and_checksums() {
    let src = SocketAddrV4::new("10.0.0.1".parse().unwrap(), 1234);
    let dst = SocketAddrV4::new("10.0.0.2".parse().unwrap(), 5678);
    let packet = ipv4_udp(src, dst, b"hello");
    assert_eq!(packet.len(), 20 + 8 + 5);
    assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 33);
    assert_eq!(packet[9], IPPROTO_UDP);
    assert_eq!(internet_checksum(&packet[..20]), 0);
    let udp = &packet[20..];
    assert_eq!(udp[..6], [0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0d]);
    // Pseudo-header + UDP datagram sums to zero with the right checksum.
    let mut check = packet[12..20].to_vec();
    check.extend_from_slice(&[0, IPPROTO_UDP, 0, 13]);
    check.extend_from_slice(udp);
    assert_eq!(internet_checksum(&check), 0);
}

#[test]
fn ipv6_udp_chains_extension_headers() {
    let src = SocketAddrV6::new("fd00::1".parse().unwrap(), 1, 0, 0);
    let dst = SocketAddrV6::new("fd00::2".parse().unwrap(), 2, 0, 0);
    let chain = [
        Ipv6Ext::HopByHop,
        Ipv6Ext::Routing { routing_type: 4 },
        Ipv6Ext::Fragment {
            offset: 3,
            more: true,
            id: 0x0102_0304,
        },
        Ipv6Ext::DestOpts,
    ];
    let packet = ipv6_udp(src, dst, &chain, &[0xaa; 7]);
    assert_eq!(packet.len(), 40 + 4 * 8 + 8 + 7);
    assert_eq!(packet[0] >> 4, 6);
    assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 4 * 8 + 8 + 7);
    assert_eq!(packet[6], IPPROTO_HOPOPTS);
    let ext = |i: usize| &packet[40 + 8 * i..48 + 8 * i];
    assert_eq!(ext(0)[..2], [IPPROTO_ROUTING, 0]);
    assert_eq!(ext(0)[2..], [1, 4, 0, 0, 0, 0]);
    assert_eq!(ext(1)[..4], [IPPROTO_FRAGMENT, 0, 4, 0]);
    assert_eq!(ext(2), [IPPROTO_DSTOPTS, 0, 0, 3 << 3 | 1, 1, 2, 3, 4]);
    assert_eq!(ext(3)[0], IPPROTO_UDP);
    let udp = &packet[72..];
    assert_eq!(u16::from_be_bytes([udp[4], udp[5]]), 15);
    let mut check = packet[8..40].to_vec();
    check.extend_from_slice(&[0, 0, 0, 15, 0, 0, 0, IPPROTO_UDP]);
    check.extend_from_slice(udp);
    assert_eq!(internet_checksum(&check), 0);

    let bare = ipv6_udp(src, dst, &[], b"");
    assert_eq!((bare.len(), bare[6]), (48, IPPROTO_UDP));
}

#[test]
fn eth_and_vlan_layout() {
    let (dst, src) = ([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]);
    let frame = eth(dst, src, ETHERTYPE_IPV4, &[0xee; 4]);
    assert_eq!(frame.len(), 18);
    assert_eq!(frame[12..14], [0x08, 0x00]);

    let tagged = vlan(TPID_8021Q, 100, &frame);
    assert_eq!(tagged.len(), 22);
    assert_eq!(tagged[..12], frame[..12]);
    assert_eq!(tagged[12..18], [0x81, 0x00, 0x00, 100, 0x08, 0x00]);

    let qinq = vlan(TPID_8021AD, 0xabc, &tagged);
    assert_eq!(qinq.len(), 26);
    assert_eq!(qinq[12..16], [0x88, 0xa8, 0x0a, 0xbc]);
    assert_eq!(qinq[16..20], [0x81, 0x00, 0x00, 100]);
    assert_eq!(qinq[20..], [0x08, 0x00, 0xee, 0xee, 0xee, 0xee]);
}

#[test]
fn arp_request_layout() {
    let mac = [2, 0, 0, 0, 0, 0x0a];
    let frame = arp_request(
        mac,
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
    );
    assert_eq!(frame.len(), 42);
    assert_eq!(frame[..6], BROADCAST_MAC);
    assert_eq!(frame[6..12], mac);
    assert_eq!(frame[12..14], [0x08, 0x06]);
    assert_eq!(frame[14..22], [0, 1, 8, 0, 6, 4, 0, 1]);
    assert_eq!(frame[22..28], mac);
    assert_eq!(frame[28..32], [10, 0, 0, 1]);
    assert_eq!(frame[32..38], [0; 6]);
    assert_eq!(frame[38..42], [10, 0, 0, 2]);
}

#[test]
fn if_stats_and_mac_parsing() {
    assert_eq!(
        IfStats::parse("1\n2\n3\n4\n5\n6\n"),
        Some(IfStats {
            rx_bytes: 1,
            rx_packets: 2,
            tx_bytes: 3,
            tx_packets: 4,
            rx_dropped: 5,
            tx_dropped: 6
        })
    );
    assert_eq!(IfStats::parse("1\n2\n3\n4\n5\n"), None);
    assert_eq!(IfStats::parse("1\n2\n3\n4\n5\n6\n7\n"), None);
    assert_eq!(parse_mac("02:00:00:00:00:0a\n"), Some(Pair::MAC_A));
    assert_eq!(parse_mac("02:00:00:00:00:0a:ff"), None);
    assert_eq!(parse_mac("02:00:00:00:00"), None);
    assert_eq!(format_mac(Pair::MAC_B), "02:00:00:00:00:0b");
}

#[test]
fn ipv6_ready_needs_link_local_and_nothing_tentative() {
    let global = "fd000000000000000000000000000002 0b 40 00 80     eth0\n";
    let link = "fe8000000000000000ff00fffe00000b 0b 40 20 80     eth0\n";
    let tentative = "fe8000000000000000ff00fffe00000b 0b 40 20 c0     eth0\n";
    let other = "fe8000000000000000ff00fffe00000c 0c 40 20 80     eth1\n";
    assert!(ipv6_ready(&format!("{global}{link}"), "eth0"));
    assert!(!ipv6_ready(global, "eth0"));
    assert!(!ipv6_ready(&format!("{global}{tentative}"), "eth0"));
    assert!(!ipv6_ready(&format!("{global}{other}"), "eth0"));
    // A tentative address on another interface does not matter.
    assert!(ipv6_ready(&format!("{tentative}{other}"), "eth1"));
}
