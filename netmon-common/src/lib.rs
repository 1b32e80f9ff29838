//! Types shared by netmon's eBPF programs and its userspace agent.
//!
//! Every map key and value here is `#[repr(C)]` with explicit padding fields, so
//! the kernel and the agent agree on the layout byte for byte; a `const`
//! assertion beside each type pins its size. Padding must be zeroed by the
//! writer: the kernel hashes every byte of a key.
//!
//! What a count means (the same at every hook):
//! - `bytes` is the L2 frame length without FCS: Ethernet header, VLAN tags,
//!   payload. A VLAN tag the NIC moved into packet metadata is counted as the
//!   4 bytes it occupies on the wire.
//! - A GSO/GRO aggregate seen at TC counts as the segments it stands for:
//!   `packets` is the segment count and `bytes` adds the replicated headers of
//!   every segment after the first.
#![no_std]

/// Name of the per-CPU LRU hash of [`MacKey`] -> [`Counter`].
pub const MAC_MAP: &str = "MAC_COUNTERS";
/// Name of the per-CPU LRU hash of [`FlowKey`] -> [`Counter`].
pub const FLOW_MAP: &str = "FLOW_COUNTERS";
/// Name of the one-entry per-CPU array of [`Globals`].
pub const GLOBALS_MAP: &str = "GLOBALS";
/// Name of the flow cache: an array of [`CacheSlot`], per CPU two halves of
/// [`FLOW_CACHE_SLOTS`] slots (CPU `c`, half `h` start at slot
/// `(2c + h) * FLOW_CACHE_SLOTS`), created memory-mappable
/// (`BPF_F_MMAPABLE`) so the agent reads and clears it without syscalls.
pub const FLOW_CACHE_MAP: &str = "FLOW_CACHE";
/// Name of the five-entry `u32` array that steers the flow cache: the
/// current generation (0 turns the cache off), then the table slots in use
/// (at most the flow slots) for half 0 and for half 1, then the flow slots
/// each half may claim in a generation (its claim limit; 0: half the table).
pub const CONTROL_MAP: &str = "CONTROL";
/// Name of the load-time global (a `u32`) giving the flow slots in each
/// half of [`FLOW_CACHE_MAP`].
pub const FLOW_CACHE_SLOTS: &str = "FLOW_CACHE_SLOTS";
/// Name of the flow cache's claim lists: a memory-mappable array of
/// `u32` (each in 8 bytes: array elements are 8-byte aligned), per CPU and half [`CacheLayout::slots`] entries laid out as the
/// slots are: entry `n` the `n`-th flow slot claimed in the generation,
/// entry `S + n` the `n`-th aggregate slot (each a slot index in the half).
pub const CACHE_CLAIMS_MAP: &str = "CACHE_CLAIMS";
/// Name of the flow cache's per-CPU, per-half counters: a memory-mappable
/// array of `u64`, [`CacheLayout::HEADER`] words per CPU and half.
pub const CACHE_HEADERS_MAP: &str = "CACHE_HEADERS";
/// Name of the load-time global (a `u32`) giving how many entries each CPU
/// may create in [`FLOW_MAP`] per generation (drain interval).
pub const FLOW_INSERT_BUDGET: &str = "FLOW_INSERT_BUDGET";

/// Slots a key may take in the flow cache's table: the slot its hash
/// picks and the next ones (linear probing, wrapping at the table's end).
/// With the table half full (as the agent sizes it), about one key in
/// 2,500 finds sixteen others in its way (and goes to the hash maps).
pub const CACHE_PROBES: u32 = 16;
/// Slots per half and CPU, after the flow slots, that hold only aggregate
/// keys ([`FlowKey::other`]), so that a flood which takes every flow slot
/// cannot take them (a power of two: a hash's low bits pick one).
pub const CACHE_AGGREGATE_SLOTS: u32 = 64;
const _: () = assert!(CACHE_AGGREGATE_SLOTS.is_power_of_two());
/// The fewest table slots a half uses.
pub const MIN_TABLE_SLOTS: u32 = 64;

/// Where a CPU's half of the flow cache lives. CPU `c`'s half `h` is
/// region `r = 2c + h`: slots `r * slots(S)..` of [`FLOW_CACHE_MAP`] (the
/// `S` flow slots, of which the generation's table is the first `T`
/// [`CONTROL_MAP`] gives for the half, then the aggregate slots), entries `r * slots(S)..` of [`CACHE_CLAIMS_MAP`],
/// and words `r * HEADER..` of [`CACHE_HEADERS_MAP`].
pub struct CacheLayout;

impl CacheLayout {
    /// Header word: flow slots claimed in the generation.
    pub const COUNT: u32 = 0;
    /// Header word: flow-map entries this CPU created in the generation.
    pub const INSERTS: u32 = 1;
    /// Header word: aggregate slots claimed in the generation.
    pub const AGGREGATES: u32 = 2;
    /// Header word: frames that found no flow slot in the generation (the
    /// agent sizes the half's next table by claims and misses).
    pub const MISSES: u32 = 3;
    /// Header words per region (one cache line).
    pub const HEADER: u32 = 8;

    /// Slots of one region: flow slots and aggregate slots.
    pub const fn slots(flow_slots: u32) -> u32 {
        flow_slots + CACHE_AGGREGATE_SLOTS
    }
}

/// XDP ingress program.
pub const PROG_XDP: &str = "netmon_xdp";
/// TC ingress classifier (used where native XDP is not available, or forced).
pub const PROG_TC_INGRESS: &str = "netmon_tc_in";
/// TC egress classifier.
pub const PROG_TC_EGRESS: &str = "netmon_tc_eg";
/// Pass-only XDP program: the benchmark's floor.
pub const PROG_XDP_PASS: &str = "bench_xdp_pass";
/// Pass-only TC program: the benchmark's floor.
pub const PROG_TC_PASS: &str = "bench_tc_pass";

/// Default flow-map inserts per CPU and generation ([`FLOW_INSERT_BUDGET`]).
pub const DEFAULT_FLOW_INSERT_BUDGET: u32 = 4096;
/// Default number of entries in [`MAC_MAP`].
pub const DEFAULT_MAC_ENTRIES: u32 = 16_384;
/// Default number of entries in [`FLOW_MAP`].
pub const DEFAULT_FLOW_ENTRIES: u32 = 65_536;
/// Default flow slots per half of [`FLOW_CACHE_MAP`] (per CPU), when the
/// object is loaded without the agent's sizing.
pub const DEFAULT_FLOW_CACHE_SLOTS: u32 = 4096;

/// Which way a frame crossed the watched interface.
pub mod direction {
    /// Received by the interface (XDP or TC ingress).
    pub const INGRESS: u8 = 0;
    /// Sent by the interface (TC egress).
    pub const EGRESS: u8 = 1;
}

/// IP protocol numbers the programs classify; any other number is stored as is.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Bytes and packets. The value of both counting maps, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub bytes: u64,
    pub packets: u64,
}
const _: () = assert!(size_of::<Counter>() == 16);

/// One L2 conversation on one interface and direction: frames from `src` to
/// `dst`. A device's `tx` is the sum over keys with its MAC as `src`, its `rx`
/// the sum over keys with its MAC as `dst`; one map update per frame serves both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub ifindex: u32,
    /// [`direction::INGRESS`] or [`direction::EGRESS`].
    pub direction: u8,
    pub _pad0: u8,
    pub src: [u8; 6],
    pub dst: [u8; 6],
    pub _pad1: [u8; 2],
}
const _: () = assert!(size_of::<MacKey>() == 20);

/// One IP conversation on one interface and direction. IPv4 addresses are
/// stored IPv4-mapped (`::ffff:a.b.c.d`), so both families share one key.
/// The frame's MACs are part of the key: they tie each IP to the device that
/// used it, with no second map update per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    /// [`direction::INGRESS`] or [`direction::EGRESS`].
    pub direction: u8,
    /// IP protocol number of the L4 header (after IPv6 extension headers).
    pub proto: u8,
    /// 1 for the aggregate ("other") of a MAC pair's frames of this
    /// protocol whose flows the maps could not take (a CPU's flow-map
    /// inserts for the interval were spent and the flow cache had no slot
    /// for them); its addresses are zero. 0 for a flow.
    pub other: u8,
    pub _pad: u8,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
const _: () = assert!(size_of::<FlowKey>() == 52);

/// One slot of the flow cache ([`FLOW_CACHE_MAP`]): one cache line.
///
/// The cache is the programs' fast path for IP frames, found with no
/// hash-map helper call: an inlined hash of the [`FlowKey`] picks a slot
/// of the running CPU's current half's table (sized to its flows by the
/// agent), and the key is in that slot or one of the next
/// [`CACHE_PROBES`] - 1 (a frame of a known flow mostly touches one line).
/// A new flow takes the first free one of those, as long as the
/// generation has claimed fewer than its claim limit (three quarters of
/// the table as the agent sets it, in [`CONTROL_MAP`]), and records it in
/// the half's claim list ([`CACHE_CLAIMS_MAP`]). The agent counts in generations,
/// the half in use being the low bit of the generation in [`CONTROL_MAP`]:
/// it moves the programs to the next generation (the other half), waits
/// for every program already running to finish (an RCU grace period),
/// then reads the slots the finished half claimed (its claim lists, as
/// long as its header's counts), which hold exactly that generation's
/// counts, and zeroes them and the counts. It sizes each half's table for
/// its next generation by what it held in this one. An IP frame that
/// finds no slot (the slots its key may take are other keys', the claim
/// limit is reached, or its slot's packet count would overflow) goes to
/// [`MAC_MAP`] and [`FLOW_MAP`] instead, or,
/// once the CPU has made [`FLOW_INSERT_BUDGET`] flow-map entries in the
/// generation, to its MAC pair's aggregate key ([`FlowKey::other`]) in the
/// aggregate slots (to [`MAC_MAP`] alone if those are full): every frame is
/// counted in exactly one place.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheSlot {
    pub key: FlowKey,
    /// Frames the flow sent in the slot's generation, on this CPU.
    pub packets: u32,
    /// Their bytes.
    pub bytes: u64,
}
const _: () = assert!(size_of::<CacheSlot>() == 64);

/// Frame-level counters kept by every program, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Globals {
    /// Frames seen (GSO aggregates count as their segments).
    pub packets: u64,
    /// Bytes seen, as defined in the crate docs.
    pub bytes: u64,
    /// Frames whose EtherType is neither IPv4 nor IPv6 (ARP included).
    pub non_ip: u64,
    /// ARP frames.
    pub arp: u64,
    /// Frames with one or two VLAN tags.
    pub vlan: u64,
    /// Frames too short for a header they announce, or with an impossible
    /// header field; passed untouched. Frames shorter than an Ethernet header
    /// are counted here and nowhere else.
    pub malformed: u64,
    /// IPv6 packets whose extension-header chain was longer than the programs
    /// walk; counted under the last header type reached.
    pub ipv6_ext_limit: u64,
    /// Map updates that failed (map full of entries pinned by other CPUs,
    /// out of memory); the frame is still counted in `packets`/`bytes`.
    pub map_update_failed: u64,
    /// Entries created in [`MAC_MAP`]; with the agent's own deletions this
    /// yields the number of LRU evictions.
    pub mac_inserts: u64,
    /// Entries created in [`FLOW_MAP`].
    pub flow_inserts: u64,
    /// IP frames that found no flow-cache slot: the slots the flow may
    /// take were other flows' (or its slot's count was full).
    pub cache_misses: u64,
    /// IP frames counted in their MAC pair's aggregate rather than their
    /// flow (see [`FlowKey::other`]), because this CPU's flow-map inserts
    /// for the interval were spent.
    pub flows_aggregated: u64,
}
const _: () = assert!(size_of::<Globals>() == 96);

impl Globals {
    /// Field-wise sum, used to fold the per-CPU copies.
    pub fn add(&mut self, o: &Globals) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.non_ip += o.non_ip;
        self.arp += o.arp;
        self.vlan += o.vlan;
        self.malformed += o.malformed;
        self.ipv6_ext_limit += o.ipv6_ext_limit;
        self.map_update_failed += o.map_update_failed;
        self.mac_inserts += o.mac_inserts;
        self.flow_inserts += o.flow_inserts;
        self.cache_misses += o.cache_misses;
        self.flows_aggregated += o.flows_aggregated;
    }
}

/// Stores an IPv4 address as an IPv4-mapped IPv6 address.
#[inline(always)]
pub const fn v4_mapped(octets: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

#[cfg(feature = "user")]
mod user {
    use super::{CacheSlot, Counter, FlowKey, Globals, MacKey};

    // SAFETY: plain #[repr(C)] integers and byte arrays with explicit padding;
    // every bit pattern is valid.
    unsafe impl aya::Pod for Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MacKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Globals {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CacheSlot {}
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn key_layouts_are_the_kernel_abi() {
        // The eBPF programs and the agent must agree byte for byte, and the
        // padding must sit where the programs leave zeros.
        assert_eq!(offset_of!(MacKey, direction), 4);
        assert_eq!(offset_of!(MacKey, src), 6);
        assert_eq!(offset_of!(MacKey, dst), 12);
        assert_eq!(offset_of!(MacKey, _pad1), 18);
        assert_eq!(offset_of!(FlowKey, proto), 5);
        assert_eq!(offset_of!(FlowKey, other), 6);
        assert_eq!(offset_of!(FlowKey, src_mac), 8);
        assert_eq!(offset_of!(FlowKey, dst_mac), 14);
        assert_eq!(offset_of!(FlowKey, src), 20);
        assert_eq!(offset_of!(FlowKey, dst), 36);
        assert_eq!(offset_of!(Counter, packets), 8);
        assert_eq!(offset_of!(CacheSlot, packets), 52);
        assert_eq!(offset_of!(CacheSlot, bytes), 56);
    }

    #[test]
    fn ipv4_is_stored_v4_mapped() {
        assert_eq!(
            v4_mapped([10, 1, 2, 3]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]
        );
    }

    #[test]
    fn globals_fold_field_by_field() {
        let a = Globals {
            packets: 1,
            bytes: 2,
            non_ip: 3,
            arp: 4,
            vlan: 5,
            malformed: 6,
            ipv6_ext_limit: 7,
            map_update_failed: 8,
            mac_inserts: 9,
            flow_inserts: 10,
            cache_misses: 11,
            flows_aggregated: 12,
        };
        let mut sum = a;
        sum.add(&a);
        assert_eq!(
            sum,
            Globals {
                packets: 2,
                bytes: 4,
                non_ip: 6,
                arp: 8,
                vlan: 10,
                malformed: 12,
                ipv6_ext_limit: 14,
                map_update_failed: 16,
                mac_inserts: 18,
                flow_inserts: 20,
                cache_misses: 22,
                flows_aggregated: 24,
            }
        );
    }
}
