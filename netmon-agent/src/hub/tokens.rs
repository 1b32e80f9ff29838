//! The hub's tokens: one file, `<state_dir>/hub-tokens`, one token a line
//! as `<role> <name> sha256:<hex>`, where the role is `host` (the host
//! `<name>` may push as itself and read), `read-only` (a dashboard:
//! reads only) or `admin` (reads, and removes hosts). Only the hash is stored: `hub token add` prints the token
//! once. The hashing is [`crate::keys`]' (the API keys' `sha256:` form);
//! tokens are [`keys::random_key`]s, 256 random bits, which nobody guesses
//! from their sha-256, so a check costs one sha-256 and no argon2.
//!
//! A running hub sees every change without a restart: [`Tokens::check`]
//! stats the file on each request and reads it again when its inode, size
//! or modification time changed (`hub token revoke` replaces the file by a
//! rename, so even an edit within the same nanosecond is seen).

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use tracing::warn;

use crate::keys::{self, ApiKey};

/// The token file's name in the hub's state directory.
pub const FILE_NAME: &str = "hub-tokens";
/// Longest host or token name (seed 000's `host` field allows 128).
pub const MAX_NAME_LEN: usize = 128;
/// Most tokens the file may hold; past it `add` refuses (the file is read
/// on every change, and checked linearly).
pub const MAX_TOKENS: usize = 100_000;

/// What a token lets its bearer do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Push as this host, and read.
    Host(String),
    /// Read only (a dashboard), under this name.
    ReadOnly(String),
    /// Reads, and removes hosts (`DELETE /api/v1/hosts/{host}`).
    Admin(String),
}

impl Grant {
    pub fn name(&self) -> &str {
        match self {
            Grant::Host(n) | Grant::ReadOnly(n) | Grant::Admin(n) => n,
        }
    }

    fn role(&self) -> &'static str {
        match self {
            Grant::Host(_) => "host",
            Grant::ReadOnly(_) => "read-only",
            Grant::Admin(_) => "admin",
        }
    }
}

/// One line of the file.
struct Entry {
    grant: Grant,
    /// The `sha256:` form, as written.
    hash: String,
    key: ApiKey,
}

/// Why the token file could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the token file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("token file {}, line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("invalid name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("{0:?} already has a token: revoke it first (`hub token revoke {0}`)")]
    Exists(String),
    #[error("the token file already holds {MAX_TOKENS} tokens")]
    Full,
    #[error(transparent)]
    Key(#[from] keys::AuthError),
}

/// Checks a host or token name: 1 to [`MAX_NAME_LEN`] characters of
/// letters, digits, `.`, `-` and `_`, not starting with `.` (it names the
/// host's history file).
pub fn check_name(name: &str) -> Result<(), TokenError> {
    let bad = |reason: &str| TokenError::BadName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad("it must have 1 to 128 characters"));
    }
    if name.starts_with('.') {
        return Err(bad("it must not start with a dot"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(bad("only letters, digits, '.', '-' and '_' are allowed"));
    }
    Ok(())
}

fn parse(contents: &str, path: &Path) -> Result<Vec<Entry>, TokenError> {
    let mut out = Vec::new();
    for (i, raw) in contents.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| TokenError::Line {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [role, name, hash] = fields[..] else {
            return Err(err(
                "expected `<host|read-only|admin> <name> sha256:<hex>`".into()
            ));
        };
        check_name(name).map_err(|e| err(e.to_string()))?;
        let grant = match role {
            "host" => Grant::Host(name.to_owned()),
            "read-only" => Grant::ReadOnly(name.to_owned()),
            "admin" => Grant::Admin(name.to_owned()),
            other => {
                return Err(err(format!(
                    "unknown role {other:?} (host, read-only or admin)"
                )));
            }
        };
        if !hash.starts_with(keys::SHA256_PREFIX) {
            return Err(err("the token must be stored as its sha256: form".into()));
        }
        let key = ApiKey::new(hash).map_err(|e| err(e.to_string()))?;
        out.push(Entry {
            grant,
            hash: hash.to_owned(),
            key,
        });
    }
    Ok(out)
}

/// The file's entries; a missing file holds none.
fn load(path: &Path) -> Result<Vec<Entry>, TokenError> {
    match fs::read_to_string(path) {
        Ok(c) => parse(&c, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(TokenError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces the file with `entries`, mode 0600, through a rename.
fn save(path: &Path, entries: &[Entry]) -> Result<(), TokenError> {
    let werr = |source| TokenError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(werr)?;
    }
    let mut text =
        String::from("# netmon hub tokens: <host|read-only|admin> <name> sha256:<hex>\n");
    for e in entries {
        text.push_str(&format!(
            "{} {} {}\n",
            e.grant.role(),
            e.grant.name(),
            e.hash
        ));
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(werr)?;
    fs::rename(&tmp, path).map_err(werr)
}

/// `hub token add`: a new token for `name`, stored hashed; returns the
/// token, which nothing keeps.
pub fn add(path: &Path, name: &str, read_only: bool) -> Result<String, TokenError> {
    let grant = if read_only {
        Grant::ReadOnly(name.to_owned())
    } else {
        Grant::Host(name.to_owned())
    };
    add_grant(path, grant)
}

/// `hub token add`: a new token of `grant`, stored hashed; returns the
/// token, which nothing keeps.
pub fn add_grant(path: &Path, grant: Grant) -> Result<String, TokenError> {
    let name = grant.name().to_owned();
    let name = name.as_str();
    check_name(name)?;
    let mut entries = load(path)?;
    if entries.iter().any(|e| e.grant.name() == name) {
        return Err(TokenError::Exists(name.to_owned()));
    }
    if entries.len() >= MAX_TOKENS {
        return Err(TokenError::Full);
    }
    let token = keys::random_key()?;
    let hash = keys::sha256_form(&token);
    let key = ApiKey::new(&hash)?;
    entries.push(Entry { grant, hash, key });
    save(path, &entries)?;
    Ok(token)
}

/// `hub token revoke`: removes `name`'s token; false if it had none.
pub fn revoke(path: &Path, name: &str) -> Result<bool, TokenError> {
    let mut entries = load(path)?;
    let before = entries.len();
    entries.retain(|e| e.grant.name() != name);
    if entries.len() == before {
        return Ok(false);
    }
    save(path, &entries)?;
    Ok(true)
}

/// Removes host `name`'s token (not a read-only or admin token of that
/// name); false if it had none.
pub fn revoke_host(path: &Path, name: &str) -> Result<bool, TokenError> {
    let mut entries = load(path)?;
    let before = entries.len();
    entries.retain(|e| e.grant != Grant::Host(name.to_owned()));
    if entries.len() == before {
        return Ok(false);
    }
    save(path, &entries)?;
    Ok(true)
}

/// `hub token list`: `(role, name)` of every token.
pub fn list(path: &Path) -> Result<Vec<(&'static str, String)>, TokenError> {
    Ok(load(path)?
        .into_iter()
        .map(|e| (e.grant.role(), e.grant.name().to_owned()))
        .collect())
}

/// What identifies a version of the file.
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The running hub's view of the token file, read again when it changes.
pub struct Tokens {
    path: PathBuf,
    current: Mutex<(Stamp, Arc<Vec<Entry>>)>,
}

impl Tokens {
    /// Reads `path` (a missing file holds no token; a bad one is an error).
    pub fn open(path: PathBuf) -> Result<Tokens, TokenError> {
        let s = stamp(&path);
        let entries = load(&path)?;
        Ok(Tokens {
            path,
            current: Mutex::new((s, Arc::new(entries))),
        })
    }

    /// How many tokens the file held when last read.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, read again if the file changed. A file that changed
    /// into something unreadable keeps the last good entries, minus none:
    /// a broken edit is logged and the next good one is taken.
    fn entries(&self) -> Arc<Vec<Entry>> {
        let now = stamp(&self.path);
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if cur.0 != now {
            match load(&self.path) {
                Ok(e) => *cur = (now, Arc::new(e)),
                Err(e) => {
                    warn!(error = %e, "The token file changed but cannot be read; keeping the previous tokens.");
                    cur.0 = now;
                }
            }
        }
        Arc::clone(&cur.1)
    }

    /// The grant of a presented token, if it is in the file now.
    pub fn check(&self, presented: &str) -> Option<Grant> {
        let presented = presented.trim().as_bytes();
        let digest = keys::sha256(presented);
        let entries = self.entries();
        // Every entry is compared (constant time each), so the time taken
        // does not say which one matched.
        let mut found = None;
        for e in entries.iter() {
            if e.key.matches_fast(presented, &digest) && found.is_none() {
                found = Some(e.grant.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_check_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let tokens = Tokens::open(path.clone()).unwrap();
        assert!(tokens.is_empty());
        let a = add(&path, "web01", false).unwrap();
        let d = add(&path, "dash", true).unwrap();
        assert_eq!(a.len(), 64);
        assert!(matches!(
            add(&path, "web01", false),
            Err(TokenError::Exists(_))
        ));
        assert_eq!(tokens.check(&a), Some(Grant::Host("web01".into())));
        assert_eq!(tokens.check(&d), Some(Grant::ReadOnly("dash".into())));
        assert_eq!(tokens.check("nope-nope-nope-nope"), None);
        // Only the hash is on disk.
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a), "{text}");
        assert!(text.contains(&keys::sha256_form(&a)));
        assert!(revoke(&path, "web01").unwrap());
        assert!(!revoke(&path, "web01").unwrap());
        assert_eq!(
            tokens.check(&a),
            None,
            "a revocation is seen without reopening"
        );
        assert_eq!(list(&path).unwrap(), vec![("read-only", "dash".to_owned())]);
    }

    #[test]
    fn bad_names_and_lines_are_refused() {
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let p = Path::new("/x");
        for bad in [
            "host web01",
            "admin web01 sha256:00",
            "host web01 plaintexttoken0123456789",
            "host web01 sha256:zz",
        ] {
            let e = parse(bad, p).err().expect(bad).to_string();
            assert!(e.contains("line 1"), "{e}");
        }
    }
}
