//! Program entry points, one file per hook.

mod bench;
mod tc;
mod xdp;
