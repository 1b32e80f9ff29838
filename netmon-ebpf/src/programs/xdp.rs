//! XDP ingress program.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_get_buff_len, macros::xdp, programs::XdpContext,
};
use netmon_common::direction;

use crate::{count::count, maps::SCRATCH, parse::parse};

/// Linear lengths below this cannot be followed by fragments (see
/// [`observe`]).
const SMALL_LINEAR: u64 = 1024;

/// Counts every received frame and passes it. Loaded with multi-buffer
/// support (`xdp.frags`) so jumbo frames are seen whole.
///
/// Minimum kernel: 5.18 (`bpf_xdp_get_buff_len`, `xdp.frags`).
#[xdp(frags)]
pub fn netmon_xdp(ctx: XdpContext) -> u32 {
    observe(&ctx);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn observe(ctx: &XdpContext) {
    let Some(f) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on this CPU while
    // the program does (see count.rs).
    let f = unsafe { &mut *f };
    f.reset();
    let (start, end) = (ctx.data(), ctx.data_end());
    let ok = parse(start, end, false, f);
    // The frame's length. A multi-buffer frame carries in fragments what
    // does not fit its first buffer, and every driver's first buffer for
    // multi-buffer XDP is larger than SMALL_LINEAR (veth: a page; NICs:
    // 2-4 KiB). So a small linear part that holds the whole IP packet is the
    // whole frame, and the helper call (a tenth of the program's cost) is
    // skipped for small IP frames, the ones floods are made of. Otherwise
    // ask the kernel.
    let linear = (end - start) as u64;
    let len = if f.ip_end != 0 && u64::from(f.ip_end) <= linear && linear < SMALL_LINEAR {
        linear
    } else {
        // SAFETY: `ctx.ctx` is the xdp_md the kernel passed to this program.
        unsafe { bpf_xdp_get_buff_len(ctx.ctx) }
    };
    f.fits(len);
    let ifindex = ctx.ingress_ifindex() as u32;
    count(ifindex, direction::INGRESS, ok.then_some(f), len, 1);
}
