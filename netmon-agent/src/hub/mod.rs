//! `netmon-agent hub`: the same binary as a receiver of many agents'
//! pushes (issue 17).
//!
//! - `tokens.rs`: the per-host and read-only tokens (`hub token add|revoke|
//!   list`), stored hashed in `<state_dir>/hub-tokens` and read again by a
//!   running hub when the file changes;
//! - `report.rs`: the bodies it takes (the `realtimeSnapshot` netmon's
//!   `--push-url` sends, gzip or plain; seed 000's `/ingest` body) read into
//!   one report;
//! - `hosts.rs`: the bounded table of hosts, each with its latest report
//!   and its own history file;
//! - `traffic.rs`: a host's devices and flows in its history (deltas of
//!   the totals it pushes), for its top talkers;
//! - `http.rs`: the endpoints;
//! - `limit.rs`: the failure limit: a source address with too many failed
//!   authentications gets 429 (the agent's table of sources).
//!
//! Every limit is an option with a bound ([`Options`]); refusals are
//! counted (`GET /api/v1/hub`).

pub mod hosts;
mod http;
mod limit;
pub mod report;
pub mod tokens;
mod traffic;

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::{shutdown::Stop, store::Retention};

/// The hub's default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netmon-hub";

/// `netmon-agent hub`: receive many agents' pushes, keep each host's
/// history, serve the host list.
#[derive(Clone, Debug, Parser)]
#[command(name = "netmon-agent hub", bin_name = "netmon-agent hub", version)]
pub struct Options {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9300", env = "NETMON_HUB_LISTEN")]
    pub listen: SocketAddr,

    /// Directory of the token file (hub-tokens) and the hosts' history
    /// files (hosts/<host>.redb). Also taken after `token add|revoke|list`.
    #[arg(long, global = true, default_value = DEFAULT_STATE_DIR, env = "NETMON_HUB_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Most hosts the hub keeps; a new host past it is refused (429,
    /// counted) until one is removed.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000), env = "NETMON_HUB_MAX_HOSTS")]
    pub max_hosts: u32,

    /// Largest body taken, compressed and after gunzip (413, counted).
    #[arg(long, default_value = "4MiB", value_parser = parse_body_size, env = "NETMON_HUB_MAX_BODY_SIZE")]
    pub max_body_size: u64,

    /// Disk space of each host's history file (the store's size budget).
    #[arg(long, default_value = "64MiB", value_parser = parse_history_budget, env = "NETMON_HUB_HOST_HISTORY_BUDGET")]
    pub host_history_budget: u64,

    /// How long each host's raw samples are kept.
    #[arg(long, default_value = "48h", value_parser = crate::units::parse_duration, env = "NETMON_HUB_RAW_RETENTION")]
    pub raw_retention: Duration,

    /// The agents' push interval, for staleness and the length of a host's
    /// first interval.
    #[arg(long, default_value = "5s", value_parser = crate::units::parse_interval, env = "NETMON_HUB_PUSH_INTERVAL")]
    pub push_interval: Duration,

    /// A host is stale after this many push intervals without a report.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000), env = "NETMON_HUB_STALE_INTERVALS")]
    pub stale_intervals: u32,

    /// How often the hosts' history files are downsampled and expired.
    #[arg(long, default_value = "1m", value_parser = crate::units::parse_interval, env = "NETMON_HUB_MAINTENANCE_INTERVAL")]
    pub maintenance_interval: Duration,

    /// Failed authentications (a missing, unknown or revoked token) one
    /// address (IPv6 by /64) may make within --auth-failure-window; then,
    /// without a correct token, it gets 429 until the window ends.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_HUB_AUTH_MAX_FAILURES")]
    pub auth_max_failures: u32,

    /// The window over which failed authentications are counted.
    #[arg(long, default_value = "1m", value_parser = crate::units::parse_interval, env = "NETMON_HUB_AUTH_FAILURE_WINDOW")]
    pub auth_failure_window: Duration,

    /// Addresses whose failed authentications are remembered; when full,
    /// the one whose window ends first is forgotten (counted).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=1_000_000), env = "NETMON_HUB_AUTH_MAX_SOURCES")]
    pub auth_max_sources: u32,

    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, default_value = "info", env = "NETMON_LOG")]
    pub log: String,
}

/// `netmon-agent hub token ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Manage the tokens (stored hashed in <state-dir>/hub-tokens).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the hosts of a hub that is not running (a running hub:
    /// `DELETE /api/v1/hosts/{host}` with an admin token).
    #[command(subcommand)]
    Host(HostCommand),
}

#[derive(Clone, Debug, Subcommand)]
pub enum HostCommand {
    /// Revoke HOST's token and delete its history file
    /// (<state-dir>/hosts/HOST.redb). Refused while a hub holds the file.
    Remove { name: String },
}

#[derive(Clone, Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for HOST (or, with --read-only, a dashboard's) and
    /// print it once.
    Add {
        name: String,
        /// A read-only token (a dashboard's): it reads every host, pushes
        /// nothing.
        #[arg(long, conflicts_with = "admin")]
        read_only: bool,
        /// An admin token: it reads every host and removes hosts
        /// (`DELETE /api/v1/hosts/{host}`), pushes nothing.
        #[arg(long)]
        admin: bool,
    },
    /// Remove NAME's token; a running hub refuses it from its next request.
    Revoke { name: String },
    /// List the tokens' roles and names (never the tokens).
    List,
}

fn parse_body_size(s: &str) -> Result<u64, String> {
    let v = crate::units::parse_size(s)?;
    if !(1024..=(256 << 20)).contains(&v) {
        return Err("must be between 1KiB and 256MiB".into());
    }
    Ok(v)
}

fn parse_history_budget(s: &str) -> Result<u64, String> {
    let v = crate::units::parse_size(s)?;
    if !((1 << 20)..=(1 << 40)).contains(&v) {
        return Err("must be between 1MiB and 1TiB".into());
    }
    Ok(v)
}

impl Options {
    fn token_file(&self) -> PathBuf {
        self.state_dir.join(tokens::FILE_NAME)
    }

    fn limits(&self) -> hosts::Limits {
        hosts::Limits {
            max_hosts: self.max_hosts as usize,
            retention: Retention {
                raw: self.raw_retention,
                size_budget: self.host_history_budget,
                ..Retention::default()
            },
            push_interval: self.push_interval,
            stale_intervals: self.stale_intervals,
        }
    }
}

/// `netmon-agent hub ...`; `args` starts with the program name, then `hub`.
pub fn main(mut args: Vec<OsString>) -> ExitCode {
    args.remove(1);
    let opts = match Options::try_parse_from(args) {
        Ok(o) => o,
        Err(e) => e.exit(),
    };
    match &opts.command {
        Some(Command::Token(t)) => token_command(&opts, t),
        Some(Command::Host(HostCommand::Remove { name })) => remove_host(&opts, name),
        None => serve(opts),
    }
}

fn token_command(opts: &Options, cmd: &TokenCommand) -> ExitCode {
    let path = opts.token_file();
    let result = match cmd {
        TokenCommand::Add {
            name,
            read_only,
            admin,
        } => {
            let grant = match (*admin, *read_only) {
                (true, _) => tokens::Grant::Admin(name.clone()),
                (false, true) => tokens::Grant::ReadOnly(name.clone()),
                (false, false) => tokens::Grant::Host(name.clone()),
            };
            tokens::add_grant(&path, grant).map(|t| {
                println!("{t}");
                eprintln!(
                    "Token for {name:?} added to {} (only its hash is stored: keep it now).",
                    path.display()
                );
            })
        }
        TokenCommand::Revoke { name } => tokens::revoke(&path, name).map(|found| {
            if found {
                eprintln!("Revoked {name:?}.");
            } else {
                eprintln!("{name:?} had no token.");
            }
        }),
        TokenCommand::List => tokens::list(&path).map(|all| {
            for (role, name) in all {
                println!("{role}\t{name}");
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `hub host remove HOST`, with no hub running: its token revoked, its
/// history file deleted. A file a running hub holds open cannot be opened
/// here (redb's lock), so that case is refused with the way that works.
fn remove_host(opts: &Options, name: &str) -> ExitCode {
    if let Err(e) = tokens::check_name(name) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let file = opts.state_dir.join("hosts").join(format!("{name}.redb"));
    let has_file = file.exists();
    if has_file && let Err(e) = crate::store::Store::open(&file, opts.limits().retention) {
        eprintln!(
            "error: cannot open {} ({e}): if a hub is running, remove the host through it: \
             DELETE /api/v1/hosts/{name} with an admin token (`hub token add --admin NAME`)",
            file.display()
        );
        return ExitCode::from(1);
    }
    let revoked = match tokens::revoke_host(&opts.token_file(), name) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !has_file && !revoked {
        eprintln!("error: no host {name:?}: no token and no history file");
        return ExitCode::from(1);
    }
    if has_file && let Err(e) = std::fs::remove_file(&file) {
        eprintln!("error: cannot delete {}: {e}", file.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "Removed {name:?}: token {}, history file {}.",
        if revoked { "revoked" } else { "none" },
        if has_file { "deleted" } else { "none" }
    );
    ExitCode::SUCCESS
}

fn serve(opts: Options) -> ExitCode {
    match EnvFilter::try_new(&opts.log) {
        Ok(f) => crate::logging::init(f, crate::logging::LogFormat::Auto),
        Err(e) => {
            eprintln!("error: invalid value '{}' for '--log': {e}", opts.log);
            return ExitCode::from(2);
        }
    }
    let tokens = match tokens::Tokens::open(opts.token_file()) {
        Ok(t) => t,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    if tokens.is_empty() {
        info!(file = %opts.token_file().display(), "No tokens yet: add one with `netmon-agent hub token add HOST`.");
    }
    let hosts = match hosts::Hosts::open(&opts.state_dir, opts.limits()) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            error!("{:#}", anyhow::Error::from(e));
            return ExitCode::from(2);
        }
    };
    let listener = match std::net::TcpListener::bind(opts.listen) {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %opts.listen, "Cannot listen: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = Stop::default();
    let maintenance = {
        let (hosts, stop, every) = (Arc::clone(&hosts), stop.clone(), opts.maintenance_interval);
        std::thread::spawn(move || {
            while !stop.wait_until(Instant::now() + every) {
                hosts.maintain();
            }
        })
    };
    let state = http::State {
        tokens: Arc::new(tokens),
        hosts,
        limiter: Arc::new(limit::Limiter::new(limit::AuthLimits {
            max_failures: opts.auth_max_failures,
            window: opts.auth_failure_window,
            max_sources: opts.auth_max_sources as usize,
        })),
        max_body: opts.max_body_size as usize,
    };
    info!(listen = %opts.listen, state_dir = %opts.state_dir.display(), "Hub listening.");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let served = runtime.block_on(async move {
        let _ = listener.set_nonblocking(true);
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    stop.stop();
    let _ = maintenance.join();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("Serving failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down."),
        _ = term.recv() => info!("SIGTERM: shutting down."),
    }
}
