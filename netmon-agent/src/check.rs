//! `netmon-agent check`: the preflight. Everything the configured agent
//! needs from this machine, checked the way the agent itself would use it
//! (loading the programs, attaching them to each interface and detaching
//! again, binding the API address), printed as a table with a fix for each
//! failure. Nothing is left attached or bound afterwards.

use std::{
    fmt::Write as _,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
};

use crate::{
    collect::{CollectorName, Need, SOURCES, registry::Cap},
    config::Config,
    ebpf::{HookMode, Kernel, preflight},
    ifaces, keys,
};

/// The lowest kernel the programs load on: XDP multi-buffer (`xdp.frags`)
/// and `bpf_xdp_get_buff_len` arrived in 5.18.
pub const MIN_KERNEL: (u32, u32) = (5, 18);
/// TCX links (TC programs as BPF links) arrived in 6.6; older kernels get a
/// clsact qdisc.
pub const TCX_KERNEL: (u32, u32) = (6, 6);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Works, but something is degraded or worth knowing.
    Warn,
    Fail,
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub check: String,
    pub outcome: Outcome,
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

fn row(check: impl Into<String>, outcome: Outcome, detail: impl Into<String>) -> Row {
    Row {
        check: check.into(),
        outcome,
        detail: detail.into(),
        fix: None,
    }
}

impl Row {
    fn fix(mut self, fix: impl Into<String>) -> Row {
        self.fix = Some(fix.into());
        self
    }
}

/// Runs every check.
pub fn run(cfg: &Config) -> Vec<Row> {
    let mut rows = vec![kernel(), btf(), bpffs()];
    let caps = preflight::effective_caps().unwrap_or(0);
    rows.extend(capabilities(caps, cfg));
    rows.extend(interfaces(cfg, caps));
    rows.push(listen(cfg));
    rows.push(api_key(cfg));
    rows.push(read_only_keys(cfg));
    rows.push(tls(cfg));
    rows.push(writable_dir("state directory", &cfg.state_dir));
    let history_dir = cfg
        .store_path()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    rows.push(writable_dir("history directory", &history_dir));
    rows
}

/// The table, and whether every check passed (warnings allowed).
pub fn render(rows: &[Row]) -> (String, bool) {
    let width = rows.iter().map(|r| r.check.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:<width$}  RESULT  DETAIL\n", "CHECK");
    for r in rows {
        let word = match r.outcome {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        let _ = writeln!(out, "{:<width$}  {word:<6}  {}", r.check, r.detail);
        if let Some(fix) = &r.fix {
            let _ = writeln!(out, "{:<width$}          fix: {fix}", "");
        }
    }
    let ok = rows.iter().all(|r| r.outcome != Outcome::Fail);
    let failed = rows.iter().filter(|r| r.outcome == Outcome::Fail).count();
    if ok {
        out.push_str("\nAll checks passed.\n");
    } else {
        let _ = writeln!(out, "\n{failed} check(s) failed.");
    }
    (out, ok)
}

/// `major.minor` of a kernel release string such as `6.18.0-1-amd64`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel() -> Row {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    match parse_release(release) {
        Some(v) if v >= TCX_KERNEL => {
            row("kernel", Outcome::Pass, format!("{release} (TCX links)"))
        }
        Some(v) if v >= MIN_KERNEL => row(
            "kernel",
            Outcome::Pass,
            format!("{release} (TC through a clsact qdisc; TCX needs 6.6)"),
        ),
        Some(_) => row(
            "kernel",
            Outcome::Fail,
            format!("{release} is older than 5.18"),
        )
        .fix("netmon's XDP program needs Linux 5.18 or later (XDP multi-buffer)"),
        None => row(
            "kernel",
            Outcome::Warn,
            format!("unrecognised release {release:?}"),
        ),
    }
}

fn btf() -> Row {
    if preflight::kernel_has_btf() {
        row("btf", Outcome::Pass, preflight::KERNEL_BTF)
    } else {
        row(
            "btf",
            Outcome::Fail,
            format!("{} is missing", preflight::KERNEL_BTF),
        )
        .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's are)")
    }
}

fn bpffs() -> Row {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
    {
        row(
            "bpffs",
            Outcome::Pass,
            "mounted (netmon pins nothing there)",
        )
    } else {
        row(
            "bpffs",
            Outcome::Pass,
            "not mounted; not needed: netmon pins nothing, its links end with the process",
        )
    }
}

const CAP_NET_RAW: u32 = 13;

fn capabilities(caps: u64, cfg: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    let missing = preflight::missing(caps);
    for cap in preflight::REQUIRED {
        let name = format!("capability {}", cap.name);
        if missing.contains(&cap) {
            rows.push(row(name, Outcome::Fail, format!("missing: needed to {}", cap.why)).fix(format!(
                "run as root, or grant it: AmbientCapabilities={} in the unit, or setpriv --ambient-caps +{}",
                cap.name,
                cap.name.trim_start_matches("CAP_").to_lowercase()
            )));
        } else {
            rows.push(row(name, Outcome::Pass, format!("needed to {}", cap.why)));
        }
    }
    // The collectors that use raw sockets (the registry says), and those
    // of them that are on.
    let raw: Vec<(CollectorName, &Need)> = SOURCES
        .iter()
        .flat_map(|s| {
            let name = s.name();
            s.needs()
                .iter()
                .filter(|n| n.cap == Cap::NetRaw)
                .map(move |n| (name, n))
        })
        .collect();
    let on: Vec<(CollectorName, &Need)> = raw
        .iter()
        .copied()
        .filter(|(name, _)| cfg.collect.enabled(*name))
        .collect();
    let names = |list: &[(CollectorName, &Need)], sep: &str| {
        let names: Vec<&str> = list.iter().map(|(name, _)| name.as_str()).collect();
        names.join(sep)
    };
    let uses = |pick: fn(&Need) -> &'static str, sep: &str| {
        let uses: Vec<&str> = on.iter().map(|(_, n)| pick(n)).collect();
        uses.join(sep)
    };
    let has_raw = caps & (1 << CAP_NET_RAW) != 0;
    let name = "capability CAP_NET_RAW";
    rows.push(match (on.is_empty(), has_raw) {
        (true, _) => row(
            name,
            Outcome::Pass,
            format!("not needed: {} are off", names(&raw, " and ")),
        ),
        (false, true) => row(
            name,
            Outcome::Pass,
            format!("for {}: {}", names(&on, " and "), uses(|n| n.what, " and ")),
        ),
        (false, false) => row(
            name,
            Outcome::Warn,
            format!(
                "missing: {} run without {}",
                names(&on, " and "),
                uses(|n| n.without, " and without ")
            ),
        )
        .fix(format!(
            "grant CAP_NET_RAW, or --disable {} to silence this",
            names(&on, ",")
        )),
    });
    rows
}

fn interfaces(cfg: &Config, caps: u64) -> Vec<Row> {
    let present = match ifaces::list(Path::new(ifaces::SYS_CLASS_NET)) {
        Ok(p) => p,
        Err(e) => {
            return vec![row(
                "interfaces",
                Outcome::Fail,
                format!("cannot list: {e}"),
            )];
        }
    };
    let mut rows = Vec::new();
    let wanted: Vec<&ifaces::Iface> = if cfg.ifaces.is_empty() {
        present.iter().filter(|i| i.watched_by_default()).collect()
    } else {
        for name in &cfg.ifaces {
            if !present.iter().any(|i| &i.name == name) {
                rows.push(
                    row(
                        format!("interface {name}"),
                        Outcome::Fail,
                        "no such interface",
                    )
                    .fix("check the name with `ip link`, or fix --iface"),
                );
            }
        }
        present
            .iter()
            .filter(|i| cfg.ifaces.contains(&i.name))
            .collect()
    };
    if wanted.is_empty() && cfg.ifaces.is_empty() {
        rows.push(
            row(
                "interfaces",
                Outcome::Fail,
                "none is up, non-loopback and with a MAC",
            )
            .fix("bring an interface up or name one with --iface"),
        );
        return rows;
    }
    if !preflight::missing(caps).is_empty() {
        for i in wanted {
            rows.push(row(
                format!("interface {}", i.name),
                Outcome::Warn,
                "attach not tried: capabilities missing (see above)",
            ));
        }
        return rows;
    }
    let mut kernel = match Kernel::load(cfg.ingress, cfg.map_sizes()) {
        Ok(k) => k,
        Err(e) => {
            rows.push(
                row(
                    "programs",
                    Outcome::Fail,
                    format!("loading failed: {:#}", anyhow::Error::from(e)),
                )
                .fix(
                    "see the message; report it with the kernel version if it is a verifier error",
                ),
            );
            return rows;
        }
    };
    rows.push(row("programs", Outcome::Pass, "loaded and verified"));
    for i in wanted {
        let name = format!("interface {}", i.name);
        match kernel.attach(&i.name, i.ifindex) {
            Ok(a) => {
                let how = match a.ingress {
                    HookMode::XdpNative => "native XDP in, TC out".to_owned(),
                    HookMode::XdpGeneric => "generic XDP in (asked for), TC out".to_owned(),
                    HookMode::Tc => {
                        "TC in and out (the driver has no native XDP, or --ingress tc)".to_owned()
                    }
                };
                let state = if i.up { "" } else { "; link is down" };
                rows.push(row(
                    name,
                    if i.up { Outcome::Pass } else { Outcome::Warn },
                    format!("attached and detached: {how}{state}"),
                ));
                kernel.detach(a);
            }
            Err(e) => rows.push(
                row(name, Outcome::Fail, format!("{:#}", anyhow::Error::from(e)))
                    .fix("try --ingress tc, or leave this interface out"),
            ),
        }
    }
    rows
}

fn listen(cfg: &Config) -> Row {
    match TcpListener::bind(cfg.listen) {
        Ok(_) => row("listen", Outcome::Pass, format!("{} is free", cfg.listen)),
        Err(e) => row(
            "listen",
            Outcome::Fail,
            format!("cannot bind {}: {e}", cfg.listen),
        )
        .fix("stop what holds the address, or choose another with --listen"),
    }
}

fn api_key(cfg: &Config) -> Row {
    let env = std::env::var(keys::KEY_ENV_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let state_key = cfg.state_dir.join(keys::KEY_FILE_NAME);
    let will_generate = env.is_none()
        && cfg.api_key_file.is_none()
        && credentials
            .as_deref()
            .is_none_or(|d| !d.join(keys::CREDENTIAL_NAME).exists())
        && !state_key.exists();
    if will_generate {
        return row(
            "api key",
            Outcome::Pass,
            format!(
                "none yet: one will be generated into {}",
                state_key.display()
            ),
        );
    }
    // A key exists somewhere: load it exactly as the agent will (nothing is
    // generated on this path).
    match keys::load_or_generate_with_credentials(
        env,
        cfg.api_key_file.as_deref(),
        credentials.as_deref(),
        &cfg.state_dir,
    ) {
        Ok((_, source)) => row("api key", Outcome::Pass, format!("from {source}")),
        Err(e) => row(
            "api key",
            Outcome::Fail,
            format!("{:#}", anyhow::Error::from(e)),
        )
        .fix("fix or remove the key named above (keys need at least 16 printable characters)"),
    }
}

fn read_only_keys(cfg: &Config) -> Row {
    let files = &cfg.access.read_only_key_files;
    if files.is_empty() {
        return row("read-only keys", Outcome::Pass, "none configured");
    }
    match keys::read_key_lists(files) {
        Ok(keys) => row(
            "read-only keys",
            Outcome::Pass,
            format!("{} key(s) from {} file(s)", keys.len(), files.len()),
        ),
        Err(e) => row(
            "read-only keys",
            Outcome::Fail,
            format!("{:#}", anyhow::Error::from(e)),
        )
        .fix("fix the line named, or the file's permissions"),
    }
}

fn tls(cfg: &Config) -> Row {
    match crate::api::tls::load(&cfg.access) {
        Ok(None) => row("tls", Outcome::Pass, "off: the API speaks plain HTTP"),
        Ok(Some(_)) => row("tls", Outcome::Pass, "certificate and key load"),
        Err(e) => row(
            "tls",
            Outcome::Fail,
            format!("{:#}", anyhow::Error::from(e)),
        )
        .fix("give a PEM certificate chain with --tls-cert and its PEM private key with --tls-key"),
    }
}

fn writable_dir(name: &str, dir: &Path) -> Row {
    let (target, exists) = if dir.exists() {
        (dir.to_owned(), true)
    } else {
        match dir.ancestors().skip(1).find(|p| p.exists()) {
            Some(p) => (p.to_owned(), false),
            None => (PathBuf::from("/"), false),
        }
    };
    let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: a valid NUL-terminated path.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    match (exists, writable) {
        (true, true) => row(
            name,
            Outcome::Pass,
            format!("{} is writable", dir.display()),
        ),
        (false, true) => row(
            name,
            Outcome::Pass,
            format!("{} will be created", dir.display()),
        ),
        (_, false) => row(
            name,
            Outcome::Fail,
            format!("{} is not writable by this user", target.display()),
        )
        .fix("use StateDirectory=netmon in the unit, or --state-dir / --store-path on a writable path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("6.6"), Some((6, 6)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn a_failure_fails_the_table_and_shows_its_fix() {
        let rows = vec![
            row("kernel", Outcome::Pass, "6.18"),
            row("listen", Outcome::Fail, "taken").fix("choose another"),
            row("capability CAP_NET_RAW", Outcome::Warn, "missing"),
        ];
        let (text, ok) = render(&rows);
        assert!(!ok);
        assert!(text.contains("FAIL"), "{text}");
        assert!(text.contains("fix: choose another"), "{text}");
        assert!(text.contains("1 check(s) failed."), "{text}");
        let (_, ok) = render(&rows[..1]);
        assert!(ok);
    }
}
