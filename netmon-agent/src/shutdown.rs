//! The stop signal the agent's own threads wait on.
//!
//! A leaf: it uses nothing of the crate (see docs/design.md, "Layering").

use std::{
    sync::{Arc, Condvar, Mutex},
    time::Instant,
};

/// Tells threads to stop, waking them from their sleep: the collectors' and
/// the store's maintenance thread share one.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    pub fn stop(&self) {
        let (flag, cond) = &*self.0;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cond.notify_all();
    }

    pub fn stopped(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps until `deadline` or until stopped; true when stopped.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let (flag, cond) = &*self.0;
        let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = cond
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
