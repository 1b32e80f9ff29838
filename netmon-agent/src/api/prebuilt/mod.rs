//! Prebuilt answers: what the hot endpoints serve, built once per change of
//! what they are made of rather than once per request.
//!
//! Each part is cached with the inputs it was built from, compared by
//! identity: the drain's [`Snapshot`] and a collector's reading are
//! `Arc`s that are replaced, never changed, so "the same `Arc`" is "the same
//! generation" (the cache holds its inputs, so an address cannot be reused
//! while it is compared). The devices' labels, read from the history file
//! on each request so every answer is current, are compared by value.
//!
//! - `/metrics`: the traffic core's families (per drain, discovery reading
//!   and names), each collector's families (per reading) and the
//!   collectors' health (per their states), as one shared buffer; the
//!   per-request families (history, alerts, HTTP counters, push) follow it,
//!   in the same order as before, so the text is byte for byte what
//!   [`crate::metrics::encode`] writes.
//! - `/api/v1/devices`: the default answer's bytes, with the byte range of
//!   each device in it ([`super::devices::Answer`]): an unfiltered request
//!   is a reference-counted copy of those bytes, a filtered one a join of
//!   ranges.
//! - `/api/v1/interfaces` and `/api/v1/flows` without parameters: bytes.
//!
//! The drain thread builds them for each snapshot before it publishes it
//! ([`Prebuilt::warm`]), outside every lock, so requests neither wait for a
//! build nor find a published snapshot without its answers. A request
//! whose inputs changed since (a new collector reading, a label) builds the
//! part itself.
//!
//! Memory: the answers of the last two snapshots (the published one and
//! the one about to be), bounded by the device cap (`--max-devices` for the
//! devices answer, 470-780 B a device) and `/metrics`' series caps
//! (`--metrics-max-devices`, `--metrics-max-flows`).

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::body::Bytes;

use super::{AppState, devices, flows, interfaces, labels};
use crate::{
    collect::{CollectorName, Published, Source, State},
    metrics::{self, Names},
    snapshot::Snapshot,
    store::labels::Label,
};

/// Generations of each answer kept: the published snapshot's and the one
/// the drain is about to publish.
const KEPT: usize = 2;

/// The cached parts; one per [`AppState`].
#[derive(Default)]
pub struct Prebuilt {
    /// `/metrics`' traffic families, by snapshot, discovery reading and
    /// names.
    traffic: Kept<TrafficKey, Arc<str>>,
    /// Each collector's families by registry index, with the reading they
    /// were written from.
    sources: Mutex<Vec<Option<SourceEntry>>>,
    /// The traffic part, the collectors' parts and their health, by the
    /// traffic part and every collector's state.
    whole: Kept<(Arc<str>, Vec<State>), Bytes>,
    /// `/api/v1/devices`, by snapshot, discovery's state and the labels.
    devices: Kept<DevicesKey, Arc<devices::Answer>>,
    /// `/api/v1/interfaces`, by snapshot and the interfaces collector's
    /// state.
    interfaces: Kept<(Arc<Snapshot>, State), Bytes>,
    /// `/api/v1/flows` without parameters, by snapshot.
    flows: Kept<Arc<Snapshot>, Bytes>,
}

impl std::fmt::Debug for Prebuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prebuilt")
    }
}

/// What the devices answer is built from: the snapshot, discovery's state
/// and the labels.
type DevicesKey = (Arc<Snapshot>, State, BTreeMap<String, Label>);

/// A collector's families and the reading they were written from.
type SourceEntry = (Arc<dyn Published>, Arc<str>);

struct TrafficKey {
    snapshot: Arc<Snapshot>,
    discovery: Option<Arc<dyn Published>>,
    names: Names,
}

/// The last [`KEPT`] values built, newest first, with what they were built
/// from.
struct Kept<K, V>(Mutex<Vec<(K, V)>>);

impl<K, V> Default for Kept<K, V> {
    fn default() -> Self {
        Kept(Mutex::new(Vec::new()))
    }
}

impl<K, V: Clone> Kept<K, V> {
    /// The value built from `key` (as `same` compares keys), else built
    /// now by `build`, outside the lock, and kept.
    fn get_or_build<E>(
        &self,
        key: K,
        same: impl Fn(&K, &K) -> bool,
        build: impl FnOnce(&K) -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some((_, v)) = lock(&self.0).iter().find(|(k, _)| same(k, &key)) {
            return Ok(v.clone());
        }
        let v = build(&key)?;
        let mut kept = lock(&self.0);
        kept.insert(0, (key, v.clone()));
        kept.truncate(KEPT);
        Ok(v)
    }
}

/// The same reading (or the same absence of one).
fn same_state(a: &State, b: &State) -> bool {
    match (a, b) {
        (State::Disabled, State::Disabled) | (State::Pending, State::Pending) => true,
        (State::Ready(a), State::Ready(b)) => same_reading(a, b),
        _ => false,
    }
}

fn same_reading(a: &Arc<dyn Published>, b: &Arc<dyn Published>) -> bool {
    // The data pointers: two vtables for one type must not make a reading
    // look new.
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Prebuilt {
    /// Builds the answers for `snapshot`, which the drain is about to
    /// publish: `/metrics`' prebuilt part and the default devices,
    /// interfaces and flows answers.
    pub fn warm(state: &AppState, snapshot: &Arc<Snapshot>) {
        let states: Vec<(&'static dyn Source, State)> = state.telemetry.states().collect();
        let labels = labels::current(state);
        let p = &state.prebuilt;
        p.metrics(
            snapshot,
            &states,
            &state.metrics.limits,
            labels::names(&labels),
        );
        let discovery = state.telemetry.slot(CollectorName::Discovery).state();
        if let Err(e) = p.devices(snapshot, discovery, labels) {
            tracing::warn!(error = %e, "Building the devices answer failed.");
        }
        let stats = state.telemetry.slot(CollectorName::Interfaces).state();
        if let Err(e) = p.interfaces(snapshot, stats) {
            tracing::warn!(error = %e, "Building the interfaces answer failed.");
        }
        if let Err(e) = p.flows(snapshot) {
            tracing::warn!(error = %e, "Building the flows answer failed.");
        }
    }

    /// `/api/v1/interfaces` for `snapshot` and the interfaces collector's
    /// `stats`.
    pub(super) fn interfaces(
        &self,
        snapshot: &Arc<Snapshot>,
        stats: State,
    ) -> serde_json::Result<Bytes> {
        self.interfaces.get_or_build(
            (Arc::clone(snapshot), stats),
            |a, b| Arc::ptr_eq(&a.0, &b.0) && same_state(&a.1, &b.1),
            |(s, st)| interfaces::body(s, st).map(Bytes::from),
        )
    }

    /// `/api/v1/flows` without parameters (the top 100 by rate) for
    /// `snapshot`.
    pub(super) fn flows(&self, snapshot: &Arc<Snapshot>) -> serde_json::Result<Bytes> {
        self.flows
            .get_or_build(Arc::clone(snapshot), Arc::ptr_eq, |s| {
                flows::default_body(s).map(Bytes::from)
            })
    }

    /// The traffic core's, the collectors' and the collectors' health
    /// families, as [`crate::metrics::encode`] writes them.
    pub fn metrics(
        &self,
        snapshot: &Arc<Snapshot>,
        states: &[(&'static dyn Source, State)],
        limits: &metrics::Limits,
        names: Names,
    ) -> Bytes {
        let discovery = states
            .iter()
            .find(|(src, _)| src.name() == CollectorName::Discovery)
            .and_then(|(_, st)| match st {
                State::Ready(r) => Some(Arc::clone(r)),
                State::Disabled | State::Pending => None,
            });
        let key = TrafficKey {
            snapshot: Arc::clone(snapshot),
            discovery,
            names,
        };
        let same = |a: &TrafficKey, b: &TrafficKey| {
            Arc::ptr_eq(&a.snapshot, &b.snapshot)
                && match (&a.discovery, &b.discovery) {
                    (None, None) => true,
                    (Some(a), Some(b)) => same_reading(a, b),
                    _ => false,
                }
                && a.names == b.names
        };
        let Ok(traffic) = self.traffic.get_or_build(key, same, |k| {
            let text = metrics::encode_traffic(
                &k.snapshot,
                metrics::discovery_of(states),
                limits,
                &k.names,
            );
            Ok::<_, std::convert::Infallible>(Arc::<str>::from(text))
        });
        let was = states.iter().map(|(_, st)| st.clone()).collect();
        let same = |a: &(Arc<str>, Vec<State>), b: &(Arc<str>, Vec<State>)| {
            Arc::ptr_eq(&a.0, &b.0)
                && a.1.len() == b.1.len()
                && a.1.iter().zip(&b.1).all(|(a, b)| same_state(a, b))
        };
        let Ok(whole) = self
            .whole
            .get_or_build((traffic, was), same, |(traffic, _)| {
                Ok::<_, std::convert::Infallible>(self.concatenate(traffic, states))
            });
        whole
    }

    /// `traffic`, each collector's families (cached by reading) and their
    /// health, in one buffer.
    fn concatenate(&self, traffic: &str, states: &[(&'static dyn Source, State)]) -> Bytes {
        let mut texts: Vec<Arc<str>> = Vec::with_capacity(states.len());
        {
            let mut sources = lock(&self.sources);
            sources.resize(states.len(), None);
            for ((src, st), cached) in states.iter().zip(sources.iter_mut()) {
                let State::Ready(r) = st else {
                    *cached = None;
                    continue;
                };
                let hit = cached.as_ref().filter(|(was, _)| same_reading(was, r));
                let text = match hit {
                    Some((_, text)) => Arc::clone(text),
                    None => {
                        let text: Arc<str> = metrics::encode_source(*src, &**r).into();
                        *cached = Some((Arc::clone(r), Arc::clone(&text)));
                        text
                    }
                };
                texts.push(text);
            }
        }
        let health = metrics::encode_health(states);
        let mut out = String::with_capacity(
            traffic.len() + texts.iter().map(|t| t.len()).sum::<usize>() + health.len(),
        );
        out.push_str(traffic);
        for t in &texts {
            out.push_str(t);
        }
        out.push_str(&health);
        Bytes::from(out)
    }

    /// The devices answer for `snapshot`, discovery's `state` and `labels`:
    /// the cached one when they are what it was built from.
    pub(super) fn devices(
        &self,
        snapshot: &Arc<Snapshot>,
        discovery: State,
        labels: BTreeMap<String, Label>,
    ) -> serde_json::Result<Arc<devices::Answer>> {
        self.devices.get_or_build(
            (Arc::clone(snapshot), discovery, labels),
            |a, b| Arc::ptr_eq(&a.0, &b.0) && same_state(&a.1, &b.1) && a.2 == b.2,
            |(s, st, labels)| devices::Answer::build(s, st, labels).map(Arc::new),
        )
    }
}
