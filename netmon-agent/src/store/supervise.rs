//! The store's threads survive a panic: [`spawn`] runs a thread's body
//! again after a panic, with a growing pause ([`backoff`]), keeping the
//! body's state (the writer's queue of intervals), so nothing queued is
//! lost. While it waits, the thread's part of the history is `degraded` in
//! `/health` with the panic's message; the body clears that once it works
//! again.
//!
//! Tests make a thread panic with [`PANIC_ENV`] (`NETMON_TEST_STORE_PANIC=
//! writer,maintenance`): each named thread panics once, on its
//! [`INJECTED_AT`]th run. Nothing else reads it, and without it
//! [`Injector::tick`] is a test of a `None`.

use std::{
    any::Any,
    io,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use tracing::{error, info};

use super::{Store, status::Part};
use crate::shutdown::Stop;

/// The environment variable naming the store threads to panic once, for
/// tests (see the module docs).
pub const PANIC_ENV: &str = "NETMON_TEST_STORE_PANIC";
/// The run (of the writer's intervals, of maintenance) that panics.
pub const INJECTED_AT: u32 = 5;

/// First pause before a restart.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A body that ran this long before panicking starts over at
/// [`FIRST_BACKOFF`].
const STEADY: Duration = Duration::from_secs(300);

/// The pause before the restart that follows `n` panics in a row (n ≥ 1):
/// 1 s, 2 s, 4 s, ... up to 60 s.
pub fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(6))
        .min(MAX_BACKOFF)
}

/// A panic's message.
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Runs `body(state, store, stop)` on a thread named `name` until it
/// returns (which it does once `stop` is set). A panic is logged, counted
/// ([`super::status::Status::restarted`]) and set as `part`'s condition;
/// after [`backoff`] the body runs again with the same state, unless the
/// agent is stopping.
pub fn spawn<S, F>(
    name: &str,
    part: Part,
    store: Arc<Store>,
    stop: Stop,
    mut state: S,
    mut body: F,
) -> io::Result<thread::JoinHandle<()>>
where
    S: Send + 'static,
    F: FnMut(&mut S, &Store, &Stop) + Send + 'static,
{
    let thread = name.to_owned();
    thread::Builder::new().name(name.into()).spawn(move || {
        let mut panics = 0u32;
        loop {
            let started = Instant::now();
            let run = catch_unwind(AssertUnwindSafe(|| body(&mut state, &store, &stop)));
            let Err(p) = run else { return };
            if started.elapsed() >= STEADY {
                panics = 0;
            }
            panics += 1;
            let pause = backoff(panics);
            let msg = panic_message(p.as_ref());
            store.status().restarted(part);
            store.status().set(
                part,
                format!("the {thread} thread panicked ({msg}); restarting it in {pause:?}"),
            );
            error!(thread, panic = msg, restart_in = ?pause, "A history thread panicked; restarting it.");
            if stop.wait_until(Instant::now() + pause) {
                return;
            }
            info!(thread, "Restarting the history thread.");
        }
    })
}

/// Panics once on the [`INJECTED_AT`]th [`Injector::tick`] when
/// [`PANIC_ENV`] names its part (tests only; see the module docs).
#[derive(Debug)]
pub struct Injector(Option<u32>);

impl Injector {
    pub fn from_env(part: Part) -> Injector {
        let named =
            std::env::var(PANIC_ENV).is_ok_and(|v| v.split(',').any(|p| p.trim() == part.name()));
        Injector(named.then_some(INJECTED_AT))
    }

    /// Call once per run of the body.
    pub fn tick(&mut self) {
        if let Some(n) = &mut self.0 {
            *n -= 1;
            if *n == 0 {
                self.0 = None;
                panic!("injected by {PANIC_ENV}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::store::{Retention, status::State};

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let s: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_panicking_body_is_restarted_with_its_state_and_the_status_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(&dir.path().join("h.redb"), Retention::default()).unwrap());
        let stop = Stop::default();
        let (tx, rx) = mpsc::channel();
        let handle = spawn(
            "test-store",
            Part::Writer,
            Arc::clone(&store),
            stop.clone(),
            0u32,
            move |runs: &mut u32, store: &Store, stop: &Stop| {
                *runs += 1;
                if *runs == 1 {
                    panic!("boom");
                }
                store.status().clear(Part::Writer);
                tx.send(*runs).unwrap();
                stop.wait_until(Instant::now() + Duration::from_secs(60));
            },
        )
        .unwrap();
        // Degraded while it waits to restart.
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = loop {
            let r = store.status().report();
            if r.state == State::Degraded {
                break r;
            }
            assert!(Instant::now() < deadline, "never degraded");
            thread::sleep(Duration::from_millis(5));
        };
        assert!(seen.reason.as_deref().unwrap().contains("boom"), "{seen:?}");
        assert_eq!(seen.restarts, [1, 0]);
        // Restarted with the same state, and ok again.
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 2);
        assert_eq!(store.status().report().state, State::Ok);
        stop.stop();
        handle.join().unwrap();
    }

    #[test]
    fn the_injector_fires_once_only_when_named() {
        let mut off = Injector(None);
        for _ in 0..10 {
            off.tick();
        }
        let mut on = Injector(Some(2));
        on.tick();
        assert!(catch_unwind(AssertUnwindSafe(|| on.tick())).is_err());
        on.tick();
    }
}
