//! Shared harness for netmon-agent's privileged integration tests.
//!
//! Each test file that needs namespaces starts with `mod common;` and
//! `use common::*;` (every submodule is re-exported whole). [`netns`] builds and tears down network namespaces and
//! topologies ([`netns::Pair`], [`netns::Lan`]) and runs code or processes
//! inside them; [`traffic`] makes traffic from inside them and builds raw
//! frames. Everything is blocking std code and needs root
//! ([`netns::require_root`]); `cargo xtask test` runs the tests as root.
//! Privileged tests start with `skip_unless_root!()` ([`root`]), so a plain
//! `cargo test` as a normal user skips them and says so once per binary.

#![allow(
    dead_code,
    unused_imports,
    reason = "every test binary compiles this module and uses a different part of it"
)]

pub mod agent;
pub mod browser;
pub mod netns;
pub mod root;
pub mod seed001;
pub mod traffic;

pub use agent::*;
pub use browser::*;
pub use netns::*;
pub use root::*;
pub use seed001::seed001_mismatches;
pub use traffic::*;
