//! Failed authentications by source: how many each address (an IPv6
//! address by its /64) made in its current window, in a table of bounded
//! size, and whether a source has used up `--auth-max-failures` within
//! `--auth-failure-window`. The keyring counts the failures and refuses.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// Failed authentications per source in the current window.
#[derive(Default)]
pub(crate) struct Failures {
    by_source: HashMap<IpAddr, (Instant, u32)>,
}

impl Failures {
    /// How long `source` stays refused at `now` (until its window ends),
    /// or `None` when it has fewer than `max_failures` failures in a window
    /// that has not ended.
    pub(crate) fn refused_for(
        &self,
        source: IpAddr,
        now: Instant,
        max_failures: u32,
        window: Duration,
    ) -> Option<Duration> {
        let &(start, count) = self.by_source.get(&source)?;
        let end = start + window;
        if count < max_failures || now >= end {
            return None;
        }
        Some(end.saturating_duration_since(now))
    }

    /// Counts a failure of `source` at `now`, starting a new window when
    /// its last one ended. The table holds at most `max_sources`: a new
    /// source first drops the ended windows, then the one that ends first;
    /// true when a source still in its window was forgotten.
    pub(crate) fn record(
        &mut self,
        source: IpAddr,
        now: Instant,
        window: Duration,
        max_sources: usize,
    ) -> bool {
        let table = &mut self.by_source;
        let mut evicted = false;
        if !table.contains_key(&source) && table.len() >= max_sources {
            table.retain(|_, (start, _)| now < *start + window);
            if table.len() >= max_sources {
                // The entry whose window ends first.
                let oldest = table.iter().min_by_key(|(_, (start, _))| *start);
                if let Some(oldest) = oldest.map(|(ip, _)| *ip) {
                    table.remove(&oldest);
                    evicted = true;
                }
            }
        }
        let entry = table.entry(source).or_insert((now, 0));
        if now >= entry.0 + window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        evicted
    }

    /// Sources in the table.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_source.len()
    }
}

/// Whom failures are counted against: the address, or an IPv6 address's
/// /64 (one host often holds a whole /64).
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit, the window's end and the bound, at chosen instants.
    #[test]
    fn windows_end_and_the_table_stays_bounded() {
        let (t0, window) = (Instant::now(), Duration::from_secs(60));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut f = Failures::default();
        assert_eq!(f.refused_for(a, t0, 2, window), None);
        assert!(!f.record(a, t0, window, 2));
        assert_eq!(f.refused_for(a, at(1), 2, window), None);
        assert!(!f.record(a, at(1), window, 2));
        assert_eq!(
            f.refused_for(a, at(10), 2, window),
            Some(Duration::from_secs(50))
        );
        assert_eq!(f.refused_for(a, at(60), 2, window), None, "window ended");
        // A failure after the window starts a new one.
        assert!(!f.record(a, at(61), window, 2));
        assert_eq!(f.refused_for(a, at(62), 2, window), None);
        // Full: ended windows go first, then the one that ends first.
        let (b, c, d) = (
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
            [10, 0, 0, 4].into(),
        );
        assert!(!f.record(b, at(62), window, 2));
        assert!(
            f.record(c, at(63), window, 2),
            "a went: its window ends first"
        );
        assert_eq!((f.len(), f.refused_for(a, at(64), 1, window)), (2, None));
        assert!(!f.record(d, at(200), window, 2), "both windows had ended");
        assert_eq!(f.len(), 1);
    }
}
