//! The hub's hosts: a bounded table of the hosts that pushed, each with
//! its latest report in memory and its history in a redb file of its own,
//! `<state_dir>/hosts/<host>.redb`, written by the agent's store code.
//!
//! One file per host rather than a host label in one file's series names:
//! each host gets the store's retention tiers and size budget for itself
//! (`--host-history-budget`), so one chatty host cannot push another's
//! history out; a write locks only its host's file, so hosts do not queue
//! behind each other's fsync; forgetting a host is deleting a file; and
//! the series are named as in any netmon history (`host`), so the store's
//! queries serve them unchanged.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use super::report::{Figures, Kind, Report};
use crate::store::{
    Family, History, Interval, Retention, SeriesKey, Store, StoreError, Tier, Values, epoch_ms,
};

/// The hub's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_hosts: usize,
    pub retention: Retention,
    pub push_interval: Duration,
    pub stale_intervals: u32,
}

impl Limits {
    /// A host that has not pushed for this long is stale.
    pub fn stale_after(&self) -> Duration {
        self.push_interval * self.stale_intervals
    }
}

/// What the hub counted (`GET /api/v1/hub`).
#[derive(Default)]
pub struct Counters {
    pub ingested: AtomicU64,
    pub unauthorized: AtomicU64,
    pub forbidden: AtomicU64,
    pub too_large: AtomicU64,
    pub bad_body: AtomicU64,
    pub bad_encoding: AtomicU64,
    pub too_many_hosts: AtomicU64,
    pub write_failures: AtomicU64,
    /// Hosts removed (`DELETE /api/v1/hosts/{host}`).
    pub removed: AtomicU64,
}

/// [`Counters`] read.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountersView {
    hosts: usize,
    max_hosts: usize,
    ingested: u64,
    removed: u64,
    refused: BTreeMap<&'static str, u64>,
    write_failures: u64,
}

/// A host's latest report.
#[derive(Clone)]
pub struct Latest {
    kind: Kind,
    received_ms: u64,
    at_ms: u64,
    figures: Figures,
    alerts: Option<Value>,
    pub doc: Arc<Value>,
}

pub struct Host {
    name: String,
    path: PathBuf,
    store: Store,
    /// The devices' and flows' totals of the newest report taken; held
    /// through each ingest, so a host's reports are taken one at a time.
    totals: Mutex<super::traffic::Totals>,
    latest: Mutex<Option<Latest>>,
    /// The newest sample time written, for the next interval's length.
    last_at_ms: Mutex<Option<u64>>,
    /// The figures of the newest stored sample when the file was opened:
    /// what the summary shows until the host pushes again.
    restored: Option<Figures>,
}

/// A host as `GET /api/v1/hosts` lists it. After a restart of the hub, a
/// host that has not pushed yet shows its last stored sample's figures,
/// with `lastSeen` null and `stale` true.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    host: String,
    /// When its last report arrived (null: none since the hub started;
    /// `lastSampleTime` then says when its history ends).
    last_seen: Option<String>,
    last_sample_time: Option<String>,
    stale: bool,
    source: Option<Kind>,
    #[serde(flatten)]
    figures: Figures,
    /// The snapshot's active alerts; null when it carries none.
    alerts: Option<Value>,
}

/// Why a report was not taken.
#[derive(Debug)]
pub enum Refusal {
    TooManyHosts(usize),
    Store(StoreError),
}

pub struct Hosts {
    dir: PathBuf,
    pub limits: Limits,
    table: RwLock<BTreeMap<String, Arc<Host>>>,
    pub counters: Counters,
    /// When this hub started (ms): an agent that started later has
    /// totals all new to it.
    started_ms: u64,
}

fn rfc3339(ms: u64) -> String {
    crate::units::time(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

impl Hosts {
    /// Opens every host file under `<state_dir>/hosts` (at most
    /// `max_hosts`; the rest are logged and left alone).
    pub fn open(state_dir: &Path, limits: Limits) -> Result<Hosts, StoreError> {
        let dir = state_dir.join("hosts");
        fs::create_dir_all(&dir).map_err(|source| StoreError::Dir {
            path: dir.clone(),
            source,
        })?;
        let hosts = Hosts {
            dir,
            limits,
            table: RwLock::new(BTreeMap::new()),
            counters: Counters::default(),
            started_ms: epoch_ms(SystemTime::now()),
        };
        let mut names: Vec<String> = fs::read_dir(&hosts.dir)
            .map_err(|source| StoreError::Dir {
                path: hosts.dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                let host = n.strip_suffix(".redb")?;
                super::tokens::check_name(host).ok()?;
                Some(host.to_owned())
            })
            .collect();
        names.sort();
        for name in names {
            match hosts.get_or_open(&name) {
                Ok(_) => {}
                Err(Refusal::TooManyHosts(n)) => {
                    warn!(host = %name, max_hosts = n, "More host files than --max-hosts: not opened.");
                }
                Err(Refusal::Store(e)) => {
                    warn!(host = %name, error = %e, "Cannot open the host's history file.");
                }
            }
        }
        Ok(hosts)
    }

    fn get(&self, name: &str) -> Option<Arc<Host>> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn get_or_open(&self, name: &str) -> Result<Arc<Host>, Refusal> {
        if let Some(h) = self.get(name) {
            return Ok(h);
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = table.get(name) {
            return Ok(Arc::clone(h));
        }
        if table.len() >= self.limits.max_hosts {
            return Err(Refusal::TooManyHosts(self.limits.max_hosts));
        }
        let path = self.dir.join(format!("{name}.redb"));
        let store = Store::open(&path, self.limits.retention).map_err(Refusal::Store)?;
        let last = store
            .latest(1)
            .ok()
            .and_then(|r| r.first().map(|r| r.at_ms));
        let restored = last.and_then(|at| {
            let h = store
                .query(Family::Host.as_str(), at, at + 1, Some(Tier::Raw), at)
                .ok()?;
            h.points.last().map(|p| Figures::from_stored(&p.values))
        });
        info!(host = %name, path = %path.display(), "Opened the host's history.");
        let path = path.clone();
        let host = Arc::new(Host {
            name: name.to_owned(),
            path,
            store,
            totals: Mutex::default(),
            latest: Mutex::new(None),
            last_at_ms: Mutex::new(last),
            restored,
        });
        table.insert(name.to_owned(), Arc::clone(&host));
        Ok(host)
    }

    /// Records `report` (blocking: one redb transaction with fsync).
    pub fn ingest(&self, report: Report, received_ms: u64) -> Result<(), Refusal> {
        let host = self.get_or_open(&report.host)?;
        let push_ms = self.limits.push_interval.as_millis() as u64;
        let mut totals = host.totals.lock().unwrap_or_else(PoisonError::into_inner);
        let (length_ms, newest) = {
            let last = host
                .last_at_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match *last {
                Some(prev) if report.at_ms > prev => (report.at_ms - prev, true),
                Some(_) => (push_ms, false),
                None => (push_ms, true),
            }
        };
        let length_ms = u32::try_from(length_ms).unwrap_or(u32::MAX);
        let mut samples = vec![(
            SeriesKey::new(Family::Host, &[]),
            Values::Gauge(report.figures.values()),
        )];
        // Taken once written. A late report adds no traffic: the newer
        // totals hold it.
        let mut next = totals.clone();
        if newest && report.kind == Kind::Snapshot {
            samples.extend(next.samples(&report.doc, length_ms, self.started_ms));
        }
        let iv = Interval {
            at_ms: report.at_ms,
            length_ms,
            samples,
        };
        // Maintenance holds the file for a moment now and then: wait for it.
        let mut tries = 0;
        loop {
            match host.store.write(&iv) {
                Ok(()) => break,
                Err(StoreError::Busy) if tries < 40 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => {
                    self.counters.write_failures.fetch_add(1, Relaxed);
                    return Err(Refusal::Store(e));
                }
            }
        }
        *totals = next;
        {
            let mut last = host
                .last_at_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *last = Some(last.map_or(report.at_ms, |l| l.max(report.at_ms)));
        }
        let mut latest = host.latest.lock().unwrap_or_else(PoisonError::into_inner);
        // A queued report delivered late goes to the history only.
        if latest.as_ref().is_none_or(|l| l.at_ms <= report.at_ms) {
            *latest = Some(Latest {
                kind: report.kind,
                received_ms,
                at_ms: report.at_ms,
                figures: report.figures,
                alerts: report.alerts,
                doc: Arc::new(report.doc),
            });
        } else if let Some(l) = latest.as_mut() {
            l.received_ms = received_ms;
        }
        self.counters.ingested.fetch_add(1, Relaxed);
        Ok(())
    }

    fn summary(&self, h: &Host, now_ms: u64) -> Summary {
        let latest = h
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let last_at = *h.last_at_ms.lock().unwrap_or_else(PoisonError::into_inner);
        let stale_ms = self.limits.stale_after().as_millis() as u64;
        let seen = latest.as_ref().map(|l| l.received_ms);
        Summary {
            host: h.name.clone(),
            last_seen: seen.map(rfc3339),
            last_sample_time: last_at.map(rfc3339),
            stale: seen.is_none_or(|s| now_ms.saturating_sub(s) > stale_ms),
            source: latest.as_ref().map(|l| l.kind),
            figures: latest
                .as_ref()
                .map(|l| &l.figures)
                .or(h.restored.as_ref())
                .cloned()
                .unwrap_or_default(),
            alerts: latest.and_then(|l| l.alerts),
        }
    }

    /// Every host, by name.
    pub fn summaries(&self) -> Vec<Summary> {
        let now = epoch_ms(SystemTime::now());
        let hosts: Vec<Arc<Host>> = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        hosts.iter().map(|h| self.summary(h, now)).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// One host's summary and latest report, if it is known.
    pub fn one(&self, name: &str) -> Option<(Summary, Option<Arc<Value>>)> {
        let h = self.get(name)?;
        let doc = h
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|l| Arc::clone(&l.doc));
        Some((self.summary(&h, epoch_ms(SystemTime::now())), doc))
    }

    /// One host's `series` (its `host` series when `None`) from `from_ms`
    /// on; [`StoreError::UnknownSeries`] when the host never stored it.
    pub fn history(
        &self,
        name: &str,
        series: Option<&str>,
        from_ms: u64,
        tier: Option<Tier>,
    ) -> Option<Result<History, StoreError>> {
        let h = self.get(name)?;
        let now = epoch_ms(SystemTime::now());
        let series = series.unwrap_or(Family::Host.as_str());
        Some(h.store.query(series, from_ms, now, tier, now))
    }

    /// The names of one host's stored series (of `family` only, if given),
    /// sorted, as the agent's `/api/v1/series` lists its own.
    pub fn series(
        &self,
        name: &str,
        family: Option<Family>,
    ) -> Option<Result<Vec<String>, StoreError>> {
        let h = self.get(name)?;
        Some(h.store.series(family))
    }

    /// The `n` device or flow series of `name` with the largest `field`
    /// over `[from_ms, to_ms)`, as the agent's `/api/v1/top` ranks them.
    pub fn top(
        &self,
        name: &str,
        family: Family,
        field: &str,
        (from_ms, to_ms): (u64, u64),
        n: usize,
    ) -> Option<Result<Vec<crate::store::Ranked>, StoreError>> {
        let h = self.get(name)?;
        let now = epoch_ms(SystemTime::now());
        Some(h.store.top(family, field, from_ms, to_ms, n, now))
    }

    /// Forgets host `name`: out of the table (its latest report and
    /// totals with it), its history file deleted. Returns the file's size,
    /// or `None` for an unknown host.
    pub fn remove(&self, name: &str) -> Option<Result<u64, std::io::Error>> {
        let host = self
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)?;
        // An ingest in progress finishes on the file, unlinked below.
        let _taken = host.totals.lock().unwrap_or_else(PoisonError::into_inner);
        let size = fs::metadata(&host.path).map_or(0, |m| m.len());
        let done = match fs::remove_file(&host.path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        };
        self.counters.removed.fetch_add(1, Relaxed);
        info!(host = %name, path = %host.path.display(), bytes = size, "Removed the host and its history.");
        Some(done)
    }

    /// Downsampling, expiry and the size budget of every host's file.
    pub fn maintain(&self) {
        let now = epoch_ms(SystemTime::now());
        let hosts: Vec<Arc<Host>> = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for h in hosts {
            if let Err(e) = h.store.maintain(now) {
                warn!(host = %h.name, error = %e, "History maintenance failed.");
            }
        }
    }

    pub fn counters(&self) -> CountersView {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Relaxed);
        CountersView {
            hosts: self
                .table
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            max_hosts: self.limits.max_hosts,
            ingested: r(&c.ingested),
            removed: r(&c.removed),
            refused: BTreeMap::from([
                ("unauthorized", r(&c.unauthorized)),
                ("forbidden", r(&c.forbidden)),
                ("tooLarge", r(&c.too_large)),
                ("badBody", r(&c.bad_body)),
                ("badEncoding", r(&c.bad_encoding)),
                ("tooManyHosts", r(&c.too_many_hosts)),
            ]),
            write_failures: r(&c.write_failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hub::report;

    fn limits(max_hosts: usize) -> Limits {
        Limits {
            max_hosts,
            retention: Retention {
                size_budget: 8 << 20,
                ..Retention::default()
            },
            push_interval: Duration::from_secs(5),
            stale_intervals: 3,
        }
    }

    fn snap(host: &str, at: &str, cpu: f64) -> Report {
        let doc = json!({"messageType": "realtimeSnapshot", "serverId": host,
            "snapshotTime": at, "metrics": {"cpu": {"percent": cpu}}});
        report::snapshot(doc, SystemTime::now()).unwrap()
    }

    #[test]
    fn hosts_get_their_own_files_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = Hosts::open(dir.path(), limits(2)).unwrap();
        let now = epoch_ms(SystemTime::now());
        hosts
            .ingest(snap("a", "2026-01-01T00:00:05Z", 1.0), now)
            .unwrap();
        hosts
            .ingest(snap("a", "2026-01-01T00:00:10Z", 2.0), now)
            .unwrap();
        // Late, from a queue: history only.
        hosts
            .ingest(snap("a", "2026-01-01T00:00:00Z", 9.0), now)
            .unwrap();
        hosts
            .ingest(snap("b", "2026-01-01T00:00:05Z", 3.0), now)
            .unwrap();
        assert!(matches!(
            hosts.ingest(snap("c", "2026-01-01T00:00:05Z", 3.0), now),
            Err(Refusal::TooManyHosts(2))
        ));
        assert_eq!(hosts.names(), ["a", "b"]);
        assert!(dir.path().join("hosts/a.redb").exists());
        let (s, _) = hosts.one("a").unwrap();
        assert_eq!(s.figures.cpu_percent, Some(2.0));
        assert!(!s.stale);
        let from = 1_767_225_600_000 - 60_000;
        let h = hosts
            .history("a", None, from, Some(Tier::Raw))
            .unwrap()
            .unwrap();
        assert_eq!(h.points.len(), 3, "{h:?}");
        drop(hosts);
        // Reopened: the hosts are known again, their history kept.
        let again = Hosts::open(dir.path(), limits(2)).unwrap();
        assert_eq!(again.names(), ["a", "b"]);
        let (s, doc) = again.one("a").unwrap();
        assert!(doc.is_none() && s.stale && s.last_seen.is_none());
        assert_eq!(
            s.figures.cpu_percent,
            Some(2.0),
            "the last sample's figures"
        );
        assert_eq!(
            s.last_sample_time.as_deref(),
            Some("2026-01-01T00:00:10.000Z")
        );
    }
}
