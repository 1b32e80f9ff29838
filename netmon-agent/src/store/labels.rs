//! Device labels: the name and note an admin gives a device (by MAC), kept
//! in the history file's `labels` table so they survive restarts and
//! travel with the history.
//!
//! Table `labels`: MAC (`aa:bb:cc:dd:ee:ff`, lower case) → the label as
//! JSON (`{"name", "note", "updated_ms"}`). The table is created by the
//! first label written; a file without it has no labels. Its size is
//! bounded by the caller (`set_label`'s `max`): a new MAC beyond it is
//! refused, while changing or removing an existing label always works.
//! Retention, the size budget and compaction leave the table alone.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// MAC → the label, as JSON.
pub const LABELS: TableDefinition<&str, &str> = TableDefinition::new("labels");

/// What an admin said about a device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Shown instead of the hostname.
    pub name: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// When it was set, ms since the epoch.
    pub updated_ms: u64,
}

/// What [`Store::set_label`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Removed,
    /// `max` MACs have labels already; this one was not stored.
    Full,
}

impl Store {
    /// Every label, by MAC. A label that does not decode is skipped.
    pub fn labels(&self) -> Result<BTreeMap<String, Label>, StoreError> {
        self.with_db(|db| {
            let rtx = db.begin_read()?;
            let table = match rtx.open_table(LABELS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = BTreeMap::new();
            for row in table.iter()? {
                let (mac, json) = row?;
                if let Ok(label) = serde_json::from_str::<Label>(json.value()) {
                    out.insert(mac.value().to_owned(), label);
                }
            }
            Ok(out)
        })
    }

    /// Sets the label of `mac` (`None`: removes it), refusing a new MAC
    /// when `max` have labels; one durable transaction.
    pub fn set_label(
        &self,
        mac: &str,
        label: Option<&Label>,
        max: usize,
    ) -> Result<Outcome, StoreError> {
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(redb::Durability::Immediate)
                .map_err(|e| StoreError::Db(redb::Error::Corrupted(e.to_string())))?;
            let outcome = {
                let mut table = tx.open_table(LABELS)?;
                match label {
                    None => {
                        table.remove(mac)?;
                        Outcome::Removed
                    }
                    Some(label) => {
                        let known = table.get(mac)?.is_some();
                        if !known && table.len()? >= max as u64 {
                            Outcome::Full
                        } else {
                            let json = serde_json::to_string(label).map_err(|e| {
                                StoreError::Db(redb::Error::Corrupted(e.to_string()))
                            })?;
                            table.insert(mac, json.as_str())?;
                            Outcome::Stored
                        }
                    }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;

    fn label(name: &str) -> Label {
        Label {
            name: Some(name.to_owned()),
            note: None,
            updated_ms: 1,
        }
    }

    #[test]
    fn labels_are_stored_bounded_and_kept_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let store = Store::open(&path, Retention::default()).unwrap();
        assert!(store.labels().unwrap().is_empty(), "a new file has none");
        let a = "02:00:00:00:00:0a";
        let b = "02:00:00:00:00:0b";
        assert_eq!(
            store.set_label(a, Some(&label("printer")), 1).unwrap(),
            Outcome::Stored
        );
        // Full for a new MAC; a known one can still change.
        assert_eq!(
            store.set_label(b, Some(&label("tv")), 1).unwrap(),
            Outcome::Full
        );
        let renamed = Label {
            note: Some("second floor".into()),
            ..label("laser printer")
        };
        assert_eq!(
            store.set_label(a, Some(&renamed), 1).unwrap(),
            Outcome::Stored
        );
        drop(store);
        let store = Store::open(&path, Retention::default()).unwrap();
        let all = store.labels().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[a], renamed);
        assert_eq!(store.set_label(a, None, 1).unwrap(), Outcome::Removed);
        assert!(store.labels().unwrap().is_empty());
        assert_eq!(
            store.set_label(b, Some(&label("tv")), 1).unwrap(),
            Outcome::Stored
        );
    }
}
