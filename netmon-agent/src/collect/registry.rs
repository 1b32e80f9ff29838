//! The registry of sources: every collector, type-erased behind
//! [`Source`], in the order of [`super::SOURCES`] (one line per collector,
//! in `collect/mod.rs`).
//!
//! Everything that serves or stores collector data iterates the registry
//! rather than naming collectors: the runner ([`Telemetry::spawn`]),
//! `/metrics` (each source writes its families through
//! [`crate::exposition`]), the history recorder (each source turns a new
//! reading into [`Sample`]s), `GET /api/v1/<name>` and its OpenAPI schema
//! (the sources with a [`super::Collector::VIEW`]), the preflight and the
//! privilege dropping (each source's [`Need`]s).
//!
//! A reading is published as an `Arc<dyn Published>` (a [`Reading`] of the
//! collector's report): serving it as JSON or writing its families needs no
//! knowledge of its type; a part of the agent that does need the typed
//! report (the devices view reads discovery's) asks [`Telemetry::get`],
//! which downcasts.

use std::{
    any::Any,
    fmt,
    marker::PhantomData,
    sync::{Arc, RwLock},
    thread::JoinHandle,
    time::Duration,
};

use serde::Serialize;
use utoipa::openapi::{RefOr, Schema};

use super::{Collector, CollectorName, Context, Cycle, Options, Reading, SOURCES};
use crate::{exposition, shutdown::Stop};

/// A capability a collector needs while it is on (beyond what the traffic
/// core keeps: CAP_BPF and CAP_NET_ADMIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Raw and packet sockets.
    NetRaw,
    /// Reading files whatever their owner (kept only when held).
    DacReadSearch,
    /// Reading other processes' `/proc/<pid>/exe` (kept only when held).
    SysPtrace,
}

/// A capability a collector uses, and what for (said by the preflight).
#[derive(Clone, Copy, Debug)]
pub struct Need {
    pub cap: Cap,
    /// What it is used for ("ARP sweeps").
    pub what: &'static str,
    /// What the collector runs without when the capability is missing.
    pub without: &'static str,
}

/// The OpenAPI schemas of a view: pushes every schema its body needs and
/// returns the name of the body's.
pub type ViewSchema = fn(&mut Vec<(String, RefOr<Schema>)>) -> String;

/// The schemas of a [`Reading`] of `R`, as `GET /api/v1/<name>` answers
/// it: `Reading_<R's schema name>` (`allOf` the report, inline, and the
/// cycle), `R`'s own and every schema they use.
pub fn view_schema<R: utoipa::ToSchema + Serialize + 'static>(
    out: &mut Vec<(String, RefOr<Schema>)>,
) -> String {
    use utoipa::PartialSchema;
    let name = format!("Reading_{}", R::name());
    let mut reading = <Reading<R> as PartialSchema>::schema();
    // The flattened report is inlined, as `#[utoipa::path]` does it.
    if let RefOr::T(Schema::AllOf(all)) = &mut reading
        && let Some(first) = all.items.first_mut()
    {
        *first = R::schema();
    }
    out.push((name.clone(), reading));
    out.push((R::name().into_owned(), R::schema()));
    <Reading<R> as utoipa::ToSchema>::schemas(out);
    name
}

/// A family of history series a source writes (`<name>/<labels>`): its
/// name, kind and fields, in stored order. The store knows the traffic
/// core's families and those the registry's sources declare
/// ([`super::Collector::SERIES`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SeriesFamily {
    pub name: &'static str,
    pub kind: SeriesKind,
    pub fields: &'static [&'static str],
}

/// How a series family's values add up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeriesKind {
    /// Deltas over intervals: summed.
    Counter,
    /// Values at an instant: min, avg, max, last.
    Gauge,
}

/// One history sample a source contributes: its series (one of its
/// [`SeriesFamily`]s, with labels) and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub family: &'static SeriesFamily,
    pub labels: Vec<String>,
    pub values: SampleValues,
}

/// A sample's values, as the store keeps them.
#[derive(Clone, Debug, PartialEq)]
pub enum SampleValues {
    /// Deltas over an interval of `interval_ms`.
    Counter { interval_ms: u32, deltas: Vec<u64> },
    /// Values; NaN where unavailable.
    Gauge(Vec<f64>),
}

/// A collector as the rest of the agent sees it.
pub trait Source: Sync {
    fn name(&self) -> CollectorName;
    /// The capabilities it needs while on.
    fn needs(&self) -> &'static [Need];
    /// The history series families it writes.
    fn series(&self) -> &'static [SeriesFamily];
    /// Whether it has a `GET /api/v1/<name>` view, and that view's schema.
    fn view(&self) -> Option<ViewSchema>;
    /// How often it runs, with these options.
    fn interval(&self, opts: &Options) -> Duration;
    /// Starts it on a thread of its own, publishing into `slot`.
    fn spawn(&self, opts: &Options, ctx: Context, slot: &Slot, stop: Stop) -> JoinHandle<()>;
    /// Its `/metrics` families from a reading it published.
    fn metrics(&self, reading: &dyn Published, out: &mut Vec<exposition::Family>);
    /// A fresh state for [`Source::history`].
    fn history_state(&self) -> Box<dyn Any + Send>;
    /// Its history samples from a new reading; `since` is the time since
    /// the start of the previous reading recorded.
    fn history(
        &self,
        state: &mut (dyn Any + Send),
        reading: &dyn Published,
        since: Option<Duration>,
        out: &mut Vec<Sample>,
    );
}

/// A published reading, whatever its report's type.
pub trait Published: Any + Send + Sync {
    fn collection(&self) -> &Cycle;
    /// The reading as the JSON body of its view.
    fn json(&self) -> serde_json::Result<Vec<u8>>;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<R: Serialize + Send + Sync + 'static> Published for Reading<R> {
    fn collection(&self) -> &Cycle {
        &self.collection
    }

    fn json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// Picks a collector's options out of [`Options`] (implemented by the
/// registry's macro).
pub trait Select: Collector {
    fn select(opts: &Options) -> &Self::Options;
}

/// A collector type registered as a [`Source`].
pub struct Registered<C>(PhantomData<fn() -> C>);

impl<C> Registered<C> {
    pub const NEW: Self = Registered(PhantomData);
}

fn reading<C: Collector>(r: &dyn Published) -> Option<&Reading<C::Report>> {
    r.as_any().downcast_ref()
}

impl<C: Select> Source for Registered<C> {
    fn name(&self) -> CollectorName {
        C::NAME
    }

    fn needs(&self) -> &'static [Need] {
        C::NEEDS
    }

    fn series(&self) -> &'static [SeriesFamily] {
        C::SERIES
    }

    fn view(&self) -> Option<ViewSchema> {
        C::VIEW
    }

    fn interval(&self, opts: &Options) -> Duration {
        C::interval(C::select(opts))
    }

    fn spawn(&self, opts: &Options, ctx: Context, slot: &Slot, stop: Stop) -> JoinHandle<()> {
        let opts = C::select(opts);
        let interval = C::interval(opts);
        super::spawn(C::new(opts, &stop), interval, ctx, slot.clone(), stop)
    }

    fn metrics(&self, r: &dyn Published, out: &mut Vec<exposition::Family>) {
        if let Some(r) = reading::<C>(r) {
            C::metrics(&r.report, out);
        }
    }

    fn history_state(&self) -> Box<dyn Any + Send> {
        Box::new(C::History::default())
    }

    fn history(
        &self,
        state: &mut (dyn Any + Send),
        r: &dyn Published,
        since: Option<Duration>,
        out: &mut Vec<Sample>,
    ) {
        if let (Some(state), Some(r)) = (state.downcast_mut::<C::History>(), reading::<C>(r)) {
            C::history(state, r, since, out);
        }
    }
}

/// The state of a collector's slot.
#[derive(Clone)]
pub enum State {
    /// Turned off with `--disable`.
    Disabled,
    /// Enabled, first cycle not finished yet.
    Pending,
    Ready(Arc<dyn Published>),
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Disabled => f.write_str("Disabled"),
            State::Pending => f.write_str("Pending"),
            State::Ready(r) => write!(f, "Ready({:?})", r.collection()),
        }
    }
}

impl State {
    pub fn reading(&self) -> Option<&dyn Published> {
        match self {
            State::Ready(r) => Some(&**r),
            State::Disabled | State::Pending => None,
        }
    }
}

/// The latest reading of one collector, shared by its thread and the
/// readers.
#[derive(Clone, Debug)]
pub struct Slot(Arc<RwLock<State>>);

impl Default for Slot {
    fn default() -> Self {
        Slot(Arc::new(RwLock::new(State::Disabled)))
    }
}

impl Slot {
    pub fn state(&self) -> State {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, state: State) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// The latest reading, typed; `None` when there is none (or it is not
    /// a reading of `R`).
    pub fn get<R: Send + Sync + 'static>(&self) -> Option<Arc<Reading<R>>> {
        match self.state() {
            State::Ready(r) => r.into_any().downcast().ok(),
            State::Disabled | State::Pending => None,
        }
    }
}

/// Every registered collector's latest reading, in registry order.
#[derive(Clone, Debug)]
pub struct Telemetry(Arc<[Slot]>);

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry(SOURCES.iter().map(|_| Slot::default()).collect())
    }
}

impl Telemetry {
    /// Starts every enabled collector.
    pub fn spawn(&self, opts: &Options, ctx: &Context, stop: &Stop) -> Vec<JoinHandle<()>> {
        let ctx = Context {
            stop: stop.clone(),
            telemetry: self.clone(),
            ..ctx.clone()
        };
        SOURCES
            .iter()
            .zip(self.0.iter())
            .filter(|(s, _)| opts.enabled(s.name()))
            .map(|(s, slot)| {
                slot.set(State::Pending);
                s.spawn(opts, ctx.clone(), slot, stop.clone())
            })
            .collect()
    }

    /// Each source with its slot's current state.
    pub fn states(&self) -> impl Iterator<Item = (&'static dyn Source, State)> + '_ {
        SOURCES.iter().copied().zip(self.0.iter().map(Slot::state))
    }

    /// The slot of collector `name`.
    pub fn slot(&self, name: CollectorName) -> &Slot {
        let i = SOURCES.iter().position(|s| s.name() == name);
        // Every name has its source: the registry's macro makes both.
        &self.0[i.unwrap_or_default()]
    }

    /// Collector `C`'s latest reading, typed.
    pub fn get<C: Collector>(&self) -> Option<Arc<Reading<C::Report>>> {
        self.slot(C::NAME).get()
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, time::SystemTime};

    use clap::ValueEnum;

    use super::*;
    use crate::collect::system::System;

    /// `--disable` takes the names the API, the logs and `/metrics` use.
    #[test]
    fn every_source_has_one_name_everywhere() {
        let names: Vec<CollectorName> = SOURCES.iter().map(|s| s.name()).collect();
        assert_eq!(names, CollectorName::value_variants());
        for n in names {
            assert_eq!(n.to_possible_value().unwrap().get_name(), n.as_str());
        }
    }

    /// No two families of the history share a name (a source's family
    /// colliding with the traffic core's, or another source's).
    #[test]
    fn history_families_are_unique() {
        let all: Vec<&str> = crate::store::Family::all()
            .map(crate::store::Family::as_str)
            .collect();
        let unique: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
        for src in SOURCES {
            for f in src.series() {
                assert!(!f.fields.is_empty(), "{} has no fields", f.name);
            }
        }
    }

    #[derive(Serialize)]
    struct Answer {
        answer: u32,
    }

    #[test]
    fn a_published_reading_is_typed_json_and_health() {
        let t = Telemetry::default();
        assert!(t.get::<System>().is_none());
        assert!(t.states().all(|(_, s)| matches!(s, State::Disabled)));
        let reading = Reading {
            collection: Cycle {
                started: SystemTime::UNIX_EPOCH,
                finished: SystemTime::UNIX_EPOCH,
                wall: Duration::from_millis(3),
                cpu: Duration::from_millis(1),
                cycles: 1,
                cpu_total: Duration::from_millis(1),
                failures: 0,
            },
            report: Answer { answer: 42 },
        };
        // A reading of the wrong type is not handed out as the system's.
        t.slot(CollectorName::System)
            .set(State::Ready(Arc::new(reading)));
        assert!(t.get::<System>().is_none());
        let (src, state) = t.states().next().unwrap();
        assert_eq!(src.name(), CollectorName::System);
        let r = state.reading().unwrap();
        assert_eq!(r.collection().cycles, 1);
        let json: serde_json::Value = serde_json::from_slice(&r.json().unwrap()).unwrap();
        assert_eq!(json["collection"]["wall_seconds"], 0.003);
        assert_eq!(json["answer"], 42);
        // The system source ignores what is not its report.
        let mut out = Vec::new();
        src.metrics(r, &mut out);
        assert!(out.is_empty());
    }
}
