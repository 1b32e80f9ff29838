//! The Engine API client: `bollard` on a unix socket, driven by a small
//! runtime of this collector's own thread, every request bounded by
//! `--containers-timeout`.

use std::{
    collections::BTreeMap,
    io::ErrorKind,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::{
    Docker,
    query_parameters::{ListContainersOptions, StatsOptions},
};
use futures_util::StreamExt;

use super::{Endpoint, Engine};

/// The API version asked for first; the engine's answer to `/version`
/// lowers it when the engine is older (Podman 4 speaks 1.41).
const CLIENT_VERSION: &bollard::ClientVersion = &bollard::ClientVersion {
    major_version: 1,
    minor_version: 43,
};

/// What `stats` says of a running container.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
}

/// One container as the engine lists it.
#[derive(Debug)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub status: String,
    pub endpoints: Vec<Endpoint>,
    /// `Err` with why (not running, the engine refused).
    pub stats: Result<Stats, String>,
}

/// One listing: at most the cap, running first.
#[derive(Debug)]
pub struct Listing {
    pub containers: Vec<Listed>,
    pub omitted: u64,
    pub states: BTreeMap<String, u64>,
}

pub struct Client {
    rt: tokio::runtime::Runtime,
    docker: Docker,
    socket: PathBuf,
    engine: Engine,
    timeout: Duration,
}

impl Client {
    /// Opens `socket` and asks the engine who it is.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Client, String> {
        // A plain connect first, for a reason a person can act on.
        if let Err(e) = UnixStream::connect(socket) {
            return Err(match e.kind() {
                ErrorKind::NotFound => format!("no container engine at {}", socket.display()),
                ErrorKind::PermissionDenied => format!(
                    "permission denied on {} (the engine's socket needs root or its group, \
                     e.g. docker, which is root-equivalent)",
                    socket.display()
                ),
                _ => format!("cannot connect to {}: {e}", socket.display()),
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the engine client's runtime: {e}"))?;
        let path = socket.to_string_lossy();
        let docker = Docker::connect_with_unix(&path, timeout.as_secs().max(1), CLIENT_VERSION)
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let (docker, version) = rt
            .block_on(async {
                tokio::time::timeout(timeout, async {
                    let docker = docker.negotiate_version().await?;
                    let version = docker.version().await?;
                    Ok::<_, bollard::errors::Error>((docker, version))
                })
                .await
            })
            .map_err(|_| {
                format!(
                    "{}: the engine did not answer in {timeout:?}",
                    socket.display()
                )
            })?
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let name = version
            .components
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| c.name.clone())
            .or_else(|| version.platform.as_ref().map(|p| p.name.clone()))
            .unwrap_or_else(|| "unknown engine".into());
        let api = docker.client_version();
        let engine = Engine {
            socket: socket.display().to_string(),
            name,
            version: version.version.unwrap_or_default(),
            api_version: format!("{}.{}", api.major_version, api.minor_version),
        };
        Ok(Client {
            rt,
            docker,
            socket: socket.to_path_buf(),
            engine,
            timeout,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Every container (running or not), the first `max` of them (running
    /// first, then by name) with their stats.
    pub fn list(&mut self, max: usize) -> Result<Listing, String> {
        let (docker, timeout) = (&self.docker, self.timeout);
        let socket = self.socket.display();
        self.rt.block_on(async {
            let opts = ListContainersOptions {
                all: true,
                ..Default::default()
            };
            let summaries = tokio::time::timeout(timeout, docker.list_containers(Some(opts)))
                .await
                .map_err(|_| format!("{socket}: listing containers took over {timeout:?}"))?
                .map_err(|e| format!("{socket}: {e}"))?;
            let mut all: Vec<Listed> = summaries.into_iter().map(listed).collect();
            let mut states = BTreeMap::new();
            for c in &all {
                *states.entry(c.state.clone()).or_insert(0) += 1;
            }
            all.sort_by(|a, b| {
                (a.state != "running", &a.name).cmp(&(b.state != "running", &b.name))
            });
            let omitted = all.len().saturating_sub(max) as u64;
            all.truncate(max);
            for c in &mut all {
                if c.state == "running" {
                    c.stats = stats(docker, &c.id, timeout).await;
                }
            }
            Ok(Listing {
                containers: all,
                omitted,
                states,
            })
        })
    }
}

fn listed(s: bollard::models::ContainerSummary) -> Listed {
    let state = s
        .state
        .and_then(|st| serde_json::to_value(st).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut endpoints: Vec<Endpoint> = s
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(network, e)| Endpoint {
            network,
            mac: e.mac_address.unwrap_or_default().to_ascii_lowercase(),
            ip: e.ip_address.unwrap_or_default(),
        })
        .collect();
    endpoints.sort_by(|a, b| a.network.cmp(&b.network));
    Listed {
        id: s.id.unwrap_or_default(),
        name: s
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        image: s.image.unwrap_or_default(),
        status: s.status.unwrap_or_default(),
        state,
        endpoints,
        stats: Err("not running".into()),
    }
}

async fn stats(docker: &Docker, id: &str, timeout: Duration) -> Result<Stats, String> {
    let opts = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let mut stream = docker.stats(id, Some(opts));
    let s = tokio::time::timeout(timeout, stream.next())
        .await
        .map_err(|_| format!("stats took over {timeout:?}"))?
        .ok_or("the engine sent no stats")?
        .map_err(|e| format!("stats: {e}"))?;
    let cpu = s.cpu_stats.as_ref();
    Ok(Stats {
        cpu_ns: cpu
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage),
        memory_bytes: s.memory_stats.as_ref().and_then(|m| m.usage),
        memory_limit_bytes: s.memory_stats.as_ref().and_then(|m| m.limit),
    })
}
