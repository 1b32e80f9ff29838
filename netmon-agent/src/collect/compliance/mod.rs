//! The compliance collector: the ten CIS-style checks of the earlier
//! Python security agent (seed 004), with its `check_id`s and
//! `check_name`s, its `cis_results` list and its score, read natively.
//!
//! Each check reads files under a root directory (`--compliance-root`, `/`
//! by default; tests use fixture trees) and answers `PASS`, `FAIL` or
//! `NOT_APPLICABLE` with its evidence (the file and line it decided on, or
//! the unit state) and a remediation line. A check that cannot be
//! evaluated here (a file the agent may not read, systemd not running, the
//! agent's private /tmp) is `NOT_APPLICABLE` with `unavailable` saying
//! why: it is neither a pass nor a failure. What each check reads and
//! decides is in `checks.rs`, `units.rs` and `firewall.rs`.
//!
//! The score is the seed's: `passed` checks out of `total` (every check,
//! whatever its status) and `percent`, `round(100 * passed / total)`, as
//! its dashboard printed "60% Compliant (6/10 checks passed)". Beside it,
//! netmon adds `failed`, `not_applicable`, and `percent_applicable`: the
//! passed share of the checks that passed or failed.
//!
//! Runs every `--compliance-interval` (1 h by default, like the seed's
//! systemd timer). A status that changes between runs is kept in
//! `changes` (at most `--compliance-max-changes`, the oldest forgotten
//! first and counted). Odd lines in the files read are listed in
//! `problems` and logged once until they change; nothing in a file stops
//! a check or the agent.

mod checks;
mod collector;
mod firewall;
pub mod nft;
mod units;

#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tracing::warn;

use super::ser_time;

/// One check: the seed's id and name, netmon's remediation, and the
/// function that decides it.
pub struct Check {
    pub id: &'static str,
    pub name: &'static str,
    pub remediation: &'static str,
    pub run: fn(&Host, &mut Vec<String>) -> Outcome,
}

/// The seed's ten checks, in its order.
pub const ALL: &[Check] = &[
    Check {
        id: "CIS-SSH-ROOT",
        name: "Root login disabled over SSH",
        remediation: "Set `PermitRootLogin no` in /etc/ssh/sshd_config, above any Match block and any Include that sets it, and reload sshd.",
        run: checks::ssh_root,
    },
    Check {
        id: "CIS-FW-UFW",
        name: "Firewall enabled (UFW)",
        remediation: "Enable a host firewall: `ufw enable`, or an nftables ruleset whose input chain drops by default (`systemctl enable --now nftables`).",
        run: firewall::check,
    },
    Check {
        id: "CIS-TIME-SYNC",
        name: "Time synchronization configured (chrony)",
        remediation: "Install and start a time synchronization daemon: `apt install chrony` (or enable systemd-timesyncd).",
        run: units::time_sync,
    },
    Check {
        id: "CIS-AUDITD",
        name: "Auditd service running",
        remediation: "`apt install auditd audispd-plugins && systemctl enable --now auditd`.",
        run: units::auditd,
    },
    Check {
        id: "CIS-APPARMOR",
        name: "AppArmor enabled",
        remediation: "Boot with `apparmor=1 security=apparmor`, `apt install apparmor apparmor-utils`, and enforce the profiles (`aa-enforce /etc/apparmor.d/*`).",
        run: checks::apparmor,
    },
    Check {
        id: "CIS-PASS-EXP",
        name: "Password expiration policy enforced",
        remediation: "Set `PASS_MAX_DAYS 365` (or fewer) in /etc/login.defs, and for existing users `chage --maxdays 365 USER`.",
        run: checks::password_expiry,
    },
    Check {
        id: "CIS-PASS-COMPLEX",
        name: "Password complexity policy enabled",
        remediation: "`apt install libpam-pwquality` (it adds `password requisite pam_pwquality.so retry=3` to /etc/pam.d/common-password).",
        run: checks::password_complexity,
    },
    Check {
        id: "CIS-WORLD-WRITABLE",
        name: "No world writable files in /tmp",
        remediation: "Remove the world-write bit from the files named (`chmod o-w FILE`) and keep /tmp mode 1777 (sticky).",
        run: checks::world_writable,
    },
    Check {
        id: "CIS-CRAMFS",
        name: "Unused filesystem cramfs disabled",
        remediation: "Put `install cramfs /bin/false` and `blacklist cramfs` in /etc/modprobe.d/cramfs.conf, then `modprobe -r cramfs`.",
        run: checks::cramfs,
    },
    Check {
        id: "CIS-GDM-AUTOLOGIN",
        name: "GDM auto-login disabled",
        remediation: "Set `AutomaticLoginEnable=false` and `TimedLoginEnable=false` in the [daemon] section of /etc/gdm3/custom.conf.",
        run: checks::gdm_autologin,
    },
];

/// What a check decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub evidence: String,
    pub unavailable: Option<String>,
}

impl Outcome {
    pub fn pass(evidence: impl Into<String>) -> Self {
        Self::with(Status::Pass, evidence)
    }

    pub fn fail(evidence: impl Into<String>) -> Self {
        Self::with(Status::Fail, evidence)
    }

    /// Not applicable to this host (the software is not installed).
    pub fn not_applicable(evidence: impl Into<String>) -> Self {
        Self::with(Status::NotApplicable, evidence)
    }

    /// Cannot be evaluated here, for `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Outcome {
            status: Status::NotApplicable,
            evidence: reason.clone(),
            unavailable: Some(reason),
        }
    }

    fn with(status: Status, evidence: impl Into<String>) -> Self {
        Outcome {
            status,
            evidence: evidence.into(),
            unavailable: None,
        }
    }
}

/// Longest file a check reads; beyond it the rest is ignored (a problem).
pub const MAX_FILE: u64 = 1 << 20;

/// Options of the compliance collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "compliance-options")]
pub struct Options {
    /// How often the compliance checks run.
    #[arg(long, default_value = "1h", value_parser = crate::units::parse_interval, env = "NETMON_COMPLIANCE_INTERVAL")]
    pub compliance_interval: Duration,
    /// The directory the checks read the host's files under (`/`, or a
    /// copy of a system's tree). The live firewall ruleset is read only
    /// when it is `/`.
    #[arg(long, default_value = "/", env = "NETMON_COMPLIANCE_ROOT")]
    pub compliance_root: PathBuf,
    /// Most entries of /tmp looked at by the world-writable check; a /tmp
    /// with more leaves the check unavailable.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000), env = "NETMON_COMPLIANCE_TMP_SCAN_LIMIT")]
    pub compliance_tmp_scan_limit: u32,
    /// Most status changes kept; the oldest are forgotten first, counted
    /// in `changes_evicted`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_COMPLIANCE_MAX_CHANGES")]
    pub compliance_max_changes: u32,
}

/// A check's answer, spelt as the seed spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = ComplianceStatus)]
pub enum Status {
    Pass,
    Fail,
    NotApplicable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "NOT_APPLICABLE",
        }
    }
}

/// One check's result: the seed's four fields, then netmon's.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ComplianceCheck)]
pub struct CheckResult {
    /// The seed's id (`CIS-SSH-ROOT`...).
    pub check_id: String,
    /// The seed's name (`Root login disabled over SSH`...).
    pub check_name: String,
    pub status: Status,
    /// What the status rests on: the file and line, or the unit state.
    pub evidence: String,
    /// How to make the check pass.
    pub remediation: String,
    /// Why the check could not be evaluated here (then `NOT_APPLICABLE`);
    /// absent when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Since when the check has had this status (RFC 3339): the first run
    /// that saw it, since the agent started.
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub since: SystemTime,
}

/// The seed's score, with netmon's figures beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ComplianceScore)]
pub struct Score {
    /// Checks that passed (the seed's `pass_count`).
    pub passed: u32,
    /// Every check (the seed's `total`).
    pub total: u32,
    /// `round(100 * passed / total)`, as the seed's dashboard shows it.
    pub percent: u32,
    pub failed: u32,
    pub not_applicable: u32,
    /// `round(100 * passed / (passed + failed))`; absent when no check
    /// passed or failed.
    pub percent_applicable: Option<u32>,
}

impl Score {
    pub fn of(results: &[CheckResult]) -> Score {
        let count = |s| results.iter().filter(|r| r.status == s).count() as u32;
        let (passed, failed) = (count(Status::Pass), count(Status::Fail));
        let total = results.len() as u32;
        let ratio =
            |n: u32, d: u32| (d > 0).then(|| (100.0 * f64::from(n) / f64::from(d)).round() as u32);
        Score {
            passed,
            total,
            percent: ratio(passed, total).unwrap_or(0),
            failed,
            not_applicable: count(Status::NotApplicable),
            percent_applicable: ratio(passed, passed + failed),
        }
    }
}

/// A check whose status changed from one run to the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ComplianceChange)]
pub struct StatusChange {
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String)]
    pub at: SystemTime,
    pub check_id: String,
    pub from: Status,
    pub to: Status,
}

/// One run's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ComplianceReport)]
pub struct Report {
    /// The directory the files were read under.
    pub root: String,
    /// In the seed's order.
    pub cis_results: Vec<CheckResult>,
    pub score: Score,
    /// Status changes since the agent started, oldest first.
    pub changes: Vec<StatusChange>,
    pub changes_evicted: u64,
    /// Lines of the files read that made no sense (`file:line: what`).
    pub problems: Vec<String>,
}

/// The collector's state between runs.
#[derive(Debug)]
pub struct Compliance {
    host: Host,
    max_changes: usize,
    last: HashMap<String, (Status, SystemTime)>,
    changes: VecDeque<StatusChange>,
    changes_evicted: u64,
    logged: HashSet<String>,
}

impl Compliance {
    pub fn new(opts: &Options) -> Self {
        Compliance {
            host: Host {
                live: opts.compliance_root == Path::new("/"),
                root: opts.compliance_root.clone(),
                tmp_scan_limit: opts.compliance_tmp_scan_limit as usize,
            },
            max_changes: opts.compliance_max_changes as usize,
            last: HashMap::new(),
            changes: VecDeque::new(),
            changes_evicted: 0,
            logged: HashSet::new(),
        }
    }

    /// Runs every check.
    pub fn scan(&mut self, now: SystemTime) -> Report {
        let mut problems = Vec::new();
        let mut cis_results = Vec::with_capacity(ALL.len());
        for check in ALL {
            let o = (check.run)(&self.host, &mut problems);
            let since = match self.last.get(check.id) {
                Some(&(status, since)) if status == o.status => since,
                Some(&(from, _)) => {
                    if self.changes.len() >= self.max_changes {
                        self.changes.pop_front();
                        self.changes_evicted += 1;
                    }
                    self.changes.push_back(StatusChange {
                        at: now,
                        check_id: check.id.into(),
                        from,
                        to: o.status,
                    });
                    now
                }
                None => now,
            };
            self.last.insert(check.id.into(), (o.status, since));
            cis_results.push(CheckResult {
                check_id: check.id.into(),
                check_name: check.name.into(),
                status: o.status,
                evidence: o.evidence,
                remediation: check.remediation.into(),
                unavailable: o.unavailable,
                since,
            });
        }
        // A file included twice says the same twice.
        let mut seen = HashSet::new();
        problems.retain(|p| seen.insert(p.clone()));
        self.log_problems(&problems);
        Report {
            root: self.host.root.display().to_string(),
            score: Score::of(&cis_results),
            cis_results,
            changes: self.changes.iter().cloned().collect(),
            changes_evicted: self.changes_evicted,
            problems,
        }
    }

    /// Logs each problem once, until it goes away and comes back.
    fn log_problems(&mut self, now: &[String]) {
        let now: HashSet<String> = now.iter().cloned().collect();
        for p in now.difference(&self.logged) {
            warn!(collector = "compliance", problem = %p, "Collector input problem (logged once until it changes).");
        }
        self.logged = now;
    }
}

/// What the checks read: a root directory, and whether it is this
/// machine's own (then kernel state that has no file, the live firewall
/// ruleset, is read too).
#[derive(Clone, Debug)]
pub struct Host {
    pub root: PathBuf,
    pub live: bool,
    pub tmp_scan_limit: usize,
}

/// A file's content, or why there is none.
#[derive(Debug)]
pub enum Content {
    Text(String),
    Missing,
    /// Unreadable: the reason, with the path.
    Unreadable(String),
}

impl Host {
    /// `abs` (a path on the host, `/etc/...`) under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn exists(&self, abs: &str) -> bool {
        fs::symlink_metadata(self.path(abs)).is_ok()
    }

    /// Reads a text file (at most [`MAX_FILE`] bytes, non-UTF-8 replaced).
    pub fn read(&self, abs: &str, problems: &mut Vec<String>) -> Content {
        let mut text = Vec::new();
        let res = fs::File::open(self.path(abs))
            .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut text));
        match res {
            Ok(_) => {
                if text.len() as u64 > MAX_FILE {
                    problems.push(format!(
                        "{abs}: longer than {MAX_FILE} bytes; the rest is ignored"
                    ));
                    text.truncate(MAX_FILE as usize);
                }
                Content::Text(String::from_utf8_lossy(&text).into_owned())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Content::Missing,
            Err(e) => Content::Unreadable(format!("cannot read {abs}: {e}")),
        }
    }

    /// The entries of a directory whose names end in `suffix`, as host
    /// paths, sorted by name; none when it is missing or unreadable.
    pub fn list(&self, dir: &str, suffix: &str) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.path(dir))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(suffix)
                    .then(|| format!("{}/{name}", dir.trim_end_matches('/')))
            })
            .collect();
        out.sort();
        out
    }
}

/// The lines of a text with their numbers (from 1), comments (from `#`
/// at the start, after blanks) and blank lines left out, each trimmed.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}
