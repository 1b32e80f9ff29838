//! Host telemetry: one collector a module, each behind the [`Collector`]
//! trait, all of them listed once in [`SOURCES`] (the registry, see
//! [`registry`]).
//!
//! Every collector runs on its own thread at its own interval (set per
//! collector on the command line), so a slow one (a sweep, a probe waiting
//! for replies, a filesystem that hangs) never delays the others or the
//! traffic drain. After each cycle the runner publishes the collector's
//! report as a [`Reading`] in its slot of [`Telemetry`], which the API,
//! `/metrics` and the history read.
//!
//! A collector reports what the machine lacks as [`Avail::Unavailable`]
//! inside its report, never as zero and never as an error. A collector that
//! panics is logged and kept running; its previous reading stays published.
//!
//! Adding a collector: its module (the [`Collector`] impl: options, report,
//! `collect`, and what it contributes: `/metrics` families, history series,
//! the capabilities it needs, whether it has a `GET /api/v1/<name>` view),
//! one line in the `registry!` list below, and its row in the README (the
//! recipe is the README's "Adding a collector"). The runner, the `/metrics`
//! encoder, the history recorder, the API routes and the OpenAPI document,
//! the preflight and the privilege dropping iterate the registry.
//!
//! Collectors sit below the API, `/metrics` and the configuration: they use
//! [`crate::units`], [`crate::ifaces`], [`crate::shutdown`],
//! [`crate::exposition`] and the latest [`crate::snapshot`], never `api`,
//! `metrics` or `config` (checked by tests/layering.rs).

pub mod compliance;
pub mod containers;
pub mod discovery;
pub mod interfaces;
pub mod latency;
pub mod names;
pub mod packages;
pub mod registry;
pub mod security;
pub mod system;
pub mod vendor;

use std::{
    collections::HashSet,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use clap::ValueEnum;
use serde::Serialize;
use tracing::{debug, error, warn};

pub use self::registry::{
    Need, Published, Sample, SampleValues, SeriesFamily, SeriesKind, Slot, Source, State,
    Telemetry, ViewSchema, view_schema,
};
use crate::{shutdown::Stop, snapshot::Shared};

/// One source of telemetry: what it reads ([`Collector::collect`]) and
/// what it contributes to the rest of the agent.
pub trait Collector: Send + Sized + 'static {
    /// Name in logs, options, the API and `/metrics` (`collector` label).
    const NAME: CollectorName;
    /// What one cycle produces.
    type Report: Serialize + Send + Sync + 'static;
    /// Its command-line options (a `clap::Args` group, flattened into the
    /// agent's by the registry).
    type Options: clap::Args + clap::FromArgMatches + Clone + std::fmt::Debug;
    /// What its history contribution keeps between readings (`()` when
    /// nothing).
    type History: Default + Send + 'static;
    /// The capabilities it needs while on.
    const NEEDS: &'static [Need] = &[];
    /// The history series families its samples belong to.
    const SERIES: &'static [SeriesFamily] = &[];
    /// `Some(view_schema::<Report>)` when it has a `GET /api/v1/<name>` view
    /// answering its latest reading.
    const VIEW: Option<ViewSchema> = None;

    fn new(opts: &Self::Options, stop: &Stop) -> Self;

    /// How often it runs.
    fn interval(opts: &Self::Options) -> Duration;

    /// Takes one reading. Runs on the collector's own thread, so it may
    /// block (within reason: the next cycle starts only when it returns).
    fn collect(&mut self, ctx: &Context) -> Self::Report;

    /// Its `/metrics` families from a report.
    fn metrics(_report: &Self::Report, _out: &mut Vec<crate::exposition::Family>) {}

    /// Its history samples from a reading not recorded yet; `since` is the
    /// time since the previous one recorded started.
    fn history(
        _state: &mut Self::History,
        _reading: &Reading<Self::Report>,
        _since: Option<Duration>,
        _out: &mut Vec<Sample>,
    ) {
    }
}

/// What a collector may read besides its own sources.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The traffic core's latest snapshot: watched interfaces, and the
    /// devices (MACs) and flows the eBPF counters saw.
    pub traffic: Shared,
    /// Set when the agent stops: a cycle that waits (a sweep, probes) ends
    /// early rather than holding up shutdown.
    pub stop: Stop,
    /// Every collector's latest reading, read-only: a collector may build
    /// on another's (security reads discovery's address claims).
    pub telemetry: Telemetry,
}

/// A value, or why the machine cannot provide it. Serialized as the value
/// itself, or as `{"unavailable": "<reason>"}`; its schema is `oneOf` those
/// two.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Avail<T> {
    Value(T),
    /// Why the machine cannot provide the value.
    Unavailable {
        unavailable: String,
    },
}

impl<T> Avail<T> {
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Avail::Unavailable {
            unavailable: reason.into(),
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Avail::Value(v) => Some(v),
            Avail::Unavailable { .. } => None,
        }
    }
}

/// One published cycle of a collector: the report, with the cycle's timing
/// under `collection`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reading<R> {
    pub collection: Cycle,
    #[serde(flatten)]
    pub report: R,
}

/// When and at what cost a cycle ran.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub struct Cycle {
    /// When the cycle started and ended (RFC 3339).
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub started: SystemTime,
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub finished: SystemTime,
    /// Wall time and this thread's CPU time for the cycle, in seconds.
    #[serde(rename = "wall_seconds", serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub wall: Duration,
    #[serde(rename = "cpu_seconds", serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub cpu: Duration,
    /// Cycles completed so far (this one included), and their CPU time.
    pub cycles: u64,
    #[serde(rename = "cpu_seconds_total", serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub cpu_total: Duration,
    /// Cycles that panicked (their report was dropped).
    pub failures: u64,
}

pub(crate) fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::units::time(*t))
}

pub(crate) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Logs each problem once, when it first appears, and again only after it
/// went away and came back: a broken sensor does not flood the log.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    seen: HashSet<String>,
}

impl Problems {
    /// Logs the problems not present last cycle, forgets those gone now,
    /// and returns the ones it logged.
    pub(crate) fn report(&mut self, collector: CollectorName, now: Vec<String>) -> Vec<String> {
        let now: HashSet<String> = now.into_iter().collect();
        let mut new: Vec<String> = now.difference(&self.seen).cloned().collect();
        new.sort();
        for p in &new {
            warn!(%collector, problem = %p, "Collector input problem (logged once until it changes).");
        }
        self.seen = now;
        new
    }
}

/// This thread's CPU time (user + system).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `collector` every `interval` on a thread of its own until `stop`,
/// publishing each report in `slot`.
pub fn spawn<C: Collector>(
    mut collector: C,
    interval: Duration,
    ctx: Context,
    slot: Slot,
    stop: Stop,
) -> JoinHandle<()> {
    slot.set(State::Pending);
    thread::Builder::new()
        .name(format!("netmon-{}", C::NAME))
        .spawn(move || {
            let mut cycles = 0u64;
            let mut failures = 0u64;
            let mut cpu_total = Duration::ZERO;
            let mut next = Instant::now();
            loop {
                let started = SystemTime::now();
                let t0 = Instant::now();
                let cpu0 = thread_cpu_time();
                let report = catch_unwind(AssertUnwindSafe(|| collector.collect(&ctx)));
                let cpu = thread_cpu_time().saturating_sub(cpu0);
                let wall = t0.elapsed();
                cycles += 1;
                cpu_total += cpu;
                match report {
                    Ok(report) => {
                        debug!(collector = %C::NAME, ?wall, ?cpu, "Collected.");
                        slot.set(State::Ready(Arc::new(Reading {
                            collection: Cycle {
                                started,
                                finished: SystemTime::now(),
                                wall,
                                cpu,
                                cycles,
                                cpu_total,
                                failures,
                            },
                            report,
                        })));
                    }
                    Err(_) => {
                        failures += 1;
                        error!(collector = %C::NAME, "The collector panicked; keeping its previous reading and retrying next interval.");
                    }
                }
                next += interval;
                let now = Instant::now();
                if next < now {
                    next = now + interval;
                }
                if stop.wait_until(next) {
                    break;
                }
            }
        })
        .expect("spawning a collector thread")
}

/// Declares the registry: for each collector (in this order everywhere:
/// `--disable`, the runner, `/metrics`, the history, the API), its
/// [`CollectorName`] variant with its help, its options' field and help
/// heading, and its type. Generates [`CollectorName`], [`Options`] and
/// [`SOURCES`].
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident $field:ident: $collector:ty, $heading:literal; )*) => {
        /// The collectors, as named on the command line and in the API.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum CollectorName {
            $( $(#[$doc])* $variant, )*
        }

        impl CollectorName {
            pub fn as_str(self) -> &'static str {
                match self {
                    $( CollectorName::$variant => stringify!($field), )*
                }
            }
        }

        /// Collector options, grouped on the command line.
        #[derive(Clone, Debug, clap::Args)]
        #[group(id = "collector-options")]
        pub struct Options {
            /// Turn a collector off (repeatable, or comma-separated).
            #[arg(
                long = "disable",
                value_name = "COLLECTOR",
                value_enum,
                value_delimiter = ',',
                env = "NETMON_DISABLE"
            )]
            pub disabled: Vec<CollectorName>,
            $(
                #[command(flatten, next_help_heading = $heading)]
                pub $field: <$collector as Collector>::Options,
            )*
        }

        $(
            impl registry::Select for $collector {
                fn select(opts: &Options) -> &<$collector as Collector>::Options {
                    &opts.$field
                }
            }
        )*

        /// Every collector, as a [`Source`].
        pub static SOURCES: &[&dyn Source] = &[
            $( &registry::Registered::<$collector>::NEW, )*
        ];
    };
}

registry! {
    /// CPU, load, memory, filesystems, temperatures, uptime, host info.
    System system: system::System, "System collector";
    /// Per-interface kernel statistics, link state and speed.
    Interfaces interfaces: interfaces::Interfaces, "Interfaces collector";
    /// Devices on the watched networks: neighbour tables, ARP/NDP probes.
    Discovery discovery: discovery::Discovery, "Discovery collector";
    /// ICMP echo round-trip times and loss.
    Latency latency: latency::Latency, "Latency collector";
    /// Seed 004's ten CIS checks, their evidence and the score.
    Compliance compliance: compliance::Compliance, "Compliance collector";
    /// dpkg's package inventory and its changes.
    Packages packages: packages::Packages, "Packages collector";
    /// Threat checks: processes run from temporary directories or with
    /// deleted executables; ARP spoofing and gateway impersonation.
    Security security: security::Security, "Security collector";
    /// Docker's or Podman's containers, with their traffic from the eBPF counters.
    Containers containers: containers::Containers, "Containers collector";
}

impl std::fmt::Display for CollectorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Options {
    pub fn enabled(&self, name: CollectorName) -> bool {
        !self.disabled.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(u32);

    impl Collector for Counting {
        const NAME: CollectorName = CollectorName::System;
        type Report = u32;
        type Options = system::Options;
        type History = ();
        fn new(_: &system::Options, _: &Stop) -> Self {
            Counting(0)
        }
        fn interval(_: &system::Options) -> Duration {
            Duration::from_millis(10)
        }
        fn collect(&mut self, _: &Context) -> u32 {
            self.0 += 1;
            assert!(self.0 != 2, "the second cycle panics");
            self.0
        }
    }

    #[test]
    fn runner_publishes_survives_a_panic_and_stops() {
        let slot = Slot::default();
        let stop = Stop::default();
        let t = spawn(
            Counting(0),
            Duration::from_millis(10),
            Context::default(),
            slot.clone(),
            stop.clone(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while slot.get::<u32>().is_none_or(|r| r.report < 3) {
            assert!(Instant::now() < deadline, "no third reading");
            thread::sleep(Duration::from_millis(5));
        }
        let r = slot.get::<u32>().unwrap();
        assert_eq!(r.collection.failures, 1);
        assert!(r.collection.cycles >= 3);
        stop.stop();
        t.join().unwrap();
    }

    #[test]
    fn unavailable_serializes_with_its_reason() {
        let a: Avail<u32> = Avail::unavailable("no sensors");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"unavailable":"no sensors"}"#
        );
        assert_eq!(serde_json::to_string(&Avail::Value(3)).unwrap(), "3");
    }
}
