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
//!   and names), each collector's families (per reading); the collectors'
//!   health and the per-request families (history, alerts, HTTP counters,
//!   push) are written at request time and concatenated in the same order
//!   as before, so the text is byte for byte what [`crate::metrics::encode`]
//!   writes.
//! - `/api/v1/devices`: the default answer's bytes, with the byte range of
//!   each device in it ([`super::devices::Answer`]): an unfiltered request
//!   is a reference-counted copy of those bytes, a filtered one a join of
//!   ranges.
//!
//! The drain thread warms both right after it publishes a snapshot
//! ([`Prebuilt::warm`]), so requests find them built; a request whose
//! inputs changed since (a new collector reading, a label) builds them once
//! under the part's lock while other requests for it wait.
//!
//! Memory: one copy of each answer (the last built), bounded by the device
//! cap (`--max-devices` for the devices answer, about 700 B a device) and
//! `/metrics`' series caps (`--metrics-max-devices`, `--metrics-max-flows`).

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

/// The cached parts; one per [`AppState`].
#[derive(Default)]
pub struct Prebuilt {
    metrics: Mutex<MetricsParts>,
    devices: Mutex<Option<DevicesEntry>>,
    /// `/api/v1/interfaces`, by snapshot and the interfaces collector's
    /// reading.
    interfaces: Mutex<Option<(Arc<Snapshot>, State, Bytes)>>,
    /// `/api/v1/flows` without parameters, by snapshot.
    flows: Mutex<Option<(Arc<Snapshot>, Bytes)>>,
}

impl std::fmt::Debug for Prebuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prebuilt")
    }
}

#[derive(Default)]
struct MetricsParts {
    traffic: Option<TrafficEntry>,
    /// Each collector's families by registry index, with the reading they
    /// were written from.
    sources: Vec<Option<SourceEntry>>,
    /// All of it with the collectors' health, and what that was written
    /// from: the traffic part and every collector's state.
    whole: Option<(Arc<str>, Vec<State>, Bytes)>,
}

/// A collector's families and the reading they were written from.
type SourceEntry = (Arc<dyn Published>, Arc<str>);

struct TrafficEntry {
    snapshot: Arc<Snapshot>,
    discovery: Option<Arc<dyn Published>>,
    names: Names,
    text: Arc<str>,
}

struct DevicesEntry {
    snapshot: Arc<Snapshot>,
    discovery: State,
    labels: BTreeMap<String, Label>,
    answer: Arc<devices::Answer>,
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
    /// Builds what the latest snapshot changed: `/metrics`' traffic part
    /// and the default devices answer (the drain calls this after each
    /// publication).
    pub fn warm(state: &AppState) {
        let states: Vec<(&'static dyn Source, State)> = state.telemetry.states().collect();
        let labels = labels::current(state);
        let snapshot = state.snapshot.get();
        state.prebuilt.metrics(
            &snapshot,
            &states,
            &state.metrics.limits,
            labels::names(&labels),
        );
        let discovery = state.telemetry.slot(CollectorName::Discovery).state();
        if let Err(e) = state.prebuilt.devices(&snapshot, discovery, labels) {
            tracing::warn!(error = %e, "Building the devices answer failed.");
        }
        let stats = state.telemetry.slot(CollectorName::Interfaces).state();
        if let Err(e) = state.prebuilt.interfaces(&snapshot, stats) {
            tracing::warn!(error = %e, "Building the interfaces answer failed.");
        }
        if let Err(e) = state.prebuilt.flows(&snapshot) {
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
        let mut entry = lock(&self.interfaces);
        if let Some((_, _, body)) = entry
            .as_ref()
            .filter(|(s, st, _)| Arc::ptr_eq(s, snapshot) && same_state(st, &stats))
        {
            return Ok(body.clone());
        }
        let body = Bytes::from(interfaces::body(snapshot, &stats)?);
        *entry = Some((Arc::clone(snapshot), stats, body.clone()));
        Ok(body)
    }

    /// `/api/v1/flows` without parameters (the top 100 by rate) for
    /// `snapshot`.
    pub(super) fn flows(&self, snapshot: &Arc<Snapshot>) -> serde_json::Result<Bytes> {
        let mut entry = lock(&self.flows);
        if let Some((_, body)) = entry.as_ref().filter(|(s, _)| Arc::ptr_eq(s, snapshot)) {
            return Ok(body.clone());
        }
        let body = Bytes::from(flows::default_body(snapshot)?);
        *entry = Some((Arc::clone(snapshot), body.clone()));
        Ok(body)
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
        let mut parts = lock(&self.metrics);
        let fresh = parts.traffic.as_ref().is_some_and(|t| {
            Arc::ptr_eq(&t.snapshot, snapshot)
                && match (&t.discovery, &discovery) {
                    (None, None) => true,
                    (Some(a), Some(b)) => same_reading(a, b),
                    _ => false,
                }
                && t.names == names
        });
        if !fresh {
            let text =
                metrics::encode_traffic(snapshot, metrics::discovery_of(states), limits, &names);
            parts.traffic = Some(TrafficEntry {
                snapshot: Arc::clone(snapshot),
                discovery,
                names,
                text: text.into(),
            });
        }
        parts.sources.resize(states.len(), None);
        let traffic = parts
            .traffic
            .as_ref()
            .map_or_else(|| Arc::from(""), |t| Arc::clone(&t.text));
        if let Some((_, _, whole)) = parts.whole.as_ref().filter(|(t, was, _)| {
            Arc::ptr_eq(t, &traffic)
                && was.len() == states.len()
                && was.iter().zip(states).all(|(a, (_, b))| same_state(a, b))
        }) {
            return whole.clone();
        }
        let mut texts: Vec<Arc<str>> = Vec::with_capacity(states.len() + 1);
        texts.push(Arc::clone(&traffic));
        for ((src, st), cached) in states.iter().zip(parts.sources.iter_mut()) {
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
        let health = metrics::encode_health(states);
        let mut out =
            String::with_capacity(texts.iter().map(|t| t.len()).sum::<usize>() + health.len());
        for t in &texts {
            out.push_str(t);
        }
        out.push_str(&health);
        let whole = Bytes::from(out);
        let was = states.iter().map(|(_, st)| st.clone()).collect();
        parts.whole = Some((traffic, was, whole.clone()));
        whole
    }

    /// The devices answer for `snapshot`, discovery's `state` and `labels`:
    /// the cached one when they are what it was built from.
    pub(super) fn devices(
        &self,
        snapshot: &Arc<Snapshot>,
        discovery: State,
        labels: BTreeMap<String, Label>,
    ) -> serde_json::Result<Arc<devices::Answer>> {
        let mut entry = lock(&self.devices);
        if let Some(e) = entry.as_ref().filter(|e| {
            Arc::ptr_eq(&e.snapshot, snapshot)
                && same_state(&e.discovery, &discovery)
                && e.labels == labels
        }) {
            return Ok(Arc::clone(&e.answer));
        }
        let answer = Arc::new(devices::Answer::build(snapshot, &discovery, &labels)?);
        *entry = Some(DevicesEntry {
            snapshot: Arc::clone(snapshot),
            discovery,
            labels,
            answer: Arc::clone(&answer),
        });
        Ok(answer)
    }
}
