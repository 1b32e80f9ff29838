//! What runs the agent, below `lib.rs`'s start-up and serving order: the
//! drain thread ([`drain`]), the interface [`watcher`], the history's file
//! and threads ([`history`]) and the start-up [`Error`].
//!
//! Every thread stops on one [`crate::shutdown::Stop`] (the drain, the
//! collectors, the store's writer and maintenance); the HTTP server stops
//! on the signal's future.

pub mod drain;
mod error;
pub mod history;
pub mod watcher;

pub use self::error::Error;
