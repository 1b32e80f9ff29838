//! TC classifiers for ingress (where native XDP is unavailable or not wanted)
//! and egress.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, TC_ACT_UNSPEC},
    helpers::bpf_skb_pull_data,
    macros::classifier,
    programs::TcContext,
};
use netmon_common::direction;

use crate::{
    count::count,
    maps::SCRATCH,
    parse::{MAX_HDR_OFF, VLAN, parse},
};

/// Bytes of a VLAN tag the kernel moved out of the packet into metadata.
const VLAN_TAG_LEN: u64 = 4;
/// `skb->pkt_type` of a copy of an outgoing packet (linux/if_packet.h).
const PACKET_OUTGOING: u32 = 4;
/// `skb->pkt_type` of the copy of a sent multicast or broadcast packet that
/// the kernel loops back to its own stack (`dev_loopback_xmit`).
const PACKET_LOOPBACK: u32 = 5;

/// Counts every received frame and continues (TC_ACT_UNSPEC: the next
/// program or the default action decides, so netmon never overrides others).
///
/// Minimum kernel: 6.6 for TCX links (older kernels use a clsact qdisc).
#[classifier]
pub fn netmon_tc_in(ctx: TcContext) -> i32 {
    observe(&ctx, direction::INGRESS);
    TC_ACT_UNSPEC
}

/// Counts every sent frame and continues. Minimum kernel: as [`netmon_tc_in`].
#[classifier]
pub fn netmon_tc_eg(ctx: TcContext) -> i32 {
    observe(&ctx, direction::EGRESS);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn observe(ctx: &TcContext, dir: u8) {
    let skb = ctx.as_ptr().cast::<__sk_buff>();
    // SAFETY: `skb` is the context the kernel passed to this program; these
    // fields are readable by classifiers.
    let (len, vlan_present, gso_segs, ifindex, pkt_type) = unsafe {
        (
            (*skb).len,
            (*skb).vlan_present,
            (*skb).gso_segs,
            (*skb).ifindex,
            (*skb).pkt_type,
        )
    };
    // Not received from the wire: the copy of a multicast or broadcast
    // packet this host sent that the kernel loops back to its own stack
    // (e.g. an ICMPv6 echo to ff02::1). Its data starts at the network
    // header, with no Ethernet header, and the interface's counters leave it
    // out; the wire copy counts at egress. PACKET_OUTGOING is not seen at
    // ingress today (only packet taps get such copies); it would not be
    // received from the wire either.
    if dir == direction::INGRESS && (pkt_type == PACKET_LOOPBACK || pkt_type == PACKET_OUTGOING) {
        return;
    }
    // Headers may sit in paged data (some drivers, GRO); pulling them into
    // the linear area moves bytes but never changes them.
    let want = len.min(MAX_HDR_OFF as u32);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // SAFETY: as above. On failure we parse what is linear.
        let _ = unsafe { bpf_skb_pull_data(skb, want) };
    }
    let segs = u64::from(gso_segs.max(1));
    let Some(f) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; see count.rs.
    let f = unsafe { &mut *f };
    f.reset();
    let ok = parse(ctx.data(), ctx.data_end(), segs > 1, f);
    f.fits(u64::from(len));
    let tag = if vlan_present != 0 {
        f.flags |= VLAN;
        VLAN_TAG_LEN
    } else {
        0
    };
    let mut bytes = u64::from(len) + tag;
    if segs > 1 {
        // Every segment after the first repeats the headers (and the tag).
        bytes += (segs - 1) * (u64::from(f.hdr_end) + tag);
    }
    count(ifindex, dir, ok.then_some(f), bytes, segs);
}
