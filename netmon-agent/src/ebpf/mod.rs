//! Loading the eBPF object, attaching it to interfaces and reading its maps.
//!
//! Every attachment is a BPF link owned by this process (XDP link, TCX link),
//! so the kernel detaches everything when the process exits, however it
//! exits: nothing is pinned and no qdisc is created on kernels >= 6.6.

mod batch;
pub mod preflight;

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, IterableMap as _, MapData, PerCpuArray, PerCpuHashMap},
    programs::{
        SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, Xdp, XdpMode,
        tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use netmon_common::{
    CACHE_HEADERS_MAP, CACHE_INDEX_MAP, CONTROL_MAP, CacheLayout, CacheSlot, Counter,
    DEFAULT_FLOW_ENTRIES, DEFAULT_FLOW_INSERT_BUDGET, DEFAULT_MAC_ENTRIES, FLOW_CACHE_MAP,
    FLOW_CACHE_SLOTS, FLOW_INSERT_BUDGET, FLOW_MAP, FlowKey, GLOBALS_MAP, Globals, IndexLine,
    MAC_MAP, MIN_INDEX_LINES, MacKey, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::{
    rates::sum,
    traffic::{Expired, Reading},
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
/// slot and its share of the index (half a 64-byte line).
pub const CACHE_BYTES_PER_SLOT: u64 = 2 * (size_of::<CacheSlot>() as u64 + 32);
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
            .map_max_entries(CACHE_INDEX_MAP, regions * CacheLayout::index_lines(half))
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
            set_control(&mut ebpf, 1 + h, cache.lines[h as usize]).map_err(LoadError::Control)?;
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

    /// Attaches the ingress program (per the configured hook) and the egress
    /// classifier to `name`.
    pub fn attach(&mut self, name: &str, ifindex: u32) -> Result<Attachment, AttachError> {
        let attach_err = |program, mode| {
            let iface = name.to_owned();
            move |source| AttachError::Attach {
                iface,
                program,
                mode,
                source,
            }
        };
        let (ingress, ingress_link) = match self.ingress {
            IngressHook::Auto => match xdp(&mut self.ebpf).attach(ifindex, XdpMode::Driver) {
                Ok(id) => (HookMode::XdpNative, IngressLink::Xdp(id)),
                Err(e) => {
                    let error = format!("{:#}", anyhow::Error::from(e));
                    info!(
                        iface = name,
                        error, "Native XDP attach failed; counting ingress with TC."
                    );
                    let id = classifier(&mut self.ebpf, PROG_TC_INGRESS)
                        .attach(ifindex, TcAttachType::Ingress)
                        .map_err(attach_err(PROG_TC_INGRESS, HookMode::Tc))?;
                    (HookMode::Tc, IngressLink::Tc(id))
                }
            },
            IngressHook::Xdp => {
                let id = xdp(&mut self.ebpf)
                    .attach(ifindex, XdpMode::Driver)
                    .map_err(attach_err(PROG_XDP, HookMode::XdpNative))?;
                (HookMode::XdpNative, IngressLink::Xdp(id))
            }
            IngressHook::XdpGeneric => {
                let id = xdp(&mut self.ebpf)
                    .attach(ifindex, XdpMode::Skb)
                    .map_err(attach_err(PROG_XDP, HookMode::XdpGeneric))?;
                (HookMode::XdpGeneric, IngressLink::Xdp(id))
            }
            IngressHook::Tc => {
                let id = classifier(&mut self.ebpf, PROG_TC_INGRESS)
                    .attach(ifindex, TcAttachType::Ingress)
                    .map_err(attach_err(PROG_TC_INGRESS, HookMode::Tc))?;
                (HookMode::Tc, IngressLink::Tc(id))
            }
        };
        let egress_link = match classifier(&mut self.ebpf, PROG_TC_EGRESS)
            .attach(ifindex, TcAttachType::Egress)
        {
            Ok(id) => id,
            Err(source) => {
                self.detach_ingress(ingress_link);
                return Err(AttachError::Attach {
                    iface: name.to_owned(),
                    program: PROG_TC_EGRESS,
                    mode: HookMode::Tc,
                    source,
                });
            }
        };
        info!(iface = name, ifindex, ingress = %ingress, "Attached.");
        Ok(Attachment {
            name: name.to_owned(),
            ifindex,
            ingress,
            ingress_link,
            egress_link,
        })
    }

    /// Detaches both programs from the interface. Detaching from an
    /// interface that no longer exists is not an error (the kernel already
    /// released the links).
    pub fn detach(&mut self, a: Attachment) {
        self.detach_ingress(a.ingress_link);
        if let Err(e) = classifier(&mut self.ebpf, PROG_TC_EGRESS).detach(a.egress_link) {
            debug!(iface = a.name, error = %e, "Detaching the egress program failed.");
        }
        info!(iface = a.name, ifindex = a.ifindex, "Detached.");
    }

    fn detach_ingress(&mut self, link: IngressLink) {
        let result = match link {
            IngressLink::Xdp(id) => xdp(&mut self.ebpf).detach(id),
            IngressLink::Tc(id) => classifier(&mut self.ebpf, PROG_TC_INGRESS).detach(id),
        };
        if let Err(e) = result {
            debug!(error = %e, "Detaching the ingress program failed.");
        }
    }

    /// Reads the flow cache's last generation, both counting maps and the
    /// globals into `r`, summing per-CPU values. Buffers in `r` are reused.
    pub fn read(&mut self, r: &mut Reading) -> Result<(), ReadError> {
        r.macs.clear();
        r.flows.clear();
        r.cached.clear();
        self.read_cache(&mut r.cached)?;
        let (ncpus, batch_ok) = (self.ncpus, self.batch_ok);
        let mac = percpu_map::<MacKey>(&self.ebpf, MAC_MAP)?;
        let batched = read_map(
            &mac,
            MAC_MAP,
            ncpus,
            batch_ok,
            &mut self.mac_bufs,
            &mut r.macs,
        )?;
        let flow = percpu_map::<FlowKey>(&self.ebpf, FLOW_MAP)?;
        let batched = batched
            && read_map(
                &flow,
                FLOW_MAP,
                ncpus,
                batched,
                &mut self.flow_bufs,
                &mut r.flows,
            )?;
        if !batched && self.batch_ok {
            warn!("The kernel cannot batch-read these maps; reading entry by entry (slower).");
            self.batch_ok = false;
        }
        // After the maps, so the totals cover at least what they hold.
        r.globals = self.globals()?;
        r.mac_capacity = u64::from(self.sizes.mac_entries);
        r.flow_capacity = u64::from(self.sizes.flow_entries);
        r.cache_capacity = u64::from(self.sizes.flow_cache_slots) * self.ncpus as u64;
        Ok(())
    }

    /// Ends the flow cache's current generation and appends what it
    /// counted to `out`: one (key, counter) per slot and CPU that the
    /// generation claimed. These are exact counts of the interval, not
    /// running totals.
    ///
    /// The programs are moved to the next generation (the other half of
    /// each CPU's slots); then, once every program that read the old
    /// generation has returned (an RCU grace period: programs run inside
    /// RCU read-side sections), nothing writes the old half: it is read and
    /// its used slots zeroed through the memory map, ready for the
    /// generation after next. Those zeroes are visible to every program
    /// that uses the half again: a full fence orders them before the later
    /// store of the generation that hands the half out, and a program
    /// reaches its slots through an address computed from the generation
    /// it loaded (message passing with an address dependency, as RCU
    /// readers use).
    fn read_cache(&mut self, out: &mut Vec<(FlowKey, Counter)>) -> Result<(), ReadError> {
        let done = self.generation;
        if done == 0 {
            return Ok(());
        }
        // Skip 0 (cache off) on wrapping, keeping halves alternating.
        let next = match done.wrapping_add(1) {
            0 => 2,
            n => n,
        };
        set_control(&mut self.ebpf, 0, next).map_err(|e| ReadError::Map(CONTROL_MAP, e))?;
        self.generation = next;
        self.grace_period();
        let half = (done & 1) as usize;
        let (mut most, mut missed) = (0, false);
        for cpu in 0..self.ncpus {
            let claimed = self.cache.drain(cpu * 2 + half, half, |s| {
                out.push((
                    s.key,
                    Counter {
                        bytes: s.bytes,
                        packets: u64::from(s.packets),
                    },
                ))
            });
            most = most.max(claimed.0);
            missed |= claimed.1 != 0;
        }
        // Size this half's index for its next generation by what it held
        // in this one; the flip after next hands it out.
        let lines = self.cache.next_lines(half, most, missed);
        set_control(&mut self.ebpf, 1 + half as u32, lines)
            .map_err(|e| ReadError::Map(CONTROL_MAP, e))?;
        self.cache.lines[half] = lines;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Waits until every eBPF program running now has returned.
    /// membarrier(MEMBARRIER_CMD_GLOBAL) is `synchronize_rcu()`, which
    /// waits for every RCU read-side section, and XDP and TC programs run
    /// inside one (NAPI and the qdisc layer hold it, with softirqs off).
    /// Where it is unavailable (nohz_full kernels), a pause far longer than
    /// any program run stands in for it.
    fn grace_period(&mut self) {
        /// `MEMBARRIER_CMD_GLOBAL` from linux/membarrier.h.
        const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
        if self.membarrier_ok {
            // SAFETY: membarrier takes two integers and touches no memory.
            let ret = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
            if ret == 0 {
                return;
            }
            warn!(
                error = %io::Error::last_os_error(),
                "membarrier(MEMBARRIER_CMD_GLOBAL) failed; pausing 10 ms per drain instead."
            );
            self.membarrier_ok = false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    /// The global counters, summed over the CPUs.
    fn globals(&self) -> Result<Globals, ReadError> {
        let globals: PerCpuArray<&MapData, Globals> = PerCpuArray::try_from(
            self.ebpf
                .map(GLOBALS_MAP)
                .expect("GLOBALS is in the object"),
        )
        .map_err(|e| ReadError::Map(GLOBALS_MAP, e))?;
        let per_cpu = globals
            .get(&0, 0)
            .map_err(|e| ReadError::Map(GLOBALS_MAP, e))?;
        let mut sum = Globals::default();
        for g in per_cpu.iter() {
            sum.add(g);
        }
        Ok(sum)
    }

    /// Deletes expired entries from the kernel maps; returns how many of
    /// each were deleted (entries already gone are not counted).
    pub fn delete(&mut self, expired: &Expired) -> (u64, u64) {
        let macs = delete_all::<MacKey>(&mut self.ebpf, MAC_MAP, &expired.macs);
        let flows = delete_all::<FlowKey>(&mut self.ebpf, FLOW_MAP, &expired.flows);
        (macs, flows)
    }
}

impl Kernel {
    /// The loaded object, for the benchmark, which attaches one program at
    /// one hook at a time and reads the programs' run statistics.
    #[doc(hidden)]
    pub fn object(&self) -> &Ebpf {
        &self.ebpf
    }

    /// As [`Kernel::object`], to attach and detach.
    #[doc(hidden)]
    pub fn object_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// Offset of `gso_segs` in `struct __sk_buff` (stable UAPI).
const SKB_GSO_SEGS_OFFSET: usize = 164;
/// Size of `struct __sk_buff` on kernels >= 5.16.
const SKB_CTX_SIZE: usize = 192;

impl Kernel {
    /// Runs one of the counting programs on `frame` with BPF_PROG_TEST_RUN,
    /// `repeat` times, as if `frame` arrived on the loopback interface; for
    /// the TC programs `gso_segs` makes the frame a GSO aggregate. Returns
    /// the verdict and the kernel's mean run time. For the parser tests and
    /// the benchmark: the maps count these frames like any other.
    pub fn test_run(
        &mut self,
        program: &str,
        frame: &[u8],
        gso_segs: u32,
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), aya::programs::ProgramError> {
        Kernel::test_run_on(&self.ebpf, program, frame, gso_segs, repeat)
    }

    /// [`Kernel::test_run`] on any loaded copy of the object, such as the
    /// benchmark's copy holding the pass-only programs.
    pub fn test_run_on(
        ebpf: &Ebpf,
        program: &str,
        frame: &[u8],
        gso_segs: u32,
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), aya::programs::ProgramError> {
        let mut ctx = [0u8; SKB_CTX_SIZE];
        ctx[SKB_GSO_SEGS_OFFSET..SKB_GSO_SEGS_OFFSET + 4].copy_from_slice(&gso_segs.to_ne_bytes());
        let opts = |with_ctx: bool| {
            let mut o = TestRunOptions::new();
            o.data_in = Some(frame);
            o.repeat = repeat;
            if with_ctx {
                o.ctx_in = Some(&ctx);
            }
            o
        };
        let result = if program == PROG_XDP || program == netmon_common::PROG_XDP_PASS {
            ebpf.program(program)
                .and_then(|p| <&Xdp>::try_from(p).ok())
                .expect("an XDP program of the object")
                .test_run(opts(false))?
        } else {
            ebpf.program(program)
                .and_then(|p| <&SchedClassifier>::try_from(p).ok())
                .expect("a TC program of the object")
                .test_run(opts(gso_segs > 1))?
        };
        Ok((result.return_value, result.duration))
    }
}

/// Index lines a half starts with (32,768 entries, 256 KiB).
const INITIAL_INDEX_LINES: u32 = 4096;

/// The flow cache's arrays, memory-mapped (read and written by the agent
/// only in a half no program uses; see [`Kernel::read_cache`]).
struct CacheMap {
    slots: Mapped<CacheSlot>,
    index: Mapped<IndexLine>,
    headers: Mapped<u64>,
    /// Flow slots per half.
    half: u32,
    /// Index lines each half uses in its current (or next) generation.
    lines: [u32; 2],
}

impl CacheMap {
    /// Maps the object's flow cache, index and headers, sized for `ncpus`
    /// CPUs of `half` flow slots per half.
    fn map(ebpf: &Ebpf, ncpus: usize, half: u32) -> io::Result<CacheMap> {
        let regions = ncpus * 2;
        let lines = INITIAL_INDEX_LINES.min(CacheLayout::index_lines(half));
        Ok(CacheMap {
            slots: Mapped::map(
                ebpf,
                FLOW_CACHE_MAP,
                regions * CacheLayout::slots(half) as usize,
            )?,
            index: Mapped::map(
                ebpf,
                CACHE_INDEX_MAP,
                regions * CacheLayout::index_lines(half) as usize,
            )?,
            headers: Mapped::map(
                ebpf,
                CACHE_HEADERS_MAP,
                regions * CacheLayout::HEADER as usize,
            )?,
            half,
            lines: [lines; 2],
        })
    }

    /// Calls `f` with each slot that `region` (CPU * 2 + `half`) claimed,
    /// then frees it (zeroes it), the index lines the half used and its
    /// header. Returns the flow slots it had claimed and the frames that
    /// found none. The caller guarantees no program writes the region
    /// meanwhile.
    fn drain(&mut self, region: usize, half: usize, mut f: impl FnMut(&CacheSlot)) -> (u64, u64) {
        let flow_slots = self.half as usize;
        let first_slot = region * CacheLayout::slots(self.half) as usize;
        let header = region * CacheLayout::HEADER as usize;
        let word = |w: u32| header + w as usize;
        // The programs never claim more than the region holds; the bounds
        // keep damaged headers from reaching past it.
        let flows = (self.headers.read(word(CacheLayout::COUNT)) as usize).min(flow_slots);
        let aggregates = (self.headers.read(word(CacheLayout::AGGREGATES)) as usize)
            .min(CacheLayout::slots(0) as usize);
        for i in (0..flows).chain(flow_slots..flow_slots + aggregates) {
            let slot = self.slots.read(first_slot + i);
            if slot.key.ifindex != 0 {
                f(&slot);
                self.slots.write(first_slot + i, CacheSlot::default());
            }
        }
        let first_line = region * CacheLayout::index_lines(self.half) as usize;
        for i in 0..self.lines[half] as usize {
            self.index.write(first_line + i, IndexLine::default());
        }
        let missed = self.headers.read(word(CacheLayout::MISSES));
        for w in [
            CacheLayout::COUNT,
            CacheLayout::INSERTS,
            CacheLayout::AGGREGATES,
            CacheLayout::MISSES,
        ] {
            self.headers.write(word(w), 0);
        }
        (flows as u64, missed)
    }

    /// The index lines for a half's next generation, given the most flow
    /// slots a CPU claimed in it and whether frames found none: four
    /// entries a flow, so the index is a quarter full and an eight-entry
    /// line rarely fills; sixteen times as many lines after misses (a
    /// burst of flows is indexed within a few intervals); shrinking by half
    /// at most per generation. A small index keeps what a frame touches in
    /// few pages.
    fn next_lines(&self, half: usize, claimed: u64, missed: bool) -> u32 {
        next_index_lines(
            self.lines[half],
            claimed,
            missed,
            CacheLayout::index_lines(self.half),
        )
    }
}

/// [`CacheMap::next_lines`] for a half that used `lines` of at most `most`.
fn next_index_lines(lines: u32, claimed: u64, missed: bool, most: u32) -> u32 {
    let lines = u64::from(lines);
    let fit = (claimed / 2).max(lines / 2);
    let want = if missed { fit.max(lines * 16) } else { fit };
    let most = u64::from(most);
    want.clamp(u64::from(MIN_INDEX_LINES).min(most), most) as u32
}

/// A memory-mapped `BPF_F_MMAPABLE` array of `T`.
struct Mapped<T> {
    base: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; access
// goes through `&mut self` or copies.
unsafe impl<T> Send for Mapped<T> {}

impl<T: Copy> Mapped<T> {
    /// Maps the first `len` elements of the object's array `name`.
    fn map(ebpf: &Ebpf, name: &str, len: usize) -> io::Result<Mapped<T>> {
        let map = ebpf
            .map(name)
            .expect("the flow cache's arrays are in the object");
        let aya::maps::Map::Array(data) = map else {
            unreachable!("{name} is an array")
        };
        let bytes = len * std::mem::size_of::<T>();
        // SAFETY: mapping a BPF_F_MMAPABLE array's fd, shared, for at most
        // its size (the kernel refuses more); the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(p.cast::<T>()).expect("mmap never maps at 0");
        Ok(Mapped { base, len })
    }

    fn read(&self, i: usize) -> T {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: in bounds (asserted) of a page-aligned mapping of `T`s.
        // Volatile: the kernel's programs write this memory.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(i)) }
    }

    fn write(&mut self, i: usize, value: T) {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_volatile(self.base.as_ptr().add(i), value) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe {
            libc::munmap(
                self.base.as_ptr().cast(),
                self.len * std::mem::size_of::<T>(),
            );
        }
    }
}

/// Sets entry `index` of the flow cache's control array: 0 the generation
/// (0 turns the cache off), 1 + h the index lines half h uses.
fn set_control(ebpf: &mut Ebpf, index: u32, value: u32) -> Result<(), aya::maps::MapError> {
    let mut control: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(CONTROL_MAP).expect("CONTROL is in the object"))?;
    control.set(index, &value, 0)
}

fn xdp(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROG_XDP)
        .and_then(|p| p.try_into().ok())
        .expect("the object has the XDP program")
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .expect("the object has the TC programs")
}

fn percpu_map<'a, K: aya::Pod>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<PerCpuHashMap<&'a MapData, K, Counter>, ReadError> {
    PerCpuHashMap::try_from(ebpf.map(name).expect("the object has the counting maps"))
        .map_err(|e| ReadError::Map(name, e))
}

/// Reads one map into `out`; returns whether the batch read worked.
fn read_map<K: aya::Pod>(
    map: &PerCpuHashMap<&MapData, K, Counter>,
    name: &'static str,
    ncpus: usize,
    try_batch: bool,
    bufs: &mut batch::Buffers<K, Counter>,
    out: &mut Vec<(K, Counter)>,
) -> Result<bool, ReadError> {
    if try_batch {
        let fd = map.map().fd().as_fd();
        match batch::for_each_percpu::<K, Counter>(fd, ncpus, bufs, |k, v| out.push((*k, sum(v)))) {
            Ok(()) => return Ok(true),
            Err(batch::BatchError::Unsupported) => out.clear(),
            Err(e) => return Err(ReadError::Batch(name, e)),
        }
    }
    for entry in map.iter() {
        match entry {
            Ok((k, v)) => out.push((k, sum(&v))),
            // The entry was deleted or evicted during the walk.
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(ReadError::Map(name, e)),
        }
    }
    Ok(false)
}

fn delete_all<K: aya::Pod>(ebpf: &mut Ebpf, name: &str, keys: &[K]) -> u64 {
    if keys.is_empty() {
        return 0;
    }
    let Ok(mut map) = PerCpuHashMap::<&mut MapData, K, Counter>::try_from(
        ebpf.map_mut(name)
            .expect("the object has the counting maps"),
    ) else {
        return 0;
    };
    keys.iter().filter(|k| map.remove(k).is_ok()).count() as u64
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
        // 64 MiB on 2 CPUs: 32 MiB each, 192 bytes a slot, less the
        // aggregate slots and headers.
        let slots = cache_slots_for(64 << 20, 2);
        assert_eq!(slots % SLOTS_MULTIPLE, 0);
        assert!((174_000..174_800).contains(&slots), "{slots}");
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

    #[test]
    fn an_index_fits_its_flows_grows_fast_and_shrinks_by_half() {
        let most = 100_000;
        // Four entries a flow: 2,000 flows in 1,000 lines of eight.
        assert_eq!(next_index_lines(1000, 2000, false, most), 1000);
        // Fewer flows: at most half as many lines at once.
        assert_eq!(next_index_lines(4096, 10, false, most), 2048);
        // Misses: sixteen times as many lines, or what the flows need.
        assert_eq!(next_index_lines(256, 2000, true, most), 4096);
        assert_eq!(next_index_lines(256, 90_000, true, most), 45_000);
        // Within bounds.
        assert_eq!(next_index_lines(50_000, 1_000_000, true, most), most);
        assert_eq!(next_index_lines(8, 0, false, most), MIN_INDEX_LINES);
        assert_eq!(
            next_index_lines(4, 0, false, 4),
            4,
            "a tiny cache's whole index"
        );
    }
}
