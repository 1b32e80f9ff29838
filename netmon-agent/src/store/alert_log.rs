//! The alert log: every firing and resolved transition, kept in the history
//! file's `alert_log` table for the history's longest retention (the hour
//! tier's, two years by default) and at most `--alerts-log-max` entries,
//! oldest dropped first; served by `GET /api/v1/alerts/history`. Beside it,
//! `alert_known`: the device MACs `new(device)` has seen, so a restart does
//! not call every device new again (at most `--alerts-max-known-devices`,
//! the least recently seen forgotten first).
//!
//! Table `alert_log`: `(ms since the epoch, sequence)` → the transition as
//! JSON (`{"from", "to", "labels", "annotations", "value", "silenced"}`).
//! Table `alert_known`: MAC (lower case) → ms it was last reported. Both
//! are created by their first write; a file without them has an empty log.
//! Expiry and the bound are applied by each append, in its transaction
//! (the store's maintenance leaves the tables alone), so the log never
//! holds more than the bound after a commit.

use std::{collections::BTreeMap, time::Duration};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, as_ms, epoch_ms};
use crate::alerts::{
    engine::{Event, State},
    run::History,
};

/// `(at_ms, seq)` → a transition as JSON.
pub const ALERT_LOG: TableDefinition<(u64, u64), &str> = TableDefinition::new("alert_log");
/// MAC → ms last reported.
pub const ALERT_KNOWN: TableDefinition<&str, u64> = TableDefinition::new("alert_known");

/// Rows an append removes at most per transaction when expiring (the rest
/// go with the next append).
const EXPIRE_BATCH: usize = 10_000;

/// One logged transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it happened, ms since the epoch.
    #[serde(skip)]
    pub at_ms: u64,
    pub from: String,
    pub to: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub silenced: bool,
}

impl Entry {
    pub fn of(e: &Event) -> Entry {
        Entry {
            at_ms: epoch_ms(e.at),
            from: e.from.as_str().to_owned(),
            to: e.to.as_str().to_owned(),
            labels: e.labels.clone(),
            annotations: e.annotations.clone(),
            value: if e.value.is_finite() { e.value } else { 0.0 },
            silenced: e.silenced,
        }
    }
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Db(redb::Error::Corrupted(e.to_string()))
}

fn write_tx(db: &redb::Database) -> Result<redb::WriteTransaction, StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(redb::Durability::Immediate)
        .map_err(|e| StoreError::Db(redb::Error::Corrupted(e.to_string())))?;
    Ok(tx)
}

impl Store {
    /// How long the log keeps an entry: the longest tier's retention.
    pub fn alert_log_retention(&self) -> Duration {
        let r = self.retention();
        r.raw.max(r.minute).max(r.hour)
    }

    /// Appends `entries`, then drops what is older than
    /// [`Store::alert_log_retention`] before `now_ms` and the oldest beyond
    /// `max`; one durable transaction. Returns the rows dropped.
    pub fn append_alerts(
        &self,
        entries: &[Entry],
        now_ms: u64,
        max: usize,
    ) -> Result<u64, StoreError> {
        let cutoff = now_ms.saturating_sub(as_ms(self.alert_log_retention()));
        self.with_db(|db| {
            let tx = write_tx(db)?;
            let dropped = {
                let mut t = tx.open_table(ALERT_LOG)?;
                let mut seq = match t.last()? {
                    Some((k, _)) => k.value().1,
                    None => 0,
                };
                for e in entries {
                    seq += 1;
                    let json = serde_json::to_string(e).map_err(json_err)?;
                    t.insert((e.at_ms, seq), json.as_str())?;
                }
                let over = (t.len()? as usize).saturating_sub(max);
                let mut old = Vec::new();
                for row in t.iter()? {
                    let k = row?.0.value();
                    let needed = old.len() < over || k.0 < cutoff;
                    if !needed || old.len() >= EXPIRE_BATCH.max(over) {
                        break;
                    }
                    old.push(k);
                }
                for k in &old {
                    t.remove(k)?;
                }
                old.len() as u64
            };
            tx.commit()?;
            Ok(dropped)
        })
    }

    /// The logged transitions in `[from_ms, to_ms)`, oldest first, at most
    /// `limit`; and whether more were there.
    pub fn alert_log(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let t = match rtx.open_table(ALERT_LOG) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), false)),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.range((from_ms, 0)..(to_ms, 0))? {
                if out.len() >= limit {
                    return Ok((out, true));
                }
                let (k, v) = row?;
                // An entry that does not decode is skipped.
                if let Ok(mut e) = serde_json::from_str::<Entry>(v.value()) {
                    e.at_ms = k.value().0;
                    out.push(e);
                }
            }
            Ok((out, false))
        })
    }

    /// The MACs `new(device)` has seen.
    pub fn known_devices(&self) -> Result<Vec<String>, StoreError> {
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let t = match rtx.open_table(ALERT_KNOWN) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                out.push(row?.0.value().to_owned());
            }
            Ok(out)
        })
    }

    /// Remembers `macs` as seen at `now_ms`, keeping at most `max` (the
    /// least recently seen dropped).
    pub fn remember_devices(
        &self,
        macs: &[String],
        now_ms: u64,
        max: usize,
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            let tx = write_tx(db)?;
            {
                let mut t = tx.open_table(ALERT_KNOWN)?;
                for m in macs {
                    t.insert(m.to_ascii_lowercase().as_str(), now_ms)?;
                }
                let over = (t.len()? as usize).saturating_sub(max);
                if over > 0 {
                    let mut all: Vec<(u64, String)> = Vec::new();
                    for row in t.iter()? {
                        let (k, v) = row?;
                        all.push((v.value(), k.value().to_owned()));
                    }
                    all.sort_unstable();
                    for (_, mac) in all.into_iter().take(over) {
                        t.remove(mac.as_str())?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// The runner's view of the store: the alert log, the known devices and
/// the history's health.
pub struct AlertHistory {
    pub store: std::sync::Arc<Store>,
    /// `--alerts-log-max`.
    pub max_entries: usize,
}

impl History for AlertHistory {
    fn degraded(&self) -> bool {
        self.store.status().report().state == super::status::State::Degraded
    }

    fn record(&self, events: &[Event]) -> Result<(), String> {
        let entries: Vec<Entry> = events
            .iter()
            .filter(|e| matches!(e.to, State::Firing | State::Resolved))
            .map(Entry::of)
            .collect();
        let now = self.store.now().wall_ms;
        self.store
            .append_alerts(&entries, now, self.max_entries)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn known_devices(&self) -> Result<Vec<String>, String> {
        self.store.known_devices().map_err(|e| e.to_string())
    }

    fn remember_devices(&self, macs: &[String], max: usize) -> Result<(), String> {
        let now = self.store.now().wall_ms;
        self.store
            .remember_devices(macs, now, max)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;

    fn entry(at_ms: u64, to: &str) -> Entry {
        Entry {
            at_ms,
            from: "pending".into(),
            to: to.into(),
            labels: [("alertname".to_owned(), "cpu_high".to_owned())].into(),
            annotations: BTreeMap::new(),
            value: 81.5,
            silenced: false,
        }
    }

    #[test]
    fn the_log_is_kept_ordered_bounded_expired_and_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let retention = Retention {
            raw: Duration::from_secs(10),
            minute: Duration::from_secs(100),
            hour: Duration::from_secs(1000),
            ..Retention::default()
        };
        let store = Store::open(&path, retention).unwrap();
        assert_eq!(store.alert_log(0, u64::MAX, 10).unwrap(), (vec![], false));
        assert_eq!(store.alert_log_retention(), Duration::from_secs(1000));
        let t0 = 1_700_000_000_000;
        // Two at the same millisecond are both kept, in order.
        store
            .append_alerts(&[entry(t0, "firing"), entry(t0, "resolved")], t0, 5)
            .unwrap();
        store
            .append_alerts(&[entry(t0 + 10, "firing")], t0 + 10, 5)
            .unwrap();
        let (all, more) = store.alert_log(0, u64::MAX, 10).unwrap();
        assert!(!more);
        let tos: Vec<&str> = all.iter().map(|e| e.to.as_str()).collect();
        assert_eq!(tos, ["firing", "resolved", "firing"]);
        assert_eq!(all[2].at_ms, t0 + 10);
        assert_eq!(all[0].value, 81.5);
        // A range, and a limit.
        assert_eq!(store.alert_log(t0 + 1, t0 + 11, 10).unwrap().0.len(), 1);
        assert_eq!(
            store.alert_log(0, u64::MAX, 2).unwrap(),
            (all[..2].to_vec(), true)
        );
        // The bound: 5 entries at most, oldest dropped.
        let more: Vec<Entry> = (0..4).map(|i| entry(t0 + 20 + i, "firing")).collect();
        assert_eq!(store.append_alerts(&more, t0 + 30, 5).unwrap(), 2);
        let (all, _) = store.alert_log(0, u64::MAX, 10).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].at_ms, t0 + 10);
        drop(store);
        // Reopened; an append past the retention expires the old ones.
        let store = Store::open(&path, retention).unwrap();
        assert_eq!(store.alert_log(0, u64::MAX, 10).unwrap().0.len(), 5);
        let late = t0 + 1_000_000 + 21;
        assert_eq!(
            store
                .append_alerts(&[entry(late, "resolved")], late, 5)
                .unwrap(),
            2
        );
        let (all, _) = store.alert_log(0, u64::MAX, 10).unwrap();
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0].at_ms, t0 + 21);
    }

    #[test]
    fn known_devices_are_bounded_least_recent_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.redb"), Retention::default()).unwrap();
        assert!(store.known_devices().unwrap().is_empty());
        store
            .remember_devices(&["02:00:00:00:00:0A".into()], 1, 2)
            .unwrap();
        store
            .remember_devices(&["02:00:00:00:00:0b".into()], 2, 2)
            .unwrap();
        store
            .remember_devices(&["02:00:00:00:00:0c".into()], 3, 2)
            .unwrap();
        assert_eq!(
            store.known_devices().unwrap(),
            ["02:00:00:00:00:0b", "02:00:00:00:00:0c"]
        );
    }
}
