//! netmon's eBPF programs: per-MAC-pair and per-IP-flow byte and packet
//! counters at XDP ingress and TC ingress/egress.
//!
//! Every program passes every packet untouched: netmon observes, it never
//! drops, redirects or rewrites. What a count includes is documented in
//! `netmon-common`.
#![no_std]
#![no_main]

mod cache;
mod count;
mod maps;
mod parse;
mod programs;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never run.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
