//! Opening a history file that is damaged or out of reach:
//! [`Store::open_or_recover`].
//!
//! - **Damaged** (redb reports it corrupted or not a database, a table of
//!   ours cannot be read, or redb panics reading it): the file is renamed
//!   `<name>.damaged-<UTC time>` beside itself, kept for inspection, and a
//!   fresh file is started; the agent logs an error and the history is
//!   `degraded` in `/health` with the moved file's name, for as long as the
//!   agent runs.
//! - **Newer** schema or **foreign** (a redb file that is not netmon's):
//!   left as it is (never moved; its data never changed); the caller
//!   stops (exit 9), since only the operator can decide what the file is.
//! - **No permission**: [`StoreError::Permission`] names the path, the
//!   owner and mode of the file and of its directory, and the user the agent
//!   runs as.

use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use tracing::error;

use super::{
    Retention, Store, StoreError,
    clock::{Clock, SystemClock},
    status::Part,
};
use crate::errors::error_chain;

impl StoreError {
    /// The file is damaged (as opposed to newer, foreign, busy or out of
    /// reach): moving it aside and starting afresh is the way on.
    pub fn is_damage(&self) -> bool {
        let io_damage = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            )
        };
        match self {
            StoreError::Open { source, .. } => match source {
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
                redb::DatabaseError::Storage(redb::StorageError::Io(e)) => io_damage(e),
                redb::DatabaseError::RepairAborted | redb::DatabaseError::UpgradeRequired(_) => {
                    true
                }
                _ => false,
            },
            StoreError::Db(redb::Error::Corrupted(_)) => true,
            StoreError::Db(redb::Error::Io(e)) => io_damage(e),
            _ => false,
        }
    }

    /// The operating system's error under this one, if any.
    fn os_error(&self) -> Option<&io::Error> {
        match self {
            StoreError::Dir { source, .. } => Some(source),
            StoreError::Open {
                source: redb::DatabaseError::Storage(redb::StorageError::Io(e)),
                ..
            } => Some(e),
            StoreError::Db(redb::Error::Io(e)) => Some(e),
            _ => None,
        }
    }
}

/// `e` as [`StoreError::Permission`] when it is a permission error (or a
/// read-only filesystem) on `path` or its directory.
pub(crate) fn name_permission(e: StoreError, path: &Path) -> StoreError {
    let denied = e.os_error().is_some_and(|io| {
        io.kind() == io::ErrorKind::PermissionDenied
            || matches!(
                io.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS)
            )
    });
    if !denied {
        return e;
    }
    let source = match e {
        StoreError::Dir { source, .. } => source,
        StoreError::Open {
            source: redb::DatabaseError::Storage(redb::StorageError::Io(io)),
            ..
        } => io,
        StoreError::Db(redb::Error::Io(io)) => io,
        other => return other,
    };
    StoreError::Permission {
        path: path.to_owned(),
        access: describe_access(path),
        source,
    }
}

/// The owner and mode of `path` (when it exists) and of the directory
/// holding it (or its nearest existing ancestor), and whom this process
/// runs as: `/x/netmon.redb: owner uid 0 (root), group gid 0 (root), mode
/// 0600; ...; the agent runs as uid 65534 (nobody), gid 65534 (nogroup)`.
pub fn describe_access(path: &Path) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if let Ok(m) = fs::metadata(p) {
            parts.push(format!(
                "{}: owner {}, group {}, mode {:04o}",
                p.display(),
                name("/etc/passwd", "uid", m.uid()),
                name("/etc/group", "gid", m.gid()),
                m.mode() & 0o7777
            ));
            if p != path || parts.len() == 2 {
                break;
            }
        }
        cur = p.parent().filter(|d| !d.as_os_str().is_empty());
    }
    // SAFETY: these calls only read the process's credentials.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    parts.push(format!(
        "the agent runs as {}, {}",
        name("/etc/passwd", "uid", uid),
        name("/etc/group", "gid", gid)
    ));
    parts.join("; ")
}

/// `uid 0 (root)`: the id, with its name from `db` (passwd or group) when
/// it has one.
fn name(db: &str, what: &str, id: u32) -> String {
    let found = fs::read_to_string(db).ok().and_then(|text| {
        text.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _ = f.next()?;
            (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
        })
    });
    match found {
        Some(n) => format!("{what} {id} ({n})"),
        None => format!("{what} {id}"),
    }
}

/// Where a damaged file at `path` goes: `<path>.damaged-<UTC time>`, with
/// `-2`, `-3`... if that is taken.
fn aside_path(path: &Path, wall_ms: u64) -> PathBuf {
    let t = UNIX_EPOCH + Duration::from_millis(wall_ms);
    let stamp = humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(':', "");
    let base = format!("{}.damaged-{stamp}", path.display());
    let mut out = PathBuf::from(&base);
    let mut n = 2;
    while out.exists() {
        out = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    out
}

impl Store {
    /// Opens the history at `path` like [`Store::open`]; a damaged file is
    /// moved aside and a fresh one started (see the module docs). Errors
    /// other than damage are returned as they are.
    pub fn open_or_recover(path: &Path, retention: Retention) -> Result<Store, StoreError> {
        Store::open_or_recover_with_clock(path, retention, Arc::new(SystemClock))
    }

    /// [`Store::open_or_recover`] with the time read from `clock`.
    pub fn open_or_recover_with_clock(
        path: &Path,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let first = catch_unwind(AssertUnwindSafe(|| {
            Store::open_with_clock(path, retention, Arc::clone(&clock))
        }));
        let why = match first {
            Ok(Ok(store)) => return Ok(store),
            Ok(Err(e)) if e.is_damage() => error_chain(&e),
            Ok(Err(e)) => return Err(e),
            Err(panic) => format!(
                "reading it panicked: {}",
                super::supervise::panic_message(panic.as_ref())
            ),
        };
        let aside = aside_path(path, clock.wall_ms());
        fs::rename(path, &aside).map_err(|source| {
            name_permission(
                StoreError::Dir {
                    path: path.to_owned(),
                    source,
                },
                path,
            )
        })?;
        error!(
            path = %path.display(),
            moved_to = %aside.display(),
            error = why,
            "The history file is damaged: moved it aside and started a fresh one."
        );
        let store = Store::open_with_clock(path, retention, clock)?;
        store.status().set(
            Part::File,
            format!(
                "the history file was damaged ({why}); it was moved aside to {} and a fresh one started",
                aside.display()
            ),
        );
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek as _, SeekFrom, Write as _};

    use super::*;
    use crate::store::status::State;

    const T0: u64 = 1_800_000_000_000;

    fn written(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("netmon.redb");
        let s = Store::open(&path, Retention::default()).unwrap();
        for i in 0..50u64 {
            s.write(&super::super::Interval {
                at_ms: T0 + i * 1000,
                length_ms: 1000,
                samples: vec![(
                    super::super::SeriesKey::new(super::super::Family::Device, &["eth0", "a"]),
                    super::super::Values::Counter {
                        interval_ms: 1000,
                        deltas: vec![i, 1, 0, 0],
                    },
                )],
            })
            .unwrap();
        }
        path
    }

    fn asides(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn garbage_is_moved_aside_and_a_fresh_file_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netmon.redb");
        fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
        let s = Store::open_or_recover(&path, Retention::default()).unwrap();
        assert_eq!(s.counts().unwrap(), [0, 0, 0]);
        let moved = asides(dir.path());
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(fs::read(&moved[0]).unwrap(), vec![0x5a; 64 * 1024]);
        let r = s.status().report();
        assert_eq!(r.state, State::Degraded);
        let reason = r.reason.unwrap();
        assert!(reason.contains(&moved[0].display().to_string()), "{reason}");
        // The fresh file opens as it is next time: nothing more moved.
        drop(s);
        let s = Store::open_or_recover(&path, Retention::default()).unwrap();
        assert_eq!(s.status().report().state, State::Ok);
        assert_eq!(asides(dir.path()).len(), 1);
    }

    #[test]
    fn a_real_file_with_a_smashed_header_or_truncated_is_moved_aside() {
        for damage in ["header", "truncate"] {
            let dir = tempfile::tempdir().unwrap();
            let path = written(&dir);
            let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            match damage {
                "header" => {
                    f.seek(SeekFrom::Start(0)).unwrap();
                    f.write_all(&[0xff; 512]).unwrap();
                }
                _ => f.set_len(1000).unwrap(),
            }
            drop(f);
            let s = Store::open_or_recover(&path, Retention::default())
                .unwrap_or_else(|e| panic!("{damage}: {}", error_chain(&e)));
            assert_eq!(asides(dir.path()).len(), 1, "{damage}");
            assert_eq!(s.status().report().state, State::Degraded, "{damage}");
            // The fresh file takes writes.
            assert_eq!(s.counts().unwrap(), [0, 0, 0], "{damage}");
        }
    }

    #[test]
    fn newer_and_foreign_files_are_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foreign.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(redb::TableDefinition::<u64, u64>::new("theirs"))
                .unwrap()
                .insert(1, 2)
                .unwrap();
            tx.commit().unwrap();
        }
        let e = Store::open_or_recover(&path, Retention::default())
            .err()
            .unwrap();
        assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
        assert!(asides(dir.path()).is_empty());
    }

    #[test]
    fn access_is_described_with_owner_and_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("locked");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o750)).unwrap();
        let text = describe_access(&sub.join("netmon.redb"));
        let uid = fs::metadata(&sub).unwrap().uid();
        assert!(
            text.starts_with(&format!("{}: owner uid {uid}", sub.display())),
            "{text}"
        );
        assert!(text.contains("mode 0750"), "{text}");
        assert!(text.contains("the agent runs as uid "), "{text}");
        // A permission error carries it.
        let e = name_permission(
            StoreError::Dir {
                path: sub.clone(),
                source: io::Error::from_raw_os_error(libc::EACCES),
            },
            &sub.join("netmon.redb"),
        );
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Permission { .. }), "{msg}");
        assert!(
            msg.contains("mode 0750") && msg.contains("netmon.redb"),
            "{msg}"
        );
    }
}
