//! Every map the programs use. Sizes here are defaults: the agent sets
//! `max_entries` from its configuration before loading.

use aya_ebpf::{
    macros::map,
    maps::{LruPerCpuHashMap, PerCpuArray},
};
use netmon_common::{Counter, DEFAULT_FLOW_ENTRIES, DEFAULT_MAC_ENTRIES, FlowKey, Globals, MacKey};

use crate::parse::Frame;

/// Frames per (interface, direction, source MAC, destination MAC).
#[map]
pub static MAC_COUNTERS: LruPerCpuHashMap<MacKey, Counter> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_MAC_ENTRIES, 0);

/// IP packets per (interface, direction, protocol, source IP, destination IP).
#[map]
pub static FLOW_COUNTERS: LruPerCpuHashMap<FlowKey, Counter> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// One [`Globals`] per CPU at index 0.
#[map]
pub static GLOBALS: PerCpuArray<Globals> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room for the frame being parsed (see [`Frame`] for why it is not
/// on the stack). Never read by the agent.
#[map]
pub static SCRATCH: PerCpuArray<Frame> = PerCpuArray::with_max_entries(1, 0);
