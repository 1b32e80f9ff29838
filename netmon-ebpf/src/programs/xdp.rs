//! XDP ingress program.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_get_buff_len, macros::xdp, programs::XdpContext,
};
use netmon_common::direction;

use crate::{count::count, maps::SCRATCH, parse::parse};

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
    // SAFETY: `ctx.ctx` is the xdp_md the kernel passed to this program.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let Some(f) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on this CPU while
    // the program does (see count.rs).
    let f = unsafe { &mut *f };
    f.reset();
    let ok = parse(ctx.data(), ctx.data_end(), len as usize, false, f);
    let ifindex = ctx.ingress_ifindex() as u32;
    count(ifindex, direction::INGRESS, ok.then_some(f), len, 1);
}
