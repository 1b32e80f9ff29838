//! The security collector (first part of seed 002's threat checks):
//! processes running from a world-writable temporary directory (`/tmp`,
//! `/var/tmp`, `/dev/shm`) and processes whose executable was deleted,
//! read natively from procfs.
//!
//! Each cycle reads `<proc>/<pid>/exe` (the link's text: it names the
//! file even when it is gone, with ` (deleted)` appended), `comm` and the
//! process's start time (`stat` field 22), which with the pid identifies a
//! process across cycles: a finding keeps its `first_seen` while the same
//! process runs and disappears when it ends. At most
//! `--security-max-findings` are listed; the rest are counted in
//! `findings_omitted`. Reading another user's `exe` link takes
//! CAP_SYS_PTRACE: the agent keeps it after start-up when it holds it and
//! this collector is on (`--disable security` drops it). Without it (the
//! capability-restricted unit) such a process is counted in `unreadable`,
//! never reported as clean or as a finding.
//!
//! Not yet here (issue 18): new listening sockets, SSH brute force, ARP
//! spoofing and gateway impersonation.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::{
    CollectorName, Context, ViewSchema,
    registry::{Cap, Need},
    ser_time, view_schema,
};
use crate::{exposition::Family, shutdown::Stop};

/// Directories anyone may write to: a program run from one is the
/// classic sign of a dropped payload.
pub const TEMP_DIRS: [&str; 3] = ["/tmp/", "/var/tmp/", "/dev/shm/"];

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
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::ProcessInTmp, Kind::DeletedExecutable];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ProcessInTmp => "process_in_tmp",
            Kind::DeletedExecutable => "deleted_executable",
        }
    }

    fn severity(self) -> &'static str {
        match self {
            Kind::ProcessInTmp => "critical",
            Kind::DeletedExecutable => "warning",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SecurityFinding)]
pub struct Finding {
    pub kind: Kind,
    /// `critical` or `warning`.
    pub severity: &'static str,
    pub pid: u32,
    /// The process's name (`comm`).
    pub process: String,
    /// The executable's path as the kernel names it.
    pub exe: String,
    /// What the finding rests on.
    pub evidence: String,
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub last_seen: SystemTime,
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SecurityReport)]
pub struct Report {
    /// Findings, by kind then pid.
    pub findings: Vec<Finding>,
    /// Findings beyond `--security-max-findings`, not listed.
    pub findings_omitted: u64,
    /// Processes looked at.
    pub processes: u64,
    /// Processes whose executable could not be read (another user's
    /// without CAP_SYS_PTRACE, or kernel threads have none: those are
    /// not counted).
    pub unreadable: u64,
}

/// The collector's state: when each finding was first seen, by (pid,
/// start time, kind).
#[derive(Debug)]
pub struct Security {
    proc: PathBuf,
    max: usize,
    seen: HashMap<(u32, u64, Kind), SystemTime>,
}

impl Security {
    pub fn new(opts: &Options) -> Self {
        Security {
            proc: opts.security_proc.clone(),
            max: opts.security_max_findings as usize,
            seen: HashMap::new(),
        }
    }

    /// Looks at every process once.
    pub fn scan(&mut self, now: SystemTime) -> Report {
        let mut findings = Vec::new();
        let (mut processes, mut unreadable) = (0, 0);
        let mut seen = HashMap::new();
        for pid in pids(&self.proc) {
            let dir = self.proc.join(pid.to_string());
            let exe = match fs::read_link(dir.join("exe")) {
                Ok(exe) => exe.to_string_lossy().into_owned(),
                // Kernel threads have no executable: not a process to judge.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => {
                    processes += 1;
                    unreadable += 1;
                    continue;
                }
            };
            processes += 1;
            let judged = judge(&exe);
            if judged.is_empty() {
                continue;
            }
            let start = start_time(&dir).unwrap_or(0);
            let process = fs::read_to_string(dir.join("comm"))
                .map(|c| c.trim_end().to_owned())
                .unwrap_or_default();
            for (kind, evidence) in judged {
                let key = (pid, start, kind);
                let first_seen = *self.seen.get(&key).unwrap_or(&now);
                seen.insert(key, first_seen);
                findings.push(Finding {
                    kind,
                    severity: kind.severity(),
                    pid,
                    process: process.clone(),
                    exe: exe.clone(),
                    evidence,
                    first_seen,
                    last_seen: now,
                });
            }
        }
        // Ended processes are forgotten.
        self.seen = seen;
        findings.sort_by_key(|f| (f.kind, f.pid));
        let omitted = findings.len().saturating_sub(self.max) as u64;
        findings.truncate(self.max);
        Report {
            findings,
            findings_omitted: omitted,
            processes,
            unreadable,
        }
    }
}

/// The findings an executable path makes, with their evidence: a deleted
/// file, a file under a temporary directory, or both.
pub fn judge(exe: &str) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    let path = match exe.strip_suffix(" (deleted)") {
        Some(path) => {
            out.push((
                Kind::DeletedExecutable,
                format!("the executable {path} was deleted while the process runs"),
            ));
            path
        }
        None => exe,
    };
    if let Some(d) = TEMP_DIRS.iter().find(|d| path.starts_with(*d)) {
        out.push((
            Kind::ProcessInTmp,
            format!("runs {path}, under {}", d.trim_end_matches('/')),
        ));
    }
    out
}

/// The numeric entries of `proc`.
fn pids(proc: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_dir(proc)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Field 22 of `<dir>/stat`: the process's start time in clock ticks
/// since boot (after the command, which may hold spaces and parentheses).
fn start_time(dir: &Path) -> Option<u64> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
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

    fn collect(&mut self, _: &Context) -> Report {
        self.scan(SystemTime::now())
    }

    fn metrics(r: &Report, out: &mut Vec<Family>) {
        let mut findings = Family::gauge(
            "netmon_security_findings",
            &["kind"],
            "Security findings now, by kind (listed and omitted).",
        );
        for kind in Kind::ALL {
            let n = r.findings.iter().filter(|f| f.kind == kind).count();
            findings.int(&[kind.as_str()], n as u64);
        }
        let mut unreadable = Family::gauge(
            "netmon_security_processes_unreadable",
            &[],
            "Processes whose executable the agent could not read (no CAP_SYS_PTRACE).",
        );
        unreadable.int(&[], r.unreadable);
        out.extend([findings, unreadable]);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A procfs of `(pid, exe link, start time)`; `None`: no `exe` (a
    /// kernel thread).
    fn proc(procs: &[(u32, Option<&str>, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, exe, start) in procs {
            let p = dir.path().join(pid.to_string());
            fs::create_dir(&p).unwrap();
            if let Some(exe) = exe {
                symlink(exe, p.join("exe")).unwrap();
            }
            fs::write(p.join("comm"), format!("prog{pid}\n")).unwrap();
            let fields: Vec<String> = (3..=21).map(|i| i.to_string()).collect();
            fs::write(
                p.join("stat"),
                format!(
                    "{pid} (a (weird) name) S {} {start} 0 0\n",
                    fields[1..].join(" ")
                ),
            )
            .unwrap();
        }
        fs::create_dir(dir.path().join("self")).unwrap();
        dir
    }

    fn opts(dir: &Path, max: u32) -> Options {
        Options {
            security_interval: Duration::from_secs(10),
            security_proc: dir.to_path_buf(),
            security_max_findings: max,
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn processes_from_tmp_and_deleted_executables_are_found() {
        let dir = proc(&[
            (1, Some("/usr/lib/systemd/systemd"), 1),
            (2, None, 1),
            (40, Some("/tmp/.x/miner"), 500),
            (41, Some("/dev/shm/a"), 501),
            (42, Some("/usr/sbin/sshd (deleted)"), 502),
            (43, Some("/tmpfiles/ok"), 503),
            (44, Some("/var/tmp/gone (deleted)"), 504),
        ]);
        let mut s = Security::new(&opts(dir.path(), 100));
        let r = s.scan(at(0));
        let got: Vec<(Kind, u32, &str)> = r
            .findings
            .iter()
            .map(|f| (f.kind, f.pid, f.severity))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::ProcessInTmp, 40, "critical"),
                (Kind::ProcessInTmp, 41, "critical"),
                (Kind::ProcessInTmp, 44, "critical"),
                (Kind::DeletedExecutable, 42, "warning"),
                (Kind::DeletedExecutable, 44, "warning"),
            ]
        );
        assert_eq!(r.findings[0].evidence, "runs /tmp/.x/miner, under /tmp");
        assert_eq!(r.findings[0].process, "prog40");
        assert_eq!(r.findings[2].evidence, "runs /var/tmp/gone, under /var/tmp");
        assert_eq!(
            r.findings[3].evidence,
            "the executable /usr/sbin/sshd was deleted while the process runs"
        );
        // pid 2 has no exe (a kernel thread): not a process to judge.
        assert_eq!((r.processes, r.unreadable), (6, 0));
    }

    #[test]
    fn a_finding_keeps_its_first_seen_until_the_process_ends() {
        let dir = proc(&[(40, Some("/tmp/x"), 500)]);
        let mut s = Security::new(&opts(dir.path(), 100));
        assert_eq!(s.scan(at(0)).findings[0].first_seen, at(0));
        let r = s.scan(at(10));
        assert_eq!(
            (r.findings[0].first_seen, r.findings[0].last_seen),
            (at(0), at(10))
        );
        // The same pid, another process (a later start time): new.
        fs::write(
            dir.path().join("40/stat"),
            "40 (x) S 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 900 0\n",
        )
        .unwrap();
        assert_eq!(s.scan(at(20)).findings[0].first_seen, at(20));
        fs::remove_dir_all(dir.path().join("40")).unwrap();
        assert!(s.scan(at(30)).findings.is_empty());
        assert!(s.seen.is_empty());
    }

    #[test]
    fn findings_are_bounded_and_the_rest_counted() {
        let procs: Vec<(u32, Option<&str>, u64)> =
            (100..110).map(|p| (p, Some("/var/tmp/p"), 1)).collect();
        let dir = proc(&procs);
        let r = Security::new(&opts(dir.path(), 4)).scan(at(0));
        assert_eq!((r.findings.len(), r.findings_omitted), (4, 6));
    }

    #[test]
    fn start_time_is_read_after_a_command_with_parentheses() {
        let dir = proc(&[(7, Some("/bin/true"), 4242)]);
        assert_eq!(start_time(&dir.path().join("7")), Some(4242));
    }
}
