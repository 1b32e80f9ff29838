//! Every map the programs use. Sizes here are defaults: the agent sets
//! `max_entries` (and [`FLOW_CACHE_SLOTS`]) from its configuration before
//! loading.

use aya_ebpf::{
    Global,
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, LruPerCpuHashMap, PerCpuArray},
};
use netmon_common::{
    CacheLayout, CacheSlot, Counter, DEFAULT_FLOW_CACHE_SLOTS, DEFAULT_FLOW_ENTRIES,
    DEFAULT_FLOW_INSERT_BUDGET, DEFAULT_MAC_ENTRIES, FlowKey, Globals, MacKey,
};

use crate::parse::Frame;

/// Frames per (interface, direction, source MAC, destination MAC): non-IP
/// frames, and IP frames the flow cache could not hold.
#[map]
pub static MAC_COUNTERS: LruPerCpuHashMap<MacKey, Counter> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_MAC_ENTRIES, 0);

/// IP packets per (interface, direction, protocol, MACs, IPs) that the flow
/// cache could not hold. Each CPU creates at most [`FLOW_INSERT_BUDGET`]
/// entries per generation.
#[map]
pub static FLOW_COUNTERS: LruPerCpuHashMap<FlowKey, Counter> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// The flow cache's slots: per CPU, two halves (the half in use chosen by
/// the generation's low bit) of [`FLOW_CACHE_SLOTS`] flow slots (a table
/// the agent sizes per generation, found by a key's hash) and
/// [`netmon_common::CACHE_AGGREGATE_SLOTS`] aggregate slots (see
/// [`netmon_common::CacheSlot`] and [`CacheLayout`]). A plain array the
/// agent memory-maps; the agent sizes it for every possible CPU.
#[map]
pub static FLOW_CACHE: Array<CacheSlot> = Array::with_max_entries(
    2 * CacheLayout::slots(DEFAULT_FLOW_CACHE_SLOTS),
    BPF_F_MMAPABLE,
);

/// The flow cache's claim lists: per CPU and half, the slots claimed in
/// the generation, in order (flow slots from entry 0, aggregate slots from
/// entry [`FLOW_CACHE_SLOTS`]), so the agent reads only those.
#[map]
pub static CACHE_CLAIMS: Array<u32> = Array::with_max_entries(
    2 * CacheLayout::slots(DEFAULT_FLOW_CACHE_SLOTS),
    BPF_F_MMAPABLE,
);

/// Per CPU and half: slots claimed, flow-map entries created.
#[map]
pub static CACHE_HEADERS: Array<u64> =
    Array::with_max_entries(2 * CacheLayout::HEADER, BPF_F_MMAPABLE);

/// Index 0: the flow cache's current generation, set by the agent; 0 while
/// the cache is off. Index 1 + h: the table slots half h uses; 3 + h: the
/// flow slots half h may claim in a generation (0: half the table).
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(5, 0);

/// Flow slots per half of [`FLOW_CACHE`], set at load time (read-only to
/// the programs, so the verifier knows its value).
#[unsafe(no_mangle)]
pub static FLOW_CACHE_SLOTS: Global<u32> = Global::new(DEFAULT_FLOW_CACHE_SLOTS);

/// Entries each CPU may create in [`FLOW_COUNTERS`] per generation, set at
/// load time.
#[unsafe(no_mangle)]
pub static FLOW_INSERT_BUDGET: Global<u32> = Global::new(DEFAULT_FLOW_INSERT_BUDGET);

/// One [`Globals`] per CPU at index 0.
#[map]
pub static GLOBALS: PerCpuArray<Globals> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room for the frame being parsed (see [`Frame`] for why it is not
/// on the stack). Never read by the agent.
#[map]
pub static SCRATCH: PerCpuArray<Frame> = PerCpuArray::with_max_entries(1, 0);
