//! The containers collector: Docker's or Podman's containers over the
//! Engine API on its unix socket (the `bollard` client), each with its
//! name, image, state, CPU and memory, and its network traffic as netmon's
//! own eBPF counters saw it.
//!
//! A container's traffic is attributed by MAC: the Engine API names each
//! network endpoint's MAC address, and the traffic core counts every MAC
//! on every watched interface (a container's host-side veth, or the bridge
//! it hangs on). A container lists one entry per watched interface where
//! its MAC was seen, never a sum of them (the same frame crosses the veth
//! and the bridge). A container on the host's network (no MAC of its own)
//! has no traffic of its own to show, and says so.
//!
//! CPU is the container's CPU time over the time since the previous cycle
//! (percent of one core), from the engine's cumulative figure; the first
//! cycle that sees a container has none yet. The engine is found at
//! `--containers-socket` or, by default, the first of [`SOCKETS`] that
//! exists; none, or one the agent may not open, makes the report
//! unavailable with the reason.

mod engine;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{Avail, CollectorName, Context, ViewSchema, view_schema};
use crate::{exposition::Family, ifaces::format_mac, shutdown::Stop, snapshot::Snapshot};

/// Where engines put their API socket, tried in this order.
pub const SOCKETS: [&str; 3] = [
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
];

/// Options of the containers collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "containers-options")]
pub struct Options {
    /// How often the containers are listed.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_interval, env = "NETMON_CONTAINERS_INTERVAL")]
    pub containers_interval: Duration,
    /// The Engine API's unix socket (Docker's or Podman's). Default: the
    /// first that exists of /run/docker.sock, /var/run/docker.sock,
    /// /run/podman/podman.sock.
    #[arg(long, value_name = "PATH", env = "NETMON_CONTAINERS_SOCKET")]
    pub containers_socket: Option<PathBuf>,
    /// Most containers listed (running ones first); the rest are counted in
    /// `omitted`. Each running one listed costs one stats request a cycle.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000), env = "NETMON_CONTAINERS_MAX")]
    pub containers_max: u32,
    /// How long one request to the engine may take.
    #[arg(long, default_value = "5s", value_parser = crate::units::parse_interval, env = "NETMON_CONTAINERS_TIMEOUT")]
    pub containers_timeout: Duration,
}

/// The engine answering on the socket.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ContainerEngine)]
pub struct Engine {
    pub socket: String,
    /// `Docker Engine`, `Podman Engine`...: the first component the
    /// engine names, or its platform.
    pub name: String,
    pub version: String,
    /// The Engine API version the agent speaks with it.
    pub api_version: String,
}

/// One network endpoint of a container, as the engine names it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ContainerEndpoint)]
pub struct Endpoint {
    pub network: String,
    /// Empty where the engine gives none (the host's network).
    pub mac: String,
    pub ip: String,
}

/// A container's traffic on one watched interface, from the eBPF counters
/// of its MAC there: `tx` is what the container sent.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ContainerTraffic)]
pub struct Traffic {
    pub interface: String,
    pub mac: String,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bits_per_second: f64,
    pub rx_bits_per_second: f64,
}

/// One container.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Container {
    /// The first 12 hex digits of its id.
    pub id: String,
    pub name: String,
    /// Empty for a container run from a root filesystem, not an image.
    pub image: String,
    /// `running`, `exited`, `paused`, `created`...
    pub state: String,
    /// The engine's words (`Up 3 hours`).
    pub status: String,
    /// CPU time over the last cycle, percent of one core.
    pub cpu_percent: Avail<f64>,
    pub memory_bytes: Avail<u64>,
    /// The memory limit the engine reports (the host's memory when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub endpoints: Vec<Endpoint>,
    /// Per watched interface where one of its MACs was seen.
    pub traffic: Avail<Vec<Traffic>>,
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ContainersReport)]
pub struct Report {
    pub engine: Avail<Engine>,
    /// Running first, then by name.
    pub containers: Vec<Container>,
    /// Containers beyond `--containers-max`, not listed.
    pub omitted: u64,
    /// Containers by state (listed and omitted).
    pub states: BTreeMap<String, u64>,
}

impl Report {
    fn unavailable(reason: String) -> Report {
        Report {
            engine: Avail::unavailable(reason),
            containers: Vec::new(),
            omitted: 0,
            states: BTreeMap::new(),
        }
    }
}

/// The collector's state: the engine client and each running container's
/// last CPU reading.
pub struct Containers {
    opts: Options,
    client: Option<engine::Client>,
    cpu: HashMap<String, (u64, Instant)>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Containers {
    pub fn new(opts: &Options) -> Self {
        Containers {
            opts: opts.clone(),
            client: None,
            cpu: HashMap::new(),
        }
    }

    /// The socket to use: the option's, or the first default that exists.
    fn socket(&self) -> Result<PathBuf, String> {
        if let Some(s) = &self.opts.containers_socket {
            return Ok(s.clone());
        }
        SOCKETS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "no container engine: none of {} exists (--containers-socket names another)",
                    SOCKETS.join(", ")
                )
            })
    }

    pub fn scan(&mut self, traffic: &Snapshot) -> Report {
        let socket = match self.socket() {
            Ok(s) => s,
            Err(e) => return Report::unavailable(e),
        };
        if self.client.as_ref().is_none_or(|c| c.socket() != socket) {
            match engine::Client::connect(&socket, self.opts.containers_timeout) {
                Ok(c) => self.client = Some(c),
                Err(e) => return Report::unavailable(e),
            }
        }
        let client = self.client.as_mut().expect("connected above");
        let listed = match client.list(self.opts.containers_max as usize) {
            Ok(l) => l,
            Err(e) => {
                // Connect afresh next cycle (the engine may have restarted).
                self.client = None;
                return Report::unavailable(e);
            }
        };
        let now = Instant::now();
        let mut cpu = HashMap::new();
        let containers = listed
            .containers
            .into_iter()
            .map(|c| {
                let (cpu_percent, memory_bytes, memory_limit_bytes) = match &c.stats {
                    Ok(s) => {
                        let pct = match (s.cpu_ns, self.cpu.get(&c.id)) {
                            (Some(ns), Some((then_ns, then))) if ns >= *then_ns => {
                                let wall = now.duration_since(*then).as_nanos() as f64;
                                Avail::Value(if wall > 0.0 {
                                    (ns - then_ns) as f64 / wall * 100.0
                                } else {
                                    0.0
                                })
                            }
                            (Some(_), _) => Avail::unavailable("needs a second cycle"),
                            (None, _) => Avail::unavailable("the engine gave no CPU time"),
                        };
                        if let Some(ns) = s.cpu_ns {
                            cpu.insert(c.id.clone(), (ns, now));
                        }
                        let mem = s
                            .memory_bytes
                            .map(Avail::Value)
                            .unwrap_or_else(|| Avail::unavailable("the engine gave no memory use"));
                        (pct, mem, s.memory_limit_bytes)
                    }
                    Err(e) => (
                        Avail::unavailable(e.clone()),
                        Avail::unavailable(e.clone()),
                        None,
                    ),
                };
                let traffic = attribute(&c.endpoints, traffic);
                Container {
                    id: c.id.chars().take(12).collect(),
                    name: c.name,
                    image: c.image,
                    state: c.state,
                    status: c.status,
                    cpu_percent,
                    memory_bytes,
                    memory_limit_bytes,
                    endpoints: c.endpoints,
                    traffic,
                }
            })
            .collect();
        self.cpu = cpu;
        Report {
            engine: Avail::Value(client.engine().clone()),
            containers,
            omitted: listed.omitted,
            states: listed.states,
        }
    }
}

/// A container's traffic: the devices of its MACs on each watched
/// interface.
pub fn attribute(endpoints: &[Endpoint], traffic: &Snapshot) -> Avail<Vec<Traffic>> {
    let macs: Vec<&str> = endpoints
        .iter()
        .map(|e| e.mac.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    if macs.is_empty() {
        return Avail::unavailable(
            "no MAC of its own (the host's network, or none): its traffic is the host's",
        );
    }
    let mut out: Vec<Traffic> = traffic
        .devices
        .iter()
        .filter_map(|d| {
            let mac = format_mac(d.mac);
            macs.iter()
                .any(|m| m.eq_ignore_ascii_case(&mac))
                .then(|| Traffic {
                    interface: traffic.iface_name(d.ifindex),
                    mac,
                    tx_bytes: d.tx.total.bytes,
                    tx_packets: d.tx.total.packets,
                    rx_bytes: d.rx.total.bytes,
                    rx_packets: d.rx.total.packets,
                    tx_bits_per_second: d.tx.rate.bits_per_second,
                    rx_bits_per_second: d.rx.rate.bits_per_second,
                })
        })
        .collect();
    out.sort_by(|a, b| (&a.interface, &a.mac).cmp(&(&b.interface, &b.mac)));
    Avail::Value(out)
}

impl super::Collector for Containers {
    const NAME: CollectorName = CollectorName::Containers;
    type Report = Report;
    type Options = Options;
    type History = ();
    const VIEW: Option<ViewSchema> = Some(view_schema::<Report>);

    fn new(opts: &Options, _: &Stop) -> Self {
        Containers::new(opts)
    }

    fn interval(opts: &Options) -> Duration {
        opts.containers_interval
    }

    fn collect(&mut self, ctx: &Context) -> Report {
        self.scan(&ctx.traffic.get())
    }

    fn metrics(r: &Report, out: &mut Vec<Family>) {
        if r.engine.value().is_none() {
            return;
        }
        let mut states = Family::gauge(
            "netmon_containers",
            &["state"],
            "Containers the engine lists, by state (listed and omitted).",
        );
        for (state, n) in &r.states {
            states.int(&[state], *n);
        }
        let mut info = Family::gauge(
            "netmon_container_info",
            &["name", "id", "image", "state", "mac"],
            "One series a listed container and MAC (1): joins netmon_device_* by mac.",
        );
        let mut cpu = Family::gauge(
            "netmon_container_cpu_percent",
            &["name"],
            "A container's CPU time over the last cycle, percent of one core.",
        );
        let mut mem = Family::gauge(
            "netmon_container_memory_bytes",
            &["name"],
            "A container's memory use as its engine reports it.",
        );
        for c in &r.containers {
            for e in &c.endpoints {
                info.int(&[&c.name, &c.id, &c.image, &c.state, &e.mac], 1);
            }
            if c.endpoints.is_empty() {
                info.int(&[&c.name, &c.id, &c.image, &c.state, ""], 1);
            }
            if let Some(p) = c.cpu_percent.value() {
                cpu.float(&[&c.name], *p);
            }
            if let Some(m) = c.memory_bytes.value() {
                mem.int(&[&c.name], *m);
            }
        }
        out.extend([states, info, cpu, mem]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_is_unavailable_with_the_paths_tried() {
        let opts = Options {
            containers_interval: Duration::from_secs(10),
            containers_socket: Some(PathBuf::from("/nonexistent/netmon-test.sock")),
            containers_max: 10,
            containers_timeout: Duration::from_secs(1),
        };
        let r = Containers::new(&opts).scan(&Snapshot::default());
        let Avail::Unavailable { unavailable } = &r.engine else {
            panic!("{r:?}")
        };
        assert!(
            unavailable.contains("/nonexistent/netmon-test.sock"),
            "{unavailable}"
        );
        assert!(r.containers.is_empty());
    }

    #[test]
    fn a_container_without_a_mac_has_no_traffic_of_its_own() {
        let e = Endpoint {
            network: "host".into(),
            mac: String::new(),
            ip: String::new(),
        };
        assert!(attribute(&[e], &Snapshot::default()).value().is_none());
    }
}
