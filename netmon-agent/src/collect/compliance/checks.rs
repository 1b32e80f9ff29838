//! The checks that read configuration files and kernel state in /proc and
//! /sys. Each takes the [`Host`] and a list to add odd lines to, and
//! returns an [`Outcome`]; none fails on what a file holds.
//!
//! Where the seed matched a substring, these parse the file the way its
//! program does, and decide as the CIS benchmark does:
//! - SSH: sshd's first value wins, `Include` followed (globs, relative to
//!   /etc/ssh, at most 16 deep), `Match` blocks conditional; only `no`
//!   passes (unset is OpenSSH's default, `prohibit-password`). A Match
//!   block that lets root in for some connections fails the check.
//! - Password expiry: `PASS_MAX_DAYS` (the last one, as login.defs is
//!   read) from 1 to [`MAX_PASS_DAYS`]; the seed passed on the key's mere
//!   presence, which Debian's default of 99999 has.
//! - Password complexity: pam_pwquality, pam_cracklib or pam_passwdqc on a
//!   `password` line of the stack, following `@include`.
//! - /tmp: no world-writable regular file (the seed's `find -perm -0002`)
//!   and the sticky bit on /tmp itself.
//! - cramfs: not loaded nor built in, and an `install cramfs /bin/false`
//!   (or true) or `blacklist cramfs` rule in modprobe.d (the blacklist
//!   stops the autoload a mount triggers).
//! - GDM: neither `AutomaticLoginEnable` nor `TimedLoginEnable` true in
//!   `[daemon]`; not applicable without GDM.
//! - AppArmor: enabled in the kernel, with at least one profile in enforce
//!   mode where the profile list is readable (it needs root).

use std::{collections::HashSet, fs, os::unix::fs::MetadataExt};

use super::{Content, Host, Outcome, lines};

/// The longest password lifetime that passes, in days (CIS 5.5.1.1).
pub const MAX_PASS_DAYS: i64 = 365;
/// World-writable files named in the evidence (the seed's `head -n 5`).
pub const NAMED_FILES: usize = 5;

const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
const MAX_INCLUDE_DEPTH: usize = 16;

/// CIS-SSH-ROOT.
pub fn ssh_root(host: &Host, problems: &mut Vec<String>) -> Outcome {
    let text = match host.read(SSHD_CONFIG, problems) {
        Content::Text(t) => t,
        Content::Missing if host.exists("/usr/sbin/sshd") => {
            return Outcome::fail(format!(
                "sshd is installed without {SSHD_CONFIG}: its default PermitRootLogin prohibit-password lets root log in with a key"
            ));
        }
        Content::Missing => {
            return Outcome::not_applicable(format!(
                "the OpenSSH server is not installed (no {SSHD_CONFIG})"
            ));
        }
        Content::Unreadable(r) => return Outcome::unavailable(r),
    };
    let mut scan = Sshd {
        host,
        problems,
        found: None,
        in_match: None,
        blocked: None,
    };
    scan.file(SSHD_CONFIG, &text, 0, false);
    let (found, in_match, blocked) = (scan.found, scan.in_match, scan.blocked);
    if let Some(reason) = blocked {
        return Outcome::unavailable(format!(
            "{reason} (it comes before any PermitRootLogin, and sshd takes the first)"
        ));
    }
    let matched = in_match
        .map(|(at, v)| format!("; but the Match block at {at} sets PermitRootLogin {v} for the connections it matches"))
        .unwrap_or_default();
    match found {
        Some((at, v)) if v == "no" && matched.is_empty() => {
            Outcome::pass(format!("{at}: PermitRootLogin no"))
        }
        Some((at, v)) => Outcome::fail(format!("{at}: PermitRootLogin {v}{matched}")),
        None => Outcome::fail(format!(
            "PermitRootLogin is not set in {SSHD_CONFIG} or its includes: OpenSSH's default, prohibit-password, lets root log in with a key{matched}"
        )),
    }
}

struct Sshd<'a> {
    host: &'a Host,
    problems: &'a mut Vec<String>,
    /// The first global PermitRootLogin: `file:line` and value.
    found: Option<(String, String)>,
    /// The first Match block's PermitRootLogin other than `no`.
    in_match: Option<(String, String)>,
    /// A file that could not be read before `found`.
    blocked: Option<String>,
}

impl Sshd<'_> {
    /// Reads one file's lines; a Match block in it ends at its end (as
    /// sshd restores the including file's context).
    fn file(&mut self, file: &str, text: &str, depth: usize, mut in_match: bool) {
        for (n, line) in lines(text) {
            let split = line
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(line.len());
            let (keyword, rest) = line.split_at(split);
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
            let at = format!("{file}:{n}");
            match keyword.to_ascii_lowercase().as_str() {
                "match" => in_match = !rest.eq_ignore_ascii_case("all"),
                "include" => {
                    for pattern in rest.split_whitespace() {
                        self.include(&at, pattern, depth, in_match);
                    }
                }
                "permitrootlogin" => {
                    let word = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    let known = matches!(
                        word.as_str(),
                        "no" | "yes"
                            | "prohibit-password"
                            | "without-password"
                            | "forced-commands-only"
                    );
                    // A value sshd refuses counts as set (sshd would not
                    // start with it), and fails.
                    let value = match (known, word.is_empty()) {
                        (true, _) => word,
                        (false, true) => "(no value)".to_owned(),
                        (false, false) => format!("{word} (not a value sshd knows)"),
                    };
                    if !known {
                        self.problems.push(format!("{at}: PermitRootLogin {value}"));
                    }
                    if in_match {
                        if value != "no" && self.in_match.is_none() {
                            self.in_match = Some((at, value));
                        }
                    } else if self.found.is_none() && self.blocked.is_none() {
                        self.found = Some((at, value));
                    }
                }
                _ => {}
            }
        }
    }

    fn include(&mut self, at: &str, pattern: &str, depth: usize, in_match: bool) {
        if depth + 1 > MAX_INCLUDE_DEPTH {
            self.problems.push(format!(
                "{at}: Include nested more than {MAX_INCLUDE_DEPTH} deep"
            ));
            return;
        }
        let pattern = if pattern.starts_with('/') {
            pattern.to_owned()
        } else {
            format!("/etc/ssh/{pattern}")
        };
        for file in glob(self.host, &pattern) {
            let mut sink = Vec::new();
            match self.host.read(&file, &mut sink) {
                Content::Text(t) => self.file(&file, &t, depth + 1, in_match),
                Content::Missing => {}
                Content::Unreadable(r) => {
                    if !in_match && self.found.is_none() && self.blocked.is_none() {
                        self.blocked = Some(r);
                    }
                }
            }
            self.problems.extend(sink);
        }
    }
}

/// The files matching `pattern` (a host path whose last component may
/// hold `*` and `?`), sorted as glob(3) sorts them; a name starting with a
/// dot matches only a pattern that does.
pub(crate) fn glob(host: &Host, pattern: &str) -> Vec<String> {
    let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if !name.contains(['*', '?']) {
        return if host.exists(pattern) {
            vec![pattern.to_owned()]
        } else {
            Vec::new()
        };
    }
    let dir = if dir.is_empty() { "/" } else { dir };
    host.list(dir, "")
        .into_iter()
        .filter(|p| {
            let file = p.rsplit('/').next().unwrap_or("");
            (name.starts_with('.') || !file.starts_with('.'))
                && wildcard(name.as_bytes(), file.as_bytes())
        })
        .collect()
}

/// Whether `s` matches `p`, where `*` is any run and `?` any one byte.
pub(crate) fn wildcard(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

/// CIS-PASS-EXP.
pub fn password_expiry(host: &Host, problems: &mut Vec<String>) -> Outcome {
    const FILE: &str = "/etc/login.defs";
    let text = match host.read(FILE, problems) {
        Content::Text(t) => t,
        Content::Missing => {
            return Outcome::not_applicable(format!(
                "no {FILE}: the shadow password tools are not installed"
            ));
        }
        Content::Unreadable(r) => return Outcome::unavailable(r),
    };
    let last = lines(&text)
        .filter_map(|(n, l)| {
            let mut words = l.split_whitespace();
            (words.next() == Some("PASS_MAX_DAYS"))
                .then(|| (n, words.next().unwrap_or("").to_owned()))
        })
        .last();
    let Some((n, value)) = last else {
        return Outcome::fail(format!(
            "PASS_MAX_DAYS is not set in {FILE}: passwords never expire"
        ));
    };
    let at = format!("{FILE}:{n}: PASS_MAX_DAYS {value}");
    match value.parse::<i64>() {
        Ok(days) if (1..=MAX_PASS_DAYS).contains(&days) => Outcome::pass(at),
        Ok(days) if days < 1 => Outcome::fail(format!("{at} (no maximum)")),
        Ok(_) => Outcome::fail(format!("{at} (more than {MAX_PASS_DAYS} days)")),
        Err(_) => {
            problems.push(format!(
                "{FILE}:{n}: PASS_MAX_DAYS `{value}` is not a number"
            ));
            Outcome::fail(format!("{at} (not a number)"))
        }
    }
}

/// The password stacks: Debian's, then Red Hat's.
const PAM_STACKS: &[&str] = &[
    "/etc/pam.d/common-password",
    "/etc/pam.d/system-auth",
    "/etc/pam.d/password-auth",
];
const QUALITY_MODULES: &[&str] = &["pam_pwquality.so", "pam_cracklib.so", "pam_passwdqc.so"];

/// CIS-PASS-COMPLEX.
pub fn password_complexity(host: &Host, problems: &mut Vec<String>) -> Outcome {
    let stacks: Vec<&str> = PAM_STACKS
        .iter()
        .copied()
        .filter(|f| host.exists(f))
        .collect();
    if stacks.is_empty() {
        return Outcome::not_applicable(format!(
            "no PAM password stack ({})",
            PAM_STACKS.join(", ")
        ));
    }
    for file in &stacks {
        match pam_quality(host, file, 0, problems) {
            Ok(Some(at)) => return Outcome::pass(at),
            Ok(None) => {}
            Err(r) => return Outcome::unavailable(r),
        }
    }
    Outcome::fail(format!(
        "no pam_pwquality.so or pam_cracklib.so on a password line of {}",
        stacks.join(", ")
    ))
}

/// The first `password` rule of `file` (or of a file it includes) using a
/// password quality module, as `file:line: rule`.
fn pam_quality(
    host: &Host,
    file: &str,
    depth: usize,
    problems: &mut Vec<String>,
) -> Result<Option<String>, String> {
    let text = match host.read(file, problems) {
        Content::Text(t) => t,
        Content::Missing => return Ok(None),
        Content::Unreadable(r) => return Err(r),
    };
    for (n, line) in lines(&text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let included = match words[..] {
            ["@include", name, ..] => Some(name),
            [kind, "include" | "substack", name, ..]
                if kind.trim_start_matches('-') == "password" =>
            {
                Some(name)
            }
            _ => None,
        };
        if let Some(name) = included {
            if depth >= 4 {
                problems.push(format!("{file}:{n}: includes nested more than 4 deep"));
                continue;
            }
            let path = if name.starts_with('/') {
                name.to_owned()
            } else {
                format!("/etc/pam.d/{name}")
            };
            if let Some(at) = pam_quality(host, &path, depth + 1, problems)? {
                return Ok(Some(at));
            }
            continue;
        }
        // type, control (a word or a bracketed list), module path, args.
        let mut rest = words.iter().copied();
        let kind = rest.next().unwrap_or("");
        let mut control = rest.next().unwrap_or("");
        if control.starts_with('[') {
            while !control.ends_with(']') {
                match rest.next() {
                    Some(w) => control = w,
                    None => break,
                }
            }
        }
        let Some(module) = rest.next() else {
            problems.push(format!("{file}:{n}: not a PAM rule"));
            continue;
        };
        let module = module.rsplit('/').next().unwrap_or(module);
        if kind.trim_start_matches('-') == "password" && QUALITY_MODULES.contains(&module) {
            return Ok(Some(format!("{file}:{n}: {line}")));
        }
    }
    Ok(None)
}

/// CIS-WORLD-WRITABLE.
pub fn world_writable(host: &Host, problems: &mut Vec<String>) -> Outcome {
    if let Some(source) = private_tmp(host, problems) {
        return Outcome::unavailable(format!(
            "the agent runs with PrivateTmp=: its /tmp is its own ({source}), not the host's"
        ));
    }
    let tmp = host.path("/tmp");
    let meta = match fs::symlink_metadata(&tmp) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::not_applicable("there is no /tmp");
        }
        Err(e) => return Outcome::unavailable(format!("cannot read /tmp: {e}")),
    };
    if !meta.is_dir() {
        return Outcome::fail("/tmp is not a directory");
    }
    let mode = meta.mode() & 0o7777;
    let unsticky = mode & 0o002 != 0 && mode & 0o1000 == 0;
    let walk = walk_tmp(host, host.tmp_scan_limit);
    let mut evidence = Vec::new();
    if unsticky {
        evidence.push(format!(
            "/tmp is mode {mode:04o}: world-writable without the sticky bit"
        ));
    }
    if walk.found > 0 {
        evidence.push(format!(
            "{} world-writable files in /tmp: {}{}",
            walk.found,
            walk.named.join(", "),
            if walk.found > walk.named.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    if walk.unreadable > 0 {
        evidence.push(format!("{} directories could not be read", walk.unreadable));
    }
    if unsticky || walk.found > 0 {
        return Outcome::fail(evidence.join("; "));
    }
    if walk.stopped {
        return Outcome::unavailable(format!(
            "/tmp has more than {} entries (--compliance-tmp-scan-limit); none of those seen is world-writable",
            host.tmp_scan_limit
        ));
    }
    evidence.insert(
        0,
        format!(
            "/tmp is mode {mode:04o}; no world-writable file among {} entries",
            walk.entries
        ),
    );
    Outcome::pass(evidence.join("; "))
}

/// The source of /tmp when it is a systemd PrivateTmp= mount, from the
/// mount table (`<root>/proc/self/mountinfo`).
fn private_tmp(host: &Host, problems: &mut Vec<String>) -> Option<String> {
    let Content::Text(t) = host.read("/proc/self/mountinfo", problems) else {
        return None;
    };
    t.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(4) == Some(&"/tmp") && f.get(3).is_some_and(|r| r.contains("systemd-private-")))
            .then(|| f[3].to_owned())
    })
}

#[derive(Debug, Default)]
struct Walk {
    entries: usize,
    found: usize,
    named: Vec<String>,
    unreadable: usize,
    stopped: bool,
}

/// Walks /tmp without following symbolic links, looking at `limit`
/// entries at most.
fn walk_tmp(host: &Host, limit: usize) -> Walk {
    let mut w = Walk::default();
    let mut dirs = vec!["/tmp".to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(host.path(&dir)) else {
            w.unreadable += 1;
            continue;
        };
        for e in entries.flatten() {
            if w.entries >= limit {
                w.stopped = true;
                return w;
            }
            w.entries += 1;
            let path = format!("{dir}/{}", e.file_name().to_string_lossy());
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                dirs.push(path);
            } else if m.is_file() && m.mode() & 0o002 != 0 {
                w.found += 1;
                if w.named.len() < NAMED_FILES {
                    w.named.push(path);
                }
            }
        }
    }
    w.named.sort();
    w
}

/// Where modprobe reads its configuration, in order of precedence: a file
/// hides those of the same name in the directories after it.
const MODPROBE_DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// CIS-CRAMFS.
pub fn cramfs(host: &Host, problems: &mut Vec<String>) -> Outcome {
    let modules = host.read("/proc/modules", problems);
    if let Content::Text(t) = &modules
        && let Some(n) = t.lines().position(|l| l.starts_with("cramfs "))
    {
        return Outcome::fail(format!(
            "the cramfs module is loaded (/proc/modules:{})",
            n + 1
        ));
    }
    let filesystems = host.read("/proc/filesystems", problems);
    if let Content::Text(t) = &filesystems
        && let Some(n) = t
            .lines()
            .position(|l| l.split_whitespace().last() == Some("cramfs"))
    {
        return Outcome::fail(format!(
            "cramfs is built into the kernel (/proc/filesystems:{}): it cannot be disabled",
            n + 1
        ));
    }
    match (&modules, &filesystems) {
        (Content::Unreadable(r), _) | (_, Content::Unreadable(r)) => {
            return Outcome::unavailable(r.clone());
        }
        (Content::Missing, Content::Text(_)) => {
            return Outcome::not_applicable(
                "the kernel has no cramfs and cannot load modules (no /proc/modules)",
            );
        }
        (Content::Missing, Content::Missing) => {
            return Outcome::unavailable("no /proc/modules or /proc/filesystems under the root");
        }
        _ => {}
    }
    let (mut install, mut blacklist) = (None, None);
    let mut seen = HashSet::new();
    for dir in MODPROBE_DIRS {
        for file in host.list(dir, ".conf") {
            let name = file.rsplit('/').next().unwrap_or_default().to_owned();
            if !seen.insert(name) {
                continue;
            }
            let Content::Text(text) = host.read(&file, problems) else {
                continue;
            };
            for (n, line) in lines(&text.replace("\\\n", " ")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words[..] {
                    ["install", "cramfs", cmd, ..]
                        if install.is_none()
                            && matches!(cmd.rsplit('/').next(), Some("true" | "false")) =>
                    {
                        install = Some(format!("{file}:{n}: {line}"));
                    }
                    ["blacklist", "cramfs"] if blacklist.is_none() => {
                        blacklist = Some(format!("{file}:{n}: {line}"));
                    }
                    _ => {}
                }
            }
        }
    }
    let rules: Vec<String> = [install, blacklist].into_iter().flatten().collect();
    if rules.is_empty() {
        Outcome::fail(
            "cramfs can be loaded: no `install cramfs /bin/false` or `blacklist cramfs` in modprobe.d",
        )
    } else {
        Outcome::pass(rules.join("; "))
    }
}

const GDM_FILES: &[&str] = &[
    "/etc/gdm3/custom.conf",
    "/etc/gdm3/daemon.conf",
    "/etc/gdm/custom.conf",
];
const GDM_BINARIES: &[&str] = &["/usr/sbin/gdm3", "/usr/sbin/gdm"];

/// CIS-GDM-AUTOLOGIN.
pub fn gdm_autologin(host: &Host, problems: &mut Vec<String>) -> Outcome {
    let files: Vec<&str> = GDM_FILES
        .iter()
        .copied()
        .filter(|f| host.exists(f))
        .collect();
    if files.is_empty() {
        return match GDM_BINARIES.iter().find(|b| host.exists(b)) {
            Some(b) => Outcome::pass(format!(
                "{b} has no custom.conf: automatic login is off by default"
            )),
            None => Outcome::not_applicable("GDM is not installed (no /etc/gdm3/custom.conf)"),
        };
    }
    let mut settings = Vec::new();
    for file in &files {
        let text = match host.read(file, problems) {
            Content::Text(t) => t,
            Content::Missing => continue,
            Content::Unreadable(r) => return Outcome::unavailable(r),
        };
        let mut section = "";
        // The last value of each key counts, as GLib's key files read.
        let mut last: Vec<(String, String, bool)> = Vec::new();
        for (n, line) in lines(&text) {
            if let Some(s) = line.strip_prefix('[') {
                match s.strip_suffix(']') {
                    Some(s) => section = s,
                    None => problems.push(format!("{file}:{n}: a section header without `]`")),
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                problems.push(format!("{file}:{n}: not a `key=value` line"));
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if section == "daemon" && matches!(key, "AutomaticLoginEnable" | "TimedLoginEnable") {
                let on = value.eq_ignore_ascii_case("true") || value == "1";
                last.retain(|(k, _, _)| k != key);
                last.push((key.to_owned(), format!("{file}:{n}: {line}"), on));
            }
        }
        settings.extend(last);
    }
    let on: Vec<&str> = settings
        .iter()
        .filter(|s| s.2)
        .map(|s| s.1.as_str())
        .collect();
    if !on.is_empty() {
        return Outcome::fail(on.join("; "));
    }
    let off: Vec<&str> = settings.iter().map(|s| s.1.as_str()).collect();
    if off.is_empty() {
        Outcome::pass(format!(
            "no AutomaticLoginEnable or TimedLoginEnable in {}: off by default",
            files.join(", ")
        ))
    } else {
        Outcome::pass(off.join("; "))
    }
}

/// CIS-APPARMOR.
pub fn apparmor(host: &Host, problems: &mut Vec<String>) -> Outcome {
    const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
    const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
    match host.read(ENABLED, problems) {
        Content::Text(t) if t.trim() == "Y" => {}
        Content::Text(t) => {
            return Outcome::fail(format!(
                "AppArmor is in the kernel but disabled ({ENABLED}: {})",
                t.trim()
            ));
        }
        Content::Missing if host.exists("/sys/fs/selinux/enforce") => {
            return Outcome::not_applicable("the kernel runs SELinux, not AppArmor");
        }
        Content::Missing => {
            return Outcome::fail(format!("the kernel has no AppArmor (no {ENABLED})"));
        }
        Content::Unreadable(r) => return Outcome::unavailable(r),
    }
    match host.read(PROFILES, problems) {
        Content::Text(t) => {
            let modes: Vec<&str> = t
                .lines()
                .filter_map(|l| l.trim_end().rsplit_once(" (")?.1.strip_suffix(')'))
                .collect();
            let enforce = modes.iter().filter(|m| **m == "enforce").count();
            let complain = modes.iter().filter(|m| **m == "complain").count();
            let counts = format!(
                "{enforce} profiles in enforce mode, {complain} in complain mode, {} loaded ({PROFILES})",
                modes.len()
            );
            if enforce > 0 {
                Outcome::pass(format!("AppArmor is enabled; {counts}"))
            } else {
                Outcome::fail(format!(
                    "AppArmor is enabled but enforces no profile: {counts}"
                ))
            }
        }
        Content::Missing => Outcome::pass(format!(
            "AppArmor is enabled ({ENABLED}: Y); its profiles cannot be listed (securityfs is not mounted)"
        )),
        Content::Unreadable(r) => Outcome::pass(format!(
            "AppArmor is enabled ({ENABLED}: Y); its profiles cannot be listed: {r}"
        )),
    }
}
