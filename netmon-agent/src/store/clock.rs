//! The store's time: an injected [`Clock`] ([`SystemClock`] in the agent,
//! [`ManualClock`] in tests) and the [`Timeline`] that notices when the
//! wall clock jumps.
//!
//! Samples are stamped with the wall clock, since that is what queries ask
//! for. Two things must not follow a wall clock that jumps:
//! - **Expiry and the size budget** count age from [`Now::expiry_ms`]: the
//!   wall clock, or the wall time as the steady clock tracks it when that is
//!   earlier. A jump forward (3 years, say) therefore ages nothing: data
//!   written before it expires once its retention has really passed, and
//!   data written after it is younger still. A jump backward makes the wall
//!   clock the earlier one: what was written before it lies in the future
//!   and is kept.
//! - **Folding** (see `retention.rs`) records each interval written below
//!   the folded watermark (after a jump backward) and folds it on its own,
//!   so nothing written at any time is left unfolded or folded twice.
//!
//! The steady clock is `CLOCK_BOOTTIME`: it never jumps and, unlike
//! `CLOCK_MONOTONIC`, counts time suspended, so a resume is not a jump. A
//! jump is a difference of more than [`JUMP_TOLERANCE_MS`] between the wall
//! time and the steady time passed since the previous reading; smaller
//! corrections (NTP slewing or stepping by a few seconds) are followed.
//! Each jump is logged with its size.
//!
//! The tracked time survives a restart of the agent within one boot: each
//! maintenance run saves it in the file with the steady time and the boot
//! ([`Saved`]), and the next start in the same boot goes on from there, so a
//! restart after a jump does not undo the protection, and a jump while the
//! agent was stopped is seen too. After a reboot the steady clock starts
//! over and the tracked time starts from the wall clock: a jump then cannot
//! be told from downtime (the units start after `time-sync.target`).

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tracing::{info, warn};

use super::{as_ms, epoch_ms};

/// Where the store reads the time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time, ms since the epoch.
    fn wall_ms(&self) -> u64;
    /// A clock that never jumps, counting time suspended.
    fn steady(&self) -> Duration;
    /// Which boot of the machine the steady clock counts from.
    fn boot(&self) -> u64;
}

/// The machine's clocks: `CLOCK_REALTIME` and `CLOCK_BOOTTIME`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        epoch_ms(SystemTime::now())
    }

    fn steady(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if rc != 0 {
            return Duration::ZERO;
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// A hash (FNV-1a) of `/proc/sys/kernel/random/boot_id`; 0 if
    /// unreadable (then a restart is treated as a reboot).
    fn boot(&self) -> u64 {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| {
                id.trim().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                }) | 1
            })
            .unwrap_or(0)
    }
}

/// A clock moved by hand, for tests: [`ManualClock::advance`] moves both
/// clocks, [`ManualClock::jump`] only the wall clock.
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicU64,
    steady: AtomicU64,
    boot: AtomicU64,
}

impl ManualClock {
    pub fn new(wall_ms: u64) -> ManualClock {
        ManualClock {
            wall: AtomicU64::new(wall_ms),
            steady: AtomicU64::new(1_000_000),
            boot: AtomicU64::new(1),
        }
    }

    /// The machine reboots: a new boot, the steady clock starts over.
    pub fn reboot(&self) {
        self.boot.fetch_add(1, Ordering::SeqCst);
        self.steady.store(1_000, Ordering::SeqCst);
    }

    /// Time passes: both clocks move by `ms`.
    pub fn advance(&self, ms: u64) {
        self.wall.fetch_add(ms, Ordering::SeqCst);
        self.steady.fetch_add(ms, Ordering::SeqCst);
    }

    /// The wall clock is set `by` ms forward (positive) or back; no time
    /// passes.
    pub fn jump(&self, by: i64) {
        let w = self.wall.load(Ordering::SeqCst);
        self.wall
            .store(w.saturating_add_signed(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall_ms(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn steady(&self) -> Duration {
        Duration::from_millis(self.steady.load(Ordering::SeqCst))
    }

    fn boot(&self) -> u64 {
        self.boot.load(Ordering::SeqCst)
    }
}

/// A wall-clock change this much larger or smaller than the steady time
/// that passed is a jump.
pub const JUMP_TOLERANCE_MS: u64 = 10_000;

/// The time at one reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The wall clock, ms since the epoch: samples are stamped with it, and
    /// folding completes buckets by it.
    pub wall_ms: u64,
    /// The time retention and the size budget count age from: the earlier
    /// of the wall clock and the wall time tracked by the steady clock.
    pub expiry_ms: u64,
}

/// The tracked time as saved in the file, to go on from after a restart
/// in the same boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub boot: u64,
    /// The steady clock at the reading, ms.
    pub steady_ms: u64,
    /// The tracked wall time then, ms since the epoch.
    pub tracked_ms: u64,
}

/// Reads a [`Clock`] and keeps the wall time as the steady clock has it.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    inner: Mutex<Tracked>,
}

#[derive(Debug, Default)]
struct Tracked {
    /// What an earlier run of the agent saved, until the first reading.
    resume: Option<Saved>,
    /// The boot of the readings.
    boot: u64,
    /// The previous reading: wall ms, steady ms.
    last: Option<(u64, u64)>,
    /// The wall time the steady clock tracks (equal to the wall clock
    /// until a jump).
    tracked: u64,
    /// Jumps seen.
    jumps: u64,
    /// The wall clock and the tracked time disagree.
    skewed: bool,
}

impl Timeline {
    /// Reads `clock`, logging a jump since the previous reading.
    pub(crate) fn now(&self, clock: &dyn Clock) -> Now {
        let wall = clock.wall_ms();
        let steady = as_ms(clock.steady());
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let boot = clock.boot();
        if t.last.is_none() {
            // The first reading: go on from the saved time in the same boot.
            t.boot = boot;
            if let Some(r) = t.resume.take()
                && r.boot == boot
                && boot != 0
                && r.steady_ms <= steady
            {
                t.last = Some((r.tracked_ms, r.steady_ms));
                t.tracked = r.tracked_ms;
            }
        }
        let tracked = match t.last {
            None => wall,
            Some((w0, s0)) => {
                let passed = steady.saturating_sub(s0);
                let expected = w0.saturating_add(passed);
                let jump = i128::from(wall) - i128::from(expected);
                let tracked = t.tracked.saturating_add(passed);
                let skew = i128::from(wall) - i128::from(tracked);
                if jump.unsigned_abs() > u128::from(JUMP_TOLERANCE_MS) {
                    t.jumps += 1;
                    warn!(
                        jump_ms = jump as i64,
                        skew_ms = skew as i64,
                        "The wall clock jumped. New samples are stamped with it; expiry keeps \
                         counting the time that really passed, and samples written at earlier \
                         times are still folded."
                    );
                }
                if skew.unsigned_abs() <= u128::from(JUMP_TOLERANCE_MS) {
                    if std::mem::take(&mut t.skewed) {
                        info!("The wall clock agrees with the time that passed again.");
                    }
                    wall
                } else {
                    t.skewed = true;
                    tracked
                }
            }
        };
        t.tracked = tracked;
        t.last = Some((wall, steady));
        Now {
            wall_ms: wall,
            expiry_ms: wall.min(tracked),
        }
    }

    /// Goes on from `saved` (read from the file) at the first reading, if
    /// the machine has not rebooted since.
    pub(crate) fn resume(&self, saved: Saved) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if t.last.is_none() {
            t.resume = Some(saved);
        }
    }

    /// The tracked time at the last reading, to save; `None` before one.
    pub(crate) fn saved(&self) -> Option<Saved> {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.last.map(|(_, steady_ms)| Saved {
            boot: t.boot,
            steady_ms,
            tracked_ms: t.tracked,
        })
    }

    /// Jumps seen so far.
    pub(crate) fn jumps(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).jumps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;
    const YEAR: u64 = 365 * 86_400_000;

    #[test]
    fn jumps_are_counted_and_expiry_time_never_runs_ahead() {
        let c = ManualClock::new(T0);
        let t = Timeline::default();
        assert_eq!(t.now(&c).expiry_ms, T0);
        c.advance(60_000);
        // Small steps are followed.
        c.jump(3_000);
        let n = t.now(&c);
        assert_eq!((n.wall_ms, n.expiry_ms), (T0 + 63_000, T0 + 63_000));
        assert_eq!(t.jumps(), 0);
        // Forward 3 years: expiry time follows the time that passed.
        c.advance(1_000);
        c.jump(3 * YEAR as i64);
        let n = t.now(&c);
        assert_eq!(n.wall_ms, T0 + 64_000 + 3 * YEAR);
        assert_eq!(n.expiry_ms, T0 + 64_000);
        assert_eq!(t.jumps(), 1);
        c.advance(10_000);
        assert_eq!(t.now(&c).expiry_ms, T0 + 74_000);
        // Back again: the two agree once more.
        c.jump(-(3 * YEAR as i64));
        let n = t.now(&c);
        assert_eq!((n.wall_ms, n.expiry_ms), (T0 + 74_000, T0 + 74_000));
        assert_eq!(t.jumps(), 2);
        // Backward 3 years: the wall clock is the earlier one.
        c.jump(-(3 * YEAR as i64));
        let n = t.now(&c);
        assert_eq!(
            (n.wall_ms, n.expiry_ms),
            (T0 + 74_000 - 3 * YEAR, T0 + 74_000 - 3 * YEAR)
        );
        assert_eq!(t.jumps(), 3);
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_jump_is_logged_with_its_size() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let c = ManualClock::new(T0);
            let t = Timeline::default();
            t.now(&c);
            c.advance(1_000);
            t.now(&c);
            c.jump(-(3 * YEAR as i64));
            t.now(&c);
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("The wall clock jumped").count(), 1, "{text}");
        assert!(text.contains(&format!("jump_ms=-{}", 3 * YEAR)), "{text}");
    }

    #[test]
    fn the_tracked_time_goes_on_after_a_restart_in_the_same_boot_only() {
        let c = ManualClock::new(T0);
        let t = Timeline::default();
        t.now(&c);
        c.advance(1_000);
        c.jump(3 * YEAR as i64);
        t.now(&c);
        let saved = t.saved().unwrap();
        assert_eq!(saved.tracked_ms, T0 + 1_000);
        // The agent restarts 5 s later: the jump still does not count.
        c.advance(5_000);
        let t2 = Timeline::default();
        t2.resume(saved);
        assert_eq!(t2.now(&c).expiry_ms, T0 + 6_000);
        // After a reboot the wall clock is all there is.
        c.reboot();
        let t3 = Timeline::default();
        t3.resume(t2.saved().unwrap());
        assert_eq!(t3.now(&c).expiry_ms, c.wall_ms());
    }

    #[test]
    fn the_system_clock_moves() {
        let c = SystemClock;
        let a = c.steady();
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.steady() > a);
        assert!(c.wall_ms() > T0 - 10 * YEAR);
        assert_ne!(c.boot(), 0, "boot_id is readable");
        assert_eq!(c.boot(), SystemClock.boot());
    }
}
