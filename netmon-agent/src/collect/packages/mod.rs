//! The packages collector: the dpkg inventory, and what changed in it.
//!
//! It reads dpkg's own database, `<root>/var/lib/dpkg/status`, with the
//! journal entries dpkg has not folded into it yet
//! (`<root>/var/lib/dpkg/updates/NNNN`, applied in order as dpkg-query
//! does), and lists what `dpkg-query -W` lists: every package whose status
//! is not `not-installed`, with its name, version, architecture and status.
//! No dpkg binary is run. A machine without that file (no dpkg) reports the
//! inventory unavailable, saying so.
//!
//! The database is parsed again only when it changed (its files' inode,
//! size or modification time), so a short interval costs a few `stat`s.
//! Each clean parse is compared with the previous clean one: a package
//! present now and not before is `installed`, the reverse `removed`, a new
//! version `upgraded` or `downgraded` (dpkg's version order). "Present"
//! means any status but `not-installed` and `config-files` (a removed
//! package whose configuration files remain). The first parse is the
//! baseline: changes are those seen since the agent started. A parse with
//! problems (a truncated file, odd lines) still lists what it could read
//! but is not compared, so a damaged file never reads as a mass removal;
//! the next clean parse is compared with the last clean one.
//!
//! Bounded: at most `--packages-max` packages are listed (the rest are
//! counted in `omitted`), `--packages-max-changes` changes kept (the
//! oldest go first, counted), lines of at most [`MAX_LINE`] bytes and
//! [`MAX_PROBLEMS`] problems described a parse.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashSet, VecDeque},
    fs,
    io::{self, BufRead, BufReader, Read},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tracing::warn;

use super::{Avail, ser_time};

mod collector;

/// dpkg's database, relative to the root.
pub const STATUS: &str = "var/lib/dpkg/status";
/// dpkg's journal of updates not yet folded into [`STATUS`].
pub const UPDATES: &str = "var/lib/dpkg/updates";
/// Longest line read; a longer one is a problem and is skipped.
pub const MAX_LINE: usize = 64 * 1024;
/// Problems described per parse; more are counted in the last one.
pub const MAX_PROBLEMS: usize = 20;

/// Options of the packages collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "packages-options")]
pub struct Options {
    /// How often the packages collector looks at the dpkg database (it is
    /// parsed again only when it changed).
    #[arg(long, default_value = "1m", value_parser = crate::units::parse_interval, env = "NETMON_PACKAGES_INTERVAL")]
    pub packages_interval: Duration,
    /// The directory the dpkg database is read under
    /// (`<root>/var/lib/dpkg/status`).
    #[arg(long, default_value = "/", env = "NETMON_PACKAGES_ROOT")]
    pub packages_root: PathBuf,
    /// Most packages listed; the rest are counted in `omitted`.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000), env = "NETMON_PACKAGES_MAX")]
    pub packages_max: u32,
    /// Most package changes kept; the oldest are forgotten first, counted
    /// in `changes_evicted`.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_PACKAGES_MAX_CHANGES")]
    pub packages_max_changes: u32,
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PackagesReport)]
pub struct Report {
    /// The database read, as a path on the host.
    pub database: String,
    pub inventory: Avail<Inventory>,
    /// Changes seen since the agent started, oldest first.
    pub changes: Vec<Change>,
    /// Changes forgotten beyond `--packages-max-changes`.
    pub changes_evicted: u64,
    /// When the first inventory was read: the changes are relative to it
    /// (RFC 3339); absent until then.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(value_type = Option<String>)]
    pub baseline: Option<SystemTime>,
}

impl Report {
    /// The changes seen at or after `since`, oldest first.
    pub fn changes_since(&self, since: SystemTime) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.at >= since)
    }
}

/// The packages dpkg knows, as of the last parse.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PackageInventory)]
pub struct Inventory {
    /// When the database was parsed (RFC 3339).
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub read_at: SystemTime,
    /// Packages listed.
    pub count: usize,
    /// Packages beyond `--packages-max`, not listed.
    pub omitted: u64,
    /// Whether this parse was compared with the previous one (false for
    /// the first, and for a parse with problems).
    pub compared: bool,
    /// What could not be read (line numbers of the file named).
    pub problems: Vec<String>,
    /// In the database's order (dpkg keeps it sorted by name).
    pub packages: Vec<Package>,
}

/// One package as dpkg records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `amd64`, `all`...; empty where dpkg recorded none.
    pub architecture: String,
    /// The third word of dpkg's `Status:` (`installed`, `config-files`,
    /// `half-configured`, `unpacked`...).
    pub status: String,
}

impl Package {
    /// Installed or on its way (anything but config files left behind).
    fn present(&self) -> bool {
        self.status != "config-files" && self.status != "not-installed"
    }
}

/// One change between two parses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = PackageChange)]
pub struct Change {
    /// When the parse that saw it ran (RFC 3339).
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub at: SystemTime,
    pub kind: ChangeKind,
    pub name: String,
    pub architecture: String,
    /// The version now; absent when removed.
    pub version: Option<String>,
    /// The version before; absent when installed.
    pub previous_version: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = PackageChangeKind)]
pub enum ChangeKind {
    Installed,
    Removed,
    Upgraded,
    Downgraded,
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

/// What identifies the database's state on disk: each file's name, inode,
/// size and modification time.
type Fingerprint = Vec<(String, u64, u64, i64, i64)>;

/// The collector's state between cycles.
#[derive(Debug)]
pub struct Packages {
    root: PathBuf,
    max: usize,
    max_changes: usize,
    fingerprint: Option<Fingerprint>,
    inventory: Avail<Inventory>,
    /// The present packages of the last clean parse, by (name, arch).
    baseline: Option<BTreeMap<(String, String), String>>,
    baseline_at: Option<SystemTime>,
    changes: VecDeque<Change>,
    changes_evicted: u64,
    logged: HashSet<String>,
}

impl Packages {
    pub fn new(opts: &Options) -> Self {
        Packages {
            root: opts.packages_root.clone(),
            max: opts.packages_max as usize,
            max_changes: opts.packages_max_changes as usize,
            fingerprint: None,
            inventory: Avail::unavailable("not read yet"),
            baseline: None,
            baseline_at: None,
            changes: VecDeque::new(),
            changes_evicted: 0,
            logged: HashSet::new(),
        }
    }

    /// A collector reading the database under `root`, with the default caps.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Packages::new(&Options {
            packages_interval: Duration::from_secs(60),
            packages_root: root.into(),
            packages_max: 100_000,
            packages_max_changes: 10_000,
        })
    }

    /// Reads the database if it changed since the last cycle and reports.
    pub fn scan(&mut self, now: SystemTime) -> Report {
        let status = self.root.join(STATUS);
        let fingerprint = fingerprint(&self.root);
        // An unreadable database is tried again every cycle (permissions
        // change without touching the fingerprint).
        let unchanged = fingerprint.is_ok()
            && self.fingerprint.as_ref() == fingerprint.as_ref().ok()
            && self.inventory.value().is_some();
        if !unchanged {
            self.fingerprint = fingerprint.as_ref().ok().cloned();
            self.inventory = match fingerprint.and_then(|_| read_database(&self.root, self.max)) {
                Ok(parsed) => Avail::Value(self.compare(parsed, now)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !status.exists() => {
                    Avail::unavailable(format!("no dpkg database: /{STATUS} does not exist"))
                }
                Err(e) => Avail::unavailable(format!("cannot read /{STATUS}: {e}")),
            };
            self.log_problems();
        }
        Report {
            database: format!("/{STATUS}"),
            inventory: self.inventory.clone(),
            changes: self.changes.iter().cloned().collect(),
            changes_evicted: self.changes_evicted,
            baseline: self.baseline_at,
        }
    }

    /// Makes the inventory of a parse, comparing it with the baseline when
    /// it is clean.
    fn compare(&mut self, parsed: Parsed, now: SystemTime) -> Inventory {
        let clean = parsed.problems.is_empty();
        let mut compared = false;
        if clean {
            let present: BTreeMap<(String, String), String> = parsed
                .packages
                .iter()
                .filter(|p| p.present())
                .map(|p| ((p.name.clone(), p.architecture.clone()), p.version.clone()))
                .collect();
            if let Some(before) = &self.baseline {
                for change in diff(before, &present, now) {
                    if self.changes.len() >= self.max_changes {
                        self.changes.pop_front();
                        self.changes_evicted += 1;
                    }
                    self.changes.push_back(change);
                }
                compared = true;
            } else {
                self.baseline_at = Some(now);
            }
            self.baseline = Some(present);
        }
        Inventory {
            read_at: now,
            count: parsed.packages.len(),
            omitted: parsed.omitted,
            compared,
            problems: parsed.problems,
            packages: parsed.packages,
        }
    }

    /// Logs each problem once, until it goes away and comes back.
    fn log_problems(&mut self) {
        let now: HashSet<String> = match &self.inventory {
            Avail::Value(inv) => inv.problems.iter().cloned().collect(),
            Avail::Unavailable { unavailable } => [unavailable.clone()].into(),
        };
        for p in now.difference(&self.logged) {
            warn!(collector = "packages", problem = %p, "Collector input problem (logged once until it changes).");
        }
        self.logged = now;
    }
}

/// The changes from `before` to `now`, in (name, architecture) order.
pub fn diff(
    before: &BTreeMap<(String, String), String>,
    now: &BTreeMap<(String, String), String>,
    at: SystemTime,
) -> Vec<Change> {
    let change = |(name, arch): &(String, String),
                  kind,
                  version: Option<&String>,
                  previous: Option<&String>| Change {
        at,
        kind,
        name: name.clone(),
        architecture: arch.clone(),
        version: version.cloned(),
        previous_version: previous.cloned(),
    };
    let mut out = Vec::new();
    for (key, version) in now {
        match before.get(key) {
            None => out.push(change(key, ChangeKind::Installed, Some(version), None)),
            Some(old) if old != version => {
                let kind = if compare_versions(version, old) == Ordering::Less {
                    ChangeKind::Downgraded
                } else {
                    ChangeKind::Upgraded
                };
                out.push(change(key, kind, Some(version), Some(old)));
            }
            Some(_) => {}
        }
    }
    for (key, old) in before {
        if !now.contains_key(key) {
            out.push(change(key, ChangeKind::Removed, None, Some(old)));
        }
    }
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    out
}

fn fingerprint(root: &Path) -> io::Result<Fingerprint> {
    let entry =
        |name: String, m: fs::Metadata| (name, m.ino(), m.size(), m.mtime(), m.mtime_nsec());
    let mut out = vec![entry(STATUS.into(), fs::metadata(root.join(STATUS))?)];
    if let Ok(dir) = fs::read_dir(root.join(UPDATES)) {
        for e in dir.flatten() {
            if let Ok(m) = e.metadata() {
                out.push(entry(e.file_name().to_string_lossy().into_owned(), m));
            }
        }
    }
    out[1..].sort();
    Ok(out)
}

/// A parse of the database: what `dpkg-query -W` would list, and what
/// could not be read.
#[derive(Debug, Default)]
pub struct Parsed {
    pub packages: Vec<Package>,
    pub omitted: u64,
    pub problems: Vec<String>,
}

/// Reads `<root>/var/lib/dpkg/status` and the pending journal entries
/// after it, keeping at most `max` packages.
pub fn read_database(root: &Path, max: usize) -> io::Result<Parsed> {
    let mut problems = ProblemList::default();
    let status = fs::File::open(root.join(STATUS))?;
    let mut db = Db {
        max,
        ..Db::default()
    };
    let file = format!("/{STATUS}");
    parse_stanzas(BufReader::new(status), &file, &mut problems, &mut |p| {
        db.add(p)
    });
    let mut journal: Vec<(String, PathBuf)> = match fs::read_dir(root.join(UPDATES)) {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| (name, e.path()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    journal.sort();
    for (name, path) in journal {
        let file = format!("/{UPDATES}/{name}");
        match fs::File::open(&path) {
            Ok(f) => parse_stanzas(BufReader::new(f), &file, &mut problems, &mut |p| db.add(p)),
            Err(e) => problems.push(format!("{file}: {e}")),
        }
    }
    let mut listed: Vec<(usize, Package)> = db.entries.into_values().collect();
    listed.sort_by_key(|(pos, _)| *pos);
    Ok(Parsed {
        packages: listed.into_iter().map(|(_, p)| p).collect(),
        omitted: db.omitted,
        problems: problems.finish(),
    })
}

/// The packages being read, by (name, architecture), with their place in
/// the file; at most `max` of them, so memory stays bounded.
#[derive(Debug, Default)]
struct Db {
    max: usize,
    entries: BTreeMap<(String, String), (usize, Package)>,
    order: usize,
    omitted: u64,
}

impl Db {
    fn add(&mut self, p: Package) {
        let key = (p.name.clone(), p.architecture.clone());
        if p.status == "not-installed" {
            // Purged (a journal entry may purge what the file lists).
            self.entries.remove(&key);
            return;
        }
        // A journal entry replaces the status file's stanza in place.
        let pos = match self.entries.get(&key) {
            Some((pos, _)) => *pos,
            None if self.entries.len() >= self.max => {
                self.omitted += 1;
                return;
            }
            None => {
                self.order += 1;
                self.order
            }
        };
        self.entries.insert(key, (pos, p));
    }
}

/// At most [`MAX_PROBLEMS`] descriptions, then a count of the rest.
#[derive(Debug, Default)]
struct ProblemList {
    list: Vec<String>,
    more: usize,
}

impl ProblemList {
    fn push(&mut self, p: String) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(p);
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list.push(format!("and {} more problems", self.more));
        }
        self.list
    }
}

/// One stanza's fields of interest, and where it started.
#[derive(Debug, Default)]
struct Stanza {
    line: usize,
    package: Option<String>,
    version: Option<String>,
    architecture: Option<String>,
    status: Option<String>,
    fields: usize,
}

impl Stanza {
    fn finish(self, file: &str, problems: &mut ProblemList) -> Option<Package> {
        if self.fields == 0 {
            return None;
        }
        let at = format!("{file}:{}", self.line);
        let Some(name) = self.package.filter(|n| !n.is_empty()) else {
            problems.push(format!("{at}: a stanza without a Package field"));
            return None;
        };
        let Some(status) = self.status else {
            problems.push(format!("{at}: package {name} has no Status field"));
            return None;
        };
        // `want flag status`, e.g. `install ok installed`.
        let words: Vec<&str> = status.split_ascii_whitespace().collect();
        let [_, _, state] = words[..] else {
            problems.push(format!("{at}: package {name}: malformed Status `{status}`"));
            return None;
        };
        let state = state.to_owned();
        let version = self.version.unwrap_or_default();
        if version.is_empty() && state != "not-installed" && state != "config-files" {
            problems.push(format!(
                "{at}: package {name} ({state}) has no Version field"
            ));
            return None;
        }
        Some(Package {
            name,
            version,
            architecture: self.architecture.unwrap_or_default(),
            status: state,
        })
    }
}

/// Parses dpkg's control-file format (RFC 822-like stanzas separated by
/// blank lines), keeping the fields `dpkg-query -W` shows. Never fails:
/// what cannot be used is described in `problems` (named `file:line`).
fn parse_stanzas(
    mut input: impl BufRead,
    file: &str,
    problems: &mut ProblemList,
    out: &mut impl FnMut(Package),
) {
    let mut stanza = Stanza::default();
    let mut buf = Vec::new();
    let mut lineno = 0usize;
    let mut last_complete = true;
    loop {
        buf.clear();
        let n = match (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("{file}:{}: {e}", lineno + 1));
                break;
            }
        };
        if n == 0 {
            break;
        }
        lineno += 1;
        let whole = buf.last() == Some(&b'\n');
        if !whole && buf.len() > MAX_LINE {
            problems.push(format!(
                "{file}:{lineno}: line longer than {MAX_LINE} bytes, skipped"
            ));
            // Skip to the end of that line.
            let mut rest = Vec::new();
            let _ = input.read_until(b'\n', &mut rest);
            continue;
        }
        last_complete = whole;
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            if let Some(p) = std::mem::take(&mut stanza).finish(file, problems) {
                out(p);
            }
            continue;
        }
        if stanza.fields == 0 {
            stanza.line = lineno;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation line of a multi-line field (Description,
            // Conffiles): none of the fields kept spans lines.
            if stanza.fields == 0 {
                problems.push(format!(
                    "{file}:{lineno}: continuation line outside a field"
                ));
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            problems.push(format!("{file}:{lineno}: not a `Field: value` line"));
            continue;
        };
        stanza.fields += 1;
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "package" => stanza.package = Some(value),
            "version" => stanza.version = Some(value),
            "architecture" => stanza.architecture = Some(value),
            "status" => stanza.status = Some(value),
            _ => {}
        }
    }
    if !last_complete && stanza.fields > 0 {
        problems.push(format!(
            "{file}:{lineno}: the file ends inside a line (truncated?)"
        ));
    }
    if let Some(p) = stanza.finish(file, problems) {
        out(p);
    }
}

/// dpkg's version order (deb-version(7)): epoch, then upstream version,
/// then Debian revision; in each, runs of non-digits compare by character
/// (letters before other characters, `~` before everything, even the end),
/// runs of digits numerically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split_version(a);
    let (eb, ub, rb) = split_version(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| compare_part(ra.as_bytes(), rb.as_bytes()))
}

fn split_version(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

fn char_order(c: Option<&u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
        Some(b'~') => -1,
        Some(c) => i32::from(*c) + 256,
    }
}

fn strip_zeros(d: &[u8]) -> &[u8] {
    let zeros = d.iter().take_while(|&&c| c == b'0').count();
    &d[zeros..]
}

fn compare_part(mut a: &[u8], mut b: &[u8]) -> Ordering {
    while !a.is_empty() || !b.is_empty() {
        while a.first().is_some_and(|c| !c.is_ascii_digit())
            || b.first().is_some_and(|c| !c.is_ascii_digit())
        {
            let (ca, cb) = (char_order(a.first()), char_order(b.first()));
            if ca != cb {
                return ca.cmp(&cb);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (na, nb) = (digits(a), digits(b));
        let (da, db) = (&a[..na], &b[..nb]);
        let (sa, sb) = (strip_zeros(da), strip_zeros(db));
        let by_value = sa.len().cmp(&sb.len()).then_with(|| sa.cmp(sb));
        if by_value != Ordering::Equal {
            return by_value;
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/compliance")
            .join(name)
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn inventory(r: &Report) -> &Inventory {
        r.inventory.value().expect("an inventory")
    }

    fn lines(inv: &Inventory) -> Vec<String> {
        inv.packages
            .iter()
            .map(|p| format!("{} {} {} {}", p.name, p.version, p.architecture, p.status))
            .collect()
    }

    /// A root holding `status` as its dpkg database.
    fn root_with(status: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(UPDATES)).unwrap();
        fs::write(dir.path().join(STATUS), status).unwrap();
        dir
    }

    /// Replaces the database as dpkg does: a new file renamed over it.
    fn replace(root: &Path, status: &str) {
        let tmp = root.join("var/lib/dpkg/status-new");
        fs::write(&tmp, status).unwrap();
        fs::rename(tmp, root.join(STATUS)).unwrap();
    }

    fn stanza(name: &str, arch: &str, version: &str, status: &str) -> String {
        format!(
            "Package: {name}\nStatus: install ok {status}\nArchitecture: {arch}\nVersion: {version}\nDescription: x\n more\n\n"
        )
    }

    #[test]
    fn lists_what_dpkg_query_lists_from_a_fixture() {
        let r = Packages::with_root(fixture("hardened")).scan(at(0));
        let inv = inventory(&r);
        assert_eq!(
            lines(inv),
            [
                "adduser 3.134 all installed",
                "apparmor 3.0.8-3 amd64 installed",
                "chrony 4.3-2+deb12u1 amd64 config-files",
                "libc6 2.36-9+deb12u10 amd64 installed",
                "libc6 2.36-9+deb12u10 i386 installed",
                "nftables 1.0.6-2+deb12u2 amd64 installed",
                "openssh-server 1:9.2p1-2+deb12u5 amd64 installed",
                "vim 2:9.0.1378-2 amd64 half-configured",
            ],
            "not-installed entries are left out, as dpkg-query -W does"
        );
        assert_eq!(inv.count, 8);
        assert_eq!(inv.omitted, 0);
        assert!(inv.problems.is_empty(), "{:?}", inv.problems);
        assert!(!inv.compared, "the first parse is the baseline");
        assert_eq!(r.baseline, Some(at(0)));
        assert!(r.changes.is_empty());
        assert_eq!(r.database, "/var/lib/dpkg/status");
    }

    /// The real database of this machine against dpkg-query's own listing.
    #[test]
    fn lists_exactly_what_dpkg_query_lists_on_this_machine() {
        let Ok(out) = Command::new("dpkg-query")
            .args(["-W", "-f=${Package} ${Version} ${Architecture}\n"])
            .output()
        else {
            assert!(
                !Path::new("/var/lib/dpkg/status").exists(),
                "dpkg-query is missing but a dpkg database exists"
            );
            let r = Packages::with_root("/").scan(at(0));
            assert!(r.inventory.value().is_none(), "no dpkg: unavailable");
            return;
        };
        assert!(out.status.success(), "dpkg-query -W failed: {out:?}");
        let mut expected: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let r = Packages::with_root("/").scan(at(0));
        let inv = inventory(&r);
        let mut got: Vec<String> = inv
            .packages
            .iter()
            .map(|p| format!("{} {} {}", p.name, p.version, p.architecture))
            .collect();
        expected.sort();
        got.sort();
        assert!(!got.is_empty());
        assert_eq!(got, expected);
        assert!(inv.problems.is_empty(), "{:?}", inv.problems);
    }

    #[test]
    fn no_dpkg_is_unavailable_with_the_reason() {
        let mut c = Packages::with_root(fixture("bare"));
        for i in 0..2 {
            let r = c.scan(at(i));
            assert_eq!(
                serde_json::to_value(&r.inventory).unwrap(),
                serde_json::json!({"unavailable": "no dpkg database: /var/lib/dpkg/status does not exist"})
            );
            assert!(r.changes.is_empty());
            assert_eq!(r.baseline, None);
        }
    }

    #[test]
    fn a_broken_database_lists_what_it_can_and_names_each_problem() {
        let mut c = Packages::with_root(fixture("broken"));
        let r = c.scan(at(0));
        let inv = inventory(&r);
        assert_eq!(
            lines(inv),
            [
                "good-one 1.0-1 amd64 installed",
                "odd-lines 2.0 amd64 installed",
                "good-two 3 all installed",
            ]
        );
        let f = "/var/lib/dpkg/status";
        assert_eq!(
            inv.problems,
            [
                format!("{f}:6: not a `Field: value` line"),
                format!("{f}:12: a stanza without a Package field"),
                format!("{f}:15: package bad-status: malformed Status `install ok`"),
                format!("{f}:19: continuation line outside a field"),
                format!("{f}:27: the file ends inside a line (truncated?)"),
                format!("{f}:26: package truncated (inst) has no Version field"),
            ]
        );
        assert!(!inv.compared);
        // The problems are logged once: the unchanged file is not parsed
        // again, and the same problems are not logged again.
        let logged = c.logged.clone();
        let again = c.scan(at(1));
        assert_eq!(inventory(&again).read_at, at(0), "not parsed again");
        assert_eq!(c.logged, logged);
    }

    #[test]
    fn garbage_and_huge_lines_never_panic() {
        let mut junk = vec![0xffu8, 0xfe, b'\n', b':', b'\n', b'\t', b'\n'];
        junk.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        junk.extend(b"\nPackage: after\nStatus: install ok installed\nVersion: 1\n");
        let dir = root_with("");
        fs::write(dir.path().join(STATUS), &junk).unwrap();
        let r = Packages::with_root(dir.path()).scan(at(0));
        let inv = inventory(&r);
        assert_eq!(lines(inv), ["after 1  installed"]);
        assert!(
            inv.problems.iter().any(|p| p.contains("longer than")),
            "{:?}",
            inv.problems
        );
        let mut many = String::new();
        for i in 0..50 {
            many.push_str(&format!("odd line {i}\n"));
        }
        fs::write(dir.path().join(STATUS), many).unwrap();
        let inv = Packages::with_root(dir.path()).scan(at(0)).inventory;
        let problems = &inv.value().unwrap().problems;
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(problems[MAX_PROBLEMS], "and 30 more problems");
    }

    #[test]
    fn changes_between_scans() {
        let before = [
            stanza("curl", "amd64", "7.88.1-10", "installed"),
            stanza("gone", "amd64", "1.0", "installed"),
            stanza("kept", "all", "5", "installed"),
            stanza("libfoo", "amd64", "2.0-1", "installed"),
            stanza("libfoo", "i386", "2.0-1", "installed"),
            stanza("rc-later", "amd64", "3", "installed"),
            stanza("vim", "amd64", "2:9.0-1", "installed"),
        ]
        .concat();
        let dir = root_with(&before);
        let mut c = Packages::with_root(dir.path());
        assert!(c.scan(at(0)).changes.is_empty());
        let after = [
            stanza("curl", "amd64", "7.88.1-10+deb12u1", "installed"),
            stanza("kept", "all", "5", "installed"),
            stanza("libfoo", "amd64", "2.0-1", "installed"),
            stanza("newpkg", "amd64", "0.1", "installed"),
            "Package: rc-later\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 3\n\n"
                .to_owned(),
            stanza("vim", "amd64", "2:8.2-1", "installed"),
        ]
        .concat();
        replace(dir.path(), &after);
        let r = c.scan(at(60));
        assert!(inventory(&r).compared);
        type Row<'a> = (
            ChangeKind,
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
        );
        let got: Vec<Row> = r
            .changes
            .iter()
            .map(|c| {
                assert_eq!(c.at, at(60));
                (
                    c.kind,
                    c.name.as_str(),
                    c.architecture.as_str(),
                    c.version.as_deref(),
                    c.previous_version.as_deref(),
                )
            })
            .collect();
        use ChangeKind::*;
        assert_eq!(
            got,
            [
                (
                    Upgraded,
                    "curl",
                    "amd64",
                    Some("7.88.1-10+deb12u1"),
                    Some("7.88.1-10")
                ),
                (Removed, "gone", "amd64", None, Some("1.0")),
                (Removed, "libfoo", "i386", None, Some("2.0-1")),
                (Installed, "newpkg", "amd64", Some("0.1"), None),
                (Removed, "rc-later", "amd64", None, Some("3")),
                (Downgraded, "vim", "amd64", Some("2:8.2-1"), Some("2:9.0-1")),
            ]
        );
        assert_eq!(r.changes_since(at(60)).count(), 6);
        assert_eq!(r.changes_since(at(61)).count(), 0);
        // Unchanged: no new changes, the old ones stay.
        let r = c.scan(at(120));
        assert_eq!(r.changes.len(), 6);
        assert_eq!(inventory(&r).read_at, at(60));
    }

    #[test]
    fn a_damaged_parse_is_not_compared() {
        let clean = [
            stanza("a", "amd64", "1", "installed"),
            stanza("b", "amd64", "1", "installed"),
        ]
        .concat();
        let dir = root_with(&clean);
        let mut c = Packages::with_root(dir.path());
        c.scan(at(0));
        // Truncated in the middle: b is missing, with a problem.
        replace(
            dir.path(),
            "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\nPackage: b\nStatus: insta",
        );
        let r = c.scan(at(10));
        assert!(!inventory(&r).compared);
        assert!(r.changes.is_empty(), "a damaged file is no removal");
        // Whole again, with an upgrade: compared with the last clean parse.
        replace(
            dir.path(),
            &[
                stanza("a", "amd64", "1", "installed"),
                stanza("b", "amd64", "2", "installed"),
            ]
            .concat(),
        );
        let r = c.scan(at(20));
        assert_eq!(r.changes.len(), 1);
        assert_eq!(r.changes[0].kind, ChangeKind::Upgraded);
        assert_eq!(r.baseline, Some(at(0)));
    }

    #[test]
    fn the_journal_overrides_the_status_file() {
        let dir = root_with(
            &[
                stanza("a", "amd64", "1", "installed"),
                stanza("b", "amd64", "1", "installed"),
            ]
            .concat(),
        );
        fs::write(
            dir.path().join(UPDATES).join("0000"),
            stanza("a", "amd64", "2", "installed"),
        )
        .unwrap();
        fs::write(
            dir.path().join(UPDATES).join("0001"),
            stanza("c", "amd64", "1", "unpacked"),
        )
        .unwrap();
        fs::write(
            dir.path().join(UPDATES).join("tmp.i"),
            stanza("ignored", "amd64", "1", "installed"),
        )
        .unwrap();
        let mut c = Packages::with_root(dir.path());
        let r = c.scan(at(0));
        assert_eq!(
            lines(inventory(&r)),
            [
                "a 2 amd64 installed",
                "b 1 amd64 installed",
                "c 1 amd64 unpacked"
            ]
        );
        // A new journal entry is a change of the database.
        fs::write(
            dir.path().join(UPDATES).join("0002"),
            stanza("b", "amd64", "0.9", "installed"),
        )
        .unwrap();
        let r = c.scan(at(1));
        assert_eq!(r.changes.len(), 1);
        assert_eq!(r.changes[0].kind, ChangeKind::Downgraded);
    }

    #[test]
    fn caps_are_enforced_and_counted() {
        let many: String = (0..10)
            .map(|i| stanza(&format!("p{i}"), "amd64", "1", "installed"))
            .collect();
        let dir = root_with(&many);
        let mut c = Packages::new(&Options {
            packages_interval: Duration::from_secs(60),
            packages_root: dir.path().into(),
            packages_max: 4,
            packages_max_changes: 3,
        });
        let r = c.scan(at(0));
        assert_eq!(inventory(&r).count, 4);
        assert_eq!(inventory(&r).omitted, 6);
        // Four listed packages removed (p0..p3), four installed (q0..q3:
        // the cap keeps the first four of the file): eight changes.
        let other: String = (0..10)
            .map(|i| stanza(&format!("q{i}"), "amd64", "1", "installed"))
            .collect();
        replace(dir.path(), &other);
        let r = c.scan(at(1));
        assert_eq!(r.changes.len(), 3);
        assert_eq!(r.changes_evicted, 5);
        let names: Vec<&str> = r.changes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["q1", "q2", "q3"], "the newest kept, in name order");
    }

    #[test]
    fn dpkg_version_order() {
        use Ordering::*;
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0a", "1.0+", Less),
            ("1:0.1", "9.9", Greater),
            ("2.36-9+deb12u10", "2.36-9+deb12u9", Greater),
            ("1.001", "1.1", Equal),
            ("1.0-1", "1.0", Greater),
            ("7.88.1-10+deb12u1", "7.88.1-10", Greater),
            ("0:1.2", "1.2", Equal),
            ("1.2-3-4", "1.2-3-5", Less),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn report_serializes_with_rfc3339_times() {
        let r = Packages::with_root(fixture("defaults")).scan(at(0));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["baseline"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["inventory"]["count"], 2);
        assert_eq!(
            v["inventory"]["packages"][0],
            serde_json::json!({"name": "base-files", "version": "12.4+deb12u11", "architecture": "amd64", "status": "installed"})
        );
    }

    /// The OpenAPI schema the API will serve, named apart from the others.
    #[test]
    fn report_schema() {
        use utoipa::{PartialSchema, ToSchema};
        assert_eq!(Report::name(), "PackagesReport");
        assert_eq!(Inventory::name(), "PackageInventory");
        let v = serde_json::to_value(<Report as PartialSchema>::schema()).unwrap();
        let props: Vec<&String> = v["properties"].as_object().unwrap().keys().collect();
        assert_eq!(
            props,
            [
                "baseline",
                "changes",
                "changes_evicted",
                "database",
                "inventory"
            ]
        );
    }
}
