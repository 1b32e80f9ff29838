//! Rebuild when the bpf-linker binary changes: building this crate needs it,
//! and cargo cannot express a dependency on a binary.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
