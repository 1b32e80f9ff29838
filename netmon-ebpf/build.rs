//! Rebuild when the bpf-linker binary changes (building this crate needs it,
//! and cargo cannot express a dependency on a binary), and pass the linker
//! the code generation options of the programs.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // Header fields sit at any offset in a packet; without this LLVM splits
    // every 2- and 4-byte packet load into single bytes. The kernel allows
    // misaligned packet and map access on architectures with efficient
    // unaligned access (x86-64, arm64); it is the verifier's call on others.
    println!("cargo:rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
}
