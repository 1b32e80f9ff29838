//! ICMP echo probes: RTT min/avg/max/stddev and loss per target.
//!
//! Targets are the `--probe-target` addresses, or, when none is given, the
//! default gateway of each watched interface, looked up again every cycle
//! (so a gateway that appears later is picked up).
//!
//! One cycle sends `--probe-count` echo requests to every target, a round
//! every `--probe-spacing`, all targets at once over one non-blocking socket
//! per family, and waits at most `--probe-timeout` for each reply. Replies
//! are matched by source address and sequence number, and must echo the
//! cycle's random payload (on raw sockets also its identifier), so a late
//! reply from an earlier cycle or another process's ping is never counted.
//! Statistics are per cycle: the report describes the last cycle's probes.
//! RTTs are measured on the monotonic clock from just before `sendto` to
//! just after `recvfrom`, so they may include the collector thread's
//! scheduling delay but are never shorter than the real round trip.
//!
//! Sockets are opened each cycle (see [`icmp`] for the kinds); a family
//! without any usable socket is reported unavailable with the reason, and
//! the collector keeps running. A failed send (no route, unreachable
//! network) is a lost probe whose error is reported, never a failure.

pub mod icmp;
pub mod routes;

use std::{
    collections::HashMap,
    ffi::CString,
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr, SocketAddrV6},
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tracing::{debug, info, warn};

use self::icmp::{EchoSocket, Family, SocketKind};
mod history;
mod metrics;

pub use self::history::SERIES;
use super::{
    Avail, CollectorName, Context, Need, Reading, Sample, SeriesFamily, ViewSchema, registry::Cap,
    view_schema,
};
use crate::shutdown::Stop;

/// Which socket kind to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SocketChoice {
    /// Datagram if allowed, raw otherwise.
    Auto,
    /// ICMP datagram sockets only (net.ipv4.ping_group_range).
    Datagram,
    /// Raw sockets only (CAP_NET_RAW).
    Raw,
}

/// Options of the latency collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "latency-options")]
pub struct Options {
    /// How often the latency collector runs.
    #[arg(long, default_value = "5s", value_parser = crate::units::parse_interval, env = "NETMON_LATENCY_INTERVAL")]
    pub latency_interval: Duration,

    /// Address to probe (repeatable, or comma-separated): an IPv4 or IPv6
    /// literal, link-local IPv6 with its interface (fe80::1%eth0).
    /// Hostnames are not resolved. Default: the default gateway of each
    /// watched interface.
    #[arg(long = "probe-target", value_name = "ADDR", value_parser = parse_target, value_delimiter = ',', env = "NETMON_PROBE_TARGETS")]
    pub probe_targets: Vec<ProbeTarget>,

    /// Echo requests per target per cycle; the statistics cover one cycle.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100), env = "NETMON_PROBE_COUNT")]
    pub probe_count: u16,

    /// Time between two rounds of requests within a cycle.
    #[arg(long, default_value = "200ms", value_parser = parse_spacing, env = "NETMON_PROBE_SPACING")]
    pub probe_spacing: Duration,

    /// How long to wait for each reply; a later one counts as lost.
    #[arg(long, default_value = "1s", value_parser = parse_timeout, env = "NETMON_PROBE_TIMEOUT")]
    pub probe_timeout: Duration,

    /// ICMP socket kind: datagram needs the group in
    /// net.ipv4.ping_group_range, raw needs CAP_NET_RAW.
    #[arg(long, value_enum, default_value = "auto", env = "NETMON_PROBE_SOCKET")]
    pub probe_socket: SocketChoice,
}

fn parse_spacing(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d > Duration::from_secs(10) {
        return Err(format!("{s} is outside 0s..=10s"));
    }
    Ok(d)
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(60) {
        return Err(format!("{s} is outside 1ms..=60s"));
    }
    Ok(d)
}

/// A `--probe-target`: an address, and for link-local IPv6 the interface
/// it lives on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    pub addr: IpAddr,
    pub scope: Option<String>,
}

fn is_link_local_v6(addr: &IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// Parses `10.0.0.2`, `fd00::2` or `fe80::2%eth0`. Hostnames are refused:
/// resolving would make the collector depend on DNS, whose answer (and
/// delay) would become part of the measurement.
pub fn parse_target(s: &str) -> Result<ProbeTarget, String> {
    let (addr_text, scope) = match s.split_once('%') {
        Some((a, scope)) => (a, Some(scope)),
        None => (s, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        format!("`{s}` is not an IP address (hostnames are not resolved; give an IPv4 or IPv6 address, fe80::1%eth0 for link-local)")
    })?;
    match (is_link_local_v6(&addr), scope) {
        (true, None) => Err(format!(
            "`{s}` is link-local: name its interface, e.g. {addr}%eth0"
        )),
        (true, Some(scope)) if scope.is_empty() || scope.len() >= libc::IFNAMSIZ => {
            Err(format!("`{s}`: `{scope}` is not an interface name"))
        }
        (false, Some(_)) => Err(format!(
            "`{s}`: only link-local IPv6 addresses take a %interface"
        )),
        (_, scope) => Ok(ProbeTarget {
            addr,
            scope: scope.map(str::to_owned),
        }),
    }
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LatencyReport)]
pub struct Report {
    /// The socket kind each family used, or why it has none.
    pub sockets: Sockets,
    /// Where the targets came from: `configured` or `default gateways`.
    pub target_selection: &'static str,
    /// Requests per target in a cycle; the statistics cover one cycle.
    pub probes_per_cycle: u16,
    pub targets: Vec<TargetReport>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LatencySockets)]
pub struct Sockets {
    pub ipv4: Avail<SocketKind>,
    pub ipv6: Avail<SocketKind>,
}

/// One target's last cycle.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LatencyTarget)]
pub struct TargetReport {
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// The interface it is reached through, when known (gateways and
    /// link-local targets).
    pub interface: Option<String>,
    /// `configured`, or `default gateway of <iface>`.
    pub source: String,
    /// Requests attempted this cycle (failed sends included).
    pub sent: u32,
    /// Replies received within the timeout.
    pub received: u32,
    pub loss_percent: Avail<f64>,
    pub rtt: Avail<RttStats>,
    /// When the last reply came, in this cycle or an earlier one.
    pub last_reply: Option<String>,
    /// The last error of this cycle (a failed send, a missing interface).
    pub last_error: Option<String>,
}

/// Round-trip times of one cycle's replies, in seconds; `stddev` is the
/// population standard deviation (ping's `mdev`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RttStats {
    pub min_seconds: f64,
    pub avg_seconds: f64,
    pub max_seconds: f64,
    pub stddev_seconds: f64,
}

/// Statistics of `samples`; `None` when there are none.
pub fn rtt_stats(samples: &[Duration]) -> Option<RttStats> {
    if samples.is_empty() {
        return None;
    }
    let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    let n = secs.len() as f64;
    let avg = secs.iter().sum::<f64>() / n;
    let var = secs.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / n;
    Some(RttStats {
        min_seconds: secs.iter().copied().fold(f64::INFINITY, f64::min),
        avg_seconds: avg,
        max_seconds: secs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        stddev_seconds: var.sqrt(),
    })
}

/// Loss in percent of `sent`; `None` when nothing was sent.
pub fn loss_percent(sent: u32, received: u32) -> Option<f64> {
    (sent > 0).then(|| 100.0 * f64::from(sent.saturating_sub(received)) / f64::from(sent))
}

/// A target resolved for one cycle.
#[derive(Clone, Debug)]
struct Target {
    addr: IpAddr,
    /// IPv6 scope id (ifindex) for link-local addresses, else 0.
    scope_id: u32,
    interface: Option<String>,
    source: String,
    /// Why it cannot be probed this cycle.
    problem: Option<String>,
}

impl Target {
    fn dst(&self) -> SocketAddr {
        match self.addr {
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), 0),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, self.scope_id)),
        }
    }
}

/// What one target's probes came to in a cycle.
#[derive(Clone, Debug, Default)]
struct Outcome {
    sent: u32,
    rtts: Vec<Duration>,
    last_reply: Option<SystemTime>,
    last_error: Option<String>,
}

/// The latency collector.
pub struct Latency {
    opts: Options,
    /// Where `route` and `ipv6_route` are read.
    proc_net: PathBuf,
    /// Last reply time per target, across cycles.
    last_reply: HashMap<(IpAddr, u32), SystemTime>,
    /// The last message logged per problem, so a repeated problem is
    /// logged once until it changes.
    logged: HashMap<String, String>,
    /// The runner's stop signal, when it was handed one: a cycle waiting for
    /// replies ends early once it is set, so shutdown does not wait out the
    /// probe timeout.
    stop: Option<Stop>,
}

impl Latency {
    pub fn new(opts: &Options) -> Self {
        Latency {
            opts: opts.clone(),
            proc_net: PathBuf::from("/proc/net"),
            last_reply: HashMap::new(),
            logged: HashMap::new(),
            stop: None,
        }
    }

    /// Makes cycles end early (unanswered probes not counted) once `stop`
    /// is set.
    pub fn with_stop(mut self, stop: Stop) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Logs `message` under `key` when it differs from the last one; `None`
    /// marks the problem gone.
    fn note(&mut self, key: &str, message: Option<String>) {
        match message {
            Some(m) => {
                if self.logged.get(key) != Some(&m) {
                    warn!(problem = key, "{m}");
                    self.logged.insert(key.to_owned(), m);
                }
            }
            None => {
                if self.logged.remove(key).is_some() {
                    info!(problem = key, "Latency probe problem resolved.");
                }
            }
        }
    }

    /// This cycle's targets, deduplicated by address and scope.
    fn targets(&mut self, ctx: &Context) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        if self.opts.probe_targets.is_empty() {
            let watched: Vec<String> = ctx
                .traffic
                .get()
                .interfaces
                .iter()
                .map(|i| i.name.clone())
                .collect();
            let (routes, errors) = routes::default_routes(&self.proc_net);
            let message = (!errors.is_empty()).then(|| {
                let list: Vec<String> = errors.iter().map(|(p, e)| format!("{p}: {e}")).collect();
                format!(
                    "Cannot read default routes ({}); gateways of that family are not probed.",
                    list.join("; ")
                )
            });
            self.note("routes", message);
            for route in routes.into_iter().filter(|r| watched.contains(&r.iface)) {
                let scope = is_link_local_v6(&route.gateway).then(|| route.iface.clone());
                targets.push(resolve(
                    route.gateway,
                    scope.as_deref(),
                    Some(route.iface.clone()),
                    format!("default gateway of {}", route.iface),
                ));
            }
        } else {
            for t in &self.opts.probe_targets {
                targets.push(resolve(
                    t.addr,
                    t.scope.as_deref(),
                    t.scope.clone(),
                    "configured".to_owned(),
                ));
            }
        }
        let mut seen = Vec::new();
        targets.retain(|t| {
            let key = (t.addr, t.scope_id, t.interface.clone());
            let fresh = !seen.contains(&key);
            seen.push(key);
            fresh
        });
        targets
    }
}

/// A target with its scope id looked up.
fn resolve(addr: IpAddr, scope: Option<&str>, interface: Option<String>, source: String) -> Target {
    let mut problem = None;
    let mut scope_id = 0;
    if let Some(name) = scope {
        match ifindex(name) {
            Some(i) => scope_id = i,
            None => problem = Some(format!("no interface named {name}")),
        }
    }
    Target {
        addr,
        scope_id,
        interface,
        source,
        problem,
    }
}

fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Opens the socket `choice` asks for; the error says what each kind needs.
fn open_socket(family: Family, choice: SocketChoice) -> Result<EchoSocket, String> {
    let one = |kind: SocketKind| {
        EchoSocket::open(family, kind).map_err(|e| {
            let hint = if e.denied() {
                format!(" ({})", kind.requirement())
            } else {
                String::new()
            };
            (e.denied(), format!("{e}{hint}"))
        })
    };
    match choice {
        SocketChoice::Datagram => one(SocketKind::Datagram).map_err(|e| e.1),
        SocketChoice::Raw => one(SocketKind::Raw).map_err(|e| e.1),
        SocketChoice::Auto => match one(SocketKind::Datagram) {
            Ok(s) => Ok(s),
            Err((true, datagram)) => one(SocketKind::Raw)
                .map_err(|(_, raw)| format!("no ICMP socket allowed: {datagram}; {raw}")),
            Err((false, datagram)) => Err(datagram),
        },
    }
}

/// A cycle's random tag: the payload every request carries, the sequence
/// number of its first round and the identifier on raw sockets.
struct Tag {
    payload: [u8; 16],
    seq_base: u16,
    ident: u16,
}

impl Tag {
    fn new() -> Tag {
        let mut bytes = [0u8; 20];
        if getrandom::fill(&mut bytes).is_err() {
            // Uniqueness, not secrecy, is what matters here.
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            bytes[..16].copy_from_slice(&nanos.to_le_bytes());
            bytes[16..].copy_from_slice(&std::process::id().to_le_bytes());
        }
        let mut payload = [0u8; 16];
        payload.copy_from_slice(&bytes[..16]);
        Tag {
            payload,
            seq_base: u16::from_le_bytes([bytes[16], bytes[17]]),
            ident: u16::from_le_bytes([bytes[18], bytes[19]]),
        }
    }
}

/// The longest a cycle waits without checking whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Sends `count` rounds of requests to every target over `sockets` (one per
/// family, `None` when the family has none) and collects the replies. Ends
/// early, with what it has, once `stopped()` holds.
#[allow(
    clippy::too_many_arguments,
    reason = "one cycle's parameters, used once"
)]
fn run_probes(
    sockets: &[(Family, Option<&EchoSocket>)],
    targets: &[Target],
    count: u16,
    spacing: Duration,
    timeout: Duration,
    stopped: &dyn Fn() -> bool,
    logged: &mut dyn FnMut(&str, Option<String>),
) -> Vec<Outcome> {
    let tag = Tag::new();
    let mut out = vec![Outcome::default(); targets.len()];
    // When each request left; `None` until sent, or when its send failed.
    let mut sent_at = vec![vec![None::<Instant>; usize::from(count)]; targets.len()];
    let mut answered = vec![vec![false; usize::from(count)]; targets.len()];
    let socket_of = |family: Family| {
        sockets
            .iter()
            .find(|(f, _)| *f == family)
            .and_then(|(_, s)| *s)
    };
    // Sockets polled; one that fails to receive is dropped for the cycle.
    let mut live: Vec<&EchoSocket> = sockets.iter().filter_map(|(_, s)| *s).collect();
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let start = Instant::now();
    let end = start + spacing * u32::from(count.saturating_sub(1)) + timeout;
    let mut round: u16 = 0;
    loop {
        let now = Instant::now();
        while round < count && now >= start + spacing * u32::from(round) {
            let seq = tag.seq_base.wrapping_add(round);
            for (t, target) in targets.iter().enumerate() {
                if target.problem.is_some() {
                    continue;
                }
                let Some(socket) = socket_of(Family::of(&target.addr)) else {
                    continue;
                };
                let packet = icmp::echo_request(socket.family, tag.ident, seq, &tag.payload);
                out[t].sent += 1;
                // Taken before the send: a thread preempted around sendto
                // then measures a longer RTT, never a shorter one.
                let at = Instant::now();
                match socket.send(target.dst(), &packet) {
                    Ok(()) => sent_at[t][usize::from(round)] = Some(at),
                    Err(e) => out[t].last_error = Some(format!("sending: {e}")),
                }
            }
            round += 1;
        }
        let outstanding = sent_at
            .iter()
            .zip(&answered)
            .any(|(s, a)| s.iter().zip(a).any(|(s, a)| s.is_some() && !a));
        if (round == count && !outstanding) || now >= end || live.is_empty() || stopped() {
            break;
        }
        let wake = if round < count {
            (start + spacing * u32::from(round)).min(end)
        } else {
            end
        }
        .min(now + STOP_CHECK);
        let ready = match icmp::wait_readable(&live, wake.saturating_duration_since(now)) {
            Ok(ready) => ready,
            Err(e) => {
                logged(
                    "poll",
                    Some(format!("Waiting for ICMP replies failed: {e}")),
                );
                break;
            }
        };
        let mut failed = Vec::new();
        for i in ready {
            let socket = live[i];
            loop {
                let (from, len) = match socket.try_recv(&mut buf) {
                    Ok(Some(got)) => got,
                    Ok(None) => break,
                    Err(e) => {
                        logged(
                            "recv",
                            Some(format!(
                                "Receiving ICMP replies on the {} socket failed: {e}",
                                socket.family.name()
                            )),
                        );
                        failed.push(i);
                        break;
                    }
                };
                let received = Instant::now();
                // SAFETY: recv_from initialised the first `len` bytes.
                let packet: &[u8] =
                    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), len.min(buf.len())) };
                let Ok(reply) = icmp::parse_reply(socket.family, socket.kind, packet) else {
                    continue;
                };
                if reply.payload != tag.payload
                    || (socket.kind == SocketKind::Raw && reply.ident != tag.ident)
                {
                    continue;
                }
                let r = usize::from(reply.seq.wrapping_sub(tag.seq_base));
                let Some(t) = targets.iter().position(|t| t.addr == from) else {
                    continue;
                };
                let Some(Some(sent)) = sent_at[t].get(r).copied() else {
                    continue;
                };
                let rtt = received.saturating_duration_since(sent);
                if answered[t][r] || rtt > timeout {
                    continue;
                }
                answered[t][r] = true;
                out[t].rtts.push(rtt);
                out[t].last_reply = Some(SystemTime::now());
            }
        }
        failed.sort_unstable();
        for i in failed.into_iter().rev() {
            live.remove(i);
        }
    }
    out
}

impl super::Collector for Latency {
    const NAME: CollectorName = CollectorName::Latency;
    type Report = Report;
    type Options = Options;
    type History = ();
    const NEEDS: &'static [Need] = &[Need {
        cap: Cap::NetRaw,
        what: "raw ICMP",
        without: "raw ICMP (ping sockets still work where net.ipv4.ping_group_range allows)",
    }];
    const SERIES: &'static [SeriesFamily] = SERIES;
    const VIEW: Option<ViewSchema> = Some(view_schema::<Report>);

    fn new(opts: &Options, stop: &Stop) -> Self {
        Latency::new(opts).with_stop(stop.clone())
    }

    fn interval(opts: &Options) -> Duration {
        opts.latency_interval
    }

    fn metrics(report: &Report, out: &mut Vec<crate::exposition::Family>) {
        metrics::families(report, out);
    }

    fn history(_: &mut (), r: &Reading<Report>, _: Option<Duration>, out: &mut Vec<Sample>) {
        history::samples(r, out);
    }

    fn collect(&mut self, ctx: &Context) -> Report {
        let targets = self.targets(ctx);
        let mut opened = Vec::new();
        for family in [Family::V4, Family::V6] {
            let socket = open_socket(family, self.opts.probe_socket);
            let key = format!("socket-{}", family.name());
            self.note(&key, socket.as_ref().err().cloned());
            opened.push((family, socket));
        }
        for t in &targets {
            let key = format!("target-{}-{}", t.addr, t.scope_id);
            self.note(
                &key,
                t.problem
                    .as_ref()
                    .map(|p| format!("Cannot probe {}: {p}.", t.addr)),
            );
        }
        let sockets: Vec<(Family, Option<&EchoSocket>)> =
            opened.iter().map(|(f, s)| (*f, s.as_ref().ok())).collect();
        let mut notes = Vec::new();
        let outcomes = run_probes(
            &sockets,
            &targets,
            self.opts.probe_count,
            self.opts.probe_spacing,
            self.opts.probe_timeout,
            &|| self.stop.as_ref().is_some_and(Stop::stopped),
            &mut |key, message| notes.push((key.to_owned(), message)),
        );
        for (key, message) in notes {
            self.note(&key, message);
        }
        let avail = |family: Family| -> Avail<SocketKind> {
            match opened.iter().find(|(f, _)| *f == family) {
                Some((_, Ok(s))) => Avail::Value(s.kind),
                Some((_, Err(e))) => Avail::unavailable(e.clone()),
                None => Avail::unavailable("not opened"),
            }
        };
        let mut reports = Vec::new();
        for (target, outcome) in targets.iter().zip(outcomes) {
            let key = (target.addr, target.scope_id);
            if let Some(t) = outcome.last_reply {
                self.last_reply.insert(key, t);
            }
            let received = u32::try_from(outcome.rtts.len()).unwrap_or(u32::MAX);
            let socket = avail(Family::of(&target.addr));
            let why_none = || match (&target.problem, &socket) {
                (Some(p), _) => p.clone(),
                (None, Avail::Unavailable { unavailable }) => unavailable.clone(),
                (None, Avail::Value(_)) if outcome.sent == 0 => "no probe sent".to_owned(),
                (None, Avail::Value(_)) => "no reply".to_owned(),
            };
            reports.push(TargetReport {
                address: target.addr,
                interface: target.interface.clone(),
                source: target.source.clone(),
                sent: outcome.sent,
                received,
                loss_percent: loss_percent(outcome.sent, received)
                    .map_or_else(|| Avail::unavailable(why_none()), Avail::Value),
                rtt: rtt_stats(&outcome.rtts)
                    .map_or_else(|| Avail::unavailable(why_none()), Avail::Value),
                last_reply: self.last_reply.get(&key).map(|t| crate::units::time(*t)),
                last_error: outcome.last_error.or_else(|| target.problem.clone()),
            });
        }
        // Forget targets that are gone, so the map stays bounded.
        self.last_reply
            .retain(|k, _| targets.iter().any(|t| (t.addr, t.scope_id) == *k));
        debug!(targets = reports.len(), "Probed latency targets.");
        Report {
            sockets: Sockets {
                ipv4: avail(Family::V4),
                ipv6: avail(Family::V6),
            },
            target_selection: if self.opts.probe_targets.is_empty() {
                "default gateways"
            } else {
                "configured"
            },
            probes_per_cycle: self.opts.probe_count,
            targets: reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_on_known_samples() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(rtt_stats(&[]), None);
        // 2, 4, 4, 4, 5, 5, 7, 9 ms: mean 5, population stddev 2.
        let s = rtt_stats(&ms(&[2, 4, 4, 4, 5, 5, 7, 9])).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.min_seconds, 0.002), "{s:?}");
        assert!(close(s.avg_seconds, 0.005), "{s:?}");
        assert!(close(s.max_seconds, 0.009), "{s:?}");
        assert!(close(s.stddev_seconds, 0.002), "{s:?}");
        let one = rtt_stats(&ms(&[3])).unwrap();
        assert_eq!(one.stddev_seconds, 0.0);
        assert!(close(one.min_seconds, one.max_seconds));
    }

    #[test]
    fn loss_is_unavailable_without_probes() {
        assert_eq!(loss_percent(0, 0), None);
        assert_eq!(loss_percent(4, 4), Some(0.0));
        assert_eq!(loss_percent(4, 1), Some(75.0));
        assert_eq!(loss_percent(5, 0), Some(100.0));
    }

    #[test]
    fn targets_parse_literals_only() {
        assert_eq!(
            parse_target("10.0.0.2"),
            Ok(ProbeTarget {
                addr: "10.0.0.2".parse().unwrap(),
                scope: None
            })
        );
        assert_eq!(
            parse_target("fd00::2").unwrap().addr,
            "fd00::2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            parse_target("fe80::1%eth0").unwrap().scope.as_deref(),
            Some("eth0")
        );
        let err = parse_target("gateway.lan").unwrap_err();
        assert!(err.contains("hostnames are not resolved"), "{err}");
        let err = parse_target("fe80::1").unwrap_err();
        assert!(err.contains("link-local"), "{err}");
        assert!(parse_target("10.0.0.2%eth0").is_err());
        assert!(parse_target("fe80::1%").is_err());
        assert!(parse_target("fe80::1%averyveryverylongname").is_err());
        assert!(parse_target("").is_err());
    }

    /// The collector on real loopback sockets in the test's own namespace:
    /// 127.0.0.1 answers, so the cycle must report replies; this exercises
    /// the whole send/poll/match path without privileges beyond what the
    /// test process has (root, or a group inside ping_group_range).
    #[test]
    fn probes_loopback() {
        if crate::test_root::skip_privileged() {
            return;
        }
        let socket = open_socket(Family::V4, SocketChoice::Auto).unwrap_or_else(|e| panic!("{e}"));
        let target = resolve(
            "127.0.0.1".parse().unwrap(),
            None,
            None,
            "configured".into(),
        );
        let out = run_probes(
            &[(Family::V4, Some(&socket))],
            std::slice::from_ref(&target),
            3,
            Duration::from_millis(10),
            Duration::from_secs(2),
            &|| false,
            &mut |k, m| panic!("{k}: {m:?}"),
        );
        assert_eq!(out[0].sent, 3);
        assert_eq!(out[0].rtts.len(), 3, "{out:?}");
        assert!(out[0].rtts.iter().all(|r| *r > Duration::ZERO));
    }

    /// A stop request ends the cycle after the round in progress, without
    /// waiting for replies or sending the later rounds.
    #[test]
    fn a_stop_ends_the_cycle_early() {
        if crate::test_root::skip_privileged() {
            return;
        }
        let socket = open_socket(Family::V4, SocketChoice::Auto).unwrap_or_else(|e| panic!("{e}"));
        let target = resolve(
            "127.0.0.1".parse().unwrap(),
            None,
            None,
            "configured".into(),
        );
        let out = run_probes(
            &[(Family::V4, Some(&socket))],
            std::slice::from_ref(&target),
            5,
            Duration::from_secs(10),
            Duration::from_secs(60),
            &|| true,
            &mut |k, m| panic!("{k}: {m:?}"),
        );
        assert_eq!(out[0].sent, 1, "{out:?}");
        assert!(out[0].rtts.is_empty(), "{out:?}");
    }
}
