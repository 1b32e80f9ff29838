//! Opening the history file: creating it, checking its layout, migrating an
//! older one (see `schema.rs` for the versions).

use std::{
    collections::{BTreeMap, HashMap},
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use tracing::info;

use super::{
    Family, Kind, NEXT_ID_KEY, Retention, Store, StoreError, clock,
    clock::{Clock, SystemClock, Timeline},
    raw_tail, recover,
    schema::{
        self, H1, H1_CHUNKS, INTERVALS, M1, M1_CHUNKS, META, RAW, RAW_CHUNKS, RAW_OPEN, SERIES,
        SERIES_NAMES,
    },
    status, stored,
};

/// Time of version-1 raw rows converted per transaction.
const CONVERT_WINDOW_MS: u64 = 10 * 60_000;

/// What a read transaction sees of the schema.
enum Layout {
    Empty,
    Versioned(u64),
    Foreign,
}

impl Store {
    /// Opens (or creates) the history at `path`, migrating an older layout
    /// and refusing a newer one.
    pub fn open(path: &Path, retention: Retention) -> Result<Store, StoreError> {
        Store::open_with_clock(path, retention, Arc::new(SystemClock))
    }

    /// [`Store::open`] with the time read from `clock`.
    pub fn open_with_clock(
        path: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        Store::open_inner(path, retention, clock).map_err(|e| recover::name_permission(e, path))
    }

    fn open_inner(
        path: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        if !path.exists() {
            create_atomically(path, retention, &clock)?;
        }
        Store::open_existing(path, retention, clock)
    }

    pub(super) fn open_existing(
        path: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let db = open_db(path)?;
        let store = Store {
            path: path.to_owned(),
            db: RwLock::new(Some(db)),
            ids: Mutex::new(HashMap::new()),
            retention,
            clock,
            timeline: Timeline::default(),
            status: status::Status::default(),
            stopping: Default::default(),
            #[cfg(test)]
            maintenance_hook: Mutex::new(None),
        };
        let migrated = store.prepare()?;
        store.rekey_logged()?;
        // Also after a crash in the middle of a conversion.
        if store.convert_v1_raw()? || migrated {
            store.seal_all_logged()?;
        }
        store.recode_logged()?;
        store.with_db(|db| {
            let rtx = db.begin_read()?;
            let meta = rtx.open_table(META)?;
            let get =
                |k| -> Result<Option<u64>, StoreError> { Ok(meta.get(k)?.map(|v| v.value())) };
            if let (Some(boot), Some(steady_ms), Some(tracked_ms)) = (
                get(schema::CLOCK_BOOT_KEY)?,
                get(schema::CLOCK_STEADY_KEY)?,
                get(schema::CLOCK_TRACKED_KEY)?,
            ) {
                store.timeline.resume(clock::Saved {
                    boot,
                    steady_ms,
                    tracked_ms,
                });
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// Moves version 1's raw rows ([`RAW`], keyed by series) into the open
    /// intervals ([`RAW_OPEN`]), [`CONVERT_WINDOW_MS`] of time per
    /// transaction, oldest first, logging progress; then drops [`RAW`].
    /// True when there was such a table.
    fn convert_v1_raw(&self) -> Result<bool, StoreError> {
        let mut moved = 0u64;
        loop {
            let step = self.with_db(|db| {
                let tx = db.begin_write()?;
                if !tx.list_tables()?.any(|t| t.name() == RAW.name()) {
                    return Ok(None);
                }
                let series = stored::all_series(&tx)?;
                let mut raw = tx.open_table(RAW)?;
                let mut oldest: Option<u64> = None;
                for (id, _) in &series {
                    if let Some(row) = raw.range((*id, 0)..=(*id, u64::MAX))?.next() {
                        let at = row?.0.value().1;
                        oldest = Some(oldest.map_or(at, |o| o.min(at)));
                    }
                }
                let Some(from) = oldest else {
                    drop(raw);
                    tx.delete_table(RAW)?;
                    tx.commit()?;
                    return Ok(Some((0, true)));
                };
                let to = from.saturating_add(CONVERT_WINDOW_MS);
                let mut per_at: BTreeMap<u64, Vec<(u32, Vec<u8>)>> = BTreeMap::new();
                let mut n = 0;
                for (id, _) in &series {
                    for row in raw.extract_from_if((*id, from)..(*id, to), |_, _| true)? {
                        let (k, v) = row?;
                        per_at
                            .entry(k.value().1)
                            .or_default()
                            .push((*id, v.value().to_vec()));
                        n += 1;
                    }
                }
                drop(raw);
                let mut open = tx.open_table(RAW_OPEN)?;
                for (at, mut rows) in per_at {
                    if let Some(old) = open.get(at)?
                        && let Some(view) = raw_tail::View::new(old.value())
                    {
                        let mut kept: Vec<(u32, Vec<u8>)> = (0..view.len())
                            .filter_map(|i| view.get(i))
                            .map(|(id, b)| (id, b.to_vec()))
                            .collect();
                        kept.append(&mut rows);
                        rows = kept;
                    }
                    open.insert(at, raw_tail::encode(&mut rows).as_slice())?;
                }
                drop(open);
                tx.commit()?;
                Ok(Some((n, false)))
            })?;
            match step {
                None => return Ok(moved > 0),
                Some((_, true)) => {
                    info!(
                        rows = moved,
                        "Converted the raw samples of the history file."
                    );
                    return Ok(true);
                }
                Some((n, false)) => {
                    moved += n;
                    info!(
                        rows = moved,
                        "Converting the raw samples of the history file into intervals."
                    );
                }
            }
        }
    }

    /// Checks the layout: initialises a new file, migrates an old one.
    /// True when the data of a version-1 (or older) file is still to be
    /// sealed into chunks.
    fn prepare(&self) -> Result<bool, StoreError> {
        self.with_db(|db| {
            let layout = {
                let rtx = db.begin_read()?;
                match rtx.open_table(META) {
                    Ok(meta) => Layout::Versioned(
                        meta.get(schema::VERSION_KEY)?
                            .map(|v| v.value())
                            .unwrap_or(0),
                    ),
                    Err(redb::TableError::TableDoesNotExist(_)) => {
                        if rtx.list_tables()?.next().is_none() {
                            Layout::Empty
                        } else {
                            Layout::Foreign
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            match layout {
                Layout::Foreign => Err(StoreError::Foreign {
                    path: self.path.clone(),
                }),
                Layout::Versioned(v) if v > schema::SCHEMA_VERSION => Err(StoreError::Newer {
                    path: self.path.clone(),
                    found: v,
                    supported: schema::SCHEMA_VERSION,
                }),
                Layout::Versioned(v) if v == schema::SCHEMA_VERSION => Ok(false),
                Layout::Versioned(v) => {
                    info!(path = %self.path.display(), from = v, to = schema::SCHEMA_VERSION, "Migrating the history file.");
                    migrate(db, v)?;
                    Ok(true)
                }
                Layout::Empty => {
                    let tx = db.begin_write()?;
                    create_tables(&tx)?;
                    tx.open_table(META)?
                        .insert(schema::VERSION_KEY, schema::SCHEMA_VERSION)?;
                    tx.commit()?;
                    info!(path = %self.path.display(), "Created the history file.");
                    Ok(false)
                }
            }
        })
    }
}

/// Creates a new history file beside `path` and renames it into place
/// once its schema is committed: a crash while redb writes a new file's
/// header would otherwise leave a file that cannot be opened (the crash test
/// found it). A leftover from such a crash is never the real file: it is
/// replaced.
fn create_atomically(
    path: &Path,
    retention: Retention,
    clock: &Arc<dyn Clock>,
) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".creating");
    let tmp = PathBuf::from(tmp);
    let io_err = |source| StoreError::Dir {
        path: path.to_owned(),
        source,
    };
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    drop(Store::open_existing(&tmp, retention, Arc::clone(clock))?);
    std::fs::rename(&tmp, path).map_err(io_err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
    }
    Ok(())
}

pub(super) fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::builder()
        .create(path)
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })
}

fn create_tables(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(META)?;
    tx.open_table(SERIES)?;
    tx.open_table(SERIES_NAMES)?;
    tx.open_table(M1)?;
    tx.open_table(H1)?;
    tx.open_table(INTERVALS)?;
    tx.open_table(RAW_OPEN)?;
    tx.open_table(RAW_CHUNKS)?;
    tx.open_table(M1_CHUNKS)?;
    tx.open_table(H1_CHUNKS)?;
    tx.open_table(schema::RAW_INDEX)?;
    tx.open_table(schema::M1_INDEX)?;
    tx.open_table(schema::H1_INDEX)?;
    tx.open_table(schema::CHUNK_LAST)?;
    Ok(())
}

/// Brings a file of layout `from` to the current one, in one transaction: a
/// crash during migration leaves the old layout, migrated again next time.
/// Version 1 → 2 creates the chunk tables; the caller then seals the data
/// (in transactions of its own: a crash meanwhile leaves a valid version-2
/// file with some data still in the tails, sealed by maintenance later).
/// Version 3 → 4 marks the chunks for rewriting, which the caller then
/// does (`recode.rs`); version 4 → 5 marks them for moving into the
/// time-first tables, which the caller does first (`rekey.rs`).
fn migrate(db: &Database, from: u64) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    if from == 0 {
        migrate_v0(&tx)?;
    }
    create_tables(&tx)?;
    if from < 3 {
        rename_directions(&tx)?;
    }
    if from < 4 {
        tx.open_table(META)?.insert(super::recode::RECODE_KEY, 1)?;
    }
    if from < 5 {
        tx.open_table(META)?.insert(super::rekey::REKEY_KEY, 1)?;
    }
    tx.open_table(META)?
        .insert(schema::VERSION_KEY, schema::SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Version 2 → 3: `flow/<iface>/in/...` and `.../out/...` become
/// `.../ingress/...` and `.../egress/...`, the names the API and
/// `/metrics` use; each series keeps its id, so its data is untouched.
fn rename_directions(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let renamed: Vec<(u32, String, String)> = {
        let names = tx.open_table(SERIES_NAMES)?;
        let mut out = Vec::new();
        for row in names.iter()? {
            let (id, name) = row?;
            let (id, name) = (id.value(), name.value());
            if let Some(new) = renamed_direction(name) {
                out.push((id, name.to_owned(), new));
            }
        }
        out
    };
    let mut series = tx.open_table(SERIES)?;
    let mut names = tx.open_table(SERIES_NAMES)?;
    for (id, old, new) in &renamed {
        series.remove(old.as_str())?;
        series.insert(new.as_str(), *id)?;
        names.insert(*id, new.as_str())?;
    }
    if !renamed.is_empty() {
        info!(
            series = renamed.len(),
            "Renamed the flow series' directions (in/out to ingress/egress)."
        );
    }
    Ok(())
}

/// A version-2 flow series name with its direction spelt as the API does;
/// `None` for any other name.
fn renamed_direction(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.first() != Some(&"flow") || parts.len() < 4 {
        return None;
    }
    parts[2] = match parts[2] {
        "in" => "ingress",
        "out" => "egress",
        _ => return None,
    };
    Some(parts.join("/"))
}

/// Version 0 → 1: builds the interval table from the raw samples. An
/// interval's length is its counter samples' (0 when it had none).
fn migrate_v0(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    create_tables(tx)?;
    tx.open_table(RAW)?;
    let mut rows: std::collections::BTreeMap<u64, (u32, u32)> = Default::default();
    {
        let raw = tx.open_table(RAW)?;
        let names = tx.open_table(SERIES_NAMES)?;
        for row in raw.iter()? {
            let (k, v) = row?;
            let (id, at) = k.value();
            let e = rows.entry(at).or_default();
            e.1 += 1;
            let counter = names
                .get(id)?
                .and_then(|n| Family::of(n.value()))
                .is_some_and(|f| f.kind() == Kind::Counter);
            if counter && v.value().len() >= 4 {
                e.0 = e.0.max(u32::from_le_bytes([
                    v.value()[0],
                    v.value()[1],
                    v.value()[2],
                    v.value()[3],
                ]));
            }
        }
    }
    let mut t = tx.open_table(INTERVALS)?;
    for (at, row) in rows {
        t.insert(at, row)?;
    }
    // Version 0 allocated ids as max + 1; keep allocating above them.
    let next = tx
        .open_table(SERIES_NAMES)?
        .last()?
        .map(|(k, _)| k.value() + 1)
        .unwrap_or(0);
    tx.open_table(META)?.insert(NEXT_ID_KEY, u64::from(next))?;
    Ok(())
}
