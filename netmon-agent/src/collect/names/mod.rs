//! Hostnames for devices: from DHCP lease files when present, else reverse
//! DNS, cached.
//!
//! [`Hostnames`] is owned by the discovery collector and used from its
//! thread: [`Hostnames::refresh`] once per cycle (re-reads the lease files
//! that changed: may take milliseconds for a large file), then
//! [`Hostnames::lookup`] for each device (a few hash lookups; never blocks,
//! never touches the filesystem or the network).
//!
//! Which name wins, for a device's MAC and IP:
//! 1. a lease for the MAC that names it: an active one over an expired one,
//!    then the one that ends last (an expired lease's name is still a good
//!    hint: a device keeps its name when it comes back, while a MAC never
//!    moves to another device);
//! 2. an *active* lease for the IP that names it (DHCPv6 leases name an IP
//!    only; an expired lease's IP may have been given to another device, so
//!    it names nothing);
//! 3. the IP's reverse DNS (see [`rdns`]), unless turned off.
//!
//! Lease files are found from the options or, by default, at the
//! well-known paths ([`DEFAULT_LEASE_FILES`]); each is re-read only when
//! its size, modification time or inode changes. A file that cannot be
//! read or has bad records is logged once (file, line, what was wrong) until
//! it changes; its good records are used.

pub mod leases;
pub mod rdns;

use std::{
    collections::HashMap,
    fs::{self, File},
    io::{self, Read},
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;
use tracing::{debug, warn};

use leases::{Ends, Lease};
use rdns::{CacheStats, ReverseDns};

/// Where Linux DHCP servers keep their leases: dnsmasq (Debian, Fedora,
/// OpenWrt), ISC dhcpd (Debian, Fedora) and Kea (v4 and v6).
pub const DEFAULT_LEASE_FILES: &[&str] = &[
    "/var/lib/misc/dnsmasq.leases",
    "/var/lib/dnsmasq/dnsmasq.leases",
    "/tmp/dhcp.leases",
    "/var/lib/dhcp/dhcpd.leases",
    "/var/lib/dhcpd/dhcpd.leases",
    "/var/lib/kea/kea-leases4.csv",
    "/var/lib/kea/kea-leases6.csv",
];

/// Largest lease file read, in bytes; a larger one is logged and skipped
/// (a big network's file is a few MiB).
pub const MAX_FILE: u64 = 64 << 20;

/// Addresses the reverse-DNS cache holds at most.
pub const DNS_CACHE_ENTRIES: usize = 16_384;

/// Options of the hostname lookup (flattened into the discovery options).
#[derive(Clone, Debug, clap::Args)]
#[group(id = "names-options")]
pub struct Options {
    /// DHCP lease file to read hostnames from: dnsmasq, ISC dhcpd or Kea
    /// CSV, found from its content (repeatable, or comma-separated).
    /// Default: those of the well-known paths that exist.
    #[arg(
        long = "lease-file",
        value_name = "PATH",
        value_delimiter = ',',
        env = "NETMON_LEASE_FILES"
    )]
    pub names_lease_files: Vec<PathBuf>,

    /// Do not look device names up in reverse DNS (lease files only).
    #[arg(long = "no-reverse-dns", env = "NETMON_NO_REVERSE_DNS")]
    pub names_no_reverse_dns: bool,

    /// How long a reverse-DNS name is kept before it is looked up again.
    #[arg(long = "reverse-dns-ttl", value_name = "DURATION", default_value = "1h", value_parser = crate::units::parse_duration, env = "NETMON_REVERSE_DNS_TTL")]
    pub names_reverse_dns_ttl: Duration,

    /// How long an address without a reverse-DNS name is left alone.
    #[arg(long = "reverse-dns-negative-ttl", value_name = "DURATION", default_value = "10m", value_parser = crate::units::parse_duration, env = "NETMON_REVERSE_DNS_NEGATIVE_TTL")]
    pub names_reverse_dns_negative_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            names_lease_files: Vec::new(),
            names_no_reverse_dns: false,
            names_reverse_dns_ttl: Duration::from_secs(3600),
            names_reverse_dns_negative_ttl: Duration::from_secs(600),
        }
    }
}

/// Counts for the discovery report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Lease files read successfully (at least partly).
    pub lease_files: usize,
    /// MACs a lease names.
    pub leased_names: usize,
    /// Reverse-DNS cache; `None` when reverse DNS is off.
    pub reverse_dns: Option<CacheStats>,
}

/// The file's identity and version: any change means re-read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: (i64, i64),
    ino: (u64, u64),
}

/// One lease file and what was last read from it.
#[derive(Debug)]
struct LeaseFile {
    path: PathBuf,
    /// Given on the command line: its absence is worth a log line.
    explicit: bool,
    stamp: Option<Stamp>,
    leases: Vec<Lease>,
    /// The last problem logged, so a lasting one is logged once.
    logged: Option<String>,
}

/// The best named lease for a key: its name, whether the server still
/// counts it bound, and its end.
#[derive(Debug, Clone)]
struct Named {
    name: String,
    bound: bool,
    ends: Ends,
}

impl Named {
    fn key(&self) -> (bool, Ends) {
        (self.bound, self.ends)
    }
}

/// Hostnames of devices, cached.
#[derive(Debug)]
pub struct Hostnames {
    files: Vec<LeaseFile>,
    by_mac: HashMap<[u8; 6], Named>,
    by_ip: HashMap<IpAddr, Named>,
    dns: Option<ReverseDns>,
    /// Warnings logged so far (tests check that a lasting problem is
    /// logged once).
    warnings: u64,
}

impl Hostnames {
    /// Starts the reverse-DNS workers (unless turned off); reads nothing
    /// until [`Hostnames::refresh`].
    pub fn new(opts: &Options) -> Self {
        let files = if opts.names_lease_files.is_empty() {
            DEFAULT_LEASE_FILES
                .iter()
                .map(|p| (PathBuf::from(p), false))
                .collect::<Vec<_>>()
        } else {
            opts.names_lease_files
                .iter()
                .map(|p| (p.clone(), true))
                .collect()
        };
        Hostnames {
            files: files
                .into_iter()
                .map(|(path, explicit)| LeaseFile {
                    path,
                    explicit,
                    stamp: None,
                    leases: Vec::new(),
                    logged: None,
                })
                .collect(),
            by_mac: HashMap::new(),
            by_ip: HashMap::new(),
            dns: (!opts.names_no_reverse_dns).then(|| {
                ReverseDns::new(
                    opts.names_reverse_dns_ttl,
                    opts.names_reverse_dns_negative_ttl,
                    DNS_CACHE_ENTRIES,
                )
            }),
            warnings: 0,
        }
    }

    /// Re-reads the lease files that changed (or appeared, or went away)
    /// and prunes the reverse-DNS cache. Call it once per discovery cycle,
    /// before the cycle's lookups; it blocks for as long as reading the
    /// changed files takes.
    pub fn refresh(&mut self) {
        let mut changed = false;
        for i in 0..self.files.len() {
            changed |= self.refresh_file(i);
        }
        if changed {
            self.reindex();
        }
        if let Some(dns) = &mut self.dns {
            dns.prune();
        }
    }

    /// The hostname known for `mac`/`ip`, without blocking: a reverse-DNS
    /// lookup that is not cached yet is started in the background and
    /// answered by a later call.
    pub fn lookup(&mut self, mac: [u8; 6], ip: Option<IpAddr>) -> Option<String> {
        if let Some(n) = self.by_mac.get(&mac) {
            return Some(n.name.clone());
        }
        let ip = ip?;
        if let Some(n) = self.by_ip.get(&ip)
            && n.bound
            && n.ends > Ends::At(leases::unix_now())
        {
            return Some(n.name.clone());
        }
        self.dns.as_mut()?.lookup(ip)
    }

    pub fn stats(&mut self) -> Stats {
        Stats {
            lease_files: self.files.iter().filter(|f| f.stamp.is_some()).count(),
            leased_names: self.by_mac.len(),
            reverse_dns: self.dns.as_mut().map(ReverseDns::stats),
        }
    }

    /// Warnings logged so far.
    pub fn warnings(&self) -> u64 {
        self.warnings
    }

    /// Checks one file; true when its leases changed.
    fn refresh_file(&mut self, i: usize) -> bool {
        let f = &mut self.files[i];
        let meta = match fs::metadata(&f.path) {
            Ok(m) => m,
            Err(e) => {
                let had = f.stamp.take().is_some() || !f.leases.is_empty();
                f.leases.clear();
                if e.kind() != io::ErrorKind::NotFound || f.explicit {
                    let what = format!("cannot read it: {e}");
                    self.warnings += log_once(f, &what, 0);
                } else {
                    f.logged = None;
                }
                return had;
            }
        };
        if !meta.is_file() {
            let had = f.stamp.take().is_some() || !f.leases.is_empty();
            f.leases.clear();
            let what = if meta.is_dir() {
                "it is a directory, not a lease file".to_owned()
            } else {
                "it is not a regular file".to_owned()
            };
            self.warnings += log_once(f, &what, 0);
            return had;
        }
        let stamp = Stamp {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ino: (meta.dev(), meta.ino()),
        };
        if f.stamp == Some(stamp) {
            return false;
        }
        if stamp.size > MAX_FILE {
            let had = !f.leases.is_empty();
            f.leases.clear();
            f.stamp = None;
            let what = format!(
                "it is {} bytes, over the {MAX_FILE}-byte limit; skipped",
                stamp.size
            );
            self.warnings += log_once(f, &what, 0);
            return had;
        }
        let data = match read_bounded(&f.path) {
            Ok(d) => d,
            Err(e) => {
                let had = !f.leases.is_empty();
                f.leases.clear();
                f.stamp = None;
                let what = format!("cannot read it: {e}");
                self.warnings += log_once(f, &what, 0);
                return had;
            }
        };
        let parsed = leases::parse(&data);
        debug!(
            file = %f.path.display(),
            format = ?parsed.format,
            leases = parsed.leases.len(),
            problems = parsed.problems.len(),
            "Read a lease file."
        );
        f.stamp = Some(stamp);
        f.leases = parsed.leases;
        match parsed.problems.first() {
            Some(p) => {
                let what = format!(
                    "line {}: {}{}",
                    p.line,
                    p.what,
                    match parsed.problems.len() {
                        1 => String::new(),
                        n => format!(" (and {} more bad records)", n - 1),
                    }
                );
                self.warnings += log_once(f, &what, f.leases.len());
            }
            None => f.logged = None,
        }
        true
    }

    /// Rebuilds the name indexes from every file's leases. Within a file a
    /// later lease for the same address replaces an earlier one.
    fn reindex(&mut self) {
        self.by_mac.clear();
        self.by_ip.clear();
        for f in &self.files {
            let mut latest: HashMap<IpAddr, &Lease> = HashMap::with_capacity(f.leases.len());
            for l in &f.leases {
                latest.insert(l.ip, l);
            }
            for l in latest.into_values() {
                let Some(name) = &l.name else { continue };
                let named = Named {
                    name: name.clone(),
                    bound: l.bound,
                    ends: l.ends,
                };
                if let Some(mac) = l.mac {
                    better(&mut self.by_mac, mac, &named);
                }
                better(&mut self.by_ip, l.ip, &named);
            }
        }
    }
}

/// Keeps in `map[key]` the better of its lease and `new`: bound over not,
/// then the later end.
fn better<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Named>, key: K, new: &Named) {
    match map.get_mut(&key) {
        Some(old) if old.key() >= new.key() => {}
        Some(old) => *old = new.clone(),
        None => {
            map.insert(key, new.clone());
        }
    }
}

/// Logs a problem with a lease file unless it is the one logged last;
/// returns how many lines were logged (0 or 1).
fn log_once(f: &mut LeaseFile, what: &str, good: usize) -> u64 {
    if f.logged.as_deref() == Some(what) {
        return 0;
    }
    f.logged = Some(what.to_owned());
    warn!(
        file = %f.path.display(),
        problem = what,
        leases_used = good,
        "Lease file problem; its good records are still used."
    );
    1
}

/// Reads at most [`MAX_FILE`] bytes (the file may grow after its size was
/// checked).
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    File::open(path)?.take(MAX_FILE).read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::{ffi::CString, fs::FileTimes, time::SystemTime};

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/leases")
            .join(name)
    }

    fn names(files: &[PathBuf]) -> Hostnames {
        Hostnames::new(&Options {
            names_lease_files: files.to_vec(),
            names_no_reverse_dns: true,
            ..Options::default()
        })
    }

    fn mac(s: &str) -> [u8; 6] {
        leases::parse_hw(s).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn names_come_from_the_mac_then_an_active_lease_of_the_ip() {
        let mut h = names(&[
            fixture("dnsmasq.leases"),
            fixture("dhcpd.leases"),
            fixture("kea-leases4.csv"),
        ]);
        assert_eq!(
            h.lookup(mac("b8:27:eb:aa:bb:cc"), ip("10.0.0.22")),
            None,
            "read nothing before refresh"
        );
        h.refresh();
        assert_eq!(h.warnings(), 0);
        let stranger = mac("02:00:00:00:00:99");
        let cases = [
            // dnsmasq, whatever IP the device has now.
            (
                mac("b8:27:eb:aa:bb:cc"),
                ip("10.0.0.99"),
                Some("raspberrypi"),
            ),
            (mac("b8:27:eb:aa:bb:cc"), None, Some("raspberrypi")),
            // An expired lease still names its MAC...
            (mac("f0:9f:c2:00:00:01"), None, Some("old-phone")),
            // ...but not its IP, which may belong to someone else now.
            (stranger, ip("10.0.0.30"), None),
            // A lease without a name names nothing.
            (mac("dc:a6:32:12:34:56"), ip("10.0.0.23"), None),
            // DHCPv6 and InfiniBand leases name their IP.
            (stranger, ip("fd00::99"), Some("printer-v6")),
            (stranger, ip("10.0.0.40"), Some("ib-node")),
            // ISC: the active lease beats the free one for the same MAC.
            (mac("00:1b:21:aa:bb:cc"), None, Some("desk")),
            (stranger, ip("10.0.0.50"), None),
            // ISC: the later block for 10.0.0.52 wins.
            (mac("52:54:00:de:ad:01"), None, Some("kitchen-tablet")),
            (stranger, ip("10.0.0.52"), Some("kitchen-tablet")),
            // Kea: the later row wins; an expired-reclaimed lease still
            // names its MAC; a deleted one too (its name is still the
            // device's), but not its IP.
            (mac("08:00:27:04:05:06"), None, Some("living-room-tv")),
            (mac("08:00:27:07:08:09"), None, Some("gone")),
            (stranger, ip("10.0.0.74"), None),
            (stranger, ip("10.0.0.99"), None),
        ];
        for (m, a, want) in cases {
            assert_eq!(h.lookup(m, a).as_deref(), want, "{m:02x?} {a:?}");
        }
        let s = h.stats();
        assert_eq!(s.lease_files, 3);
        assert_eq!(s.reverse_dns, None);
    }

    #[test]
    fn an_active_lease_beats_a_later_expired_one_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.leases");
        let b = dir.path().join("b.leases");
        fs::write(&a, "1000 aa:bb:cc:00:00:01 10.0.0.5 expired-name *\n").unwrap();
        fs::write(&b, "0 aa:bb:cc:00:00:01 10.0.0.6 current-name *\n").unwrap();
        let mut h = names(&[a.clone(), b]);
        h.refresh();
        assert_eq!(
            h.lookup(mac("aa:bb:cc:00:00:01"), None).as_deref(),
            Some("current-name")
        );
        fs::write(
            &a,
            "1000 aa:bb:cc:00:00:01 10.0.0.5 expired-name *\n1 aa:bb:cc:00:00:02 10.0.0.7 x *\n",
        )
        .unwrap();
        h.refresh();
        assert_eq!(
            h.lookup(mac("aa:bb:cc:00:00:01"), None).as_deref(),
            Some("current-name")
        );
    }

    #[test]
    fn files_are_reread_only_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dhcp.leases");
        let m = mac("aa:bb:cc:00:00:01");
        fs::write(&path, "0 aa:bb:cc:00:00:01 10.0.0.5 alpha *\n").unwrap();
        let mut h = names(std::slice::from_ref(&path));
        h.refresh();
        assert_eq!(h.lookup(m, None).as_deref(), Some("alpha"));
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();

        // Same size, same inode, same mtime: not re-read.
        fs::write(&path, "0 aa:bb:cc:00:00:01 10.0.0.5 bravo *\n").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(mtime))
            .unwrap();
        h.refresh();
        assert_eq!(h.lookup(m, None).as_deref(), Some("alpha"));

        // A new mtime: re-read.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(SystemTime::now()))
            .unwrap();
        h.refresh();
        assert_eq!(h.lookup(m, None).as_deref(), Some("bravo"));

        // Gone: its names go with it; back: read again.
        fs::remove_file(&path).unwrap();
        h.refresh();
        assert_eq!(h.lookup(m, None), None);
        assert_eq!(h.warnings(), 1, "an explicit file that vanished is logged");
        fs::write(&path, "0 aa:bb:cc:00:00:01 10.0.0.5 charlie *\n").unwrap();
        h.refresh();
        assert_eq!(h.lookup(m, None).as_deref(), Some("charlie"));
    }

    #[test]
    fn bad_files_are_logged_once_until_they_change_and_their_good_records_used() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.leases");
        let fifo = dir.path().join("fifo");
        let cfifo = CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(cfifo.as_ptr(), 0o600) }, 0);
        let missing = dir.path().join("missing.leases");
        let garbage = dir.path().join("garbage");
        fs::write(&garbage, b"\x7fELF\x02\x01\x01\0\0\0\xff\xfe\n\0\0").unwrap();
        fs::write(
            &bad,
            "0 aa:bb:cc:00:00:01 10.0.0.5 good *\n0 aa:bb:cc:00:00:02 nonsense x *\n0 aa:bb:cc:00:00:03\n",
        )
        .unwrap();
        let files = [
            bad.clone(),
            dir.path().to_path_buf(), // a directory
            fifo,                     // would block a reader: never opened
            missing,
            garbage,
        ];
        let mut h = names(&files);
        h.refresh();
        assert_eq!(h.warnings(), 5);
        assert_eq!(
            h.lookup(mac("aa:bb:cc:00:00:01"), None).as_deref(),
            Some("good")
        );
        for _ in 0..3 {
            h.refresh();
        }
        assert_eq!(h.warnings(), 5, "lasting problems are logged once");

        // The file changes but keeps the same problem: still once.
        fs::write(
            &bad,
            "0 aa:bb:cc:00:00:01 10.0.0.5 better *\n0 aa:bb:cc:00:00:02 nonsense x *\n0 aa:bb:cc:00:00:03\n",
        )
        .unwrap();
        h.refresh();
        assert_eq!(h.warnings(), 5);
        assert_eq!(
            h.lookup(mac("aa:bb:cc:00:00:01"), None).as_deref(),
            Some("better")
        );
        // A different problem: logged.
        fs::write(&bad, "0 aa:bb:cc:00:00:01 10.0.0.5\n").unwrap();
        h.refresh();
        assert_eq!(h.warnings(), 6);
        // Fixed, then broken the same way again: logged again.
        fs::write(&bad, "0 aa:bb:cc:00:00:01 10.0.0.5 fixed *\n").unwrap();
        h.refresh();
        fs::write(&bad, "0 aa:bb:cc:00:00:01 10.0.0.5\n").unwrap();
        h.refresh();
        assert_eq!(h.warnings(), 7);
    }

    #[test]
    fn missing_default_files_are_not_problems() {
        let mut h = Hostnames::new(&Options {
            names_no_reverse_dns: true,
            ..Options::default()
        });
        assert_eq!(h.files.len(), DEFAULT_LEASE_FILES.len());
        h.refresh();
        // This machine is no DHCP server: nothing found, nothing logged.
        if DEFAULT_LEASE_FILES.iter().all(|p| !Path::new(p).exists()) {
            assert_eq!(h.warnings(), 0);
            assert_eq!(h.stats().lease_files, 0);
        }
    }

    #[test]
    fn options_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            names: Options,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--lease-file",
            "/a",
            "--lease-file=/b,/c",
            "--no-reverse-dns",
            "--reverse-dns-ttl",
            "5m",
        ])
        .unwrap();
        assert_eq!(
            cli.names.names_lease_files,
            [Path::new("/a"), Path::new("/b"), Path::new("/c")]
        );
        assert!(cli.names.names_no_reverse_dns);
        assert_eq!(cli.names.names_reverse_dns_ttl, Duration::from_secs(300));
        assert_eq!(
            cli.names.names_reverse_dns_negative_ttl,
            Duration::from_secs(600)
        );
        assert!(Cli::try_parse_from(["x", "--reverse-dns-ttl", "soon"]).is_err());
    }
}
