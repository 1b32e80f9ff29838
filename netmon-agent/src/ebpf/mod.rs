//! Loading the eBPF object, attaching it to interfaces and reading its maps.
//!
//! Every attachment is a BPF link owned by this process (XDP link, TCX link),
//! so the kernel detaches everything when the process exits, however it
//! exits: nothing is pinned and no qdisc is created on kernels >= 6.6.

mod attach;
mod batch;
mod cache;
pub mod preflight;
mod read;
pub use read::CacheRead;
mod testrun;

use std::{collections::HashMap, io};

use aya::{
    Ebpf, EbpfLoader,
    programs::{tc::SchedClassifierLinkId, xdp::XdpLinkId},
};
use netmon_common::{
    CACHE_CLAIMS_MAP, CACHE_HEADERS_MAP, CacheLayout, CacheSlot, Counter, DEFAULT_FLOW_ENTRIES,
    DEFAULT_FLOW_INSERT_BUDGET, DEFAULT_MAC_ENTRIES, FLOW_CACHE_MAP, FLOW_CACHE_SLOTS,
    FLOW_INSERT_BUDGET, FLOW_MAP, FlowKey, MAC_MAP, MacKey, PROG_TC_EGRESS, PROG_TC_INGRESS,
    PROG_XDP,
};
use serde::Serialize;
use tracing::{debug, info, warn};

use self::{
    attach::{classifier, xdp},
    cache::{CacheMap, set_control},
};

/// How frames are counted on the way in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IngressHook {
    /// Native (driver) XDP where the driver supports it, else TC ingress.
    #[default]
    Auto,
    /// Native XDP only: fail on interfaces whose driver lacks it.
    Xdp,
    /// Generic (SKB-mode) XDP. Works on any driver but disables GRO on the
    /// interface and costs throughput: only when asked for.
    XdpGeneric,
    /// TC ingress classifier (TCX on kernels >= 6.6).
    Tc,
}

/// The eBPF object, built by build.rs. Public for the benchmark, which
/// loads the pass-only programs from it.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netmon"));

/// Why the programs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A capability the agent needs is not in its effective set.
    #[error("missing capability {}: needed to {}{}", .0[0].name, .0[0].why, others(.0))]
    MissingCapability(Vec<preflight::Capability>),
    /// The kernel publishes no BTF.
    #[error(
        "the kernel has no BTF ({}): netmon needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.18 or newer)",
        preflight::KERNEL_BTF
    )]
    NoBtf,
    /// The capability set could not be read.
    #[error("cannot read the process's capabilities")]
    Capabilities(#[source] io::Error),
    /// The object could not be loaded (maps created, relocations applied).
    #[error("loading the eBPF object failed")]
    Object(#[source] aya::EbpfError),
    /// The verifier rejected a program, or the kernel refused to load it.
    #[error("loading program {name} failed")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Finding the possible-CPU count failed.
    #[error("cannot read the possible CPUs from {0}")]
    Cpus(&'static str, #[source] io::Error),
    /// Turning the flow cache on failed.
    #[error("setting the flow cache's generation failed")]
    Control(#[source] aya::maps::MapError),
    /// Memory-mapping the flow cache failed.
    #[error("memory-mapping the flow cache failed")]
    Mmap(#[source] io::Error),
}

fn others(missing: &[preflight::Capability]) -> String {
    missing[1..]
        .iter()
        .map(|c| format!("; missing capability {}: needed to {}", c.name, c.why))
        .collect()
}

/// Why an interface could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No interface has this name.
    #[error("unknown interface {0}")]
    UnknownInterface(String),
    /// The kernel refused the attachment.
    #[error("attaching {program} to {iface} in {mode} mode failed")]
    Attach {
        iface: String,
        program: &'static str,
        mode: HookMode,
        #[source]
        source: aya::programs::ProgramError,
    },
}

/// Sizes of the kernel maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Entries of the MAC-pair map.
    pub mac_entries: u32,
    /// Entries of the flow map.
    pub flow_entries: u32,
    /// Flow-cache flow slots per half and CPU: a multiple of
    /// [`SLOTS_MULTIPLE`], or 0 to turn the cache off (every frame then goes to
    /// the hash maps).
    pub flow_cache_slots: u32,
    /// Flow-map entries each CPU may create per drain interval; beyond it,
    /// frames the cache cannot hold go to their MAC pair's aggregate.
    pub flow_insert_budget: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            mac_entries: DEFAULT_MAC_ENTRIES,
            flow_entries: DEFAULT_FLOW_ENTRIES,
            flow_cache_slots: cache_slots_for(DEFAULT_FLOW_CACHE_MEMORY, possible_cpus()),
            flow_insert_budget: DEFAULT_FLOW_INSERT_BUDGET,
        }
    }
}

/// Default memory for the flow cache, all CPUs (`--flow-cache-memory`).
pub const DEFAULT_FLOW_CACHE_MEMORY: u64 = 64 << 20;
/// The most flow slots per half and CPU.
pub const MAX_FLOW_CACHE_SLOTS: u32 = 1 << 22;

/// Bytes of the flow cache per flow slot and CPU: two halves of a 64-byte
/// slot and its claim-list entry (a `u32` in an array, whose elements
/// take 8 bytes).
pub const CACHE_BYTES_PER_SLOT: u64 = 2 * (size_of::<CacheSlot>() as u64 + 8);
/// Flow slots come in multiples of this.
pub const SLOTS_MULTIPLE: u32 = 4;

/// The flow slots per half and CPU that `memory` bytes hold on `ncpus`
/// possible CPUs (beside the aggregate slots and the headers), a multiple
/// of [`SLOTS_MULTIPLE`] from that to [`MAX_FLOW_CACHE_SLOTS`]; 0 (off) for
/// no memory.
pub fn cache_slots_for(memory: u64, ncpus: usize) -> u32 {
    if memory == 0 {
        return 0;
    }
    let per_cpu = memory / ncpus.max(1) as u64;
    let fixed = 2
        * (u64::from(CacheLayout::slots(0)) * CACHE_BYTES_PER_SLOT / 2
            + u64::from(CacheLayout::HEADER) * 8);
    let room = per_cpu.saturating_sub(fixed) / CACHE_BYTES_PER_SLOT;
    let m = u64::from(SLOTS_MULTIPLE);
    (room / m * m).clamp(m, u64::from(MAX_FLOW_CACHE_SLOTS)) as u32
}

/// The kernel's possible CPUs (1 when they cannot be read).
pub fn possible_cpus() -> usize {
    aya::util::nr_cpus().map_or(1, |n| n.get() as usize)
}

/// Why a read of the maps failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The batch read failed.
    #[error("reading map {0} failed")]
    Batch(&'static str, #[source] batch::BatchError),
    /// An aya map operation failed.
    #[error("reading map {0} failed")]
    Map(&'static str, #[source] aya::maps::MapError),
    /// Memory-mapping a range of the flow cache failed (the cache is
    /// turned off).
    #[error("memory-mapping the flow cache failed")]
    Cache(#[source] io::Error),
}

/// How a program is attached at one hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookMode {
    /// XDP run by the driver.
    XdpNative,
    /// XDP run by the kernel on an skb (no driver support needed; slower).
    XdpGeneric,
    /// A TC classifier (TCX link on kernels >= 6.6).
    Tc,
}

impl std::fmt::Display for HookMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookMode::XdpNative => "native XDP",
            HookMode::XdpGeneric => "generic XDP",
            HookMode::Tc => "TC",
        })
    }
}

enum IngressLink {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

/// The programs attached to one interface.
pub struct Attachment {
    pub name: String,
    pub ifindex: u32,
    pub ingress: HookMode,
    ingress_link: IngressLink,
    egress_link: SchedClassifierLinkId,
}

/// The loaded object: maps and programs, and the interfaces they watch.
pub struct Kernel {
    ebpf: Ebpf,
    ncpus: usize,
    mac_bufs: batch::Buffers<MacKey, Counter>,
    flow_bufs: batch::Buffers<FlowKey, Counter>,
    ingress: IngressHook,
    cache: CacheMap,
    sizes: MapSizes,
    /// The flow cache's current generation (0: the cache is off).
    generation: u32,
    batch_ok: bool,
    /// Whether membarrier(MEMBARRIER_CMD_GLOBAL) works here.
    membarrier_ok: bool,
}

impl Kernel {
    /// Checks privileges and kernel support, then loads the maps (sized as
    /// given) and the three programs, and turns the flow cache on.
    pub fn load(ingress: IngressHook, sizes: MapSizes) -> Result<Kernel, LoadError> {
        let caps = preflight::effective_caps().map_err(LoadError::Capabilities)?;
        let missing = preflight::missing(caps);
        if !missing.is_empty() {
            return Err(LoadError::MissingCapability(missing));
        }
        if !preflight::kernel_has_btf() {
            return Err(LoadError::NoBtf);
        }
        raise_memlock();
        let ncpus = aya::util::nr_cpus()
            .map_err(|(path, e)| LoadError::Cpus(path, e))?
            .get() as usize;
        // The programs need a slot even with the cache off.
        let half = sizes.flow_cache_slots.max(SLOTS_MULTIPLE);
        let regions = ncpus as u32 * 2;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAC_MAP, sizes.mac_entries)
            .map_max_entries(FLOW_MAP, sizes.flow_entries)
            .map_max_entries(FLOW_CACHE_MAP, regions * CacheLayout::slots(half))
            .map_max_entries(CACHE_CLAIMS_MAP, regions * CacheLayout::slots(half))
            .map_max_entries(CACHE_HEADERS_MAP, regions * CacheLayout::HEADER)
            .override_global(FLOW_CACHE_SLOTS, &half, true)
            .override_global(FLOW_INSERT_BUDGET, &sizes.flow_insert_budget, true)
            .load(OBJECT)
            .map_err(LoadError::Object)?;
        let program = |name| move |source| LoadError::Program { name, source };
        xdp(&mut ebpf).load().map_err(program(PROG_XDP))?;
        for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
            classifier(&mut ebpf, name).load().map_err(program(name))?;
        }
        let cache = CacheMap::map(&ebpf, ncpus, half).map_err(LoadError::Mmap)?;
        for h in 0..2 {
            let table = cache.table[h as usize];
            set_control(&mut ebpf, 1 + h, table).map_err(LoadError::Control)?;
            set_control(&mut ebpf, 3 + h, cache::room(table)).map_err(LoadError::Control)?;
        }
        let generation = u32::from(sizes.flow_cache_slots != 0);
        set_control(&mut ebpf, 0, generation).map_err(LoadError::Control)?;
        info!(
            ncpus,
            mac_entries = sizes.mac_entries,
            flow_entries = sizes.flow_entries,
            flow_cache_slots = sizes.flow_cache_slots,
            flow_insert_budget = sizes.flow_insert_budget,
            "Loaded eBPF programs."
        );
        Ok(Kernel {
            ebpf,
            ncpus,
            mac_bufs: batch::Buffers::default(),
            flow_bufs: batch::Buffers::default(),
            cache,
            ingress,
            sizes,
            generation,
            batch_ok: true,
            membarrier_ok: true,
        })
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones to
/// the memory cgroup, where failing to raise the limit does not matter.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        let error = io::Error::last_os_error();
        let memcg = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 11, 0));
        if memcg {
            debug!(%error, "Cannot raise RLIMIT_MEMLOCK; not needed on this kernel.");
        } else {
            warn!(%error, "Cannot raise RLIMIT_MEMLOCK: loading may fail with EPERM on kernels before 5.11.");
        }
    }
}

/// Interfaces by index, as attached.
pub type Attachments = HashMap<u32, Attachment>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_memory_is_shared_by_the_cpus_in_whole_slots() {
        // 64 MiB on 2 CPUs: 32 MiB each, 144 bytes a slot, less the
        // aggregate slots and headers.
        let slots = cache_slots_for(64 << 20, 2);
        assert_eq!(slots % SLOTS_MULTIPLE, 0);
        assert!((232_500..233_000).contains(&slots), "{slots}");
        let used = u64::from(CacheLayout::slots(slots)) * CACHE_BYTES_PER_SLOT / 2 * 2;
        assert!(used <= 32 << 20, "{used}");
        assert_eq!(cache_slots_for(0, 2), 0, "no memory: off");
        assert_eq!(
            cache_slots_for(1, 64),
            SLOTS_MULTIPLE,
            "at least a few slots"
        );
        assert_eq!(cache_slots_for(1 << 40, 1), MAX_FLOW_CACHE_SLOTS);
    }
}
