//! Devices on the watched networks, one inventory entry per (interface,
//! MAC), from four sources:
//! - passive: the kernel's IPv4/IPv6 neighbour tables ([`neigh`], netlink),
//!   and the MACs the eBPF counters saw sending (the traffic snapshot);
//! - active, every `--discovery-sweep-interval` (first at start): an ARP
//!   sweep of each watched interface's IPv4 subnets ([`arp`], rate-limited,
//!   subnets larger than `--discovery-sweep-max-prefix` skipped) and an
//!   IPv6 all-nodes echo ([`ndp`]) whose answers fill the neighbour table.
//!
//! Each device gets its vendor (IEEE registry, [`super::vendor`]), its
//! hostname ([`super::names`]) and a status from when it was last seen
//! ([`inventory`]). The host's own interface MACs are not devices: they are
//! left out of the inventory (the devices API marks them `self`).
//!
//! Partial failure is normal: without CAP_NET_RAW the sweep is reported
//! unavailable and passive discovery goes on; a neighbour dump that fails
//! is reported unavailable for that cycle. Each problem is logged once
//! until it changes.

pub mod arp;
pub mod claims;
pub mod inventory;
pub mod listen;
pub mod ndp;
pub mod neigh;

use std::{
    collections::{HashMap, HashSet},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant, SystemTime},
};

use network_interface::{Addr, NetworkInterface, NetworkInterfaceConfig as _};
use serde::Serialize;
use tracing::{debug, info, warn};

use self::{
    arp::SweepStats,
    claims::Claims,
    inventory::{Address, Inventory, Limits, Observation, SeenBy, Status},
    ndp::ProbeStats,
};
mod metrics;

use super::{
    Avail, CollectorName, Context, Need, Stop,
    names::{self, Hostnames},
    registry::Cap,
    vendor,
};
use crate::ifaces::{format_mac, parse_mac};

/// Options of the discovery collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "discovery-options")]
pub struct Options {
    /// How often the discovery collector reads the neighbour tables and the
    /// traffic core's devices.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_interval, env = "NETMON_DISCOVERY_INTERVAL")]
    pub discovery_interval: Duration,

    /// How often to ARP-sweep the watched IPv4 subnets and send the IPv6
    /// all-nodes probe (first at start); 0 turns both off.
    #[arg(long, default_value = "5m", value_parser = crate::units::parse_duration, env = "NETMON_DISCOVERY_SWEEP_INTERVAL")]
    pub discovery_sweep_interval: Duration,

    /// ARP requests sent per second during a sweep.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000), env = "NETMON_DISCOVERY_SWEEP_RATE")]
    pub discovery_sweep_rate: u32,

    /// Largest subnet swept, as a prefix length: subnets shorter than this
    /// (bigger) are skipped with a log line.
    #[arg(long, default_value_t = 22, value_parser = clap::value_parser!(u8).range(16..=32), env = "NETMON_DISCOVERY_SWEEP_MAX_PREFIX")]
    pub discovery_sweep_max_prefix: u8,

    /// How long to keep listening for ARP replies after the last request.
    #[arg(long, default_value = "1s", value_parser = parse_wait, env = "NETMON_DISCOVERY_SWEEP_WAIT")]
    pub discovery_sweep_wait: Duration,

    /// A device unseen for this long is `idle`.
    #[arg(long, default_value = "5m", value_parser = crate::units::parse_duration, env = "NETMON_DISCOVERY_IDLE_AFTER")]
    pub discovery_idle_after: Duration,

    /// A device unseen for this long is `gone` (at least the idle time).
    #[arg(long, default_value = "1h", value_parser = crate::units::parse_duration, env = "NETMON_DISCOVERY_GONE_AFTER")]
    pub discovery_gone_after: Duration,

    /// A device unseen for this long is dropped from the inventory (at
    /// least the gone time).
    #[arg(long, default_value = "24h", value_parser = crate::units::parse_duration, env = "NETMON_DISCOVERY_FORGET_AFTER")]
    pub discovery_forget_after: Duration,

    /// Most devices the inventory holds; when full, the least recently
    /// seen idle or gone device makes room, and new devices are refused
    /// while every one is active.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_DISCOVERY_MAX_DEVICES")]
    pub discovery_max_devices: u32,

    /// Most IPv4 addresses whose claimants (the MACs using each) are kept
    /// for the security collector's ARP checks; when full, the address
    /// claimed least recently makes room (counted).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_DISCOVERY_MAX_CLAIMS")]
    pub discovery_max_claims: u32,

    /// Where device hostnames come from: DHCP leases, reverse DNS.
    #[command(flatten)]
    pub names: names::Options,
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d > Duration::from_secs(10) {
        return Err(format!("{s} is longer than 10s"));
    }
    Ok(d)
}

/// Errors of the discovery sources.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// socket(2) refused a packet or raw socket.
    #[error(
        "missing capability CAP_NET_RAW: needed for the ARP sweep and the raw ICMPv6 probe \
         (turn them off with --discovery-sweep-interval 0, or the collector with --disable discovery)"
    )]
    NoRawSockets,
    /// A system call failed; the text says which step.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] io::Error),
    /// The kernel answered a netlink request with an error, or garbage.
    #[error("netlink: {0}")]
    Netlink(String),
}

use super::{ser_secs, ser_time};

/// One device, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    pub interface: String,
    pub ifindex: u32,
    pub mac: String,
    #[serde(skip)]
    pub mac_bytes: [u8; 6],
    /// The IEEE registrant of the MAC's prefix; null when unregistered or
    /// locally administered.
    pub vendor: Option<&'static str>,
    pub locally_administered: bool,
    pub hostname: Option<String>,
    /// Addresses with when each was last seen, most recent first.
    pub addresses: Vec<Address>,
    #[serde(serialize_with = "ser_time")]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "ser_time")]
    pub last_seen: SystemTime,
    pub status: Status,
    pub sources: Vec<SeenBy>,
}

/// The inventory's size and churn.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct InventoryStats {
    pub devices: usize,
    pub active: usize,
    pub idle: usize,
    pub gone: usize,
    pub max_devices: usize,
    /// Devices dropped to make room, since start.
    pub evicted_total: u64,
    /// New devices refused because every slot held an active one.
    pub refused_total: u64,
    #[serde(serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub idle_after_seconds: Duration,
    #[serde(serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub gone_after_seconds: Duration,
}

/// The last neighbour-table read.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct NeighbourStats {
    /// Entries in both tables, any interface.
    pub entries: u64,
    /// Usable entries on the watched interfaces.
    pub used: u64,
    pub unresolved: u64,
    pub unusable: u64,
    pub malformed: u64,
    /// Entries beyond the per-dump cap.
    pub dropped: u64,
}

/// A subnet the sweep left out.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SweepSkipped)]
pub struct Skipped {
    pub interface: String,
    pub subnet: String,
    pub reason: String,
}

/// The last sweep of every watched subnet.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SweepReport {
    #[serde(serialize_with = "ser_secs")]
    #[schema(value_type = f64)]
    pub interval_seconds: Duration,
    pub rate: u32,
    pub max_prefix: u8,
    pub subnets: Vec<SweepStats>,
    pub skipped: Vec<Skipped>,
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub devices: Vec<DeviceReport>,
    pub inventory: InventoryStats,
    pub neighbours: Avail<NeighbourStats>,
    pub sweep: Avail<SweepReport>,
    pub ipv6_probe: Avail<Vec<ProbeStats>>,
    /// The watched interfaces' own MACs (not devices).
    pub own_macs: Vec<OwnMac>,
    /// Lease files read and the reverse-DNS cache.
    pub hostnames: names::Stats,
    /// IPv4 addresses claimed by more than one MAC (for the security
    /// collector; not in the JSON).
    #[serde(skip)]
    pub contested: Vec<claims::Contested>,
    #[serde(skip)]
    pub claims: claims::ClaimStats,
    /// Passive ARP this cycle (for the security collector).
    #[serde(skip)]
    pub passive: Avail<listen::Passive>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            devices: Vec::new(),
            inventory: InventoryStats::default(),
            neighbours: Avail::unavailable("not read yet"),
            sweep: Avail::unavailable("not run yet"),
            ipv6_probe: Avail::unavailable("not run yet"),
            own_macs: Vec::new(),
            hostnames: names::Stats::default(),
            contested: Vec::new(),
            claims: claims::ClaimStats::default(),
            passive: Avail::unavailable("not run yet"),
        }
    }
}

/// A watched interface's own address.
#[derive(Clone, Debug, Serialize)]
pub struct OwnMac {
    pub ifindex: u32,
    pub mac: String,
}

/// A watched interface and its addresses.
#[derive(Clone, Debug)]
struct Local {
    ifindex: u32,
    name: String,
    mac: Option<[u8; 6]>,
    v4: Vec<(Ipv4Addr, u8)>,
    v6: Vec<Ipv6Addr>,
}

/// Logs a problem once, until its text changes or it clears.
#[derive(Debug, Default)]
struct Once(HashMap<String, String>);

impl Once {
    /// True when `message` is new for `key` (the caller logs it).
    fn first(&mut self, key: &str, message: &str) -> bool {
        if self.0.get(key).is_some_and(|m| m == message) {
            return false;
        }
        self.0.insert(key.to_owned(), message.to_owned());
        true
    }

    fn clear(&mut self, key: &str) {
        self.0.remove(key);
    }
}

pub struct Discovery {
    opts: Options,
    inventory: Inventory,
    hostnames: Hostnames,
    next_sweep: Option<Instant>,
    sweep: Avail<SweepReport>,
    probes: Avail<Vec<ProbeStats>>,
    /// Transmit packet counts of the traffic core's devices at the last
    /// cycle: a device is seen by traffic only when it *sent* frames.
    tx_packets: HashMap<(u32, [u8; 6]), u64>,
    /// Who claims each IPv4 address (see [`claims`]).
    claims: Claims,
    listener: listen::Listener,
    once: Once,
}

impl Discovery {
    pub fn new(opts: &Options) -> Self {
        let idle_after = opts.discovery_idle_after;
        let gone_after = opts.discovery_gone_after.max(idle_after);
        let forget_after = opts.discovery_forget_after.max(gone_after);
        if gone_after != opts.discovery_gone_after || forget_after != opts.discovery_forget_after {
            warn!(
                ?idle_after,
                ?gone_after,
                ?forget_after,
                "Discovery thresholds out of order; raised to idle <= gone <= forget."
            );
        }
        let off = opts.discovery_sweep_interval.is_zero();
        let disabled = "turned off (--discovery-sweep-interval 0)";
        Discovery {
            opts: opts.clone(),
            inventory: Inventory::new(Limits {
                idle_after,
                gone_after,
                forget_after,
                max_devices: opts.discovery_max_devices as usize,
            }),
            hostnames: Hostnames::new(&opts.names),
            next_sweep: (!off).then(Instant::now),
            sweep: Avail::unavailable(if off { disabled } else { "not run yet" }),
            probes: Avail::unavailable(if off { disabled } else { "not run yet" }),
            tx_packets: HashMap::new(),
            claims: Claims::new(opts.discovery_max_claims as usize, forget_after),
            listener: listen::Listener::default(),
            once: Once::default(),
        }
    }

    /// The watched interfaces, their MACs and addresses, and every MAC of
    /// this host (watched or not).
    fn locals(&mut self, watched: &[(u32, String)]) -> (Vec<Local>, HashSet<[u8; 6]>) {
        let all = match NetworkInterface::show() {
            Ok(all) => {
                self.once.clear("interfaces");
                all
            }
            Err(e) => {
                let msg = e.to_string();
                if self.once.first("interfaces", &msg) {
                    warn!(
                        error = msg,
                        "Cannot list interface addresses; no sweep this time."
                    );
                }
                Vec::new()
            }
        };
        let own: HashSet<[u8; 6]> = all
            .iter()
            .filter_map(|i| i.mac_addr.as_deref().and_then(parse_mac))
            .collect();
        let mut locals: Vec<Local> = watched
            .iter()
            .map(|(ifindex, name)| Local {
                ifindex: *ifindex,
                name: name.clone(),
                mac: None,
                v4: Vec::new(),
                v6: Vec::new(),
            })
            .collect();
        for iface in &all {
            let Some(l) = locals.iter_mut().find(|l| l.ifindex == iface.index) else {
                continue;
            };
            if l.mac.is_none() {
                l.mac = iface.mac_addr.as_deref().and_then(parse_mac);
            }
            for a in &iface.addr {
                match a {
                    Addr::V4(a) => {
                        let prefix = a.netmask.map_or(32, |m| m.to_bits().count_ones() as u8);
                        if !l.v4.contains(&(a.ip, prefix)) {
                            l.v4.push((a.ip, prefix));
                        }
                    }
                    Addr::V6(a) => {
                        if !l.v6.contains(&a.ip) && !a.ip.is_multicast() && !a.ip.is_loopback() {
                            l.v6.push(a.ip);
                        }
                    }
                }
            }
        }
        (locals, own)
    }

    /// The ARP sweep and the IPv6 probe of every watched interface.
    fn probe_all(&mut self, locals: &[Local], observe: &mut Vec<Observation>, stop: &Stop) {
        let o = &self.opts;
        let mut subnets = Vec::new();
        let mut skipped = Vec::new();
        let mut no_raw = None;
        let mut seen_nets = HashSet::new();
        for l in locals {
            let Some(mac) = l.mac else { continue };
            for &(ip, prefix) in &l.v4 {
                if ip.is_loopback() || ip.is_link_local() {
                    continue;
                }
                let subnet = arp::subnet_name(ip, prefix);
                if !seen_nets.insert((l.ifindex, subnet.clone())) {
                    continue;
                }
                if prefix < o.discovery_sweep_max_prefix {
                    let reason = format!(
                        "larger than /{} (--discovery-sweep-max-prefix)",
                        o.discovery_sweep_max_prefix
                    );
                    if self
                        .once
                        .first(&format!("skip {} {subnet}", l.name), &reason)
                    {
                        info!(
                            iface = l.name,
                            subnet,
                            max_prefix = o.discovery_sweep_max_prefix,
                            "Not sweeping a subnet larger than --discovery-sweep-max-prefix."
                        );
                    }
                    skipped.push(Skipped {
                        interface: l.name.clone(),
                        subnet,
                        reason,
                    });
                    continue;
                }
                if no_raw.is_some() {
                    continue;
                }
                let target = arp::Target {
                    ifindex: l.ifindex,
                    interface: l.name.clone(),
                    mac,
                    ip,
                    prefix,
                };
                match arp::sweep(
                    &target,
                    o.discovery_sweep_rate,
                    o.discovery_sweep_wait,
                    stop,
                ) {
                    Ok((stats, found)) => {
                        debug!(iface = l.name, subnet, requests = stats.requests, replies = stats.replies,
                            wall = ?stats.wall, "Swept a subnet.");
                        self.once.clear(&format!("sweep {}", l.name));
                        observe.extend(found.into_iter().map(|f| Observation {
                            ifindex: l.ifindex,
                            mac: f.mac,
                            ip: Some(IpAddr::V4(f.ip)),
                            seen: f.at,
                            source: SeenBy::Arp,
                        }));
                        subnets.push(stats);
                    }
                    Err(DiscoveryError::NoRawSockets) => {
                        no_raw = Some(DiscoveryError::NoRawSockets)
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        if self.once.first(&format!("sweep {}", l.name), &msg) {
                            warn!(iface = l.name, subnet, error = msg, "ARP sweep failed.");
                        }
                        skipped.push(Skipped {
                            interface: l.name.clone(),
                            subnet,
                            reason: msg,
                        });
                    }
                }
            }
        }
        self.sweep = match no_raw {
            Some(e) => {
                let msg = e.to_string();
                if self.once.first("raw", &msg) {
                    warn!("{msg}; passive discovery continues.");
                }
                Avail::unavailable(msg)
            }
            None => {
                self.once.clear("raw");
                Avail::Value(SweepReport {
                    interval_seconds: o.discovery_sweep_interval,
                    rate: o.discovery_sweep_rate,
                    max_prefix: o.discovery_sweep_max_prefix,
                    subnets,
                    skipped,
                })
            }
        };

        let mut probes = Vec::new();
        let mut probe_err = None;
        for l in locals.iter().filter(|l| !l.v6.is_empty()) {
            match ndp::probe(l.ifindex, &l.name, &l.v6) {
                Ok(p) => probes.push(p),
                Err(e) => {
                    let msg = e.to_string();
                    if self.once.first(&format!("ndp {}", l.name), &msg) {
                        warn!(iface = l.name, error = msg, "IPv6 all-nodes probe failed.");
                    }
                    probe_err = Some(msg);
                }
            }
        }
        self.probes = match probe_err {
            Some(msg) if probes.is_empty() => Avail::unavailable(msg),
            _ => Avail::Value(probes),
        };
    }

    fn read_neighbours(
        &mut self,
        watched: &HashSet<u32>,
        own: &HashSet<[u8; 6]>,
        now: SystemTime,
        observe: &mut Vec<Observation>,
    ) -> Avail<NeighbourStats> {
        match neigh::dump() {
            Ok(d) => {
                self.once.clear("neigh");
                let mut used = 0;
                for n in &d.neighbours {
                    if !watched.contains(&n.ifindex)
                        || own.contains(&n.mac)
                        || n.mac[0] & 1 != 0
                        || n.ip.is_multicast()
                    {
                        continue;
                    }
                    used += 1;
                    if let IpAddr::V4(ip) = n.ip {
                        let confirmed = now.checked_sub(n.confirmed);
                        let seen = confirmed.unwrap_or(SystemTime::UNIX_EPOCH);
                        self.claims
                            .claim(n.ifindex, ip, n.mac, seen, SeenBy::Neighbour, now);
                    }
                    observe.push(Observation {
                        ifindex: n.ifindex,
                        mac: n.mac,
                        ip: Some(n.ip),
                        seen: now.checked_sub(n.age).unwrap_or(SystemTime::UNIX_EPOCH),
                        source: if n.ip.is_ipv4() {
                            SeenBy::Neighbour
                        } else {
                            SeenBy::Ndp
                        },
                    });
                }
                let problems = (d.malformed, d.dropped);
                if problems != (0, 0) && self.once.first("neigh-odd", &format!("{problems:?}")) {
                    warn!(
                        malformed = d.malformed,
                        dropped = d.dropped,
                        cap = neigh::MAX_DUMP_ENTRIES,
                        "Neighbour dump had malformed messages or more entries than kept."
                    );
                }
                Avail::Value(NeighbourStats {
                    entries: d.entries,
                    used,
                    unresolved: d.unresolved,
                    unusable: d.unusable,
                    malformed: d.malformed,
                    dropped: d.dropped,
                })
            }
            Err(e) => {
                let msg = e.to_string();
                if self.once.first("neigh", &msg) {
                    warn!(
                        error = msg,
                        "Cannot read the neighbour tables; passive discovery from traffic continues."
                    );
                }
                Avail::unavailable(msg)
            }
        }
    }
}

impl super::Collector for Discovery {
    const NAME: CollectorName = CollectorName::Discovery;
    type Report = Report;
    type Options = Options;
    type History = ();
    const NEEDS: &'static [Need] = &[
        Need {
            cap: Cap::NetRaw,
            what: "ARP sweeps and passive ARP listening",
            without: "ARP sweeps and passive ARP listening",
        },
        Need {
            cap: Cap::DacReadSearch,
            what: "reading DHCP lease files whatever their owner",
            without: "the lease files its user cannot read",
        },
    ];

    fn new(opts: &Options, _: &Stop) -> Self {
        Discovery::new(opts)
    }

    fn interval(opts: &Options) -> Duration {
        opts.discovery_interval
    }

    fn metrics(report: &Report, out: &mut Vec<crate::exposition::Family>) {
        metrics::families(report, out);
    }

    fn collect(&mut self, ctx: &Context) -> Report {
        // Lease files changed since the last cycle are read again first.
        self.hostnames.refresh();
        let snap = ctx.traffic.get();
        let watched_list: Vec<(u32, String)> = snap
            .interfaces
            .iter()
            .map(|i| (i.ifindex, i.name.clone()))
            .collect();
        let watched: HashSet<u32> = watched_list.iter().map(|w| w.0).collect();
        let (locals, own) = self.locals(&watched_list);
        let mut observe = Vec::new();

        // Not before the traffic core has published its watched interfaces
        // (collectors start before its first drain): a sweep of nothing
        // would put the first real one off by a whole sweep interval.
        if let Some(due) = self.next_sweep
            && Instant::now() >= due
            && !locals.is_empty()
        {
            self.probe_all(&locals, &mut observe, &ctx.stop);
            self.next_sweep = Some(Instant::now() + self.opts.discovery_sweep_interval);
        }

        let now = SystemTime::now();
        self.claims.next_cycle();
        let neighbours = self.read_neighbours(&watched, &own, now, &mut observe);
        let ifindexes: Vec<u32> = locals.iter().map(|l| l.ifindex).collect();
        let max = self.opts.discovery_max_claims as usize;
        let name = |i| snap.iface_name(i);
        let passive = match self
            .listener
            .cycle(&ifindexes, &own, &mut self.claims, max, name, now)
        {
            Ok(p) => {
                self.once.clear("listen");
                Avail::Value(p)
            }
            Err(e) => {
                let msg = match e {
                    DiscoveryError::NoRawSockets => "no CAP_NET_RAW: not listening to ARP".into(),
                    e => e.to_string(),
                };
                if self.once.first("listen", &msg) {
                    warn!(
                        error = msg,
                        "Passive ARP listening is off; the sweep and the neighbour table go on."
                    );
                }
                Avail::unavailable(msg)
            }
        };

        let mut tx_packets = HashMap::with_capacity(snap.devices.len());
        for d in &snap.devices {
            if !watched.contains(&d.ifindex)
                || own.contains(&d.mac)
                || d.mac[0] & 1 != 0
                || d.mac == [0; 6]
            {
                continue;
            }
            let sent = d.tx.total.packets;
            tx_packets.insert((d.ifindex, d.mac), sent);
            if sent
                <= self
                    .tx_packets
                    .get(&(d.ifindex, d.mac))
                    .copied()
                    .unwrap_or(0)
            {
                continue;
            }
            let mut ips = d.ips.iter();
            observe.push(Observation {
                ifindex: d.ifindex,
                mac: d.mac,
                ip: ips.next().copied(),
                seen: d.last_seen,
                source: SeenBy::Traffic,
            });
            // Older addresses: only their existence is known.
            observe.extend(ips.map(|ip| Observation {
                ifindex: d.ifindex,
                mac: d.mac,
                ip: Some(*ip),
                seen: d.first_seen,
                source: SeenBy::Traffic,
            }));
        }
        self.tx_packets = tx_packets;

        for o in observe.iter().filter(|o| claims::is_claim(&locals, o)) {
            if let Some(IpAddr::V4(ip)) = o.ip {
                self.claims
                    .claim(o.ifindex, ip, o.mac, o.seen, o.source, now);
            }
        }
        self.claims.expire(now);
        for o in observe {
            self.inventory.observe(o, now);
        }
        self.inventory.expire(now);

        let limits = *self.inventory.limits();
        let mut stats = InventoryStats {
            devices: self.inventory.len(),
            max_devices: limits.max_devices,
            evicted_total: self.inventory.evicted_total,
            refused_total: self.inventory.refused_total,
            idle_after_seconds: limits.idle_after,
            gone_after_seconds: limits.gone_after,
            ..InventoryStats::default()
        };
        let mut devices: Vec<DeviceReport> = Vec::with_capacity(self.inventory.len());
        for d in self.inventory.devices() {
            let status = limits.status(now, d.last_seen);
            match status {
                Status::Active => stats.active += 1,
                Status::Idle => stats.idle += 1,
                Status::Gone => stats.gone += 1,
            }
            let ip = d
                .addresses
                .iter()
                .find(|a| a.ip.is_ipv4())
                .or(d.addresses.first())
                .map(|a| a.ip);
            devices.push(DeviceReport {
                interface: snap.iface_name(d.ifindex),
                ifindex: d.ifindex,
                mac: format_mac(d.mac),
                mac_bytes: d.mac,
                vendor: vendor::vendor(d.mac),
                locally_administered: vendor::locally_administered(d.mac),
                hostname: self.hostnames.lookup(d.mac, ip),
                addresses: d.addresses.clone(),
                first_seen: d.first_seen,
                last_seen: d.last_seen,
                status,
                sources: d.sources.iter().copied().collect(),
            });
        }
        devices.sort_by_key(|d| (d.ifindex, d.mac_bytes));
        let own_macs = locals
            .iter()
            .filter_map(|l| {
                Some(OwnMac {
                    ifindex: l.ifindex,
                    mac: format_mac(l.mac?),
                })
            })
            .collect();
        Report {
            devices,
            inventory: stats,
            neighbours,
            sweep: self.sweep.clone(),
            ipv6_probe: self.probes.clone(),
            own_macs,
            hostnames: self.hostnames.stats(),
            contested: self.claims.contested(|i| snap.iface_name(i)),
            claims: self.claims.stats(),
            passive,
        }
    }
}
