//! Processes run from a world-writable temporary directory (`/tmp`,
//! `/var/tmp`, `/dev/shm`) and processes whose executable was deleted,
//! read natively from procfs.
//!
//! Each cycle reads `<proc>/<pid>/exe` (the link's text: it names the
//! file even when it is gone, with ` (deleted)` appended), `comm` and the
//! process's start time (`stat` field 22), which with the pid identifies a
//! process across cycles: a finding keeps its `first_seen` while the same
//! process runs and disappears when it ends. Reading another user's `exe`
//! link takes CAP_SYS_PTRACE: the agent keeps it after start-up when it
//! holds it and this collector is on (`--disable security` drops it).
//! Without it (the capability-restricted unit) such a process is counted
//! in `unreadable`, never reported as clean or as a finding.

use std::{fs, path::Path};

use super::{Detail, Found, Kind};

/// Directories anyone may write to: a program run from one is the
/// classic sign of a dropped payload.
pub const TEMP_DIRS: [&str; 3] = ["/tmp/", "/var/tmp/", "/dev/shm/"];

/// What the process check counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Processes looked at.
    pub processes: u64,
    /// Processes whose executable could not be read.
    pub unreadable: u64,
}

/// Looks at every process under `proc` once, adding what it finds to
/// `out`; a process is keyed by its pid and start time, so a reused pid is
/// a new finding.
pub fn scan(proc: &Path, out: &mut Vec<Found>) -> Counts {
    let mut counts = Counts::default();
    for pid in pids(proc) {
        let dir = proc.join(pid.to_string());
        let exe = match fs::read_link(dir.join("exe")) {
            Ok(exe) => exe.to_string_lossy().into_owned(),
            // Kernel threads have no executable: not a process to judge.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                counts.processes += 1;
                counts.unreadable += 1;
                continue;
            }
        };
        counts.processes += 1;
        let judged = judge(&exe);
        if judged.is_empty() {
            continue;
        }
        let start = start_time(&dir).unwrap_or(0);
        let process = fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end().to_owned())
            .unwrap_or_default();
        for (kind, evidence) in judged {
            out.push(Found {
                kind,
                // Zero-padded: keys sort by pid.
                key: format!("{pid:010}/{start}"),
                evidence,
                detail: Detail {
                    pid: Some(pid),
                    process: Some(process.clone()),
                    exe: Some(exe.clone()),
                    ..Detail::default()
                },
            });
        }
    }
    counts
}

/// The findings an executable path makes, with their evidence: a deleted
/// file, a file under a temporary directory, or both.
pub fn judge(exe: &str) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    let path = match exe.strip_suffix(" (deleted)") {
        Some(path) => {
            let evidence = match path.strip_prefix("/memfd:") {
                // memfd_create(2) then execve of /proc/self/fd/N: a file that
                // never was on disk (fileless malware does this; so do some
                // runtimes that re-exec themselves, and sandboxes).
                Some(name) => {
                    format!("runs an anonymous memory file (memfd {name}), never on disk")
                }
                None => format!("the executable {path} was deleted while the process runs"),
            };
            out.push((Kind::DeletedExecutable, evidence));
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

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::symlink,
        time::{Duration, SystemTime},
    };

    use super::{
        super::{Options, Security, Severity},
        *,
    };

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
            security_arp_window: Duration::from_secs(900),
            security_garp_rate: 1.0,
            security_max_listeners: 100,
            // A directory: an error, never the host's journal.
            security_auth_log: dir.to_path_buf(),
            security_ssh_threshold: 5,
            security_ssh_window: Duration::from_secs(600),
            security_ssh_max_sources: 10,
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
            (45, Some("/memfd:sealed-1 (deleted)"), 505),
        ]);
        let mut s = Security::new(&opts(dir.path(), 100));
        let r = s.scan(at(0));
        let got: Vec<(Kind, u32, Severity)> = r
            .findings
            .iter()
            .map(|f| (f.kind, f.detail.pid.unwrap(), f.severity))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::ProcessInTmp, 40, Severity::Critical),
                (Kind::ProcessInTmp, 41, Severity::Critical),
                (Kind::ProcessInTmp, 44, Severity::Critical),
                (Kind::DeletedExecutable, 42, Severity::Warning),
                (Kind::DeletedExecutable, 44, Severity::Warning),
                (Kind::DeletedExecutable, 45, Severity::Warning),
            ]
        );
        assert_eq!(
            r.findings[5].evidence,
            "runs an anonymous memory file (memfd sealed-1), never on disk"
        );
        assert_eq!(r.findings[0].evidence, "runs /tmp/.x/miner, under /tmp");
        assert_eq!(r.findings[0].detail.process.as_deref(), Some("prog40"));
        assert_eq!(r.findings[2].evidence, "runs /var/tmp/gone, under /var/tmp");
        assert_eq!(
            r.findings[3].evidence,
            "the executable /usr/sbin/sshd was deleted while the process runs"
        );
        // pid 2 has no exe (a kernel thread): not a process to judge.
        assert_eq!((r.processes, r.unreadable), (7, 0));
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
        assert!(s.tracker.is_empty());
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
