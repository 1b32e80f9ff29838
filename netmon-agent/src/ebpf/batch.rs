//! Reads a whole per-CPU hash map with `BPF_MAP_LOOKUP_BATCH`: one syscall per
//! few thousand entries instead of two per entry (aya has no batch API).
//!
//! Kernels without batch support for the map type answer `EINVAL` or
//! `ENOTSUPP`; callers then fall back to aya's per-key iterator.

use std::{
    io,
    mem::{self, MaybeUninit},
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel's internal "operation not supported", seen by userspace.
const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Why a batch read stopped.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The kernel cannot batch this map type; use per-key reads.
    #[error("BPF_MAP_LOOKUP_BATCH is not supported for this map")]
    Unsupported,
    /// Any other failure of the syscall.
    #[error("BPF_MAP_LOOKUP_BATCH failed")]
    Syscall(#[source] io::Error),
}

/// Buffers for [`for_each_percpu`], kept between reads: allocating them
/// afresh (hundreds of KiB, past malloc's mmap threshold) cost more page
/// faults than the read itself.
pub struct Buffers<K, V> {
    keys: Vec<MaybeUninit<K>>,
    values: Vec<MaybeUninit<V>>,
    /// Entries per syscall; grows when a hash bucket does not fit.
    chunk: usize,
}

impl<K, V> Default for Buffers<K, V> {
    fn default() -> Self {
        Buffers {
            keys: Vec::new(),
            values: Vec::new(),
            chunk: 4096,
        }
    }
}

/// Reads every entry of the per-CPU hash map `fd` whose values are `V` on
/// each of `ncpus` possible CPUs, and calls `f(key, per_cpu_values)` for each.
///
/// Entries added or removed while the walk runs may or may not be seen, as
/// with any map iteration; no entry is seen twice.
pub fn for_each_percpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    ncpus: usize,
    bufs: &mut Buffers<K, V>,
    mut f: impl FnMut(&K, &[V]),
) -> Result<(), BatchError> {
    // The kernel stores each CPU's value rounded up to 8 bytes.
    assert!(
        mem::size_of::<V>().is_multiple_of(8),
        "per-CPU value size must be a multiple of 8"
    );
    let Buffers {
        keys,
        values,
        chunk,
    } = bufs;
    // The batch token is opaque (a bucket index for hash maps); 8 bytes hold it.
    let mut in_token: u64 = 0;
    let mut out_token: u64 = 0;
    let mut first = true;
    loop {
        let chunk_len = *chunk;
        keys.resize_with(chunk_len, MaybeUninit::uninit);
        values.resize_with(chunk_len * ncpus, MaybeUninit::uninit);
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                (&raw const in_token) as u64
            },
            out_batch: (&raw mut out_token) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk_len as u32,
            map_fd: fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `attr` is a valid bpf_attr prefix; the key and value buffers
        // hold `chunk_len` keys and `chunk_len * ncpus` values, as `count` tells the
        // kernel; the tokens are 8-byte buffers that outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                mem::size_of::<BatchAttr>(),
            )
        };
        let err = (ret < 0).then(io::Error::last_os_error);
        // The kernel writes back how many entries it copied, also on ENOENT.
        let n = (attr.count as usize).min(chunk_len);
        match err.as_ref().and_then(io::Error::raw_os_error) {
            // ENOSPC: a hash bucket holds more entries than `chunk`; retry
            // the same position with room for it.
            Some(libc::ENOSPC) if n == 0 => {
                *chunk *= 2;
                continue;
            }
            Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP) if first && n == 0 => {
                return Err(BatchError::Unsupported);
            }
            None | Some(libc::ENOENT) => {}
            Some(_) => return Err(BatchError::Syscall(err.expect("errno is set"))),
        }
        for i in 0..n {
            // SAFETY: the kernel initialised the first `n` keys and the
            // `n * ncpus` values behind them; K and V are Pod.
            let (key, vals) = unsafe {
                (
                    keys[i].assume_init_ref(),
                    std::slice::from_raw_parts(values[i * ncpus].as_ptr(), ncpus),
                )
            };
            f(key, vals);
        }
        if err.is_some() {
            // ENOENT: the walk reached the end of the map.
            return Ok(());
        }
        in_token = out_token;
        first = false;
    }
}
