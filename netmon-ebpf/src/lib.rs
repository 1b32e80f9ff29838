//! Library target of netmon-ebpf. The programs live in the `netmon` binary
//! (src/main.rs); this target exists so cargo metadata sees a library.
#![no_std]
