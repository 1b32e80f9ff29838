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
    CONTROL_MAP, CacheSlot, Counter, DEFAULT_FLOW_CACHE_SLOTS, DEFAULT_FLOW_ENTRIES,
    DEFAULT_MAC_ENTRIES, FLOW_CACHE_MAP, FLOW_CACHE_SLOTS, FLOW_MAP, FlowKey, GLOBALS_MAP, Globals,
    MAC_MAP, MacKey, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
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
    /// Flow-cache slots per half and CPU: a power of two >= 2, or 0 to turn
    /// the cache off (every frame then goes to the hash maps).
    pub flow_cache_slots: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            mac_entries: DEFAULT_MAC_ENTRIES,
            flow_entries: DEFAULT_FLOW_ENTRIES,
            flow_cache_slots: DEFAULT_FLOW_CACHE_SLOTS,
        }
    }
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
        // The programs need a power of two >= 2 even with the cache off.
        let half = sizes.flow_cache_slots.max(2);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAC_MAP, sizes.mac_entries)
            .map_max_entries(FLOW_MAP, sizes.flow_entries)
            .map_max_entries(FLOW_CACHE_MAP, ncpus as u32 * 2 * half)
            .override_global(FLOW_CACHE_SLOTS, &half, true)
            .load(OBJECT)
            .map_err(LoadError::Object)?;
        let program = |name| move |source| LoadError::Program { name, source };
        xdp(&mut ebpf).load().map_err(program(PROG_XDP))?;
        for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
            classifier(&mut ebpf, name).load().map_err(program(name))?;
        }
        let cache = CacheMap::map(&ebpf, ncpus * 2 * half as usize).map_err(LoadError::Mmap)?;
        let generation = u32::from(sizes.flow_cache_slots != 0);
        set_generation(&mut ebpf, generation).map_err(LoadError::Control)?;
        info!(
            ncpus,
            mac_entries = sizes.mac_entries,
            flow_entries = sizes.flow_entries,
            flow_cache_slots = sizes.flow_cache_slots,
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
        set_generation(&mut self.ebpf, next).map_err(|e| ReadError::Map(CONTROL_MAP, e))?;
        self.generation = next;
        self.grace_period();
        let half = self.sizes.flow_cache_slots as usize;
        for cpu in 0..self.ncpus {
            let first = (cpu * 2 + (done & 1) as usize) * half;
            self.cache.drain(first..first + half, |s| {
                out.push((
                    s.key,
                    Counter {
                        bytes: s.bytes,
                        packets: u64::from(s.packets),
                    },
                ))
            });
        }
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
            self.ebpf
                .program(program)
                .and_then(|p| <&Xdp>::try_from(p).ok())
                .expect("an XDP program of the object")
                .test_run(opts(false))?
        } else {
            self.ebpf
                .program(program)
                .and_then(|p| <&SchedClassifier>::try_from(p).ok())
                .expect("a TC program of the object")
                .test_run(opts(gso_segs > 1))?
        };
        Ok((result.return_value, result.duration))
    }
}

/// The flow cache's array, memory-mapped (read and written by the agent
/// only in a half no program uses; see [`Kernel::read_cache`]).
struct CacheMap {
    slots: std::ptr::NonNull<CacheSlot>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; access
// goes through `&mut self`.
unsafe impl Send for CacheMap {}

impl CacheMap {
    /// Maps the first `len` slots of the object's flow cache.
    fn map(ebpf: &Ebpf, len: usize) -> io::Result<CacheMap> {
        let map = ebpf
            .map(FLOW_CACHE_MAP)
            .expect("FLOW_CACHE is in the object");
        let aya::maps::Map::Array(data) = map else {
            unreachable!("FLOW_CACHE is an array")
        };
        let bytes = len * std::mem::size_of::<CacheSlot>();
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
        let slots = std::ptr::NonNull::new(p.cast::<CacheSlot>()).expect("mmap never maps at 0");
        Ok(CacheMap { slots, len })
    }

    /// Calls `f` with each used slot in `range`, then frees it (zeroes it).
    /// The caller guarantees no program writes these slots meanwhile.
    fn drain(&mut self, range: std::ops::Range<usize>, mut f: impl FnMut(&CacheSlot)) {
        assert!(range.end <= self.len, "slots {range:?} of {}", self.len);
        for i in range {
            // SAFETY: in bounds (asserted); the memory is the kernel's array,
            // page-aligned and 64-byte slots, not written by anyone else
            // while this runs. Volatile: the kernel's programs read it.
            unsafe {
                let p = self.slots.as_ptr().add(i);
                let slot = std::ptr::read_volatile(p);
                if slot.key.ifindex != 0 {
                    f(&slot);
                    std::ptr::write_volatile(p, CacheSlot::default());
                }
            }
        }
    }
}

impl Drop for CacheMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe {
            libc::munmap(
                self.slots.as_ptr().cast(),
                self.len * std::mem::size_of::<CacheSlot>(),
            );
        }
    }
}

/// Sets the flow cache's generation (0 turns the cache off).
fn set_generation(ebpf: &mut Ebpf, generation: u32) -> Result<(), aya::maps::MapError> {
    let mut control: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(CONTROL_MAP).expect("CONTROL is in the object"))?;
    control.set(0, &generation, 0)
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
