//! Skipping the privileged tests when `cargo test` runs as a normal user.
//!
//! A privileged test starts with [`skip_unless_root!`](crate::skip_unless_root):
//! as root it does nothing; otherwise it returns from the test, and the first
//! such test of the binary writes one line saying the privileged tests were
//! skipped. `cargo xtask test` runs everything as root.

use std::{io::Write, sync::Once};

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the calling test should be skipped (not root); the first call in
/// the process writes one line about it straight to the stderr handle, which
/// libtest does not capture.
pub fn skip_privileged(binary: &str) -> bool {
    static NOTE: Once = Once::new();
    if is_root() {
        return false;
    }
    NOTE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "netmon: skipping the privileged tests of {binary}: they need root \
             (run them with cargo xtask test)"
        );
    });
    true
}

/// Returns from the calling test unless it runs as root (see the module docs).
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if $crate::common::root::skip_privileged(env!("CARGO_CRATE_NAME")) {
            return;
        }
    };
}
