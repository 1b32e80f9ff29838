//! For the benchmark: the loaded object, and running a counting program on
//! a frame with BPF_PROG_TEST_RUN.

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use netmon_common::PROG_XDP;

use super::Kernel;

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
