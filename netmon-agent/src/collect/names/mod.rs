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
    #[arg(long = "reverse-dns-ttl", value_name = "DURATION", default_value = "1h", value_parser = crate::config::parse_duration, env = "NETMON_REVERSE_DNS_TTL")]
    pub names_reverse_dns_ttl: Duration,

    /// How long an address without a reverse-DNS name is left alone.
    #[arg(long = "reverse-dns-negative-ttl", value_name = "DURATION", default_value = "10m", value_parser = crate::config::parse_duration, env = "NETMON_REVERSE_DNS_NEGATIVE_TTL")]
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
