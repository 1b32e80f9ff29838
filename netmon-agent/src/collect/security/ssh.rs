//! SSH brute force: failed logins per source address within a window,
//! read from sshd's lines in `--security-auth-log` (`/var/log/auth.log`)
//! or, where that file does not exist, from the journal.
//!
//! The log is read incrementally: each cycle reads what was appended since
//! the last (at most [`MAX_READ`] bytes a cycle; a backlog is caught up
//! over cycles; the first cycle starts at the file's beginning, and
//! attempts older than the window count for nothing). A rotated file (a
//! new inode at the path) is read to its end through the handle kept open,
//! then the new file from its start; a file shorter than the offset was
//! truncated (copytruncate) and is read again from its start. A last line
//! without its newline waits for the next cycle.
//!
//! The journal is read with `journalctl -u ssh -u sshd -o short-unix
//! --show-cursor` as a subprocess, from the cursor of the last read
//! (the first read from the window's start), at most [`JOURNAL_LINES`]
//! lines a cycle: reading the journal files natively would need a journal
//! reader (libsystemd or a parser of its format), more than this check is
//! worth.
//!
//! What counts as a failed login (sshd's and sshd-session's lines):
//! `Failed <method> for [invalid user] U from IP port N`, and, once per
//! connection (IP and port) that has no `Failed` line of its own,
//! `Invalid user U from IP port N`, `Connection closed by
//! {authenticating,invalid} user U IP port N [preauth]`, `Disconnected from
//! {authenticating,invalid} user U IP port N [preauth]` and `error:
//! maximum authentication attempts exceeded for [invalid user] U from IP
//! port N`. So a wrong password is one attempt however many lines sshd
//! writes about it, and a key-only server still counts the connections
//! that gave up. Lines of other programs and other sshd lines are not
//! looked at; an sshd line that starts like a failure but does not parse
//! (a truncated line) is counted in `ssh_odd_lines` and logged once.
//!
//! `--security-ssh-threshold` attempts or more from one source within
//! `--security-ssh-window` make an `ssh_brute_force` finding (critical),
//! listed while the count in the window stays at or above the threshold.
//! Bounded: at most [`ATTEMPTS_KEPT`] attempt times and [`USERS_KEPT`]
//! user names per source (the threshold is at most [`ATTEMPTS_KEPT`]);
//! at most `--security-ssh-max-sources` sources, the one whose last
//! attempt is oldest evicted first and counted in `ssh_sources_evicted`.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use super::{Detail, Found, Kind};

/// Most bytes of the log read in one cycle.
pub const MAX_READ: usize = 4 << 20;
/// Most journal lines read in one cycle.
pub const JOURNAL_LINES: u32 = 20_000;
/// Attempt times kept per source; the highest threshold.
pub const ATTEMPTS_KEPT: usize = 64;
/// User names kept per source; more are counted.
pub const USERS_KEPT: usize = 8;
/// Connections remembered to count a connection's lines once.
const CONNS_KEPT: usize = 4096;
/// A line longer than this is cut (sshd's are far shorter).
const MAX_LINE: usize = 4096;

/// A failed login as one line tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub time: SystemTime,
    pub source: IpAddr,
    pub port: u16,
    pub user: String,
    /// A `Failed <method> for` line (one per wrong credential), as opposed
    /// to a line that ends a connection.
    pub failed: bool,
}

/// What one line is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Not an sshd failure line.
    Other,
    Attempt(Attempt),
    /// An sshd line that starts like a failure and does not parse.
    Odd,
}

/// Parses one line of auth.log (traditional `Mmm dd HH:MM:SS host`,
/// RFC 3339 `2026-12-07T16:40:01.123456+00:00 host`) or of the journal's
/// `short-unix` output (`1733590000.123456 host`). `now` gives the year
/// of a traditional timestamp.
pub fn parse_line(line: &str, now: SystemTime) -> Line {
    let Some((head, msg)) = sshd_message(line) else {
        return Line::Other;
    };
    let failure = [
        "Failed ",
        "Invalid user ",
        "Connection closed by authenticating user ",
        "Connection closed by invalid user ",
        "Disconnected from authenticating user ",
        "Disconnected from invalid user ",
        "error: maximum authentication attempts exceeded for ",
    ];
    let Some(prefix) = failure.iter().find(|p| msg.starts_with(*p)) else {
        return Line::Other;
    };
    // "Failed none for" / "Failed publickey for": all failed methods count.
    let rest = &msg[prefix.len()..];
    let parsed = match *prefix {
        "Failed " => rest
            .split_once(" for ")
            .and_then(|(_, r)| from_ip_port(r))
            .map(|a| (a, true)),
        "Invalid user " | "error: maximum authentication attempts exceeded for " => {
            from_ip_port(rest).map(|a| (a, false))
        }
        _ => user_ip_port(rest).map(|a| (a, false)),
    };
    let (Some(time), Some(((user, source, port), failed))) = (timestamp(head, now), parsed) else {
        return Line::Odd;
    };
    Line::Attempt(Attempt {
        time,
        source,
        port,
        user,
        failed,
    })
}

/// The line's head (timestamp and host) and sshd's message, if sshd (or
/// OpenSSH 9.8's sshd-session) wrote it.
fn sshd_message(line: &str) -> Option<(&str, &str)> {
    for tag in [" sshd[", " sshd-session[", " sshd: "] {
        // The program's field only: after the timestamp and host (two
        // words; four for `Mmm dd HH:MM:SS host`), not a tag-like text
        // inside another program's message.
        if let Some(i) = line.find(tag)
            && matches!(line[..i].split_whitespace().count(), 2 | 4)
        {
            let after = &line[i + tag.len()..];
            let msg = if tag.ends_with('[') {
                after.split_once("]: ")?.1
            } else {
                after
            };
            return Some((&line[..i], msg.trim_end()));
        }
    }
    None
}

/// `[invalid user ]U from IP port N[ ...]`.
fn from_ip_port(s: &str) -> Option<(String, IpAddr, u16)> {
    let (user, addr) = s.rsplit_once(" from ")?;
    let user = user.strip_prefix("invalid user ").unwrap_or(user);
    let mut it = addr.split(' ');
    let ip = it.next()?.parse().ok()?;
    (it.next()? == "port").then_some(())?;
    let port = it.next()?.parse().ok()?;
    Some((user.to_owned(), ip, port))
}

/// `U IP port N [preauth]`.
fn user_ip_port(s: &str) -> Option<(String, IpAddr, u16)> {
    let s = s.strip_suffix(" [preauth]")?;
    let (s, port) = s.rsplit_once(" port ")?;
    let (user, ip) = s.rsplit_once(' ').unwrap_or(("", s));
    Some((user.to_owned(), ip.parse().ok()?, port.parse().ok()?))
}

/// The time in a line's head: the first token (RFC 3339 or a unix time
/// with a fraction) or the first three (`Mmm dd HH:MM:SS`, local time).
fn timestamp(head: &str, now: SystemTime) -> Option<SystemTime> {
    let mut it = head.split_whitespace();
    let first = it.next()?;
    if first.contains('T') {
        return rfc3339(first);
    }
    if first.starts_with(|c: char| c.is_ascii_digit()) {
        let secs: f64 = first.parse().ok()?;
        let d = Duration::try_from_secs_f64(secs).ok()?;
        return SystemTime::UNIX_EPOCH.checked_add(d);
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == first)?;
    let day: i32 = it.next()?.parse().ok()?;
    let (h, m, s) = hms(it.next()?)?;
    if !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&s)
    {
        return None;
    }
    let year = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| civil_year(d.as_secs() as i64))?;
    // The year the line does not say: this one, or last year's for a
    // line that would otherwise lie more than a day ahead.
    for y in [year, year - 1] {
        let t = local(y, month as i32, day, h, m, s)?;
        if t <= now + Duration::from_secs(86_400) {
            return Some(t);
        }
    }
    None
}

fn hms(s: &str) -> Option<(i32, i32, i32)> {
    let mut p = s.split(':').map(|x| x.parse::<i32>().ok());
    Some((p.next()??, p.next()??, p.next()??))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn rfc3339(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (time, offset) = if let Some(t) = time.strip_suffix('Z') {
        (t, 0)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (h, m) = time[i + 1..].split_once(':')?;
        let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
        if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
            return None;
        }
        let off = h * 3600 + m * 60;
        (&time[..i], if &time[i..=i] == "-" { -off } else { off })
    };
    let (whole, frac) = time.split_once('.').unwrap_or((time, ""));
    let (h, m, sec) = hms(whole)?;
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    let secs = days_from_civil(y, mo, da) * 86_400 + i64::from(h * 3600 + m * 60 + sec) - offset;
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC year of a unix time.
fn civil_year(secs: i64) -> i32 {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2)) as i32
}

/// A local wall-clock time (the agent's time zone, as syslog wrote it).
fn local(y: i32, mon0: i32, d: i32, h: i32, m: i32, s: i32) -> Option<SystemTime> {
    // SAFETY: tm is zeroed then filled; mktime only reads and normalizes it.
    let t = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = y - 1900;
        tm.tm_mon = mon0;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = m;
        tm.tm_sec = s;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).ok()?))
}

/// Reads what was appended to a log file since the last read.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    open: Option<(File, u64)>,
    offset: u64,
}

impl LogReader {
    pub fn new(path: &Path) -> Self {
        LogReader {
            path: path.to_path_buf(),
            open: None,
            offset: 0,
        }
    }

    /// The complete lines appended since the last call (the rest of a
    /// rotated file first); `NotFound` when there is no file.
    pub fn read(&mut self) -> io::Result<Vec<String>> {
        let meta = std::fs::metadata(&self.path)?;
        let mut lines = Vec::new();
        if let Some((_, ino)) = &self.open
            && *ino != meta.ino()
        {
            // Rotated: the rest of the old file, then the new one.
            if let Some((mut f, _)) = self.open.take() {
                let mut offset = self.offset;
                let _ = read_lines(&mut f, &mut offset, true, &mut lines);
            }
        }
        if self.open.is_none() {
            self.open = Some((File::open(&self.path)?, meta.ino()));
            self.offset = 0;
        }
        let Some((f, _)) = &mut self.open else {
            return Ok(lines);
        };
        if f.metadata()?.len() < self.offset {
            self.offset = 0;
        }
        read_lines(f, &mut self.offset, false, &mut lines)?;
        Ok(lines)
    }
}

/// Reads complete lines from `offset` on (at most [`MAX_READ`] bytes),
/// moving `offset` past them; `all`: the last line need not end.
fn read_lines(f: &mut File, offset: &mut u64, all: bool, out: &mut Vec<String>) -> io::Result<()> {
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    f.take(MAX_READ as u64).read_to_end(&mut buf)?;
    let end = match buf.iter().rposition(|&b| b == b'\n') {
        // The end of a rotated file: its last line, ended or not.
        _ if all => buf.len(),
        Some(i) => i + 1,
        // One line longer than a whole read.
        None if buf.len() == MAX_READ => buf.len(),
        None => 0,
    };
    for line in buf[..end].split(|&b| b == b'\n') {
        if !line.is_empty() {
            out.push(String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]).into_owned());
        }
    }
    *offset += end as u64;
    Ok(())
}

/// Reads sshd's journal entries since the last read.
#[derive(Debug, Default)]
pub struct JournalReader {
    cursor: Option<String>,
}

impl JournalReader {
    pub fn read(&mut self, since: SystemTime) -> Result<Vec<String>, String> {
        let mut cmd = Command::new("journalctl");
        cmd.args(["-u", "ssh", "-u", "sshd", "-o", "short-unix", "--no-pager"])
            .arg("--show-cursor")
            .arg(format!("--lines={JOURNAL_LINES}"));
        match &self.cursor {
            Some(c) => cmd.arg(format!("--after-cursor={c}")),
            None => {
                let s = since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                cmd.arg(format!("--since=@{}", s.as_secs()))
            }
        };
        let out = cmd.output().map_err(|e| format!("journalctl: {e}"))?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        journal_failed(out.status.success(), &stdout, &stderr)
            .map_or(Ok(()), |e| Err(format!("journalctl: {e}")))?;
        let mut lines = Vec::new();
        for l in stdout.lines() {
            match l.strip_prefix("-- cursor: ") {
                Some(c) => self.cursor = Some(c.to_owned()),
                None => lines.push(cut(l, MAX_LINE).to_owned()),
            }
        }
        Ok(lines)
    }
}

/// Why journalctl failed, if it did. It exits 1 when nothing matches
/// (systemd 252 prints `-- No entries --`): that is no failure, unless
/// there is no journal at all (`No journal files were found.`).
pub fn journal_failed(ok: bool, stdout: &str, stderr: &str) -> Option<String> {
    let err = stderr
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with("Hint:"));
    if ok {
        return None;
    }
    if stdout.lines().any(|l| l == "-- No entries --") && err.is_none() {
        return None;
    }
    Some(err.unwrap_or("failed").trim().to_owned())
}

/// `s` cut to at most `n` bytes, on a character's boundary.
fn cut(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One source's recent attempts.
#[derive(Debug, Default)]
struct Source {
    times: VecDeque<SystemTime>,
    users: BTreeSet<String>,
    users_more: u64,
}

/// What the SSH check counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Sources with an attempt within the window.
    pub sources: u64,
    /// Sources evicted for room since start.
    pub evicted: u64,
    /// sshd failure lines that did not parse since start.
    pub odd_lines: u64,
    /// The first odd line (cut to 200 bytes), for the log.
    pub odd_example: Option<String>,
}

/// Failed logins per source within the window.
#[derive(Debug)]
pub struct Brute {
    threshold: usize,
    window: Duration,
    max_sources: usize,
    sources: HashMap<IpAddr, Source>,
    /// Connections that have counted: `true` while the attempt counted
    /// by a line without `Failed` may still be told by a `Failed` line.
    conns: HashMap<(IpAddr, u16), bool>,
    conn_order: VecDeque<(IpAddr, u16)>,
    pub counts: Counts,
}

impl Brute {
    pub fn new(threshold: u32, window: Duration, max_sources: u32) -> Self {
        Brute {
            threshold: (threshold as usize).clamp(1, ATTEMPTS_KEPT),
            window,
            max_sources: max_sources.max(1) as usize,
            sources: HashMap::new(),
            conns: HashMap::new(),
            conn_order: VecDeque::new(),
            counts: Counts::default(),
        }
    }

    /// Takes lines read this cycle.
    pub fn lines(&mut self, lines: &[String], now: SystemTime) {
        for l in lines {
            match parse_line(l, now) {
                Line::Other => {}
                Line::Odd => {
                    self.counts.odd_lines += 1;
                    if self.counts.odd_example.is_none() {
                        let cut = l.char_indices().nth(200).map_or(l.len(), |(i, _)| i);
                        self.counts.odd_example = Some(l[..cut].to_owned());
                    }
                }
                Line::Attempt(a) => self.attempt(a),
            }
        }
    }

    fn attempt(&mut self, a: Attempt) {
        let conn = (a.source, a.port);
        let counts = match (self.conns.get_mut(&conn), a.failed) {
            (None, failed) => {
                self.conns.insert(conn, !failed);
                self.conn_order.push_back(conn);
                if self.conn_order.len() > CONNS_KEPT
                    && let Some(old) = self.conn_order.pop_front()
                {
                    self.conns.remove(&old);
                }
                true
            }
            // The attempt an `Invalid user` line counted, now told again.
            (Some(pending), true) if *pending => {
                *pending = false;
                false
            }
            (Some(_), failed) => failed,
        };
        if !counts {
            return;
        }
        if !self.sources.contains_key(&a.source) && self.sources.len() >= self.max_sources {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(ip, s)| (s.times.back().copied(), **ip))
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.sources.remove(&ip);
                self.counts.evicted += 1;
            }
        }
        let s = self.sources.entry(a.source).or_default();
        // Kept in order of time: a line read late goes in its place.
        let at = s.times.partition_point(|t| *t <= a.time);
        s.times.insert(at, a.time);
        if s.times.len() > ATTEMPTS_KEPT {
            s.times.pop_front();
        }
        if !a.user.is_empty() && !s.users.contains(&a.user) {
            if s.users.len() < USERS_KEPT {
                s.users.insert(a.user);
            } else {
                s.users_more += 1;
            }
        }
    }

    /// Forgets attempts older than the window and finds the sources at or
    /// above the threshold.
    pub fn judge(&mut self, now: SystemTime, out: &mut Vec<Found>) {
        let start = now
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.sources.retain(|_, s| {
            while s.times.front().is_some_and(|t| *t < start) {
                s.times.pop_front();
            }
            !s.times.is_empty()
        });
        self.counts.sources = self.sources.len() as u64;
        let mut sources: Vec<(&IpAddr, &Source)> = self.sources.iter().collect();
        sources.sort_by_key(|(ip, _)| **ip);
        for (ip, s) in sources {
            let n = s.times.len();
            if n < self.threshold {
                continue;
            }
            let (Some(first), Some(last)) = (s.times.front(), s.times.back()) else {
                continue;
            };
            let mut users: Vec<String> = s.users.iter().cloned().collect();
            let mut shown = users.join(", ");
            if s.users_more > 0 {
                shown.push_str(&format!(" and {} more", s.users_more));
            }
            if users.is_empty() {
                shown = "none named".into();
            }
            let at_least = if n == ATTEMPTS_KEPT { "at least " } else { "" };
            users.truncate(USERS_KEPT);
            out.push(Found {
                kind: Kind::SshBruteForce,
                key: ip.to_string(),
                evidence: format!(
                    "{at_least}{n} failed SSH logins from {ip} within {} (threshold {}); users tried: {shown}",
                    humantime::format_duration(self.window),
                    self.threshold,
                ),
                detail: Detail {
                    source: Some(*ip),
                    count: Some(n as u64),
                    window_seconds: Some(self.window.as_secs()),
                    first_attempt: Some(crate::units::time(*first)),
                    last_attempt: Some(crate::units::time(*last)),
                    users: Some(users),
                    ..Detail::default()
                },
            });
        }
    }
}

/// Where the check reads: the log file, or the journal where it is not.
#[derive(Debug)]
pub struct Ssh {
    log: LogReader,
    journal: JournalReader,
    pub brute: Brute,
}

impl Ssh {
    pub fn new(path: &Path, threshold: u32, window: Duration, max_sources: u32) -> Self {
        Ssh {
            log: LogReader::new(path),
            journal: JournalReader::default(),
            brute: Brute::new(threshold, window, max_sources),
        }
    }

    /// Reads what is new and judges; returns what was read (the file's
    /// path or `journal`) or why nothing could be.
    pub fn scan(&mut self, now: SystemTime, out: &mut Vec<Found>) -> Result<String, String> {
        let read = match self.log.read() {
            Ok(lines) => Ok((self.log.path.display().to_string(), lines)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let since = now.checked_sub(self.brute.window).unwrap_or(now);
                self.journal.read(since).map(|l| ("journal".to_owned(), l))
            }
            Err(e) => Err(format!("{}: {e}", self.log.path.display())),
        };
        let from = read.map(|(from, lines)| {
            self.brute.lines(&lines, now);
            from
        });
        self.brute.judge(now, out);
        from
    }
}

#[cfg(test)]
mod tests;
