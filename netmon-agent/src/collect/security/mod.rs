//! The security collector: seed 002's threat checks, natively, and what a
//! network agent on a gateway is placed to see.
//!
//! Each check is a module that looks at its source once a cycle and
//! returns what it found as [`Found`] items, each with a key naming its
//! subject (a process, a socket, an address); the collector's [`Tracker`]
//! gives a finding its `first_seen` (kept while the same subject is found
//! cycle after cycle) and `last_seen`, and forgets it when the check no
//! longer finds it. Checks:
//!
//! - [`procs`]: processes run from `/tmp`, `/var/tmp` or `/dev/shm`, and
//!   processes whose executable was deleted (procfs).
//! - [`arp`]: ARP spoofing, MAC changes and gateway impersonation, from the
//!   MACs discovery saw claiming each IPv4 address and the routing table's
//!   default gateways.
//! - [`listeners`]: listening sockets that were not listening when the
//!   agent started (netlink sock_diag).
//! - [`ssh`]: failed SSH logins per source within a window (auth.log, or
//!   the journal).
//!
//! At most `--security-max-findings` are listed (most severe first); the
//! rest are counted in `findings_omitted`.

pub mod arp;
pub mod listeners;
pub mod procs;
pub mod ssh;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::Problems;
use super::{
    Avail, CollectorName, Context, Reading, ViewSchema, discovery,
    registry::{Cap, Need},
    ser_time, view_schema,
};
use crate::{exposition::Family, shutdown::Stop};

/// Options of the security collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "security-options")]
pub struct Options {
    /// How often the security checks run.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_interval, env = "NETMON_SECURITY_INTERVAL")]
    pub security_interval: Duration,
    /// The procfs the process checks read (`/proc`; tests use a tree of
    /// their own).
    #[arg(long, default_value = "/proc", env = "NETMON_SECURITY_PROC")]
    pub security_proc: PathBuf,
    /// Most findings listed; the rest are counted in `findings_omitted`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_SECURITY_MAX_FINDINGS")]
    pub security_max_findings: u32,
    /// How long a MAC's claim to an IPv4 address counts after it was last
    /// seen: two MACs claiming one address within it are ARP spoofing (or
    /// a MAC change, when one stopped before the other started).
    #[arg(long, default_value = "15m", value_parser = crate::units::parse_duration, env = "NETMON_SECURITY_ARP_WINDOW")]
    pub security_arp_window: Duration,
    /// Gratuitous ARPs a second from one MAC, averaged over a discovery
    /// cycle, from which it is a `gratuitous_arp_storm`.
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate, env = "NETMON_SECURITY_GARP_RATE")]
    pub security_garp_rate: f64,
    /// Most listening sockets remembered (the baseline taken at start and
    /// the new ones together); more are counted in `listeners_untracked`
    /// and not judged.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_SECURITY_MAX_LISTENERS")]
    pub security_max_listeners: u32,
    /// The log sshd writes to (read incrementally); where it does not
    /// exist, sshd's journal entries are read (`journalctl`).
    #[arg(
        long,
        default_value = "/var/log/auth.log",
        env = "NETMON_SECURITY_AUTH_LOG"
    )]
    pub security_auth_log: PathBuf,
    /// Failed SSH logins from one source within `--security-ssh-window`
    /// that make an `ssh_brute_force` finding (1 to 64).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=ssh::ATTEMPTS_KEPT as i64), env = "NETMON_SECURITY_SSH_THRESHOLD")]
    pub security_ssh_threshold: u32,
    /// The window failed SSH logins are counted in (1s to 1day).
    #[arg(long, default_value = "10m", value_parser = parse_window, env = "NETMON_SECURITY_SSH_WINDOW")]
    pub security_ssh_window: Duration,
    /// Most SSH sources tracked; the one whose last attempt is oldest is
    /// evicted (counted in `ssh_sources_evicted`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_SECURITY_SSH_MAX_SOURCES")]
    pub security_ssh_max_sources: u32,
}

/// `--security-ssh-window`: a duration from 1s to a day.
fn parse_window(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(format!("{s} is outside 1s..=1day"));
    }
    Ok(d)
}

/// `--security-garp-rate`: a positive, finite number.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s} is not a positive number")),
    }
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SecurityFindingKind)]
pub enum Kind {
    /// A process whose executable lies under /tmp, /var/tmp or /dev/shm.
    ProcessInTmp,
    /// A process whose executable file was deleted after it started (an
    /// upgrade does this too; a payload that removes itself as well).
    DeletedExecutable,
    /// Two MACs claim one IPv4 address at once (both answer ARP for it).
    ArpSpoofing,
    /// An IPv4 address moved to another MAC (a replaced device looks the
    /// same).
    ArpMacChanged,
    /// A MAC other than the default gateway's claims the gateway's address.
    GatewayImpersonation,
    /// One MAC sends gratuitous ARPs (announcements) faster than
    /// `--security-garp-rate`.
    GratuitousArpStorm,
    /// A TCP or UDP socket listening on an address and port it was not
    /// listening on when the agent started.
    NewListener,
    /// `--security-ssh-threshold` or more failed SSH logins from one source
    /// within `--security-ssh-window`.
    SshBruteForce,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::ProcessInTmp,
        Kind::DeletedExecutable,
        Kind::NewListener,
        Kind::SshBruteForce,
        Kind::ArpSpoofing,
        Kind::ArpMacChanged,
        Kind::GatewayImpersonation,
        Kind::GratuitousArpStorm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ProcessInTmp => "process_in_tmp",
            Kind::DeletedExecutable => "deleted_executable",
            Kind::ArpSpoofing => "arp_spoofing",
            Kind::ArpMacChanged => "arp_mac_changed",
            Kind::GatewayImpersonation => "gateway_impersonation",
            Kind::GratuitousArpStorm => "gratuitous_arp_storm",
            Kind::NewListener => "new_listener",
            Kind::SshBruteForce => "ssh_brute_force",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Kind::ProcessInTmp
            | Kind::SshBruteForce
            | Kind::ArpSpoofing
            | Kind::GatewayImpersonation => Severity::Critical,
            Kind::DeletedExecutable
            | Kind::NewListener
            | Kind::ArpMacChanged
            | Kind::GratuitousArpStorm => Severity::Warning,
        }
    }
}

/// How bad a finding is; findings are listed most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SecuritySeverity)]
pub enum Severity {
    Critical,
    Warning,
}

/// What a check found in one cycle: a finding without its times.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub kind: Kind,
    /// Names the subject within its kind (a process's pid and start time,
    /// a socket, an address): the same key cycle after cycle is the same
    /// finding.
    pub key: String,
    pub evidence: String,
    pub detail: Detail,
}

/// The subject of a finding, by what kind of thing it is about. Fields
/// that do not apply are left out of the JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SecurityFindingDetail)]
pub struct Detail {
    /// The process (process findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process's name (`comm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The executable's path as the kernel names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The IPv4 address (ARP findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The MACs claiming it, the first seen with it first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macs: Option<Vec<String>>,
    /// The interface it was seen on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// The socket's protocol, `tcp` or `udp` (listener findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub protocol: Option<&'static str>,
    /// The address the socket is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub address: Option<IpAddr>,
    /// The port the socket is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The socket's owner (listener findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The address the failed logins came from (SSH findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub source: Option<IpAddr>,
    /// Failed logins within the window (at most 64 are counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The window they were counted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// The first failed login within the window (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_attempt: Option<String>,
    /// The last failed login (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<String>,
    /// User names tried (at most 8; the evidence counts the rest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SecurityFinding)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// What the finding rests on.
    pub evidence: String,
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub last_seen: SystemTime,
    #[serde(flatten)]
    pub detail: Detail,
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SecurityReport)]
pub struct Report {
    /// Findings, most severe first, then by kind and subject.
    pub findings: Vec<Finding>,
    /// Findings beyond `--security-max-findings`, not listed.
    pub findings_omitted: u64,
    /// Processes looked at.
    pub processes: u64,
    /// Processes whose executable could not be read (another user's
    /// without CAP_SYS_PTRACE, or kernel threads have none: those are
    /// not counted).
    pub unreadable: u64,
    /// What the ARP checks looked at; unavailable while discovery is off
    /// or has not run.
    pub arp: Avail<arp::ArpStats>,
    /// Listening sockets now (distinct protocol, address and port).
    pub listeners: u64,
    /// Listening sockets beyond `--security-max-listeners`, not judged.
    pub listeners_untracked: u64,
    /// sock_diag messages that did not parse this cycle.
    pub listeners_malformed: u64,
    /// Why the listening sockets could not be read this cycle, if they
    /// could not (the listener findings are then those of the last cycle
    /// read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listeners_error: Option<String>,
    /// Where failed SSH logins were read this cycle: the auth log's path
    /// or `journal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_read: Option<String>,
    /// Why they could not be read this cycle, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_error: Option<String>,
    /// Sources with a failed SSH login within the window.
    pub ssh_sources: u64,
    /// Sources evicted for room (`--security-ssh-max-sources`) since start.
    pub ssh_sources_evicted: u64,
    /// sshd failure lines that did not parse since start (logged once).
    pub ssh_odd_lines: u64,
}

/// When each finding was first seen, by kind and key; a finding not found
/// in a cycle is forgotten.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<(Kind, String), SystemTime>,
}

impl Tracker {
    /// This cycle's findings, with their first and last seen, sorted most
    /// severe first, then by kind and key.
    pub fn track(&mut self, now: SystemTime, mut found: Vec<Found>) -> Vec<Finding> {
        found.sort_by(|a, b| {
            (a.kind.severity(), a.kind, &a.key).cmp(&(b.kind.severity(), b.kind, &b.key))
        });
        let mut seen = HashMap::with_capacity(found.len());
        let findings = found
            .into_iter()
            .map(|f| {
                let key = (f.kind, f.key);
                let first_seen = *self.seen.get(&key).unwrap_or(&now);
                seen.insert(key, first_seen);
                Finding {
                    kind: f.kind,
                    severity: f.kind.severity(),
                    evidence: f.evidence,
                    first_seen,
                    last_seen: now,
                    detail: f.detail,
                }
            })
            .collect();
        self.seen = seen;
        findings
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The collector's state.
#[derive(Debug)]
pub struct Security {
    opts: Options,
    tracker: Tracker,
    /// Discovery's latest reading (set by `collect`), or why there is none.
    discovery: Result<Arc<Reading<discovery::Report>>, String>,
    listeners: listeners::Listeners,
    /// The last listener findings, kept through a cycle whose dump failed.
    listening: Vec<Found>,
    ssh: ssh::Ssh,
    problems: Problems,
}

impl Security {
    pub fn new(opts: &Options) -> Self {
        Security {
            opts: opts.clone(),
            tracker: Tracker::default(),
            discovery: Err("not read yet".into()),
            listeners: listeners::Listeners::new(
                opts.security_max_listeners,
                Some(std::process::id()),
            ),
            listening: Vec::new(),
            ssh: ssh::Ssh::new(
                &opts.security_auth_log,
                opts.security_ssh_threshold,
                opts.security_ssh_window,
                opts.security_ssh_max_sources,
            ),
            problems: Problems::default(),
        }
    }

    /// Runs every check once.
    pub fn scan(&mut self, now: SystemTime) -> Report {
        let mut found = Vec::new();
        let procs = procs::scan(&self.opts.security_proc, &mut found);
        let arp = match &self.discovery {
            Ok(d) => Avail::Value(arp::scan(
                &d.report,
                arp::gateways(&self.opts.security_proc),
                self.opts.security_arp_window,
                self.opts.security_garp_rate,
                now,
                &mut found,
            )),
            Err(why) => Avail::unavailable(why.clone()),
        };
        let mut malformed = 0;
        let (listening, listeners_error) = match listeners::dump(&mut malformed) {
            Ok(now) => {
                let mut out = Vec::new();
                let c = self
                    .listeners
                    .judge(now, &self.opts.security_proc, &mut out);
                self.listening = out;
                (c, None)
            }
            Err(e) => (
                listeners::Counts::default(),
                Some(format!("sock_diag: {e}")),
            ),
        };
        found.extend(self.listening.iter().cloned());
        let (ssh_read, ssh_error) = match self.ssh.scan(now, &mut found) {
            Ok(from) => (Some(from), None),
            Err(e) => (None, Some(e)),
        };
        let c = &self.ssh.brute.counts;
        let mut problems: Vec<String> = [&listeners_error, &ssh_error]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if let Some(odd) = &c.odd_example {
            problems.push(format!(
                "sshd failure lines not understood (counted in ssh_odd_lines); the first: {odd}"
            ));
        }
        self.problems.report(CollectorName::Security, problems);
        let mut findings = self.tracker.track(now, found);
        let max = self.opts.security_max_findings as usize;
        let omitted = findings.len().saturating_sub(max) as u64;
        findings.truncate(max);
        Report {
            findings,
            findings_omitted: omitted,
            processes: procs.processes,
            unreadable: procs.unreadable,
            arp,
            listeners: listening.listeners,
            listeners_untracked: listening.untracked,
            listeners_malformed: malformed,
            listeners_error,
            ssh_read,
            ssh_error,
            ssh_sources: c.sources,
            ssh_sources_evicted: c.evicted,
            ssh_odd_lines: c.odd_lines,
        }
    }
}

impl super::Collector for Security {
    const NAME: CollectorName = CollectorName::Security;
    type Report = Report;
    type Options = Options;
    type History = ();
    const VIEW: Option<ViewSchema> = Some(view_schema::<Report>);
    const NEEDS: &'static [Need] = &[Need {
        cap: Cap::SysPtrace,
        what: "reading other processes' executables (/proc/<pid>/exe)",
        without: "the processes of other users (counted as unreadable)",
    }];

    fn new(opts: &Options, _: &Stop) -> Self {
        Security::new(opts)
    }

    fn interval(opts: &Options) -> Duration {
        opts.security_interval
    }

    fn collect(&mut self, ctx: &Context) -> Report {
        self.discovery = arp::discovery(&ctx.telemetry);
        self.scan(SystemTime::now())
    }

    fn metrics(r: &Report, out: &mut Vec<Family>) {
        let mut findings = Family::gauge(
            "netmon_security_findings",
            &["kind"],
            "Security findings now, by kind (listed only: see findings_omitted).",
        );
        for kind in Kind::ALL {
            let n = r.findings.iter().filter(|f| f.kind == kind).count();
            findings.int(&[kind.as_str()], n as u64);
        }
        let mut omitted = Family::gauge(
            "netmon_security_findings_omitted",
            &[],
            "Security findings beyond --security-max-findings, not listed.",
        );
        omitted.int(&[], r.findings_omitted);
        let mut unreadable = Family::gauge(
            "netmon_security_processes_unreadable",
            &[],
            "Processes whose executable the agent could not read (no CAP_SYS_PTRACE).",
        );
        unreadable.int(&[], r.unreadable);
        let mut untracked = Family::gauge(
            "netmon_security_listeners_untracked",
            &[],
            "Listening sockets beyond --security-max-listeners, not judged.",
        );
        untracked.int(&[], r.listeners_untracked);
        let mut evicted = Family::counter(
            "netmon_security_ssh_sources_evicted_total",
            &[],
            "SSH sources evicted for room (--security-ssh-max-sources).",
        );
        evicted.int(&[], r.ssh_sources_evicted);
        let mut odd = Family::counter(
            "netmon_security_ssh_odd_lines_total",
            &[],
            "sshd failure lines that did not parse.",
        );
        odd.int(&[], r.ssh_odd_lines);
        out.extend([findings, omitted, unreadable, untracked, evicted, odd]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn found(kind: Kind, key: &str) -> Found {
        Found {
            kind,
            key: key.into(),
            evidence: format!("{key} evidence"),
            detail: Detail::default(),
        }
    }

    #[test]
    fn a_finding_keeps_its_first_seen_while_it_is_found_and_is_forgotten_after() {
        let mut t = Tracker::default();
        let f = t.track(at(0), vec![found(Kind::DeletedExecutable, "a")]);
        assert_eq!((f[0].first_seen, f[0].last_seen), (at(0), at(0)));
        let f = t.track(
            at(10),
            vec![
                found(Kind::DeletedExecutable, "b"),
                found(Kind::DeletedExecutable, "a"),
                found(Kind::ProcessInTmp, "z"),
            ],
        );
        // Most severe first, then by kind and key.
        let order: Vec<(Kind, &str)> = f.iter().map(|f| (f.kind, &f.evidence[..1])).collect();
        assert_eq!(
            order,
            [
                (Kind::ProcessInTmp, "z"),
                (Kind::DeletedExecutable, "a"),
                (Kind::DeletedExecutable, "b"),
            ]
        );
        assert_eq!((f[1].first_seen, f[1].last_seen), (at(0), at(10)));
        assert_eq!(f[2].first_seen, at(10));
        // Not found once: forgotten; found again: new.
        assert!(t.track(at(20), vec![]).is_empty());
        assert!(t.is_empty());
        let f = t.track(at(30), vec![found(Kind::DeletedExecutable, "a")]);
        assert_eq!(f[0].first_seen, at(30));
    }

    #[test]
    fn a_finding_s_json_leaves_out_fields_that_do_not_apply() {
        let mut t = Tracker::default();
        let f = t.track(at(0), vec![found(Kind::DeletedExecutable, "a")]);
        let json = serde_json::to_value(&f[0]).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(|k| &k[..]).collect();
        assert_eq!(
            keys,
            ["evidence", "first_seen", "kind", "last_seen", "severity"]
        );
        assert_eq!(json["severity"], "warning");
    }
}
