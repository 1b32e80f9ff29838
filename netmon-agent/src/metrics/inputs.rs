//! The collectors' slots as the encoder sees them for one scrape.

use crate::collect::{Latest, Reading, discovery, latency, netstats, system};

/// One collector's slot as the encoder sees it.
#[derive(Debug)]
pub enum Source<'a, R> {
    /// Turned off: no series at all.
    Disabled,
    /// Enabled, first cycle still running: `netmon_collector_up` 0.
    Pending,
    Ready(&'a Reading<R>),
}

impl<R> Clone for Source<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Source<'_, R> {}

impl<'a, R> Source<'a, R> {
    pub(super) fn of(slot: &Latest<R>, held: &'a Option<std::sync::Arc<Reading<R>>>) -> Self {
        match held {
            Some(r) => Source::Ready(r),
            None if slot.disabled() => Source::Disabled,
            None => Source::Pending,
        }
    }

    pub(super) fn reading(self) -> Option<&'a Reading<R>> {
        match self {
            Source::Ready(r) => Some(r),
            Source::Disabled | Source::Pending => None,
        }
    }
}

/// Every collector's slot for one scrape.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub system: Source<'a, system::Report>,
    pub interfaces: Source<'a, netstats::Report>,
    pub discovery: Source<'a, discovery::Report>,
    pub latency: Source<'a, latency::Report>,
}
