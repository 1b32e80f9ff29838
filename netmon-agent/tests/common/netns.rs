//! Network-namespace guards and small topologies for privileged tests.
//!
//! Every test builds its own world and owns it through guards: a [`NetNs`]
//! deletes its namespace on drop, a [`Pair`] or [`Lan`] owns all of its
//! namespaces (and so all of its links, which die with them), and an
//! [`NsChild`] stops and reaps its process. Guards drop while a panic
//! unwinds, so a failing test cleans up too; [`sweep_stale`] removes what
//! a *crashed* process (SIGKILL, abort) left behind.
//!
//! ```ignore
//! let pair = Pair::new();
//! let replies = pair.a().ns().run(|| icmp_echo(pair.b().ip4().into(), 3, 56));
//! assert_eq!(replies, 3);
//! let mut agent = Command::new(env!("CARGO_BIN_EXE_netmon-agent"));
//! let agent = pair.b().ns().spawn(agent.arg("--iface=eth0"));
//! ```
//!
//! Naming. Namespaces are global, so their names are unique per process and
//! per guard: `nmh-<pid>-<counter>-<role>` ([`NAME_PREFIX`]). Interface names
//! are per namespace, so links are created directly inside their namespaces
//! (`ip -n A link add eth0 type veth peer name eth0 netns B`) and short fixed
//! names (`eth0`, `br0`, `p1`) never collide; nothing is ever created in the
//! host namespace.
//!
//! Addresses are fixed (10.0.0.0/24, fd00::/64): each topology lives in its
//! own namespaces, so parallel tests cannot see each other's addresses.
//!
//! Ready on return. The topologies return once every link is up and IPv6
//! is usable on it ([`NetNs::wait_ipv6_ready`]), so the first packet of a test
//! is not lost or delayed; the two ends of a [`Pair`] get distinct ifindexes
//! for the same reason (see [`Pair::IFINDEX_A`]).
//!
//! Quiet, not silent. The harness cannot make a link silent: [`NetNs::new`]
//! turns off IPv6 DAD, router solicitations and RA processing, but the kernel
//! still sends IPv6 MLD reports and ARP/NDP for link-local and configured
//! addresses when links come up or neighbours are resolved. Tests that count
//! packets must assert "at least N" on the wire, or count at the receiving
//! socket, or use [`PairOptions::static_neighbors`] to avoid resolution
//! traffic.
//!
//! Reading `/sys`. sysfs shows the namespace of whoever mounted it, so
//! interface attributes are read through `ip netns exec` (which remounts
//! `/sys`), not from a thread inside [`NetNs::run`]. `/proc/sys/net` on the
//! other hand follows the calling thread, so sysctls are written from
//! [`NetNs::run`].

use std::{
    ffi::OsStr,
    fmt,
    fs::{self, File},
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    panic,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Mutex, Once, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// First component of every namespace name this harness creates.
pub const NAME_PREFIX: &str = "nmh";

/// Where `ip netns` keeps its namespace handles.
const NETNS_RUN_DIR: &str = "/run/netns";

/// How long [`NsChild::terminate`] waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// How long a topology waits for its links to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sysctls [`NetNs::new`] sets in every namespace. The interface-level
/// `default` values are copied into each interface when it is created, so
/// they must be set before any link is added.
const NS_SYSCTLS: &[(&str, &str)] = &[
    // Lets any user, root included, open ICMP datagram sockets (the default
    // "1 0" allows nobody); `icmp_echo` needs it.
    ("net.ipv4.ping_group_range", "0 2147483647"),
    ("net.ipv6.conf.all.disable_ipv6", "0"),
    ("net.ipv6.conf.default.disable_ipv6", "0"),
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.all.accept_ra", "0"),
    ("net.ipv6.conf.default.accept_ra", "0"),
    ("net.ipv6.conf.all.router_solicitations", "0"),
    ("net.ipv6.conf.default.router_solicitations", "0"),
];

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();
/// Serialises `ip netns add` within this process: the first add on a machine
/// turns /run/netns into a shared mount, and concurrent first adds can stack
/// two such mounts.
static ADD_LOCK: Mutex<()> = Mutex::new(());

fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Panics unless the effective user is root. Every constructor calls it, so
/// an unprivileged `cargo test` fails with this message rather than a
/// confusing `ip` error.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("privileged test: run as root (cargo xtask test does)");
    }
}

/// Polls `cond` until it returns true or `timeout` passes; returns whether it
/// became true. The first checks are quick, later ones back off to 20 ms.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A command that could not run or exited unsuccessfully.
#[derive(Debug)]
pub struct ExecError {
    /// The command line as run, e.g. `ip netns exec nmh-1-0-a ip addr`.
    pub command: String,
    /// The namespace it ran in or for, if any.
    pub netns: Option<String>,
    /// Exit status; `None` when the command could not be started.
    pub status: Option<ExitStatus>,
    /// Why it could not be started, when `status` is `None`.
    pub spawn_error: Option<io::Error>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.command)?;
        if let Some(netns) = &self.netns {
            write!(f, " (netns {netns})")?;
        }
        match (&self.status, &self.spawn_error) {
            (Some(status), _) => write!(f, " failed: {status}")?,
            (None, Some(err)) => write!(f, " could not start: {err}")?,
            (None, None) => write!(f, " failed")?,
        }
        write!(f, "\n--- stderr ---\n{}", self.stderr.trim_end())?;
        if !self.stdout.trim().is_empty() {
            write!(f, "\n--- stdout ---\n{}", self.stdout.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for ExecError {}

/// Renders a command line for messages.
fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                format!("'{arg}'")
            } else {
                arg.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion with stdin closed; returns stdout on success.
fn run_command(cmd: &mut Command, netns: Option<&str>) -> Result<String, ExecError> {
    cmd.stdin(Stdio::null());
    let command = render(cmd);
    let error = |status, spawn_error, stdout: &[u8], stderr: &[u8]| ExecError {
        command: command.clone(),
        netns: netns.map(str::to_owned),
        status,
        spawn_error,
        stdout: String::from_utf8_lossy(stdout).into_owned(),
        stderr: String::from_utf8_lossy(stderr).into_owned(),
    };
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(error(Some(out.status), None, &out.stdout, &out.stderr)),
        Err(err) => Err(error(None, Some(err), b"", b"")),
    }
}

/// Runs a command in the host namespace (only `ip netns add/del/list`).
fn host_exec(args: &[&str], netns: Option<&str>) -> Result<String, ExecError> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    run_command(&mut cmd, netns)
}

/// Names of all namespaces in `ip netns list`, this harness's or not.
pub fn list_netns() -> Vec<String> {
    let out = host_exec(&["ip", "netns", "list"], None).unwrap_or_else(|err| panic!("{err}"));
    // Lines look like `name (id: 3)` or just `name`.
    out.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The pid embedded in a namespace name made by this harness
/// (`nmh-<pid>-<counter>-<role>`), or `None` for any other name.
pub fn harness_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?.strip_prefix('-')?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    parts.next()?;
    Some(pid)
}

/// Whether `pid`, taken from a harness name, belonged to a process that is
/// gone (and is not this one).
fn owner_is_gone(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces left by crashed runs of this harness: those whose name
/// has this harness's form and whose pid is not a live process (nor this
/// one); also their [`NsChild`] log directories in the temp dir. Other
/// namespaces and files are never touched. Errors are logged, not raised:
/// parallel test processes sweep at the same time and may race for the same
/// leftovers. [`NetNs::new`] calls it once per process.
pub fn sweep_stale() {
    sweep_stale_logs();
    let entries = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return,
        Err(err) => {
            eprintln!("netns harness: sweep_stale: cannot list {NETNS_RUN_DIR}: {err}");
            return;
        }
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = harness_pid(name).filter(|&pid| owner_is_gone(pid)) else {
            continue;
        };
        match host_exec(&["ip", "netns", "del", name], Some(name)) {
            Ok(_) => eprintln!("netns harness: removed stale namespace {name} (pid {pid} is gone)"),
            // Another process's sweep got there first.
            Err(_) if !entry.path().exists() => {}
            Err(err) => eprintln!("netns harness: sweep_stale: {err}"),
        }
    }
}

/// Removes `<temp>/nmh-<pid>-...` log directories of dead processes.
fn sweep_stale_logs() {
    let temp = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&temp) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .file_name()
            .to_str()
            .and_then(harness_pid)
            .is_some_and(owner_is_gone);
        if stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
            // A parallel sweep may remove it first.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Counters from `/sys/class/net/IF/statistics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl IfStats {
    /// The statistics files, in the order [`IfStats::parse`] expects them.
    pub const FILES: [&str; 6] = [
        "rx_bytes",
        "rx_packets",
        "tx_bytes",
        "tx_packets",
        "rx_dropped",
        "tx_dropped",
    ];

    /// Parses the output of `cat` on [`IfStats::FILES`]: one number a line.
    pub fn parse(text: &str) -> Option<IfStats> {
        let mut values = text.lines().map(|line| line.trim().parse::<u64>());
        let mut next = || values.next()?.ok();
        let stats = IfStats {
            rx_bytes: next()?,
            rx_packets: next()?,
            tx_bytes: next()?,
            tx_packets: next()?,
            rx_dropped: next()?,
            tx_dropped: next()?,
        };
        values.next().is_none().then_some(stats)
    }

    /// Counter growth from `earlier` to `self` (saturating, in case the
    /// interface was recreated in between).
    pub fn since(&self, earlier: &IfStats) -> IfStats {
        IfStats {
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }
}

/// Parses `02:00:00:00:00:0a`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC address as `ip` and sysfs do: `02:00:00:00:00:0a`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// A network namespace that exists as long as this guard does.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `nmh-<pid>-<counter>-<role>` with `lo` up, ICMP datagram
    /// sockets allowed for everyone (`net.ipv4.ping_group_range`), and IPv6
    /// DAD, RA processing and router solicitations off for the links added
    /// later. `role` (letters, digits, `_`) only makes the name readable in
    /// `ip netns list` and in messages. Sweeps stale namespaces first, once
    /// per process ([`sweep_stale`]).
    pub fn new(role: &str) -> NetNs {
        require_root();
        assert!(
            !role.is_empty() && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "NetNs::new: role {role:?} must be non-empty ASCII letters, digits or '_'"
        );
        SWEEP.call_once(sweep_stale);
        let name = format!("{NAME_PREFIX}-{}-{}-{role}", std::process::id(), next_id());
        {
            let _serial = ADD_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
            host_exec(&["ip", "netns", "add", &name], Some(&name))
                .unwrap_or_else(|err| panic!("{err}"));
        }
        // From here on the guard deletes the namespace, even if setup panics.
        let ns = NetNs { name };
        ns.ip_line("link set lo up");
        ns.run(|| {
            for (key, value) in NS_SYSCTLS {
                write_sysctl(key, value);
            }
        });
        ns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's handle file, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `args` inside the namespace (`ip netns exec NAME args...`) and
    /// returns its stdout; panics with the command, namespace, status and
    /// stderr if it fails.
    pub fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        self.try_exec(args).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`NetNs::exec`] that returns the failure instead of panicking.
    pub fn try_exec<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, ExecError> {
        assert!(
            !args.is_empty(),
            "NetNs::exec in {}: empty command",
            self.name
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        run_command(&mut cmd, Some(&self.name))
    }

    /// Runs `ip -n NAME args...` (cheaper than `exec(["ip", ...])`: no mount
    /// namespace is set up); panics like [`NetNs::exec`].
    pub fn ip<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        run_command(&mut cmd, Some(&self.name)).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`NetNs::ip`] with the arguments given as one line split at
    /// whitespace: `ns.ip_line(&format!("addr add {ip}/24 dev eth0"))`.
    pub fn ip_line(&self, line: &str) -> String {
        self.ip(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Runs `f` on a new thread that has joined this namespace, so sockets it
    /// opens (and threads it spawns) live here; returns what `f` returns.
    /// A panic in `f` is resumed in the caller with its original payload.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = self.path();
        let handle = File::open(&path)
            .unwrap_or_else(|err| panic!("netns {}: open {}: {err}", self.name, path.display()));
        thread::scope(|scope| {
            let thread = thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, move || {
                    // SAFETY: `handle` is an open nsfs file; CLONE_NEWNET only
                    // changes the network namespace of this thread.
                    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        panic!(
                            "netns {}: setns({}): {}",
                            self.name,
                            path.display(),
                            io::Error::last_os_error()
                        );
                    }
                    drop(handle);
                    f()
                })
                .unwrap_or_else(|err| panic!("netns {}: spawn thread: {err}", self.name));
            thread
                .join()
                .unwrap_or_else(|payload| panic::resume_unwind(payload))
        })
    }

    /// Waits until IPv6 on `ifname` is usable: it has a link-local address
    /// and no address of it is tentative. Until then the kernel has not
    /// finished bringing the link up (the carrier change is handled
    /// asynchronously) and drops incoming neighbour solicitations for lack of
    /// a multicast route, so the first IPv6 packet to a fresh link would wait
    /// a full NDP retransmit (1 s). The topologies call it for every
    /// interface before returning. Panics with the address list on timeout.
    pub fn wait_ipv6_ready(&self, ifname: &str, timeout: Duration) {
        let ready = self.run(|| poll_until(timeout, || ipv6_ready(&read_if_inet6(), ifname)));
        if !ready {
            panic!(
                "netns {}: IPv6 on {ifname} not ready after {timeout:?} (needs a link-local \
                 address and no tentative one); /proc/net/if_inet6:\n{}",
                self.name,
                self.run(read_if_inet6)
            );
        }
    }

    /// Writes `net.*` sysctl `key` (dotted form) in this namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(|| write_sysctl(key, value));
    }

    /// Reads one sysfs attribute of `ifname`, trimmed.
    pub fn sysfs(&self, ifname: &str, attr: &str) -> String {
        self.exec(&["cat", &format!("/sys/class/net/{ifname}/{attr}")])
            .trim()
            .to_owned()
    }

    /// Interface counters of `ifname`, read in one `cat` inside the
    /// namespace.
    pub fn if_stats(&self, ifname: &str) -> IfStats {
        let files = IfStats::FILES.map(|f| format!("/sys/class/net/{ifname}/statistics/{f}"));
        let mut args = vec!["cat"];
        args.extend(files.iter().map(String::as_str));
        let out = self.exec(&args);
        IfStats::parse(&out).unwrap_or_else(|| {
            panic!(
                "netns {}: unexpected statistics for {ifname}: {out:?}",
                self.name
            )
        })
    }

    /// The interface index of `ifname`.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        let text = self.sysfs(ifname, "ifindex");
        text.parse().unwrap_or_else(|err| {
            panic!("netns {}: ifindex of {ifname}: {text:?}: {err}", self.name)
        })
    }

    /// The MAC address of `ifname`.
    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let text = self.sysfs(ifname, "address");
        parse_mac(&text)
            .unwrap_or_else(|| panic!("netns {}: address of {ifname}: {text:?}", self.name))
    }

    /// Starts `cmd` inside the namespace through `ip netns exec` (so it also
    /// sees this namespace's `/sys`). Program, arguments, environment changes
    /// and working directory are taken from `cmd`; stdin is null and stdout
    /// and stderr go to files in a fresh temp directory, so nothing blocks on
    /// a full pipe. `env_clear` and `cmd`'s stdio settings are not carried
    /// over. The process is the direct child (`ip` execs it), so signals reach
    /// it. Drop the [`NsChild`] before this [`NetNs`].
    pub fn spawn(&self, cmd: &Command) -> NsChild {
        let log_dir = std::env::temp_dir().join(format!("{}-child{}", self.name, next_id()));
        let create = |path: PathBuf| {
            File::create(&path).unwrap_or_else(|err| {
                panic!("netns {}: create {}: {err}", self.name, path.display())
            })
        };
        fs::create_dir_all(&log_dir).unwrap_or_else(|err| {
            panic!("netns {}: create {}: {err}", self.name, log_dir.display())
        });
        let stdout = create(log_dir.join("stdout"));
        let stderr = create(log_dir.join("stderr"));

        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.name])
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let command = render(&wrapped);
        let child = wrapped.spawn().unwrap_or_else(|err| {
            panic!("`{command}` (netns {}) could not start: {err}", self.name)
        });
        NsChild {
            child,
            command,
            log_dir,
            status: None,
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(err) = host_exec(&["ip", "netns", "del", &self.name], Some(&self.name)) {
            eprintln!("netns harness: cannot delete namespace: {err}");
        }
    }
}

/// The calling thread's `/proc/net/if_inet6` (`/proc/net` would show the
/// main thread's namespace).
fn read_if_inet6() -> String {
    let path = "/proc/thread-self/net/if_inet6";
    fs::read_to_string(path).unwrap_or_else(|err| panic!("read {path}: {err}"))
}

/// Whether `/proc/net/if_inet6` text shows `ifname` with a link-local
/// address and without tentative addresses. Lines are
/// `address ifindex prefixlen scope flags name`, numbers in hex.
pub fn ipv6_ready(if_inet6: &str, ifname: &str) -> bool {
    const SCOPE_LINK: u32 = 0x20;
    const IFA_F_TENTATIVE: u32 = 0x40;
    let mut link_local = false;
    for line in if_inet6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, _, _, scope, flags, name] = fields[..] else {
            continue;
        };
        if name != ifname {
            continue;
        }
        let (Ok(scope), Ok(flags)) = (
            u32::from_str_radix(scope, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            return false;
        };
        if flags & IFA_F_TENTATIVE != 0 {
            return false;
        }
        link_local |= scope == SCOPE_LINK;
    }
    link_local
}

/// Writes a dotted `net.*` sysctl through `/proc/sys`, which follows the
/// calling thread's network namespace.
fn write_sysctl(key: &str, value: &str) {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    fs::write(&path, value)
        .unwrap_or_else(|err| panic!("sysctl {key}={value:?} ({}): {err}", path.display()));
}

/// A process running inside a namespace (see [`NetNs::spawn`]). On drop it is
/// sent SIGTERM, then SIGKILL after [`TERM_GRACE`], and reaped; its log files
/// are removed unless the thread is panicking, in which case their paths and
/// the tail of stderr are printed.
#[derive(Debug)]
pub struct NsChild {
    child: Child,
    command: String,
    log_dir: PathBuf,
    status: Option<ExitStatus>,
}

impl NsChild {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line as started (`ip netns exec NAME program args...`).
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The exit status if the process has exited, without blocking.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|err| panic!("`{}`: wait: {err}", self.command));
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_with_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.try_status().is_some());
        self.status
    }

    /// Stops the process (SIGTERM, then SIGKILL after [`TERM_GRACE`]) and
    /// returns how it ended; returns the status at once if it already exited.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop()
            .unwrap_or_else(|err| panic!("`{}`: terminate: {err}", self.command))
    }

    fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        if let Some(status) = self.child.try_wait()? {
            self.status = Some(status);
            return Ok(status);
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        // SAFETY: kill has no memory preconditions; the child is not reaped
        // yet, so its pid cannot have been reused.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let status = match self.wait_with_timeout(TERM_GRACE) {
            Some(status) => status,
            None => {
                eprintln!(
                    "netns harness: `{}` ignored SIGTERM for {TERM_GRACE:?}; sending SIGKILL",
                    self.command
                );
                self.child.kill()?;
                self.child.wait()?
            }
        };
        self.status = Some(status);
        Ok(status)
    }

    /// Where stdout goes.
    pub fn stdout_path(&self) -> PathBuf {
        self.log_dir.join("stdout")
    }

    /// Where stderr goes.
    pub fn stderr_path(&self) -> PathBuf {
        self.log_dir.join("stderr")
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        read_lossy(&self.stdout_path())
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        read_lossy(&self.stderr_path())
    }

    /// Waits until stderr contains `needle` (e.g. a readiness log line).
    /// Panics, quoting stderr, if the process exits first or `timeout`
    /// passes.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let mut exited = None;
        let found = poll_until(timeout, || {
            if self.stderr_text().contains(needle) {
                return true;
            }
            exited = self.try_status();
            exited.is_some()
        }) && exited.is_none();
        if !found {
            let why = match exited {
                Some(status) => format!("exited ({status})"),
                None => format!("timed out after {timeout:?}"),
            };
            panic!(
                "`{}`: {why} before stderr contained {needle:?}\n--- stderr ---\n{}",
                self.command,
                self.stderr_text().trim_end()
            );
        }
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        match self.stop() {
            Ok(status) if thread::panicking() => eprintln!(
                "netns harness: `{}` ended ({status}); logs kept in {}\n--- stderr (tail) ---\n{}",
                self.command,
                self.log_dir.display(),
                tail(&self.stderr_text(), 4096)
            ),
            Ok(_) => {
                if let Err(err) = fs::remove_dir_all(&self.log_dir) {
                    eprintln!(
                        "netns harness: cannot remove {}: {err}",
                        self.log_dir.display()
                    );
                }
            }
            Err(err) => eprintln!(
                "netns harness: cannot stop `{}` (pid {}): {err}; logs in {}",
                self.command,
                self.child.id(),
                self.log_dir.display()
            ),
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// One end of a topology: a namespace and its single interface.
#[derive(Debug)]
pub struct Host {
    ns: NetNs,
    ifname: &'static str,
    mac: [u8; 6],
    ip4: Ipv4Addr,
    ip6: Ipv6Addr,
}

impl Host {
    /// Sets up `ifname` (already moved into `ns`): MAC, addresses, MTU, up.
    fn configure(
        ns: NetNs,
        ifname: &'static str,
        mac: [u8; 6],
        ip4: Ipv4Addr,
        ip6: Ipv6Addr,
        mtu: Option<u32>,
    ) -> Host {
        ns.ip_line(&format!("link set {ifname} address {}", format_mac(mac)));
        if let Some(mtu) = mtu {
            ns.ip_line(&format!("link set {ifname} mtu {mtu}"));
        }
        ns.ip_line(&format!("addr add {ip4}/{PREFIX_V4} dev {ifname}"));
        ns.ip_line(&format!("addr add {ip6}/{PREFIX_V6} dev {ifname} nodad"));
        ns.ip_line(&format!("link set {ifname} up"));
        Host {
            ns,
            ifname,
            mac,
            ip4,
            ip6,
        }
    }

    /// Adds permanent ARP and NDP entries for `peer`.
    fn add_static_neighbor(&self, peer_ip4: Ipv4Addr, peer_ip6: Ipv6Addr, peer_mac: [u8; 6]) {
        let (mac, dev) = (format_mac(peer_mac), self.ifname);
        for ip in [peer_ip4.to_string(), peer_ip6.to_string()] {
            self.ns.ip_line(&format!(
                "neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
            ));
        }
    }

    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// The interface's name inside [`Host::ns`] (`eth0`).
    pub fn ifname(&self) -> &'static str {
        self.ifname
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn ip4(&self) -> Ipv4Addr {
        self.ip4
    }

    pub fn ip6(&self) -> Ipv6Addr {
        self.ip6
    }

    /// [`NetNs::if_stats`] of this host's interface.
    pub fn if_stats(&self) -> IfStats {
        self.ns.if_stats(self.ifname)
    }

    /// [`NetNs::ifindex`] of this host's interface.
    pub fn ifindex(&self) -> u32 {
        self.ns.ifindex(self.ifname)
    }
}

/// IPv4 prefix length of every topology's subnet (10.0.0.0/24).
pub const PREFIX_V4: u8 = 24;
/// IPv6 prefix length of every topology's subnet (fd00::/64).
pub const PREFIX_V6: u8 = 64;

/// Options for [`Pair::with_options`].
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// MTU of both ends (e.g. 9000 for jumbo tests); `None` keeps veth's 1500.
    pub mtu: Option<u32>,
    pub mac_a: [u8; 6],
    pub mac_b: [u8; 6],
    /// Install permanent ARP/NDP entries for the peer on both ends, so no
    /// resolution traffic precedes the first packet.
    pub static_neighbors: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            mtu: None,
            mac_a: Pair::MAC_A,
            mac_b: Pair::MAC_B,
            static_neighbors: false,
        }
    }
}

/// Two namespaces joined by a veth pair, `eth0` on each side:
///
/// ```text
///  a: eth0 ifindex 10  02:00:00:00:00:0a  10.0.0.1/24  fd00::1/64
///  b: eth0 ifindex 11  02:00:00:00:00:0b  10.0.0.2/24  fd00::2/64
/// ```
///
/// The constructor returns once both ends are up and IPv6 is ready on them
/// ([`NetNs::wait_ipv6_ready`]).
#[derive(Debug)]
pub struct Pair {
    a: Host,
    b: Host,
}

impl Pair {
    pub const IFNAME: &str = "eth0";
    pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    pub const IP4_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    pub const IP4_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    pub const IP6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    pub const IP6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    /// The ends get different interface indexes on purpose: the kernel
    /// treats a link-state change of a veth whose peer has the same ifindex
    /// as its own as non-urgent and delays it up to a second, and until it
    /// is processed IPv6 is not up on the link.
    pub const IFINDEX_A: u32 = 10;
    pub const IFINDEX_B: u32 = 11;

    /// A pair with the default [`PairOptions`].
    pub fn new() -> Pair {
        Pair::with_options(PairOptions::default())
    }

    /// A pair whose links have the given MTU.
    pub fn with_mtu(mtu: u32) -> Pair {
        Pair::with_options(PairOptions {
            mtu: Some(mtu),
            ..PairOptions::default()
        })
    }

    pub fn with_options(options: PairOptions) -> Pair {
        let a = NetNs::new("a");
        let b = NetNs::new("b");
        let ifname = Pair::IFNAME;
        let (index_a, index_b) = (Pair::IFINDEX_A, Pair::IFINDEX_B);
        a.ip_line(&format!(
            "link add {ifname} index {index_a} type veth peer name {ifname} index {index_b} netns {}",
            b.name
        ));
        let mtu = options.mtu;
        let a = Host::configure(a, ifname, options.mac_a, Pair::IP4_A, Pair::IP6_A, mtu);
        let b = Host::configure(b, ifname, options.mac_b, Pair::IP4_B, Pair::IP6_B, mtu);
        for host in [&a, &b] {
            host.ns.wait_ipv6_ready(ifname, READY_TIMEOUT);
        }
        if options.static_neighbors {
            a.add_static_neighbor(b.ip4, b.ip6, b.mac);
            b.add_static_neighbor(a.ip4, a.ip6, a.mac);
        }
        Pair { a, b }
    }

    pub fn a(&self) -> &Host {
        &self.a
    }

    pub fn b(&self) -> &Host {
        &self.b
    }

    /// Names of both namespaces (e.g. to check they are gone after drop).
    pub fn netns_names(&self) -> [String; 2] {
        [self.a.ns.name.clone(), self.b.ns.name.clone()]
    }
}

/// A bridged LAN: namespace `gw` holds bridge `br0` and one veth port `p<i>`
/// per host; host `h<i>` (i = 1..=n) has `eth0` on the other end.
///
/// ```text
///  gw: br0 02:00:00:00:01:fe  10.0.0.254/24  fd00::fe/64
///      p<i> 02:00:00:00:02:<i>  (bridge ports, no addresses)
///  h<i>: eth0 02:00:00:00:01:<i>  10.0.0.<i>/24  fd00::<i>/64
/// ```
///
/// (`fd00::<i>` puts `i` in the last 16-bit group, so h10 is `fd00::a`.)
/// STP is off and the forward delay 0, so ports forward at once; the
/// constructor returns once IPv6 is ready on `br0` and every host.
#[derive(Debug)]
pub struct Lan {
    gw: NetNs,
    hosts: Vec<Host>,
}

impl Lan {
    pub const BRIDGE: &str = "br0";
    pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0xfe];
    pub const GW_IP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
    pub const GW_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
    /// Most hosts a LAN can have (10.0.0.1 ..= 10.0.0.253).
    pub const MAX_HOSTS: usize = 253;

    /// MAC of host `h<i>`'s `eth0`.
    pub fn host_mac(i: u8) -> [u8; 6] {
        [0x02, 0, 0, 0, 0x01, i]
    }

    /// MAC of bridge port `p<i>`.
    pub fn port_mac(i: u8) -> [u8; 6] {
        [0x02, 0, 0, 0, 0x02, i]
    }

    /// Name of host `h<i>`'s bridge port inside the gateway namespace.
    pub fn port_name(i: usize) -> String {
        format!("p{i}")
    }

    pub fn new(n: usize) -> Lan {
        assert!(
            (1..=Lan::MAX_HOSTS).contains(&n),
            "Lan::new({n}): between 1 and {} hosts",
            Lan::MAX_HOSTS
        );
        let gw = NetNs::new("gw");
        let br = Lan::BRIDGE;
        let (mac, ip4, ip6) = (format_mac(Lan::GW_MAC), Lan::GW_IP4, Lan::GW_IP6);
        gw.ip_line(&format!(
            "link add {br} address {mac} type bridge stp_state 0 forward_delay 0"
        ));
        gw.ip_line(&format!("addr add {ip4}/{PREFIX_V4} dev {br}"));
        gw.ip_line(&format!("addr add {ip6}/{PREFIX_V6} dev {br} nodad"));
        gw.ip_line(&format!("link set {br} up"));

        let mut hosts = Vec::with_capacity(n);
        for i in 1..=n {
            let octet = u8::try_from(i).expect("checked against MAX_HOSTS");
            let ns = NetNs::new(&format!("h{i}"));
            let port = Lan::port_name(i);
            let port_mac = format_mac(Lan::port_mac(octet));
            gw.ip_line(&format!(
                "link add {port} address {port_mac} type veth peer name eth0 netns {}",
                ns.name
            ));
            gw.ip_line(&format!("link set {port} master {br} up"));
            hosts.push(Host::configure(
                ns,
                "eth0",
                Lan::host_mac(octet),
                Ipv4Addr::new(10, 0, 0, octet),
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(octet)),
                None,
            ));
        }
        gw.wait_ipv6_ready(br, READY_TIMEOUT);
        for host in &hosts {
            host.ns.wait_ipv6_ready(host.ifname, READY_TIMEOUT);
        }
        Lan { gw, hosts }
    }

    /// The gateway namespace, holding `br0` and the ports `p<i>`.
    pub fn gw(&self) -> &NetNs {
        &self.gw
    }

    /// All hosts; `hosts()[0]` is `h1`.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `h<i>`, counting from 1 like the names.
    pub fn host(&self, i: usize) -> &Host {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "Lan::host({i}): hosts are h1..=h{}",
            self.hosts.len()
        );
        &self.hosts[i - 1]
    }

    /// Names of all namespaces, gateway first.
    pub fn netns_names(&self) -> Vec<String> {
        std::iter::once(self.gw.name.clone())
            .chain(self.hosts.iter().map(|h| h.ns.name.clone()))
            .collect()
    }
}
